"""Phoneme durations from an unsupervised aligner ("One TTS Alignment to Rule Them All").

Badlani et al. 2022 (arXiv 2108.10447): phoneme and frame encoders give a soft alignment
``softmax_tokens(-||frame - phoneme||^2)`` times a beta-binomial prior favouring the
diagonal; the forward-sum loss (CTC over the phoneme sequence, every frame emitting a
phoneme, no blanks used) maximises the likelihood of all monotonic paths, and monotonic
alignment search (MAS, Glow-TTS) turns the soft alignment into hard per-phoneme frame
counts. The frame features are whatever the caller gives: log-mel frames at the codec frame
rate work best (codec latents work too).
"""

# b batch | n frames | l phonemes | d feature dim | e widths (dim, attention_dim)

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from cadence.core.checkpoint import PretrainedMixin
from cadence.core.config import Config, ConfigError
from cadence.core.data import lengths_to_mask

__all__ = [
    "Aligner",
    "AlignerConfig",
    "AlignerOutput",
    "beta_binomial_log_prior",
    "forward_sum_loss",
    "monotonic_alignment_search",
]


def monotonic_alignment_search(
    log_probs: np.ndarray | Tensor,
    frame_lengths: np.ndarray | Tensor | None = None,
    phoneme_lengths: np.ndarray | Tensor | None = None,
) -> np.ndarray:
    """The most likely monotonic hard alignment (Glow-TTS' MAS), vectorised over the batch.

    Every frame goes to exactly one phoneme; phoneme indices never decrease and advance by
    at most one per frame; the path starts at (0, 0) and ends at the last frame and the last
    phoneme, so every phoneme gets at least one frame.

    Args:
        log_probs: ``(b, n, l)`` log-likelihood of each frame belonging to each phoneme.
        frame_lengths: ``(b,)`` valid frames (default all), each >= its phoneme length.
        phoneme_lengths: ``(b,)`` valid phonemes (default all).

    Returns:
        ``(b, n, l)`` 0/1 int64 path (zeros outside the valid region).
    """
    lp = np.asarray(
        log_probs.detach().cpu() if isinstance(log_probs, Tensor) else log_probs, dtype=np.float64
    )
    if lp.ndim != 3:
        raise ValueError(f"log_probs must be (b, n, l), got shape {lp.shape}")
    b, num_frames, num_phonemes = lp.shape
    frame_len = (
        np.full(b, num_frames)
        if frame_lengths is None
        else np.asarray(frame_lengths).astype(np.int64)
    )
    phoneme_len = (
        np.full(b, num_phonemes)
        if phoneme_lengths is None
        else np.asarray(phoneme_lengths).astype(np.int64)
    )
    if np.any(frame_len < phoneme_len) or np.any(phoneme_len < 1):
        raise ValueError(
            f"every item needs at least as many frames as phonemes (and >= 1 phoneme); got "
            f"frames {frame_len.tolist()} for phonemes {phoneme_len.tolist()}"
        )
    neg = -np.inf
    frames_real = lengths_to_mask(torch.from_numpy(frame_len), num_frames).numpy()
    phonemes_real = lengths_to_mask(torch.from_numpy(phoneme_len), num_phonemes).numpy()
    valid = frames_real[:, :, None] & phonemes_real[:, None, :]
    lp = np.where(valid, lp, neg)
    # score[:, j, i]: best log-probability of a path ending at frame j on phoneme i
    score = np.full((b, num_frames, num_phonemes), neg)
    score[:, 0, 0] = lp[:, 0, 0]
    for j in range(1, num_frames):
        stay = score[:, j - 1]
        advance = np.concatenate([np.full((b, 1), neg), score[:, j - 1, :-1]], axis=1)
        score[:, j] = lp[:, j] + np.maximum(stay, advance)
    path = np.zeros((b, num_frames, num_phonemes), dtype=np.int64)
    rows = np.arange(b)
    index = phoneme_len - 1
    for j in range(num_frames - 1, -1, -1):
        active = j < frame_len
        path[rows[active], j, index[active]] = 1
        if j == 0:
            break
        prev = score[rows, j - 1, index]
        prev_advance = np.where(index > 0, score[rows, j - 1, np.maximum(index - 1, 0)], neg)
        # move to the previous phoneme when that is better, or when staying would leave too
        # few frames for the phonemes still to come (index must reach 0 at frame 0)
        move = active & (index > 0) & ((prev_advance > prev) | (index >= j))
        index = index - move.astype(np.int64)
    return path


def beta_binomial_log_prior(num_frames: int, num_phonemes: int, scaling: float = 1.0) -> Tensor:
    """``(n, l)`` log of the beta-binomial alignment prior of Badlani et al. (sec. 3.2)."""
    k = torch.arange(num_phonemes, dtype=torch.float64)
    frames = torch.arange(1, num_frames + 1, dtype=torch.float64)[:, None]
    a, b = scaling * frames, scaling * (num_frames + 1 - frames)
    total = num_phonemes - 1

    def log_beta(x: Tensor, y: Tensor) -> Tensor:
        return torch.lgamma(x) + torch.lgamma(y) - torch.lgamma(x + y)

    log_choose = (
        torch.lgamma(torch.tensor(total + 1.0)) - torch.lgamma(k + 1) - torch.lgamma(total - k + 1)
    )
    return (log_choose + log_beta(k + a, total - k + b) - log_beta(a, b)).float()


def forward_sum_loss(
    log_attn: Tensor, frame_lengths: Tensor, phoneme_lengths: Tensor, blank_logprob: float = -1.0
) -> Tensor:
    """The forward-sum (CTC) alignment loss, averaged over the batch.

    Args:
        log_attn: ``(b, n, l)`` unnormalised log alignment scores (padding is ignored).
        frame_lengths, phoneme_lengths: ``(b,)`` valid lengths.
    """
    b, _, num_phonemes = log_attn.shape
    token_mask = lengths_to_mask(phoneme_lengths.to(log_attn.device), num_phonemes)[:, None, :]
    scores = log_attn.masked_fill(~token_mask, -1e4)
    # class 0 is CTC's blank with a fixed score; phoneme i is class i + 1
    scores = F.pad(scores, (1, 0), value=blank_logprob)
    log_probs = rearrange(scores.log_softmax(-1), "b n l -> n b l")
    targets = torch.arange(1, num_phonemes + 1, device=log_attn.device).expand(b, num_phonemes)
    return F.ctc_loss(
        log_probs.float(),
        targets,
        frame_lengths,
        phoneme_lengths,
        blank=0,
        reduction="mean",
        zero_infinity=True,
    )


@dataclass(frozen=True, kw_only=True)
class AlignerConfig(Config):
    """Config of :class:`Aligner`."""

    vocab_size: int = 64
    feature_dim: int = 80  # width of the frame features (n_mels, or the codec's latent_dim)
    dim: int = 128
    attention_dim: int = 64
    prior_scaling: float = 1.0  # beta-binomial prior; 0 turns it off
    # The phoneme symbols of the ids (a PhonemeVocabulary's), so that a trained aligner encodes
    # text as it was trained; () leaves the ids to the caller.
    phonemes: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.vocab_size < 2:
            raise ConfigError(f"vocab_size must be >= 2 (id 0 is padding), got {self.vocab_size}")
        if self.phonemes and len(self.phonemes) != self.vocab_size:
            raise ConfigError(
                f"phonemes has {len(self.phonemes)} symbols but vocab_size is {self.vocab_size}; "
                "give vocab_size=len(phonemes)"
            )
        for name in ("feature_dim", "dim", "attention_dim"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.prior_scaling < 0:
            raise ConfigError(
                f"prior_scaling must be >= 0 (0 turns the prior off), got {self.prior_scaling}"
            )

    @classmethod
    def tiny(cls, vocab_size: int = 64, feature_dim: int = 80) -> AlignerConfig:
        return cls(vocab_size=vocab_size, feature_dim=feature_dim, dim=64, attention_dim=32)


@dataclass(frozen=True)
class AlignerOutput:
    """Soft and hard alignments.

    Attributes:
        log_attn: ``(b, n, l)`` log soft alignment (prior included; -inf-like on padding).
        loss: forward-sum loss.
        durations: ``(b, l)`` long frames per phoneme from MAS (0 on padding).
    """

    log_attn: Tensor
    loss: Tensor
    durations: Tensor


class Aligner(PretrainedMixin, nn.Module):
    """Soft phoneme-to-frame alignment + MAS durations."""

    config_class = AlignerConfig

    def __init__(self, config: AlignerConfig):
        super().__init__()
        self.config = config
        c = config
        self.embed = nn.Embedding(c.vocab_size, c.dim, padding_idx=0)
        self.phoneme_encoder = nn.Sequential(
            nn.Conv1d(c.dim, c.dim, 3, padding=1), nn.ReLU(), nn.Conv1d(c.dim, c.attention_dim, 1)
        )
        self.frame_encoder = nn.Sequential(
            nn.Conv1d(c.feature_dim, c.dim, 3, padding=1),
            nn.ReLU(),
            nn.Conv1d(c.dim, c.dim, 1),
            nn.ReLU(),
            nn.Conv1d(c.dim, c.attention_dim, 1),
        )
        self.feature_norm = nn.LayerNorm(c.feature_dim, elementwise_affine=False)

    def forward(
        self,
        phonemes: Tensor,
        phoneme_mask: Tensor,
        features: Tensor,
        frame_mask: Tensor,
        *,
        hard: bool = True,
    ) -> AlignerOutput:
        """Align ``(b, l)`` phoneme ids to ``(b, n, d)`` frame features (masks True = keep)."""
        if features.shape[-1] != self.config.feature_dim:
            raise ValueError(
                f"features must be (b, n, {self.config.feature_dim}), got {tuple(features.shape)}"
            )
        keys = self.phoneme_encoder(rearrange(self.embed(phonemes), "b l e -> b e l"))
        frames = self.feature_norm(features) * frame_mask[..., None]
        queries = self.frame_encoder(rearrange(frames, "b n d -> b d n"))
        dist = (queries[..., :, None] - keys[..., None, :]).pow(2).sum(1)  # (b, n, l)
        logits = -dist / self.config.attention_dim
        logits = logits.masked_fill(~phoneme_mask[:, None, :], -1e4)
        log_attn = logits.log_softmax(-1)
        frame_lengths, phoneme_lengths = frame_mask.sum(-1), phoneme_mask.sum(-1)
        if self.config.prior_scaling > 0:
            prior = torch.zeros_like(log_attn)
            for i, (frames_i, phonemes_i) in enumerate(
                zip(frame_lengths.tolist(), phoneme_lengths.tolist())
            ):
                prior[i, :frames_i, :phonemes_i] = beta_binomial_log_prior(
                    frames_i, phonemes_i, self.config.prior_scaling
                )
            log_attn = (log_attn + prior).masked_fill(~phoneme_mask[:, None, :], -1e4)
            log_attn = log_attn.log_softmax(-1)
        loss = forward_sum_loss(log_attn, frame_lengths, phoneme_lengths)
        durations = torch.zeros_like(phonemes)
        if hard:
            path = monotonic_alignment_search(log_attn, frame_lengths.cpu(), phoneme_lengths.cpu())
            durations = torch.from_numpy(path.sum(1)).to(phonemes.device)
        return AlignerOutput(log_attn=log_attn, loss=loss, durations=durations)
