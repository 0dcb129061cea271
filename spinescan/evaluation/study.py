"""The generalist-vs-specialist study: is one generalist more accurate than one specialist per condition?

Spine Scan exists to answer that question, and this module answers it. The original notebook
compared a 3-class model with 2-class models at different chance levels, on different images,
without confidence intervals. Here the study reads the
:class:`~spinescan.evaluation.records.RunRecord` objects
that :mod:`spinescan.evaluation.bench` produces: every model was trained on the same dataset, split and seeds,
so a specialist's test images are exactly the generalist's test images of its two classes, and the
comparison is *paired* on the same test images:

* **specialist vs generalist**, on the test images of the specialist's two classes. The
  generalist's 3-class output is mapped to the specialist's binary decision by
  :data:`MAPPING`: it says "positive" iff its argmax is the specialist's positive class.
* **the deployment question**: the specialists combined into one 3-class decision by
  :data:`COMBINATION_RULE`, against the generalist's argmax on the full 3-class test set.

Each comparison reports the accuracy difference with a paired bootstrap CI and an exact McNemar
test (pooled over runs as :data:`POOLING` says).

The question has a second half, as the original notebook asked it: which approach reaches a
satisfactory accuracy *faster*. :func:`time_to_target` compares, run slot by run slot, the
generalist's training time until its validation accuracy first reached its target with the
specialists' *combined* time to theirs (:data:`TIME_RULE`). :func:`answer` writes the paragraph
answering both halves from those numbers.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from spinescan import metrics as m
from spinescan.evaluation.study_answer import answer

if TYPE_CHECKING:
    from spinescan.evaluation.records import RunRecord
    from spinescan.zoo.spec import ModelSpec

MAPPING = (
    "The generalist's 3-class output becomes the specialist's binary decision by its argmax: "
    "'positive' (the specialist's condition) iff the generalist's most probable class is that "
    "condition; an image it calls the *other* condition counts as 'not this condition'. Both "
    "models are scored on exactly the same test images: those of the specialist's two classes."
)
COMBINATION_RULE = (
    "Each specialist gives P(its condition). If any specialist's probability exceeds 0.5, the "
    "image gets the condition of the most confident one; otherwise it is called healthy (the "
    "negative class). This 3-class decision is scored against the generalist's argmax on the full "
    "3-class test set (every test image of the generalist's classes)."
)
TIME_RULE = (
    "Time to target: the training seconds until a model's validation accuracy first reached its "
    "own target (HParams.target_accuracy, recorded in metrics.json). The specialists' time is the "
    "sum of theirs (they are trained one after another; each must reach its target), paired with "
    "the generalist's run of the same seed and fold. Medians over the runs where every model "
    "reached its target; a run where one did not counts as not reached."
)
POOLING = (
    "With several seeds or folds, accuracies are means over runs, the difference CI resamples each "
    "run's paired images independently (stratified by true class) and averages the differences, "
    "and McNemar's exact test uses the discordant pairs pooled over runs. Seeds re-draw the split, "
    "so an image can appear in several runs' test sets; the per-run tests in leaderboard.json do "
    "not have that caveat. With k folds every image is tested exactly once per seed."
)


def study_groups(specs: Sequence[ModelSpec]) -> list[tuple[ModelSpec, list[ModelSpec]]]:
    """(generalist, its specialists) pairs: a specialist is a 2-class model of the same view whose
    classes are the generalist's negative class plus one of its conditions."""
    groups = []
    for g in sorted(specs, key=lambda s: s.name):
        if g.num_classes < 3:
            continue
        specialists = [
            s
            for s in sorted(specs, key=lambda s: s.name)
            if s.num_classes == 2
            and s.view == g.view
            and set(s.classes) <= set(g.classes)
            and g.negative_class in s.classes
            and s.negative_class == g.negative_class
        ]
        if specialists:
            groups.append((g, specialists))
    return groups


def _positive(record: RunRecord) -> str:
    return next(c for c in record.classes if c != record.negative_class)


def _paired_summary(
    pairs: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray]], n_boot: int
) -> dict[str, Any]:
    """Pairs per run of (specialist-side correct, generalist correct, true class) -> the comparison."""
    pairs = [p for p in pairs if len(p[0])]
    if not pairs:
        return {}
    a = np.concatenate([p[0] for p in pairs])
    b = np.concatenate([p[1] for p in pairs])
    per_run_diff = [float(p[0].mean() - p[1].mean()) for p in pairs]
    lo, hi = m.bootstrap_ci_multi(
        lambda x, y: float(x.mean() - y.mean()),
        [(p[0].astype(float), p[1].astype(float)) for p in pairs],
        n_boot=n_boot,
        strata=[p[2] for p in pairs],
    )
    test = m.mcnemar_exact(a, b)
    return {
        "n_images": len(a),
        "n_runs": len(pairs),
        "specialist_accuracy": float(np.mean([p[0].mean() for p in pairs])),
        "generalist_accuracy": float(np.mean([p[1].mean() for p in pairs])),
        "difference": float(np.mean(per_run_diff)),
        "difference_ci": [lo, hi],
        "mcnemar": {
            "only_specialist_correct": test.b,
            "only_generalist_correct": test.c,
            "p_value": test.p_value,
        },
    }


def paired_summary(pairs: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray]], n_boot: int) -> dict[str, Any]:
    """The paired comparison of two models on the same images (side a = "specialist", side b =
    "generalist" in the keys): mean accuracies, bootstrap CI of the difference, exact McNemar.
    Public for the landmark benchmark (:mod:`spinescan.evaluation.landmark_study`)."""
    return _paired_summary(pairs, n_boot)


def _per_run(slot: tuple[int, int | None], a: np.ndarray, b: np.ndarray) -> dict[str, Any]:
    test = m.mcnemar_exact(a, b)
    return {
        "seed": slot[0],
        "fold": slot[1],
        "n_images": len(a),
        "specialist_accuracy": float(a.mean()),
        "generalist_accuracy": float(b.mean()),
        "difference": float(a.mean() - b.mean()),
        "mcnemar_p": test.p_value,
        "discordant": [test.b, test.c],
    }


def compare_specialist(
    generalist: Sequence[RunRecord], specialist: Sequence[RunRecord], n_boot: int
) -> dict[str, Any] | None:
    """Specialist vs generalist on the test images of the specialist's classes, paired per slot."""
    g_by_slot = {r.slot: r for r in generalist}
    pairs, per_run = [], []
    positive = None
    for s in sorted(specialist, key=lambda r: (r.seed, r.fold or 0)):
        g = g_by_slot.get(s.slot)
        if g is None:
            continue
        positive = _positive(s)
        g_rows = {f: i for i, f in enumerate(g.test.files)}
        rows = [(i, g_rows[f]) for i, f in enumerate(s.test.files) if f in g_rows]
        if not rows:
            continue
        si, gi = np.array([r[0] for r in rows]), np.array([r[1] for r in rows])
        truth = np.array(s.classes)[s.test.labels[si]] == positive
        s_says = np.array(s.classes)[s.test.probs[si].argmax(axis=1)] == positive
        g_says = np.array(g.classes)[g.test.probs[gi].argmax(axis=1)] == positive
        a, b = s_says == truth, g_says == truth
        pairs.append((a, b, truth.astype(int)))
        per_run.append(_per_run(s.slot, a, b))
    if not pairs:
        return None
    return {
        "specialist": specialist[0].model,
        "classes": list(specialist[0].classes),
        "positive_class": positive,
        **_paired_summary(pairs, n_boot),
        "per_run": per_run,
    }


def combine_specialists(
    positive_probs: dict[str, np.ndarray], classes: Sequence[str], negative: str
) -> np.ndarray:
    """:data:`COMBINATION_RULE` as code: class indices (in ``classes`` order) per image."""
    names = list(positive_probs)
    stacked = np.stack([positive_probs[c] for c in names], axis=1)  # N x n_specialists
    best = stacked.argmax(axis=1)
    confident = stacked.max(axis=1) > 0.5
    decision = np.where(confident, np.array([classes.index(names[j]) for j in best]), classes.index(negative))
    return decision.astype(int)


def deployment(
    generalist: Sequence[RunRecord],
    specialists: dict[str, Sequence[RunRecord]],
    predict: Callable[[RunRecord, Sequence[str]], np.ndarray],
    n_boot: int,
) -> dict[str, Any] | None:
    """The specialists combined into one 3-class decision vs the generalist, on its full test set.

    ``predict(record, files)`` returns a specialist's probabilities on any test files (the
    specialist's own predictions cover only the images of its two classes).
    """
    if not generalist:
        return None
    classes = list(generalist[0].classes)
    negative = generalist[0].negative_class
    covered = {_positive(rs[0]) for rs in specialists.values() if rs}
    if covered != set(classes) - {negative}:
        return None
    by_slot = {name: {r.slot: r for r in rs} for name, rs in specialists.items()}
    pairs, per_run, cms, cms_g, bal, bal_g = [], [], [], [], [], []
    for g in sorted(generalist, key=lambda r: (r.seed, r.fold or 0)):
        slot_records = {name: slots.get(g.slot) for name, slots in by_slot.items()}
        if any(r is None for r in slot_records.values()) or not g.test.files:
            continue
        positive_probs = {}
        for r in slot_records.values():
            probs = predict(r, g.test.files)
            positive_probs[_positive(r)] = probs[:, list(r.classes).index(_positive(r))]
        combined = combine_specialists(positive_probs, classes, negative)
        g_pred = g.test.probs.argmax(axis=1)
        a, b = combined == g.test.labels, g_pred == g.test.labels
        pairs.append((a, b, g.test.labels))
        per_run.append(_per_run(g.slot, a, b))
        cms.append(m.confusion_matrix(g.test.labels, combined, len(classes)))
        cms_g.append(m.confusion_matrix(g.test.labels, g_pred, len(classes)))
        bal.append(m.balanced_accuracy_from_cm(cms[-1]))
        bal_g.append(m.balanced_accuracy_from_cm(cms_g[-1]))
    if not pairs:
        return None
    summary = _paired_summary(pairs, n_boot)
    return {
        "specialists": sorted(specialists),
        "classes": classes,
        "rule": COMBINATION_RULE,
        "combined_accuracy": summary.pop("specialist_accuracy"),
        **summary,
        "combined_balanced_accuracy": float(np.mean(bal)),
        "generalist_balanced_accuracy": float(np.mean(bal_g)),
        "combined_confusion_matrix": np.sum(cms, axis=0).tolist(),
        "generalist_confusion_matrix": np.sum(cms_g, axis=0).tolist(),
        "per_run": per_run,
    }


def time_to_target(
    generalist: Sequence[RunRecord], specialists: dict[str, Sequence[RunRecord]]
) -> dict[str, Any] | None:
    """:data:`TIME_RULE` as code: per slot, the generalist's seconds to target against the sum of
    the specialists' (None when a model did not reach its target in that run)."""
    by_slot = {name: {r.slot: r for r in rs} for name, rs in specialists.items()}
    rows = []
    for g in sorted(generalist, key=lambda r: (r.seed, r.fold or 0)):
        mates = {name: slots.get(g.slot) for name, slots in by_slot.items()}
        if any(r is None for r in mates.values()):
            continue
        g_time = g.info.get("seconds_to_target")
        s_times = [r.info.get("seconds_to_target") for r in mates.values()]
        rows.append({
            "seed": g.slot[0],
            "fold": g.slot[1],
            "generalist_seconds": None if g_time is None else float(g_time),
            "specialists_seconds": None if any(t is None for t in s_times) else float(sum(s_times)),
            "generalist_train_seconds": g.info.get("train_seconds"),
            "specialists_train_seconds": sum(float(r.info.get("train_seconds") or 0) for r in mates.values()),
        })  # fmt: skip
    if not rows:
        return None
    both = [r for r in rows if r["generalist_seconds"] is not None and r["specialists_seconds"] is not None]
    targets = {g.model: g.info.get("target_accuracy") for g in generalist[:1]}
    targets.update({name: rs[0].info.get("target_accuracy") for name, rs in specialists.items() if rs})

    def median(key: str, subset: list[dict[str, Any]]) -> float | None:
        values = [r[key] for r in subset if r[key] is not None]
        return float(np.median(values)) if values else None

    faster = sum(r["generalist_seconds"] < r["specialists_seconds"] for r in both)
    return {
        "rule": TIME_RULE,
        "targets": targets,
        "n_runs": len(rows),
        "generalist_reached": sum(r["generalist_seconds"] is not None for r in rows),
        "specialists_reached": sum(r["specialists_seconds"] is not None for r in rows),
        "n_both": len(both),
        "generalist_faster_runs": int(faster),
        "generalist_median_seconds": median("generalist_seconds", both),
        "specialists_median_seconds": median("specialists_seconds", both),
        "generalist_median_train_seconds": median("generalist_train_seconds", rows),
        "specialists_median_train_seconds": median("specialists_train_seconds", rows),
        "per_run": rows,
    }


def run_study(
    records: Sequence[RunRecord],
    specs: Sequence[ModelSpec],
    predict: Callable[[RunRecord, Sequence[str]], np.ndarray] | None,
    n_boot: int,
    synthetic: bool,
    dataset_desc: str,
) -> dict[str, Any] | None:
    """The paired study for the first generalist whose specialists were benchmarked too."""
    present = {r.model for r in records}
    for g_spec, s_specs in study_groups(specs):
        s_specs = [s for s in s_specs if s.name in present]
        if g_spec.name not in present or not s_specs:
            continue
        g_runs = [r for r in records if r.model == g_spec.name]
        comparisons = []
        for s in s_specs:
            c = compare_specialist(g_runs, [r for r in records if r.model == s.name], n_boot)
            if c:
                comparisons.append(c)
        dep = (
            None
            if predict is None
            else deployment(
                g_runs, {s.name: [r for r in records if r.model == s.name] for s in s_specs}, predict, n_boot
            )
        )
        if not comparisons and not dep:
            continue
        study = {
            "generalist": g_spec.name,
            "backbone": g_runs[0].backbone,
            "mapping": MAPPING,
            "pooling": POOLING,
            "comparisons": comparisons,
            "deployment": dep,
            "time_to_target": time_to_target(
                g_runs, {s.name: [r for r in records if r.model == s.name] for s in s_specs}
            ),
        }
        study["answer"] = answer(study, synthetic, dataset_desc)
        return study
    return None
