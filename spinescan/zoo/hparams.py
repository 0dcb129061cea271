"""Hyper-parameters: one typed, frozen object, declared once, resolved once.

:class:`HParams` is both what a plugin declares as its defaults (``ModelSpec.train``) and what a
run resolves to and records. Each field carries, in its metadata, everything the rest of Spine
Scan needs to know about it, so no second list of field names exists anywhere:

* ``match``: whether the field decides if a finished run can stand in for a new one
  (the benchmark's run reuse; :func:`matching_fields`);
* ``option`` / ``help`` / ``choices`` / ``minimum``: the command-line option that overrides it
  (the CLI builds its click options from these, :mod:`spinescan.cli.options`).

:func:`resolve_hparams` is the one place where the spec's defaults, an ``--hparams FILE`` and
explicit overrides meet (in that order of precedence, last wins), as timm's
``resolve_data_config`` does for data settings. Nothing here imports TensorFlow.
"""

from __future__ import annotations

import json
import math
import os
import stat
from collections.abc import Mapping
from dataclasses import Field, asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from spinescan.errors import SpineScanError

HPARAMS_SCHEMA = "spinescan.hparams/1"
#: The most bytes of an ``--hparams`` file read (``best_hparams.json`` from ``tune`` is ~1 kB).
HPARAMS_MAX_BYTES = 1 << 20
CHECKPOINTS = ("last", "best")
LR_SCHEDULES = ("cosine", "plateau")
OPTIMIZERS = ("adam", "adamw", "sgd")
# The backbone catalogue's names (spinescan.zoo.backbones.BACKBONES); listed here so that the
# hyper-parameters can be validated and offered as choices without importing the builders.
BACKBONE_NAMES = ("compact", "mobilenetv3small", "efficientnetb0", "resnet50_frozen")
# How a landmark model reads its points (spinescan.landmark_net.model): one heatmap per point, or one
# per vertebra with each corner as an offset from it. Classifiers ignore it.
READOUTS = ("corners", "centres")


def _hp(
    default: Any,
    help: str,  # mirrors click's keyword
    *,
    option: str | None = None,
    choices: tuple[str, ...] | None = None,
    minimum: float | None = None,
    open_minimum: bool = False,
    maximum: float | None = None,
    match: bool = True,
    cli: bool = True,
) -> Any:
    """A hyper-parameter field with its command-line and run-matching facts."""
    meta = {
        "help": help,
        "option": option,
        "choices": choices,
        "minimum": minimum,
        "open_minimum": open_minimum,
        "maximum": maximum,
        "match": match,
        "cli": cli,
    }
    return field(default=default, metadata=meta)


@dataclass(frozen=True)
class HParams:
    """Training hyper-parameters. A plugin's defaults (``ModelSpec.train``) and a run's resolved
    settings are both an ``HParams``; ``config.json`` records the resolved one."""

    # Every number has an upper bound too: a value no run could use ({"width": 1e18}) is refused
    # here, in one line, instead of by TensorFlow seconds later (issue 26 #9). The bounds are far
    # above anything trained so far, so they refuse only what cannot be meant.
    epochs: int = _hp(30, "Epochs to run (the cosine schedule's length).", minimum=0, maximum=100_000)
    batch_size: int = _hp(32, "Batch size per replica.", minimum=1, maximum=65_536)
    learning_rate: float = _hp(
        2e-3, "Peak learning rate.", option="--lr", minimum=0, open_minimum=True, maximum=100.0
    )
    lr_schedule: str = _hp("cosine", "Learning-rate schedule.", choices=LR_SCHEDULES)
    optimizer: str = _hp("adam", "Optimizer.", choices=OPTIMIZERS)
    backbone: str = _hp("compact", "Backbone.", choices=BACKBONE_NAMES)
    # The compact backbone's base width: its conv blocks have width * (1, 2, 3, 4)[:depth] filters
    # (width 32, depth 4 -> 32, 64, 96, 128). keras.applications backbones ignore both.
    width: int = _hp(32, "Base filters of the compact backbone.", minimum=4, maximum=1024)
    depth: int = _hp(4, "Number of conv blocks of the compact backbone.", minimum=1, maximum=6)
    dropout: float = _hp(0.2, "Dropout before the classifier.", minimum=0.0, maximum=0.9)
    augment: bool = _hp(True, "Data augmentation (--no-augment turns it off).")
    target_accuracy: float = _hp(
        0.9, "Record when validation accuracy first reaches it.", minimum=0.0, maximum=1.0
    )
    # Which epoch's weights a run keeps: "last" (the end of the cosine schedule, no early
    # stopping) or "best" (highest validation accuracy, then lowest validation loss, once
    # min_epochs have passed, with early stopping after `patience` epochs without a gain).
    # "last" is the default because early stopping on a noisy validation curve cut runs short
    # while the learning rate was still high: a generalist stopped at epoch 17 of 30 with
    # validation 0.76 scored 0.93 on test when run to the end; and on 11 real films every epoch
    # after warm-up scores 1.0, so "best" is noise there (README, Real films and Benchmark).
    checkpoint: str = _hp(
        "last",
        "Keep the best epoch by validation accuracy (with early stopping), or the last one.",
        choices=CHECKPOINTS,
    )
    patience: int = _hp(
        8, "Early-stopping patience in epochs (--checkpoint best).", minimum=1, maximum=100_000
    )
    min_epochs: int = _hp(
        6, "Epochs before early stopping may act (--checkpoint best).", minimum=0, maximum=100_000
    )
    # A stalled start: from-scratch heatmap models sometimes sit on a loss plateau for many epochs
    # (one `cobb` seed in three held validation accuracy at ~0.1 for 13 of its 24 epochs and ended
    # with a 6.3-deg Cobb MAE, against 2.3-2.8 for the others). Waiting out the plateau costs the
    # run; restarting from a new initialisation costs a few epochs. The check runs once, at the end
    # of the first epoch by which `restart_check_steps` optimizer steps have run, and only when that
    # leaves at least as many epochs after it. Off by default (classifiers); on for landmark models.
    # Not part of run matching: a run whose check passes is the run it would have been without the
    # check (the first attempt uses the run's own seed), and metrics.json records any restart.
    restart_below: float = _hp(
        0.0,
        "Restart from a new initialisation when validation accuracy is still below this after "
        "--restart-check-steps optimizer steps (a stalled start); 0 never restarts.",
        minimum=0.0,
        maximum=1.0,
        match=False,
    )
    restart_check_steps: int = _hp(
        400,
        "Optimizer steps after which the stalled-start check runs (--restart-below).",
        minimum=1,
        maximum=10_000_000,
        match=False,
    )
    max_restarts: int = _hp(
        2, "Most restarts after stalled starts (--restart-below).", minimum=0, maximum=100, match=False
    )
    geometric_augment: bool = _hp(
        False,
        "Landmark models: with --augment, also rotate, shift and zoom each film together with its "
        "landmarks (and mirror AP films).",
    )
    readout: str = _hp(
        "corners",
        "Landmark models: one heatmap per point (corners), or one per vertebra with each corner "
        "read as an offset from it (centres).",
        choices=READOUTS,
    )
    # The split's fractions are part of the split itself (its hash decides run reuse).
    validation_fraction: float = _hp(
        0.15, "Validation share of the split.", minimum=0.0, maximum=0.9, match=False, cli=False
    )
    test_fraction: float = _hp(
        0.15, "Test share of the split.", minimum=0.0, maximum=0.9, match=False, cli=False
    )

    def __post_init__(self) -> None:
        problems = [p for f in fields(self) if (p := _check(f, getattr(self, f.name)))]
        if problems:
            raise SpineScanError("; ".join(problems))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any], where: str = "hyper-parameters") -> HParams:
        """Strict: unknown fields are an error (a typo must not silently train the default)."""
        return cls().override(values, where)

    def override(self, values: Mapping[str, Any], where: str = "hyper-parameters") -> HParams:
        """A copy with ``values`` (``None`` values are "not given") applied, coerced and checked."""
        known = {f.name: f for f in fields(self)}
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise SpineScanError(f"{where}: unknown field(s) {', '.join(unknown)}; known: {', '.join(known)}")
        given = {k: _coerce(known[k], v, where) for k, v in values.items() if v is not None}
        try:
            return replace(self, **given)
        except SpineScanError as exc:  # a bound: say where the value came from
            raise SpineScanError(f"{where}: {exc}") from None


def hparam_fields() -> tuple[Field, ...]:
    """The declared fields, in order (the CLI builds its options from these)."""
    return fields(HParams)


def matching_fields() -> tuple[str, ...]:
    """The fields that must agree for a finished run to stand in for a new one."""
    return tuple(f.name for f in fields(HParams) if f.metadata["match"])


def _coerce(f: Field, value: Any, where: str) -> Any:
    kind = type(f.default)
    shown = repr(value) if len(repr(value)) <= 60 else repr(value)[:57] + "..."
    try:
        if kind is bool:
            if not isinstance(value, bool):
                raise TypeError("expected true or false")
            return value
        if kind in (int, float):
            if isinstance(value, bool) or not isinstance(value, (int, float, str)):
                raise TypeError(f"expected a number, got {type(value).__name__}")
            number = float(value)  # "1e400" and 1e400 are inf: refused below, never int(inf)
            if not math.isfinite(number):
                raise ValueError("expected a finite number")
            if kind is int:
                if number != int(number):
                    raise TypeError("expected an integer")
                return value if isinstance(value, int) else int(number)
            return number
        if not isinstance(value, kind):
            raise TypeError(f"expected {kind.__name__}, got {type(value).__name__}")
        return value
    except (TypeError, ValueError, OverflowError) as exc:
        raise SpineScanError(f"{where}: {f.name}={shown}: {exc}") from None


def _check(f: Field, value: Any) -> str | None:
    meta = f.metadata
    if meta["choices"] and value not in meta["choices"]:
        return f"unknown {f.name} {value!r}; choose one of {', '.join(meta['choices'])}"
    low, high = meta["minimum"], meta["maximum"]
    if low is not None and (value <= low if meta["open_minimum"] else value < low):
        return f"{f.name} must be {'>' if meta['open_minimum'] else '>='} {low:g}, got {value!r}"
    if high is not None and value > high:
        return f"{f.name} must be <= {high:g}, got {value!r}"
    return None


def read_hparams_file(path: str | Path, model: str | None = None) -> dict[str, Any]:
    """The overrides in an ``--hparams FILE``:
    ``{"schema": "spinescan.hparams/1", "model": NAME, "hparams": {field: value, ...}}``.

    ``model`` may be omitted in the file; when present it must name the model being trained, so a
    file tuned for one model is not applied to another by mistake.
    """
    path = Path(path)
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):  # a FIFO would block, a device never end
            raise SpineScanError(f"--hparams {path}: not a regular file")
        with open(path, "rb") as fh:
            raw = fh.read(HPARAMS_MAX_BYTES + 1)  # never the whole of a 100 MB file
    except FileNotFoundError:
        raise SpineScanError(f"--hparams {path}: file not found") from None
    except OSError as exc:
        raise SpineScanError(f"--hparams {path}: cannot read it ({exc.strerror or exc})") from None
    if len(raw) > HPARAMS_MAX_BYTES:
        raise SpineScanError(
            f"--hparams {path}: larger than {HPARAMS_MAX_BYTES // 1024} kB; a hyper-parameter file is a "
            "few hundred bytes"
        )
    try:
        doc = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise SpineScanError(f"--hparams {path}: not UTF-8 text (byte {exc.start})") from None
    except RecursionError:
        raise SpineScanError(f"--hparams {path}: JSON nested too deeply") from None
    except ValueError as exc:  # json.JSONDecodeError
        raise SpineScanError(f"--hparams {path}: not readable JSON ({exc})") from None
    if not isinstance(doc, dict) or doc.get("schema") != HPARAMS_SCHEMA:
        raise SpineScanError(f'--hparams {path}: expected a JSON object with "schema": "{HPARAMS_SCHEMA}"')
    extra = sorted(set(doc) - {"schema", "model", "hparams"})
    if extra:
        raise SpineScanError(f"--hparams {path}: unknown key(s) {', '.join(extra)}")
    values = doc.get("hparams", {})
    if not isinstance(values, dict):
        raise SpineScanError(f'--hparams {path}: "hparams" must be an object')
    if model is not None and doc.get("model") not in (None, model):
        raise SpineScanError(f"--hparams {path} is for model {repr(doc['model'])[:60]}, not {model!r}")
    HParams().override(values, f"--hparams {path}")  # unknown fields and bad values: fail now
    return dict(values)


def resolve_hparams(
    defaults: HParams,
    overrides: Mapping[str, Any] | None = None,
    hparams_file: str | Path | None = None,
    model: str | None = None,
) -> HParams:
    """The run's hyper-parameters: the plugin's ``defaults``, then ``hparams_file``, then the
    explicit ``overrides`` (``None`` = not given). Later sources win."""
    resolved = defaults
    if hparams_file is not None:
        resolved = resolved.override(read_hparams_file(hparams_file, model), f"--hparams {hparams_file}")
    return resolved.override(dict(overrides or {}), "option")


# The name plugins have always used for their defaults.
TrainDefaults = HParams
