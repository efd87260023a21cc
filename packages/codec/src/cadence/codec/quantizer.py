"""Residual quantizers for codec latents, built on vector-quantize-pytorch.

One module, :class:`ResidualQuantizer`, hides the three quantizers vector-quantize-pytorch
offers for codecs behind one shape contract, so a codec never branches on the kind:

- ``"rvq"``: ``ResidualVQ`` (SoundStream, Zeghidour et al. 2021, Algorithm 1) with k-means
  initialisation, EMA codebooks, dead-code replacement and quantizer dropout;
- ``"grouped_rvq"``: ``GroupedResidualVQ`` (HiFi-Codec), one RVQ per slice of the latent;
- ``"fsq"``: ``ResidualFSQ`` (finite scalar quantization, Mentzer et al. 2023): no codebook
  to learn, so no k-means, no EMA and no commitment loss.

Codes are ``(b, n, q)`` long in ``[0, codebook_size)``. For grouped RVQ the last axis holds
``levels * groups`` codes ordered level-major (``(q g)``), so the first ``k * groups``
columns are the first ``k`` levels of every group and a prefix is still a coarser code.
"""

# b batch | n frames | q quantizer levels | g groups | d latent dim

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn
from vector_quantize_pytorch import GroupedResidualVQ, ResidualFSQ, ResidualVQ

from cadence.core.config import Config, ConfigError
from cadence.core.validation import IdRangeError, check_ids

__all__ = [
    "CodeRangeError",
    "QuantizedResult",
    "QuantizerConfig",
    "QuantizerKind",
    "ResidualQuantizer",
    "check_code_values",
]

QuantizerKind = Literal["rvq", "grouped_rvq", "fsq"]


class CodeRangeError(IdRangeError):
    """Codes given to a decoder are malformed: wrong rank, out of range, too many levels."""


def check_code_values(
    codes: Tensor, codebook_size: int, *, lengths: Tensor | None = None
) -> Tensor:
    """Refuse codes that are not ``(b, n, q)`` integers in ``[0, codebook_size)``.

    Only the real frames (``lengths`` ``(b,)`` per item, default all) are range-checked;
    padding may hold anything. Raises :class:`CodeRangeError`; returns the codes as long.
    """
    if isinstance(codes, Tensor) and (
        codes.is_floating_point() or codes.is_complex() or codes.dtype == torch.bool
    ):
        raise CodeRangeError(
            f"codes must be integers (torch.long), got dtype {codes.dtype}; use codes.long()"
        )
    return check_ids(
        codes,
        codebook_size,
        name="codes",
        ndim=3,
        lengths=lengths,
        hint=(
            f"valid codes lie in [0, {codebook_size}); were they made by another codec or with "
            "another codebook_size?"
        ),
        error=CodeRangeError,
    )


@dataclass(frozen=True, kw_only=True)
class QuantizerConfig(Config):
    """A residual quantizer over codec latents; see the module docstring.

    Attributes:
        kind: ``"rvq"``, ``"grouped_rvq"`` or ``"fsq"``.
        num_quantizers: residual levels per group.
        codebook_size: entries per codebook (RVQ kinds; FSQ derives it from ``fsq_levels``).
        codebook_dim: project to this width before the codebooks (RVQ kinds); None = the
            latent width.
        groups: latent slices, each with its own RVQ (``"grouped_rvq"`` only); codes then
            have ``num_quantizers * groups`` columns.
        fsq_levels: levels per FSQ dimension (``"fsq"`` only); the codebook size is their product.
        kmeans_init: initialise each codebook with k-means on its first training batch.
        kmeans_iters: k-means iterations for that initialisation.
        ema_decay: decay of the EMA codebook update (SoundStream and EnCodec: 0.99).
        threshold_ema_dead_code: codes whose EMA usage falls below this are replaced by
            random vectors of the current batch (0 disables replacement).
        commitment_weight: weight of ``||x - sg(q)||^2`` in ``commit_loss``.
        quantize_dropout: in training, keep a random number of levels per batch
            (SoundStream sec. 3.3, bitrate scalability).
        quantize_dropout_cutoff_index: the fewest levels quantizer dropout keeps, minus one.
        rotation_trick: gradients through VQ by the rotation trick (Fifty et al. 2024)
            instead of the plain straight-through estimator.
    """

    kind: QuantizerKind = "rvq"
    num_quantizers: int = 8
    codebook_size: int = 1024
    codebook_dim: int | None = None
    groups: int = 1
    fsq_levels: tuple[int, ...] = (8, 5, 5, 5)
    kmeans_init: bool = True
    kmeans_iters: int = 10
    ema_decay: float = 0.99
    threshold_ema_dead_code: float = 2.0
    commitment_weight: float = 1.0
    quantize_dropout: bool = True
    quantize_dropout_cutoff_index: int = 0
    rotation_trick: bool = True

    def __post_init__(self) -> None:
        if self.num_quantizers < 1:
            raise ConfigError(
                f"QuantizerConfig.num_quantizers must be >= 1, got {self.num_quantizers}"
            )
        if not 0 <= self.quantize_dropout_cutoff_index < self.num_quantizers:
            raise ConfigError(
                f"QuantizerConfig.quantize_dropout_cutoff_index must be in [0, {self.num_quantizers}), "
                f"got {self.quantize_dropout_cutoff_index}"
            )
        if self.kind != "grouped_rvq" and self.groups != 1:
            raise ConfigError(
                f"groups={self.groups} > 1 needs kind='grouped_rvq', got kind={self.kind!r}"
            )
        if self.groups < 1:
            raise ConfigError(f"QuantizerConfig.groups must be >= 1, got {self.groups}")
        if self.kind == "fsq" and (
            not self.fsq_levels or any(level < 2 for level in self.fsq_levels)
        ):
            raise ConfigError(
                f"QuantizerConfig.fsq_levels must be >= 2 each, got {self.fsq_levels}"
            )
        if self.kind != "fsq" and self.codebook_size < 2:
            raise ConfigError(
                f"QuantizerConfig.codebook_size must be >= 2, got {self.codebook_size}"
            )


@dataclass
class QuantizedResult:
    """What quantization returns.

    Attributes:
        quantized: ``(b, n, d)`` quantized latents (straight-through in training).
        codes: ``(b, n, q)`` long; in training, levels removed by quantizer dropout are -1.
        commit_loss: scalar commitment loss summed over levels (0 for FSQ and in eval mode).
    """

    quantized: Tensor
    codes: Tensor
    commit_loss: Tensor


class ResidualQuantizer(nn.Module):
    """A residual quantizer over ``(b, n, d)`` latents; see the module docstring.

    Args:
        config: the quantizer.
        dim: latent width ``d`` (for grouped RVQ, a multiple of ``config.groups``).
    """

    def __init__(self, config: QuantizerConfig, *, dim: int):
        super().__init__()
        if config.kind == "grouped_rvq" and dim % config.groups:
            raise ConfigError(f"groups ({config.groups}) must divide the latent dim ({dim})")
        self.config = c = config
        self.dim = dim
        self.kind = c.kind
        self.levels = c.num_quantizers
        self.groups = c.groups
        dropout = dict(
            quantize_dropout=c.quantize_dropout,
            quantize_dropout_cutoff_index=c.quantize_dropout_cutoff_index,
        )
        if c.kind == "fsq":
            self.codebook_size = math.prod(c.fsq_levels)
            self.quantizer: Any = ResidualFSQ(  # vector-quantize-pytorch is untyped
                dim=dim, levels=list(c.fsq_levels), num_quantizers=c.num_quantizers, **dropout
            )
            return
        self.codebook_size = c.codebook_size
        vq = dict(
            num_quantizers=c.num_quantizers,
            codebook_size=c.codebook_size,
            codebook_dim=c.codebook_dim,
            kmeans_init=c.kmeans_init,
            kmeans_iters=c.kmeans_iters,
            decay=c.ema_decay,
            threshold_ema_dead_code=c.threshold_ema_dead_code,
            commitment_weight=c.commitment_weight,
            rotation_trick=c.rotation_trick,
            **dropout,
        )
        if c.kind == "rvq":
            self.quantizer = ResidualVQ(dim=dim, **vq)
        else:
            self.quantizer = GroupedResidualVQ(dim=dim, groups=c.groups, **vq)

    @property
    def num_quantizers(self) -> int:
        """Columns of a full code: levels times groups."""
        return self.levels * self.groups

    def forward(self, latents: Tensor) -> QuantizedResult:
        """Quantize ``(b, n, d)`` latents; in training this also updates the codebooks."""
        with nullcontext() if self.training else self._no_lazy_init():
            return self._quantize(latents)

    def _quantize(self, latents: Tensor) -> QuantizedResult:
        if self.kind == "fsq":
            quantized, codes = self.quantizer(latents)
            commit = latents.new_zeros(())
        else:
            quantized, codes, losses = self.quantizer(latents)
            commit = losses.sum()
            if self.kind == "grouped_rvq":
                codes = rearrange(codes, "g b n q -> b n (q g)")
        return QuantizedResult(quantized=quantized, codes=codes.long(), commit_loss=commit)

    @contextmanager
    def _no_lazy_init(self) -> Iterator[None]:
        # vector-quantize-pytorch fits a codebook by k-means on the first batch it sees, in
        # any mode. Outside training, a level that never trained (e.g. always dropped) must
        # stay as it is (zeros under k-means init, so it adds nothing) rather than be fitted
        # to whatever is being encoded, which would make encoding change the model.
        pending: list[Any] = [
            m
            for m in self.modules()
            if isinstance(getattr(m, "initted", None), Tensor) and not bool(m.initted)
        ]
        for m in pending:
            m.initted.fill_(True)
        try:
            yield
        finally:
            for m in pending:
                m.initted.fill_(False)

    @contextmanager
    def _frozen(self) -> Iterator[None]:
        # Encoding for inference must not move EMA codebooks, run k-means or drop levels,
        # whatever mode the surrounding model is in.
        was_training = self.training
        self.eval()
        try:
            yield
        finally:
            self.train(was_training)

    def encode(self, latents: Tensor, num_quantizers: int | None = None) -> Tensor:
        """``(b, n, d)`` latents -> ``(b, n, q)`` long codes (the first ``num_quantizers`` columns)."""
        q = self._check_levels(num_quantizers)
        with self._frozen():
            codes = self(latents).codes
        return codes[..., :q]

    def decode(self, codes: Tensor) -> Tensor:
        """``(b, n, q')`` codes, ``q' <= num_quantizers`` -> ``(b, n, d)`` quantized latents.

        Missing finer levels contribute nothing (as after quantizer dropout).
        """
        self.check_codes(codes)
        pad = self.num_quantizers - codes.shape[-1]
        # -1 marks an absent level; vector-quantize-pytorch masks those codes to zero.
        full = F.pad(codes.long(), (0, pad), value=-1)
        if self.kind == "grouped_rvq":
            full = rearrange(full, "b n (q g) -> g b n q", g=self.groups)
        return self._output_from_indices(full)

    def _output_from_indices(self, indices: Tensor) -> Tensor:
        if self.kind == "grouped_rvq":
            outs = [
                self._rvq_output(rvq, chunk) for rvq, chunk in zip(self.quantizer.rvqs, indices)
            ]
            return torch.cat(outs, dim=-1)
        return self._rvq_output(self.quantizer, indices)

    @staticmethod
    def _rvq_output(rvq: Any, indices: Tensor) -> Tensor:
        # get_codes_from_indices masks -1 entries; it only accepts fewer columns than levels
        # when quantize dropout is on, so we always hand it a full-width, -1-padded code.
        codes = rvq.get_codes_from_indices(indices)  # (q, b, n, d')
        return rvq.project_out(codes.sum(0))

    def _check_levels(self, num_quantizers: int | None) -> int:
        if num_quantizers is None:
            return self.num_quantizers
        if not 1 <= num_quantizers <= self.num_quantizers:
            raise CodeRangeError(
                f"asked for {num_quantizers} quantizers but this model has "
                f"{self.num_quantizers}; use 1..{self.num_quantizers}"
            )
        if num_quantizers % self.groups:
            raise CodeRangeError(
                f"grouped RVQ codes come in whole levels of {self.groups} groups; "
                f"ask for a multiple of {self.groups} quantizers, got {num_quantizers}"
            )
        return num_quantizers

    def check_codes(self, codes: Tensor, lengths: Tensor | None = None) -> None:
        """Raise :class:`CodeRangeError` unless ``codes`` is a valid ``(b, n, q')`` code.

        ``lengths`` ``(b,)``: real frames per item; only those are range-checked.
        """
        check_code_values(codes, self.codebook_size, lengths=lengths)
        self._check_levels(codes.shape[-1])
