"""HierarchicalConditionalFlowMatcher: discrete semantic tokens -> continuous codec latents.

SpeechGPT-Gen's hierarchical variant (HuBERT tokens -> DAC latents): tokens are embedded,
the embeddings are resampled to the latent frame rate, and a
:class:`~cadence.flowmatching.ConditionalFlowMatcher` generates the latents.

**Frame-rate mapping.** Latent frame ``j`` covers ``[j, j + 1) / latent_frame_rate``
seconds; it takes the embedding of the token whose frame holds its centre,
``i = floor((j + 1/2) * semantic_frame_rate / latent_frame_rate)``, clipped to the item's
last token (nearest-frame resampling: exact repetition for integer ratios such as 25 -> 50
Hz, and no invented values for others such as 50 -> 75 Hz). ``s`` tokens give
``round(s * latent_frame_rate / semantic_frame_rate)`` latent frames unless the caller
states how many (training does: the latents' own length).

Unlike the public SpeechGPT-Gen code, generation works with and without an acoustic
prompt, and items of one batch may differ in length (masks, True = real frame).
"""

# b batch | s semantic frames (tokens) | n latent frames | d latent dim | e semantic dim

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from cadence.core.checkpoint import PretrainedMixin
from cadence.core.config import ConfigError
from cadence.core.data import lengths_to_mask
from cadence.core.validation import check_ids

from .config import HierarchicalFlowMatcherConfig
from .model import ConditionalFlowMatcher, FlowMatchingDraw, FlowPrediction, _check_mask
from .solvers import ODEMethod

__all__ = ["Generation", "HierarchicalConditionalFlowMatcher", "pack_prefix"]


@dataclass
class Generation:
    """Generated latents and which of their frames are real.

    Attributes:
        latents: ``(b, n, d)`` raw codec latents, 0 at padded frames.
        mask: ``(b, n)`` True for real frames.
    """

    latents: Tensor
    mask: Tensor

    @property
    def lengths(self) -> Tensor:
        return self.mask.sum(1)


def pack_prefix(
    prefix: Tensor, prefix_mask: Tensor, rest: Tensor, rest_mask: Tensor
) -> tuple[Tensor, Tensor, Tensor]:
    """Per item, ``prefix[:p_i]`` followed by ``rest[:r_i]``, padded at the end.

    Args:
        prefix: ``(b, m, ...)``; prefix_mask: ``(b, m)`` True for real frames.
        rest: ``(b, n, ...)``; rest_mask: ``(b, n)``.

    Returns:
        ``(packed (b, L, ...), mask (b, L), prefix_lengths (b,))`` with ``L = max(p_i + r_i)``.
    """
    p, r = prefix_mask.sum(1), rest_mask.sum(1)
    total = p + r
    b, length = prefix.shape[0], int(total.max()) if total.numel() else 0
    out = prefix.new_zeros(b, length, *prefix.shape[2:])
    for i in range(b):
        pi, ri = int(p[i]), int(r[i])
        # real frames are assumed to come first (padding at the end), as everywhere in Cadence
        out[i, :pi] = prefix[i, :pi]
        out[i, pi : pi + ri] = rest[i, :ri]
    return out, lengths_to_mask(total, length), p


class HierarchicalConditionalFlowMatcher(PretrainedMixin, nn.Module):
    """Semantic tokens (any ``SemanticTokenizer``) -> latents (any ``LatentCodec``).

    Args:
        config: the :class:`HierarchicalFlowMatcherConfig`.
    """

    config_class = HierarchicalFlowMatcherConfig

    def __init__(self, config: HierarchicalFlowMatcherConfig):
        super().__init__()
        self.config = config
        self.semantic_embedding = nn.Embedding(config.codebook_size, config.flow.semantic_dim)
        self.flow = ConditionalFlowMatcher(config.flow)

    # -- compatibility ---------------------------------------------------------------

    def check_compatible(self, *, tokenizer=None, codec=None) -> None:
        """Raise ``ConfigError`` if a tokenizer / latent codec does not fit this model."""
        cfg = self.config
        problems = []
        if tokenizer is not None:
            if int(tokenizer.codebook_size) != cfg.codebook_size:
                problems.append(
                    f"tokenizer codebook_size {tokenizer.codebook_size} != {cfg.codebook_size}"
                )
            if not _close(float(tokenizer.frame_rate), cfg.semantic_frame_rate):
                problems.append(
                    f"tokenizer frame_rate {tokenizer.frame_rate} != {cfg.semantic_frame_rate}"
                )
        if codec is not None:
            if int(codec.latent_dim) != cfg.flow.latent_dim:
                problems.append(f"codec latent_dim {codec.latent_dim} != {cfg.flow.latent_dim}")
            if not _close(float(codec.frame_rate), cfg.latent_frame_rate):
                problems.append(f"codec frame_rate {codec.frame_rate} != {cfg.latent_frame_rate}")
        if problems:
            raise ConfigError(
                "this HierarchicalConditionalFlowMatcher was configured for other models: "
                + "; ".join(problems)
                + "; build the config from the tokenizer and codec you use"
            )

    # -- frame rates -------------------------------------------------------------------

    @property
    def frame_ratio(self) -> float:
        """Latent frames per semantic frame."""
        return self.config.latent_frame_rate / self.config.semantic_frame_rate

    def num_latent_frames(self, num_tokens: Tensor) -> Tensor:
        """Latent frames generated for ``num_tokens`` ``(b,)`` tokens: ``round(s * ratio)``."""
        return torch.round(num_tokens.double() * self.frame_ratio).long()

    def tokens_to_frames(
        self,
        tokens: Tensor,
        tokens_mask: Tensor | None = None,
        num_frames: Tensor | None = None,
    ) -> tuple[Tensor, Tensor]:
        """Embed tokens and resample them to the latent frame rate (see the module docstring).

        Args:
            tokens: ``(b, s)`` long tokens.
            tokens_mask: ``(b, s)`` True for real tokens.
            num_frames: ``(b,)`` latent frames per item; default ``round(s_i * ratio)``.

        Returns:
            ``(semantic (b, n, e), mask (b, n))``.
        """
        tokens, tokens_mask = self._check_tokens(tokens, tokens_mask)
        b = tokens.shape[0]
        real = tokens_mask.sum(1)
        if bool((real == 0).any()):
            raise ValueError("every item needs at least one token (an item has none)")
        if num_frames is None:
            num_frames = self.num_latent_frames(real)
        num_frames = num_frames.to(tokens.device).long()
        n = int(num_frames.max())
        j = torch.arange(n, device=tokens.device, dtype=torch.float64)
        index = torch.floor((j + 0.5) / self.frame_ratio).long()[None].expand(b, n)
        index = torch.minimum(index, (real - 1)[:, None])
        safe = tokens.masked_fill(~tokens_mask, 0)
        semantic = self.semantic_embedding(torch.gather(safe, 1, index))
        mask = lengths_to_mask(num_frames, n)
        return semantic * mask[..., None], mask

    # -- training -------------------------------------------------------------------

    def forward(
        self,
        tokens: Tensor,
        latents: Tensor,
        tokens_mask: Tensor | None = None,
        latents_mask: Tensor | None = None,
        *,
        draw: FlowMatchingDraw,
    ) -> FlowPrediction:
        """Training predictions: tokens ``(b, s)`` at the semantic rate, latents ``(b, n, d)``.

        Checks that tokens and latents cover about the same duration (a sign that the frame
        rates in the config are those of the tokenizer and codec that made the data). ``draw``
        (from :meth:`FlowMatchingTrainStep.draw
        <cadence.flowmatching.FlowMatchingTrainStep.draw>`) is at the latent rate; see
        :meth:`ConditionalFlowMatcher.forward`.
        """
        b, n = latents.shape[:2]
        latents_mask = _check_mask(latents_mask, b, n, latents.device, "latents_mask")
        lengths = latents_mask.sum(1)
        s_mask = _check_mask(tokens_mask, *tokens.shape[:2], tokens.device, "tokens_mask")  # type: ignore[call-arg]  # (b, s)
        expected = self.num_latent_frames(s_mask.sum(1))
        slack = max(2.0, 2 * self.frame_ratio)
        if bool(((expected - lengths).abs() > slack).any()):
            worst = int((expected - lengths).abs().argmax())
            raise ValueError(
                f"item {worst}: {int(s_mask.sum(1)[worst])} tokens at "
                f"{self.config.semantic_frame_rate} Hz but {int(lengths[worst])} latent frames at "
                f"{self.config.latent_frame_rate} Hz; set semantic_frame_rate / latent_frame_rate "
                "to the tokenizer's and codec's frame_rate"
            )
        semantic, _ = self.tokens_to_frames(tokens, s_mask, num_frames=lengths)
        semantic = semantic[:, :n]
        if semantic.shape[1] < n:  # every item shorter than the padded latents
            semantic = torch.nn.functional.pad(semantic, (0, 0, 0, n - semantic.shape[1]))
        return self.flow(latents, semantic, mask=latents_mask, draw=draw)

    # -- sampling -----------------------------------------------------------------------

    @torch.inference_mode()
    def sample(
        self,
        tokens: Tensor,
        tokens_mask: Tensor | None = None,
        *,
        num_frames: Tensor | None = None,
        context: Tensor | None = None,
        context_mask: Tensor | None = None,
        steps: int = 8,
        method: ODEMethod = "euler",
        guidance_scale: float = 1.0,
        temperature: float = 1.0,
        noise: Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> Generation:
        """Latents for every frame of ``tokens``; frames in ``context_mask`` are copied.

        ``context`` ``(b, n, d)`` must then be at the latent rate, ``n`` the number of frames
        generated (``num_frames`` or ``round(s * ratio)``). See
        :meth:`ConditionalFlowMatcher.sample` for the other arguments.
        """
        semantic, mask = self.tokens_to_frames(tokens, tokens_mask, num_frames)
        latents = self.flow.sample(
            semantic,
            mask=mask,
            context=context,
            context_mask=context_mask,
            steps=steps,
            method=method,
            guidance_scale=guidance_scale,
            temperature=temperature,
            noise=noise,
            generator=generator,
        )
        return Generation(latents=latents, mask=mask)

    @torch.inference_mode()
    def generate(
        self,
        tokens: Tensor,
        tokens_mask: Tensor | None = None,
        *,
        prompt_tokens: Tensor | None = None,
        prompt_latents: Tensor | None = None,
        prompt_tokens_mask: Tensor | None = None,
        prompt_latents_mask: Tensor | None = None,
        steps: int = 8,
        method: ODEMethod = "euler",
        guidance_scale: float = 1.0,
        temperature: float = 1.0,
        generator: torch.Generator | None = None,
    ) -> Generation:
        """Latents for ``tokens``, in the voice of an optional acoustic prompt.

        With a prompt (SpeechGPT-Gen's voice conversion / zero-shot TTS), each item is the
        prompt followed by the source: ``[prompt_tokens_i | tokens_i]`` conditions
        ``[prompt_latents_i | generated]``, and only the generated part is returned.

        Args:
            tokens: ``(b, s)`` source semantic tokens; tokens_mask ``(b, s)``.
            prompt_tokens: ``(b, s_p)`` semantic tokens of the prompt audio.
            prompt_latents: ``(b, n_p, d)`` latents of the same prompt audio.
            prompt_tokens_mask, prompt_latents_mask: their masks.
            steps, method, guidance_scale, temperature, generator: as in :meth:`sample`.

        Returns:
            :class:`Generation` of the source part only, ``round(s_i * ratio)`` frames each.
        """
        if (prompt_tokens is None) != (prompt_latents is None):
            raise ValueError(
                "give both prompt_tokens and prompt_latents (tokens and latents of the same "
                "prompt audio), or neither"
            )
        sampling: dict[str, Any] = {
            "steps": steps,
            "method": method,
            "guidance_scale": guidance_scale,
            "temperature": temperature,
            "generator": generator,
        }
        if prompt_tokens is None:
            return self.sample(tokens, tokens_mask, **sampling)
        assert prompt_latents is not None  # given with prompt_tokens (checked above)

        d = self.config.flow.latent_dim
        if prompt_latents.ndim != 3 or prompt_latents.shape[-1] != d:
            raise ValueError(
                f"prompt_latents must be (b, n, {d}), got {tuple(prompt_latents.shape)}"
            )
        if prompt_latents.shape[0] != tokens.shape[0] or prompt_tokens.shape[0] != tokens.shape[0]:
            raise ValueError(
                "prompt_tokens, prompt_latents and tokens must have the same batch size"
            )
        b, n_p = prompt_latents.shape[:2]
        p_mask = _check_mask(prompt_latents_mask, b, n_p, tokens.device, "prompt_latents_mask")
        prompt_semantic, _ = self.tokens_to_frames(
            prompt_tokens, prompt_tokens_mask, num_frames=p_mask.sum(1)
        )
        prompt_semantic = prompt_semantic[:, :n_p]
        source_semantic, source_mask = self.tokens_to_frames(tokens, tokens_mask)
        semantic, mask, prefix = pack_prefix(prompt_semantic, p_mask, source_semantic, source_mask)
        context, _, _ = pack_prefix(
            prompt_latents.to(semantic.dtype),
            p_mask,
            source_semantic.new_zeros(*source_mask.shape, d),
            source_mask,
        )
        context_mask = lengths_to_mask(prefix, mask.shape[1])
        full = self.flow.sample(
            semantic, mask=mask, context=context, context_mask=context_mask, **sampling
        )
        # cut each item's generated part back out
        out = full.new_zeros(b, source_mask.shape[1], d)
        lengths = source_mask.sum(1)
        for i in range(b):
            p, r = int(prefix[i]), int(lengths[i])
            out[i, :r] = full[i, p : p + r]
        return Generation(latents=out, mask=source_mask)

    # -- helpers ----------------------------------------------------------------------

    def _check_tokens(self, tokens: Tensor, tokens_mask: Tensor | None) -> tuple[Tensor, Tensor]:
        """``(b, s)`` integer tokens, in the vocabulary at the real positions, as ``long``;
        and their ``(b, s)`` mask."""
        size = self.config.codebook_size
        if isinstance(tokens, Tensor) and tokens.ndim == 2:
            tokens_mask = _check_mask(tokens_mask, *tokens.shape, tokens.device, "tokens_mask")  # type: ignore[call-arg]  # (b, s)
        # (check_ids refuses any other rank before it reads the mask)
        tokens = check_ids(
            tokens,
            size,
            name="tokens",
            ndim=2,
            mask=tokens_mask,
            hint=f"the model's vocabulary is HierarchicalFlowMatcherConfig.codebook_size={size}; "
            "was this model configured for another tokenizer?",
        )
        return tokens, tokens_mask  # type: ignore[return-value]  # set: check_ids refused other ranks


def _close(a: float, b: float) -> bool:
    return abs(a - b) <= 1e-6 * max(abs(a), abs(b), 1.0)
