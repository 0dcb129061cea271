"""The benchmark: train (or reuse) every model on one shared split, evaluate, and answer the question.

Spine Scan exists to answer one question: is a generalist (healthy / kyphosis / lordosis) more
accurate than one specialist per condition? :func:`run_benchmark` plans and runs the jobs
(:mod:`.jobs`), reads each finished run back as a record (:mod:`.records`), scores them
(:mod:`.scoring`, with the paired study of :mod:`.study`), chooses winners on *validation*
accuracy and writes ``<runs>/winners.json``, the report, and ``leaderboard.json`` once
(:mod:`.leaderboard`). TensorFlow is only imported when a model is trained, loaded or timed.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from spinescan.data.provenance import read_provenance
from spinescan.errors import DataError
from spinescan.evaluation.jobs import (
    DEFAULT_PER_CLASS,
    BenchConfig,
    Job,
    check_requests,
    default_dataset,
    plan_jobs,
    resolve_specs,
    train_config,
    train_or_reuse,
)
from spinescan.evaluation.leaderboard import Leaderboard, notes_for, record_evidence
from spinescan.evaluation.records import ModelAccess, Part, RunRecord, load_record
from spinescan.evaluation.scoring import (
    Evaluation,
    choose_winners,
    column_value,
    columns_hint,
    evaluate,
    evaluate_parts,
)
from spinescan.progress import Progress, stdout_to_stderr
from spinescan.training.runs import write_winners

if TYPE_CHECKING:
    from spinescan.data.datasets import Dataset, Sample

__all__ = [
    "DEFAULT_PER_CLASS", "BenchConfig", "Evaluation", "Job", "ModelAccess", "Part", "RunRecord",
    "choose_winners", "evaluate", "evaluate_parts", "load_record", "plan_jobs", "resolve_specs",
    "run_benchmark", "train_config",
]  # fmt: skip


def _protocol(config: BenchConfig, specs: Sequence[Any]) -> dict[str, Any]:
    return {
        "models": [s.name for s in specs],
        "seeds": list(range(config.seeds)),
        "folds": config.folds,
        "hparams": {k: v for k, v in config.hparams.items() if v is not None},
        "hparams_file": None if config.hparams_file is None else str(config.hparams_file),
        "epochs": config.hparams.get("epochs"),
        "image_size": config.settings.image_size,
        "backbones": list(config.backbones),
        "resize": config.settings.resize,
        "pretrain": config.settings.pretrain,
        "target_accuracy": config.hparams.get("target_accuracy"),
        "n_boot": config.n_boot,
        "ci_level": 0.95,
        "by": config.by,
        "split": "stratified by class, grouped by patient, computed per (dataset, view, seed); "
        "every model of a view sees the same test images for a seed (or fold)",
        "winner_rule": "highest validation accuracy; ties: fewer seconds to target, then less training",
    }


def _load(config: BenchConfig) -> tuple[Path, Dataset, bool]:
    from spinescan.data.datasets import load_dataset

    is_default = config.data is None
    data = default_dataset(config) if is_default else Path(config.data)
    if not data.exists():
        raise DataError(
            f"dataset folder {data} does not exist; render phantoms into it with `spinescan synth {data}` "
            "or pass --data DIR (a real dataset)"
        )
    dataset = load_dataset(data)
    if config.by and not any(column_value(s, config.by) is not None for s in dataset.samples):
        # Checked before training, not after an hour of it.
        raise DataError(
            f"--by {config.by}: no image has a value in that column; {columns_hint(dataset.samples)}"
        )
    return data, dataset, is_default


def run_benchmark(config: BenchConfig, quiet_stdout: bool = False) -> dict[str, Any]:
    """Train or reuse, evaluate, choose winners, write the report; returns ``leaderboard.json``'s content."""
    from spinescan import __version__
    from spinescan.evaluation.report import report_paths, write_report

    progress = config.progress
    started = time.perf_counter()
    resolutions = check_requests(config)  # argument errors before any work, each model resolved once
    data, dataset, is_default = _load(config)
    specs = resolve_specs(config.models, dataset, progress)
    jobs = plan_jobs(config, specs, dataset)
    progress.info(
        f"benchmark: {len(specs)} model(s) x {config.seeds} seed(s)"
        + (f" x {config.folds} folds" if config.folds else "")
        + f" = {len(jobs)} run(s) on {data}"
    )
    with stdout_to_stderr(quiet_stdout):
        done = train_or_reuse(config, jobs, data, resolutions)
    records = [load_record(run_dir, reused) for run_dir, reused in done]
    synthetic = is_default or read_provenance(data).synthetic
    views = sorted({r.view for r in records})
    desc = f"the {'/'.join(views)} test split of {data}" + (" (synthetic phantoms)" if synthetic else "")
    access = ModelAccess()
    with stdout_to_stderr(quiet_stdout):
        result = evaluate(
            records,
            specs=specs,
            samples={s.rel: s for s in dataset.samples},
            access=access,
            n_boot=config.n_boot,
            by=config.by,
            probe_features=_feature_reader(progress) if config.probes else None,
            synthetic=synthetic,
            dataset_desc=desc,
            progress=progress,
        )
    access.release()
    winners_file = write_winners(
        config.runs_dir, {m: r.run_dir.as_posix() for m, r in result.winners.items()}
    )
    out = Path(config.out) if config.out else Path("reports") / datetime.now().strftime("%Y%m%d-%H%M%S")
    paths = report_paths(out)
    leaderboard = Leaderboard(
        created=datetime.now().isoformat(timespec="seconds"),
        spinescan_version=__version__,
        dataset={
            "root": data.as_posix(),
            "default": is_default,
            "synthetic": synthetic,
            "layout": dataset.layout,
            "counts": dataset.counts(),
        },
        protocol=_protocol(config, specs),
        models=result.models,
        probes=result.probes,
        study=result.study,
        winners={k: v.run_dir.as_posix() for k, v in result.winners.items()},
        winners_file=winners_file.as_posix(),
        elapsed_seconds=round(time.perf_counter() - started, 1),
        notes=tuple(notes_for(result.models, result.probes, synthetic)),
        report=paths["report"].as_posix(),
    )
    write_report(leaderboard.to_dict(), out)
    leaderboard.write(paths["leaderboard"])  # once, complete
    record_evidence(leaderboard, paths["leaderboard"])
    progress.info(
        f"report: {paths['report']}  (leaderboard: {paths['leaderboard']}, winners: {winners_file})"
    )
    return leaderboard.to_dict()


def _feature_reader(progress: Progress) -> Callable[[Sequence[Sample]], np.ndarray]:
    from spinescan.evaluation.probes import features_for

    def read(samples: Sequence[Sample]) -> np.ndarray:
        with progress.bar(len(samples), "probe features") as advance:
            return features_for([s.path for s in samples], progress=advance)

    return read
