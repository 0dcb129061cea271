"""Before fitting: which run directory (new, or the interrupted one ``--resume`` continues), the
data of the spec's view and the split; and the identity the benchmark matches finished runs by."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from spinescan.errors import DataError, SpineScanError
from spinescan.training import runs
from spinescan.training.config import Resolved, TrainConfig, check_data_folder, resolve_request
from spinescan.training.runconfig import (
    RunConfig,
    RunIdentity,
    dataset_fingerprint,
    make_identity,
    split_hash,
)
from spinescan.training.runs import RunDir

if TYPE_CHECKING:
    from spinescan.data.datasets import Dataset, Sample
    from spinescan.data.splits import Split
    from spinescan.zoo.hparams import HParams
    from spinescan.zoo.spec import ModelSpec


@dataclass(frozen=True)
class Plan:
    """A run about to be fitted: settings fixed, directory chosen."""

    config: TrainConfig
    spec: ModelSpec
    hparams: HParams
    rundir: RunDir
    resuming: bool
    data: Path
    weights: str | None
    init_from: str | None
    split: Split | None = None  # the resumed run's saved split
    stored: RunConfig | None = None  # the resumed run's config.json

    @property
    def seed(self) -> int:
        return self.stored.seed if self.stored is not None else self.config.settings.seed


def prepare_run(config: TrainConfig, resolved: Resolved, chief: bool) -> Plan:
    """Pick the run directory: a new one, or (``--resume``) the interrupted one to continue."""
    spec = resolved.spec
    init_from = str(Path(config.init_from).resolve()) if config.init_from else None
    model_dir = Path(config.runs_dir) / spec.name
    if config.resume:
        found = (
            model_dir / config.run_id
            if config.run_id
            else runs.latest_unfinished_run(config.runs_dir, spec.name)
        )
        if found is not None and RunDir(found).exists():
            rundir = RunDir(found)
            stored = rundir.read_config()
            # The interrupted run's own settings win: resuming with other settings would make
            # the backup invalid (Keras' BackupAndRestore contract).
            _note_ignored(config, resolved, stored)
            return Plan(
                config, stored.model_spec(), stored.hparams, rundir, True, Path(stored.dataset.root),
                stored.weights, stored.init_from, rundir.read_split(), stored,
            )  # fmt: skip
        if config.run_id:
            raise SpineScanError(f"cannot resume: {model_dir / config.run_id} is not a run directory")
        config.progress.info(f"No interrupted {spec.name} run under {model_dir}; starting a new run.")
        check_data_folder(config.data)
    run_id = config.run_id or runs.new_run_id(Path(config.runs_dir), spec.name, config.settings.seed)
    rundir = RunDir.of(config.runs_dir, spec.name, run_id)
    if chief and rundir.exists():
        raise SpineScanError(
            f"run {rundir.path} already exists; use --resume to continue it or another --run-id"
        )
    return Plan(config, spec, resolved.hparams, rundir, False, resolved.data, resolved.weights, init_from)


def _note_ignored(config: TrainConfig, resolved: Resolved, stored: RunConfig) -> None:
    """Say which explicitly given settings a resumed run ignores (its own settings win)."""
    wanted, kept = resolved.hparams, stored.hparams
    ignored = [
        f"{k}={getattr(wanted, k)}"
        for k, v in config.hparams.items()
        if v is not None and getattr(wanted, k) != getattr(kept, k)
    ]
    size = config.settings.image_size
    if size and list(resolved.spec.input_size) != list(stored.spec.get("input_size", [])):
        ignored.append(f"image_size={size}")
    if ignored:
        config.progress.info(f"Resuming with the run's own settings; ignored: {', '.join(ignored)}")


def load_view_samples(root: Path, spec: ModelSpec) -> tuple[Dataset, list[Sample]]:
    """The dataset and all samples of the spec's view (every class: the split's domain)."""
    from spinescan.data.datasets import load_dataset

    root = Path(root).expanduser()
    check_data_folder(root)
    dataset = load_dataset(root, default_view=spec.view)
    view_samples = dataset.select(view=spec.view).samples
    if not view_samples:
        raise DataError(
            f"no {spec.view}-view images in {root} for model {spec.name!r} "
            f"(views found: {', '.join(dataset.views()) or 'none'})"
        )
    return dataset, view_samples


def split_for_run(config: TrainConfig, hp: HParams, seed: int, view_samples: list[Sample]) -> Split:
    from spinescan.data.splits import make_split as split_view

    if config.split is not None:
        return config.split
    return split_view(view_samples, seed, hp.validation_fraction, hp.test_fraction)


def identity_for(config: TrainConfig, resolved: Resolved | None = None) -> RunIdentity:
    """What a finished run must have been to stand in for training ``config`` now. ``resolved``:
    the run's own resolution, when the caller has it (it is then not resolved again)."""
    resolved = resolved or resolve_request(config)
    spec, hp, seed = resolved.spec, resolved.hparams, config.settings.seed
    _, view_samples = load_view_samples(resolved.data, spec)
    split = split_for_run(config, hp, seed, view_samples)
    init_from = str(Path(config.init_from).resolve()) if config.init_from else None
    return make_identity(
        spec.name, seed, resolved.weights, init_from, spec.input_size, spec.preprocessing.to_dict(),
        hp, dataset_fingerprint(view_samples), split_hash(split),
    )  # fmt: skip


def find_reusable_run(config: TrainConfig, resolved: Resolved | None = None) -> Path | None:
    """A finished run equivalent to training ``config`` now (see :func:`runs.find_matching_run`).
    Pass the run's ``resolved`` request when training may follow, so it is resolved once."""
    if not runs.list_runs(config.runs_dir, config.model, finished=True):
        return None
    return runs.find_matching_run(config.runs_dir, config.model, identity_for(config, resolved))
