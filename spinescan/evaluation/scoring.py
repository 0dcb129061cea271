"""Scoring a benchmark's records: metrics per model (mean, SD, worst, bootstrap CIs), subgroups,
shortcut probes on the same test images, winners, and the paired study (:mod:`.study`).

Winners (one run per model) are chosen on *validation* accuracy, ties broken by time to target,
never on test figures. Classification-specific: a second task would score beside this module.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from spinescan import metrics as m
from spinescan.errors import DataError
from spinescan.evaluation.leaderboard import ModelEntry, ProbeEntry, RunEntry
from spinescan.evaluation.records import ModelAccess, Part, RunRecord
from spinescan.evaluation.study import run_study
from spinescan.progress import QUIET, Progress
from spinescan.training.runs import kept_epoch

if TYPE_CHECKING:
    from spinescan.data.datasets import Sample
    from spinescan.zoo.spec import ModelSpec


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


# -- evaluation of all records -------------------------------------------------------------------------
def entry_key(model: str, backbone: str, several_backbones: bool) -> str:
    return f"{model}@{backbone}" if several_backbones else model


@dataclass(frozen=True)
class Evaluation:
    """Everything after training: typed leaderboard entries, probes, the study and the winners."""

    models: tuple[ModelEntry, ...]
    probes: tuple[ProbeEntry, ...]
    study: dict[str, Any] | None
    winners: dict[str, RunRecord]


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
    progress: Progress = QUIET,
) -> Evaluation:
    """Leaderboard entries, probes, subgroups, study and winners of ``records``.

    ``samples`` maps rel paths to dataset samples (needed for subgroups, probes, timing and the
    deployment comparison); ``access`` loads models (timing, specialists on other classes' images).
    """
    samples = samples or {}
    several = len({r.backbone for r in records}) > 1
    winners = choose_winners(records)
    groups: dict[tuple[str, str], list[RunRecord]] = {}
    for r in records:
        groups.setdefault((r.model, r.backbone), []).append(r)
    by_values: dict[str, str] | None = None
    if by:
        by_values = {rel: v for rel, s in samples.items() if (v := column_value(s, by)) is not None}
        if samples and not by_values:
            raise DataError(f"no image has a value in column {by!r}; {columns_hint(samples.values())}")
    entries = []
    for (model, backbone), rs in sorted(groups.items()):
        key = entry_key(model, backbone, several)
        for r in rs:
            if not len(r.test.labels):
                progress.info(f"{key}: {r.run_dir} has no test predictions; left out of the leaderboard")
        rs = sorted((r for r in rs if len(r.test.labels)), key=lambda r: (r.seed, r.fold or 0))
        if rs:
            progress.info(f"evaluating {key} ({len(rs)} run{'s' if len(rs) > 1 else ''})")
            entries.append(_model_entry(key, rs, winners[model], samples, access, n_boot, by_values))
    probes = _probe_entries(groups, several, samples, probe_features, n_boot, by_values, progress)
    study = _study(records, specs, samples, access, n_boot, synthetic, dataset_desc)
    return Evaluation(tuple(entries), tuple(probes), study, winners)


def _model_entry(
    key: str,
    rs: list[RunRecord],
    winner: RunRecord,
    samples: dict[str, Sample],
    access: ModelAccess | None,
    n_boot: int,
    by_values: dict[str, str] | None,
) -> ModelEntry:
    first = rs[0]
    scores = evaluate_parts([(r.test.labels, r.test.probs) for r in rs], first.classes, n_boot)
    per_run = scores.pop("per_run", [])
    timing: dict[str, float | None] = {"inference_ms": None, "preprocess_ms": None}
    if access is not None and samples:
        best_in_entry = min(rs, key=_winner_key)
        timing = access.timing(best_in_entry, [samples[f] for f in best_in_entry.test.files if f in samples])
    reached = [r.info.get("epochs_to_target") is not None for r in rs]
    return ModelEntry(
        key=key,
        name=first.model,
        backbone=first.backbone,
        view=first.view,
        classes=tuple(first.classes),
        scores=scores,
        val_accuracy=_mean([r.val_accuracy for r in rs]),
        train_seconds=_mean([r.info.get("train_seconds") for r in rs]),
        seconds_to_target=_mean([r.info.get("seconds_to_target") for r in rs]),
        epochs_to_target=_mean([r.info.get("epochs_to_target") for r in rs]),
        target_accuracy=first.info.get("target_accuracy"),
        reached_target=f"{sum(reached)}/{len(rs)} runs",
        params=first.info.get("params"),
        inference_ms=timing["inference_ms"],
        preprocess_ms=timing["preprocess_ms"],
        winner=winner in rs,
        winner_run=winner.run_dir.as_posix() if winner in rs else None,
        runs=tuple(_run_entry(r, rep) for r, rep in zip(rs, per_run, strict=True)),
        subgroups=None
        if by_values is None
        else _subgroups([r.test for r in rs], first.classes, by_values, n_boot),
    )


def _run_entry(r: RunRecord, rep: dict[str, Any]) -> RunEntry:
    return RunEntry(
        run_dir=r.run_dir.as_posix(),
        seed=r.seed,
        fold=r.fold,
        reused=r.reused,
        n_test=rep["n"],
        **{k: rep[k] for k in ("accuracy", "balanced_accuracy", "macro_f1", "auc", "ece")},
        **{k: rep[k] for k in ("sensitivity", "specificity", "confusion_matrix")},
        val_accuracy=r.val_accuracy,
        train_seconds=r.info.get("train_seconds"),
        seconds_to_target=r.info.get("seconds_to_target"),
        epochs_to_target=r.info.get("epochs_to_target"),
        kept_epoch=kept_epoch(r.info),
        epochs_run=r.info.get("epochs_run"),
        params=r.info.get("params"),
    )


def _study(
    records: Sequence[RunRecord],
    specs: Sequence[ModelSpec],
    samples: dict[str, Sample],
    access: ModelAccess | None,
    n_boot: int,
    synthetic: bool,
    dataset_desc: str,
) -> dict[str, Any] | None:
    """The paired generalist-vs-specialist study, on the first backbone that has both."""

    def predict(record: RunRecord, files: Sequence[str]) -> np.ndarray:
        own = {f: i for i, f in enumerate(record.test.files)}
        if all(f in own for f in files):
            return record.test.probs[[own[f] for f in files]]
        return access.predict(record, [samples[f] for f in files])

    can_predict = access is not None and bool(samples)
    for backbone in sorted({r.backbone for r in records}):
        subset = [r for r in records if r.backbone == backbone]
        study = run_study(subset, specs, predict if can_predict else None, n_boot, synthetic, dataset_desc)
        if study:
            return study
    return None


def columns_hint(samples: Iterator[Sample] | Any) -> str:
    cols = sorted({k for s in samples for k in s.extra})
    return f"columns available: {', '.join(['label', 'view', 'patient_id', *cols])}"


def _probe_entries(
    groups: dict[tuple[str, str], list[RunRecord]],
    several: bool,
    samples: dict[str, Sample],
    probe_features: Callable[[Sequence[Sample]], np.ndarray] | None,
    n_boot: int,
    by_values: dict[str, str] | None,
    progress: Progress,
) -> list[ProbeEntry]:
    """Shortcut probes per task, scored on the same test images as the CNN of that task."""
    if probe_features is None or not samples:
        return []
    from spinescan.evaluation.probes import run_probes

    entries = []
    cache: dict[tuple[str, tuple[str, ...]], list[Any]] = {}
    for (model, backbone), rs in sorted(groups.items()):
        first = rs[0]
        task = (first.view, first.classes)
        if task not in cache:
            task_samples = [s for s in samples.values() if s.view == first.view and s.label in first.classes]
            task_samples.sort(key=lambda s: s.rel)
            progress.info(f"shortcut probes for {model} ({len(task_samples)} images)")
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
            task_key = entry_key(model, backbone, several)
            entries.append(
                ProbeEntry(
                    key=f"probe:{probe.name}:{task_key}",
                    name=f"shortcut probe ({probe.name})",
                    probe=probe.name,
                    task=task_key,
                    features=tuple(probe.features),
                    classes=tuple(first.classes),
                    cv_folds=probe.folds,
                    scores=res,
                    subgroups=None
                    if by_values is None
                    else _subgroups(parts, first.classes, by_values, n_boot),
                )
            )
    return entries
