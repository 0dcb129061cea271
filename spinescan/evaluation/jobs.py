"""Planning and running a benchmark's training jobs: one per model x backbone x seed (x fold).

A split is a property of ``(dataset, view, seed)`` (:mod:`spinescan.data.splits`), so a
specialist's test images are exactly the generalist's test images of its two classes. A job whose
equivalent finished run exists is not trained again (:func:`spinescan.training.prepare.find_reusable_run`).
Every job's training request carries the benchmark's own :class:`~spinescan.training.settings.RunSettings`
with only the seed replaced, and each model x backbone is resolved once (:func:`check_requests`),
before any work, for all its seeds and folds.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from spinescan.errors import DataError, SpineScanError
from spinescan.progress import QUIET, Progress
from spinescan.training.config import DEFAULT_DATA, DEFAULT_RUNS, Resolved, TrainConfig, resolve_request
from spinescan.training.settings import RunSettings

if TYPE_CHECKING:
    from spinescan.data.datasets import Dataset
    from spinescan.data.splits import Split
    from spinescan.zoo.spec import ModelSpec

DEFAULT_PER_CLASS = 300


@dataclass
class BenchConfig:
    """What ``spinescan bench`` was asked to do; ``None`` means "the plugin's default".
    ``settings`` apply to every run (its seed is replaced by each job's: seeds 0..K-1)."""

    models: Sequence[str] = ()
    data: Path | None = None
    seeds: int = 1
    folds: int | None = None
    hparams: Mapping[str, Any] = field(default_factory=dict)  # overrides for every run (None: not given)
    hparams_file: Path | None = None
    settings: RunSettings = field(default_factory=RunSettings)
    out: Path | None = None
    runs_dir: Path = DEFAULT_RUNS
    reuse: bool = True
    backbones: Sequence[str] = ()
    by: str | None = None
    n_boot: int = 1000
    probes: bool = True
    verbose: int = 0  # Keras' per-epoch output of each training run
    progress: Progress = field(default=QUIET, compare=False, repr=False)
    per_class: int = DEFAULT_PER_CLASS  # size of the default phantom set when it must be generated

    def __post_init__(self) -> None:
        if self.seeds < 1:
            raise SpineScanError("--seeds must be at least 1")
        if self.folds is not None and self.folds < 2:
            raise SpineScanError("--folds must be at least 2 (or left out for one split per seed)")
        if self.n_boot < 100:
            raise SpineScanError("--bootstrap needs at least 100 replicates")
        self.runs_dir = Path(self.runs_dir)
        self.data = None if self.data is None else Path(self.data)


# -- training -------------------------------------------------------------------------------------------
@dataclass
class Job:
    model: str
    backbone: str | None
    seed: int
    split: Split | None
    label: str


def resolve_specs(
    names: Sequence[str], dataset: Dataset | None, progress: Progress = QUIET
) -> list[ModelSpec]:
    """The requested specs (default: every registered model whose view and classes have images)."""
    from spinescan.zoo.registry import get_spec, list_models
    from spinescan.zoo.spec import GUARD_VIEW

    if names:
        chosen = [get_spec(n) for n in dict.fromkeys(names)]
        landmark = [s.name for s in chosen if s.task != "classification"]
        if landmark:
            raise SpineScanError(
                f"{', '.join(landmark)}: landmark models are benchmarked by benchmarks/landmark_bench.py "
                "(landmark error, angle MAE, SMAPE, paired with the classifiers), not by `spinescan bench`"
            )
        return chosen
    # The classifier benchmark; landmark models have their own (spinescan.evaluation.landmark_study),
    # and so has the view guard (benchmarks/view_guard.py: held out by source).
    specs = [s for s in list_models() if s.task == "classification" and s.view != GUARD_VIEW]
    if dataset is None:
        return specs
    usable = []
    for spec in specs:
        have = set(dataset.select(view=spec.view).labels())
        missing = [c for c in spec.classes if c not in have]
        if missing:
            progress.info(
                f"skipping {spec.name}: no {spec.view} images of {', '.join(missing)} in {dataset.root}"
            )
        else:
            usable.append(spec)
    if not usable:
        raise DataError(f"no registered model can be trained on {dataset.root}")
    return usable


def plan_jobs(config: BenchConfig, specs: Sequence[ModelSpec], dataset: Dataset) -> list[Job]:
    """One job per model x backbone x seed (x fold); folds come from the whole view's images."""
    from spinescan.data.splits import kfold_splits

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


def train_config(config: BenchConfig, job: Job, data: Path) -> TrainConfig:
    """The training request of one job: the benchmark's overrides and settings, the job's seed,
    split and backbone."""
    hparams = {**config.hparams, "backbone": job.backbone or config.hparams.get("backbone")}
    return TrainConfig(
        model=job.model,
        data=data,
        hparams=hparams,
        hparams_file=config.hparams_file,
        settings=replace(config.settings, seed=job.seed),
        runs_dir=config.runs_dir,
        split=job.split,
        verbose=config.verbose,
        progress=config.progress if config.verbose else QUIET,  # bench --quiet: only its own lines
    )


#: One resolution per model x backbone (the seed, split and fold do not enter it).
Resolutions = dict[tuple[str, "str | None"], Resolved]


def check_requests(config: BenchConfig) -> Resolutions:
    """The named models x backbones resolved before any work (unknown model, bad --hparams file, bad
    input size: one line in well under a second), and kept: every seed and fold of a model then
    trains on this resolution instead of resolving again."""
    data = DEFAULT_DATA if config.data is None else config.data
    resolutions: Resolutions = {}
    for model in dict.fromkeys(config.models):
        for backbone in list(config.backbones) or [None]:
            tc = train_config(config, Job(model, backbone, 0, None, model), data)
            resolutions[(model, backbone)] = resolve_request(tc, check_data=False)
    return resolutions


def _resolution(tc: TrainConfig, job: Job, resolutions: Resolutions) -> Resolved:
    key = (job.model, job.backbone)
    if key not in resolutions:  # models chosen from the dataset (no NAMES given)
        resolutions[key] = resolve_request(tc, check_data=False)  # run_benchmark has loaded the data
    return resolutions[key]


def train_or_reuse(
    config: BenchConfig, jobs: Sequence[Job], data: Path, resolutions: Resolutions | None = None
) -> list[tuple[Path, bool]]:
    """Run every job, reusing a finished equivalent run when one exists (``reuse``). ``resolutions``
    (:func:`check_requests`) is filled in for models it lacks; no job is resolved twice."""
    from spinescan.training.loop import train
    from spinescan.training.prepare import find_reusable_run

    resolutions = {} if resolutions is None else resolutions
    done = []
    echo = config.progress.info
    pretrain = config.settings.pretrain
    pretrained: dict[str, Path] = {}  # model -> pretrain run dir, resolved once for all folds/seeds
    for i, job in enumerate(jobs, 1):
        tc = train_config(config, job, data)
        resolved = _resolution(tc, job, resolutions)
        if pretrain:
            if job.model not in pretrained:
                pretrained[job.model] = _pretrain_run(config, tc, resolved)
            tc = replace(tc, init_from=pretrained[job.model])
        match = find_reusable_run(tc, resolved) if config.reuse else None
        if match is not None:
            echo(f"[{i}/{len(jobs)}] {job.label}: reusing {match}")
            done.append((Path(match), True))
            continue
        echo(f"[{i}/{len(jobs)}] {job.label}: training")
        # Each run builds fresh models and tf.functions; free the previous run's graph state so
        # memory stays flat and TensorFlow does not warn about retracing across runs.
        import keras

        keras.backend.clear_session()
        t0 = time.perf_counter()
        if pretrain:
            from spinescan.training.pretrain import finetune

            result = finetune(tc, tc.init_from, resolved)
        else:
            result = train(tc, resolved)
        echo(f"[{i}/{len(jobs)}] {job.label}: done in {time.perf_counter() - t0:.0f} s -> {result.run_dir}")
        done.append((Path(result.run_dir), False))
    return done


def _pretrain_run(config: BenchConfig, tc: TrainConfig, resolved: Resolved) -> Path:
    from spinescan.training import pretrain

    phantoms = pretrain.PhantomStage.from_settings(config.settings, reuse=config.reuse)
    return pretrain.resolve_pretrain(tc, str(config.settings.pretrain), phantoms, resolved)


def default_dataset(config: BenchConfig) -> Path:
    """``dataset/phantoms``, rendered first if it does not exist yet."""
    root = DEFAULT_DATA
    if (root / "manifest.csv").is_file():
        config.progress.info(f"No --data given: using the embedded synthetic phantoms in {root}")
        return root
    from spinescan.synth import generate

    config.progress.info(
        f"No --data given and {root} does not exist: generating the default synthetic phantom set "
        f"({config.per_class} images per class, both views) first"
    )
    generate(
        root,
        per_class=config.per_class,
        seed=0,
        workers=min(4, os.cpu_count() or 1),
        progress=config.progress,
    )
    return root
