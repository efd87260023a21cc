"""Speech continuation: prompt audio -> semantic tokens -> AudioLM semantic stage -> SoundStorm -> codec.

As in SoundStorm (Borsos et al. 2023, sec. 4): AudioLM's first stage continues the prompt's
semantic tokens; SoundStorm turns them into codec codes, prompted by the prompt's own codes
(and their semantic tokens) so that the voice and recording conditions carry over; the codec
decodes.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from cadence.audiolm import SemanticTransformer
from cadence.core.audio import check_audio, resample, to_mono
from cadence.core.data import collate_audio, pad_sequences
from cadence.core.interfaces import Codec, SemanticTokenizer
from cadence.soundstorm import SoundStorm

from .components import PipelineError, load_component
from .pipeline import PipelineSpec


@dataclass
class ContinuationOutput:
    """What :meth:`SpeechContinuation.generate` returns.

    Attributes:
        audio: ``(b, c, t)`` the generated continuation at ``sample_rate`` (0 past ``lengths``).
        lengths: ``(b,)`` samples of each continuation.
        sample_rate: the codec's rate.
        semantic: ``(b, m)`` the new semantic tokens (0 past their lengths).
        codes: ``(b, n, q)`` the new codec codes.
        prompt_audio: ``(b, c, t_p)`` the prompts at ``sample_rate``, and ``prompt_lengths``.
    """

    audio: Tensor
    lengths: Tensor
    sample_rate: int
    semantic: Tensor
    codes: Tensor
    prompt_audio: Tensor
    prompt_lengths: Tensor


def check_compatible(codec: Codec, tokenizer: SemanticTokenizer, semantic_lm: SemanticTransformer | None,
                     soundstorm: SoundStorm) -> None:
    """Refuse components that were not trained together, naming what differs."""
    ss = soundstorm.config
    problems = []
    if semantic_lm is not None:
        lm = semantic_lm.config
        if lm.codebook_size != tokenizer.codebook_size:
            problems.append(f"semantic_lm has {lm.codebook_size} semantic tokens, the tokenizer {tokenizer.codebook_size}")
        if abs(lm.frame_rate - tokenizer.frame_rate) > 1e-6:
            problems.append(f"semantic_lm runs at {lm.frame_rate} tokens/s, the tokenizer at {tokenizer.frame_rate}")
    if ss.semantic_codebook_size != tokenizer.codebook_size:
        problems.append(f"soundstorm expects {ss.semantic_codebook_size} semantic tokens, the tokenizer has {tokenizer.codebook_size}")
    if abs(ss.semantic_frame_rate - tokenizer.frame_rate) > 1e-6:
        problems.append(f"soundstorm expects {ss.semantic_frame_rate} semantic tokens/s, the tokenizer makes {tokenizer.frame_rate}")
    if (ss.num_quantizers, ss.codebook_size) != (codec.num_quantizers, codec.codebook_size):
        problems.append(f"soundstorm models {ss.num_quantizers} x {ss.codebook_size} codes, the codec makes {codec.num_quantizers} x {codec.codebook_size}")
    if abs(ss.frame_rate - codec.frame_rate) > 1e-6:
        problems.append(f"soundstorm runs at {ss.frame_rate} frames/s, the codec at {codec.frame_rate}")
    if problems:
        raise PipelineError("components do not fit together: " + "; ".join(problems)
                            + ". Use checkpoints trained on the same codec and tokenizer.")


def prepare_audio(audio: Tensor | Sequence[Tensor], sample_rate: int, target_rate: int, channels: int,
                  *, what: str = "prompt") -> tuple[Tensor, Tensor]:
    """``(b, c, t)`` or a list of ``(c, t)`` -> padded ``(b, channels, t)`` at ``target_rate`` and lengths."""
    items = list(audio) if not isinstance(audio, Tensor) else [a for a in audio] if audio.ndim == 3 else [audio]
    if not items:
        raise PipelineError(f"no {what} audio given")
    out = []
    for i, item in enumerate(items):
        if item.ndim == 1:
            item = item[None]
        check_audio(item[None], sample_rate=sample_rate, what=f"{what} {i}")
        if item.shape[0] != channels:
            if channels != 1:
                raise PipelineError(f"{what} {i} has {item.shape[0]} channels; the codec needs {channels}")
            item = to_mono(item)
        if sample_rate != target_rate:
            item = resample(item, sample_rate, target_rate)
        out.append(item.float())
    batch = collate_audio([{"audio": a} for a in out])
    return batch["audio"], batch["lengths"]


def _pad(sequences: list[Tensor]) -> tuple[Tensor, Tensor]:
    padded, mask = pad_sequences(sequences)
    return padded, mask.sum(1)


class SpeechContinuation:
    """Continue speech prompts with a semantic LM, SoundStorm and a codec.

    Example::

        pipe = SpeechContinuation.from_pretrained("runs/toy/pipeline")
        audio, rate = cadence.core.audio.load("prompt.wav")
        out = pipe.generate(audio, sample_rate=rate, seconds=3.0, seed=0)
        cadence.core.audio.save("out.wav", out.audio[0, :, : out.lengths[0]], out.sample_rate)
    """

    def __init__(self, codec: Codec, tokenizer: SemanticTokenizer, semantic_lm: SemanticTransformer,
                 soundstorm: SoundStorm):
        if tokenizer.sample_rate != codec.sample_rate:
            # Both see the same prompt; one rate keeps their frames aligned without resampling twice.
            raise PipelineError(
                f"the tokenizer runs at {tokenizer.sample_rate} Hz and the codec at {codec.sample_rate} Hz; "
                "this pipeline needs both at one rate"
            )
        check_compatible(codec, tokenizer, semantic_lm, soundstorm)
        self.codec, self.tokenizer, self.semantic_lm, self.soundstorm = codec, tokenizer, semantic_lm, soundstorm

    @classmethod
    def from_pretrained(cls, directory: str | os.PathLike, *, device: str | torch.device = "cpu") -> SpeechContinuation:
        """Load the pipeline directory written by ``cadence recipe`` (its ``pipeline.json``)."""
        spec = PipelineSpec.read(directory)
        codec = load_component(spec.path("codec"), "codec", device=device)
        if not isinstance(codec, Codec):
            raise PipelineError(f"codec: {spec.path('codec')} does not hold a codec")
        tokenizer = load_component(spec.path("semantic_tokenizer"), "semantic_tokenizer", device=device)
        if not isinstance(tokenizer, SemanticTokenizer):
            raise PipelineError(f"semantic_tokenizer: {spec.path('semantic_tokenizer')} does not hold a semantic tokenizer")
        semantic_lm = load_component(spec.path("semantic_lm"), "semantic_lm", SemanticTransformer, device=device)
        soundstorm = load_component(spec.path("soundstorm"), "soundstorm", SoundStorm, device=device)
        return cls(codec, tokenizer, semantic_lm, soundstorm)

    @property
    def sample_rate(self) -> int:
        return self.codec.sample_rate

    def _device(self) -> torch.device:
        return next(self.soundstorm.parameters()).device

    @torch.no_grad()
    def generate(
        self,
        prompt: Tensor | Sequence[Tensor],
        *,
        sample_rate: int,
        seconds: float = 3.0,
        stop_at_eos: bool = True,
        temperature: float = 0.9,
        top_k: int | None = None,
        top_p: float | None = 0.95,
        iterations: Sequence[int] | None = None,
        soundstorm_temperature: float = 1.0,
        guidance_scale: float = 1.0,
        seed: int | None = None,
    ) -> ContinuationOutput:
        """Continue each prompt by at most ``seconds`` (exactly, with ``stop_at_eos=False``).

        Args:
            prompt: ``(b, c, t)`` audio, or a list of ``(c, t)`` prompts of different lengths.
            sample_rate: the prompts' rate (resampled to the codec's).
            seconds: length of the continuation.
            stop_at_eos: let the semantic LM end an utterance before ``seconds``.
            temperature, top_k, top_p: semantic LM sampling.
            iterations: SoundStorm passes per level (default 16 on the first, 1 after).
            soundstorm_temperature, guidance_scale: SoundStorm sampling.
            seed: makes the result reproducible.
        """
        if seconds <= 0:
            raise PipelineError(f"seconds must be > 0, got {seconds}")
        device = self._device()
        generator = torch.Generator(device=device).manual_seed(seed) if seed is not None else None
        audio, lengths = prepare_audio(prompt, sample_rate, self.sample_rate, self.codec.channels)
        hop = round(self.sample_rate / self.tokenizer.frame_rate)
        if int(lengths.min()) < 2 * hop:
            raise PipelineError(f"a prompt is shorter than {2 * hop / self.sample_rate:.2f} s; give at least a few tenths of a second")
        audio = audio.to(device)
        prompts_semantic, prompts_codes = [], []
        for i in range(audio.shape[0]):
            item = audio[i : i + 1, :, : int(lengths[i])]
            prompts_semantic.append(self.tokenizer.tokenize(item)[0])
            prompts_codes.append(self.codec.encode(item)[0])
        new_frames = max(1, round(seconds * self.tokenizer.frame_rate))
        continued = [self._continue(p, new_frames, stop_at_eos, temperature, top_k, top_p, generator)
                     for p in prompts_semantic]
        semantic, semantic_lengths = _pad(continued)
        prompt_semantic, prompt_semantic_lengths = _pad(prompts_semantic)
        prompt_codes, prompt_code_lengths = _pad(prompts_codes)
        out = self.soundstorm.generate(
            semantic.to(device), semantic_lengths=semantic_lengths.to(device),
            prompt_codes=prompt_codes.to(device), prompt_lengths=prompt_code_lengths.to(device),
            prompt_semantic=prompt_semantic.to(device), prompt_semantic_lengths=prompt_semantic_lengths.to(device),
            iterations=iterations, temperature=soundstorm_temperature, guidance_scale=guidance_scale,
            generator=generator,
        )
        decoded = self.codec.decode(out.codes)
        samples_per_frame = round(self.sample_rate / self.codec.frame_rate)
        out_lengths = (out.lengths.cpu() * samples_per_frame).clamp(max=decoded.shape[-1])
        mask = torch.arange(decoded.shape[-1])[None] < out_lengths[:, None]
        decoded = decoded * mask[:, None].to(decoded)
        return ContinuationOutput(
            audio=decoded.cpu(), lengths=out_lengths, sample_rate=self.sample_rate,
            semantic=semantic, codes=out.codes.cpu(), prompt_audio=audio.cpu(), prompt_lengths=lengths,
        )

    def _continue(self, prompt: Tensor, new_frames: int, stop_at_eos: bool, temperature: float,
                  top_k: int | None, top_p: float | None, generator: torch.Generator | None) -> Tensor:
        """The semantic tokens that follow ``prompt`` (``(p,)`` -> ``(m,)``, prompt excluded)."""
        lm = self.semantic_lm
        context = lm.config.max_frames
        prompt = prompt[-(context // 2):] if prompt.shape[0] > context // 2 else prompt
        total = prompt.shape[0] + new_frames
        kwargs = dict(temperature=temperature, top_k=top_k, top_p=top_p, generator=generator)
        if total <= context:
            out = lm.generate(prompt[None], max_frames=total, allow_eos=stop_at_eos, **kwargs)
        else:
            # Beyond the trained context: slide a window re-prompted with its last half.
            out = lm.generate_long(prompt[None], total_frames=total, window_frames=context,
                                   keep_frames=context // 2, allow_eos=stop_at_eos, **kwargs)
        tokens = out.codes[0, prompt.shape[0] : int(out.lengths[0])]
        if tokens.numel() == 0:
            # The LM ended the utterance at once; one frame keeps the output well-formed.
            tokens = out.codes.new_zeros(1) + prompt[-1]
        return tokens
