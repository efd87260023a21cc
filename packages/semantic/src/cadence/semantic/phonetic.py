"""A CTC phoneme encoder whose hidden states carry phonemes: the source of supervised semantic tokens.

CosyVoice's S3 tokenizer (Du et al. 2024) quantizes the middle of an ASR encoder trained with
a recognition loss, so its tokens follow what is said rather than how it sounds. This is
that recipe at toy scale and offline: core's log-mel :class:`~cadence.core.nn.MelFrontend`
(50 Hz), a Conformer from core, and a linear CTC head (Graves et al. 2006) over blank +
the corpus's stress-stripped phonemes. :class:`~cadence.semantic.PhoneticKMeansTokenizer`
clusters the output of one of its blocks.

Items of a batch are computed as if each ran alone (the front end normalizes over real
frames, padded frames are masked out of attention and convolutions).
"""

# b batch | c channels | t samples | n frames (50 Hz) | d model width | v blank + phonemes

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from cadence.core.checkpoint import PretrainedMixin
from cadence.core.config import Config, ConfigError
from cadence.core.data import lengths_to_mask
from cadence.core.nn import BackboneConfig, MelFrontend, MelFrontendConfig, build_backbone

from .phonemes import corpus_phonemes, strip_stress

__all__ = ["BLANK", "PhoneticEncoder", "PhoneticEncoderConfig", "PhoneticEncoderOutput"]

BLANK = 0


def _default_frontend() -> MelFrontendConfig:
    return MelFrontendConfig(dim=144, n_mels=80)


def _default_backbone() -> BackboneConfig:
    # Conformer-S-like width (Gulati et al. 2020 use dim 144); 6 blocks leave a middle to
    # tokenize (S3 quantizes inside the encoder, not its last layer) and train on a CPU.
    return BackboneConfig(
        kind="conformer", dim=144, depth=6, heads=4, ff_mult=4.0, conv_kernel_size=15, dropout=0.1
    )


@dataclass(frozen=True, kw_only=True)
class PhoneticEncoderConfig(Config):
    """Everything needed to rebuild a :class:`PhoneticEncoder`.

    Attributes:
        phonemes: the CTC vocabulary, stress-stripped symbols, each once. Output ``0`` is the
            blank, output ``i + 1`` is ``phonemes[i]``.
        frontend: log-mel features and the subsampling to 50 Hz; ``frontend.dim`` must equal
            ``backbone.dim``.
        backbone: a ``"conformer"`` or ``"transformer"`` (no condition, no cross-attention).
    """

    phonemes: tuple[str, ...]
    frontend: MelFrontendConfig = field(default_factory=_default_frontend)
    backbone: BackboneConfig = field(default_factory=_default_backbone)

    def __post_init__(self) -> None:
        if not self.phonemes:
            raise ConfigError("PhoneticEncoderConfig.phonemes is empty; give the vocabulary")
        if len(set(self.phonemes)) != len(self.phonemes):
            dup = sorted({p for p in self.phonemes if self.phonemes.count(p) > 1})
            raise ConfigError(f"PhoneticEncoderConfig.phonemes lists {dup} more than once")
        odd = [p for p in self.phonemes if strip_stress([p]) != [p]]
        if odd:
            raise ConfigError(
                f"PhoneticEncoderConfig.phonemes must be stress-stripped, non-empty symbols; "
                f"got {odd}: pass them through strip_stress"
            )
        if self.frontend.dim != self.backbone.dim:
            raise ConfigError(
                f"PhoneticEncoderConfig: frontend.dim {self.frontend.dim} != backbone.dim "
                f"{self.backbone.dim}; the front end feeds the backbone"
            )
        if self.backbone.kind == "uconformer":
            raise ConfigError(
                "PhoneticEncoderConfig.backbone.kind must be 'conformer' or 'transformer': a "
                "uconformer's blocks are joined by skips, so a block's output is no layer to tokenize"
            )
        if self.backbone.cond_dim or self.backbone.cross_attn_dim:
            raise ConfigError("PhoneticEncoderConfig.backbone: set cond_dim=0 and cross_attn_dim=0")

    @property
    def vocab_size(self) -> int:
        """Outputs per frame: the blank and every phoneme."""
        return len(self.phonemes) + 1

    @property
    def dim(self) -> int:
        return self.backbone.dim

    @property
    def depth(self) -> int:
        return self.backbone.depth

    @classmethod
    def tiny(cls, phonemes: Sequence[str], **changes) -> PhoneticEncoderConfig:
        """A small, fast model for tests (learns the toy corpus a little in seconds)."""
        base = cls(
            phonemes=tuple(phonemes),
            frontend=MelFrontendConfig(dim=64, n_mels=40),
            backbone=BackboneConfig(
                kind="conformer", dim=64, depth=3, heads=4, ff_mult=2.0, conv_kernel_size=7
            ),
        )
        return base.replace(**changes) if changes else base

    @classmethod
    def from_corpus(
        cls, manifests: str | os.PathLike | Iterable[str | os.PathLike], **changes
    ) -> PhoneticEncoderConfig:
        """A config whose vocabulary is every stress-stripped phoneme of the manifests (sorted).

        Args:
            manifests: one JSONL manifest or several; each line needs ``"phonemes"``.
            changes: other fields (``frontend=...``, ``backbone=...``).
        """
        try:
            phonemes = corpus_phonemes(manifests)
        except ValueError as err:
            raise ConfigError(str(err)) from None
        return cls(phonemes=phonemes, **changes)


@dataclass
class PhoneticEncoderOutput:
    """What :meth:`PhoneticEncoder.forward` returns.

    Attributes:
        log_probs: ``(b, n, v)`` float32 log-softmax over blank + phonemes.
        frame_lengths: ``(b,)`` real frames per item.
        mask: ``(b, n)`` True = a real frame.
    """

    log_probs: Tensor
    frame_lengths: Tensor
    mask: Tensor


class PhoneticEncoder(PretrainedMixin, nn.Module):
    """Log-mel front end -> Conformer -> CTC head over blank + phonemes; see the module docstring.

    Layers are numbered like HuBERT's ``output_layer``: layer 0 is the front end's output
    (the input of block 1), layer ``L`` the output of block ``L`` (1-based, before the
    backbone's final norm).
    """

    config_class = PhoneticEncoderConfig

    def __init__(self, config: PhoneticEncoderConfig):
        super().__init__()
        self.config = config
        self.frontend = MelFrontend(config.frontend)
        self.backbone = build_backbone(config.backbone)
        self.head = nn.Linear(config.dim, config.vocab_size)
        self._ids = {symbol: i + 1 for i, symbol in enumerate(config.phonemes)}

    @property
    def sample_rate(self) -> int:
        return self.config.frontend.sample_rate

    def frame_lengths(self, lengths: Tensor) -> Tensor:
        """Frames of items with ``lengths`` samples: ``ceil(floor(t / hop_length) / 2)``."""
        return self.frontend.frame_lengths(lengths)

    # -- vocabulary ----------------------------------------------------------------------

    def encode_phonemes(self, phonemes: Sequence[str]) -> list[int]:
        """Symbols (stress marks allowed) -> ids in ``[1, vocab_size)``; unknown ones raise ValueError."""
        symbols = strip_stress(phonemes)
        unknown = sorted({s for s in symbols if s not in self._ids})
        if unknown:
            raise ValueError(
                f"phonemes {unknown} are not in the encoder's vocabulary of {len(self._ids)} "
                "symbols; build the config from a corpus that contains them "
                "(PhoneticEncoderConfig.from_corpus)"
            )
        return [self._ids[s] for s in symbols]

    def decode_ids(self, ids: Iterable[int]) -> list[str]:
        """Ids -> symbols (the blank, id 0, is dropped)."""
        return [self.config.phonemes[i - 1] for i in ids if i != BLANK]

    # -- network -------------------------------------------------------------------------

    def hidden_states(
        self, audio: Tensor, lengths: Tensor | None = None, *, layer: int
    ) -> tuple[Tensor, Tensor]:
        """The output of block ``layer`` (0 = the front end's), running only blocks ``1..layer``.

        Args:
            audio: ``(b, 1, t)`` mono at ``sample_rate``, in [-1, 1].
            lengths: ``(b,)`` real samples per item (None: all ``t``).
            layer: in ``[0, depth]``.

        Returns:
            ``(features, frame_lengths)``: ``(b, n, d)``, 0 past each item's end, and ``(b,)``.
        """
        if not 0 <= layer <= self.config.depth:
            raise ValueError(f"layer must be in [0, {self.config.depth}], got {layer}")
        x, frame_lengths = self.frontend(audio, lengths)
        mask = lengths_to_mask(frame_lengths, x.shape[1])
        x = self._blocks(x, mask, layer)
        # An item with no real frame attends to nothing (NaN); its features are all padding.
        return x.masked_fill(~mask[..., None], 0.0), frame_lengths

    def _blocks(self, x: Tensor, mask: Tensor, count: int) -> Tensor:
        rotary = self.backbone.rotary(x.shape[1], x.device)
        for block in self.backbone.blocks[:count]:
            x = block(x, mask=mask, rotary=rotary)
        return x

    def forward(self, audio: Tensor, lengths: Tensor | None = None) -> PhoneticEncoderOutput:
        """Frame log-probabilities of mono ``(b, 1, t)`` audio; ``lengths`` ``(b,)`` real samples."""
        x, frame_lengths = self.frontend(audio, lengths)
        mask = lengths_to_mask(frame_lengths, x.shape[1])
        hidden = self.backbone(x, mask)
        log_probs = self.head(hidden).float().log_softmax(-1)
        return PhoneticEncoderOutput(log_probs=log_probs, frame_lengths=frame_lengths, mask=mask)

    @torch.inference_mode()
    def transcribe(self, audio: Tensor, lengths: Tensor | None = None) -> list[list[str]]:
        """Greedy CTC decoding of ``(b, 1, t)`` audio: best symbol per frame, repeats merged, blanks dropped."""
        was_training = self.training
        self.eval()
        try:
            out = self(audio, lengths)
        finally:
            self.train(was_training)
        best = out.log_probs.argmax(-1).cpu()
        return [
            self.decode_ids(torch.unique_consecutive(ids[:n]).tolist())
            for ids, n in zip(best, out.frame_lengths.tolist(), strict=True)
        ]
