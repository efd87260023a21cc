"""Phonemes for a real corpus: espeak-ng IPA from each manifest row's ``text``.

A real corpus' manifests (``cadence corpus``) carry transcripts, not phonemes. NaturalSpeech 2
and its aligner read ``phonemes``, the IPA symbols of
:func:`cadence.naturalspeech2.phonemize` (libespeak-ng, the G2P ``NaturalSpeech2.synthesize``
uses at inference, so training and synthesis read the same symbols), stored as the toy corpus
stores them: without the leading silence symbol, which preprocessing adds.

Each manifest is rewritten as a stream into a temporary file that replaces it at the end
(``cadence.core.io.atomic_file``): memory holds one row, and an interrupted run leaves the
manifest as it was. A manifest whose every row has ``phonemes`` is left alone.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import json
import multiprocessing
import os
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import track

from cadence.core.io import atomic_file

from .components import PipelineError

__all__ = ["phonemize_manifests"]

_BLOCK = 8192  # rows in flight to the worker processes

_INSTALL = (
    "NaturalSpeech 2's G2P needs libespeak-ng: `apt-get install espeak-ng` (or "
    "`pip install espeakng-loader`, or CADENCE_ESPEAK_LIBRARY=/path/to/libespeak-ng.so)"
)


def phonemize_manifests(
    corpus: str | Path,
    *,
    voice: str = "en-us",
    splits: tuple[str, ...] = ("train", "valid"),
    workers: int | None = None,
    console: Console | None = None,
) -> dict[str, int]:
    """Add ``phonemes`` to the rows of ``corpus/<split>.jsonl``; returns rows phonemized per split.

    Args:
        corpus: a directory of manifests with ``text`` per row.
        voice: the espeak-ng voice (``NaturalSpeech2Config.voice`` must be the same).
        splits: the manifests to phonemize.
        workers: processes (default: one per CPU core, up to 8, for more than
            10,000 rows; else this process).

    Raises:
        PipelineError: no libespeak-ng here (the message names ``apt-get install espeak-ng``),
            or espeak-ng has no such voice.
    """
    from cadence.naturalspeech2.espeak import EspeakError, EspeakNotFoundError

    console = console or Console()
    corpus = Path(corpus)
    done: dict[str, int] = {}
    for split in splits:
        path = corpus / f"{split}.jsonl"
        if not path.is_file():
            raise PipelineError(f"{path} not found: phonemes need the corpus manifests")
        rows, missing = _count(path)
        if missing == 0:
            done[split] = 0
            continue
        try:
            processes = workers if workers is not None else _workers(missing)
            done[split] = _rewrite(path, voice, rows, processes, console)
        except EspeakNotFoundError as err:
            raise PipelineError(f"phonemes: {err}. {_INSTALL}") from err
        except EspeakError as err:
            raise PipelineError(f"phonemes: {err}") from err
    return done


def _workers(rows: int) -> int:
    return min(8, os.cpu_count() or 1) if rows > 10_000 else 1


def _count(path: Path) -> tuple[int, int]:
    """Rows of a manifest, and those without ``phonemes``."""
    rows = missing = 0
    with path.open() as f:
        for line in f:
            if line.strip():
                rows += 1
                missing += "phonemes" not in json.loads(line)
    return rows, missing


def _rewrite(path: Path, voice: str, total: int, workers: int, console: Console) -> int:
    """Stream ``path`` into its replacement, phonemizing the rows that lack phonemes."""
    count = unreadable = empty = 0
    # the pool starts before the progress bar's thread does: a forked child copies no thread
    with (
        _pool(workers) as pool,
        atomic_file(path) as tmp,
        path.open() as source,
        tmp.open("w") as out,
    ):
        rows = (json.loads(line) for line in source if line.strip())
        done = _phonemized(rows, voice, pool)
        for row, phonemized, bad in track(done, total=total, description=f"phonemes {path.name}",
                                          console=console, transient=True):  # fmt: skip
            count += phonemized
            unreadable += bad
            empty += phonemized and not row["phonemes"]
            out.write(json.dumps(row, ensure_ascii=False) + "\n")
    console.print(
        f"phonemes: {count} of {total} rows of {path} phonemized ({empty} without text, left "
        f"for the aligner and NaturalSpeech 2 to skip; {unreadable} with letters {voice} "
        "cannot read)"
    )
    return count


def _pool(workers: int) -> Any:
    """``workers`` processes (forked where the platform can, so nothing is imported again)."""
    if workers <= 1:
        return contextlib.nullcontext(None)
    methods = multiprocessing.get_all_start_methods()
    return multiprocessing.get_context("fork" if "fork" in methods else "spawn").Pool(workers)


def _phonemized(
    rows: Iterator[dict[str, Any]], voice: str, pool: Any
) -> Iterator[tuple[dict[str, Any], bool, bool]]:
    """``(row, phonemized, unreadable)`` in order; blocks of rows go to the pool's processes.

    libespeak-ng runs one synthesis at a time per process (global C state), so processes, not
    threads, spread it over cores; a block at a time keeps memory bounded.
    """
    task = functools.partial(_phonemize_row, voice=voice)
    if pool is None:
        yield from map(task, rows)
        return
    while block := list(itertools.islice(rows, _BLOCK)):
        yield from pool.map(task, block, chunksize=64)


def _phonemize_row(row: dict[str, Any], voice: str) -> tuple[dict[str, Any], bool, bool]:
    from cadence.naturalspeech2 import phonemize
    from cadence.naturalspeech2.text import UnreadableTextWarning

    if "phonemes" in row:
        return row, False, False
    text = str(row.get("text", ""))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UnreadableTextWarning)
        # [1:]: without the leading silence, as the toy corpus stores phonemes
        row["phonemes"] = phonemize(text, voice)[1:] if text.strip() else []
    return row, True, any(issubclass(w.category, UnreadableTextWarning) for w in caught)
