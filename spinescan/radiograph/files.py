"""Finding image files in folders and reading their bytes without ever blocking or over-reading.

Light island. Only regular files are read: a FIFO, a device or ``/dev/zero`` is refused from its
``fstat`` before a byte is read, and the file size limit is checked before the rest is read.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from collections.abc import Callable, Iterator
from pathlib import Path

from spinescan.errors import ImageReadError
from spinescan.radiograph.formats import HEAD, IMAGE_SUFFIXES, SUPPORTED, sniff_bytes
from spinescan.radiograph.limits import file_limit, human_bytes


def sniff_format(path: str | os.PathLike[str]) -> str | None:
    """The format named by the file's magic bytes (one of :data:`SUPPORTED`), or ``None``.

    Never blocks: a FIFO or a device is not a regular file and gives ``None``.
    """
    try:
        fd = _open_regular(Path(path))
    except ImageReadError:
        return None
    try:
        head = os.read(fd, HEAD)
    except OSError:
        return None
    finally:
        os.close(fd)
    return sniff_bytes(head)


def is_image_candidate(path: Path) -> bool:
    """Whether a folder scan should consider ``path``: known extension, or no extension and a
    recognised magic number. Hidden files (dot-files, macOS ``._`` forks) are never images."""
    if path.name.startswith("."):
        return False
    suffix = path.suffix.lower()
    if suffix in IMAGE_SUFFIXES:
        return True
    return suffix == "" and sniff_format(path) is not None


# --- finding images in folders ---------------------------------------------------------------------


def walk_files(folder: Path, warn: Callable[[str], None], skip_hidden_dirs: bool = False) -> Iterator[Path]:
    """Every file below ``folder`` in sorted order, following symlinked folders once.

    A symlink that loops (points to itself, to a folder above it, or to a chain that never ends)
    is reported through ``warn`` with one line and not followed, instead of being skipped in
    silence or walked forever.
    """
    ancestors: set[tuple[int, int]] = set()
    for above in Path(os.path.realpath(folder)).parents:  # a link up to the dataset root loops too
        with contextlib.suppress(OSError):
            st = above.stat()
            ancestors.add((st.st_dev, st.st_ino))

    def visit(directory: Path) -> Iterator[Path]:
        try:
            st = directory.stat()
        except OSError:
            return
        key = (st.st_dev, st.st_ino)
        ancestors.add(key)
        try:
            entries = sorted(os.scandir(directory), key=lambda e: e.name)
        except OSError as exc:
            warn(f"{directory}: cannot list folder ({exc.strerror or exc})")
            entries = []
        for entry in entries:
            path = Path(entry.path)
            if entry.is_symlink():
                try:
                    target = path.stat()
                except OSError as exc:
                    if exc.errno == errno.ELOOP:
                        warn(f"{path}: symlink loop, skipped")
                    continue  # a dangling link is simply not a file
                if stat.S_ISDIR(target.st_mode):
                    if (target.st_dev, target.st_ino) in ancestors:
                        warn(f"{path}: symlink loop (points back to {os.path.realpath(path)}), not followed")
                        continue
                    if not (skip_hidden_dirs and entry.name.startswith(".")):
                        yield from visit(path)
                    continue
                if stat.S_ISREG(target.st_mode):
                    yield path
                continue
            if entry.is_dir(follow_symlinks=False):
                if not (skip_hidden_dirs and entry.name.startswith(".")):
                    yield from visit(path)
            elif entry.is_file(follow_symlinks=False):
                yield path
        ancestors.discard(key)

    yield from visit(folder)


def find_images(folder: Path, warn: Callable[[str], None], skip_hidden_dirs: bool = False) -> list[Path]:
    """The image candidates (:func:`is_image_candidate`) below ``folder``, sorted."""
    return sorted(p for p in walk_files(folder, warn, skip_hidden_dirs) if is_image_candidate(p))


# --- reading bytes --------------------------------------------------------------------------------


_KINDS = (
    (stat.S_ISDIR, "is a folder, not an image"),
    (stat.S_ISFIFO, "is a FIFO (named pipe), not a regular file"),
    (stat.S_ISCHR, "is a character device, not a regular file"),
    (stat.S_ISBLK, "is a block device, not a regular file"),
    (stat.S_ISSOCK, "is a socket, not a regular file"),
)


def _not_regular(mode: int) -> str | None:
    for test, why in _KINDS:
        if test(mode):
            return why
    return None if stat.S_ISREG(mode) else "is not a regular file"


def _open_regular(path: Path) -> int:
    """An fd on ``path`` opened without blocking, after checking it is a regular file."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise ImageReadError(f"{path}: file not found") from None
    except OSError as exc:
        raise ImageReadError(f"{path}: cannot read ({exc.strerror or exc})") from None
    why = _not_regular(mode)
    if why:
        raise ImageReadError(f"{path}: {why}")
    try:  # O_NONBLOCK: if the path was swapped for a FIFO since the stat, open still returns
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise ImageReadError(f"{path}: file not found") from None
    except OSError as exc:
        raise ImageReadError(f"{path}: cannot read ({exc.strerror or exc})") from None
    why = _not_regular(os.fstat(fd).st_mode)
    if why:
        os.close(fd)
        raise ImageReadError(f"{path}: {why}")
    return fd


def _read_exactly(fd: int, n: int) -> bytes:
    chunks, left = [], n
    while left > 0:
        block = os.read(fd, min(left, 1 << 24))
        if not block:
            break
        chunks.append(block)
        left -= len(block)
    return b"".join(chunks)


def read_file_bytes(path: str | os.PathLike[str], max_file_bytes: int | None = None) -> bytes:
    """The bytes of an image file, read only once it is known to be a regular file of a supported
    format (first bytes) and of a size under :data:`MAX_FILE_BYTES`.

    ``data check`` hashes these bytes and decodes them with :func:`decode_image`: one read per file.
    """
    path = Path(path)
    limit = int(max_file_bytes) if max_file_bytes is not None else file_limit()
    fd = _open_regular(path)
    try:
        size = os.fstat(fd).st_size
        if size == 0:
            raise ImageReadError(f"{path}: empty file (0 bytes)")
        try:
            head = os.read(fd, HEAD)
        except OSError as exc:
            raise ImageReadError(f"{path}: cannot read ({exc.strerror or exc})") from None
        if sniff_bytes(head) is None:
            raise ImageReadError(f"{path}: not a supported image (expected one of {', '.join(SUPPORTED)})")
        if size > limit:
            raise ImageReadError(
                f"{path}: file is {human_bytes(size)}, over the {human_bytes(limit)} limit "
                "(set SPINESCAN_MAX_FILE_BYTES to raise it)"
            )
        try:
            return head + _read_exactly(fd, size - len(head))
        except OSError as exc:
            raise ImageReadError(f"{path}: cannot read ({exc.strerror or exc})") from None
    finally:
        os.close(fd)
