"""The view guard at prediction time: which models may read this film, if any (light island).

Without it every model ran on every film: the real lateral sample got ``scoliosis 1.000`` and a
Cobb angle of 88.5 deg from the AP models (issue 22). When the export set holds a view guard (the
``view`` plugin: a classifier of view ``any`` whose classes include ``ap``, ``lateral`` and
``other``), the predictor, the Python API, ``predict.py`` and the page run it first on each film:

* the film's models are those of the view the guard names; every other model is *skipped*, with
  the reason, and gets no label or angles;
* a film the guard calls ``other`` (not a spine film, or a spine film rotated, upside down or
  inverted) is reported as "not a spine radiograph": every model is skipped with that reason;
* ``--view`` (``view=`` in the API, the view menu in the page) overrides the guard: it is not run.

The reasons carry no numbers (the guard's probabilities are in its own entry), so the page's port
(``web/src/app.js``) words them identically.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from collections.abc import Sequence

    from spinescan.edge.model_metadata import ModelInfo
    from spinescan.edge.onnxmodel import OnnxModel

#: A guard's view: it reads films of every view (``spinescan.zoo.spec.GUARD_VIEW``).
GUARD_VIEW = "any"
#: The class that means "not a spine film as it lies".
OTHER = "other"
NOT_SPINE = "not a spine radiograph"


@dataclass(frozen=True)
class Verdict:
    """The guard's reading of one film: ``view`` (``ap``, ``lateral`` or ``other``) and its
    probability, with every class's."""

    view: str
    probability: float
    probabilities: dict[str, float]


def is_guard(info: ModelInfo) -> bool:
    """A classifier of view ``any`` whose classes are views plus ``other``."""
    return (
        info.task == "classification"
        and info.view == GUARD_VIEW
        and {"ap", "lateral", OTHER} <= set(info.classes)
    )


def split_guard(models: Sequence[OnnxModel]) -> tuple[OnnxModel | None, list[OnnxModel]]:
    """``(the guard or None, the other models in their order)``; the first guard wins."""
    guard = next((m for m in models if is_guard(m.info)), None)
    return guard, [m for m in models if m is not guard]


def verdict_of(model: OnnxModel, probs: np.ndarray) -> Verdict:
    """The verdict from the guard's probabilities for one film."""
    p = np.asarray(probs, dtype=np.float64).reshape(-1)
    best = int(np.argmax(p))
    return Verdict(
        view=model.info.classes[best],
        probability=float(p[best]),
        probabilities={c: float(v) for c, v in zip(model.info.classes, p, strict=True)},
    )


def guard_verdict(model: OnnxModel, image: np.ndarray) -> Verdict:
    """Run the guard on one decoded film."""
    x, _ = model.prepare(image)
    return verdict_of(model, model.predict(x[None])[0])


def guard_entry(model: OnnxModel, verdict: Verdict) -> dict[str, Any]:
    """The guard's own JSON entry: ``task: "view"``, its ``label`` (the view) and probabilities,
    and for ``other`` the ``reason`` the film got no reading."""
    entry: dict[str, Any] = {
        "model": model.name,
        "task": "view",
        "label": verdict.view,
        "probabilities": verdict.probabilities,
    }
    if verdict.view == OTHER:
        entry["reason"] = f"{NOT_SPINE} (the view guard calls it {OTHER})"
    return entry


def skip_reason(verdict: Verdict, model: OnnxModel) -> str | None:
    """Why ``model`` must not read a film of this verdict, or ``None`` when it may."""
    if verdict.view == OTHER:
        return f"{NOT_SPINE} (the view guard calls it {OTHER}); --view overrides"
    if model.info.view != verdict.view:
        return (
            f"the view guard reads a {verdict.view} film; {model.name} reads {model.info.view} films"
            f" (--view {model.info.view} overrides)"
        )
    return None


def skipped_entry(model: OnnxModel, reason: str) -> dict[str, Any]:
    """A model's entry for a film it was not run on: no label, no angles, the reason."""
    return {"model": model.name, "label": None, "skipped": reason}
