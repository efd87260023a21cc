"""Streaming speech continuation: audio chunk by chunk, from first tokens to any length.

:func:`stream_continuation` (``SpeechContinuation.stream``) runs the three models of
:mod:`cadence.pipeline.continuation` over chunks instead of the whole continuation:

1. the semantic LM samples the next ``chunk_seconds`` of tokens
   (:meth:`SemanticTransformer.stream`: KV-cached, with the sliding window of
   ``generate_long`` past its context);
2. SoundStorm fills that chunk's codec codes, prompted by the last ``left_context_seconds`` of
   codes before it and their semantic tokens: the prompt's for the first chunk, then the
   frames already generated, as SoundStorm's paper (Borsos et al. 2023, sec. 4) generates
   long audio, each segment conditioned on the previous one;
3. the codec decodes the chunk, carrying its state: a causal codec with its own stateful
   ``stream_decoder()``; a non-causal one (the shipped SoundStream, an ``ISTFTCodec`` with
   ``causal=False``) through :class:`~cadence.codec.overlap.OverlapDecoder`, which holds the
   measured reach of the decoder on each side (a look-ahead of ``right`` frames: a chunk's
   last ``right`` frames come out with the next chunk, and :meth:`flush` gives the rest).

How it relates to :meth:`SpeechContinuation.generate` for the same ``seed``:

- the semantic tokens are exactly ``generate``'s (same LM, windows and draws: the LM has
  its own generator seeded with ``seed``, and ``generate`` draws the LM's tokens first);
- the codes are not ``generate``'s: SoundStorm sees one chunk at a time with a left context
  of generated frames instead of the whole continuation at once, with its own generator
  seeded with ``seed + 1``. Each chunk's codes are exactly
  ``soundstorm.generate(chunk tokens, prompt = the left context)`` with that generator;
- the audio is exactly ``codec.decode`` of all the streamed codes at once (up to float
  rounding; a causal codec's stream, or the overlap windows, see every code that touches a
  sample), every sample once: ``n * hop_length`` samples for ``n`` frames. With
  ``StreamOptions.lookahead_seconds`` a non-causal codec's look-ahead is cut to that much:
  audio comes out sooner (the shipped codec's exact reach is 29 frames, 0.58 s, so a 0.6 s
  first chunk gives 20 ms of final audio), and a sample then misses the codes beyond the
  look-ahead. Measured on the shipped codec against one-shot decoding (held-out prompt,
  0.6 s chunks): 37 dB SNR at 4 frames, 67.5 dB at 8, 137 dB at 16.

Memory is bounded whatever the length: the LM holds one window of tokens, SoundStorm one
left context plus a chunk, the decoder its reach plus a chunk.
"""

# c channels | t samples | s semantic frames | n codec frames | q levels

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from cadence.audiolm import SamplingOptions
from cadence.codec.overlap import OverlapDecoder, decoder_reach
from cadence.core.audio import batch_audio
from cadence.core.config import Config, ConfigError
from cadence.core.interfaces import frame_lengths
from cadence.soundstorm import default_iterations

from .components import PipelineError
from .guidance import SOUNDSTORM_GUIDANCE, soundstorm_scales

if TYPE_CHECKING:
    from .continuation import SpeechContinuation
    from .synthesis import VoiceConversion

__all__ = ["MAX_STREAM_SECONDS", "StreamChunk", "StreamOptions", "stream_continuation"]

# A stream's memory is bounded, its time is not: the longest continuation one call streams.
MAX_STREAM_SECONDS = 600.0


@dataclass(frozen=True, kw_only=True)
class StreamOptions(Config):
    """Chunking of :func:`stream_continuation`.

    Attributes:
        chunk_seconds: audio generated per step (semantic tokens, then SoundStorm, then the
            codec). Smaller chunks start playing sooner; each costs a SoundStorm pass over
            its left context, so larger ones are cheaper per second.
        left_context_seconds: codes before a chunk that prompt SoundStorm for it (the
            prompt's, then the generated ones). The prompt must give at least this much.
        lookahead_seconds: for a non-causal codec, the most codes after a sample its
            decoding waits for (None: the decoder's whole measured reach, exact). Less
            starts the audio sooner and changes samples by the decoder's response beyond it
            (module docstring: the measured error). A causal codec needs none.
    """

    chunk_seconds: float = 1.0
    left_context_seconds: float = 2.0
    lookahead_seconds: float | None = None

    def __post_init__(self) -> None:
        check_seconds(self, ("chunk_seconds", "left_context_seconds"), zero=False)
        if self.lookahead_seconds is not None:
            check_seconds(self, ("lookahead_seconds",), zero=True)


def check_seconds(options: Config, names: Sequence[str], *, zero: bool) -> None:
    """Each of ``names`` on ``options`` is a finite number > 0 (``zero``: >= 0), else ConfigError."""
    for name in names:
        value = getattr(options, name)
        number = not isinstance(value, bool) and isinstance(value, (int, float))
        if not number or not math.isfinite(value) or value < 0 or (value == 0 and not zero):
            bound = ">= 0" if zero else "> 0"
            raise ConfigError(
                f"{type(options).__name__}.{name} must be a finite number {bound}, got {value!r}"
            )


@dataclass(frozen=True)
class StreamChunk:
    """One step of a stream.

    Attributes:
        audio: ``(c, t)`` the samples that are final now (``t`` may be 0; the look-ahead of
            a non-causal codec moves a chunk's last frames into the next step).
        semantic: ``(s,)`` the chunk's new semantic tokens (empty on the final flush).
        codes: ``(n, q)`` the chunk's new codec codes (empty on the final flush).
        sample_rate: the codec's rate.
    """

    audio: Tensor
    semantic: Tensor
    codes: Tensor
    sample_rate: int


def _frames(seconds: float, rate: float, what: str, fix: str) -> int:
    frames = round(seconds * rate)
    if frames < 1 or abs(frames - seconds * rate) > 1e-6 * max(1.0, seconds * rate):
        raise PipelineError(
            f"{what} = {seconds:g} s is not a whole number of {rate:g} Hz frames; {fix}"
        )
    return frames


def _plan(pipe: SpeechContinuation, options: StreamOptions) -> tuple[int, int, int, int]:
    """``(chunk tokens, chunk frames, context tokens, context frames)``, validated."""
    s_rate, c_rate = pipe.tokenizer.frame_rate, pipe.codec.frame_rate
    # both a semantic and a codec count: a multiple of the step where they meet
    step = 1.0 / math.gcd(round(s_rate * 1000), round(c_rate * 1000)) * 1000
    fix = f"use a multiple of {step:g} s"
    chunk_tokens = _frames(options.chunk_seconds, s_rate, "chunk_seconds", fix)
    chunk_frames = _frames(options.chunk_seconds, c_rate, "chunk_seconds", fix)
    ctx_tokens = _frames(options.left_context_seconds, s_rate, "left_context_seconds", fix)
    ctx_frames = _frames(options.left_context_seconds, c_rate, "left_context_seconds", fix)
    from .continuation import SOUNDSTORM_PROMPT_SECONDS

    if options.left_context_seconds > SOUNDSTORM_PROMPT_SECONDS:
        raise PipelineError(
            f"left_context_seconds must be at most {SOUNDSTORM_PROMPT_SECONDS:g} (SoundStorm "
            f"is prompted with that much at most), got {options.left_context_seconds:g}"
        )
    return chunk_tokens, chunk_frames, ctx_tokens, ctx_frames


def _stream_decoder(pipe: SpeechContinuation | VoiceConversion, lookahead: int | None = None):
    """The codec's exact stateful decoder where it has one, else overlap windows (reach
    measured once per pipeline and kept; ``lookahead`` frames at most on the right)."""
    factory = getattr(pipe.codec, "stream_decoder", None)
    if callable(factory):
        try:
            return factory()
        except ValueError:  # non-causal: it refuses to stream statefully
            pass
    reach = pipe._decoder_reach
    if reach is None:
        left, right = decoder_reach(pipe.codec)
        reach = pipe._decoder_reach = (left + 1, right + 1)
    if lookahead is not None:
        reach = (reach[0], min(reach[1], lookahead))
    return OverlapDecoder(pipe.codec, reach=reach)


def _lookahead_frames(pipe: SpeechContinuation, options: StreamOptions) -> int | None:
    if options.lookahead_seconds is None:
        return None
    return round(options.lookahead_seconds * pipe.codec.frame_rate)


def _seeded(device: torch.device, seed: int | None) -> torch.Generator | None:
    return torch.Generator(device=device).manual_seed(seed) if seed is not None else None


def stream_continuation(
    pipe: SpeechContinuation,
    prompt: Tensor | Sequence[Tensor],
    *,
    sample_rate: int,
    seconds: float = 3.0,
    options: StreamOptions | None = None,
    sampling: SamplingOptions | None = None,
    iterations: Sequence[int] | None = None,
    soundstorm_temperature: float = 1.0,
    guidance_scale: float | None = None,
    seed: int | None = None,
) -> Iterator[StreamChunk]:
    """Continue one prompt by ``seconds``, yielding audio as it is made (module docstring).

    Args:
        pipe: the models.
        prompt: one clip ``(c, t)`` (or ``(1, c, t)``), any rate and channel count.
        sample_rate: the prompt's rate.
        seconds: length of the continuation, at most :data:`MAX_STREAM_SECONDS`.
        options: chunk size and left context (default :class:`StreamOptions`).
        sampling, iterations, soundstorm_temperature, guidance_scale, seed: as in
            :meth:`SpeechContinuation.generate` (``guidance_scale=None``: its default).

    Raises:
        PipelineError: a chunk or context that is no whole number of frames, a prompt
            shorter than the left context, a bad ``seconds``, more than one prompt (at the
            call, before any chunk: the prompt is checked, tokenized and encoded eagerly).
    """

    with torch.inference_mode():
        state = _prepare(pipe, prompt, sample_rate, seconds, options, sampling, iterations, seed)
    guidance = SOUNDSTORM_GUIDANCE if guidance_scale is None else guidance_scale
    return _run(pipe, state, soundstorm_temperature, guidance)


@dataclass
class _Prepared:
    decoder: object
    lm_prompt: Tensor
    ctx_codes: Tensor
    ctx_semantic: Tensor
    plan: tuple[int, ...]
    lm_generator: torch.Generator | None
    storm_generator: torch.Generator | None
    new_tokens: int
    chunk_tokens: int
    ratio: float
    sampling: SamplingOptions


def _prepare(
    pipe: SpeechContinuation,
    prompt: Tensor | Sequence[Tensor],
    sample_rate: int,
    seconds: float,
    options: StreamOptions | None,
    sampling: SamplingOptions | None,
    iterations: Sequence[int] | None,
    seed: int | None,
) -> _Prepared:
    """Validate, crop, tokenize and encode the prompt; the stream's starting state."""
    from .continuation import DEFAULT_SAMPLING, _last_samples

    options = options if options is not None else StreamOptions()
    if not math.isfinite(seconds) or not 0 < seconds <= MAX_STREAM_SECONDS:
        raise PipelineError(f"seconds must be in (0, {MAX_STREAM_SECONDS:g}], got {seconds}")
    chunk_tokens, chunk_frames, ctx_tokens, ctx_frames = _plan(pipe, options)
    sampling = DEFAULT_SAMPLING if sampling is None else sampling
    device = pipe._device()
    audio, lengths = batch_audio(
        prompt, sample_rate, target_rate=pipe.sample_rate, channels=pipe.channels, what="prompt"
    )
    if audio.shape[0] != 1:
        raise PipelineError(f"stream continues one prompt at a time, got {audio.shape[0]}")
    available = int(lengths[0]) / pipe.sample_rate
    if available < options.left_context_seconds:
        raise PipelineError(
            f"the prompt is {available:.2f} s long, shorter than left_context_seconds = "
            f"{options.left_context_seconds:g}: give a longer prompt or a shorter left context"
        )
    used, used_lengths = _last_samples(audio, lengths, math.ceil(pipe.prompt_seconds * pipe.sample_rate))  # fmt: skip
    used = used.to(device)
    semantic = pipe.tokenizer.tokenize(used, used_lengths)[:, : int(frame_lengths(pipe.tokenizer, used_lengths)[0])]  # fmt: skip
    codes = pipe.codec.encode(used, used_lengths)[:, : int(frame_lengths(pipe.codec, used_lengths)[0])]  # fmt: skip
    if codes.shape[1] < ctx_frames or semantic.shape[1] < ctx_tokens:
        raise PipelineError(
            f"the prompt gives {codes.shape[1]} codec frames, fewer than the left context "
            f"({ctx_frames}): give a longer prompt or a shorter left_context_seconds"
        )
    context = pipe.semantic_lm.config.max_frames
    return _Prepared(
        decoder=_stream_decoder(pipe, _lookahead_frames(pipe, options)),
        lm_prompt=semantic[:, -min(semantic.shape[1], context // 2) :],
        ctx_codes=codes[:, -ctx_frames:],
        ctx_semantic=semantic[:, -ctx_tokens:],
        plan=tuple(iterations) if iterations is not None else default_iterations(pipe.soundstorm.config.num_quantizers),
        lm_generator=_seeded(device, seed),
        storm_generator=_seeded(device, None if seed is None else seed + 1),
        new_tokens=max(1, round(seconds * pipe.tokenizer.frame_rate)),
        chunk_tokens=chunk_tokens,
        ratio=chunk_frames / chunk_tokens,
        sampling=sampling,
    )  # fmt: skip


@torch.inference_mode()
def _run(
    pipe: SpeechContinuation, state: _Prepared, temperature: float, guidance_scale: float
) -> Iterator[StreamChunk]:
    context = pipe.semantic_lm.config.max_frames
    ctx_codes, ctx_semantic = state.ctx_codes, state.ctx_semantic
    ctx_frames, ctx_tokens = ctx_codes.shape[1], ctx_semantic.shape[1]
    decoder = state.decoder
    tokens = pipe.semantic_lm.stream(
        state.lm_prompt, new_frames=state.new_tokens, chunk_frames=state.chunk_tokens,
        window_frames=context, keep_frames=context // 2, sampling=state.sampling,
        generator=state.lm_generator,
    )  # fmt: skip
    scales = soundstorm_scales(guidance_scale, pipe.soundstorm.config.num_quantizers)
    for chunk in tokens:
        frames = round(chunk.shape[1] * state.ratio)
        out = pipe.soundstorm.generate(
            chunk, num_frames=frames, prompt_codes=ctx_codes, prompt_semantic=ctx_semantic,
            iterations=state.plan, temperature=temperature, guidance_scale=scales,
            generator=state.storm_generator,
        )  # fmt: skip
        new = out.codes[:, :frames]
        audio = decoder.decode_chunk(new)[0].cpu()  # type: ignore[attr-defined]
        yield StreamChunk(audio, chunk[0].cpu(), new[0].cpu(), pipe.sample_rate)
        ctx_codes = torch.cat([ctx_codes, new], dim=1)[:, -ctx_frames:]
        ctx_semantic = torch.cat([ctx_semantic, chunk], dim=1)[:, -ctx_tokens:]
    empty = torch.zeros(0, dtype=torch.long)
    tail = decoder.flush()[0].cpu()  # type: ignore[attr-defined]
    yield StreamChunk(tail, empty, empty.view(0, pipe.codec.num_quantizers), pipe.sample_rate)
