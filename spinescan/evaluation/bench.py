"""The benchmark: train (or reuse) every model on one shared split, evaluate, and answer the question.

Spine Scan exists to answer one question: is a generalist (healthy / kyphosis / lordosis) more
accurate than one specialist per condition? Here every model is trained on the same dataset, split
and seeds (a split is a property of ``(dataset, view, seed)``, see :mod:`spinescan.data.splits`, so a
specialist's test images are exactly the generalist's test images of its two classes), and each
finished run is read back as a :class:`RunRecord`. The paired generalist-vs-specialist study on
those records, and the paragraph answering the question, live in :mod:`spinescan.evaluation.study`.

Winners (one run per model) are chosen on *validation* accuracy, ties broken by time to target,
never on test figures, and written to ``<runs>/winners.json`` for ``spinescan export --onnx``.
Shortcut probes (:mod:`spinescan.evaluation.probes`) and ``--by COLUMN`` subgroup metrics are reported beside
the CNNs. TensorFlow is only imported when a model is trained, loaded or timed.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import statistics
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from spinescan import metrics as m
from spinescan.atomic import atomic_write_json
from spinescan.errors import DataError, SpineScanError
from spinescan.evaluation.study import run_study
from spinescan.training.runs import BENCHMARK

if TYPE_CHECKING:
    from spinescan.data.datasets import Dataset, Sample
    from spinescan.data.splits import Split
    from spinescan.zoo.spec import ModelSpec

DEFAULT_DATA = Path("dataset/phantoms")
DEFAULT_PER_CLASS = 300
WINNERS = "winners.json"


# -- configuration and records ---------------------------------------------------------------------
@dataclass
class BenchConfig:
    """What ``spinescan bench`` was asked to do; ``None`` means "the plugin's default"."""

    models: Sequence[str] = ()
    data: Path | None = None
    seeds: int = 1
    folds: int | None = None
    epochs: int | None = None
    image_size: int | None = None
    out: Path | None = None
    runs_dir: Path = Path("runs")
    reuse: bool = True
    target_accuracy: float | None = None
    backbones: Sequence[str] = ()
    by: str | None = None
    n_boot: int = 1000
    probes: bool = True
    verbose: int = 1
    per_class: int = DEFAULT_PER_CLASS  # size of the default phantom set when it must be generated
    resize: str | None = None  # preprocessing resize override (letterbox | spine_crop)
    pretrain: str | None = None  # "phantoms" or a run dir: fine-tune every run from it (pretrain.py)
    pretrain_per_class: int | None = None  # phantoms per class for --pretrain phantoms
    pretrain_epochs: int | None = None
    pretrain_borderline: float | None = None  # fraction of near-threshold phantoms (pretrain.py default)
    checkpoint: str | None = None  # best | last: which epoch each run keeps (plugin default)

    def __post_init__(self) -> None:
        if self.seeds < 1:
            raise SpineScanError("--seeds must be at least 1")
        if self.folds is not None and self.folds < 2:
            raise SpineScanError("--folds must be at least 2 (or left out for one split per seed)")
        if self.n_boot < 100:
            raise SpineScanError("--bootstrap needs at least 100 replicates")
        self.runs_dir = Path(self.runs_dir)
        self.data = None if self.data is None else Path(self.data)


class Part(NamedTuple):
    """One split's predictions: rel paths, class indices (spec order) and probabilities."""

    files: list[str]
    labels: np.ndarray
    probs: np.ndarray


@dataclass
class RunRecord:
    """One finished run, read back for evaluation."""

    model: str
    backbone: str
    seed: int
    fold: int | None
    run_dir: Path
    classes: tuple[str, ...]
    view: str
    negative_class: str
    val: Part
    test: Part
    info: dict[str, Any] = field(default_factory=dict)  # metrics.json
    reused: bool = False
    spec: Any = None  # the ModelSpec the run was trained with

    @property
    def slot(self) -> tuple[int, int | None]:
        """Runs in the same slot (seed, fold) share one split: the pairing key of the study."""
        return (self.seed, self.fold)

    @property
    def val_accuracy(self) -> float:
        if len(self.val.labels):
            return m.accuracy(self.val.labels, self.val.probs.argmax(axis=1))
        value = (self.info.get("val") or {}).get("accuracy")
        return float("nan") if value is None else float(value)


def _part(files: Sequence[str], labels: Sequence[str], probs: np.ndarray, classes: Sequence[str]) -> Part:
    index = {c: i for i, c in enumerate(classes)}
    unknown = sorted({lab for lab in labels if lab not in index})
    if unknown:
        raise SpineScanError(f"predictions name classes {unknown} that the run's spec does not have")
    return Part(list(files), np.array([index[lab] for lab in labels], dtype=int), np.asarray(probs, float))


def load_record(run_dir: str | Path, reused: bool = False) -> RunRecord:
    """Read a finished run directory (config, metrics and predictions) into a :class:`RunRecord`."""
    from spinescan.training import runs  # noqa: PLC0415

    run = runs.load_run(run_dir)
    if not run.finished:
        raise SpineScanError(f"{run_dir} is not a finished run")
    preds = runs.read_predictions(run_dir)
    empty = ([], [], np.zeros((0, len(run.spec.classes))))
    args = run.config.get("arguments", {})
    fold = run.split.fold if run.split is not None else args.get("fold")
    return RunRecord(
        model=run.spec.name,
        backbone=str(args.get("backbone") or run.metrics.get("backbone") or run.spec.train.backbone),
        seed=int(args.get("seed", 0)),
        fold=fold,
        run_dir=Path(run_dir),
        classes=tuple(run.spec.classes),
        view=run.spec.view,
        negative_class=run.spec.negative_class,
        val=_part(*preds.get("val", empty), run.spec.classes),
        test=_part(*preds.get("test", empty), run.spec.classes),
        info=run.metrics or {},
        reused=reused,
        spec=run.spec,
    )


# -- the models behind the records (prediction on other images, timing) ----------------------------
class ModelAccess:
    """Loads a run's Keras model on demand, to score extra images and to time inference.

    Kept behind one small interface so that the evaluation logic can be tested with fake runs.
    """

    def __init__(self) -> None:
        self._models: dict[Path, Any] = {}

    def _model(self, record: RunRecord) -> Any:
        from spinescan.training import runs  # noqa: PLC0415

        if record.run_dir not in self._models:
            self._models[record.run_dir] = runs.load_model(record.run_dir)
        return self._models[record.run_dir]

    def predict(self, record: RunRecord, samples: Sequence[Sample]) -> np.ndarray:
        from spinescan.training import runs  # noqa: PLC0415

        return runs.predict_probs(self._model(record), samples, record.spec)

    def timing(self, record: RunRecord, samples: Sequence[Sample], n: int = 16) -> dict[str, float | None]:
        """Milliseconds per image: decode + preprocess, and the Keras forward pass at batch 1.

        The forward pass (Keras ``predict_on_batch``, compiled graph) is timed after two warm-up
        calls, as the median of ``n`` single-image calls on this machine's CPU.
        """
        from spinescan.training.pipeline import load_image  # noqa: PLC0415

        samples = list(samples)[:n]
        if not samples or not (record.run_dir / "model.keras").is_file():
            return {"inference_ms": None, "preprocess_ms": None}
        spec = record.spec
        t0 = time.perf_counter()
        x = np.stack([load_image(s.path, spec.input_size, spec.preprocessing) for s in samples])
        prep_ms = (time.perf_counter() - t0) * 1000 / len(samples)
        model = self._model(record)
        for i in range(2):  # the first calls trace and compile the predict function
            model.predict_on_batch(x[i % len(x) : i % len(x) + 1])
        times = []
        for i in range(len(x)):
            t0 = time.perf_counter()
            model.predict_on_batch(x[i : i + 1])
            times.append((time.perf_counter() - t0) * 1000)
        return {"inference_ms": statistics.median(times), "preprocess_ms": prep_ms}

    def release(self) -> None:
        self._models.clear()


# -- small helpers -------------------------------------------------------------------------------------
def jsonable(obj: Any) -> Any:
    """numpy scalars/arrays to Python, NaN/inf to None: leaderboard.json must be strict JSON."""
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return jsonable(obj.tolist())
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        value = float(obj)
        return None if math.isnan(value) or math.isinf(value) else round(value, 6)
    if isinstance(obj, Path):
        return obj.as_posix()
    return obj


def _mean(values: Sequence[float | None]) -> float | None:
    clean = [float(v) for v in values if v is not None and not math.isnan(float(v))]
    return float(np.mean(clean)) if clean else None


def column_value(sample: Sample, column: str) -> str | None:
    """A sample's value for ``--by COLUMN``: a manifest column, or label / view / patient_id."""
    if column in ("label", "view", "patient_id"):
        return getattr(sample, column)
    value = sample.extra.get(column)
    return None if value in (None, "") else str(value)


# -- metrics of a group of runs ----------------------------------------------------------------------
def evaluate_parts(
    parts: Sequence[tuple[np.ndarray, np.ndarray]], classes: Sequence[str], n_boot: int, seed: int = 0
) -> dict[str, Any]:
    """Point metrics (mean, SD, worst over runs), bootstrap CIs, pooled confusion / ROC / calibration.

    ``parts`` holds one ``(labels, probs)`` per run (seed or fold), each on its own test set.
    """
    parts = [(np.asarray(y, int), np.asarray(p, float)) for y, p in parts if len(y)]
    if not parts:
        return {"n_runs": 0, "n_test": 0, "n_test_total": 0}
    per_run = [m.classification_report(y, p, classes) for y, p in parts]
    sizes = [len(y) for y, _ in parts]
    out: dict[str, Any] = {"n_runs": len(parts), "n_test": float(np.mean(sizes)), "n_test_total": sum(sizes)}
    cis = m.metric_cis(parts, len(classes), n_boot=n_boot, seed=seed)
    for name in (*m.CI_METRICS, "ece"):
        s = m.summarize([r[name] for r in per_run])
        out[name], out[f"{name}_sd"], out[f"{name}_worst"] = s["mean"], s["sd"], s["worst"]
        if name in cis:
            out[f"{name}_ci"] = list(cis[name])
    out["sensitivity"] = {c: _mean([r["sensitivity"][c] for r in per_run]) for c in classes}
    out["specificity"] = {c: _mean([r["specificity"][c] for r in per_run]) for c in classes}
    out["auc_per_class"] = {c: _mean([r["auc_per_class"][c] for r in per_run]) for c in classes}
    y_all = np.concatenate([y for y, _ in parts])
    p_all = np.concatenate([p for _, p in parts])
    out["confusion_matrix"] = np.sum([r["confusion_matrix"] for r in per_run], axis=0).tolist()
    out["class_counts"] = {c: int((y_all == i).sum()) for i, c in enumerate(classes)}
    ece_pooled, bins = m.calibration(y_all, p_all)
    out["ece_pooled"] = ece_pooled
    out["reliability"] = [b.__dict__ for b in bins]
    roc = {}
    for i, c in enumerate(classes):
        if len(classes) == 2 and i == 0:
            continue  # a binary model's two one-vs-rest curves mirror each other: show the positive
        fpr, tpr = m.roc_curve(y_all == i, p_all[:, i])
        roc[c] = {
            "fpr": np.round(fpr, 4).tolist(),
            "tpr": np.round(tpr, 4).tolist(),
            "auc": m.roc_auc(y_all == i, p_all[:, i]),
        }
    out["roc"] = roc
    out["per_run"] = per_run
    return out


def _subgroups(
    parts: Sequence[Part], classes: Sequence[str], values: dict[str, str], n_boot: int
) -> dict[str, dict[str, Any]]:
    """:func:`evaluate_parts` restricted to each value of the ``--by`` column."""
    groups: dict[str, dict[str, Any]] = {}
    for value in sorted(set(values.values())):
        sub = []
        for part in parts:
            rows = [i for i, f in enumerate(part.files) if values.get(f) == value]
            if rows:
                sub.append((part.labels[rows], part.probs[rows]))
        if sub:
            res = evaluate_parts(sub, classes, n_boot)
            for heavy in ("roc", "reliability", "per_run"):
                res.pop(heavy, None)
            groups[value] = res
    return groups


# -- winners -------------------------------------------------------------------------------------------
def _winner_key(record: RunRecord) -> tuple[float, float, float, str]:
    val = record.val_accuracy
    to_target = record.info.get("seconds_to_target")
    return (
        -val if not math.isnan(val) else math.inf,
        math.inf if to_target is None else float(to_target),
        float(record.info.get("train_seconds") or math.inf),
        record.run_dir.as_posix(),
    )


def choose_winners(records: Sequence[RunRecord]) -> dict[str, RunRecord]:
    """Per model: the best validation accuracy; ties go to the fewer seconds to target.

    Test predictions are deliberately not consulted: choosing on test would make the reported
    test figures optimistic.
    """
    by_model: dict[str, list[RunRecord]] = {}
    for r in records:
        by_model.setdefault(r.model, []).append(r)
    return {model: min(rs, key=_winner_key) for model, rs in sorted(by_model.items())}


def write_winners(runs_dir: Path, winners: dict[str, RunRecord]) -> Path:
    """Merge this benchmark's winners into ``<runs>/winners.json`` (other models keep theirs)."""
    path = Path(runs_dir) / WINNERS
    current: dict[str, str] = {}
    if path.is_file():
        with contextlib.suppress(OSError, json.JSONDecodeError):
            loaded = json.loads(path.read_text(encoding="utf-8"))
            current = (
                {k: v for k, v in loaded.items() if isinstance(v, str)} if isinstance(loaded, dict) else {}
            )
    current.update({model: r.run_dir.as_posix() for model, r in winners.items()})
    return atomic_write_json(path, dict(sorted(current.items())))


FIGURE_KEYS = ("n_runs", "n_test_total", "accuracy", "accuracy_sd", "accuracy_worst", "accuracy_ci", "auc",
               "auc_sd", "auc_worst", "auc_ci", "balanced_accuracy", "balanced_accuracy_ci")  # fmt: skip


def _figures(entry: dict[str, Any]) -> dict[str, Any]:
    return {k: entry.get(k) for k in FIGURE_KEYS}


def evidence_for(leaderboard: dict[str, Any], model_entry: dict[str, Any], leaderboard_path: Path) -> dict:
    """What a winning run carries about the benchmark that chose it (its model card quotes it).

    The winner's own test split is one fold of one seed; the honest figures are the benchmark's
    across every fold and seed, per subgroup, beside the shortcut probes of the same task.
    """
    task = model_entry["key"]
    probes = [p for p in leaderboard.get("probes", []) if p.get("task") in (task, model_entry["name"])]
    protocol = leaderboard.get("protocol", {})
    return {
        "leaderboard": Path(leaderboard_path).as_posix(),
        "report": leaderboard.get("report"),
        "created": leaderboard.get("created"),
        "dataset": leaderboard.get("dataset", {}).get("root"),
        "synthetic": leaderboard.get("dataset", {}).get("synthetic"),
        "protocol": {k: protocol.get(k) for k in ("seeds", "folds", "resize", "pretrain", "by")},
        "figures": _figures(model_entry),
        "subgroups": {name: _figures(g) for name, g in (model_entry.get("subgroups") or {}).items()},
        "probes": [
            {
                "probe": p["probe"],
                "features": p.get("features"),
                "figures": _figures(p),
                "subgroups": {name: _figures(g) for name, g in (p.get("subgroups") or {}).items()},
            }
            for p in probes
        ],
    }


def record_evidence(leaderboard: dict[str, Any], leaderboard_path: Path) -> None:
    """Write ``benchmark.json`` into each winning run (atomically; a later benchmark replaces it)."""
    for entry in leaderboard.get("models", []):
        if entry.get("winner") and entry.get("winner_run"):
            run_dir = Path(entry["winner_run"])
            if run_dir.is_dir():
                atomic_write_json(run_dir / BENCHMARK, evidence_for(leaderboard, entry, leaderboard_path))


# -- evaluation of all records -------------------------------------------------------------------------
def entry_key(model: str, backbone: str, several_backbones: bool) -> str:
    return f"{model}@{backbone}" if several_backbones else model


def evaluate(
    records: Sequence[RunRecord],
    *,
    specs: Sequence[ModelSpec],
    samples: dict[str, Sample] | None = None,
    access: ModelAccess | None = None,
    n_boot: int = 1000,
    by: str | None = None,
    probe_features: Callable[[Sequence[Sample]], np.ndarray] | None = None,
    synthetic: bool = False,
    dataset_desc: str = "the test split",
    echo: Callable[[str], None] = lambda _msg: None,
) -> dict[str, Any]:
    """Everything after training: leaderboard entries, probes, subgroups, study and winners.

    ``samples`` maps rel paths to dataset samples (needed for subgroups, probes, timing and the
    deployment comparison); ``access`` loads models (timing, specialists on other classes' images).
    """
    samples = samples or {}
    several = len({r.backbone for r in records}) > 1
    winners = choose_winners(records)
    groups: dict[tuple[str, str], list[RunRecord]] = {}
    for r in records:
        groups.setdefault((r.model, r.backbone), []).append(r)
    by_values: dict[str, str] = {}
    if by:
        by_values = {rel: v for rel, s in samples.items() if (v := column_value(s, by)) is not None}
        if samples and not by_values:
            raise DataError(f"no image has a value in column {by!r}; {_columns_hint(samples.values())}")

    entries = []
    for (model, backbone), rs in sorted(groups.items()):
        key = entry_key(model, backbone, several)
        empty = [r for r in rs if not len(r.test.labels)]
        for r in empty:
            echo(f"{key}: {r.run_dir} has no test predictions; left out of the leaderboard")
        rs = sorted((r for r in rs if len(r.test.labels)), key=lambda r: (r.seed, r.fold or 0))
        if not rs:
            continue
        echo(f"evaluating {key} ({len(rs)} run{'s' if len(rs) > 1 else ''})")
        first = rs[0]
        res = evaluate_parts([(r.test.labels, r.test.probs) for r in rs], first.classes, n_boot)
        per_run = res.pop("per_run", [])
        best_in_entry = min(rs, key=_winner_key)
        timing = {"inference_ms": None, "preprocess_ms": None}
        if access is not None and samples:
            timing = access.timing(
                best_in_entry, [samples[f] for f in best_in_entry.test.files if f in samples]
            )
        reached = [r.info.get("epochs_to_target") is not None for r in rs]
        entry = {
            "key": key,
            "name": model,
            "backbone": backbone,
            "view": first.view,
            "classes": list(first.classes),
            **res,
            "val_accuracy": _mean([r.val_accuracy for r in rs]),
            "train_seconds": _mean([r.info.get("train_seconds") for r in rs]),
            "seconds_to_target": _mean([r.info.get("seconds_to_target") for r in rs]),
            "epochs_to_target": _mean([r.info.get("epochs_to_target") for r in rs]),
            "target_accuracy": first.info.get("target_accuracy"),
            "reached_target": f"{sum(reached)}/{len(rs)} runs",
            "params": first.info.get("params"),
            **timing,
            "winner": winners[model] in rs,
            "winner_run": winners[model].run_dir.as_posix() if winners[model] in rs else None,
            "runs": [
                {
                    "run_dir": r.run_dir.as_posix(),
                    "seed": r.seed,
                    "fold": r.fold,
                    "reused": r.reused,
                    "n_test": rep["n"],
                    "accuracy": rep["accuracy"],
                    "balanced_accuracy": rep["balanced_accuracy"],
                    "macro_f1": rep["macro_f1"],
                    "auc": rep["auc"],
                    "ece": rep["ece"],
                    "sensitivity": rep["sensitivity"],
                    "specificity": rep["specificity"],
                    "confusion_matrix": rep["confusion_matrix"],
                    "val_accuracy": r.val_accuracy,
                    **{
                        k: r.info.get(k)
                        for k in (
                            "train_seconds",
                            "seconds_to_target",
                            "epochs_to_target",
                            "best_epoch",
                            "epochs_run",
                            "params",
                        )
                    },
                }
                for r, rep in zip(rs, per_run, strict=True)
            ],
        }
        if by:
            entry["subgroups"] = _subgroups([r.test for r in rs], first.classes, by_values, n_boot)
        entries.append(entry)

    probes = _probe_entries(groups, several, samples, probe_features, n_boot, by_values if by else None, echo)

    def predict(record: RunRecord, files: Sequence[str]) -> np.ndarray:
        own = {f: i for i, f in enumerate(record.test.files)}
        if all(f in own for f in files):
            return record.test.probs[[own[f] for f in files]]
        return access.predict(record, [samples[f] for f in files])

    study = None
    can_predict = access is not None and bool(samples)
    for backbone in sorted({r.backbone for r in records}):
        subset = [r for r in records if r.backbone == backbone]
        study = run_study(subset, specs, predict if can_predict else None, n_boot, synthetic, dataset_desc)
        if study:
            break
    return {"models": entries, "probes": probes, "study": study, "winners": winners}


def _columns_hint(samples: Iterator[Sample] | Any) -> str:
    cols = sorted({k for s in samples for k in s.extra})
    return f"columns available: {', '.join(['label', 'view', 'patient_id', *cols])}"


def _probe_entries(
    groups: dict[tuple[str, str], list[RunRecord]],
    several: bool,
    samples: dict[str, Sample],
    probe_features: Callable[[Sequence[Sample]], np.ndarray] | None,
    n_boot: int,
    by_values: dict[str, str] | None,
    echo: Callable[[str], None],
) -> list[dict[str, Any]]:
    """Shortcut probes per task, scored on the same test images as the CNN of that task."""
    if probe_features is None or not samples:
        return []
    from spinescan.evaluation.probes import run_probes  # noqa: PLC0415

    entries = []
    cache: dict[tuple[str, tuple[str, ...]], list[Any]] = {}
    for (model, backbone), rs in sorted(groups.items()):
        first = rs[0]
        task = (first.view, first.classes)
        if task not in cache:
            task_samples = [s for s in samples.values() if s.view == first.view and s.label in first.classes]
            task_samples.sort(key=lambda s: s.rel)
            echo(f"shortcut probes for {model} ({len(task_samples)} images)")
            feats = probe_features(task_samples)
            labels = [first.classes.index(s.label) for s in task_samples]
            cache[task] = run_probes(
                [s.rel for s in task_samples],
                labels,
                feats,
                first.classes,
                groups=[s.patient_id for s in task_samples],
            )
        for probe in cache[task]:
            parts = []
            for r in rs:
                y, p = probe.subset(r.test.files)
                parts.append(Part([f for f in r.test.files if f in probe.index], y, p))
            res = evaluate_parts([(pt.labels, pt.probs) for pt in parts], first.classes, n_boot)
            for heavy in ("roc", "reliability", "per_run"):
                res.pop(heavy, None)
            entry = {
                "key": f"probe:{probe.name}:{entry_key(model, backbone, several)}",
                "name": f"shortcut probe ({probe.name})",
                "probe": probe.name,
                "task": entry_key(model, backbone, several),
                "features": list(probe.features),
                "classes": list(first.classes),
                "cv_folds": probe.folds,
                **res,
            }
            if by_values is not None:
                entry["subgroups"] = _subgroups(parts, first.classes, by_values, n_boot)
            entries.append(entry)
    return entries


# -- training -------------------------------------------------------------------------------------------
@dataclass
class Job:
    model: str
    backbone: str | None
    seed: int
    split: Split | None
    label: str


def resolve_specs(
    names: Sequence[str], dataset: Dataset | None, echo: Callable[[str], None]
) -> list[ModelSpec]:
    """The requested specs (default: every registered model whose view and classes have images)."""
    from spinescan.zoo.registry import get_spec, list_models  # noqa: PLC0415

    if names:
        return [get_spec(n) for n in dict.fromkeys(names)]
    specs = list_models()
    if dataset is None:
        return specs
    usable = []
    for spec in specs:
        have = set(dataset.select(view=spec.view).labels())
        missing = [c for c in spec.classes if c not in have]
        if missing:
            echo(f"skipping {spec.name}: no {spec.view} images of {', '.join(missing)} in {dataset.root}")
        else:
            usable.append(spec)
    if not usable:
        raise DataError(f"no registered model can be trained on {dataset.root}")
    return usable


def plan_jobs(config: BenchConfig, specs: Sequence[ModelSpec], dataset: Dataset) -> list[Job]:
    """One job per model x backbone x seed (x fold); folds come from the whole view's images."""
    from spinescan.data.splits import kfold_splits  # noqa: PLC0415

    jobs = []
    fold_cache: dict[tuple[str, int], list[Split]] = {}
    backbones: Sequence[str | None] = list(config.backbones) or [None]
    for spec in specs:
        for backbone in backbones:
            for seed in range(config.seeds):
                if not config.folds:
                    jobs.append(Job(spec.name, backbone, seed, None, f"{spec.name} seed {seed}"))
                    continue
                key = (spec.view, seed)
                if key not in fold_cache:
                    view_samples = dataset.select(view=spec.view).samples
                    fold_cache[key] = kfold_splits(view_samples, config.folds, seed)
                for split in fold_cache[key]:
                    label = f"{spec.name} seed {seed} fold {split.fold + 1}/{config.folds}"
                    jobs.append(Job(spec.name, backbone, seed, split, label))
    for job in jobs:
        if job.backbone:
            job.label += f" [{job.backbone}]"
    return jobs


def _train_config(config: BenchConfig, job: Job, data: Path) -> Any:
    from spinescan.training.loop import TrainConfig  # noqa: PLC0415

    return TrainConfig(
        model=job.model,
        data=data,
        epochs=config.epochs,
        image_size=config.image_size,
        seed=job.seed,
        runs_dir=config.runs_dir,
        target_accuracy=config.target_accuracy,
        backbone=job.backbone,
        split=job.split,
        verbose=config.verbose,
        resize=config.resize,
        checkpoint=config.checkpoint,
    )


def train_or_reuse(
    config: BenchConfig, jobs: Sequence[Job], data: Path, echo: Callable[[str], None]
) -> list[tuple[Path, bool]]:
    """Run every job, reusing a finished equivalent run when one exists (``reuse``)."""
    from spinescan.training.loop import train  # noqa: PLC0415
    from spinescan.training.runs import find_matching_run  # noqa: PLC0415

    done = []
    pretrained: dict[str, Path] = {}  # model -> pretrain run dir, resolved once for all folds/seeds
    for i, job in enumerate(jobs, 1):
        tc = _train_config(config, job, data)
        if config.pretrain:
            if job.model not in pretrained:
                pretrained[job.model] = _pretrain_run(config, tc, echo)
            tc.init_from = pretrained[job.model]
        match = find_matching_run(config.runs_dir, tc) if config.reuse else None
        if match is not None:
            echo(f"[{i}/{len(jobs)}] {job.label}: reusing {match}")
            done.append((Path(match), True))
            continue
        echo(f"[{i}/{len(jobs)}] {job.label}: training")
        # Each run builds fresh models and tf.functions; free the previous run's graph state so
        # memory stays flat and TensorFlow does not warn about retracing across runs.
        import keras  # noqa: PLC0415

        keras.backend.clear_session()
        t0 = time.perf_counter()
        if config.pretrain:
            from spinescan.training.pretrain import finetune  # noqa: PLC0415

            result = finetune(tc, tc.init_from)
        else:
            result = train(tc)
        echo(f"[{i}/{len(jobs)}] {job.label}: done in {time.perf_counter() - t0:.0f} s -> {result.run_dir}")
        done.append((Path(result.run_dir), False))
    return done


def _pretrain_run(config: BenchConfig, tc: Any, echo: Callable[[str], None]) -> Path:
    from spinescan.training import pretrain  # noqa: PLC0415

    phantoms = pretrain.PhantomStage.from_options(
        config.pretrain_per_class, config.pretrain_epochs, config.pretrain_borderline, reuse=config.reuse
    )
    return pretrain.resolve_pretrain(tc, config.pretrain, phantoms, echo)


def default_dataset(config: BenchConfig, echo: Callable[[str], None]) -> Path:
    """``dataset/phantoms``, rendered first if it does not exist yet."""
    root = DEFAULT_DATA
    if (root / "manifest.csv").is_file():
        echo(f"No --data given: using the embedded synthetic phantoms in {root}")
        return root
    from spinescan.synth import generate  # noqa: PLC0415

    echo(
        f"No --data given and {root} does not exist: generating the default synthetic phantom set "
        f"({config.per_class} images per class, both views) first"
    )
    generate(root, per_class=config.per_class, seed=0, workers=min(4, os.cpu_count() or 1), progress=True)
    return root


def _is_synthetic(dataset: Dataset, default: bool) -> bool:
    """The default set, or a manifest with the phantom generator's ground-truth columns."""
    return default or any("landmarks" in s.extra and "cobb_deg" in s.extra for s in dataset.samples[:1])


@contextlib.contextmanager
def _stdout_to_stderr(enabled: bool) -> Iterator[None]:
    """Keep stdout clean for ``--json``: Keras progress bars print to stdout."""
    if not enabled:
        yield
        return
    with contextlib.redirect_stdout(sys.stderr):
        yield


def run_benchmark(
    config: BenchConfig, echo: Callable[[str], None] | None = None, quiet_stdout: bool = False
) -> dict[str, Any]:
    """Train or reuse, evaluate, choose winners, write the report; returns the leaderboard."""
    from spinescan import __version__  # noqa: PLC0415
    from spinescan.data.datasets import load_dataset  # noqa: PLC0415
    from spinescan.evaluation.report import write_report  # noqa: PLC0415

    echo = echo or (lambda msg: print(msg, file=sys.stderr))
    started = time.perf_counter()
    is_default = config.data is None
    data = default_dataset(config, echo) if is_default else Path(config.data)
    if not data.exists():
        raise DataError(f"dataset folder {data} does not exist")
    dataset = load_dataset(data)
    if config.by and not any(column_value(s, config.by) is not None for s in dataset.samples):
        # Checked before training, not after an hour of it.
        raise DataError(
            f"--by {config.by}: no image has a value in that column; {_columns_hint(dataset.samples)}"
        )
    specs = resolve_specs(config.models, dataset, echo)
    jobs = plan_jobs(config, specs, dataset)
    echo(
        f"benchmark: {len(specs)} model(s) x {config.seeds} seed(s)"
        + (f" x {config.folds} folds" if config.folds else "")
        + f" = {len(jobs)} run(s) on {data}"
    )
    with _stdout_to_stderr(quiet_stdout):
        done = train_or_reuse(config, jobs, data, echo)
    records = [load_record(run_dir, reused) for run_dir, reused in done]
    samples = {s.rel: s for s in dataset.samples}
    synthetic = _is_synthetic(dataset, is_default)
    views = sorted({r.view for r in records})
    desc = f"the {'/'.join(views)} test split of {data}" + (" (synthetic phantoms)" if synthetic else "")
    access = ModelAccess()
    with _stdout_to_stderr(quiet_stdout):
        result = evaluate(
            records,
            specs=specs,
            samples=samples,
            access=access,
            n_boot=config.n_boot,
            by=config.by,
            probe_features=_feature_reader(echo) if config.probes else None,
            synthetic=synthetic,
            dataset_desc=desc,
            echo=echo,
        )
    access.release()
    winners_file = write_winners(config.runs_dir, result["winners"])
    out = Path(config.out) if config.out else Path("reports") / datetime.now().strftime("%Y%m%d-%H%M%S")
    leaderboard = {
        "schema": 1,
        "created": datetime.now().isoformat(timespec="seconds"),
        "spinescan_version": __version__,
        "dataset": {
            "root": data.as_posix(),
            "default": is_default,
            "synthetic": synthetic,
            "layout": dataset.layout,
            "counts": dataset.counts(),
        },
        "protocol": {
            "models": [s.name for s in specs],
            "seeds": list(range(config.seeds)),
            "folds": config.folds,
            "epochs": config.epochs,
            "image_size": config.image_size,
            "backbones": list(config.backbones),
            "resize": config.resize,
            "pretrain": config.pretrain,
            "target_accuracy": config.target_accuracy,
            "n_boot": config.n_boot,
            "ci_level": 0.95,
            "by": config.by,
            "split": "stratified by class, grouped by patient, computed per (dataset, view, seed); "
            "every model of a view sees the same test images for a seed (or fold)",
            "winner_rule": "highest validation accuracy; ties: fewer seconds to target, then less training",
        },
        "models": result["models"],
        "probes": result["probes"],
        "study": result["study"],
        "winners": {k: v.run_dir.as_posix() for k, v in result["winners"].items()},
        "winners_file": winners_file.as_posix(),
        "elapsed_seconds": time.perf_counter() - started,
        "notes": _notes(result, synthetic),
    }
    leaderboard = jsonable(leaderboard)
    paths = write_report(leaderboard, out)
    leaderboard["elapsed_seconds"] = round(time.perf_counter() - started, 1)
    atomic_write_json(paths["leaderboard"], leaderboard)
    leaderboard["report"] = paths["report"].as_posix()
    record_evidence(leaderboard, paths["leaderboard"])
    echo(f"report: {paths['report']}  (leaderboard: {paths['leaderboard']}, winners: {winners_file})")
    return leaderboard


def _feature_reader(echo: Callable[[str], None]) -> Callable[[Sequence[Sample]], np.ndarray]:
    import click  # noqa: PLC0415

    from spinescan.evaluation.probes import features_for  # noqa: PLC0415

    def read(samples: Sequence[Sample]) -> np.ndarray:
        with click.progressbar(
            length=len(samples), label="probe features", file=click.get_text_stream("stderr")
        ) as bar:
            return features_for([s.path for s in samples], progress=bar.update)

    return read


def _notes(result: dict[str, Any], synthetic: bool) -> list[str]:
    notes = [
        "Accuracy, balanced accuracy, macro-F1 and the confusion matrix use the argmax decision; "
        "AUC is one-vs-rest (for 2 classes, the positive class); ECE uses 10 equal-width bins of "
        "top-class confidence.",
        "Inference ms / image: Keras forward pass (predict_on_batch) at batch 1 on the CPU that ran "
        "the benchmark, median of 16 calls after warm-up, preprocessing excluded (reported separately "
        "as preprocess_ms); other load on the machine inflates it.",
    ]
    if synthetic:
        notes.append("The dataset is synthetic: figures describe phantoms, not patients.")
    for probe in result["probes"]:
        for entry in result["models"]:
            if probe["task"] != entry["key"] or probe.get("accuracy") is None or not entry.get("accuracy"):
                continue
            if probe["accuracy"] >= entry["accuracy"] - 0.05:
                notes.append(
                    f"{entry['key']}: the {probe['probe']} shortcut probe scores {probe['accuracy']:.3f} "
                    f"against the CNN's {entry['accuracy']:.3f} (not 0.05 or more below it): the CNN "
                    "has not shown that it reads more than the film's framing and exposure."
                )
    return notes
