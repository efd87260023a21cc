"""Atomic writes: a reader never sees half a file or half a directory.

Every file Cadence writes for a user (checkpoints, audio, shards, resume state, k-means
state, pipeline files) goes through these helpers, so the guarantees are written once:

- a file is written to a temporary name beside its destination, flushed and fsynced, then
  renamed over it (``os.replace`` is atomic on POSIX and Windows), so a crash leaves the old
  file or the new one, never a mix; a failed write leaves the destination untouched;
- a directory is built as a temporary sibling, fsynced, and swapped in by two renames (the
  old one moved aside, the new one moved in); a crash between the renames is finished by
  :func:`recover_directory`, which every reader of such a directory calls first.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

__all__ = [
    "OLD_SUFFIX",
    "TMP_SUFFIX",
    "atomic_directory",
    "atomic_file",
    "fsync_dir",
    "fsync_file",
    "recover_directory",
    "swap_directory",
    "write_bytes",
    "write_json",
    "write_text",
]

# Names of the previous directory while a new one is being swapped in, and of work in progress.
OLD_SUFFIX = ".cadence-old"
TMP_SUFFIX = ".cadence-tmp"


def fsync_file(path: str | os.PathLike) -> None:
    """Flush a written file's data to disk."""
    with open(path, "rb+") as f:
        os.fsync(f.fileno())


def fsync_dir(path: str | os.PathLike) -> None:
    """Flush a directory's entries (a rename is durable only once its directory is)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # directories cannot be opened on every platform (Windows)
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _temporary_name(path: Path) -> Path:
    # Hidden, unique per writer, and with the destination's suffix, so writers that pick a
    # format from the suffix (soundfile, safetensors) write the right one.
    return path.with_name(
        f".{path.stem}{TMP_SUFFIX}-{os.getpid()}-{uuid.uuid4().hex[:8]}{path.suffix}"
    )


@contextmanager
def atomic_file(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path to write ``path`` through; on success it replaces ``path``.

    Example::

        with atomic_file("out.wav") as tmp:
            soundfile.write(tmp, data, 16000)

    The parent directory is created. On an exception the temporary file is removed and
    ``path`` is left as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temporary_name(path)
    try:
        yield tmp
        fsync_file(tmp)
        os.replace(tmp, path)
        fsync_dir(path.parent)
    finally:
        tmp.unlink(missing_ok=True)


def write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically."""
    with atomic_file(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    return write_bytes(path, text.encode("utf-8"))


def write_json(
    path: str | os.PathLike, data: Any, *, indent: int = 2, sort_keys: bool = False
) -> Path:
    """Write ``data`` as JSON (with a final newline) to ``path`` atomically."""
    return write_text(path, json.dumps(data, indent=indent, sort_keys=sort_keys) + "\n")


def _fsync_tree(directory: Path) -> None:
    for root, _, files in os.walk(directory):
        for name in files:
            fsync_file(Path(root) / name)
        fsync_dir(root)


def swap_directory(new: str | os.PathLike, directory: str | os.PathLike) -> Path:
    """Move the finished directory ``new`` into place as ``directory``, replacing it.

    ``new``'s files are fsynced first; the previous ``directory`` is moved aside, ``new`` is
    renamed into place, and the old one is deleted. Interrupted between the renames, the
    next :func:`recover_directory` finishes the swap.
    """
    new, directory = Path(new), Path(directory)
    _fsync_tree(new)
    old = directory.with_name(directory.name + OLD_SUFFIX)
    if directory.exists():
        if old.exists():
            shutil.rmtree(old)
        os.replace(directory, old)
    os.replace(new, directory)
    fsync_dir(directory.parent)
    shutil.rmtree(old, ignore_errors=True)
    return directory


@contextmanager
def atomic_directory(directory: str | os.PathLike) -> Iterator[Path]:
    """Yield an empty temporary directory to fill; on success it replaces ``directory``.

    Example::

        with atomic_directory("runs/model/release") as tmp:
            (tmp / "config.json").write_text(...)
            save_file(weights, tmp / "model.safetensors")

    On an exception the temporary directory is removed and ``directory`` is left as it was.
    """
    directory = Path(directory)
    directory.parent.mkdir(parents=True, exist_ok=True)
    recover_directory(directory)
    # Temporaries of writers that died; a live writer of the same directory would race us anyway.
    for stale in directory.parent.glob(f"{directory.name}{TMP_SUFFIX}-*"):
        shutil.rmtree(stale, ignore_errors=True)
    tmp = directory.with_name(f"{directory.name}{TMP_SUFFIX}-{uuid.uuid4().hex[:8]}")
    tmp.mkdir()
    try:
        yield tmp
        swap_directory(tmp, directory)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def recover_directory(directory: str | os.PathLike) -> None:
    """Finish a swap interrupted between its renames (safe to call from readers).

    Call it before reading a directory that :func:`atomic_directory` writes: if the crash
    came after the old directory was moved aside and before the new one moved in, the old
    one is put back.
    """
    directory = Path(directory)
    old = directory.with_name(directory.name + OLD_SUFFIX)
    if old.exists():
        if directory.exists():
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(old, directory)
