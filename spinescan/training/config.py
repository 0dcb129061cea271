"""What a training run is asked to do, and the checks that can fail before TensorFlow is imported.

:class:`TrainConfig` is the request (which model, which data, where runs go, resume or not, and
the hyper-parameter overrides). :func:`resolve_request` turns it into a :class:`Resolved` (the
spec with any input-size/resize change, the resolved :class:`~spinescan.zoo.hparams.HParams`) and
raises every argument error (unknown model, missing data folder, bad option value) without
importing TensorFlow, so that ``spinescan train nosuchmodel`` answers at once.
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
from spinescan.zoo.hparams import HParams, resolve_hparams

if TYPE_CHECKING:
    from spinescan.data.splits import Split
    from spinescan.zoo.spec import ModelSpec

DEFAULT_DATA = Path("dataset/phantoms")
DEFAULT_RUNS = Path("runs")
STRATEGIES = ("auto", "mirrored", "multiworker")


def parse_image_size(text: str) -> int | tuple[int, int]:
    """``"224"`` -> 224 (square), ``"512x192"`` -> (512, 192): the ``--image-size`` syntax, one parser
    for the CLI and the benchmarks. ``ValueError`` for anything else (callers word the message)."""
    h, sep, w = str(text).strip().lower().partition("x")
    return (int(h), int(w)) if sep else int(h)


@dataclass(frozen=True)
class TrainConfig:
    """One training request. ``hparams`` holds explicit overrides (``None`` values = not given);
    everything else comes from the plugin's defaults and ``hparams_file`` (:func:`resolve_request`)."""

    model: str
    data: Path = DEFAULT_DATA
    hparams: Mapping[str, Any] = field(default_factory=dict)
    hparams_file: Path | None = None
    seed: int = 0
    runs_dir: Path = DEFAULT_RUNS
    resume: bool = False
    run_id: str | None = None
    image_size: int | tuple[int, int] | None = None  # input size override: square PX or (H, W)
    resize: str | None = None  # preprocessing resize override: letterbox | spine_crop
    weights: str | None = None  # initial weights of keras.applications backbones: None | imagenet
    init_from: Path | None = None  # a run dir whose weights initialise the model (by layer name)
    split: Split | None = None  # override (k-fold benchmarks); otherwise computed from the data
    strategy: str = "auto"
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
    """The registered spec with ``--image-size`` / ``--resize`` applied."""
    from spinescan.radiograph.preprocess import RESIZE_MODES
    from spinescan.zoo.registry import get_spec

    spec = get_spec(config.model).with_image_size(config.image_size)
    if config.resize and config.resize != spec.preprocessing.resize:
        if config.resize not in RESIZE_MODES:
            raise SpineScanError(f"unknown resize {config.resize!r}; choose one of {', '.join(RESIZE_MODES)}")
        spec = spec.with_preprocessing(resize=config.resize)
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
    """Every setting with the plugin's defaults filled in, or a one-line error. No TensorFlow."""
    from spinescan.zoo.backbones import get_backbone, normalize_weights  # Keras is lazy

    spec = spec_for(config)
    hparams = resolve_hparams(spec.train, config.hparams, config.hparams_file, spec.name)
    weights = normalize_weights(config.weights)
    if weights is not None and not get_backbone(hparams.backbone).pretrained:
        raise SpineScanError(f"backbone {hparams.backbone!r} has no {weights} weights; use --weights none")
    from spinescan.training.tasks import task_for

    task_for(spec).check(spec, hparams, weights)
    if config.strategy not in STRATEGIES:
        raise SpineScanError(f"unknown strategy {config.strategy!r}; choose one of {', '.join(STRATEGIES)}")
    if config.strategy == "multiworker" and not os.environ.get("TF_CONFIG"):
        raise SpineScanError(
            "--strategy multiworker needs TF_CONFIG (cluster and task) in the environment of every worker"
        )
    if config.tensorboard and importlib.util.find_spec("tensorboard") is None:
        raise SpineScanError("--tensorboard needs the 'tensorboard' package: pip install tensorboard")
    if check_data and not config.resume:
        check_data_folder(config.data)
    return Resolved(
        spec, hparams, Path(config.data).expanduser().resolve(), normalize_weights(config.weights)
    )


def cluster_workers() -> int:
    """How many workers ``TF_CONFIG`` names (0 or 1 outside multi-worker training)."""
    try:
        cluster = json.loads(os.environ.get("TF_CONFIG", "") or "{}").get("cluster", {})
    except json.JSONDecodeError as exc:
        raise SpineScanError(f"TF_CONFIG is not valid JSON: {exc}") from None
    return sum(len(v) for k, v in cluster.items() if k in ("chief", "worker"))
