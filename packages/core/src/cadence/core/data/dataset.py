"""Audio files as a torch Dataset: a folder or a JSONL manifest, cropped and resampled on read.

Built for long runs over large, imperfect corpora: a crop reads only its own region from disk,
crops are a pure function of ``(seed, epoch, index)`` so runs are reproducible, and a file that
cannot be read is replaced by the next readable one (and reported) instead of killing the run.
"""

# c channels | t samples

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from ..audio import AudioError, EmptyAudioError, info, load, resample

__all__ = ["AudioDataset", "ScanReport"]


logger = logging.getLogger(__name__)

DEFAULT_EXTENSIONS = (".wav", ".flac", ".ogg", ".mp3")
# Item keys the dataset sets itself; a manifest may carry "path" and "id" but not these.
_RESERVED = ("audio", "length", "index")
# Problems with one file's data, as opposed to bugs: these are skipped, anything else raises.
_RECOVERABLE = (AudioError, OSError)
# Target-rate samples read beyond each end of a crop before resampling, so the resampler's
# filter has settled inside the crop (soxr HQ needs < 128; see _read_crop).
_RESAMPLE_MARGIN = 256


@dataclass
class ScanReport:
    """What :meth:`AudioDataset.scan` found.

    Attributes:
        num_files: files checked.
        num_kept: files still in the dataset.
        dropped: ``path -> reason`` for every file removed.
        total_seconds: duration of the kept files.
    """

    num_files: int
    num_kept: int
    dropped: dict[str, str] = field(default_factory=dict)
    total_seconds: float = 0.0

    def __str__(self) -> str:
        return (
            f"kept {self.num_kept} of {self.num_files} files "
            f"({self.total_seconds / 3600:.2f} h), dropped {len(self.dropped)}"
        )


class AudioDataset(Dataset):
    """Audio files from a folder or a JSONL manifest, as ``(c, t)`` float tensors.

    Each item is a dict::

        {"audio": (c, t) float32 at sample_rate, "length": valid samples before padding,
         "path": str, "index": int, "id": str, **manifest fields}

    Args:
        source: a folder (searched recursively, in sorted order; hidden files are ignored) or
            a JSONL manifest with one object per line holding ``"path"`` (relative to the
            manifest's folder, or absolute) and any other fields (``"id"``, ``"text"``, ...).
        sample_rate: rate of the returned audio; files at other rates are resampled.
        channels: channels of the returned audio (1 = mono mixdown).
        crop_samples: return crops of exactly this many samples (shorter files are
            zero-padded, with ``"length"`` the real count); None returns whole files.
        crop_seconds: the crop in seconds instead of samples.
        random_crop: crop at a position drawn from ``(seed, epoch, index)``; False crops from
            the start of the file.
        seed: crop seed; two datasets with the same seed give the same crops.
        extensions: file suffixes picked up from a folder.
        keep_fields: copy the manifest's other fields into every item.

    An item's id is the manifest's ``"id"``, or else its path relative to the folder or
    manifest. Bad files (undecodable, empty, NaN) are replaced by the next readable item; see
    :attr:`skipped` and :meth:`scan`. Manifest fields such as ``"duration"`` are carried as
    written and describe the file, not the crop.

    With DataLoader workers, :meth:`set_epoch` reaches persistent workers too (the epoch
    lives in shared memory); :attr:`skipped` only lists what this process saw.
    """

    def __init__(
        self,
        source: str | os.PathLike,
        *,
        sample_rate: int,
        channels: int = 1,
        crop_samples: int | None = None,
        crop_seconds: float | None = None,
        random_crop: bool = True,
        seed: int = 0,
        extensions: Iterable[str] = DEFAULT_EXTENSIONS,
        keep_fields: bool = True,
    ):
        if sample_rate <= 0:
            raise ValueError(f"sample_rate must be positive, got {sample_rate}")
        if channels <= 0:
            raise ValueError(f"channels must be positive, got {channels}")
        if crop_samples is not None and crop_seconds is not None:
            raise ValueError("give crop_samples or crop_seconds, not both")
        if crop_seconds is not None:
            crop_samples = round(crop_seconds * sample_rate)
        if crop_samples is not None and crop_samples <= 0:
            raise ValueError(f"the crop must be at least one sample, got {crop_samples}")
        if seed < 0:
            raise ValueError(f"seed must be >= 0, got {seed}")
        self.source = Path(source)
        self.sample_rate = int(sample_rate)
        self.channels = int(channels)
        self.crop_samples = crop_samples
        self.random_crop = random_crop
        self.seed = int(seed)
        self.extensions = tuple((e if e.startswith(".") else f".{e}").lower() for e in extensions)
        self.keep_fields = keep_fields
        if self.source.is_dir():
            self.root = self.source
            self._paths, self._ids, self._fields = self._from_folder()
        elif self.source.is_file():
            self.root = self.source.parent
            self._paths, self._ids, self._fields = self._from_manifest()
        else:
            raise FileNotFoundError(f"dataset source {self.source} is neither a folder nor a file")
        duplicate = _first_duplicate(self._ids)
        if duplicate is not None:
            raise ValueError(
                f"item id {duplicate!r} appears twice in {self.source}; ids must be unique"
            )
        self._headers: list[tuple[int, int] | None] = [None] * len(self._paths)
        self._bad: set[int] = set()
        self.skipped: dict[str, str] = {}
        """``path -> reason`` for every file this process could not read."""
        # shared memory, so that set_epoch in the main process reaches persistent workers
        self._epoch = torch.zeros((), dtype=torch.int64).share_memory_()

    # -- building the file list

    def _from_folder(self) -> tuple[list[str], list[str], list[dict[str, Any]]]:
        found = []
        for dirpath, dirnames, filenames in os.walk(self.root, followlinks=True):
            dirnames[:] = [d for d in dirnames if not d.startswith(".")]
            for name in filenames:
                if not name.startswith(".") and Path(name).suffix.lower() in self.extensions:
                    found.append(Path(dirpath, name).relative_to(self.root).as_posix())
        if not found:
            raise ValueError(f"no audio files ({', '.join(self.extensions)}) under {self.root}")
        found.sort()
        return [str(self.root / rel) for rel in found], found, [{} for _ in found]

    def _from_manifest(self) -> tuple[list[str], list[str], list[dict[str, Any]]]:
        paths, ids, fields = [], [], []
        with open(self.source, encoding="utf-8") as f:
            for number, line in enumerate(f, start=1):
                if not line.strip():
                    continue
                try:
                    entry = json.loads(line)
                except json.JSONDecodeError as err:
                    raise ValueError(f"{self.source}:{number}: not valid JSON ({err})") from err
                if not isinstance(entry, dict) or "path" not in entry:
                    raise ValueError(
                        f"{self.source}:{number}: each line needs a JSON object with a 'path'"
                    )
                clash = [k for k in _RESERVED if k in entry]
                if clash and self.keep_fields:
                    raise ValueError(
                        f"{self.source}:{number}: fields {clash} clash with the item keys the "
                        "dataset sets; rename them in the manifest or pass keep_fields=False"
                    )
                rel = str(entry.pop("path"))
                paths.append(str(self.root / rel))
                ids.append(str(entry.pop("id", rel)))
                fields.append(entry if self.keep_fields else {})
        if not paths:
            raise ValueError(f"manifest {self.source} lists no files")
        return paths, ids, fields

    # -- Dataset

    def __len__(self) -> int:
        return len(self._paths)

    def __getitem__(self, index: int) -> dict[str, Any]:
        """Item ``index``, or the next readable one if that file is bad (recorded in skipped)."""
        n = len(self)
        start = self._check_index(index)
        for step in range(n):
            i = (start + step) % n
            if i in self._bad:
                continue
            try:
                return self.read(i)
            except _RECOVERABLE as err:
                self._mark_bad(i, err)
        raise RuntimeError(
            f"none of the {n} files in {self.source} could be read; see dataset.skipped"
        )

    def read(self, index: int, *, epoch: int | None = None) -> dict[str, Any]:
        """Item ``index`` exactly, raising on a bad file (``AudioError`` or ``OSError``).

        Args:
            index: the item.
            epoch: crop epoch; default the one set by :meth:`set_epoch`.
        """
        i = self._check_index(index)
        path = self._paths[i]
        if self.crop_samples is None:
            audio, _ = load(path, self.sample_rate, self.channels)
            length = audio.shape[-1]
        else:
            audio, length = self._read_crop(i, self.epoch if epoch is None else epoch)
        item: dict[str, Any] = dict(self._fields[i]) if self.keep_fields else {}
        item.update(audio=audio, length=length, path=path, index=i, id=self._ids[i])
        return item

    # -- epochs and crops

    @property
    def epoch(self) -> int:
        return int(self._epoch)

    def set_epoch(self, epoch: int) -> None:
        """Choose the crops of this epoch (call before each epoch, as with DistributedSampler)."""
        if epoch < 0:
            raise ValueError(f"epoch must be >= 0, got {epoch}")
        self._epoch.fill_(epoch)

    def crop_start(self, index: int, max_start: int, epoch: int | None = None) -> int:
        """Start of item ``index``'s crop in ``[0, max_start]`` (target-rate samples)."""
        if not self.random_crop or max_start <= 0:
            return 0
        epoch = self.epoch if epoch is None else epoch
        rng = np.random.default_rng([self.seed, epoch, index])
        return int(rng.integers(0, max_start + 1))

    def _read_crop(self, i: int, epoch: int) -> tuple[Tensor, int]:
        assert self.crop_samples is not None
        crop, rate = self.crop_samples, self.sample_rate
        path = self._paths[i]
        file_rate, frames = self._header(i)
        total = frames if file_rate == rate else round(frames * rate / file_rate)
        if total <= crop:
            audio, _ = load(path, rate, self.channels)
        elif file_rate == rate:
            start = self.crop_start(i, total - crop, epoch)
            audio, _ = load(path, None, self.channels, offset=start, frames=crop)
        else:
            start = self.crop_start(i, total - crop, epoch)
            # Start the read on a file frame that falls exactly on a target sample
            # (multiples of file_rate / gcd), a margin ahead of the crop, and end a margin
            # after it: the crop then equals the same span of the whole file resampled,
            # rather than a shifted, edge-distorted version of it.
            g = math.gcd(file_rate, rate)
            block = max(start - _RESAMPLE_MARGIN, 0) // (rate // g)
            first = block * (file_rate // g)
            last = min(frames, math.ceil((start + crop + _RESAMPLE_MARGIN) * file_rate / rate))
            audio, _ = load(path, None, self.channels, offset=first, frames=last - first)
            skip = start - block * (rate // g)
            audio = resample(audio, file_rate, rate)[:, skip : skip + crop]
            if audio.shape[-1] == 0:
                raise EmptyAudioError(f"{path}: the header promises more samples than it holds")
        audio = audio[:, :crop]
        length = audio.shape[-1]
        if length < crop:
            audio = F.pad(audio, (0, crop - length))
        return audio.contiguous(), length

    # -- headers, durations, scanning

    @property
    def ids(self) -> list[str]:
        """Item ids in dataset order."""
        return list(self._ids)

    @property
    def paths(self) -> list[str]:
        """File paths in dataset order."""
        return list(self._paths)

    def header(self, index: int) -> tuple[int, int]:
        """``(sample_rate, frames)`` of item ``index``'s file, from its header (cached)."""
        return self._header(self._check_index(index))

    def duration(self, index: int) -> float:
        """Seconds in item ``index``'s file (from its header); 0.0 for a bad file."""
        i = self._check_index(index)
        try:
            file_rate, frames = self._header(i)
        except _RECOVERABLE as err:
            self._mark_bad(i, err)
            return 0.0
        return frames / file_rate

    @property
    def durations(self) -> list[float]:
        """Seconds per item from the file headers (0.0 for a bad file), e.g. for bucketing.

        The first call reads every header (in threads); later calls are free.
        """
        self.read_headers(progress=False)
        return [self.duration(i) for i in range(len(self))]

    def scan(
        self, *, decode: bool = False, progress: bool = True, num_threads: int = 8
    ) -> ScanReport:
        """Check every file now and drop the bad ones, so that a long run never meets them.

        Args:
            decode: also decode every file (slow) to catch NaN samples and broken data
                past the header; otherwise only headers are read.
            progress: show a progress bar.
            num_threads: files checked in parallel (I/O bound).

        Returns:
            A :class:`ScanReport`. Indices are renumbered over the files that remain.
        """
        n = len(self)
        problems = self.read_headers(progress=progress, num_threads=num_threads, decode=decode)
        problems.update({i: self.skipped.get(self._paths[i], "unreadable") for i in self._bad})
        dropped = {self._paths[i]: reason for i, reason in sorted(problems.items())}
        keep = [i for i in range(n) if i not in problems]
        self._paths = [self._paths[i] for i in keep]
        self._ids = [self._ids[i] for i in keep]
        self._fields = [self._fields[i] for i in keep]
        self._headers = [self._headers[i] for i in keep]
        self._bad = set()
        self.skipped.update(dropped)
        total = sum(frames / rate for rate, frames in self._headers)  # type: ignore[misc]
        report = ScanReport(num_files=n, num_kept=len(keep), dropped=dropped, total_seconds=total)
        if dropped:
            shown = "; ".join(f"{p}: {r}" for p, r in list(dropped.items())[:5])
            more = f" (and {len(dropped) - 5} more)" if len(dropped) > 5 else ""
            logger.warning(
                "scan of %s dropped %d file(s): %s%s", self.source, len(dropped), shown, more
            )
        if not keep:
            raise RuntimeError(f"scan of {self.source}: no readable files remain ({report})")
        return report

    def _header(self, i: int) -> tuple[int, int]:
        header = self._headers[i]
        if header is None:
            meta = info(self._paths[i])
            if meta.frames <= 0:
                raise EmptyAudioError(f"{self._paths[i]} contains no audio samples")
            header = self._headers[i] = (int(meta.samplerate), int(meta.frames))
        return header

    def read_headers(
        self,
        indices: Iterable[int] | None = None,
        *,
        progress: bool = True,
        num_threads: int = 8,
        decode: bool = False,
    ) -> dict[int, str]:
        """Read file headers in parallel into the cache behind :meth:`duration` and crops.

        Args:
            indices: items to read; default all.
            progress: show a progress bar.
            num_threads: headers read at once (I/O bound).
            decode: also decode each file in full (see :meth:`scan`).

        Returns:
            ``index -> reason`` for the files that failed (the dataset is not changed).
        """
        indices = range(len(self)) if indices is None else indices
        todo = [i for i in indices if (self._headers[i] is None or decode) and i not in self._bad]

        def check(i: int) -> str | None:
            try:
                self._header(i)
                if decode:
                    load(self._paths[i])
            except _RECOVERABLE as err:
                return f"{type(err).__name__}: {err}"
            return None

        problems: dict[int, str] = {}
        with ThreadPoolExecutor(max(1, num_threads)) as pool:
            results = pool.map(check, todo)
            bar = tqdm(
                results,
                total=len(todo),
                desc="decoding audio" if decode else "reading audio headers",
                unit="file",
                disable=not progress or not todo,
            )
            for i, reason in zip(todo, bar):
                if reason is not None:
                    problems[i] = reason
        return problems

    # -- helpers

    def _check_index(self, index: int) -> int:
        n = len(self)
        i = int(index)
        if i < 0:
            i += n
        if not 0 <= i < n:
            raise IndexError(f"index {index} out of range for {n} items")
        return i

    def _mark_bad(self, i: int, err: BaseException) -> None:
        self._bad.add(i)
        path = self._paths[i]
        if path not in self.skipped:
            reason = f"{type(err).__name__}: {err}"
            self.skipped[path] = reason
            logger.warning("skipping unreadable audio %s (%s)", path, reason)

    def __repr__(self) -> str:
        crop = f", crop_samples={self.crop_samples}" if self.crop_samples else ""
        return (
            f"AudioDataset({str(self.source)!r}, items={len(self)}, "
            f"sample_rate={self.sample_rate}, channels={self.channels}{crop})"
        )


def _first_duplicate(values: Sequence[str]) -> str | None:
    seen: set[str] = set()
    for value in values:
        if value in seen:
            return value
        seen.add(value)
    return None
