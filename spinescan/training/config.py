"""What a training run is asked to do, and the checks that can fail before TensorFlow is imported.

:class:`TrainConfig` is the request (which model, which data, where runs go, resume or not, the
hyper-parameter overrides, and the :class:`~spinescan.training.settings.RunSettings` it shares with
bench and tune). :func:`resolve_request` turns it into a :class:`Resolved` (the spec with any
input-size/resize change, the resolved :class:`~spinescan.zoo.hparams.HParams`, the weights) and
raises every argument error (unknown model, missing data folder, bad option value) without
importing TensorFlow, so that ``spinescan train nosuchmodel`` answers at once. A run is resolved
once: whoever resolved it passes the :class:`Resolved` on (``train(config, resolved)``,
``find_reusable_run(config, resolved)``) rather than resolving it again.
"""

from __future__ import annotations

import importlib.util
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from spinescan.errors import DataError, SpineScanError
from spinescan.progress import QUIET, Progress
from spinescan.training.settings import RunSettings
from spinescan.zoo.hparams import HParams, resolve_hparams

if TYPE_CHECKING:
    from spinescan.data.splits import Split
    from spinescan.zoo.spec import ModelSpec

DEFAULT_DATA = Path("dataset/phantoms")
DEFAULT_RUNS = Path("runs")
__all__ = [
    "DEFAULT_DATA", "DEFAULT_RUNS", "Resolved", "TrainConfig",
    "check_data_folder", "cluster_workers", "resolve_request", "spec_for",
]  # fmt: skip


@dataclass(frozen=True)
class TrainConfig:
    """One training request. ``hparams`` holds explicit overrides (``None`` values = not given);
    everything else comes from the plugin's defaults and ``hparams_file`` (:func:`resolve_request`).
    ``settings`` (input size, resize, seed, weights, strategy, pretraining) is the object ``bench``
    and ``tune`` pass on unchanged, with only the seed replaced per run."""

    model: str
    data: Path = DEFAULT_DATA
    hparams: Mapping[str, Any] = field(default_factory=dict)
    hparams_file: Path | None = None
    settings: RunSettings = field(default_factory=RunSettings)
    runs_dir: Path = DEFAULT_RUNS
    resume: bool = False
    run_id: str | None = None
    init_from: Path | None = None  # a run dir whose weights initialise the model (by layer name)
    split: Split | None = None  # override (k-fold benchmarks); otherwise computed from the data
    in_memory: bool = True
    tensorboard: bool = False
    verbose: int = 0  # Keras' own per-epoch output (0 silent, 1 bar, 2 one line per epoch)
    progress: Progress = field(default=QUIET, compare=False, repr=False)


@dataclass(frozen=True)
class Resolved:
    """A request with every default filled in: the spec as trained and the hyper-parameters."""

    spec: ModelSpec
    hparams: HParams
    data: Path  # absolute
    weights: str | None


def spec_for(config: TrainConfig) -> ModelSpec:
    """The registered spec with ``--image-size`` / ``--resize`` applied (``RunSettings`` has
    already refused an unknown resize mode)."""
    from spinescan.zoo.registry import get_spec

    settings = config.settings
    spec = get_spec(config.model).with_image_size(settings.image_size)
    if settings.resize and settings.resize != spec.preprocessing.resize:
        spec = spec.with_preprocessing(resize=settings.resize)
    return spec


def check_data_folder(root: Path) -> None:
    """A missing dataset folder is the most common user error: say how to make one."""
    root = Path(root).expanduser()
    if root.exists():
        return
    hint = (
        " Create synthetic phantoms with `spinescan synth` (writes dataset/phantoms), or pass --data DIR."
        if root.resolve() == DEFAULT_DATA.resolve()
        else " Pass --data DIR pointing at DIR/<class>/*, DIR/<view>/<class>/* or a manifest.csv."
    )
    raise DataError(f"dataset folder not found: {root}.{hint}")


def resolve_request(config: TrainConfig, check_data: bool = True) -> Resolved:
    """Every setting with the plugin's defaults filled in, or a one-line error. No TensorFlow.

    Call it once per run and pass the result on: :func:`spinescan.training.loop.train`,
    :func:`spinescan.training.prepare.find_reusable_run` and the pretraining stage take it."""
    from spinescan.zoo.backbones import get_backbone  # Keras is lazy

    settings = config.settings
    spec = spec_for(config)
    hparams = resolve_hparams(spec.train, config.hparams, config.hparams_file, spec.name)
    weights = settings.weights  # normalised by RunSettings
    if weights is not None and not get_backbone(hparams.backbone).pretrained:
        raise SpineScanError(f"backbone {hparams.backbone!r} has no {weights} weights; use --weights none")
    from spinescan.training.tasks import task_for

    task_for(spec).check(spec, hparams, weights)
    if settings.strategy == "multiworker" and not os.environ.get("TF_CONFIG"):
        raise SpineScanError(
            "--strategy multiworker needs TF_CONFIG (cluster and task) in the environment of every worker"
        )
    if config.tensorboard and importlib.util.find_spec("tensorboard") is None:
        raise SpineScanError("--tensorboard needs the 'tensorboard' package: pip install tensorboard")
    if check_data and not config.resume:
        check_data_folder(config.data)
    return Resolved(spec, hparams, Path(config.data).expanduser().resolve(), weights)


def cluster_workers() -> int:
    """How many workers ``TF_CONFIG`` names (0 or 1 outside multi-worker training)."""
    try:
        cluster = json.loads(os.environ.get("TF_CONFIG", "") or "{}").get("cluster", {})
    except json.JSONDecodeError as exc:
        raise SpineScanError(f"TF_CONFIG is not valid JSON: {exc}") from None
    return sum(len(v) for k, v in cluster.items() if k in ("chief", "worker"))
