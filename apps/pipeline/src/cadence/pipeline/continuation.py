"""Speech continuation: prompt audio -> semantic tokens -> AudioLM semantic stage -> SoundStorm -> codec.

As in SoundStorm (Borsos et al. 2023, sec. 4): AudioLM's first stage continues the prompt's
semantic tokens; SoundStorm turns them into codec codes, prompted by the prompt's own codes
(and their semantic tokens) so that the voice and recording conditions carry over; the codec
decodes.

The path a prompt takes, once each: :func:`cadence.core.audio.batch_audio` validates the
prompts, converts and resamples them and pads them into one batch with their lengths; every
stage then runs once on the whole batch, with lengths, and its results do not depend on the
padding (the Protocols promise it).
"""

# b batch | c channels | t samples | s semantic frames | n codec frames | q levels

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from cadence.audiolm import SamplingOptions, SemanticTransformer
from cadence.core.audio import batch_audio
from cadence.core.data import lengths_to_mask, pad_sequences
from cadence.core.interfaces import Codec, SemanticTokenizer, frame_lengths
from cadence.soundstorm import SoundStorm, default_iterations

from .components import PipelineError, check_compatible
from .guidance import SOUNDSTORM_GUIDANCE, soundstorm_scales
from .pipeline import PipelineSpec

if TYPE_CHECKING:
    from .streaming import StreamChunk

__all__ = [
    "DEFAULT_SAMPLING",
    "MAX_SECONDS",
    "SOUNDSTORM_PROMPT_SECONDS",
    "ContinuationOutput",
    "SpeechContinuation",
]

# The semantic LM's sampling unless told otherwise: a little below temperature 1 with
# nucleus sampling keeps the toy LM from wandering off into rare tokens.
# EOS stopping is opt-in, as on the command line (--eos): a continuation is as long as asked.
DEFAULT_SAMPLING = SamplingOptions(temperature=0.9, top_p=0.95, allow_eos=False)

# The longest continuation: 3000 semantic frames at 50 Hz, a dozen sliding windows of the
# toy LM. Far longer requests are runaways (`--seconds 1e9`), refused rather than run.
MAX_SECONDS = 60.0

# What of a prompt the models use: the semantic LM its last half context of tokens (see
# continue_semantic), SoundStorm its last SOUNDSTORM_PROMPT_SECONDS of codes and tokens
# (every training prompt was part of an utterance of a few seconds; SoundStorm's paper
# prompts with 3 s). A longer prompt is cropped to the longer of the two BEFORE it is
# tokenized or encoded, so a 10-minute prompt costs what a 10-second one does.
SOUNDSTORM_PROMPT_SECONDS = 10.0


@dataclass(frozen=True)
class ContinuationOutput:
    """What :meth:`SpeechContinuation.generate` returns.

    Attributes:
        audio: ``(b, c, t)`` the generated continuation at ``sample_rate`` (0 past ``lengths``).
        lengths: ``(b,)`` samples of each continuation.
        sample_rate: the codec's rate.
        semantic: ``(b, s)`` the new semantic tokens (0 past ``semantic_lengths``).
        semantic_lengths: ``(b,)`` new semantic tokens per row.
        codes: ``(b, n, q)`` the new codec codes.
        prompt_audio: ``(b, c, t_p)`` the prompts at ``sample_rate``, and ``prompt_lengths``.
    """

    audio: Tensor
    lengths: Tensor
    sample_rate: int
    semantic: Tensor
    semantic_lengths: Tensor
    codes: Tensor
    prompt_audio: Tensor
    prompt_lengths: Tensor


class SpeechContinuation:
    """Continue speech prompts with a semantic LM, SoundStorm and a codec.

    Example::

        pipe = SpeechContinuation.from_pretrained("runs/toy/pipeline")
        audio, rate = cadence.core.audio.load("prompt.wav")
        out = pipe.generate(audio, sample_rate=rate, seconds=3.0, seed=0)
        cadence.core.audio.save("out.wav", out.audio[0, :, : out.lengths[0]], out.sample_rate)
    """

    ROLES = ("codec", "semantic_tokenizer", "semantic_lm", "soundstorm")
    # the codec decoder's measured reach, kept by the first stream (cadence.pipeline.streaming)
    _decoder_reach: tuple[int, int] | None = None

    def __init__(
        self,
        codec: Codec,
        tokenizer: SemanticTokenizer,
        semantic_lm: SemanticTransformer,
        soundstorm: SoundStorm,
    ):
        check_compatible(
            codec=codec, tokenizer=tokenizer, semantic_lm=semantic_lm, soundstorm=soundstorm
        )
        self.codec, self.tokenizer, self.semantic_lm, self.soundstorm = (
            codec,
            tokenizer,
            semantic_lm,
            soundstorm,
        )

    @classmethod
    def from_pretrained(
        cls, directory: str | os.PathLike, *, device: str | torch.device = "cpu"
    ) -> SpeechContinuation:
        """Load the pipeline directory written by ``cadence recipe`` (its ``pipeline.json``)."""
        spec = PipelineSpec.read(directory)
        codec, tokenizer, lm, storm = (spec.load(role, device=device) for role in cls.ROLES)
        return cls(codec, tokenizer, lm, storm)

    @property
    def sample_rate(self) -> int:
        return self.codec.sample_rate

    @property
    def channels(self) -> int:
        return self.codec.channels

    @property
    def prompt_seconds(self) -> float:
        """The most of a prompt the models use (its end); longer prompts are cropped to it."""
        lm_seconds = (self.semantic_lm.config.max_frames // 2) / self.tokenizer.frame_rate
        return max(lm_seconds, SOUNDSTORM_PROMPT_SECONDS)

    def _device(self) -> torch.device:
        return next(self.soundstorm.parameters()).device

    @torch.inference_mode()
    def generate(
        self,
        prompt: Tensor | Sequence[Tensor],
        *,
        sample_rate: int,
        seconds: float = 3.0,
        sampling: SamplingOptions | None = None,
        iterations: Sequence[int] | None = None,
        soundstorm_temperature: float = 1.0,
        guidance_scale: float = SOUNDSTORM_GUIDANCE,
        seed: int | None = None,
        progress: Callable[[str], None] | None = None,
    ) -> ContinuationOutput:
        """Continue each prompt by ``seconds`` (at most, when ``sampling.allow_eos``).

        Args:
            prompt: ``(b, c, t)`` audio, one ``(c, t)`` clip, or a list of clips of different
                lengths; any channel count and rate (converted to the codec's).
            sample_rate: the prompts' rate.
            seconds: length of the continuation, at most :data:`MAX_SECONDS`.
            sampling: the semantic LM's sampling (default :data:`DEFAULT_SAMPLING`, which
                never stops early); with ``allow_eos`` the LM may end an utterance before
                ``seconds``.
            iterations: SoundStorm passes per level (default 16 on the first, 1 after).
            soundstorm_temperature, guidance_scale: SoundStorm sampling (guidance
                :data:`~cadence.pipeline.guidance.SOUNDSTORM_GUIDANCE` by default; 1 turns it off and halves the work).
            seed: makes the result reproducible.
            progress: called with the name of each stage as it starts; the semantic LM then
                also shows a progress bar.

        Only the last :attr:`prompt_seconds` of a prompt are used (tokenized, encoded);
        ``prompt_audio`` holds the whole prompt.
        """
        if not math.isfinite(seconds) or seconds <= 0:
            raise PipelineError(f"seconds must be > 0 and finite, got {seconds}")
        if seconds > MAX_SECONDS:
            raise PipelineError(
                f"seconds must be at most {MAX_SECONDS:g} (a continuation that long takes "
                f"minutes already), got {seconds:g}"
            )
        report = progress or (lambda stage: None)
        sampling = DEFAULT_SAMPLING if sampling is None else sampling
        device = self._device()
        generator = torch.Generator(device=device).manual_seed(seed) if seed is not None else None
        # The one validation and the one padding of the whole path.
        audio, lengths = batch_audio(
            prompt, sample_rate, target_rate=self.sample_rate, channels=self.channels, what="prompt"
        )
        hop = round(self.sample_rate / self.tokenizer.frame_rate)
        if int(lengths.min()) < 2 * hop:
            raise PipelineError(
                f"a prompt is shorter than {2 * hop / self.sample_rate:.2f} s; give at least a few tenths of a second"
            )
        used, used_lengths = _last_samples(
            audio, lengths, math.ceil(self.prompt_seconds * self.sample_rate)
        )
        used = used.to(device)
        report("tokenizing the prompt")
        semantic = self.tokenizer.tokenize(used, used_lengths)
        semantic_lengths = frame_lengths(self.tokenizer, used_lengths)
        codes = self.codec.encode(used, used_lengths)
        code_lengths = frame_lengths(self.codec, used_lengths)
        # SoundStorm's share of the prompt (the LM crops its own in continue_semantic).
        storm_frames = round(SOUNDSTORM_PROMPT_SECONDS * self.codec.frame_rate)
        codes, code_lengths = _last_frames(codes, code_lengths, storm_frames)
        storm_semantic, storm_semantic_lengths = _last_frames(
            semantic, semantic_lengths, round(SOUNDSTORM_PROMPT_SECONDS * self.tokenizer.frame_rate)
        )
        new_frames = max(1, round(seconds * self.tokenizer.frame_rate))
        report(f"semantic LM: {new_frames} tokens")
        new, new_lengths = self.continue_semantic(
            semantic, semantic_lengths, new_frames, sampling, generator, progress=bool(progress)
        )
        plan = (
            tuple(iterations)
            if iterations is not None
            else default_iterations(self.soundstorm.config.num_quantizers)
        )
        report(f"SoundStorm: {sum(plan)} passes")
        out = self.soundstorm.generate(
            new,
            semantic_lengths=new_lengths.to(device),
            prompt_codes=codes,
            prompt_lengths=code_lengths.to(device),
            prompt_semantic=storm_semantic,
            prompt_semantic_lengths=storm_semantic_lengths.to(device),
            iterations=plan,
            temperature=soundstorm_temperature,
            guidance_scale=soundstorm_scales(guidance_scale, self.soundstorm.config.num_quantizers),
            generator=generator,
        )
        report("decoding")
        decoded = self.codec.decode(out.codes, out.lengths)
        samples_per_frame = round(self.sample_rate / self.codec.frame_rate)
        out_lengths = (out.lengths.cpu() * samples_per_frame).clamp(max=decoded.shape[-1])
        return ContinuationOutput(
            audio=decoded.cpu(),
            lengths=out_lengths,
            sample_rate=self.sample_rate,
            semantic=new.cpu(),
            semantic_lengths=new_lengths,
            codes=out.codes.cpu(),
            prompt_audio=audio.cpu(),
            prompt_lengths=lengths,
        )

    def stream(
        self,
        prompt: Tensor | Sequence[Tensor],
        *,
        sample_rate: int,
        seconds: float = 3.0,
        chunk_seconds: float = 1.0,
        left_context_seconds: float = 2.0,
        lookahead_seconds: float | None = None,
        sampling: SamplingOptions | None = None,
        iterations: Sequence[int] | None = None,
        soundstorm_temperature: float = 1.0,
        guidance_scale: float = SOUNDSTORM_GUIDANCE,
        seed: int | None = None,
    ) -> Iterator[StreamChunk]:
        """Continue one prompt by ``seconds``, yielding :class:`StreamChunk` s as audio is made.

        Each step samples ``chunk_seconds`` of semantic tokens, fills their codes with
        SoundStorm prompted by the ``left_context_seconds`` of codes before them, and
        decodes them carrying the codec's state (``lookahead_seconds``: see
        :class:`~cadence.pipeline.streaming.StreamOptions`). Joined, the semantic tokens are
        :meth:`generate`'s for the same seed and the audio is ``codec.decode`` of the joined
        codes; see :mod:`cadence.pipeline.streaming` for exactly how it differs from
        :meth:`generate`. Bad options and a prompt shorter than the left context raise
        :class:`PipelineError` here, before the first chunk.
        """
        from .streaming import StreamOptions, stream_continuation

        return stream_continuation(
            self, prompt, sample_rate=sample_rate, seconds=seconds,
            options=StreamOptions(chunk_seconds=chunk_seconds, left_context_seconds=left_context_seconds,
                                  lookahead_seconds=lookahead_seconds),
            sampling=sampling, iterations=iterations, soundstorm_temperature=soundstorm_temperature,
            guidance_scale=guidance_scale, seed=seed,
        )  # fmt: skip

    def continue_semantic(
        self,
        semantic: Tensor,
        lengths: Tensor,
        new_frames: int,
        sampling: SamplingOptions,
        generator: torch.Generator | None = None,
        *,
        progress: bool = False,
    ) -> tuple[Tensor, Tensor]:
        """The semantic tokens that follow each prompt: ``(b, s)`` right-padded, and ``(b,)`` lengths.

        Each prompt is cropped to its last half-context of tokens (the LM was trained on
        utterances no longer than its context); a continuation past the context slides a
        window re-prompted with its last half (AudioLM sec. 4.4).
        """
        lm = self.semantic_lm
        context = lm.config.max_frames
        keep = lengths.clamp(max=context // 2)
        start = (lengths - keep).to(semantic.device)
        index = (
            start[:, None] + torch.arange(int(keep.max()), device=semantic.device)[None]
        ).clamp(max=semantic.shape[1] - 1)
        cropped = semantic.gather(1, index) * lengths_to_mask(
            keep.to(semantic.device), index.shape[1]
        )
        totals = keep + new_frames
        if int(totals.max()) <= context:
            out = lm.generate(
                cropped,
                keep,
                max_frames=totals,
                sampling=sampling,
                generator=generator,
                progress=progress,
            )
        else:
            out = lm.generate_long(
                cropped,
                keep,
                total_frames=totals,
                window_frames=context,
                keep_frames=context // 2,
                sampling=sampling,
                generator=generator,
                progress=progress,
            )
        rows = []
        for i in range(out.codes.shape[0]):
            tokens = out.codes[i, int(keep[i]) : int(out.lengths[i])]
            if tokens.numel() == 0:
                # The LM ended the utterance at once; one frame keeps the output well-formed.
                tokens = cropped[i, int(keep[i]) - 1 : int(keep[i])]
            rows.append(tokens)
        new, mask = pad_sequences(rows)
        return new, mask.sum(1).cpu()


def _last_frames(x: Tensor, lengths: Tensor, keep: int) -> tuple[Tensor, Tensor]:
    """The last ``keep`` real frames of each right-padded row of ``x`` ``(b, s, ...)``.

    Returns them right-padded ``(b, min(s, keep), ...)`` (0 past each row's length) with
    their ``(b,)`` lengths; rows no longer than ``keep`` are unchanged.
    """
    lengths = lengths.to(x.device)
    if int(lengths.max()) <= keep:
        return x, lengths
    kept = lengths.clamp(max=keep)
    index = ((lengths - kept)[:, None] + torch.arange(keep, device=x.device)[None]).clamp(
        max=x.shape[1] - 1
    )
    gathered = x.gather(
        1, index.view(*index.shape, *([1] * (x.ndim - 2))).expand(-1, -1, *x.shape[2:])
    )
    mask = lengths_to_mask(kept, keep).view(*index.shape, *([1] * (x.ndim - 2)))
    return gathered * mask.to(gathered.dtype), kept


def _last_samples(audio: Tensor, lengths: Tensor, keep: int) -> tuple[Tensor, Tensor]:
    """The last ``keep`` samples of each right-padded clip of ``audio`` ``(b, c, t)``."""
    cropped, kept = _last_frames(audio.transpose(1, 2), lengths, keep)
    return cropped.transpose(1, 2).contiguous(), kept.cpu()
