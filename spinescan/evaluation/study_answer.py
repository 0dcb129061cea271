"""The paired study's answer in words: generated from its figures (the accuracy comparison, with its
CI and McNemar p, and the time to the target accuracy), so the report never states more than the
numbers show. Apart from :mod:`spinescan.evaluation.study`, which computes the figures."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def _time_sentence(t: dict[str, Any] | None, g: str) -> str:
    """The second half of the answer: which approach reaches its target accuracy sooner."""
    if not t:
        return (
            f"Time to target: no run slot has both the {g} and every specialist, so there is no comparison."
        )
    targets = ", ".join(f"{k} {v:.2f}" for k, v in t["targets"].items() if v is not None)
    head = f"Which reaches a satisfactory accuracy faster (targets: {targets})?"
    n = t["n_runs"]
    if t["n_both"] == 0:
        return (
            f"{head} In {n} run slot(s) the {g} reached its target in {t['generalist_reached']} and the "
            f"specialists all reached theirs in {t['specialists_reached']}, never both, so time to target "
            f"cannot be compared; total training time was {t['generalist_median_train_seconds'] or 0:.0f} s "
            f"for the {g} against {t['specialists_median_train_seconds'] or 0:.0f} s for the specialists "
            "together (medians)."
        )
    gs, ss = t["generalist_median_seconds"], t["specialists_median_seconds"]
    k, m_ = t["generalist_faster_runs"], t["n_both"]
    if k == m_:
        who = f"the {g} was faster in every one"
    elif k == 0:
        who = "the specialists together were faster in every one"
    else:
        who = f"the {g} was faster in {k} of them"
    missed = f" (in {n - m_} other slot(s) a model never reached its target)" if m_ < n else ""
    ratio = gs / ss if ss else float("inf")
    verdict = (
        f"the {g} reaches its target in {ratio:.2f}x the specialists' combined time"
        if ratio <= 1
        else f"the specialists together reach theirs in {1 / ratio:.2f}x the {g}'s time"
    )
    return (
        f"{head} Over the {m_} run slot(s) where every model reached its target{missed}, the {g} took "
        f"{gs:.0f} s and the specialists {ss:.0f} s combined (medians); {who}: {verdict}."
    )


def _verdict(diff: float, ci: Sequence[float], p: float) -> str:
    if ci[0] is not None and ci[0] > 0 and p < 0.05:
        return "better"
    if ci[1] is not None and ci[1] < 0 and p < 0.05:
        return "worse"
    return "tie"


def answer(study: dict[str, Any], synthetic: bool, dataset_desc: str) -> str:
    """The one-paragraph answer to the research question, written from the study's numbers."""
    g = study["generalist"]
    sentences = []
    comps = study.get("comparisons", [])
    dep = study.get("deployment")
    runs = (dep or (comps[0] if comps else {})).get("n_runs", 1)
    sentences.append(
        f"Is one {g} model more accurate than specialists? On {dataset_desc}, over {runs} "
        f"run{'s' if runs != 1 else ''}, paired on the same test images:"
    )
    verdicts = []
    for c in comps:
        v = _verdict(c["difference"], c["difference_ci"], c["mcnemar"]["p_value"])
        verdicts.append(v)
        sentences.append(
            f"on {' vs '.join(c['classes'])} images (n={c['n_images']}), the {c['specialist']} specialist "
            f"scored {c['specialist_accuracy']:.3f} and the {g} {c['generalist_accuracy']:.3f} "
            f"(difference {c['difference']:+.3f}, 95% CI {c['difference_ci'][0]:+.3f} to "
            f"{c['difference_ci'][1]:+.3f}, exact McNemar p = {_p(c['mcnemar']['p_value'])});"
        )
    if dep:
        v = _verdict(dep["difference"], dep["difference_ci"], dep["mcnemar"]["p_value"])
        verdicts.append(v)
        sentences.append(
            f"combined into one 3-class decision, the specialists scored {dep['combined_accuracy']:.3f} "
            f"against the {g}'s {dep['generalist_accuracy']:.3f} on all {dep['n_images']} test images "
            f"(difference {dep['difference']:+.3f}, 95% CI {dep['difference_ci'][0]:+.3f} to "
            f"{dep['difference_ci'][1]:+.3f}, p = {_p(dep['mcnemar']['p_value'])}; balanced accuracy "
            f"{dep['combined_balanced_accuracy']:.3f} vs {dep['generalist_balanced_accuracy']:.3f})."
        )
    else:
        sentences[-1] = sentences[-1].rstrip(";") + "."
    key = verdicts[-1] if dep else None
    if key == "better":
        conclusion = (
            f"So the specialists, deployed together, are more accurate than the {g} on this data, "
            f"at the cost of {len(dep['specialists'])} models instead of one."
        )
    elif key == "worse":
        conclusion = (
            f"So the {g} is more accurate than the specialists combined, and it is one model "
            "instead of several."
        )
    elif all(v == "tie" for v in verdicts):
        bound = max([c["difference_ci"][1] for c in comps] + ([dep["difference_ci"][1]] if dep else []))
        conclusion = (
            "No difference is statistically significant at the 5% level: on this data there is no "
            f"detectable accuracy difference between the {g} and the specialists, though the CIs still "
            f"allow a specialist advantage of up to {bound:+.3f}, so a larger test set could change "
            f"this. The {g} is one model instead of several."
        )
    else:
        better = [c["specialist"] for c, v in zip(comps, verdicts, strict=False) if v == "better"]
        worse = [c["specialist"] for c, v in zip(comps, verdicts, strict=False) if v == "worse"]
        parts = []
        if better:
            parts.append(f"the {', '.join(better)} specialist(s) beat the {g} on their own task")
        if worse:
            parts.append(f"the {g} beats the {', '.join(worse)} specialist(s) on their own task")
        tail = "" if dep is None else "; deployed together, the difference is not significant"
        conclusion = "The answer is mixed: " + " and ".join(parts) + tail + "."
    caveat = (
        " These are synthetic phantoms: the answer holds for the phantoms' curvature definitions, not "
        "yet for real lateral films, of which this project has no labelled set."
        if synthetic
        else ""
    )
    timing = _time_sentence(study.get("time_to_target"), g) if "time_to_target" in study else ""
    return " ".join(sentences) + " " + conclusion + (" " + timing if timing else "") + caveat


def _p(p: float) -> str:
    return "< 0.001" if p < 0.001 else f"{p:.3f}"
