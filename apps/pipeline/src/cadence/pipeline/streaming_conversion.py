"""Streaming voice conversion: the source read in chunks, the converted audio out in chunks.

:func:`stream_conversion` (``VoiceConversion.stream``, SoundStorm method) takes the source as
an iterable of audio blocks (a file read block by block, a microphone) and yields
:class:`~cadence.pipeline.streaming.StreamChunk` s as soon as each chunk is converted:

1. source samples are buffered (resampled block by block with soxr's streaming resampler
   when their rate is not the codec's); once ``chunk_seconds`` plus ``lookahead_seconds``
   have arrived, the semantic tokenizer runs on a window of the source from
   ``source_context_seconds`` before the chunk to the end of its look-ahead, and the chunk's
   tokens are taken from it (the tokenizer's encoder sees context on both sides, as it
   does on a whole utterance; the look-ahead is the latency this costs);
2. SoundStorm fills the chunk's codes prompted by the ``left_context_seconds`` of codes
   before it and their semantic tokens: the target voice's for the first chunk, then the
   frames already converted (as :mod:`cadence.pipeline.streaming` continues speech);
3. the codec decodes the chunk, carrying its state (its stateful decoder, or the overlap
   windows of :class:`~cadence.codec.overlap.OverlapDecoder`).

How it relates to :meth:`VoiceConversion.convert`:

- the semantic tokens equal ``tokenize(whole source)`` when ``source_context_seconds`` and
  ``lookahead_seconds`` cover the source (a window is then the whole source); with shorter
  windows a token can differ where the tokenizer's receptive field (or a per-clip
  normalization, as the MFCC tokenizer's) reaches past the window. Each chunk's tokens
  are exactly ``tokenize(its window)``, which the tests check;
- the codes of each chunk are exactly ``soundstorm.generate(chunk tokens, prompt = left
  context)`` with a generator seeded with ``seed``, not ``convert``'s one pass over the
  whole source (which sees the whole target prompt and every source token at once);
- the audio is exactly ``codec.decode`` of all the streamed codes (up to float rounding).

Memory is bounded: the source buffer holds one window, SoundStorm one left context plus a
chunk, the decoder its reach plus a chunk.
"""

# c channels | t samples | s semantic frames | n codec frames | q levels

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import Tensor

from cadence.core.audio import batch_audio
from cadence.core.config import Config
from cadence.core.interfaces import frame_lengths
from cadence.soundstorm import default_iterations

from .components import PipelineError
from .guidance import soundstorm_scales
from .streaming import MAX_STREAM_SECONDS, StreamChunk, _frames, _stream_decoder, check_seconds

if TYPE_CHECKING:
    from .synthesis import VoiceConversion

__all__ = ["ConversionStreamOptions", "stream_conversion"]


@dataclass(frozen=True, kw_only=True)
class ConversionStreamOptions(Config):
    """Chunking of :func:`stream_conversion`.

    Attributes:
        chunk_seconds: source converted per step.
        left_context_seconds: converted codes before a chunk that prompt SoundStorm (the
            target voice's for the first chunk: it must be at least this long).
        source_context_seconds: source before a chunk that the tokenizer sees with it.
        lookahead_seconds: source after a chunk that the tokenizer sees with it; a chunk is
            converted once this much more source has arrived (the stream's added latency).
    """

    chunk_seconds: float = 1.0
    left_context_seconds: float = 2.0
    source_context_seconds: float = 2.0
    lookahead_seconds: float = 0.5

    def __post_init__(self) -> None:
        check_seconds(self, ("chunk_seconds", "left_context_seconds"), zero=False)
        check_seconds(self, ("source_context_seconds", "lookahead_seconds"), zero=True)


class _SourceReader:
    """The source as mono/stereo blocks at the codec's rate, resampled as a stream."""

    def __init__(self, blocks: Iterable[Tensor], rate: int, target_rate: int, channels: int):
        self.blocks = iter(blocks)
        self.rate, self.target_rate, self.channels = rate, target_rate, channels
        self.resampler = None
        if rate != target_rate:
            import soxr

            self.resampler = soxr.ResampleStream(rate, target_rate, channels, dtype="float32")
        self.seen = 0  # input samples so far (the duration guard)

    def _convert(self, block: Tensor) -> Tensor:
        if not isinstance(block, Tensor):
            raise PipelineError(f"source blocks must be (c, t) tensors, got {type(block).__name__}")
        block = block.detach().float().cpu()
        if block.ndim == 1:
            block = block[None]
        if block.ndim != 2:
            raise PipelineError(
                f"a source block must be (c, t) audio, got shape {tuple(block.shape)}"
            )
        if not bool(torch.isfinite(block).all()):
            raise PipelineError(
                "the source holds NaN or infinite samples: fix or re-export the recording"
            )
        if block.shape[0] != self.channels:  # the codec's channel count: average or repeat
            block = block.mean(0, keepdim=True).expand(self.channels, -1)
        self.seen += block.shape[-1]
        if self.seen > MAX_STREAM_SECONDS * self.rate:
            raise PipelineError(
                f"the source is longer than {MAX_STREAM_SECONDS:g} s; split it and convert "
                "the parts one at a time"
            )
        return block

    def __iter__(self) -> Iterator[Tensor]:
        for block in self.blocks:
            block = self._convert(block)
            if self.resampler is None:
                yield block
            else:
                out = self.resampler.resample_chunk(np.ascontiguousarray(block.numpy().T))
                yield torch.from_numpy(np.ascontiguousarray(out.T))
        if self.resampler is not None:
            out = self.resampler.resample_chunk(np.zeros((0, self.channels), np.float32), last=True)
            yield torch.from_numpy(np.ascontiguousarray(out.T))


@dataclass
class _Plan:
    chunk_tokens: int
    ctx_tokens: int
    ctx_frames: int
    source_ctx_tokens: int
    lookahead_tokens: int
    hop: float  # source samples per semantic token
    ratio: float  # codec frames per semantic token


def _plan(vc: VoiceConversion, options: ConversionStreamOptions) -> _Plan:
    s_rate, c_rate = vc.tokenizer.frame_rate, vc.codec.frame_rate
    step = 1.0 / math.gcd(round(s_rate * 1000), round(c_rate * 1000)) * 1000
    fix = f"use a multiple of {step:g} s"
    chunk_tokens = _frames(options.chunk_seconds, s_rate, "chunk_seconds", fix)
    chunk_frames = _frames(options.chunk_seconds, c_rate, "chunk_seconds", fix)
    ctx_tokens = _frames(options.left_context_seconds, s_rate, "left_context_seconds", fix)
    ctx_frames = _frames(options.left_context_seconds, c_rate, "left_context_seconds", fix)
    return _Plan(
        chunk_tokens=chunk_tokens,
        ctx_tokens=ctx_tokens,
        ctx_frames=ctx_frames,
        source_ctx_tokens=math.ceil(options.source_context_seconds * s_rate),
        lookahead_tokens=math.ceil(options.lookahead_seconds * s_rate),
        hop=vc.sample_rate / s_rate,
        ratio=chunk_frames / chunk_tokens,
    )


def stream_conversion(
    vc: VoiceConversion,
    source: Tensor | Iterable[Tensor],
    target: Tensor,
    *,
    sample_rate: int,
    options: ConversionStreamOptions | None = None,
    steps: int = 16,
    guidance_scale: float | None = None,
    seed: int | None = None,
) -> Iterator[StreamChunk]:
    """Convert ``source`` to the voice of ``target``, yielding audio as it is made.

    Args:
        vc: a SoundStorm :class:`VoiceConversion`.
        source: the source speech: one ``(c, t)`` clip, or an iterable of ``(c, t)`` blocks
            in order (read lazily: nothing is read before the first chunk is asked for).
        target: ``(c, t)`` recording of the voice (its first ``VOICE_PROMPT_SECONDS``).
        sample_rate: the rate of ``source`` and ``target``.
        options: chunking (default :class:`ConversionStreamOptions`).
        steps, guidance_scale, seed: as in :meth:`VoiceConversion.convert` (``None``:
            ``vc.default_guidance``).

    Raises:
        PipelineError: the flow method, a chunk or context that is no whole number of
            frames, a target voice shorter than the left context (at the call, before any
            chunk); bad source blocks, as they are read.
    """
    from .synthesis import _check_guidance, _check_steps, _voice

    if vc.method != "soundstorm":
        raise PipelineError(
            "streaming conversion runs the SoundStorm method (the flow integrates the whole "
            "utterance at once); use method='soundstorm' or convert without streaming"
        )
    options = options if options is not None else ConversionStreamOptions()
    _check_steps(steps, "steps")
    guidance_scale = vc.default_guidance if guidance_scale is None else guidance_scale
    _check_guidance(guidance_scale)
    plan = _plan(vc, options)
    device = next(vc.model.parameters()).device
    with torch.inference_mode():
        tgt, lengths = batch_audio(
            [target], sample_rate, target_rate=vc.sample_rate, channels=vc.codec.channels,
            what="target voice",
        )  # fmt: skip
        tgt = _voice(tgt, vc.sample_rate).to(device)
        lengths = lengths.clamp(max=tgt.shape[-1])
        codes = vc.codec.encode(tgt, lengths)[:, : int(frame_lengths(vc.codec, lengths)[0])]
        semantic = vc.tokenizer.tokenize(tgt, lengths)[:, : int(frame_lengths(vc.tokenizer, lengths)[0])]  # fmt: skip
    if codes.shape[1] < plan.ctx_frames or semantic.shape[1] < plan.ctx_tokens:
        raise PipelineError(
            f"the target voice is {int(lengths[0]) / vc.sample_rate:.2f} s long, shorter than "
            f"left_context_seconds = {options.left_context_seconds:g}: give a longer "
            "recording of the voice or a shorter left context"
        )
    if isinstance(source, Tensor):
        source = [source]
    reader = _SourceReader(source, sample_rate, vc.sample_rate, vc.codec.channels)
    generator = torch.Generator(device=device).manual_seed(seed) if seed is not None else None
    return _run(
        vc, reader, plan, codes[:, -plan.ctx_frames :], semantic[:, -plan.ctx_tokens :],
        default_iterations(vc.model.config.num_quantizers, first=steps), guidance_scale,
        generator, device,
    )  # fmt: skip


def _window_tokens(vc: VoiceConversion, buffer: Tensor, offset: int, start: int, end: int,
                   plan: _Plan, device) -> Tensor:  # fmt: skip
    """Tokens ``start .. end`` of the source (``buffer`` holds its samples from ``offset``)."""
    first = max(0, start - plan.source_ctx_tokens)  # never before the buffer (see _run)
    a = round(first * plan.hop)
    b = min(offset + buffer.shape[-1], round((end + plan.lookahead_tokens) * plan.hop))
    window = buffer[:, a - offset : b - offset].to(device)
    tokens = vc.tokenizer.tokenize(window[None], torch.tensor([window.shape[-1]], device=device))
    return tokens[:, start - first : end - first]


@torch.inference_mode()
def _run(vc: VoiceConversion, reader: _SourceReader, plan: _Plan, ctx_codes: Tensor,
         ctx_semantic: Tensor, iterations: Sequence[int], guidance_scale: float,
         generator: torch.Generator | None, device) -> Iterator[StreamChunk]:  # fmt: skip
    decoder = _stream_decoder(vc)
    buffer = torch.zeros(vc.codec.channels, 0)
    offset = 0  # source samples dropped from the buffer's front
    done = 0  # tokens converted
    finished = False
    blocks = iter(reader)
    while True:
        total = offset + buffer.shape[-1]
        available = vc.tokenizer.num_frames(total)
        want = done + plan.chunk_tokens
        if not finished and available < want + plan.lookahead_tokens:
            block = next(blocks, None)
            if block is None:
                finished = True
            else:
                buffer = torch.cat([buffer, block], dim=-1)
            continue
        end = min(want, available)
        if end <= done:
            if total == 0:
                raise PipelineError("the source holds no samples: give a recording with speech")
            break
        chunk = _window_tokens(vc, buffer, offset, done, end, plan, device)
        if chunk.shape[1] != end - done:
            raise PipelineError(
                f"the tokenizer gave {chunk.shape[1]} tokens for a window that should hold "
                f"{end - done}; its frames do not line up with its frame rate"
            )  # pragma: no cover - every shipped tokenizer lines up
        frames = round(end * plan.ratio) - round(done * plan.ratio)
        out = vc.model.generate(
            chunk, num_frames=frames, prompt_codes=ctx_codes, prompt_semantic=ctx_semantic,
            iterations=iterations, generator=generator,
            guidance_scale=soundstorm_scales(guidance_scale, vc.model.config.num_quantizers),
        )  # fmt: skip
        new = out.codes[:, :frames]
        audio = decoder.decode_chunk(new)[0].cpu()  # type: ignore[attr-defined]
        yield StreamChunk(audio, chunk[0].cpu(), new[0].cpu(), vc.sample_rate)
        ctx_codes = torch.cat([ctx_codes, new], dim=1)[:, -plan.ctx_frames :]
        ctx_semantic = torch.cat([ctx_semantic, chunk], dim=1)[:, -plan.ctx_tokens :]
        done = end
        # keep only what the next window can reach (from a token boundary)
        keep_from = round(max(0, done - plan.source_ctx_tokens) * plan.hop)
        if keep_from > offset:
            buffer = buffer[:, keep_from - offset :]
            offset = keep_from
    empty = torch.zeros(0, dtype=torch.long)
    tail = decoder.flush()[0].cpu()  # type: ignore[attr-defined]
    yield StreamChunk(tail, empty, empty.view(0, vc.codec.num_quantizers), vc.sample_rate)
