"""Issue 22, part 3b: how often the implausibility flag fires, and what the nonsense set gets.

Runs an exported ``cobb`` model (and, when given, the view guard) through ``spinescan-predict``'s
own code path (:func:`spinescan.edge.predictor.classify_files`) on

* phantoms (``spinescan synth``, a seed the model was not trained on),
* the real AP films (Fraiwan, AASCE),
* the nonsense set of issue 22: blank, noise, gradient, stripes, the real lateral film (to an AP
  model), and AP films (real and phantom) upside down, rotated 90 deg and inverted,
* the expert AASCE landmarks and the phantoms' exact landmarks themselves (no model: the flag's
  false alarms on true spines),

and counts, per group, the flag's severities and the films that got no angle and no label (with
the reason). Writes ``benchmarks/results/implausibility/implausibility.json``::

    .venv/bin/python benchmarks/implausibility.py --models /tmp/guard/exp-cobb \\
        --phantoms /tmp/guard/vg/phantoms-test --real ../shared/data/real [--guard DIR/view.onnx]
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from view_guard import MAKERS, _films, transform

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "benchmarks" / "results" / "implausibility"


def tally(results: list[dict[str, Any]], model: str = "cobb") -> dict[str, Any]:
    """Per film (the ``model``'s entry, or the read error / the guard's skip): severity counts,
    films with angles, films with a label, films with neither and a reason."""
    films: dict[str, dict[str, Any]] = {}
    for r in results:
        if r.get("model") in (None, model):
            films[r["image"]] = r
    sev: Counter = Counter()
    angles = labelled = refused = 0
    reasons: Counter = Counter()
    for r in films.values():
        if "error" in r or "skipped" in r:
            sev["not read"] += 1
            refused += 1
            reasons[(r.get("error") or r["skipped"]).split(": ", 1)[-1][:60]] += 1
            continue
        sev[r["plausibility"]["severity"]] += 1
        has_angle = any(v is not None for v in r["measurements"].values())
        angles += has_angle
        labelled += r["label"] is not None
        if not has_angle and r["label"] is None and r.get("label_reason"):
            refused += 1
            reasons[r["label_reason"].split(";")[0][:60]] += 1
    return {
        "films": len(films),
        "severity": dict(sev),
        "with_angles": angles,
        "with_label": labelled,
        "no_angle_no_label_with_reason": refused,
        "reasons": dict(reasons.most_common(6)),
    }


def expert_flags(real: Path, phantoms: Path) -> dict[str, Any]:
    """The flag on true landmarks: AASCE experts' and the phantoms' exact ones (points off the
    film dropped, as a perfect model would call them not visible)."""
    from spinescan.radiograph.plausibility import assess_landmarks
    from spinescan.radiograph.vertebrae import inside_film

    out = {}
    for name, root, view in (
        ("aasce_expert", real / "aasce-train", None),
        ("phantoms_exact_ap", phantoms, "ap"),
        ("phantoms_exact_lateral", phantoms, "lateral"),
    ):
        if not (root / "manifest.csv").is_file():
            continue
        counts: Counter = Counter()
        with open(root / "manifest.csv", newline="") as fh:
            for row in csv.DictReader(fh):
                if view and row.get("view") != view:
                    continue
                lm = np.array(json.loads(row["landmarks"]), float).reshape(68, 2)
                sac = np.array(json.loads(row["sacrum"]), float).reshape(2, 2) if row.get("sacrum") else None
                hw = (int(row["height"]), int(row["width"]))
                lm[~inside_film(lm, hw)] = np.nan
                if sac is not None:
                    sac[~inside_film(sac, hw)] = np.nan
                counts[assess_landmarks(lm, sac, hw).severity] += 1
        out[name] = dict(counts)
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    from spinescan.edge.model_files import model_paths
    from spinescan.edge.onnxmodel import OnnxModel
    from spinescan.edge.predictor import classify_files

    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--models", required=True, help="export folder holding cobb")
    parser.add_argument(
        "--phantoms", required=True, help="a spinescan synth folder the model did not train on"
    )
    parser.add_argument("--real", default="../shared/data/real")
    parser.add_argument("--guard", help="the view guard's .onnx: also run with it first")
    parser.add_argument("--per-kind", type=int, default=20)
    parser.add_argument("--name", default="implausibility", help="the result file's name (.json)")
    parser.add_argument(
        "--every", type=int, default=1, help="measure every Nth real AP film (a busy machine)"
    )
    args = parser.parse_args(argv)
    real, phantoms = Path(args.real), Path(args.phantoms)
    cobb = [OnnxModel(p) for p in model_paths(args.models) if OnnxModel(p).name == "cobb"]
    ap_phantoms = sorted((phantoms / "ap").rglob("*.png"))
    fraiwan = _films(real / "fraiwan-kauh-dev", "*")[
        :: args.every
    ]  # JPEG and PNG (one Fraiwan film is a PNG)
    aasce = _films(real / "aasce-train", "*")[:: args.every]
    lateral = _films(real / "lateral-sample", "*")
    rng = np.random.default_rng(5)
    tmp = Path(tempfile.mkdtemp(prefix="implausibility-"))
    nonsense: dict[str, list[Path]] = {}

    def save(group: str, image: np.ndarray) -> None:
        path = tmp / f"{group}-{len(nonsense.setdefault(group, []))}.png"
        cv2.imwrite(str(path), image)
        nonsense[group].append(path)

    for kind in ("blank", "noise", "gradient", "stripes"):
        for _ in range(args.per_kind):
            save(kind, MAKERS[kind](rng))
    nonsense["lateral film"] = lateral
    spines = fraiwan[::5] + aasce[::25] + ap_phantoms[::2]
    for how, group in (("upside_down", "upside down"), ("rot90", "rotated 90"), ("inverted", "inverted")):
        for path in spines:
            save(group, transform(cv2.imread(str(path), cv2.IMREAD_UNCHANGED), how))
    groups = {"phantoms (AP, unseen seed)": ap_phantoms, "real AP: fraiwan": fraiwan, "real AP: aasce": aasce}
    result: dict[str, Any] = {
        "model": "cobb",
        "models": args.models,
        "every": args.every,
        "nonsense": {},
        "groups": {},
    }
    result["command"] = " ".join(["benchmarks/implausibility.py", *(argv or sys.argv[1:])])
    OUT.mkdir(parents=True, exist_ok=True)
    target = OUT / f"{args.name}.json"
    result["true_landmarks"] = expert_flags(real, phantoms)
    print(result["true_landmarks"])
    for part, named in (("nonsense", nonsense), ("groups", groups)):  # the nonsense set first
        for name, paths in named.items():
            result[part][name] = tally(classify_files(paths, cobb))
            print(name, result[part][name])
            target.write_text(json.dumps(result, indent=1) + "\n")  # what is measured so far
    if args.guard:
        guarded = [OnnxModel(args.guard), *cobb]
        result["with_guard"] = {
            name: tally(classify_files(paths, guarded)) for name, paths in {**groups, **nonsense}.items()
        }
    target.write_text(json.dumps(result, indent=1) + "\n")
    return result


if __name__ == "__main__":
    main()
