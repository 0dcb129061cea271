"""Which runs ``spinescan export`` takes, and the gate that refuses to ship a model that has not
shown it learned anything.

Selection (:func:`select_runs`), in order: ``--run DIR``; the named models' latest finished runs;
else, per model, its newest finished run unless a benchmark picked a winner for it
(``<runs>/winners.json``) after that run finished; each choice comes with one line saying which
run and why, which the CLI prints.

The gate (:func:`assess`): a model is **weak** when the lower bound of the 95% bootstrap interval
of its accuracy on its own test split (stratified by label, 2000 resamples, seeded) is not above
its baseline, the larger of

* *chance*: the accuracy of always answering the test split's most common class, and
* the best *shortcut probe* (:mod:`spinescan.evaluation.probes`: a logistic regression on film
  geometry and grey-level statistics, cross-validated within the same test images), computed
  here so that model and probe are scored on the same films.

So a 2-epoch model at 0.333 on three balanced classes is weak, and so is 0.60 on 20 images (its
interval reaches below a 0.50 chance). A weak model is not exported unless ``allow_weak``.

A landmark model measures angles; its label only follows from them. Where its test films carry the
true value of its headline angle (``cobb_deg``, ``thoracic_kyphosis_deg``: the first of its
measurements), it is gated on that angle instead: weak unless the upper bound of the 95% bootstrap
interval of its mean absolute error is below the error of the best constant guess (every film given
the test films' median angle). On a clinic's films (aasce-train: 463 of 481 scoliosis) the derived
label cannot beat chance by a clear margin on 87 films however well the angles are read; the angle
error can.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from spinescan.errors import SpineScanError
from spinescan.export.run_dirs import resolve_runs, winner_dir
from spinescan.training import runs
from spinescan.training.config import DEFAULT_RUNS
from spinescan.training.runs import RunDir, winners_file

N_BOOT = 2000
LEVEL = 0.95


class WeakModelsRefused(SpineScanError):
    """Some models were refused by the weak-model gate (the others were exported). Its own exit
    status, so a script can go on with the models that passed and still see the refusal."""

    exit_code = 3


@dataclass(frozen=True)
class Selection:
    """The run directories to export and where the choice came from."""

    run_dirs: tuple[Path, ...]
    source: str  # run | names | winners | latest | mixed (some models' winners, others' newest runs)
    note: str = ""  # what the user is told when the choice was not asked for explicitly
    reasons: tuple[str, ...] = ()  # one line per chosen run: which run and why


def _when(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


def _stamp(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%d %H:%M UTC")


def finished_at(run_dir: Path) -> float:
    """When a run finished: its ``metrics.json`` is written once, at the end of training."""
    return _when(RunDir(run_dir).path / RunDir.METRICS)


def picked_at(run_dir: Path, runs_dir: Path) -> float:
    """When a benchmark picked ``run_dir`` as its model's winner: the ``benchmark.json`` it wrote
    into the run, else (an older bench) ``winners.json`` itself."""
    recorded = RunDir(run_dir).path / RunDir.BENCHMARK
    return _when(recorded) if recorded.is_file() else _when(winners_file(runs_dir))


def _choose(model: str, latest: Path | None, winner: Path | None, runs_dir: Path) -> tuple[Path, str, bool]:
    """One model's run, the line that says why, and whether it is the benchmark's winner."""
    if winner is not None and (latest is None or winner.resolve() == latest.resolve()):
        return (
            winner,
            f"{model}: run {winner.name} (its newest finished run, and the benchmark's winner)",
            True,
        )
    if latest is None:  # pragma: no cover - callers only ask about models with a run or a winner
        raise SpineScanError(f"no run of {model!r}")
    done = finished_at(latest)
    if winner is not None:
        picked = picked_at(winner, runs_dir)
        if picked >= done:
            return (
                winner,
                f"{model}: run {winner.name} (the benchmark's winner, picked {_stamp(picked)}, after its "
                f"newest run {latest.name} finished at {_stamp(done)})",
                True,
            )
        return (
            latest,
            f"{model}: run {latest.name} (its newest finished run, {_stamp(done)}; newer than the "
            f"benchmark's winner {winner.name}, picked {_stamp(picked)})",
            False,
        )
    return (
        latest,
        f"{model}: run {latest.name} (its newest finished run, {_stamp(done)}; no benchmark winner)",
        False,
    )


def select_runs(
    names: Sequence[str] = (), run: str | Path | None = None, runs_dir: str | Path = DEFAULT_RUNS
) -> Selection:
    """See the module docstring. Raises a one-line error that says what to run when nothing fits.

    With no names and no ``run``: per model, its newest finished run, unless a benchmark picked a
    winner for that model after that run finished (then the winner). So ``spinescan train
    generalist`` then ``spinescan export --onnx`` exports the run just trained, even where an
    older bench left a winners.json; a bench run after training still exports its winner.
    """
    runs_dir = Path(runs_dir)
    if run is not None or names:
        source = "run" if run is not None else "names"
        return Selection(tuple(resolve_runs(names, run, runs_dir)), source)
    models: set[str] = set()
    if runs_dir.is_dir():
        models = {p.name for p in runs_dir.iterdir() if p.is_dir()}
    recorded = runs.read_winners(runs_dir)
    chosen: list[Path] = []
    reasons: list[str] = []
    picked_winner: list[bool] = []
    for model in sorted(models | set(recorded)):
        latest = runs.latest_run(runs_dir, model)
        winner = None
        if model in recorded:
            try:
                winner = winner_dir(runs_dir, model, recorded[model])
            except SpineScanError:
                winner = None  # a winner deleted since: fall back to the newest run, said below
        if latest is None and winner is None:
            continue
        path, why, is_winner = _choose(model, latest, winner, runs_dir)
        if model in recorded and winner is None:
            why += f"; the benchmark's winner {recorded[model]} is gone"
        chosen.append(path)
        reasons.append(why)
        picked_winner.append(is_winner)
    if not chosen:
        raise SpineScanError(
            f"nothing to export: no finished run in {runs_dir}. Train one first: "
            "`spinescan synth` then `spinescan train generalist` (or `spinescan bench` for the winners)"
        )
    source = "winners" if all(picked_winner) else "latest" if not any(picked_winner) else "mixed"
    head = (
        "Exporting, per model, its newest finished run unless a later benchmark picked a winner"
        + (
            ""
            if recorded
            else f" (no benchmark winners: {winners_file(runs_dir)} missing; `spinescan bench` measures them)"
        )
        + ":"
    )
    note = "\n".join([head, *(f"  {r}" for r in reasons)])
    return Selection(tuple(chosen), source, note, tuple(reasons))


@dataclass(frozen=True)
class AngleGate:
    """A landmark model's headline angle on its test films against the best constant guess."""

    name: str
    n: int
    mae: float
    ci: tuple[float, float]
    guess: float  # the test films' median angle
    guess_mae: float
    # Films with no reading (flagged implausible or out of frame): they count as 0 deg in ``mae``,
    # so a model that answers almost nothing cannot pass; the message says how many there were,
    # or a 43-deg "error" reads like a bad measurement instead of a missing one.
    not_measured: int = 0

    @property
    def weak(self) -> bool:
        return self.ci[1] >= self.guess_mae


@dataclass(frozen=True)
class Assessment:
    """A run's test accuracy against its baseline (see the module docstring)."""

    model: str
    run_dir: Path
    n: int
    accuracy: float
    ci: tuple[float, float]
    chance: float
    probe: float | None
    probe_name: str | None
    probe_source: str  # "computed on the test images" or "unavailable: why"
    angle: AngleGate | None = None  # a landmark model's headline angle against a constant guess

    @property
    def baseline(self) -> float:
        return max(self.chance, self.probe if self.probe is not None else 0.0)

    @property
    def weak(self) -> bool:
        if self.angle is not None:
            return self.n == 0 or self.angle.weak
        return self.n == 0 or self.ci[0] <= self.baseline

    def describe(self) -> str:
        probe = (
            f", {self.probe_name} probe {self.probe:.3f} ({self.probe_source})"
            if self.probe is not None
            else f", no probe ({self.probe_source})"
        )
        return (
            f"{self.model} ({self.run_dir.name}): test accuracy {self.accuracy:.3f} "
            f"(95% CI {self.ci[0]:.3f}-{self.ci[1]:.3f}, n={self.n}); chance {self.chance:.3f}{probe}"
        )

    def to_dict(self) -> dict[str, Any]:
        """The gate's figures and verdict, as ``spinescan export --json`` lists them."""
        return {
            "model": self.model,
            "run_dir": self.run_dir.as_posix(),
            "weak": self.weak,
            "n": self.n,
            "accuracy": self.accuracy,
            "ci": list(self.ci),
            "chance": self.chance,
            "probe": self.probe,
            "probe_name": self.probe_name,
            "probe_source": self.probe_source,
            "baseline": self.baseline,
            "angle": None if self.angle is None else {**asdict(self.angle), "weak": self.angle.weak},
            "verdict": self.verdict(),
        }

    def verdict(self) -> str:
        if self.angle is not None:
            a = self.angle
            told = (
                f"{self.describe()}; {a.name} MAE {a.mae:.2f} deg (95% CI {a.ci[0]:.2f}-{a.ci[1]:.2f}) "
                f"against {a.guess_mae:.2f} deg for the constant guess {a.guess:.1f} deg"
            )
            if a.not_measured:
                told += f" ({a.not_measured} of {a.n} test films not measured, each counted as 0 deg)"
            if not a.weak:
                return f"{told}: reads the angle better than a constant guess"
            return f"WEAK MODEL: {told}: the interval's upper bound is not below the guess's error"
        if not self.weak:
            return f"{self.describe()}: better than its baseline {self.baseline:.3f}"
        what = "chance" if self.baseline == self.chance else f"its {self.probe_name} shortcut probe"
        return (
            f"WEAK MODEL: {self.describe()}: the interval's lower bound is not above {what} "
            f"({self.baseline:.3f}); it has not shown that it reads the spine"
        )


def assess(
    run_dir: str | Path, data: str | Path | None = None, echo: Callable[[str], None] | None = None
) -> Assessment:
    """Score ``run_dir``'s model on its own test split (from its ``predictions.csv``) against chance
    and the shortcut probes."""
    from spinescan.metrics import accuracy, bootstrap_ci

    run = runs.load_run(run_dir)
    classes = list(run.spec.classes)
    read = _landmark_test_predictions if run.spec.task == "landmarks" else _classifier_test_predictions
    files, y, pred = read(run, classes)
    if not files:
        return Assessment(
            run.spec.name, run.dir, 0, 0.0, (0.0, 0.0), 1.0, None, None, "unavailable (no test images)"
        )
    acc = accuracy(y, pred)
    ci = bootstrap_ci(accuracy, y, pred, n_boot=N_BOOT, seed=0, strata=y, level=LEVEL)
    chance = float(np.bincount(y, minlength=len(classes)).max() / len(y))
    probe, name, source = _probe(run, files, y, classes, data)
    angle = _angle_gate(run, files, data) if run.spec.task == "landmarks" else None
    return Assessment(
        run.spec.name,
        run.dir,
        len(y),
        float(acc),
        (float(ci[0]), float(ci[1])),
        chance,
        probe,
        name,
        source,
        angle,
    )


def _angle_gate(run: runs.Run, files: list[str], data: str | Path | None) -> AngleGate | None:
    """The headline angle's error on the test films, where the manifest gives its true value for
    every one of them (a missing reading counts as 0 deg); None otherwise."""
    from spinescan.data.datasets import load_dataset
    from spinescan.errors import DataError
    from spinescan.evaluation.landmark_study import read_landmark_predictions
    from spinescan.metrics import bootstrap_ci

    name = run.spec.measurements[0]
    rows = read_landmark_predictions(run.dir, "test")
    try:
        extra = {
            s.rel: s.extra for s in load_dataset(Path(data) if data else run.config.dataset.root).samples
        }
    except DataError:
        return None
    try:
        true = np.asarray([float(extra[f][name]) for f in files])
    except (KeyError, TypeError, ValueError):
        return None
    read = [rows[f].get(name) for f in files]
    pred = np.asarray([float(v or 0.0) for v in read])
    if not np.isfinite(true).all():
        return None
    mae = float(np.abs(pred - true).mean())
    lo, hi = bootstrap_ci(
        lambda t, p: float(np.abs(p - t).mean()), true, pred, n_boot=N_BOOT, seed=0, level=LEVEL
    )
    guess = float(np.median(true))
    missing = sum(v is None or v == "" for v in read)
    return AngleGate(
        name, len(files), mae, (float(lo), float(hi)), guess, float(np.abs(true - guess).mean()), missing
    )


Predictions = tuple[list[str], np.ndarray, np.ndarray]


def _classifier_test_predictions(run: runs.Run, classes: list[str]) -> Predictions:
    """Files, true and predicted class indices on the test split: the argmax of the probabilities."""
    predictions = RunDir(run.dir).read_predictions().get("test")
    if predictions is None or not predictions[0]:
        return [], np.zeros(0, int), np.zeros(0, int)
    files, labels, probs = predictions
    index = {c: i for i, c in enumerate(classes)}
    y = np.asarray([index[lab] for lab in labels], dtype=int)
    return list(files), y, np.asarray(probs).argmax(axis=1)


def _landmark_test_predictions(run: runs.Run, classes: list[str]) -> Predictions:
    """The same for a landmark model: the label its measured angles imply (``pred_label``). A film
    whose angles gave no label (out of frame, or fitting no class) counts as wrong (index -1)."""
    from spinescan.evaluation.landmark_study import read_landmark_predictions

    try:
        rows = read_landmark_predictions(run.dir, "test")
    except FileNotFoundError:
        return [], np.zeros(0, int), np.zeros(0, int)
    index = {c: i for i, c in enumerate(classes)}
    files = list(rows)
    y = np.asarray([index[rows[f]["label"]] for f in files], dtype=int)
    pred = np.asarray([index.get(rows[f]["pred_label"], -1) for f in files], dtype=int)
    return files, y, pred


def _probe(
    run: runs.Run, files: list[str], y: np.ndarray, classes: list[str], data: str | Path | None
) -> tuple[float | None, str | None, str]:
    """The best probe's accuracy on the run's own test images (cross-validated within them,
    as the benchmark scores its probes), so model and probe are measured on the same films."""
    root = Path(data) if data else Path(run.config.dataset.root)
    paths = [root / f for f in files]
    if not all(p.is_file() for p in paths):
        return None, None, f"unavailable: test images not found under {root}"
    if len(set(y.tolist())) < 2 or np.bincount(y).min() < 2:
        return None, None, "unavailable: too few test images per class"
    try:
        from spinescan.evaluation.probes import features_for, run_probes

        features = features_for(paths)
        results = run_probes(
            files, y, features, classes, folds=min(5, int(np.bincount(y)[np.bincount(y) > 0].min()))
        )
    except ImportError as exc:
        return None, None, f"unavailable: {exc}"
    best = max((float((r.probs.argmax(axis=1) == y).mean()), r.name) for r in results)
    return best[0], best[1], "computed on the test images"
