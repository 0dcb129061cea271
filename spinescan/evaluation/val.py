"""``spinescan val``: score exported ONNX models on a labelled folder or manifest, without TensorFlow.

What a clinician-researcher does first with a model zoo: run its models on their own labelled films
and read how well they do there. Everything here runs on onnxruntime and numpy:

* the films are found by :func:`spinescan.data.datasets.load_dataset` (the layouts training reads,
  or a ``.csv`` manifest of any name) and read by the predictor's own reader and preprocessing
  (:class:`spinescan.edge.onnxmodel.OnnxModel`), in chunks like ``spinescan-predict``;
* a classifier's figures are the benchmark's own (what :func:`spinescan.evaluation.scoring.evaluate_parts`
  computes for one run: accuracy, balanced accuracy, macro-F1, AUC with stratified bootstrap CIs,
  per-class sensitivity and specificity, calibration, confusion matrix), plus CIs of the per-class
  figures; the bootstrap is vectorised (:func:`spinescan.metrics.single_run_cis`, the same resamples);
* a landmark model's are training's own (:func:`spinescan.metrics.landmark_summary`: landmark error
  as a fraction of film height, angle MAE and bias, SMAPE), plus the sensitivity and specificity of
  the label its angles imply at the clinical thresholds (:mod:`spinescan.radiograph.thresholds`).

Films that cannot be scored (unreadable, a label the model does not know, another view than the
model's) are counted and named in ``skipped``; the rest are scored. A landmark model needs true
angles: a manifest ``landmarks`` column (68 corners, as ``spinescan synth`` writes) or a column per
angle; without either it is one clear :class:`~spinescan.errors.DataError`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from spinescan import metrics as m
from spinescan.data.datasets import UNSPECIFIED_VIEW, Sample, load_dataset
from spinescan.edge.model_files import model_paths
from spinescan.edge.onnxmodel import OnnxModel
from spinescan.errors import DataError, ImageReadError, SpineScanError
from spinescan.progress import QUIET, Progress
from spinescan.radiograph.imageio import MIN_SIDE, read_image

SCHEMA = "spinescan.val/1"
#: Films per onnxruntime call, as in the predictor.
CHUNK = 16
#: Films named per reason in the summary (the counts are always complete).
NAMED = 20


@dataclass(frozen=True)
class ValConfig:
    """One ``spinescan val`` request."""

    models: Path  # an exported .onnx file or an export folder
    data: Path  # a labelled folder or a .csv manifest
    view: str | None = None  # the films' view when the data does not say it; also filters models
    int8: bool = False
    device: str = "cpu"
    n_boot: int = 1000
    seed: int = 0


@dataclass(frozen=True)
class ValResult:
    """Per model figures, what was skipped and why, and one row per scored (film, model)."""

    models: dict[str, dict[str, Any]]
    skipped: dict[str, Any]
    rows: list[dict[str, Any]] = field(compare=False)
    data: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"schema": SCHEMA, "data": self.data, "models": self.models, "skipped": self.skipped}


# --- which models, which films --------------------------------------------------------------------


def load_models(source: Path, int8: bool = False, device: str = "cpu") -> list[OnnxModel]:
    """An ``.onnx`` file, or every model of an export folder (its manifest decides, as in predict)."""
    source = Path(source)
    paths = [source] if source.is_file() else model_paths(source, int8=int8)
    return [OnnxModel(p, device=device) for p in paths]


def _truth_columns(model: OnnxModel) -> tuple[str, ...]:
    return ("landmarks", *model.info.measurements)


def _has_truth(sample: Sample, model: OnnxModel) -> bool:
    return any(sample.extra.get(c) for c in _truth_columns(model))


class _Skips:
    """Films left out, by reason: counts and the first :data:`NAMED` names."""

    def __init__(self) -> None:
        self.files: dict[str, list[str]] = {}

    def add(self, reason: str, what: str) -> None:
        self.files.setdefault(reason, []).append(what)

    def to_dict(self) -> dict[str, Any]:
        return {
            reason: {"n": len(names), "files": names[:NAMED]} for reason, names in sorted(self.files.items())
        }


def _assign(
    samples: Sequence[Sample], models: list[OnnxModel], skips: _Skips
) -> dict[int, list[int]]:
    """Which models score which film (indices): the film's view, a label the model knows."""
    plan: dict[int, list[int]] = {}
    for i, s in enumerate(samples):
        same_view = [j for j, mo in enumerate(models) if s.view in (mo.info.view, UNSPECIFIED_VIEW)]
        if not same_view:
            skips.add("other view", f"{s.rel} ({s.view})")
            continue
        known = [j for j in same_view if s.label in models[j].info.classes]
        if not known:
            skips.add("unknown label", f"{s.rel} ({s.label})")
            continue
        plan[i] = known
    return plan


# --- running the models ---------------------------------------------------------------------------


def _read_error(path: Path, exc: Exception) -> str:
    if isinstance(exc, (ImageReadError, SpineScanError)):
        return str(exc) if str(path) in str(exc) else f"{path}: {exc}"
    first = (str(exc).strip().splitlines() or [""])[0]
    return f"{path}: cannot read ({type(exc).__name__}: {first})"


def _run(
    samples: Sequence[Sample],
    plan: dict[int, list[int]],
    models: list[OnnxModel],
    skips: _Skips,
    progress: Progress,
) -> dict[int, list[tuple[int, Any, Any]]]:
    """Each planned film read once, through each of its models; ``{model: [(film, output, context)]}``.

    Streamed like the predictor: a film is decoded, turned into every model's small input tensor
    and dropped; the tensors go to onnxruntime :data:`CHUNK` at a time.
    """
    outputs: dict[int, list[tuple[int, Any, Any]]] = {j: [] for j in range(len(models))}
    pending: dict[int, list[tuple[int, np.ndarray, Any]]] = {j: [] for j in range(len(models))}

    def flush(j: int) -> None:
        if not pending[j]:
            return
        batch = np.stack([x for _, x, _ in pending[j]])
        out = models[j].predict(batch)
        outputs[j].extend((i, o, c) for (i, _, c), o in zip(pending[j], out, strict=True))
        pending[j].clear()

    with progress.bar(len(plan), "films") as advance:
        for i in sorted(plan):
            s = samples[i]
            try:
                image = read_image(s.path, min_side=MIN_SIDE)
            except Exception as exc:  # one bad file is one summary entry, never a crash
                skips.add("unreadable", _read_error(s.path, exc))
                advance(1)
                continue
            for j in plan[i]:
                x, context = models[j].prepare(image)
                pending[j].append((i, x, context))
                if len(pending[j]) >= CHUNK:
                    flush(j)
            image = None
            advance(1)
    for j in pending:
        flush(j)
    return outputs


# --- figures ------------------------------------------------------------------------------------


def score_classifier(
    model: OnnxModel, samples: Sequence[Sample], got: list[tuple[int, Any, Any]], n_boot: int, seed: int
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The benchmark's figures for one classifier (:func:`spinescan.metrics.classification_report`
    and its bootstrap CIs, as :func:`spinescan.evaluation.scoring.evaluate_parts` computes them for
    one run, vectorised: :func:`spinescan.metrics.single_run_cis`), and its per-film rows."""
    classes = model.info.classes
    if not got:
        return {"task": "classification", "n": 0}, []
    y = np.array([classes.index(samples[i].label) for i, _, _ in got], dtype=int)
    probs = np.array([o for _, o, _ in got], dtype=np.float64)
    figures = m.classification_report(y, probs, classes)
    cis = m.single_run_cis(y, probs, len(classes), n_boot=n_boot, seed=seed)
    for name in m.CI_METRICS:
        figures[f"{name}_ci"] = list(cis[name])
    figures["sensitivity_ci"] = dict(zip(classes, cis["sensitivity"], strict=True))
    figures["specificity_ci"] = dict(zip(classes, cis["specificity"], strict=True))
    figures["class_counts"] = {c: int((y == i).sum()) for i, c in enumerate(classes)}
    rows = [
        {
            "model": model.name,
            "file": samples[i].rel,
            "label": samples[i].label,
            "pred_label": classes[int(np.argmax(o))],
            **{f"p_{c}": f"{float(p):.6f}" for c, p in zip(classes, o, strict=True)},
        }
        for i, o, _ in got
    ]
    return {"task": "classification", "n": len(got), **figures}, rows


def _true_angles(model: OnnxModel, sample: Sample, hw: tuple[int, int]) -> tuple[np.ndarray, dict]:
    """The manifest's 68 corners (NaN when it has none) and true angles
    (:func:`spinescan.radiograph.angles.manifest_angles`, as training scores them)."""
    from spinescan.radiograph.angles import manifest_angles

    lm, sacrum = np.full((68, 2), np.nan), None
    raw = sample.extra.get("landmarks") or ""
    if raw:
        try:
            lm = np.asarray(json.loads(raw), dtype=np.float64).reshape(68, 2)
            sac = sample.extra.get("sacrum") or ""
            sacrum = np.asarray(json.loads(sac), dtype=np.float64).reshape(2, 2) if sac else None
        except (ValueError, TypeError) as exc:
            raise DataError(f"{sample.rel}: 'landmarks' is not 68 [x, y] corners ({exc})") from None
    return lm, manifest_angles(model.info.view, model.info.measurements, sample.extra, lm, sacrum, hw)


def score_landmarks(
    model: OnnxModel, samples: Sequence[Sample], got: list[tuple[int, Any, Any]], n_boot: int, seed: int
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Training's landmark figures (:func:`spinescan.metrics.landmark_summary`, the same SMAPE
    angles) plus sensitivity and specificity of the angle-implied label, and per-film rows."""
    info = model.info
    if not got:
        return {"task": "landmarks", "n": 0}, []
    readings, truths, heights, films = [], [], [], []
    for i, o, context in got:
        reading = model.read(o, context)
        hw = tuple(int(v) for v in context[1])
        readings.append(reading)
        truths.append(_true_angles(model, samples[i], hw))
        heights.append(hw[0])
        films.append(samples[i])
    pred_angles = [{n: r["angles"][n].value for n in info.measurements} for r in readings]
    true_angles = [t for _, t in truths]
    summary = m.landmark_summary(
        pred_landmarks=[r["landmarks"] for r in readings],
        true_landmarks=[lm for lm, _ in truths],
        heights=heights,
        pred_angles=pred_angles,
        true_angles=true_angles,
        labels=[s.label for s in films],
        pred_labels=[r["label"] for r in readings],
        smape_angles=[n for n in info.measurements if n != "cobb_deg"] if info.view == "ap" else None,
    )
    classes = info.classes
    k = len(classes)
    y = np.array([classes.index(s.label) for s in films], dtype=int)
    pred = np.array([classes.index(r["label"]) if r["label"] in classes else k for r in readings], dtype=int)
    cm = np.zeros((k, k + 1), dtype=int)
    np.add.at(cm, (y, pred), 1)
    sens = {c: float(np.mean(pred[y == i] == i)) if (y == i).any() else None for i, c in enumerate(classes)}
    spec = {c: float(np.mean(pred[y != i] != i)) if (y != i).any() else None for i, c in enumerate(classes)}
    cis = m.single_run_cis(y, None, k, y_pred=pred, n_boot=n_boot, seed=seed)
    summary["threshold_sensitivity"] = sens
    summary["threshold_specificity"] = spec
    summary["threshold_sensitivity_ci"] = dict(zip(classes, cis["sensitivity"], strict=True))
    summary["threshold_specificity_ci"] = dict(zip(classes, cis["specificity"], strict=True))
    summary["confusion_matrix"] = cm.tolist()  # columns: the classes, then "no label"
    summary["confusion_columns"] = [*classes, "no label"]
    both = list(zip(pred_angles, true_angles, strict=True))
    summary["pairs"] = {  # (predicted, true) per film measured on both: the plots' data
        n: [[p[n], t[n]] for p, t in both if p[n] is not None and t[n] is not None] for n in info.measurements
    }
    rows = []
    for s, r, (lm, t), h in zip(films, readings, truths, heights, strict=True):
        row: dict[str, Any] = {"model": model.name, "file": s.rel, "label": s.label}
        row["pred_label"] = r["label"] or ""
        for n in info.measurements:
            row[f"{n}_pred"] = _fmt(r["angles"][n].value)
            row[f"{n}_true"] = _fmt(t[n])
        seen = np.isfinite(lm).all(axis=1) & np.isfinite(r["landmarks"]).all(axis=1)
        err = np.mean(np.hypot(*(r["landmarks"][seen] - lm[seen]).T)) / h if seen.any() else None
        row["landmark_error"] = _fmt(err, 5)
        rows.append(row)
    return {"task": "landmarks", **summary}, rows


def _fmt(v: float | None, digits: int = 3) -> str:
    return "" if v is None or not np.isfinite(v) else f"{float(v):.{digits}f}"


# --- the whole request ----------------------------------------------------------------------------


def validate(config: ValConfig, progress: Progress = QUIET) -> ValResult:
    """Score every model of ``config.models`` on the films of ``config.data`` it applies to."""
    models = load_models(config.models, config.int8, config.device)
    if config.view:
        models = [mo for mo in models if mo.info.view == config.view]
        if not models:
            raise DataError(f"no {config.view} model in {config.models}")
    dataset = load_dataset(config.data, default_view=config.view)
    samples = dataset.samples
    views = sorted({mo.info.view for mo in models})
    if any(s.view == UNSPECIFIED_VIEW for s in samples):
        if len(views) > 1:
            raise DataError(
                f"{config.data} does not say the films' view and the models cover {', '.join(views)}; "
                "pass --view, or put the films under DIR/<view>/<class>/ or in a manifest 'view' column"
            )
        samples = [s if s.view != UNSPECIFIED_VIEW else _with_view(s, views[0]) for s in samples]
    skips = _Skips()
    unscored: dict[str, str] = {}
    for mo in models:
        if mo.info.task == "landmarks" and not any(_has_truth(s, mo) for s in samples):
            unscored[mo.name] = (
                f"{config.data}: {mo.name} is a landmark model and the data has no true angles: it needs a "
                f"manifest with a 'landmarks' column (68 corners, as `spinescan synth` writes) or one of "
                f"{', '.join(mo.info.measurements)}"
            )
    kept = [mo for mo in models if mo.name not in unscored]
    if not kept:
        reasons = "; ".join(unscored.values())
        raise DataError(reasons if len(unscored) == 1 else f"no model can be scored ({reasons})")
    plan = _assign(samples, kept, skips)
    progress.info(f"{len(plan)} of {len(samples)} films to score with {', '.join(mo.name for mo in kept)}")
    outputs = _run(samples, plan, kept, skips, progress)
    figures: dict[str, dict[str, Any]] = {}
    rows: list[dict[str, Any]] = []
    for j, mo in enumerate(kept):
        score = score_landmarks if mo.info.task == "landmarks" else score_classifier
        fig, model_rows = score(mo, samples, outputs[j], config.n_boot, config.seed)
        figures[mo.name] = {"view": mo.info.view, "classes": list(mo.info.classes), **fig}
        rows.extend(model_rows)
    summary = {"n_films": len(samples), "n_scored": len({r["file"] for r in rows}), **skips.to_dict()}
    if unscored:
        summary["models_not_scored"] = unscored
    return ValResult(figures, summary, rows, str(config.data))


def _with_view(sample: Sample, view: str) -> Sample:
    return Sample(sample.path, sample.rel, sample.label, view, sample.patient_id, sample.extra)
