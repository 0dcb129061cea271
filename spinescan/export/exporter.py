"""``spinescan export --onnx``: turn finished training runs into files the edge predictor trusts.

Each run is staged by :func:`spinescan.export.stage.stage_run` (convert, prove the ONNX file
faithful to Keras, optionally quantize to int8 behind its gate, describe it); which runs is
:mod:`spinescan.export.selection` and :mod:`spinescan.export.run_dirs`. This module stages every
run of the call and publishes the set: the model cards, ``manifest.json`` (with each file's sha256,
which the predictor checks), the standalone ``predict.py`` and the page.

All or nothing, for the whole set of models, manifest included: everything is built in one
staging folder, and only once every model of the call has passed every check is the new set
switched in, in one atomic step (:mod:`spinescan.export.publish`). Any failure, whatever its type,
or a kill at any point, leaves ``exported/`` with either the old complete set or the new one.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from spinescan.edge.manifest import MANIFEST_NAME
from spinescan.edge.model_metadata import WEAK_KEY
from spinescan.errors import SpineScanError
from spinescan.export.onnx_convert import DEFAULT_OPSET, ExportError
from spinescan.export.publish import ExportLock, one_line, publish
from spinescan.export.stage import Echo, Staged, silent, stage_run
from spinescan.export.webpage import WEB_DIR, build_web

QUANTIZE_CHOICES = ("int8",)
DEFAULT_OUT = Path("exported")
RESULT_SCHEMA = "spinescan.export-result/1"  # ExportReport.to_dict (spinescan export --json)


@dataclass
class ExportReport:
    """What an export did: one manifest entry per exported model, one message per failure.

    Exports are all or nothing: when anything failed, ``exported`` is empty and nothing changed.
    """

    out_dir: Path
    exported: dict[str, dict[str, Any]]
    failed: dict[str, str]
    attempted: int = 0
    version: str | None = None  # the published version folder's name (``.v-...``), None if none

    def to_dict(self, gates: Sequence[Any] = (), refused: Sequence[str] = ()) -> dict[str, Any]:
        """The export as ``spinescan export --json`` prints it: the published version, each exported
        model's files with their sha256 and int8 verdict, and the weak-model gate's result for every
        run considered (``gates``: :class:`~spinescan.export.selection.Assessment`; ``refused``: the
        models the gate kept out). The full entries are in the set's manifest.json."""
        models = {}
        for name, entry in self.exported.items():
            int8 = entry.get("int8")
            models[name] = {
                "file": entry["file"],
                "sha256": entry["sha256"],
                "size_bytes": entry["size_bytes"],
                "task": entry.get("task"),
                "view": entry.get("view"),
                "run_dir": entry.get("run_dir"),
                "run_id": entry.get("run_id"),
                "weak": entry.get(WEAK_KEY),  # the gate's verdict for --allow-weak, else None
                "parity": entry.get("parity"),
                "int8": None if not int8 else {
                    "file": int8.get("file"),
                    "sha256": int8.get("sha256"),
                    "shipped": int8.get("shipped"),
                    "reason": int8.get("reason"),
                },
            }  # fmt: skip
        return {
            "schema": RESULT_SCHEMA,
            "out_dir": self.out_dir.as_posix(),
            "version": self.version,
            "manifest": (self.out_dir / MANIFEST_NAME).as_posix() if self.exported else None,
            "models": models,
            "failed": dict(self.failed),
            "refused": list(refused),
            "gates": [g.to_dict() for g in gates],
        }

    def raise_for_failures(self) -> None:
        """Fail loudly (non-zero exit) if any run could not be exported."""
        if self.failed:
            listed = "; ".join(f"{run}: {why}" for run, why in self.failed.items())
            total = max(self.attempted, len(self.failed))
            raise ExportError(
                f"{len(self.failed)} of {total} export(s) failed, so nothing was exported; "
                f"previous files kept ({listed})"
            )


def export_runs(
    run_dirs: Sequence[Path],
    out_dir: str | Path = DEFAULT_OUT,
    *,
    quantize: str | None = None,
    opset: int = DEFAULT_OPSET,
    data: str | Path | None = None,
    echo: Echo = silent,
    weak: dict[str, str] | None = None,
) -> ExportReport:
    """Stage every run, then publish them together, or nothing at all.

    ``weak`` maps a run directory (as given) to the weak-model gate's verdict for the runs exported
    despite it (``--allow-weak``): those models are marked weak everywhere (see :func:`stage_run`).

    Every run is still tried when one fails (so one call reports every problem), but a single
    failure, of any exception type, leaves ``out_dir`` exactly as it was. Call
    :meth:`ExportReport.raise_for_failures` to fail loudly. Leftovers of a killed export
    (``.staging-*``) are removed first.
    """
    if quantize not in (None, *QUANTIZE_CHOICES):
        raise SpineScanError(
            f"unknown quantization {quantize!r}; choose one of {', '.join(QUANTIZE_CHOICES)}"
        )
    out_dir = Path(out_dir)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ExportError(f"cannot create {out_dir} ({exc.strerror or exc})") from None
    failed: dict[str, str] = {}
    with ExportLock(out_dir) as lock:
        lock.clean_stale(echo)
        staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=out_dir))
        try:
            staged: dict[str, Staged] = {}
            for i, run_dir in enumerate(run_dirs):
                run_staging = staging / f"run{i}"  # one folder per run: a duplicate cannot overwrite
                run_staging.mkdir()
                try:
                    one = stage_run(
                        Path(run_dir),
                        run_staging,
                        quantize=quantize,
                        opset=opset,
                        data=data,
                        echo=echo,
                        weak=(weak or {}).get(str(run_dir)),
                    )
                    if one.name in staged:
                        raise ExportError(f"model {one.name!r} is exported twice in one call")
                    staged[one.name] = one
                except Exception as exc:  # any failure: keep the old set, report one line
                    failed[str(run_dir)] = one_line(exc)
                    echo(f"FAILED {run_dir}: {failed[str(run_dir)]}")
            if failed or not staged:
                return ExportReport(out_dir, {}, failed, len(run_dirs))
            entries = {name: one.entry for name, one in staged.items()}
            files = {fname: path for one in staged.values() for fname, path in one.files.items()}
            cards = {one.entry["card"]: one.card for one in staged.values()}
            try:
                # The page is part of the staged set (issue 26 #4): a disk that fills while it is
                # written fails here, before the switch, like a model that cannot be written.
                version = publish(out_dir, staging / "set", entries, files, cards, echo=echo, page=build_web)
            except Exception as exc:  # e.g. disk full: the switch is the last step
                raise ExportError(
                    f"could not switch {out_dir} to the new set ({one_line(exc)}); the previous set is "
                    "unchanged"
                ) from None
            if (version / WEB_DIR).is_dir():
                page = out_dir / WEB_DIR
                echo(f"browser page written to {page}/ (open it with `spinescan serve --dir {out_dir}`)")
            return ExportReport(out_dir, entries, {}, len(run_dirs), version.name)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
