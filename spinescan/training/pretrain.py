"""Phantom pretraining, then fine-tuning on real films: ``spinescan train NAME --pretrain phantoms``.

Why: with a few dozen real films, a CNN trained from scratch is at the mercy of a 10-20 film
validation set (early stopping while BatchNorm is still settling), and it is free to learn the
films' framing instead of the spine. Pretraining on a few thousand rendered phantoms of the same
view first teaches it what curvature looks like, from images whose labels come from geometry and
whose framing is class-independent; fine-tuning then adapts it to real films (issue 7).

Both stages are ordinary runs of the same model through :func:`spinescan.training.loop.train`, so each
leaves a complete run directory. The pretrain run is reused whenever an equivalent one exists
(same phantom set, model and settings), so a k-fold benchmark pretrains once; the phantom set is
reused when its recorded parameters match. The fine-tuned run records where it started from: its
``config.json`` and ``metrics.json`` gain a ``"pretrain"`` entry (run dir, dataset, val accuracy).

Works for any plugin whose classes the phantom generator draws for its view; for others, pass
``pretrain=<run dir>`` of any earlier run (layers are matched by name and shape).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from spinescan.atomic import atomic_write_json
from spinescan.errors import DataError, SpineScanError
from spinescan.training import runs

if TYPE_CHECKING:
    from spinescan.training.loop import RunResult, TrainConfig
    from spinescan.zoo.spec import ModelSpec

PHANTOMS = "phantoms"
DATASET_ROOT = Path("dataset")
DEFAULT_PER_CLASS = 1000  # 2,000 AP phantoms: 10 epochs took 1.5-13 min on the shared 2-core machine
DEFAULT_EPOCHS = 10
PRETRAIN_SEED = 0  # one pretrain run shared by every seed and fold of a benchmark
# Fraction of phantoms drawn near the class threshold (e.g. Cobb 5-10 deg healthy, 10-15 deg
# scoliosis); with none, the pretrained model never sees a mildly asymmetric healthy spine.
DEFAULT_BORDERLINE = 0.0
SYNTH_RECORD = "synth.json"  # also how the model card recognises a synthetic dataset
PRETRAIN_KEY = "pretrain"


@dataclass(frozen=True)
class PhantomStage:
    """How the phantom stage is made: set size, near-threshold share, epochs, and reuse.

    One object, so the CLI, the benchmark and the library pass the same settings the same way.
    """

    per_class: int = DEFAULT_PER_CLASS
    epochs: int | None = None  # None: DEFAULT_EPOCHS
    borderline: float = DEFAULT_BORDERLINE
    phantoms_dir: Path | None = None  # None: dataset/pretrain-<view>-<size>-<per_class>[-b<borderline>]
    reuse: bool = True

    @classmethod
    def from_options(
        cls,
        per_class: int | None = None,
        epochs: int | None = None,
        borderline: float | None = None,
        **kw: Any,
    ) -> PhantomStage:
        """From command-line values, where None means "the default"."""
        return cls(
            per_class=per_class or DEFAULT_PER_CLASS,
            epochs=epochs,
            borderline=DEFAULT_BORDERLINE if borderline is None else float(borderline),
            **kw,
        )


Echo = Callable[[str], None]


def _silent(_: str) -> None:
    pass


def phantom_size(spec: ModelSpec) -> int:
    """Render phantoms at twice the model's input height: downsampling them then smooths edges the
    way real films, hundreds of pixels tall, are smoothed by the same resize."""
    return 2 * int(spec.input_size[0])


def phantom_dir_for(
    view: str, size: int, per_class: int, borderline: float = 0.0, root: Path = DATASET_ROOT
) -> Path:
    suffix = f"-b{borderline:g}" if borderline else ""
    return Path(root) / f"pretrain-{view}-{size}-{per_class}{suffix}"


def ensure_phantoms(
    out: Path,
    view: str,
    per_class: int,
    size: int,
    seed: int = 0,
    borderline: float = 0.0,
    progress: bool = True,
    echo: Echo = _silent,
) -> Path:
    """Render a phantom set of one view into ``out``, or reuse it if its ``synth.json`` matches."""
    from spinescan.synth import GENERATOR_VERSION, generate  # noqa: PLC0415

    out = Path(out)
    wanted = {
        "generator_version": GENERATOR_VERSION,  # a set drawn by an older generator is redrawn
        "view": view,
        "per_class": int(per_class),
        "size": int(size),
        "seed": int(seed),
        "borderline": float(borderline),
    }
    record = out / SYNTH_RECORD
    if record.is_file() and (out / "manifest.csv").is_file():
        try:
            stored = {"borderline": 0.0, **json.loads(record.read_text(encoding="utf-8"))}
        except (OSError, json.JSONDecodeError):
            stored = {}
        if {k: stored.get(k) for k in wanted} == wanted:
            echo(f"Reusing the phantom set {out}")
            return out
    n = per_class * 2 if view == "ap" else per_class * 3
    echo(f"Rendering {n} {view} phantoms ({size} px) into {out} for pretraining")
    workers = max(1, min(4, os.cpu_count() or 1))
    generate(
        out,
        per_class=per_class,
        seed=seed,
        size=size,
        views=(view,),
        workers=workers,
        borderline=borderline,
        progress=progress,
    )
    atomic_write_json(record, {**wanted, "generator": "spinescan synth", "purpose": "pretraining"})
    return out


def _check_classes(spec: ModelSpec) -> None:
    from spinescan.synth import CLASSES  # noqa: PLC0415

    drawn = CLASSES.get(spec.view, ())
    missing = [c for c in spec.classes if c not in drawn]
    if missing:
        raise DataError(
            f"phantom pretraining cannot serve {spec.name!r}: the phantom generator draws no "
            f"{', '.join(missing)} {spec.view} films; pass --pretrain RUN_DIR of a run to start from"
        )


def pretrain_config(
    config: TrainConfig, data: Path, epochs: int | None = None, seed: int = PRETRAIN_SEED
) -> TrainConfig:
    """The first stage: the same model and preprocessing, on the phantoms, with its own split."""
    return replace(
        config,
        data=Path(data),
        epochs=DEFAULT_EPOCHS if epochs is None else epochs,
        seed=seed,
        split=None,
        init_from=None,
        resume=False,
        run_id=None,
        target_accuracy=None,
    )


def _new_run_id(runs_dir: Path, model: str, seed: int) -> str:
    base = "pretrain-" + runs.new_run_id(Path(runs_dir), model, seed)
    run_id, n = base, 1
    while (Path(runs_dir) / model / run_id).exists():
        n += 1
        run_id = f"{base}-{n}"
    return run_id


def pretrain_on_phantoms(
    config: TrainConfig, phantoms: PhantomStage = PhantomStage(), echo: Echo = _silent
) -> Path:
    """Render (or reuse) the phantoms and train (or reuse) the pretrain run; returns its run dir."""
    from spinescan.training.loop import _spec_for, train  # noqa: PLC0415

    spec = _spec_for(config)
    _check_classes(spec)
    size = phantom_size(spec)
    data = Path(
        phantoms.phantoms_dir or phantom_dir_for(spec.view, size, phantoms.per_class, phantoms.borderline)
    )
    ensure_phantoms(
        data,
        spec.view,
        phantoms.per_class,
        size,
        borderline=phantoms.borderline,
        progress=config.verbose > 0,
        echo=echo,
    )
    stage = pretrain_config(config, data, phantoms.epochs)
    match = runs.find_matching_run(stage.runs_dir, stage) if phantoms.reuse else None
    if match is not None:
        echo(f"Reusing the pretrain run {match}")
        return Path(match)
    stage = replace(stage, run_id=_new_run_id(stage.runs_dir, spec.name, stage.seed))
    echo(f"Pretraining {spec.name} on the phantoms in {data}")
    return Path(train(stage).run_dir)


def resolve_pretrain(
    config: TrainConfig, pretrain: str | Path, phantoms: PhantomStage = PhantomStage(), echo: Echo = _silent
) -> Path:
    """``"phantoms"`` -> a (possibly reused) phantom pretrain run; anything else -> that run dir."""
    if str(pretrain) == PHANTOMS:
        return pretrain_on_phantoms(config, phantoms, echo)
    run_dir = Path(pretrain)
    if not runs.is_finished(run_dir) or not (run_dir / runs.MODEL).is_file():
        raise SpineScanError(f"--pretrain {pretrain}: expected 'phantoms' or a finished run directory")
    return run_dir


def describe_pretrain(pretrain_dir: Path) -> dict[str, Any]:
    """What a fine-tuned run records about the run it started from."""
    run = runs.load_run(pretrain_dir)
    metrics = run.metrics or {}
    dataset = run.config.get("dataset", {})
    root = Path(dataset.get("root") or run.config.get("arguments", {}).get("data", ""))
    synthetic = (root / SYNTH_RECORD).is_file() or _has_landmarks(root)
    return {
        "run_dir": Path(pretrain_dir).resolve().as_posix(),
        "run_id": run.config.get("run_id"),
        "dataset": root.as_posix(),
        "synthetic": bool(synthetic),
        "view_images": dataset.get("view_images"),
        "val_accuracy": (metrics.get("val") or {}).get("accuracy"),
        "epochs_run": metrics.get("epochs_run"),
        "train_seconds": metrics.get("train_seconds"),
    }


def _has_landmarks(root: Path) -> bool:
    """A manifest with the phantom generator's ground-truth columns."""
    try:
        with open(root / "manifest.csv", encoding="utf-8") as fh:
            header = fh.readline()
    except OSError:
        return False
    return "landmarks" in header and "cobb_deg" in header


def record_pretrain(run_dir: Path, pretrain_dir: Path) -> dict[str, Any]:
    """Add the ``"pretrain"`` entry to a fine-tuned run's ``config.json`` and ``metrics.json``."""
    entry = describe_pretrain(pretrain_dir)
    for name in (runs.CONFIG, runs.METRICS):
        doc = runs.read_json(run_dir, name)
        if doc is not None:
            doc[PRETRAIN_KEY] = entry
            runs.write_json(run_dir, name, doc)
    return entry


def finetune(config: TrainConfig, pretrain_dir: Path) -> RunResult:
    """Train ``config`` starting from ``pretrain_dir``'s weights and record where it started."""
    from spinescan.training.loop import train  # noqa: PLC0415

    result = train(replace(config, init_from=Path(pretrain_dir)))
    if result.metrics:  # the chief of a multi-worker run, or a single process
        result.metrics[PRETRAIN_KEY] = record_pretrain(result.run_dir, pretrain_dir)
    return result


def pretrain_and_finetune(
    config: TrainConfig, pretrain: str | Path, phantoms: PhantomStage = PhantomStage(), echo: Echo = _silent
) -> RunResult:
    """Both stages: pretrain (``"phantoms"``, reused when possible) or take a run dir, then fine-tune."""
    t0 = time.perf_counter()
    pretrain_dir = resolve_pretrain(config, pretrain, phantoms, echo)
    elapsed = time.perf_counter() - t0
    echo(f"Fine-tuning {config.model} on {config.data} from {pretrain_dir} (first stage: {elapsed:.0f} s)")
    return finetune(config, pretrain_dir)
