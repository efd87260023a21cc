"""NaturalSpeech 2 (Shen et al. 2023, arXiv 2304.09116): latent diffusion TTS with a speech prompt.

phonemes -> phoneme encoder -> duration predictor -> length regulator -> pitch predictor
-> frame condition; prompt latents -> prompt encoder -> query tokens; a WaveNet denoiser
predicts clean codec latents from noisy ones given both. In training ``forward`` uses
ground-truth durations and pitch (teacher forcing) and returns every prediction; the train
step (:mod:`cadence.naturalspeech2.train`) draws the prompt segment, diffusion step, noise
and condition dropout beforehand and turns the predictions into losses. Sampling
(``generate``) uses the predicted durations and pitch.
"""

# b batch | l phonemes | n latent frames | p prompt frames | m query tokens | d latent dim | e model width

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import torch
from einops import repeat
from torch import Tensor, nn

from cadence.core.checkpoint import PretrainedMixin
from cadence.core.config import Config, ConfigError
from cadence.core.data import lengths_to_mask
from cadence.core.nn import BackboneConfig, build_backbone
from cadence.core.sampling import classifier_free_guidance
from cadence.core.validation import check_ids

from .diffusion import Sampler, alphas_cumprod, q_sample, sample
from .prior import PromptQueries, SequencePredictor, length_regulate
from .text import SILENCE, SPECIAL_SYMBOLS, PhonemeVocabulary, phonemize
from .wavenet import WaveNetDenoiser

__all__ = [
    "NaturalSpeech2",
    "NaturalSpeech2Config",
    "NaturalSpeech2Output",
    "NaturalSpeech2Predictions",
    "TrainingDraw",
]


@dataclass(frozen=True, kw_only=True)
class NaturalSpeech2Config(Config):
    """Everything needed to rebuild a :class:`NaturalSpeech2`, vocabulary and latent statistics included.

    Training settings (condition dropout, prompt fraction, loss weights) are in
    :class:`~cadence.naturalspeech2.train.NaturalSpeech2TrainConfig`.
    """

    # Format-1 checkpoints stored the training settings here; loading one drops them.
    dropped_keys: ClassVar[tuple[str, ...]] = (
        "cfg_drop_prob",
        "prompt_fraction",
        "lambda_ce_rvq",
        "duration_loss_weight",
        "pitch_loss_weight",
    )

    phonemes: tuple[str, ...] = SPECIAL_SYMBOLS  # the vocabulary (PhonemeVocabulary.symbols)
    voice: str = "en-us"  # espeak-ng voice used for G2P in synthesize(text)
    latent_dim: int = 16
    frame_rate: float = 50.0  # of the codec the latents come from
    latent_mean: float = 0.0  # latents are modelled as (latents - mean) / std
    latent_std: float = 1.0
    log_f0_mean: float = 5.0  # log-F0 is predicted normalised by these
    log_f0_std: float = 0.3
    dim: int = 256
    heads: int = 4
    encoder_depth: int = 6
    prompt_encoder_depth: int = 4
    predictor_depth: int = 3
    num_query_tokens: int = 32
    wavenet_channels: int = 256
    wavenet_depth: int = 20
    wavenet_kernel_size: int = 3
    dilation_cycle: int = 4
    attention_every: int = 3
    dropout: float = 0.1
    diffusion_steps: int = 1000
    noise_schedule: Literal["cosine", "linear"] = "cosine"

    def __post_init__(self) -> None:
        if self.phonemes[: len(SPECIAL_SYMBOLS)] != SPECIAL_SYMBOLS:
            raise ConfigError(
                f"phonemes must start with {SPECIAL_SYMBOLS}; use PhonemeVocabulary.build"
            )
        if self.latent_std <= 0:
            raise ConfigError("latent_std must be > 0")
        if self.log_f0_std <= 0:
            raise ConfigError("log_f0_std must be > 0")
        if self.diffusion_steps < 1:
            raise ConfigError(f"diffusion_steps must be >= 1, got {self.diffusion_steps}")
        if self.attention_every < 1:
            raise ConfigError(f"attention_every must be >= 1, got {self.attention_every}")

    @classmethod
    def tiny(cls, **overrides) -> NaturalSpeech2Config:
        """A few-hundred-thousand-parameter config for tests."""
        base: dict[str, Any] = dict(
            dim=64,
            heads=2,
            encoder_depth=2,
            prompt_encoder_depth=1,
            predictor_depth=1,
            num_query_tokens=8,
            wavenet_channels=64,
            wavenet_depth=6,
            dropout=0.0,
            diffusion_steps=100,
        )
        base.update(overrides)
        return cls(**base)

    @property
    def vocabulary(self) -> PhonemeVocabulary:
        return PhonemeVocabulary(self.phonemes)


@dataclass(frozen=True)
class TrainingDraw:
    """The random inputs of one training forward pass, drawn by the train step.

    Attributes:
        prompt_start: ``(b,)`` long, the first frame of each item's prompt segment.
        prompt_lengths: ``(b,)`` long, its frames (>= 1; the segment lies inside the item).
        step: ``(b,)`` long diffusion steps in ``[0, diffusion_steps)``.
        noise: ``(b, n, d)`` standard Gaussian noise, mixed into the normalised latents.
        cond_drop: ``(b,)`` bool, items whose prompt and frame condition are replaced by the
            learned null inputs (classifier-free guidance training).
    """

    prompt_start: Tensor
    prompt_lengths: Tensor
    step: Tensor
    noise: Tensor
    cond_drop: Tensor


@dataclass(frozen=True)
class NaturalSpeech2Predictions:
    """What the training forward pass predicts, and the masks it used.

    Attributes:
        log_durations: ``(b, l)`` predicted ``log(1 + frames)`` per phoneme.
        log_f0: ``(b, n)`` predicted normalised log-F0 (``(log F0 - log_f0_mean) / log_f0_std``).
        voiced_logits: ``(b, n)`` logits of the voiced flag.
        x0: ``(b, n, d)`` the denoiser's estimate of the clean latents, normalised.
        phoneme_mask: ``(b, l)`` real phonemes.
        frame_mask: ``(b, n)`` bool, real frames.
        voiced: ``(b, n)`` bool, voiced real frames.
        target_mask: ``(b, n)`` bool, real frames outside the prompt segment (the diffusion
            loss skips the prompt, sec. 3.4).
    """

    log_durations: Tensor
    log_f0: Tensor
    voiced_logits: Tensor
    x0: Tensor
    phoneme_mask: Tensor
    frame_mask: Tensor
    voiced: Tensor
    target_mask: Tensor


@dataclass(frozen=True)
class NaturalSpeech2Output:
    """What :meth:`NaturalSpeech2.generate` returns.

    Attributes:
        latents: ``(b, n, d)`` sampled latents at the codec's scale (0 on padded frames).
        mask: ``(b, n)`` bool, real frames.
        durations: ``(b, l)`` long frames per phoneme (0 on padding).
    """

    latents: Tensor
    mask: Tensor
    durations: Tensor


class NaturalSpeech2(PretrainedMixin, nn.Module):
    """NaturalSpeech 2; see the module docstring and ``docs/packages/naturalspeech2.md``."""

    config_class = NaturalSpeech2Config
    abar: Tensor

    def __init__(self, config: NaturalSpeech2Config):
        super().__init__()
        self.config = c = config
        vocab = len(c.phonemes)
        self.phoneme_embedding = nn.Embedding(vocab, c.dim, padding_idx=0)
        self.phoneme_encoder = build_backbone(
            BackboneConfig(
                kind="transformer",
                dim=c.dim,
                depth=c.encoder_depth,
                heads=c.heads,
                ff_mult=4.0,
                dropout=c.dropout,
            )
        )
        self.prompt_in = nn.Linear(c.latent_dim, c.dim)
        self.prompt_encoder = build_backbone(
            BackboneConfig(
                kind="transformer",
                dim=c.dim,
                depth=c.prompt_encoder_depth,
                heads=c.heads,
                ff_mult=4.0,
                dropout=c.dropout,
            )
        )
        # separate query sets: what the duration, pitch and denoiser modules need from the
        # prompt differs (rhythm, pitch range, timbre)
        self.duration_queries = PromptQueries(c.dim, c.num_query_tokens, c.heads)
        self.pitch_queries = PromptQueries(c.dim, c.num_query_tokens, c.heads)
        self.denoiser_queries = PromptQueries(c.dim, c.num_query_tokens, c.heads)
        self.duration_predictor = SequencePredictor(c.dim, c.predictor_depth, c.heads, 1, c.dropout)
        self.pitch_predictor = SequencePredictor(c.dim, c.predictor_depth, c.heads, 2, c.dropout)
        self.pitch_embedding = nn.Linear(2, c.dim)
        self.denoiser = WaveNetDenoiser(
            latent_dim=c.latent_dim,
            channels=c.wavenet_channels,
            depth=c.wavenet_depth,
            cond_dim=c.dim,
            context_dim=c.dim,
            heads=c.heads,
            kernel_size=c.wavenet_kernel_size,
            dilation_cycle=c.dilation_cycle,
            attention_every=c.attention_every,
        )
        # the "no condition" inputs of classifier-free guidance
        self.null_cond = nn.Parameter(torch.zeros(c.dim))
        self.null_prompt = nn.Parameter(torch.randn(c.num_query_tokens, c.dim) * 0.02)
        self.register_buffer(
            "abar", alphas_cumprod(c.diffusion_steps, c.noise_schedule).float(), persistent=False
        )

    # -- pieces --------------------------------------------------------------------------

    def encode_phonemes(self, phonemes: Tensor, mask: Tensor) -> Tensor:
        """``(b, l)`` ids -> ``(b, l, e)`` phoneme hidden states."""
        return self.phoneme_encoder(self.phoneme_embedding(phonemes), mask)

    def encode_prompt(self, prompt: Tensor, prompt_mask: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``(b, p, d)`` prompt latents (codec scale) -> ``(b, m, e)`` tokens for duration, pitch, denoiser."""
        h = self.prompt_encoder(self.prompt_in(self.normalize(prompt)), prompt_mask)
        return (
            self.duration_queries(h, prompt_mask),
            self.pitch_queries(h, prompt_mask),
            self.denoiser_queries(h, prompt_mask),
        )

    def normalize(self, latents: Tensor) -> Tensor:
        """Codec-scale latents -> the scale the diffusion models."""
        return (latents - self.config.latent_mean) / self.config.latent_std

    def denormalize(self, latents: Tensor) -> Tensor:
        """The inverse of :meth:`normalize`."""
        return latents * self.config.latent_std + self.config.latent_mean

    def normalize_log_f0(self, log_f0: Tensor) -> Tensor:
        """Natural-log F0 -> the scale the pitch predictor predicts."""
        return (log_f0 - self.config.log_f0_mean) / self.config.log_f0_std

    def frame_condition(self, frames: Tensor, norm_log_f0: Tensor, voiced: Tensor) -> Tensor:
        """``(b, n, e)`` length-regulated phonemes + the embedded pitch -> the denoiser's frame condition."""
        pitch = torch.stack([norm_log_f0 * voiced, voiced.to(frames.dtype)], dim=-1)
        return frames + self.pitch_embedding(pitch)

    # -- training ------------------------------------------------------------------------

    def forward(
        self,
        phonemes: Tensor,
        phoneme_mask: Tensor,
        durations: Tensor,
        latents: Tensor,
        frame_mask: Tensor,
        log_f0: Tensor,
        voiced: Tensor,
        draw: TrainingDraw,
    ) -> NaturalSpeech2Predictions:
        """Every prediction for one training batch (teacher forcing on durations and pitch).

        Args:
            phonemes: ``(b, l)`` ids; ``phoneme_mask`` ``(b, l)``.
            durations: ``(b, l)`` frames per phoneme, summing to each item's frame count.
            latents: ``(b, n, d)`` codec latents (codec scale); ``frame_mask`` ``(b, n)``.
            log_f0: ``(b, n)`` natural-log F0 (0 where unvoiced); ``voiced`` ``(b, n)`` bool.
            draw: the prompt segment, diffusion step, noise and condition dropout, drawn by
                the train step (:func:`cadence.naturalspeech2.train.draw_training`).
        """
        frame_mask = frame_mask.bool()
        self._check_training_inputs(durations, latents, frame_mask, draw)
        voiced = voiced.bool() & frame_mask
        prompt, prompt_mask, in_prompt = _prompt_segment(
            latents, draw.prompt_start, draw.prompt_lengths
        )
        dur_tokens, pitch_tokens, diff_tokens = self.encode_prompt(prompt, prompt_mask)
        hidden = self.encode_phonemes(phonemes, phoneme_mask)
        log_durations = self.duration_predictor(hidden, phoneme_mask, dur_tokens)[..., 0]
        frames, _ = length_regulate(hidden, durations * phoneme_mask, latents.shape[1])
        pitch = self.pitch_predictor(frames, frame_mask, pitch_tokens)
        cond = self.frame_condition(frames, self.normalize_log_f0(log_f0) * voiced, voiced)
        cond, diff_tokens = self._drop_conditions(cond, diff_tokens, draw.cond_drop)
        x0 = self.normalize(latents) * frame_mask[..., None]
        x_t = q_sample(x0, draw.step, draw.noise, self.abar)
        x0_hat = self.denoiser(x_t, draw.step, cond, diff_tokens, frame_mask)
        return NaturalSpeech2Predictions(
            log_durations=log_durations,
            log_f0=pitch[..., 0],
            voiced_logits=pitch[..., 1],
            x0=x0_hat,
            phoneme_mask=phoneme_mask,
            frame_mask=frame_mask,
            voiced=voiced,
            target_mask=frame_mask & ~in_prompt,
        )

    def _check_training_inputs(
        self, durations: Tensor, latents: Tensor, frame_mask: Tensor, draw: TrainingDraw
    ) -> None:
        b, n, d = latents.shape
        if d != self.config.latent_dim:
            raise ValueError(
                f"latents must be (b, n, {self.config.latent_dim}), got {tuple(latents.shape)}"
            )
        lengths = frame_mask.sum(-1)
        if bool((durations.sum(-1) != lengths).any()):
            raise ValueError(
                "durations must sum to each item's number of latent frames; got sums "
                f"{durations.sum(-1).tolist()} for frames {lengths.tolist()}"
            )
        if draw.noise.shape != latents.shape:
            raise ValueError(
                f"draw.noise must be shaped like the latents, {(b, n, d)}, got {tuple(draw.noise.shape)}"
            )
        for name in ("prompt_start", "prompt_lengths", "step", "cond_drop"):
            if getattr(draw, name).shape != (b,):
                raise ValueError(
                    f"draw.{name} must be ({b},), got {tuple(getattr(draw, name).shape)}"
                )
        start, length = draw.prompt_start, draw.prompt_lengths
        if bool(((length < 1) | (start < 0) | (start + length > lengths)).any()):
            raise ValueError(
                "each prompt segment must hold >= 1 frame inside its item; got starts "
                f"{start.tolist()}, lengths {length.tolist()} for items of {lengths.tolist()} frames"
            )

    def _drop_conditions(self, cond: Tensor, tokens: Tensor, drop: Tensor) -> tuple[Tensor, Tensor]:
        """Classifier-free guidance training: the prompt and the frame condition are dropped together."""
        drop = drop.to(cond.device)[:, None, None]
        return (
            torch.where(drop, self.null_cond.to(cond), cond),
            torch.where(drop, self.null_prompt.to(tokens), tokens),
        )

    # -- sampling ------------------------------------------------------------------------

    @torch.inference_mode()
    def generate(
        self,
        phonemes: Tensor,
        prompt_latents: Tensor,
        *,
        phoneme_mask: Tensor | None = None,
        prompt_mask: Tensor | None = None,
        steps: int = 32,
        sampler: Sampler = "dpm++",
        guidance_scale: float = 1.0,
        eta: float = 0.0,
        durations: Tensor | None = None,
        log_f0: Tensor | None = None,
        voiced: Tensor | None = None,
        duration_scale: float = 1.0,
        generator: torch.Generator | None = None,
    ) -> NaturalSpeech2Output:
        """Sample latents for a batch of phoneme sequences, in the voice of the prompts.

        Args:
            phonemes: ``(b, l)`` ids (see :class:`PhonemeVocabulary`); ``phoneme_mask``
                ``(b, l)`` defaults to ``phonemes != 0``.
            prompt_latents: ``(b, p, d)`` codec latents of the reference speech;
                ``prompt_mask`` ``(b, p)`` defaults to all frames.
            steps: network evaluations (``ddim`` / ``dpm++``; ``ddpm`` always uses every step).
            sampler: ``"dpm++"`` (ODE, default), ``"ddim"`` or ``"ddpm"``.
            guidance_scale: classifier-free guidance; 1 = off (one conditional pass).
            eta: DDIM stochasticity.
            durations, log_f0, voiced: ground-truth ``(b, l)``, ``(b, n)``, ``(b, n)`` values
                to use instead of the predictors' (reconstruction).
            duration_scale: multiplies predicted durations (speaking rate).
            generator: for the sampler's noise.
        """
        phonemes = self._check_generate_inputs(phonemes, prompt_latents)
        device = prompt_latents.device
        if phoneme_mask is None:
            phoneme_mask = phonemes != 0
        if prompt_mask is None:
            prompt_mask = torch.ones(prompt_latents.shape[:2], dtype=torch.bool, device=device)
        dur_tokens, pitch_tokens, diff_tokens = self.encode_prompt(prompt_latents, prompt_mask)
        hidden = self.encode_phonemes(phonemes, phoneme_mask)
        if durations is None:
            durations = self._predict_durations(hidden, phoneme_mask, dur_tokens, duration_scale)
        durations = durations.to(device) * phoneme_mask
        frames, frame_mask = length_regulate(hidden, durations)
        cond = self._sampling_condition(frames, frame_mask, pitch_tokens, log_f0, voiced)
        denoise = self._guided_denoiser(cond, diff_tokens, frame_mask, guidance_scale)
        (b, n), d = frame_mask.shape, self.config.latent_dim
        x = sample(
            denoise,
            (b, n, d),
            self.abar,
            sampler=sampler,
            steps=steps,
            eta=eta,
            generator=generator,
            device=device,
            dtype=prompt_latents.dtype,
        )
        latents = self.denormalize(x) * frame_mask[..., None]
        return NaturalSpeech2Output(latents=latents, mask=frame_mask, durations=durations)

    def _check_generate_inputs(self, phonemes: Tensor, prompt_latents: Tensor) -> Tensor:
        """The phoneme ids as long on the prompt's device, once they and the prompt are valid."""
        c = self.config
        phonemes = check_ids(
            phonemes,
            len(c.phonemes),
            name="phoneme ids",
            ndim=2,
            hint="encode phonemes with this model's vocabulary (model.config.vocabulary.encode)",
        )
        if prompt_latents.ndim != 3 or prompt_latents.shape[-1] != c.latent_dim:
            raise ValueError(
                f"prompt_latents must be (b, p, {c.latent_dim}) codec latents, got {tuple(prompt_latents.shape)}"
            )
        if prompt_latents.shape[0] != phonemes.shape[0]:
            raise ValueError("phonemes and prompt_latents must have the same batch size")
        return phonemes.to(prompt_latents.device)

    def _predict_durations(
        self, hidden: Tensor, phoneme_mask: Tensor, tokens: Tensor, scale: float
    ) -> Tensor:
        """``(b, l)`` long frames per phoneme from the duration predictor, at least 1 each."""
        log_durations = self.duration_predictor(hidden, phoneme_mask, tokens)[..., 0]
        return (torch.expm1(log_durations) * scale).round().clamp(min=1).long()

    def _sampling_condition(
        self,
        frames: Tensor,
        frame_mask: Tensor,
        pitch_tokens: Tensor,
        log_f0: Tensor | None,
        voiced: Tensor | None,
    ) -> Tensor:
        """The frame condition, with predicted pitch unless both ``log_f0`` and ``voiced`` are given."""
        n = frames.shape[1]
        if log_f0 is None or voiced is None:
            pitch = self.pitch_predictor(frames, frame_mask, pitch_tokens)
            voiced = (pitch[..., 1] > 0) & frame_mask
            norm_f0 = pitch[..., 0] * voiced
        else:
            voiced = voiced.to(frames.device).bool()[:, :n] & frame_mask
            norm_f0 = self.normalize_log_f0(log_f0.to(frames.device)[:, :n]) * voiced
        return self.frame_condition(frames, norm_f0, voiced)

    def _guided_denoiser(
        self, cond: Tensor, tokens: Tensor, frame_mask: Tensor, guidance_scale: float
    ) -> Callable[[Tensor, Tensor], Tensor]:
        """``(x_t, t) -> x0`` on the real frames; guided by a doubled batch unless the scale is 1."""
        keep = frame_mask[..., None]
        if guidance_scale == 1.0:

            def denoise(x: Tensor, step: Tensor) -> Tensor:
                return self.denoiser(x, step, cond, tokens, frame_mask) * keep

            return denoise
        b = cond.shape[0]
        # one doubled batch: conditional rows, then the same rows without conditions
        cond2 = torch.cat([cond, self.null_cond.to(cond).expand_as(cond)])
        tokens2 = torch.cat([tokens, self.null_prompt.to(tokens).expand_as(tokens)])
        mask2 = torch.cat([frame_mask, frame_mask])

        def guided(x: Tensor, step: Tensor) -> Tensor:
            out = self.denoiser(torch.cat([x, x]), torch.cat([step, step]), cond2, tokens2, mask2)
            return classifier_free_guidance(out[:b], out[b:], guidance_scale) * keep

        return guided

    @torch.inference_mode()
    def synthesize(
        self,
        text_or_phonemes: str | Sequence[str],
        prompt_latents: Tensor,
        *,
        steps: int = 32,
        guidance_scale: float = 1.0,
        sampler: Sampler = "dpm++",
        generator: torch.Generator | None = None,
        voice: str | None = None,
        **kwargs,
    ) -> Tensor:
        """Text (G2P with libespeak-ng) or a phoneme list -> ``(1, n, d)`` latents (codec scale).

        Decode them to audio with the codec: ``codec.decode_latents(latents)``.

        Args:
            text_or_phonemes: a string is phonemized with ``config.voice``; a list of IPA
                symbols is used as is (a leading silence symbol is added if missing).
            prompt_latents: ``(p, d)`` or ``(1, p, d)`` codec latents of the reference speech.
            guidance_scale: classifier-free guidance; 1 = off (one conditional pass).
            voice: the espeak-ng voice that reads a string (its accent: ``"en-gb-x-rp"``
                says "what" as /w ɒ t/, ``"en-us"`` as /w ʌ t/); default ``config.voice``.
                Symbols the model never saw map to ``<unk>``, so keep to the accents of its
                training corpus.
            kwargs: more options of :meth:`generate`.
        """
        if isinstance(text_or_phonemes, str):
            symbols = phonemize(text_or_phonemes, voice or self.config.voice)
        else:
            symbols = list(text_or_phonemes)
            if not symbols:
                raise ValueError("no phonemes to synthesize")
            if symbols[0] != SILENCE:
                symbols = [SILENCE, *symbols]
        if prompt_latents.ndim == 2:
            prompt_latents = prompt_latents[None]
        ids = self.config.vocabulary.encode(symbols)[None].to(prompt_latents.device)
        out = self.generate(
            ids,
            prompt_latents,
            steps=steps,
            guidance_scale=guidance_scale,
            sampler=sampler,
            generator=generator,
            **kwargs,
        )
        return out.latents


def _prompt_segment(
    latents: Tensor, start: Tensor, lengths: Tensor
) -> tuple[Tensor, Tensor, Tensor]:
    """Each item's prompt segment: ``(b, p, d)`` latents, their ``(b, p)`` mask, ``(b, n)`` in-prompt frames."""
    n = latents.shape[1]
    positions = torch.arange(n, device=latents.device)
    index = (start[:, None] + positions[None, : int(lengths.max())]).clamp(max=n - 1)
    prompt = torch.gather(latents, 1, repeat(index, "b p -> b p d", d=latents.shape[-1]))
    in_prompt = lengths_to_mask(start + lengths, n) & ~lengths_to_mask(start, n)
    return prompt, lengths_to_mask(lengths, index.shape[1]), in_prompt
