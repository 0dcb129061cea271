"""The settings a run shares between ``train``, ``bench`` and ``tune``: one frozen object, declared once.

:class:`RunSettings` holds what the three commands used to repeat field by field (input size,
resize, seed, initial weights, distribution strategy, phantom pretraining), so a run request,
a benchmark and a search pass the same object on instead of copying it (issue 23 #3). As for
:class:`~spinescan.zoo.hparams.HParams`, each field carries in its metadata everything the command
line needs (``option``, ``help``, ``choices``, ``minimum``/``maximum``, ``metavar``, the default it
shows): :func:`spinescan.cli.options.settings_options` builds the click options of all three
commands from it, and which command leaves which setting out is one declared table there.

The values are checked once, here (choices and bounds), with the wording the checks had when they
lived in :func:`spinescan.training.config.resolve_request`. Nothing here imports TensorFlow.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import Field, dataclass, field, fields
from typing import Any

from spinescan.errors import SpineScanError
from spinescan.radiograph.preprocess import RESIZE_MODES

STRATEGIES = ("auto", "mirrored", "multiworker")
WEIGHTS = ("none", "imagenet")  # what --weights accepts; the object holds None for "none"


def parse_image_size(text: str) -> int | tuple[int, int]:
    """``"224"`` -> 224 (square), ``"512x192"`` -> (512, 192): the ``--image-size`` syntax, one parser
    for the CLI and the benchmarks. ``ValueError`` for anything else (callers word the message)."""
    h, sep, w = str(text).strip().lower().partition("x")
    return (int(h), int(w)) if sep else int(h)


def _setting(
    default: Any,
    help: str,  # mirrors click's keyword
    *,
    option: str | None = None,
    choices: tuple[str, ...] | None = None,
    minimum: float | None = None,
    maximum: float | None = None,
    metavar: str | None = None,
    cli_default: Any = None,
    show_default: bool = False,
    helps: Mapping[str, str] | None = None,
) -> Any:
    """A run setting with its command-line facts. ``cli_default``: the default the option shows
    when it differs from the field's (``--weights none`` for ``None``); ``helps``: a command's own
    wording of the help, where the setting means something narrower there (``tune --seed``)."""
    meta = {
        "help": help,
        "option": option,
        "choices": choices,
        "minimum": minimum,
        "maximum": maximum,
        "metavar": metavar,
        "cli_default": cli_default,
        "show_default": show_default,
        "helps": dict(helps or {}),
    }
    return field(default=default, metadata=meta)


@dataclass(frozen=True)
class RunSettings:
    """What train, bench and tune share about how a run is made. ``None`` means "the plugin's
    default" (input size, resize) or "the pretraining stage's default" (pretrain_*)."""

    image_size: int | tuple[int, int] | None = _setting(
        None,
        "Input size: PX (square) or HEIGHTxWIDTH, e.g. 512x192 [plugin default].",
        minimum=8,
        metavar="PX|HxW",
    )
    resize: str | None = _setting(
        None, "Resize mode, recorded in the run and the ONNX metadata [plugin default].", choices=RESIZE_MODES
    )
    seed: int = _setting(
        0,
        "Seed for the split, weights and augmentation.",
        show_default=True,
        helps={"tune": "Seed of the split, folds and search."},
    )
    weights: str | None = _setting(
        None,
        "Initial weights for keras.applications backbones (imagenet needs the file cached offline).",
        choices=WEIGHTS,
        cli_default="none",
        show_default=True,
    )
    strategy: str = _setting(
        "auto", "tf.distribute strategy (multiworker reads TF_CONFIG).", choices=STRATEGIES, show_default=True
    )
    pretrain: str | None = _setting(
        None,
        "Pretrain on rendered phantoms of the model's view (rendered and trained once, then "
        "reused), or start from RUN_DIR; then fine-tune on --data.",
        metavar="phantoms|RUN_DIR",
    )
    pretrain_per_class: int | None = _setting(
        None, "Phantoms per class for --pretrain phantoms [1000].", minimum=10
    )
    pretrain_epochs: int | None = _setting(None, "Epochs of the pretraining stage [10].", minimum=1)
    pretrain_borderline: float | None = _setting(
        None,
        "Fraction of pretraining phantoms drawn near the class threshold [0].",
        minimum=0.0,
        maximum=1.0,
    )

    def __post_init__(self) -> None:
        from spinescan.zoo.backbones import normalize_weights  # Keras is lazy there

        size = self.image_size
        if isinstance(size, list):  # read back from JSON
            size = tuple(size)
        object.__setattr__(self, "image_size", size)
        object.__setattr__(self, "weights", normalize_weights(self.weights))
        problems = [p for f in fields(self) if (p := _check(f, getattr(self, f.name)))]
        if problems:
            raise SpineScanError("; ".join(problems))


def settings_fields() -> tuple[Field, ...]:
    """The declared fields, in order (the CLI builds the shared options from these)."""
    return fields(RunSettings)


def _check(f: Field, value: Any) -> str | None:
    meta = f.metadata
    if value is None:
        return None
    if meta["choices"] and value not in meta["choices"]:
        return f"unknown {f.name} {value!r}; choose one of {', '.join(meta['choices'])}"
    if f.name == "image_size":
        sides = value if isinstance(value, tuple) else (value,)
        if len(sides) not in (1, 2) or not all(isinstance(s, int) and not isinstance(s, bool) for s in sides):
            return f"image_size must be PX or (HEIGHT, WIDTH) in whole pixels, got {value!r}"
        value = min(sides)
    low, high = meta["minimum"], meta["maximum"]
    if low is not None and value < low:
        return f"{f.name} must be >= {low:g}, got {value!r}"
    if high is not None and value > high:
        return f"{f.name} must be <= {high:g}, got {value!r}"
    return None
