"""The run-configuration document (``config.json``): one typed, versioned record of what a run was.

Written once when a run starts (:class:`RunConfig`, schema ``spinescan.run/1``) and read back
through :func:`parse_run_config`, which also reads the untyped documents runs wrote before the
schema existed (their missing hyper-parameters are the defaults that reproduce them exactly). The
spec summary is the one place the preprocessing and input size are recorded.
"""

from __future__ import annotations

import hashlib
import os
import platform
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from spinescan.errors import SpineScanError
from spinescan.radiograph.preprocess import Preprocessing
from spinescan.zoo.hparams import HParams, matching_fields

if TYPE_CHECKING:
    from spinescan.data.datasets import Sample
    from spinescan.data.splits import Split
    from spinescan.zoo.spec import ModelSpec

RUN_SCHEMA = "spinescan.run/1"


@dataclass(frozen=True)
class DatasetRecord:
    """The data a run saw: where, how laid out, a fingerprint, and whether it is synthetic."""

    root: str
    layout: str = ""
    fingerprint: str = ""
    view_images: int = 0
    synthetic: bool = False


@dataclass(frozen=True)
class RunIdentity:
    """What must agree for a finished run to stand in for a new one (benchmark reuse)."""

    model: str
    seed: int
    weights: str | None
    init_from: str | None
    input_size: tuple[int, ...]
    preprocessing: tuple[tuple[str, Any], ...]
    hparams: tuple[tuple[str, Any], ...]
    fingerprint: str
    split_hash: str


@dataclass(frozen=True)
class RunConfig:
    """``config.json``. ``spec`` is the spec summary as trained (classes, input size, preprocessing)."""

    run_id: str
    model: str
    hparams: HParams
    spec: dict[str, Any]
    seed: int = 0
    weights: str | None = None
    init_from: str | None = None
    dataset: DatasetRecord = field(default_factory=lambda: DatasetRecord(root=""))
    split_source: str = "computed"  # or "override" (k-fold benchmarks)
    split_hash: str = ""
    counts: dict[str, int] = field(default_factory=dict)
    skipped: list[dict[str, str]] = field(default_factory=list)
    strategy: dict[str, Any] = field(default_factory=dict)  # {"name", "replicas"}
    in_memory: bool = True
    tensorboard: bool = False
    versions: dict[str, str] = field(default_factory=dict)
    created: str = ""
    pretrain: dict[str, Any] | None = None  # the run it was fine-tuned from (training.pretrain)
    schema: str = RUN_SCHEMA

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["hparams"] = self.hparams.to_dict()
        return out

    def model_spec(self) -> ModelSpec:
        return spec_from_summary(self.spec, self.model)

    def identity(self) -> RunIdentity:
        spec = self.spec
        return make_identity(
            self.model,
            self.seed,
            self.weights,
            self.init_from,
            spec.get("input_size", ()),
            spec.get("preprocessing", {}),
            self.hparams,
            self.dataset.fingerprint,
            self.split_hash,
        )

    def with_pretrain(self, entry: dict[str, Any]) -> RunConfig:
        return replace(self, pretrain=entry)


def make_identity(
    model: str,
    seed: int,
    weights: str | None,
    init_from: str | None,
    input_size: Sequence[int],
    preprocessing: dict[str, Any],
    hparams: HParams,
    fingerprint: str,
    split_hash: str,
) -> RunIdentity:
    prep = Preprocessing.from_dict(dict(preprocessing)).to_dict()
    return RunIdentity(
        model=model,
        seed=int(seed),
        weights=weights,
        init_from=init_from,
        input_size=tuple(int(v) for v in input_size),
        preprocessing=tuple(sorted((k, _hashable(v)) for k, v in prep.items())),
        hparams=tuple((name, getattr(hparams, name)) for name in matching_fields()),
        fingerprint=fingerprint,
        split_hash=split_hash,
    )


def _hashable(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


def parse_run_config(doc: dict[str, Any], where: str = "config.json") -> RunConfig:
    """A :class:`RunConfig` from ``config.json`` (this schema, or the schema-less first version)."""
    if not isinstance(doc, dict):
        raise SpineScanError(f"{where}: not a run configuration")
    schema = doc.get("schema")
    if schema is None:
        return _parse_legacy(doc)
    if schema != RUN_SCHEMA:
        raise SpineScanError(f"{where}: unsupported schema {schema!r} (this version reads {RUN_SCHEMA})")
    known = {f.name for f in fields(RunConfig)}
    values = {k: v for k, v in doc.items() if k in known}
    values["hparams"] = HParams.from_dict(doc.get("hparams", {}), where)
    values["dataset"] = _dataset(doc.get("dataset", {}))
    return RunConfig(**values)


def _dataset(d: dict[str, Any]) -> DatasetRecord:
    known = {f.name for f in fields(DatasetRecord)}
    return DatasetRecord(**{k: v for k, v in d.items() if k in known})


def _parse_legacy(doc: dict[str, Any]) -> RunConfig:
    """The first version: resolved settings under ``arguments``, no schema."""
    args = dict(doc.get("arguments", {}))
    hp_names = {f.name for f in fields(HParams)}
    hparams = HParams().override({k: v for k, v in args.items() if k in hp_names}, "config.json")
    spec = dict(doc.get("spec", {}))
    spec.setdefault("name", args.get("model"))
    spec.setdefault("input_size", args.get("input_size"))
    spec.setdefault("preprocessing", args.get("preprocessing", {}))
    return RunConfig(
        run_id=str(doc.get("run_id", "")),
        model=str(args.get("model") or spec.get("name")),
        hparams=hparams,
        spec=spec,
        seed=int(args.get("seed", 0)),
        weights=args.get("weights"),
        init_from=args.get("init_from"),
        dataset=_dataset({"root": args.get("data", ""), **doc.get("dataset", {})}),
        split_source=str(args.get("split_source", "computed")),
        split_hash=str(doc.get("split_hash", "")),
        counts=dict(doc.get("counts", {})),
        skipped=list(doc.get("skipped", [])),
        strategy=dict(doc.get("strategy", {})),
        in_memory=bool(args.get("in_memory", True)),
        tensorboard=bool(args.get("tensorboard", False)),
        versions=dict(doc.get("versions", {})),
        created=str(doc.get("created", "")),
        pretrain=doc.get("pretrain"),
    )


def spec_from_summary(summary: dict[str, Any], name: str | None = None) -> ModelSpec:
    """The spec a run was trained with: the registered one, overridden by what the run recorded
    (classes, input size, preprocessing), so a later plugin change cannot silently alter it."""
    from spinescan.zoo.registry import get_registry
    from spinescan.zoo.spec import ModelSpec, default_builder

    name = summary.get("name") or name
    known = get_registry().models.get(name)
    values = {
        "classes": tuple(summary.get("classes", ())),
        "input_size": tuple(summary.get("input_size", ()) or ()),
        "preprocessing": Preprocessing.from_dict(summary.get("preprocessing", {})),
    }
    values = {k: v for k, v in values.items() if v or k == "preprocessing"}
    if known is not None:
        return replace(known, **values)
    return ModelSpec(
        name=name,
        description=summary.get("description", ""),
        view=summary.get("view", "lateral"),
        build=default_builder,
        negative_class=summary.get("negative_class", "healthy"),
        plugin=summary.get("plugin", ""),
        **values,
    )


def dataset_fingerprint(samples: Sequence[Sample]) -> str:
    """md5 of the sorted (rel path, label, view, patient, size in bytes) of ``samples``.

    Cheap (no file is read) yet changes when an image is added, removed, relabelled or
    replaced by a file of another size.
    """
    h = hashlib.md5(usedforsecurity=False)
    for s in sorted(samples, key=lambda s: s.rel):
        try:
            size = os.stat(s.path).st_size
        except OSError:
            size = -1
        h.update(f"{s.rel}\x1f{s.label}\x1f{s.view}\x1f{s.patient_id}\x1f{size}\n".encode())
    return h.hexdigest()


def split_hash(split: Split) -> str:
    import json

    body = json.dumps({p: sorted(getattr(split, p)) for p in ("train", "val", "test")}, sort_keys=True)
    return hashlib.md5(body.encode(), usedforsecurity=False).hexdigest()


def versions() -> dict[str, str]:
    from spinescan import __version__

    out = {"python": platform.python_version(), "numpy": np.__version__, "spinescan": __version__}
    try:
        import keras
        import tensorflow as tf

        out.update(tensorflow=tf.__version__, keras=keras.__version__)
    except ImportError:  # pragma: no cover - reading runs on a light install
        pass
    return out
