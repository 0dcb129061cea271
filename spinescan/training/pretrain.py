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
``pretrain=<run dir>`` of any earlier run (layers are matched by name and shape). Landmark models
(``cobb``) pretrain the same way: a phantom carries exact corner landmarks, so the first stage
learns where vertebrae are from thousands of films before the real films teach it what they look
like (issue 21; benchmarks/aasce_cv.py measures what it saves).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from spinescan.data.provenance import read_provenance
from spinescan.errors import DataError, SpineScanError
from spinescan.progress import QUIET, Progress
from spinescan.training import runs
from spinescan.training.config import Resolved, TrainConfig, resolve_request, spec_for
from spinescan.training.runs import RunDir

if TYPE_CHECKING:
    from spinescan.training.loop import RunResult
    from spinescan.training.settings import RunSettings
    from spinescan.zoo.spec import ModelSpec

PHANTOMS = "phantoms"
DATASET_ROOT = Path("dataset")
DEFAULT_PER_CLASS = 1000  # 2,000 AP phantoms: 10 epochs took 1.5-13 min on the shared 2-core machine
DEFAULT_EPOCHS = 10
PRETRAIN_SEED = 0  # one pretrain run shared by every seed and fold of a benchmark
# Fraction of phantoms drawn near the class threshold (e.g. Cobb 5-10 deg healthy, 10-15 deg
# scoliosis); with none, the pretrained model never sees a mildly asymmetric healthy spine.
DEFAULT_BORDERLINE = 0.0
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
    def from_settings(cls, settings: RunSettings, **kw: Any) -> PhantomStage:
        """The stage a run's :class:`~spinescan.training.settings.RunSettings` ask for."""
        return cls.from_options(
            settings.pretrain_per_class, settings.pretrain_epochs, settings.pretrain_borderline, **kw
        )

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
    progress: Progress = QUIET,
) -> Path:
    """Render a phantom set of one view into ``out``, or reuse it if its recorded provenance
    (:func:`spinescan.data.provenance.read_provenance`) says it was made with these settings."""
    from spinescan.synth import GENERATOR_VERSION, generate

    out = Path(out)
    # A set drawn by an older generator is redrawn: its phantoms are not what this code makes.
    wanted = (int(seed), [view], int(per_class), int(size), float(borderline), GENERATOR_VERSION)
    if (out / "manifest.csv").is_file():
        made = read_provenance(out)
        settings = made.settings
        views = settings.get("views") or [settings.get("view")]
        got = (
            made.seed,
            views,
            settings.get("per_class"),
            settings.get("size"),
            settings.get("borderline", 0.0),
            settings.get("generator_version", 1),
        )
        if made.synthetic and got == wanted:
            progress.info(f"Reusing the phantom set {out}")
            return out
    n = per_class * 2 if view == "ap" else per_class * 3
    progress.info(f"Rendering {n} {view} phantoms ({size} px) into {out} for pretraining")
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
    return out


def _check_classes(spec: ModelSpec) -> None:
    from spinescan.synth import CLASSES

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
    """The first stage: the same model and preprocessing, on the phantoms, with its own split
    (and no pretraining of its own)."""
    hparams = {
        **config.hparams,
        "epochs": DEFAULT_EPOCHS if epochs is None else epochs,
        "target_accuracy": None,
    }
    return replace(
        config,
        data=Path(data),
        hparams=hparams,
        settings=replace(config.settings, seed=seed, pretrain=None),
        split=None,
        init_from=None,
        resume=False,
        run_id=None,
    )


def pretrain_on_phantoms(
    config: TrainConfig, phantoms: PhantomStage = PhantomStage(), resolved: Resolved | None = None
) -> Path:
    """Render (or reuse) the phantoms and train (or reuse) the pretrain run; returns its run dir.
    ``resolved``: the fine-tuning run's resolution, when the caller has it (its spec is used)."""
    from spinescan.training.loop import train
    from spinescan.training.prepare import find_reusable_run

    spec = resolved.spec if resolved is not None else spec_for(config)
    progress = config.progress
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
        progress=progress,
    )
    stage = pretrain_config(config, data, phantoms.epochs)
    stage_resolved = resolve_request(stage)  # the stage is a run of its own: resolved once, here
    match = find_reusable_run(stage, stage_resolved) if phantoms.reuse else None
    if match is not None:
        progress.info(f"Reusing the pretrain run {match}")
        return Path(match)
    run_id = runs.new_run_id(stage.runs_dir, spec.name, stage.settings.seed, prefix="pretrain-")
    progress.info(f"Pretraining {spec.name} on the phantoms in {data}")
    return Path(train(replace(stage, run_id=run_id), stage_resolved).run_dir)


def resolve_pretrain(
    config: TrainConfig,
    pretrain: str | Path,
    phantoms: PhantomStage = PhantomStage(),
    resolved: Resolved | None = None,
) -> Path:
    """``"phantoms"`` -> a (possibly reused) phantom pretrain run; anything else -> that run dir."""
    if str(pretrain) == PHANTOMS:
        return pretrain_on_phantoms(config, phantoms, resolved)
    run_dir = RunDir(Path(pretrain))
    if not run_dir.is_finished() or not run_dir.model_file.is_file():
        raise SpineScanError(f"--pretrain {pretrain}: expected 'phantoms' or a finished run directory")
    return run_dir.path


def describe_pretrain(pretrain_dir: Path) -> dict[str, Any]:
    """What a fine-tuned run records about the run it started from."""
    run = runs.load_run(pretrain_dir)
    metrics = run.metrics or {}
    dataset = run.config.dataset
    root = Path(dataset.root)
    return {
        "run_dir": Path(pretrain_dir).resolve().as_posix(),
        "run_id": run.config.run_id,
        "dataset": root.as_posix(),
        "synthetic": read_provenance(root).synthetic,
        "view_images": dataset.view_images,
        "val_accuracy": (metrics.get("val") or {}).get("accuracy"),
        "epochs_run": metrics.get("epochs_run"),
        "train_seconds": metrics.get("train_seconds"),
    }


def record_pretrain(run_dir: Path, pretrain_dir: Path) -> dict[str, Any]:
    """Add the ``"pretrain"`` entry to a fine-tuned run's ``config.json`` and ``metrics.json``."""
    entry = describe_pretrain(pretrain_dir)
    rundir = RunDir(Path(run_dir))
    rundir.write_config(rundir.read_config().with_pretrain(entry))
    metrics = rundir.read_metrics()
    if metrics is not None:
        rundir.write_json(RunDir.METRICS, {**metrics, PRETRAIN_KEY: entry})
    return entry


def finetune(config: TrainConfig, pretrain_dir: Path, resolved: Resolved | None = None) -> RunResult:
    """Train ``config`` starting from ``pretrain_dir``'s weights and record where it started.
    ``resolved``: the run's resolution, when the caller has it (``init_from`` does not change it)."""
    from spinescan.training.loop import train

    result = train(replace(config, init_from=Path(pretrain_dir)), resolved)
    if result.metrics:  # the chief of a multi-worker run, or a single process
        result.metrics[PRETRAIN_KEY] = record_pretrain(result.run_dir, pretrain_dir)
    return result


def pretrain_and_finetune(
    config: TrainConfig,
    pretrain: str | Path,
    phantoms: PhantomStage = PhantomStage(),
    resolved: Resolved | None = None,
) -> RunResult:
    """Both stages: pretrain (``"phantoms"``, reused when possible) or take a run dir, then fine-tune.
    ``resolved``: the fine-tuning run's resolution (made here when not given), used by both stages."""
    t0 = time.perf_counter()
    resolved = resolved or resolve_request(config)
    pretrain_dir = resolve_pretrain(config, pretrain, phantoms, resolved)
    elapsed = time.perf_counter() - t0
    config.progress.info(
        f"Fine-tuning {config.model} on {config.data} from {pretrain_dir} (first stage: {elapsed:.0f} s)"
    )
    return finetune(config, pretrain_dir, resolved)
