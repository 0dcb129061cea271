"""Issue 7 experiment: is the scoliosis model good on real AP films, and not by reading the framing?

Runs ``spinescan bench scoliosis --folds K --seeds S --by framing`` once per configuration
(resize letterbox | spine_crop) x (from scratch | phantom pretraining) on the dev films, then
tabulates, on the framing-fair ``spine_crop`` subset and on the full set, the CNN's accuracy and
AUC (mean, SD, worst fold-seed, bootstrap CI) next to the shortcut probes'. Every configuration
sees the same folds (a fold is a property of the dataset and seed), so the rows are comparable.

    .venv/bin/python benchmarks/real_scoliosis.py \\
        --data ../shared/data/real/fraiwan-kauh-dev --out reports/real-scoliosis

Writes ``<out>/real_scoliosis.json`` and ``<out>/real_scoliosis.md`` (plus one bench report per
configuration under ``<out>/<config>/``). Finished runs are reused, so an interrupted experiment
continues where it stopped.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
CONFIGS = {
    "spine_crop+pretrain": ("spine_crop", "phantoms"),
    "spine_crop": ("spine_crop", None),
    "letterbox+pretrain": ("letterbox", "phantoms"),
    "letterbox": ("letterbox", None),
}
GOAL = "spine_crop accuracy >= 0.90 on average, no fold-seed below 0.85, AUC >= 0.95, clearly above the probe"


def _figures(group: dict[str, Any] | None) -> dict[str, Any]:
    group = group or {}
    keys = [f"{m}{s}" for m in ("accuracy", "auc") for s in ("", "_sd", "_worst", "_ci")]
    return {"n_test_total": group.get("n_test_total"), **{k: group.get(k) for k in keys}}


def summarise(name: str, leaderboard: dict[str, Any], seconds: float) -> dict[str, Any]:
    """One table row (and its probes) from a bench leaderboard."""
    (entry,) = [e for e in leaderboard["models"] if e["name"] == "scoliosis"]
    row: dict[str, Any] = {
        "config": name,
        "resize": leaderboard["protocol"].get("resize"),
        "pretrain": leaderboard["protocol"].get("pretrain"),
        "runs": len(entry["runs"]),
        "wall_seconds": round(seconds, 1),
        "mean_train_seconds": entry.get("train_seconds"),
        "full": _figures(entry),
        "spine_crop": _figures(entry.get("subgroups", {}).get("spine_crop")),
        "fullframe": _figures(entry.get("subgroups", {}).get("fullframe")),
        # The epoch each run kept (the last one under the default checkpoint="last").
        "mean_kept_epoch": _mean([r.get("kept_epoch", r.get("best_epoch")) for r in entry["runs"]]),
        "mean_epochs_run": _mean([r.get("epochs_run") for r in entry["runs"]]),
        "report": leaderboard.get("report"),
    }
    row["pretrain_run"] = _pretrain_entry(entry["runs"][0]["run_dir"]) if row["pretrain"] else None
    probes = {
        p["probe"]: {"full": _figures(p), "spine_crop": _figures(p.get("subgroups", {}).get("spine_crop"))}
        for p in leaderboard.get("probes", [])
    }
    return {"row": row, "probes": probes}


def _mean(values: list[Any]) -> float | None:
    clean = [float(v) for v in values if v is not None]
    return sum(clean) / len(clean) if clean else None


def _pretrain_entry(run_dir: str) -> dict[str, Any] | None:
    config = json.loads((Path(run_dir) / "config.json").read_text(encoding="utf-8"))
    return config.get("pretrain")


def _f(value: float | None) -> str:
    return "–" if value is None else f"{value:.3f}"


def _ci(value: list[float] | None) -> str:
    return "" if not value or None in value else f" [{value[0]:.3f}, {value[1]:.3f}]"


def _cell(fig: dict[str, Any], metric: str, ci: bool = True) -> str:
    """``mean ± SD (worst) [CI]`` of one metric."""
    text = f"{_f(fig[metric])} ± {_f(fig[f'{metric}_sd'])} ({_f(fig[f'{metric}_worst'])})"
    return text + (_ci(fig[f"{metric}_ci"]) if ci else "")


def markdown(result: dict[str, Any]) -> str:
    """The result table: spine_crop subset first (the honest figure), then the full set."""
    lines = [
        "# Scoliosis on the real AP dev films (issue 7)",
        "",
        f"Data: `{result['data']}`; {result['folds']}-fold x {result['seeds']}-seed cross-validation "
        f"(every film tested once per seed); command: `{result['command']}`; wall time "
        f"{result['wall_seconds'] / 60:.1f} min.",
        "",
        f"Goal: {GOAL}.",
        "",
        "Mean over fold-seeds ± SD (worst fold-seed), 95% bootstrap CI in brackets.",
        "",
        "| configuration | spine_crop accuracy | spine_crop AUC | full-set accuracy | full-set AUC "
        "| fullframe accuracy | kept epoch | train s/run |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in result["rows"]:
        sc, full, ff = row["spine_crop"], row["full"], row["fullframe"]
        lines.append(
            f"| {row['config']} | {_cell(sc, 'accuracy')} | {_cell(sc, 'auc')} "
            f"| {_cell(full, 'accuracy', ci=False)} | {_cell(full, 'auc', ci=False)} "
            f"| {_f(ff['accuracy'])} "
            f"| {_f(row['mean_kept_epoch'])} of {_f(row['mean_epochs_run'])} "
            f"| {_f(row['mean_train_seconds'])} |"
        )
    for probe, figs in result["probes"].items():
        sc, full = figs["spine_crop"], figs["full"]
        lines.append(
            f"| shortcut probe ({probe}) | {_cell(sc, 'accuracy')} | {_cell(sc, 'auc')} "
            f"| {_cell(full, 'accuracy', ci=False)} | {_cell(full, 'auc', ci=False)} | – | – | – |"
        )
    lines += ["", "Pretraining stages:", ""]
    for row in result["rows"]:
        pre = row.get("pretrain_run")
        if pre:
            lines.append(
                f"- {row['config']}: `{pre['run_dir']}` on {pre['view_images']} phantoms, "
                f"phantom val accuracy {_f(pre['val_accuracy'])}, {pre['epochs_run']} epochs, "
                f"{_f(pre['train_seconds'])} s."
            )
    lines += ["", "Per-configuration bench reports:", ""]
    lines += [f"- {row['config']}: `{row['report']}`" for row in result["rows"]]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    from spinescan.zoo.spec import CHECKPOINTS

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared/data/real/fraiwan-kauh-dev")
    parser.add_argument("--out", type=Path, default=Path("reports/real-scoliosis"))
    parser.add_argument("--runs", type=Path, default=Path("runs/real-scoliosis"))
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--configs", nargs="+", choices=list(CONFIGS), default=list(CONFIGS))
    parser.add_argument("--pretrain-per-class", type=int, default=None)
    parser.add_argument("--pretrain-epochs", type=int, default=None)
    parser.add_argument("--pretrain-borderline", type=float, default=None)
    parser.add_argument("--checkpoint", choices=CHECKPOINTS, default=None, help="[plugin default]")
    parser.add_argument("--image-size", type=int, default=None)
    parser.add_argument("--epochs", type=int, default=None, help="Override the plugin's epochs (smoke runs).")
    args = parser.parse_args(argv)

    from spinescan.atomic import atomic_write_json, atomic_write_text
    from spinescan.evaluation.bench import BenchConfig, run_benchmark
    from spinescan.progress import Plain
    from spinescan.training.settings import RunSettings

    started = time.perf_counter()
    rows, probes = [], {}
    for name in args.configs:
        resize, pretrain = CONFIGS[name]
        print(f"=== {name} ===", file=sys.stderr, flush=True)
        t0 = time.perf_counter()
        leaderboard = run_benchmark(
            BenchConfig(
                models=["scoliosis"],
                data=args.data,
                folds=args.folds,
                seeds=args.seeds,
                settings=RunSettings(
                    image_size=args.image_size,
                    resize=resize,
                    pretrain=pretrain,
                    pretrain_per_class=args.pretrain_per_class,
                    pretrain_epochs=args.pretrain_epochs,
                    pretrain_borderline=args.pretrain_borderline,
                ),
                hparams={"epochs": args.epochs, "checkpoint": args.checkpoint},
                by="framing",
                out=args.out / name,
                runs_dir=args.runs,
                verbose=2,
                progress=Plain(),
            ),
        )
        summary = summarise(name, leaderboard, time.perf_counter() - t0)
        rows.append(summary["row"])
        probes = probes or summary["probes"]  # the probes do not depend on the CNN's configuration
        print(json.dumps(summary["row"]["spine_crop"]), file=sys.stderr, flush=True)
        result = {
            "data": str(args.data),
            "folds": args.folds,
            "seeds": args.seeds,
            "command": "python benchmarks/real_scoliosis.py "
            + " ".join(argv if argv is not None else sys.argv[1:]),
            "goal": GOAL,
            "rows": rows,
            "probes": probes,
            "wall_seconds": round(time.perf_counter() - started, 1),
        }
        args.out.mkdir(parents=True, exist_ok=True)  # written after every configuration
        atomic_write_json(args.out / "real_scoliosis.json", result)
        atomic_write_text(args.out / "real_scoliosis.md", markdown(result))
    print((args.out / "real_scoliosis.md").read_text(encoding="utf-8"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
