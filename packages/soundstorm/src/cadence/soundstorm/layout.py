"""What :meth:`SoundStorm.generate` decodes: its checked request and the rows it lays out.

A request (semantic tokens, an optional acoustic prompt, the sampling options) is checked
once, before any network pass (:func:`check_plan`, :func:`check_request`), and laid out as
rows ``[prompt | new frames | padding]`` with the semantic token of every frame
(:func:`lay_out`). Lengths stay on the host, so the decoding loop never waits on the device.
"""

# b batch | s semantic frames | p prompt frames | n new codec frames | f frames of a row
# (p + n, padded) | q quantizer levels

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from cadence.core.data import lengths_to_mask
from cadence.core.sampling import MaskSchedule
from cadence.core.validation import check_ids, check_lengths

from .config import SoundStormConfig
from .masking import align_semantic, aligned_length

Sampler = Literal["maskgit", "diffusion"]

__all__ = [
    "DecodePlan",
    "DecodeRequest",
    "Layout",
    "check_plan",
    "check_request",
    "default_iterations",
    "lay_out",
]


def default_iterations(num_quantizers: int, first: int = 16) -> tuple[int, ...]:
    """The paper's plan: ``first`` iterations on level 1, one greedy pass on each finer level."""
    return (first,) + (1,) * (num_quantizers - 1)


@dataclass(frozen=True)
class DecodePlan:
    """The sampling options of one call: passes per level, temperatures, guidance, schedule,
    and the sampler of levels with several passes (MaskGIT or absorbing-state diffusion)."""

    iterations: tuple[int, ...]
    temperature: float
    choice_temperature: float
    guidance_scale: tuple[float, ...]  # one per level
    schedule: MaskSchedule
    sampler: Sampler = "maskgit"

    @property
    def guided(self) -> bool:
        """Whether the unconditional rows run on some level (a scale other than 1)."""
        return any(scale != 1.0 for scale in self.guidance_scale)


@dataclass(frozen=True)
class DecodeRequest:
    """Checked inputs; ids are ``torch.long``, lengths ``(b,)`` on the host.

    Attributes:
        semantic: ``(b, s)`` semantic tokens of the frames to generate.
        semantic_lengths: ``(b,)`` real tokens per row.
        lengths: ``(b,)`` frames to generate per row.
        prompt_codes: ``(b, p, q)`` prompt codes on the device of ``semantic`` (``p`` may be 0).
        prompt_lengths: ``(b,)`` real prompt frames per row.
        prompt_semantic: ``(b, s_p)`` semantic tokens of the prompt, or None.
        prompt_semantic_lengths: ``(b,)`` their real tokens per row, or None.
    """

    semantic: Tensor
    semantic_lengths: Tensor
    lengths: Tensor
    prompt_codes: Tensor
    prompt_lengths: Tensor
    prompt_semantic: Tensor | None
    prompt_semantic_lengths: Tensor | None


@dataclass(frozen=True)
class Layout:
    """The rows ``[prompt | new | pad]`` decoded by one call.

    Attributes:
        codes: ``(b, f, q)`` long, the prompt's codes and the mask id everywhere else
            (generate fills it in place).
        semantic: ``(b, f)`` long, the semantic token of every frame (the "no condition"
            token on padding, and on prompt frames without prompt semantic tokens).
        is_real: ``(b, f)`` bool, prompt and new frames.
        is_new: ``(b, f)`` bool, the frames to generate.
        lengths: ``(b,)`` host, new frames per row.
        prompt_lengths: ``(b,)`` host, prompt frames per row.
        context: ``(b, m)`` long, with cross-attention conditioning: the semantic tokens of
            each row on the semantic grid, the prompt's span (its tokens, or "no condition")
            then the new tokens; None with aligned conditioning.
        context_mask: ``(b, m)`` bool, the real entries of ``context``.
    """

    codes: Tensor
    semantic: Tensor
    is_real: Tensor
    is_new: Tensor
    lengths: Tensor
    prompt_lengths: Tensor
    context: Tensor | None = None
    context_mask: Tensor | None = None


def check_plan(
    num_quantizers: int,
    iterations: Sequence[int] | None,
    temperature: float,
    choice_temperature: float,
    guidance_scale: float | Sequence[float],
    schedule: MaskSchedule,
    sampler: Sampler = "maskgit",
) -> DecodePlan:
    """The sampling options, checked; ``iterations=None`` is :func:`default_iterations`, and
    one ``guidance_scale`` is the scale of every level."""
    q = num_quantizers
    plan = default_iterations(q) if iterations is None else tuple(int(s) for s in iterations)
    if len(plan) != q or min(plan) < 1:
        raise ValueError(
            f"iterations must give >= 1 pass for each of the {q} levels, got {iterations}; "
            f"e.g. {default_iterations(q)}"
        )
    if temperature < 0 or choice_temperature < 0:
        raise ValueError(
            f"temperature and choice_temperature must be >= 0, got {temperature} and {choice_temperature}"
        )
    if isinstance(guidance_scale, (int, float)):
        scales = (float(guidance_scale),) * q
    else:
        scales = tuple(float(s) for s in guidance_scale)
        if len(scales) != q:
            raise ValueError(
                f"guidance_scale must be one number or one per level ({q}), got {guidance_scale}; "
                f"e.g. {(2.0,) + (1.0,) * (q - 1)} guides the coarsest level only"
            )
    if min(scales) < 0:
        raise ValueError(f"guidance_scale must be >= 0 (1 = no guidance), got {guidance_scale}")
    if sampler not in ("maskgit", "diffusion"):
        raise ValueError(f"sampler must be 'maskgit' or 'diffusion', got {sampler!r}")
    return DecodePlan(plan, temperature, choice_temperature, scales, schedule, sampler)


def check_request(
    config: SoundStormConfig,
    semantic: Tensor,
    *,
    semantic_lengths: Tensor | None,
    num_frames: int | Tensor | None,
    prompt_codes: Tensor | None,
    prompt_lengths: Tensor | None,
    prompt_semantic: Tensor | None,
    prompt_semantic_lengths: Tensor | None,
) -> DecodeRequest:
    """Check the inputs of :meth:`SoundStorm.generate` against the model's config."""
    semantic, semantic_lengths = _check_tokens(
        semantic, semantic_lengths, config.semantic_codebook_size, "semantic"
    )
    b = semantic.shape[0]
    lengths = _target_lengths(config, num_frames, semantic_lengths, b)
    prompt_codes, prompt_lengths = _check_prompt(
        config, prompt_codes, prompt_lengths, b, semantic.device
    )
    if prompt_semantic is not None:
        prompt_semantic, prompt_semantic_lengths = _check_tokens(
            prompt_semantic,
            prompt_semantic_lengths,
            config.semantic_codebook_size,
            "prompt_semantic",
        )
        if prompt_semantic.shape[0] != b:
            raise ValueError(f"prompt_semantic has {prompt_semantic.shape[0]} rows, semantic {b}")
    return DecodeRequest(
        semantic=semantic,
        semantic_lengths=semantic_lengths,
        lengths=lengths,
        prompt_codes=prompt_codes,
        prompt_lengths=prompt_lengths,
        prompt_semantic=prompt_semantic,
        prompt_semantic_lengths=prompt_semantic_lengths,
    )


def lay_out(config: SoundStormConfig, request: DecodeRequest) -> Layout:
    """Rows ``[prompt | new | pad]``: the prompt's codes, and a semantic token per frame."""
    device = request.semantic.device
    b, p_max = request.prompt_codes.shape[:2]
    prompt_lengths, lengths = request.prompt_lengths, request.lengths
    totals = prompt_lengths + lengths
    n_max, total_max = int(lengths.max()), int(totals.max())
    is_prompt = lengths_to_mask(prompt_lengths, total_max).to(device)
    is_real = lengths_to_mask(totals, total_max).to(device)
    is_new = is_real & ~is_prompt

    codes = torch.full(
        (b, total_max, config.num_quantizers), config.codebook_size, device=device, dtype=torch.long
    )
    if p_max > 0:
        window = min(p_max, total_max)
        codes[:, :window] = torch.where(
            is_prompt[:, :window, None], request.prompt_codes[:, :window], codes[:, :window]
        )
    context, context_mask = (
        _context_semantic(config, request)
        if config.semantic_conditioning == "cross_attention"
        else (None, None)
    )
    return Layout(
        codes=codes,
        semantic=_frame_semantic(config, request, is_prompt, is_real, n_max),
        is_real=is_real,
        is_new=is_new,
        lengths=lengths,
        prompt_lengths=prompt_lengths,
        context=context,
        context_mask=context_mask,
    )


def _context_semantic(config: SoundStormConfig, request: DecodeRequest) -> tuple[Tensor, Tensor]:
    """``(b, m)`` tokens and mask on the semantic grid of each row: the prompt's span, then the new.

    The prompt of ``p`` frames spans ``round(p * semantic_rate / frame_rate)`` tokens: its own
    semantic tokens where given (the last one repeated if they fall short), else "no
    condition"; the new tokens follow, so token ``j`` of a row lies at ``j / semantic_rate``.
    """
    device = request.semantic.device
    null = config.semantic_codebook_size
    rows = []
    for i in range(request.semantic.shape[0]):
        p = int(request.prompt_lengths[i])
        span = round(p * config.semantic_frame_rate / config.frame_rate)
        prompt = torch.full((span,), null, dtype=torch.long, device=device)
        if request.prompt_semantic is not None and span > 0:
            given = int(request.prompt_semantic_lengths[i])  # type: ignore[index]  # set with prompt_semantic
            index = torch.arange(span, device=device).clamp(max=max(given - 1, 0))
            prompt = request.prompt_semantic[i, :given][index] if given else prompt
        rows.append(torch.cat([prompt, request.semantic[i, : int(request.semantic_lengths[i])]]))
    lengths = torch.tensor([row.numel() for row in rows])
    context = torch.full((len(rows), int(lengths.max())), null, dtype=torch.long, device=device)
    for i, row in enumerate(rows):
        context[i, : row.numel()] = row
    return context, lengths_to_mask(lengths, context.shape[1]).to(device)


def _frame_semantic(
    config: SoundStormConfig, request: DecodeRequest, is_prompt: Tensor, is_real: Tensor, n_max: int
) -> Tensor:
    """``(b, f)`` semantic tokens: the prompt's on prompt frames, the new ones after them."""
    device = request.semantic.device
    b, p_max = request.prompt_codes.shape[:2]
    frames = torch.arange(is_real.shape[1])
    null = config.semantic_codebook_size

    def align(tokens: Tensor, num_frames: int, token_lengths: Tensor) -> Tensor:
        return align_semantic(
            tokens,
            num_frames,
            frame_rate=config.frame_rate,
            semantic_rate=config.semantic_frame_rate,
            semantic_lengths=token_lengths.to(device),
        )

    new_semantic = align(request.semantic, n_max, request.semantic_lengths)
    if request.prompt_semantic is not None and p_max > 0:
        prompt_aligned = align(request.prompt_semantic, p_max, request.prompt_semantic_lengths)  # type: ignore[arg-type]  # set with prompt_semantic
    else:  # a bare recording as the prompt: its frames get "no condition"
        prompt_aligned = torch.full((b, max(p_max, 1)), null, device=device, dtype=torch.long)
    # frame i of a row is prompt frame i, or new frame i - prompt_length
    new_index = (frames[None] - request.prompt_lengths[:, None]).clamp(0, max(n_max - 1, 0))
    prompt_index = frames[None].clamp(max=max(p_max - 1, 0)).expand(b, -1)
    return torch.where(
        is_prompt,
        prompt_aligned.gather(1, prompt_index.to(device)),
        new_semantic.gather(1, new_index.to(device)),
    ).masked_fill(~is_real, null)


def _check_tokens(
    tokens: Tensor, lengths: Tensor | None, vocab: int, name: str
) -> tuple[Tensor, Tensor]:
    """``(b, s)`` ids in ``[0, vocab)`` on the real frames; ``(b,)`` lengths in ``[1, s]``."""
    if isinstance(tokens, Tensor) and tokens.ndim == 2:
        if tokens.shape[1] == 0:
            raise ValueError(
                f"{name} must be a non-empty (b, s) tensor, got shape {tuple(tokens.shape)}"
            )
        lengths = check_lengths(lengths, *tokens.shape, name=f"{name}_lengths", min_length=1)
    # (check_ids refuses any other rank before it reads the lengths)
    tokens = check_ids(
        tokens,
        vocab,
        name=name,
        ndim=2,
        lengths=lengths,
        hint="the model's semantic vocabulary is SoundStormConfig.semantic_codebook_size; "
        "were they made with another tokenizer?",
    )
    return tokens, lengths  # type: ignore[return-value]  # set: check_ids refused other ranks


def _target_lengths(
    config: SoundStormConfig, num_frames: int | Tensor | None, semantic_lengths: Tensor, b: int
) -> Tensor:
    """``(b,)`` frames to generate: ``num_frames``, or as many as the semantic tokens span."""
    if num_frames is None:
        lengths = torch.tensor(
            [
                max(1, aligned_length(int(s), config.frame_rate, config.semantic_frame_rate))
                for s in semantic_lengths
            ]
        )
    elif isinstance(num_frames, int):
        lengths = torch.full((b,), num_frames, dtype=torch.long)
    else:
        lengths = torch.as_tensor(num_frames).detach().to("cpu", torch.long).reshape(-1)
    if lengths.shape != (b,) or int(lengths.min()) < 1:
        raise ValueError(
            f"num_frames must be >= 1 for each of the {b} rows, got {lengths.tolist()}"
        )
    return lengths


def _check_prompt(
    config: SoundStormConfig, codes: Tensor | None, lengths: Tensor | None, b: int, device
) -> tuple[Tensor, Tensor]:
    """``(b, p, q)`` prompt codes on ``device`` and ``(b,)`` host lengths in ``[0, p]``."""
    q = config.num_quantizers
    if codes is None:
        if lengths is not None:
            raise ValueError("prompt_lengths given without prompt_codes")
        empty = torch.zeros((b, 0, q), dtype=torch.long, device=device)
        return empty, torch.zeros(b, dtype=torch.long)
    if (
        not isinstance(codes, Tensor)
        or codes.ndim != 3
        or codes.shape[0] != b
        or codes.shape[2] != q
    ):
        shape = tuple(codes.shape) if isinstance(codes, Tensor) else type(codes).__name__
        raise ValueError(
            f"prompt_codes must be (b, p, q) = ({b}, p, {q}) with codes of all {q} levels, "
            f"got {shape}"
        )
    lengths = check_lengths(lengths, b, codes.shape[1], name="prompt_lengths")
    codes = check_ids(
        codes,
        config.codebook_size,
        name="prompt_codes",
        lengths=lengths,
        hint="the model's codebook is SoundStormConfig.codebook_size; were they made with "
        "another codec?",
    )
    return codes.to(device), lengths
