"""``spinescan tune NAME``: keras-tuner Hyperband over the search space the model's spec declares.

The research notebook this project started from tuned its models with Hyperband; this is the same
method on the shared training code:

* **What a trial is**: the spec's defaults with the trial's values (``ModelSpec.search``,
  :mod:`spinescan.zoo.search`) and ``epochs`` set to the trial's Hyperband budget, built, compiled
  and fed exactly as ``spinescan train`` does (:func:`~spinescan.training.loop.build_compiled`,
  :func:`~spinescan.training.loop.make_inputs`: same pipeline, augmentation, class weights and
  cosine schedule). Each trial trains from scratch for its budget rather than continuing a previous
  round's weights (keras-tuner's default), because the cosine schedule's length is part of what a
  run with those settings is; Hyperband's successive halving still decides which settings earn
  more epochs.
* **Objective**: validation accuracy of the last epoch (the epoch ``checkpoint=last`` keeps), on
  the dataset's validation split, or with ``folds=K`` the mean over K patient-grouped folds
  (:func:`spinescan.data.splits.kfold_splits`) of the train+validation images. **The test split
  is never loaded**: its images are removed before anything is read, so the benchmark's test
  figures stay unbiased by tuning.
* **Budget and resume**: ``budget`` is a number of trials or a duration; keras-tuner keeps its
  state in ``out`` (oracle and trials), so running the same command again continues the search.
* **Outputs** (atomic): ``trials.csv`` / ``trials.json`` (schema ``spinescan.tune/1``) and
  ``best_hparams.json`` (schema ``spinescan.hparams/1``), which ``spinescan train NAME --hparams``
  and ``spinescan bench --hparams`` apply.
"""

from __future__ import annotations

import math
import re
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from spinescan.atomic import atomic_write_json
from spinescan.errors import SpineScanError
from spinescan.progress import QUIET, Progress
from spinescan.training.config import DEFAULT_DATA, DEFAULT_RUNS, Resolved, TrainConfig, resolve_request
from spinescan.training.settings import RunSettings
from spinescan.training.trials import OBJECTIVE, TRIALS_JSON, read_timings, write_tables
from spinescan.zoo.hparams import HPARAMS_SCHEMA, HParams
from spinescan.zoo.search import Choice, SearchSpace, compact_search

if TYPE_CHECKING:
    from spinescan.data.datasets import Sample
    from spinescan.zoo.spec import ModelSpec

RESULT_SCHEMA = "spinescan.tune-result/1"  # TuneResult.to_dict (spinescan tune --json)
BEST_FILE = "best_hparams.json"


@dataclass(frozen=True)
class Budget:
    """When the search stops: after ``trials`` trials in all (counting earlier sessions of the
    same project) or once ``seconds`` have passed in this session; Hyperband's own schedule ends
    it otherwise."""

    trials: int | None = None
    seconds: float | None = None

    @classmethod
    def parse(cls, text: str | None) -> Budget:
        """``"12"`` (trials), ``"90s"``, ``"20m"``, ``"1.5h"``; empty: Hyperband's schedule."""
        if not text:
            return cls()
        text = str(text).strip().lower()
        match = re.fullmatch(r"(\d+(?:\.\d+)?)\s*(s|m|h|min)?", text)
        if not match:
            raise SpineScanError(
                f"--budget {text!r}: give a number of trials (12) or a duration (90s, 20m, 1h)"
            )
        number, unit = float(match.group(1)), match.group(2)
        if unit is None:
            if number != int(number) or number < 1:
                raise SpineScanError(f"--budget {text!r}: a number of trials must be a whole number >= 1")
            return cls(trials=int(number))
        seconds = number * {"s": 1, "m": 60, "min": 60, "h": 3600}[unit]
        if seconds <= 0:
            raise SpineScanError(f"--budget {text!r}: the duration must be positive")
        return cls(seconds=seconds)

    def describe(self) -> str:
        if self.trials:
            return f"{self.trials} trials"
        if self.seconds:
            return f"{self.seconds / 60:g} min"
        return "Hyperband's full schedule"


@dataclass(frozen=True)
class TuneConfig:
    """One tuning request. ``hparams``/``hparams_file`` fix the fields that are not searched;
    ``settings`` are the run settings every trial shares with ``spinescan train`` (input size,
    resize, seed of the split, folds and search)."""

    model: str
    data: Path = DEFAULT_DATA
    out: Path | None = None  # default: <runs_dir>/tune/<model>
    runs_dir: Path = DEFAULT_RUNS
    max_epochs: int = 20
    factor: int = 3
    folds: int | None = None
    budget: Budget = field(default_factory=Budget)
    settings: RunSettings = field(default_factory=RunSettings)
    hparams: dict[str, Any] = field(default_factory=dict)
    hparams_file: Path | None = None
    overwrite: bool = False
    verbose: bool = False  # one progress line per finished trial (``spinescan tune -v``)
    progress: Progress = field(default=QUIET, compare=False, repr=False)

    @property
    def project_dir(self) -> Path:
        return Path(self.out) if self.out else Path(self.runs_dir) / "tune" / self.model


@dataclass(frozen=True)
class TuneResult:
    project_dir: Path
    best_file: Path | None
    best: dict[str, Any]
    best_score: float | None
    trials: list[dict[str, Any]]  # best first, as in trials.json
    seconds: float  # this session's search time
    model: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """The result as ``spinescan tune --json`` prints it: the best trial (its row of
        trials.json) and the hyper-parameters written to best_hparams.json."""
        best_trial = self.trials[0] if self.best_file is not None and self.trials else None
        return {
            "schema": RESULT_SCHEMA,
            "model": self.model,
            "project_dir": self.project_dir.as_posix(),
            "trials_file": (self.project_dir / TRIALS_JSON).as_posix(),
            "n_trials": len(self.trials),
            "n_scored": sum(1 for t in self.trials if t.get(OBJECTIVE) is not None),
            "objective": OBJECTIVE,
            "best_score": self.best_score,
            "best_trial": best_trial,
            "best_hparams": self.best,
            "best_file": None if self.best_file is None else self.best_file.as_posix(),
            "seconds": round(self.seconds, 2),
        }


def search_space(spec: ModelSpec) -> SearchSpace:
    """The spec's declared space; models built by the core's default builder get the compact one."""
    from spinescan.zoo.spec import default_builder

    if spec.search is not None:
        return spec.search
    if spec.build is default_builder:
        return compact_search()
    raise SpineScanError(
        f"model {spec.name!r} declares no search space (ModelSpec.search, see spinescan.zoo.search); "
        "its plugin must declare one before it can be tuned"
    )


def _check(config: TuneConfig) -> tuple[Resolved, SearchSpace]:
    """Every argument error before TensorFlow; the request resolved once, for the whole search."""
    if config.max_epochs < 1:
        raise SpineScanError("--max-epochs must be >= 1")
    if config.factor < 2:
        raise SpineScanError("the Hyperband factor must be >= 2")
    if config.folds is not None and config.folds < 2:
        raise SpineScanError(f"--folds {config.folds}: cross-validation needs at least 2 folds")
    resolved = resolve_request(_train_config(config))
    space = search_space(resolved.spec)
    fixed = sorted(set(space.names) & {k for k, v in config.hparams.items() if v is not None})
    if fixed:
        config.progress.info(f"Not searching {', '.join(fixed)}: fixed by the command line.")
    return resolved, space


def _train_config(config: TuneConfig, **changes: Any) -> TrainConfig:
    return TrainConfig(
        model=config.model, data=config.data, hparams=dict(config.hparams), hparams_file=config.hparams_file,
        settings=config.settings, runs_dir=config.runs_dir, progress=config.progress, **changes,
    )  # fmt: skip


@dataclass(frozen=True)
class _Fold:
    """Indices into the loaded train+validation arrays: what one evaluation trains and scores on."""

    train: np.ndarray
    val: np.ndarray


def _folds(
    config: TuneConfig, hp: HParams, view_samples: list[Sample], test: set[str], samples: list[Sample]
) -> list[_Fold]:
    """The validation split, or K patient-grouped folds of train+validation. ``samples`` (the
    spec's images, test split already removed) are what the indices point into."""
    from spinescan.data.splits import kfold_splits, make_split

    index = {s.rel: i for i, s in enumerate(samples)}

    def idx(rels: list[str]) -> np.ndarray:
        return np.asarray(sorted(index[r] for r in rels if r in index), dtype=np.int64)

    if not config.folds:
        split = make_split(view_samples, config.settings.seed, hp.validation_fraction, hp.test_fraction)
        return [_Fold(idx(split.train), idx(split.val))]
    # The shared folds: over every image of the view (all classes, as the split is), minus test.
    trainval = [s for s in view_samples if s.rel not in test]
    splits = kfold_splits(trainval, config.folds, config.settings.seed, val_fraction=0.0)
    folds = [_Fold(idx(sp.train + sp.val), idx(sp.test)) for sp in splits]
    for i, fold in enumerate(folds):
        if not len(fold.train) or not len(fold.val):
            raise SpineScanError(f"fold {i + 1} of {config.folds} has no training or validation images")
    return folds


def _load(config: TuneConfig, spec: ModelSpec, hp: HParams) -> tuple[np.ndarray, np.ndarray, list[_Fold]]:
    """Decode the train+validation images of the spec's classes once (the test split never)."""
    from spinescan.data.checks import samples_for_spec
    from spinescan.data.splits import make_split
    from spinescan.training import pipeline
    from spinescan.training.prepare import load_view_samples

    data = Path(config.data).expanduser().resolve()
    dataset, view_samples = load_view_samples(data, spec)
    seed = config.settings.seed
    test = set(make_split(view_samples, seed, hp.validation_fraction, hp.test_fraction).test)
    samples, _ = samples_for_spec(dataset, spec.view, spec.classes, skip_unreadable=True)
    samples = sorted((s for s in samples if s.rel not in test), key=lambda s: s.rel)
    folds = _folds(config, hp, view_samples, test, samples)
    x = pipeline.load_arrays(samples, spec, progress=config.progress, label="Loading train+val images")
    y = pipeline.encode_labels(samples, spec.classes)
    return x, y, folds


def _hparams_of(values: dict[str, Any], space: SearchSpace, base: HParams) -> HParams:
    return base.override({n: values[n] for n in space.names if n in values}, "trial")


def _declare(hp: Any, space: SearchSpace, fixed: set[str]) -> None:
    """keras-tuner hyper-parameters for the searched dimensions (fixed ones are left out)."""
    for d in space.dimensions:
        if d.name in fixed:
            continue
        if isinstance(d, Choice):
            hp.Choice(d.name, list(d.values))
        elif d.integer:
            hp.Int(d.name, int(d.low), int(d.high), step=int(d.step or 1))
        else:
            hp.Float(d.name, float(d.low), float(d.high), step=d.step, sampling="log" if d.log else "linear")


def tune(config: TuneConfig) -> TuneResult:
    """Run (or continue) the Hyperband search and write the trials table and the best settings."""
    resolved, space = _check(config)  # argument errors, before TensorFlow
    spec, base = resolved.spec, resolved.hparams
    from spinescan.errors import require_tensorflow

    require_tensorflow("Tuning")
    try:
        import keras_tuner
    except ImportError:
        raise SpineScanError("tuning needs keras-tuner: pip install 'spinescan[notebook]'") from None
    from spinescan.training.prepare import Plan
    from spinescan.training.runs import RunDir

    progress = config.progress
    project = config.project_dir
    project.parent.mkdir(parents=True, exist_ok=True)
    x, y, folds = _load(config, spec, base)
    fixed = {k for k, v in config.hparams.items() if v is not None}
    _announce(config, spec, space, fixed)
    plan0 = Plan(
        _train_config(config), spec, base, RunDir(project), False, resolved.data, resolved.weights, None
    )

    def score(values: dict[str, Any], epochs: int) -> tuple[float, list[float]]:
        hparams = replace(_hparams_of(values, space, base), epochs=int(epochs))
        return _score_folds(replace(plan0, hparams=hparams), x, y, folds, config.settings.seed)

    deadline = time.monotonic() + config.budget.seconds if config.budget.seconds else None
    timings: dict[str, dict[str, Any]] = {}

    class SpineHyperband(keras_tuner.Hyperband):
        """Hyperband whose trials are Spine Scan training runs (see the module docstring)."""

        def run_trial(self, trial: Any, *args: Any, **kwargs: Any) -> dict[str, float]:
            values = dict(trial.hyperparameters.values)
            epochs = int(values.get("tuner/epochs", config.max_epochs))
            start = time.monotonic()
            mean, per_fold = score(values, epochs)
            timings[trial.trial_id] = {"seconds": round(time.monotonic() - start, 2), "fold_scores": per_fold}
            return {OBJECTIVE: mean}

        def on_trial_end(self, trial: Any) -> None:
            super().on_trial_end(trial)
            write_tables(project, self.oracle, space, timings)
            advance(1)
            if config.verbose:
                progress.info(_trial_line(trial, space, timings.get(trial.trial_id, {})))
            if deadline is not None and time.monotonic() >= deadline:
                self.oracle.max_trials = len(self.oracle.trials)  # stop after this trial

    tuner = SpineHyperband(
        hypermodel=None,
        objective=keras_tuner.Objective(OBJECTIVE, direction="max"),
        max_epochs=config.max_epochs,
        factor=config.factor,
        seed=config.settings.seed,
        directory=str(project.parent),
        project_name=project.name,
        overwrite=config.overwrite,
        hyperparameters=_search_hp(keras_tuner, space, fixed),
        tune_new_entries=False,
        allow_new_entries=False,
    )
    done_before = len(tuner.oracle.trials)
    write_tables(project, tuner.oracle, space, read_timings(project))
    timings.update(read_timings(project))
    if config.budget.trials:
        tuner.oracle.max_trials = config.budget.trials
    total = config.budget.trials or _hyperband_trials(config.max_epochs, config.factor)
    if done_before:
        progress.info(f"Continuing the search in {project}: {done_before} trial(s) already done.")
    start = time.monotonic()
    with progress.bar(max(total - done_before, 0), "Hyperband trials") as advance:
        if not config.budget.trials or done_before < config.budget.trials:
            tuner.search(verbose=0)
    seconds = time.monotonic() - start
    trials = write_tables(project, tuner.oracle, space, timings)
    return _finish(config, spec, space, project, trials, seconds)


def _trial_line(trial: Any, space: SearchSpace, timing: dict[str, Any]) -> str:
    """One finished trial, for ``tune -v``: its settings, epochs, score and time."""
    values = trial.hyperparameters.values
    score = trial.metrics.get_best_value(OBJECTIVE) if trial.metrics.exists(OBJECTIVE) else None
    settings = ", ".join(
        f"{n}={values[n]:.3g}" if isinstance(values.get(n), float) else f"{n}={values.get(n)}"
        for n in space.names
        if n in values
    )
    scored = "not scored" if score is None else f"{OBJECTIVE} {float(score):.3f}"
    took = f", {timing['seconds']:.0f} s" if timing.get("seconds") is not None else ""
    return f"trial {trial.trial_id} ({values.get('tuner/epochs')} epochs{took}): {scored} with {settings}"


def _announce(config: TuneConfig, spec: ModelSpec, space: SearchSpace, fixed: set[str]) -> None:
    """Say what is searched, how it is scored and where the project lives."""
    where = "over " + (f"{config.folds} folds of train+val" if config.folds else "the validation split")
    config.progress.info(
        f"Tuning {spec.name} with Hyperband (max {config.max_epochs} epochs, factor {config.factor}, "
        f"budget: {config.budget.describe()}), scored by validation accuracy {where}; "
        f"project: {config.project_dir}"
    )
    for line in space.describe():
        if line.split(":")[0] not in fixed:
            config.progress.info(f"  {line}")


def _score_folds(plan: Any, x: np.ndarray, y: np.ndarray, folds: Any, seed: int) -> tuple[float, list[float]]:
    """One trial's settings trained from scratch on every fold, exactly as ``spinescan train``
    trains (``make_inputs``, ``build_compiled``); the score is the last epoch's validation accuracy."""
    import keras

    from spinescan.training.loop import build_compiled, make_inputs

    scores = []
    for fold in folds:
        keras.utils.set_random_seed(seed)
        inputs = make_inputs(
            plan,
            {"train": x[fold.train], "val": x[fold.val]},
            {"train": y[fold.train], "val": y[fold.val]},
        )
        model = build_compiled(plan, keras, inputs.steps, gpu=False)
        history = model.fit(
            inputs.train_ds,
            validation_data=inputs.val_ds,
            epochs=plan.hparams.epochs,
            verbose=0,
            shuffle=False,
        )
        value = float(history.history["val_accuracy"][-1])
        scores.append(0.0 if math.isnan(value) else value)
        keras.backend.clear_session(free_memory=True)
    return float(np.mean(scores)), scores


def _search_hp(keras_tuner: Any, space: SearchSpace, fixed: set[str]) -> Any:
    hp = keras_tuner.HyperParameters()
    _declare(hp, space, fixed)
    return hp


def _hyperband_trials(max_epochs: int, factor: int) -> int:
    """How many trials one Hyperband iteration runs: keras-tuner's ``HyperbandOracle`` bracket and
    round sizes (a test checks this against the oracle)."""
    brackets, epochs = 0, float(max_epochs)
    while epochs >= 1:
        epochs /= factor
        brackets += 1
    end_size = math.ceil(1 + math.log(max_epochs, factor))
    return sum(
        math.ceil(end_size / (bracket + 1) * factor ** (bracket - round_))
        for bracket in range(brackets)
        for round_ in range(bracket + 1)
    )


def _finish(
    config: TuneConfig, spec: ModelSpec, space: SearchSpace, project: Path, trials: list[dict], seconds: float
) -> TuneResult:
    """The best completed trial (highest score; among ties the one trained longest) as an
    ``--hparams`` file holding only the searched fields (the rest stay the plugin's defaults)."""
    scored = [t for t in trials if t[OBJECTIVE] is not None]
    if not scored:
        return TuneResult(project, None, {}, None, trials, seconds, spec.name)
    best_trial = scored[0]
    best = {n: best_trial[n] for n in space.names if best_trial.get(n) is not None}
    best.update({k: v for k, v in config.hparams.items() if v is not None})
    doc = {
        "schema": HPARAMS_SCHEMA,
        "model": spec.name,
        "hparams": best,
    }
    HParams().override(best, "best trial")  # never write a file train would refuse
    best_file = atomic_write_json(project / BEST_FILE, doc)
    return TuneResult(project, best_file, best, best_trial[OBJECTIVE], trials, seconds, spec.name)
