"""How a training run stops early and says so in one line: Ctrl-C (:class:`TrainingInterrupted`, with
the ``--resume`` command), a run file the disk refused (:class:`RunNotSaved`), and the ``--runs``
folder checked before any image is loaded (:func:`check_runs_writable`)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from spinescan.errors import SpineScanError

if TYPE_CHECKING:
    from spinescan.training.prepare import Plan


class TrainingInterrupted(SpineScanError):
    """Ctrl-C during training: finished epochs are saved. The CLI turns the fields into the
    ``--resume`` command line (:func:`spinescan.cli.train.resume_command`)."""

    exit_code = 130

    def __init__(self, plan: Plan, epochs_done: int) -> None:
        self.model = plan.spec.name
        self.run_dir = plan.rundir.path
        self.run_id = plan.rundir.run_id
        self.runs_dir = Path(plan.config.runs_dir)
        self.data = plan.data
        self.epochs_done = epochs_done
        super().__init__(
            f"Interrupted after {epochs_done} finished epoch(s). The history, the kept model so far "
            f"and the training state are saved in {self.run_dir}."
        )


class RunNotSaved(TrainingInterrupted):
    """A file of the run could not be written (a full disk, a read-only or vanished folder). Every
    run file is written atomically, so what was saved before is intact; the CLI adds the
    ``--resume`` command line, as for Ctrl-C (issue 26 #5)."""

    exit_code = 1

    def __init__(self, plan: Plan, exc: BaseException) -> None:
        super().__init__(plan, 0)
        where = getattr(exc, "filename", None) or self.run_dir
        why = getattr(exc, "strerror", None) or " ".join(str(exc).split())[:200] or type(exc).__name__
        Exception.__init__(
            self,
            f"could not write {where} ({why}). The files saved before are intact in {self.run_dir} "
            "(every run file is written atomically); free some space (or fix the folder).",
        )


#: Words in a TensorFlow error (its checkpoint writer raises its own types, not OSError) that
#: say the disk refused a write.
_WRITE_FAILURES = ("No space left", "Read-only file system", "Disk quota exceeded", "Permission denied")


def is_write_failure(exc: BaseException) -> bool:
    """An error that means the disk refused a write (an OSError, or TensorFlow's own words for it)."""
    if isinstance(exc, OSError):
        return True
    return type(exc).__module__.startswith("tensorflow") and any(w in str(exc) for w in _WRITE_FAILURES)


def check_runs_writable(runs_dir: str | os.PathLike[str]) -> None:
    """Refuse, in one line and before any image is loaded, a ``--runs`` folder that cannot take a
    file (read-only, not a folder, no permission). Before: 10 s of loading, then a chained
    traceback."""
    folder = Path(runs_dir)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(prefix=".write-check-", dir=folder):
            pass
    except OSError as exc:
        raise SpineScanError(
            f"--runs {folder}: cannot write there ({exc.strerror or exc}); pass a writable folder with --runs"
        ) from None
