"""Same-speaker chains: training windows that run on across an utterance's end.

AudioLM trains its stages on random crops of long recordings (Borsos et al. 2022, sec. 5.1:
LibriLight), so a model continues past a pause. A corpus of single utterances teaches the
opposite: every crop that reaches the silence after the last word is followed by EOS, and a
prompt that is a whole utterance gets a continuation of one frame. :class:`StageDataset`
(``groups=``) therefore builds its items from chains: an utterance followed by further
utterances of the same group (speaker), concatenated until the training window is full.
:func:`speaker_groups` makes the groups from a corpus manifest; :class:`TokenChain` and
:class:`AlignedChain` concatenate one stream, or the semantic and acoustic streams of the
coarse stage so that they keep covering the same time.
"""

# s semantic frames | n acoustic frames | q levels

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

__all__ = ["AlignedChain", "TokenChain", "speaker_groups"]

_EPS = 1e-6  # frame arithmetic on float rates: 1.5 * 2 must floor to 3


def speaker_groups(
    ids: Sequence[str],
    manifest: str | os.PathLike | Iterable[Mapping[str, Any]],
    *,
    key: str = "speaker",
) -> list[list[int]]:
    """Shard indices grouped by speaker, the ``groups`` of :class:`StageDataset`.

    Args:
        ids: item ids in reader order (``ShardReader.ids``).
        manifest: the corpus manifest the shards were computed from: a JSON-lines file or its
            rows, each with an ``id`` (else its ``path`` is the id, as in ``AudioDataset``) and
            a ``key`` field.
        key: the field that names an item's group.

    Returns:
        one list of indices (ascending) per value of ``key``, in order of first appearance.
        Items whose manifest row has no ``key`` are in no group (never chained).

    Raises:
        KeyError: an id is not in the manifest (the shards come from another corpus).
    """
    rows: Iterable[Mapping[str, Any]]
    if isinstance(manifest, (str, os.PathLike)):
        lines = Path(manifest).read_text(encoding="utf-8").splitlines()
        rows = [json.loads(line) for line in lines if line.strip()]
    else:
        rows = manifest
    group_of = {str(row.get("id", row.get("path"))): row.get(key) for row in rows}
    missing = [i for i in ids if i not in group_of]
    if missing:
        raise KeyError(
            f"{len(missing)} shard ids are not in the manifest (first: {missing[0]!r}); pass "
            "the manifest the shards were precomputed from"
        )
    groups: dict[Any, list[int]] = {}
    for index, item_id in enumerate(ids):
        name = group_of[item_id]
        if name is not None:
            groups.setdefault(name, []).append(index)
    return list(groups.values())


class TokenChain:
    """Utterances of one stream (``(s,)`` tokens or ``(n, q)`` codes) concatenated in time."""

    def __init__(self) -> None:
        self.pieces: list[Tensor] = []
        self.frames = 0

    def add(self, frames: Tensor) -> None:
        self.pieces.append(frames)
        self.frames += len(frames)

    def crop(self, start: int, window: int) -> tuple[Tensor, bool]:
        """``(frames [start, start + window), whether they reach the chain's end)``."""
        stop = min(start + window, self.frames)
        return torch.cat(self.pieces)[start:stop], stop >= self.frames


class AlignedChain:
    """Semantic tokens and acoustic codes of utterances concatenated in step.

    Utterance boundaries fall on a semantic frame ``S`` and on acoustic frame
    ``floor(S * ratio)``, so that after any number of utterances acoustic frame ``j`` still
    lies in semantic frame ``floor(j / ratio)`` (within one frame at a boundary when the
    ratio is not whole): an utterance gives up the one or two semantic frames at its end
    that its codes do not cover.

    Args:
        ratio: acoustic frames per semantic frame (``frames_per_semantic``).
    """

    def __init__(self, ratio: float) -> None:
        self.ratio = ratio
        self.semantic: list[Tensor] = []
        self.codes: list[Tensor] = []
        self.semantic_frames = 0
        self.frames = 0  # acoustic

    def _acoustic(self, semantic_frames: int) -> int:
        return math.floor(semantic_frames * self.ratio + _EPS)

    def add(self, semantic: Tensor, codes: Tensor) -> None:
        """Append an utterance: ``semantic`` ``(s,)`` and ``codes`` ``(n, q)`` of the same audio."""
        s = len(semantic)
        while s > 0 and self._acoustic(self.semantic_frames + s) - self.frames > len(codes):
            s -= 1
        n = self._acoustic(self.semantic_frames + s) - self.frames
        self.semantic.append(semantic[:s])
        self.codes.append(codes[:n])
        self.semantic_frames += s
        self.frames += n

    def crop(self, start: int, window: int) -> tuple[Tensor, Tensor, bool]:
        """``(semantic, codes, ends)`` of acoustic frames from ``start`` (snapped down to a
        semantic frame) for ``window`` frames, with the semantic tokens of the same span."""
        ratio = self.ratio
        # start on a semantic boundary so both streams cover the same time
        a = math.floor(math.floor(start / ratio + 1e-9) * ratio + 1e-9)
        b = min(a + window, self.frames)
        s0 = math.floor(a / ratio + 1e-9)
        s1 = min(self.semantic_frames, math.ceil(b / ratio - 1e-9))
        semantic, codes = torch.cat(self.semantic), torch.cat(self.codes)
        return semantic[s0:s1], codes[a:b], b >= self.frames
