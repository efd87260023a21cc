"""NaturalSpeech 2 (Shen et al. 2023, arXiv 2304.09116): latent diffusion TTS with a speech prompt.

phonemes -> phoneme encoder -> duration predictor -> length regulator -> pitch predictor
-> frame condition; prompt latents -> prompt encoder -> query tokens; a WaveNet denoiser
predicts clean codec latents from noisy ones given both. Training uses ground-truth
durations and pitch (teacher forcing) and trains the predictors in the same loss; sampling
uses the predicted ones.
"""

# b batch | n phonemes | t frames | p prompt frames | m query tokens | d latent dim
# e model dim | q quantizer levels | v codebook entries

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import torch
import torch.nn.functional as F
from einops import rearrange, repeat
from torch import Tensor, nn

from cadence.core.checkpoint import PretrainedMixin
from cadence.core.config import Config, ConfigError
from cadence.core.data import lengths_to_mask
from cadence.core.nn import BackboneConfig, build_backbone

from .diffusion import Sampler, alphas_cumprod, guided, q_sample, sample
from .prior import PromptQueries, SequencePredictor, length_regulate
from .text import SPECIAL_SYMBOLS, PhonemeVocabulary, phonemize
from .wavenet import WaveNetDenoiser

__all__ = ["GenerateOutput", "NaturalSpeech2", "NaturalSpeech2Config", "NaturalSpeech2Output", "ce_rvq_loss"]


@dataclass(frozen=True, kw_only=True)
class NaturalSpeech2Config(Config):
    """Everything needed to rebuild a :class:`NaturalSpeech2`, vocabulary and latent statistics included."""

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
    cfg_drop_prob: float = 0.1  # drop prompt and frame conditions together (classifier-free guidance)
    prompt_fraction: tuple[float, float] = (0.25, 0.5)  # of an utterance used as its prompt in training
    lambda_ce_rvq: float = 0.1  # NaturalSpeech 2 sec. 3.2
    duration_loss_weight: float = 1.0
    pitch_loss_weight: float = 1.0

    def __post_init__(self) -> None:
        if self.phonemes[: len(SPECIAL_SYMBOLS)] != SPECIAL_SYMBOLS:
            raise ConfigError(f"phonemes must start with {SPECIAL_SYMBOLS}; use PhonemeVocabulary.build")
        if not 0.0 <= self.cfg_drop_prob < 1.0:
            raise ConfigError(f"cfg_drop_prob must be in [0, 1), got {self.cfg_drop_prob}")
        lo, hi = self.prompt_fraction
        if not 0.0 < lo <= hi < 1.0:
            raise ConfigError(f"prompt_fraction must satisfy 0 < lo <= hi < 1, got {self.prompt_fraction}")
        if self.latent_std <= 0:
            raise ConfigError("latent_std must be > 0")

    @classmethod
    def tiny(cls, **overrides) -> NaturalSpeech2Config:
        """A few-hundred-thousand-parameter config for tests."""
        base = dict(dim=64, heads=2, encoder_depth=2, prompt_encoder_depth=1, predictor_depth=1,
                    num_query_tokens=8, wavenet_channels=64, wavenet_depth=6, dropout=0.0,
                    diffusion_steps=100)
        base.update(overrides)
        return cls(**base)

    @property
    def vocabulary(self) -> PhonemeVocabulary:
        return PhonemeVocabulary(self.phonemes)


@dataclass
class NaturalSpeech2Output:
    """Training forward pass: the weighted total and its parts (unweighted)."""

    loss: Tensor
    losses: dict[str, Tensor] = field(default_factory=dict)


@dataclass
class GenerateOutput:
    """Sampled latents ``(b, t, d)`` (codec scale), their ``(b, t)`` mask and ``(b, n)`` durations."""

    latents: Tensor
    mask: Tensor
    durations: Tensor


def ce_rvq_loss(latents: Tensor, codes: Tensor, codebooks: Tensor, mask: Tensor) -> Tensor:
    """CE-RVQ (NaturalSpeech 2 sec. 3.2): per level, cross-entropy of the residual's codes.

    Level ``l``'s logits are the negative squared distances from the residual (predicted latent
    minus the ground-truth quantized levels before ``l``) to level ``l``'s codebook vectors.

    Args:
        latents: ``(b, t, d)`` predicted latents at the codec's scale.
        codes: ``(b, t, q)`` ground-truth codes.
        codebooks: ``(q, v, d)`` each level's codebook vectors in latent space.
        mask: ``(b, t)`` frames that count.
    """
    residual = latents
    total = latents.new_zeros(())
    count = mask.sum().clamp(min=1)
    for level in range(codebooks.shape[0]):
        book = codebooks[level].to(latents)
        dist = (residual.pow(2).sum(-1, keepdim=True) - 2 * residual @ book.T + book.pow(2).sum(-1))
        ce = F.cross_entropy(rearrange(-dist, "b t v -> b v t"), codes[..., level], reduction="none")
        total = total + (ce * mask).sum() / count
        residual = residual - book[codes[..., level]]
    return total


class NaturalSpeech2(PretrainedMixin, nn.Module):
    """NaturalSpeech 2; see the module docstring and ``docs/packages/naturalspeech2.md``."""

    config_class = NaturalSpeech2Config

    def __init__(self, config: NaturalSpeech2Config):
        super().__init__()
        self.config = c = config
        vocab = len(c.phonemes)
        self.phoneme_embedding = nn.Embedding(vocab, c.dim, padding_idx=0)
        self.phoneme_encoder = build_backbone(
            BackboneConfig(kind="transformer", dim=c.dim, depth=c.encoder_depth, heads=c.heads,
                           ff_mult=4.0, dropout=c.dropout)
        )
        self.prompt_in = nn.Linear(c.latent_dim, c.dim)
        self.prompt_encoder = build_backbone(
            BackboneConfig(kind="transformer", dim=c.dim, depth=c.prompt_encoder_depth, heads=c.heads,
                           ff_mult=4.0, dropout=c.dropout)
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
            latent_dim=c.latent_dim, channels=c.wavenet_channels, depth=c.wavenet_depth, cond_dim=c.dim,
            context_dim=c.dim, heads=c.heads, kernel_size=c.wavenet_kernel_size,
            dilation_cycle=c.dilation_cycle, attention_every=c.attention_every,
        )
        # the "no condition" inputs of classifier-free guidance
        self.null_cond = nn.Parameter(torch.zeros(c.dim))
        self.null_prompt = nn.Parameter(torch.randn(c.num_query_tokens, c.dim) * 0.02)
        self.register_buffer("abar", alphas_cumprod(c.diffusion_steps, c.noise_schedule).float(),
                             persistent=False)

    # -- pieces --------------------------------------------------------------------------

    def encode_phonemes(self, phonemes: Tensor, mask: Tensor) -> Tensor:
        return self.phoneme_encoder(self.phoneme_embedding(phonemes), mask)

    def encode_prompt(self, prompt: Tensor, prompt_mask: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Prompt latents (codec scale) -> query tokens for (duration, pitch, denoiser)."""
        h = self.prompt_encoder(self.prompt_in(self.normalize(prompt)), prompt_mask)
        return (self.duration_queries(h, prompt_mask), self.pitch_queries(h, prompt_mask),
                self.denoiser_queries(h, prompt_mask))

    def normalize(self, latents: Tensor) -> Tensor:
        return (latents - self.config.latent_mean) / self.config.latent_std

    def denormalize(self, latents: Tensor) -> Tensor:
        return latents * self.config.latent_std + self.config.latent_mean

    def frame_condition(self, frames: Tensor, norm_log_f0: Tensor, voiced: Tensor) -> Tensor:
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
        codes: Tensor | None = None,
        codebooks: Tensor | None = None,
    ) -> NaturalSpeech2Output:
        """All training losses for one batch (teacher forcing on durations and pitch).

        Args:
            phonemes: ``(b, n)`` ids; ``phoneme_mask`` ``(b, n)``.
            durations: ``(b, n)`` frames per phoneme, summing to each item's frame count.
            latents: ``(b, t, d)`` codec latents (codec scale); ``frame_mask`` ``(b, t)``.
            log_f0: ``(b, t)`` natural-log F0 (0 where unvoiced); ``voiced`` ``(b, t)`` bool.
            codes, codebooks: ``(b, t, q)`` codes and ``(q, v, d)`` codebooks for CE-RVQ
                (left out of the loss when either is None).
        """
        c = self.config
        b, t, _ = latents.shape
        if latents.shape[-1] != c.latent_dim:
            raise ValueError(f"latents must be (b, t, {c.latent_dim}), got {tuple(latents.shape)}")
        if bool((durations.sum(-1) != frame_mask.sum(-1)).any()):
            raise ValueError(
                "durations must sum to each item's number of latent frames; got sums "
                f"{durations.sum(-1).tolist()} for frames {frame_mask.sum(-1).tolist()}"
            )
        device = latents.device
        frame_mask = frame_mask.bool()
        voiced = voiced.bool() & frame_mask
        # prompt: a random segment of each utterance; the diffusion loss skips it (sec. 3.4)
        lengths = frame_mask.sum(-1)
        lo, hi = c.prompt_fraction
        frac = lo + (hi - lo) * torch.rand(b, device=device)
        p_len = (frac * lengths).long().clamp(min=1)
        p_start = (torch.rand(b, device=device) * (lengths - p_len + 1).float()).long()
        positions = torch.arange(t, device=device)
        p_index = (p_start[:, None] + positions[None, : int(p_len.max())]).clamp(max=t - 1)
        prompt = torch.gather(latents, 1, repeat(p_index, "b p -> b p d", d=c.latent_dim))
        prompt_mask = lengths_to_mask(p_len, p_index.shape[1])
        in_prompt = (positions[None] >= p_start[:, None]) & (positions[None] < (p_start + p_len)[:, None])
        target_mask = frame_mask & ~in_prompt

        dur_tokens, pitch_tokens, diff_tokens = self.encode_prompt(prompt, prompt_mask)
        hidden = self.encode_phonemes(phonemes, phoneme_mask)

        # duration predictor: log(1 + frames), MSE over real phonemes (FastSpeech 2 style)
        log_dur = self.duration_predictor(hidden, phoneme_mask, dur_tokens)[..., 0]
        dur_target = torch.log1p(durations.float())
        pm = phoneme_mask.float()
        loss_duration = ((log_dur - dur_target).pow(2) * pm).sum() / pm.sum().clamp(min=1)

        frames, _ = length_regulate(hidden, durations * phoneme_mask, t)
        pitch_out = self.pitch_predictor(frames, frame_mask, pitch_tokens)
        norm_f0 = (log_f0 - c.log_f0_mean) / c.log_f0_std
        fm, vm = frame_mask.float(), voiced.float()
        loss_f0 = ((pitch_out[..., 0] - norm_f0).abs() * vm).sum() / vm.sum().clamp(min=1)
        loss_voiced = (F.binary_cross_entropy_with_logits(pitch_out[..., 1], vm, reduction="none") * fm).sum() / fm.sum()
        loss_pitch = loss_f0 + loss_voiced

        cond = self.frame_condition(frames, norm_f0 * vm, voiced)
        # classifier-free guidance: drop the prompt and the frame condition together
        drop = torch.rand(b, device=device) < c.cfg_drop_prob if self.training else torch.zeros(b, dtype=torch.bool, device=device)
        cond = torch.where(drop[:, None, None], self.null_cond.to(cond), cond)
        diff_tokens = torch.where(drop[:, None, None], self.null_prompt.to(diff_tokens), diff_tokens)

        x0 = self.normalize(latents) * frame_mask[..., None]
        step = torch.randint(0, c.diffusion_steps, (b,), device=device)
        noise = torch.randn_like(x0)
        x_t = q_sample(x0, step, noise, self.abar)
        x0_hat = self.denoiser(x_t, step, cond, diff_tokens, frame_mask)
        tm = target_mask.float()
        loss_diffusion = ((x0_hat - x0).pow(2).mean(-1) * tm).sum() / tm.sum().clamp(min=1)

        losses = {"diffusion": loss_diffusion, "duration": loss_duration, "pitch": loss_pitch,
                  "f0": loss_f0, "voiced": loss_voiced}
        total = loss_diffusion + c.duration_loss_weight * loss_duration + c.pitch_loss_weight * loss_pitch
        if codes is not None and codebooks is not None:
            loss_ce = ce_rvq_loss(self.denormalize(x0_hat), codes, codebooks, target_mask)
            losses["ce_rvq"] = loss_ce
            total = total + c.lambda_ce_rvq * loss_ce
        return NaturalSpeech2Output(loss=total, losses=losses)

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
        guidance: float | None = None,
        eta: float = 0.0,
        durations: Tensor | None = None,
        log_f0: Tensor | None = None,
        voiced: Tensor | None = None,
        duration_scale: float = 1.0,
        generator: torch.Generator | None = None,
    ) -> GenerateOutput:
        """Sample latents for a batch of phoneme sequences, in the voice of the prompts.

        Args:
            phonemes: ``(b, n)`` ids (see :class:`PhonemeVocabulary`).
            prompt_latents: ``(b, p, d)`` codec latents of the reference speech.
            steps: network evaluations (``ddim`` / ``dpm++``; ``ddpm`` always uses every step).
            sampler: ``"dpm++"`` (ODE, default), ``"ddim"`` or ``"ddpm"``.
            guidance: classifier-free guidance scale; None = conditional only (one pass).
            durations, log_f0, voiced: ground-truth values to use instead of the predictors'.
            duration_scale: multiplies predicted durations (speaking rate).
        """
        c = self.config
        if phonemes.ndim != 2:
            raise ValueError(f"phonemes must be (b, n) ids, got shape {tuple(phonemes.shape)}")
        if prompt_latents.ndim != 3 or prompt_latents.shape[-1] != c.latent_dim:
            raise ValueError(
                f"prompt_latents must be (b, p, {c.latent_dim}) codec latents, got {tuple(prompt_latents.shape)}"
            )
        if prompt_latents.shape[0] != phonemes.shape[0]:
            raise ValueError("phonemes and prompt_latents must have the same batch size")
        if int(phonemes.max()) >= len(c.phonemes) or int(phonemes.min()) < 0:
            raise ValueError(f"phoneme ids must lie in [0, {len(c.phonemes)})")
        b = phonemes.shape[0]
        device = prompt_latents.device
        phonemes = phonemes.to(device)
        if phoneme_mask is None:
            phoneme_mask = phonemes != 0
        if prompt_mask is None:
            prompt_mask = torch.ones(prompt_latents.shape[:2], dtype=torch.bool, device=device)
        dur_tokens, pitch_tokens, diff_tokens = self.encode_prompt(prompt_latents, prompt_mask)
        hidden = self.encode_phonemes(phonemes, phoneme_mask)
        if durations is None:
            log_dur = self.duration_predictor(hidden, phoneme_mask, dur_tokens)[..., 0]
            durations = (torch.expm1(log_dur) * duration_scale).round().clamp(min=1).long()
        durations = durations.to(device) * phoneme_mask
        frames, frame_mask = length_regulate(hidden, durations)
        t = frames.shape[1]
        if log_f0 is None or voiced is None:
            pitch_out = self.pitch_predictor(frames, frame_mask, pitch_tokens)
            voiced_p = (pitch_out[..., 1] > 0) & frame_mask
            norm_f0 = pitch_out[..., 0] * voiced_p
        else:
            voiced_p = voiced.to(device).bool()[:, :t] & frame_mask
            norm_f0 = (log_f0.to(device)[:, :t] - c.log_f0_mean) / c.log_f0_std * voiced_p
        cond = self.frame_condition(frames, norm_f0, voiced_p)

        if guidance is None:
            def denoise(x: Tensor, step: Tensor) -> Tensor:
                return self.denoiser(x, step, cond, diff_tokens, frame_mask)
        else:
            # one doubled batch: conditional rows, then the same rows without conditions
            cond2 = torch.cat([cond, self.null_cond.to(cond).expand_as(cond)])
            tokens2 = torch.cat([diff_tokens, self.null_prompt.to(diff_tokens).expand_as(diff_tokens)])
            mask2 = torch.cat([frame_mask, frame_mask])

            def denoise(x: Tensor, step: Tensor) -> Tensor:
                out = self.denoiser(torch.cat([x, x]), torch.cat([step, step]), cond2, tokens2, mask2)
                return guided(out[:b], out[b:], guidance)

        def masked(x: Tensor, step: Tensor) -> Tensor:
            return denoise(x, step) * frame_mask[..., None]

        x = sample(masked, (b, t, c.latent_dim), self.abar, sampler=sampler, steps=steps, eta=eta,
                   generator=generator, device=device, dtype=prompt_latents.dtype)
        latents = self.denormalize(x) * frame_mask[..., None]
        return GenerateOutput(latents=latents, mask=frame_mask, durations=durations)

    @torch.inference_mode()
    def synthesize(
        self,
        text_or_phonemes: str | Sequence[str],
        prompt_latents: Tensor,
        *,
        steps: int = 32,
        guidance: float | None = None,
        sampler: Sampler = "dpm++",
        generator: torch.Generator | None = None,
        **kwargs,
    ) -> Tensor:
        """Text (G2P with libespeak-ng) or a phoneme list -> ``(1, t, d)`` latents (codec scale).

        Decode them to audio with the codec: ``codec.decode_latents(latents)``.

        Args:
            text_or_phonemes: a string is phonemized with ``config.voice``; a list of IPA
                symbols is used as is (a leading silence symbol is added if missing).
            prompt_latents: ``(p, d)`` or ``(1, p, d)`` codec latents of the reference speech.
        """
        if isinstance(text_or_phonemes, str):
            symbols = phonemize(text_or_phonemes, self.config.voice)
        else:
            symbols = list(text_or_phonemes)
            if not symbols:
                raise ValueError("no phonemes to synthesize")
            if symbols[0] != SPECIAL_SYMBOLS[-1]:
                symbols = [SPECIAL_SYMBOLS[-1], *symbols]
        if prompt_latents.ndim == 2:
            prompt_latents = prompt_latents[None]
        ids = self.config.vocabulary.encode(symbols)[None].to(prompt_latents.device)
        out = self.generate(ids, prompt_latents, steps=steps, guidance=guidance, sampler=sampler,
                            generator=generator, **kwargs)
        return out.latents
