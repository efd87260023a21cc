"""Fakes that conform to the core Protocols, and the committed toy corpus, for tests.

The fakes are small deterministic signal-processing models, not mocks: a FakeCodec really
encodes audio into residual codes and decodes them back (coarsely), so pipelines can be
tested end to end without a trained network.
"""

# b batch | c channels | t samples | n frames | w samples per frame | q quantizers | d latent dim

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch
from einops import rearrange
from torch import Tensor, nn

from .audio import check_audio
from .checkpoint import PretrainedMixin
from .config import Config
from .data.collate import lengths_to_mask

__all__ = [
    "FakeCodec",
    "FakeSemanticTokenizer",
    "TinyModel",
    "TinyModelConfig",
    "python_examples",
    "run_python_example",
    "toy_corpus_dir",
]


def _zero_past(x: Tensor, lengths: Tensor | None, hop: int = 1) -> Tensor:
    """Zero the frames (axis 1) of each item past ``lengths // hop``."""
    if lengths is None:
        return x
    keep = lengths_to_mask(torch.as_tensor(lengths, device=x.device) // hop, x.shape[1])
    return x * keep.view(*keep.shape, *([1] * (x.ndim - 2))).to(x.dtype)


class FakeCodec:
    """A fixed linear "codec": frames -> orthogonal projection -> residual scalar quantization.

    Conforms to ``Codec`` and ``LatentCodec``. Decoding with fewer levels is coarser, as in a
    real residual codec.
    """

    def __init__(
        self,
        *,
        sample_rate: int = 16000,
        hop_length: int = 320,
        latent_dim: int = 16,
        num_quantizers: int = 4,
        codebook_size: int = 64,
        seed: int = 0,
    ):
        if latent_dim > hop_length:
            raise ValueError("latent_dim must not exceed hop_length")
        self.sample_rate = sample_rate
        self.channels = 1
        self.hop_length = hop_length
        self.frame_rate = sample_rate / hop_length
        self.latent_dim = latent_dim
        self.num_quantizers = num_quantizers
        self.codebook_size = codebook_size
        gen = torch.Generator().manual_seed(seed)
        q, _ = torch.linalg.qr(torch.randn(hop_length, latent_dim, generator=gen))
        self._projection = q  # (h, d), orthonormal columns

    def num_frames(self, samples: int) -> int:
        return samples // self.hop_length

    def encode_latents(self, audio: Tensor, lengths: Tensor | None = None) -> Tensor:
        check_audio(audio, channels=1)
        n = audio.shape[-1] // self.hop_length
        frames = rearrange(
            audio[..., : n * self.hop_length], "b 1 (n w) -> b n w", w=self.hop_length
        )
        # frame-wise, so each item's real frames never see its padding; in float64 because a
        # float32 GEMM's rounding depends on the batch size on some CPUs (oneDNN blocking), and
        # a last-bit change flips a code at a bin edge: a clip's codes must not depend on its batch
        latents = frames.double() @ self._projection.to(frames.device, torch.float64)
        return _zero_past(latents.to(frames.dtype), lengths, self.hop_length)

    def codes_to_latents(self, codes: Tensor) -> Tensor:
        """(b, n, q) codes -> (b, n, d) quantized latents: only the first coordinate is coded."""
        levels = torch.arange(codes.shape[-1], device=codes.device)
        step = 2.0 / self.codebook_size
        scale = (1.0 / self.codebook_size) ** levels  # each level refines the previous one
        values = (codes.float() + 0.5) * step - 1.0  # bin centers in [-1, 1]
        squashed = (values * scale).sum(-1)  # (b, n)
        latents = torch.zeros(*squashed.shape, self.latent_dim, device=codes.device)
        latents[..., 0] = self._unsquash(squashed)
        return latents

    def encode(self, audio: Tensor, lengths: Tensor | None = None) -> Tensor:
        # One scalar per frame (the first latent coordinate), quantized level by level; enough
        # to make codes depend on the audio and to make more levels more precise.
        latents = self.encode_latents(audio)
        residual = torch.tanh(latents[..., 0])
        codes = []
        for level in range(self.num_quantizers):
            scale = (1.0 / self.codebook_size) ** level
            index = ((residual / scale + 1.0) / 2.0 * self.codebook_size).floor()
            index = index.clamp(0, self.codebook_size - 1)
            codes.append(index.long())
            residual = residual - ((index + 0.5) * 2.0 / self.codebook_size - 1.0) * scale
        return _zero_past(torch.stack(codes, dim=-1), lengths, self.hop_length)

    @staticmethod
    def _unsquash(x: Tensor) -> Tensor:
        return torch.atanh(x.clamp(-0.999999, 0.999999))

    def decode_latents(self, latents: Tensor, lengths: Tensor | None = None) -> Tensor:
        frames = _zero_past(latents @ self._projection.to(latents).T, lengths)
        return rearrange(frames, "b n w -> b 1 (n w)")

    def decode(self, codes: Tensor, lengths: Tensor | None = None) -> Tensor:
        if codes.ndim != 3:
            raise ValueError(f"codes must be (b, n, q), got shape {tuple(codes.shape)}")
        if codes.shape[-1] > self.num_quantizers:
            raise ValueError(
                f"codes have {codes.shape[-1]} levels but this codec has {self.num_quantizers}"
            )
        return self.decode_latents(self.codes_to_latents(codes), lengths)


class FakeSemanticTokenizer:
    """Tokens = argmax of a fixed random projection of each frame's log-magnitude spectrum."""

    def __init__(
        self,
        *,
        sample_rate: int = 16000,
        hop_length: int = 320,
        codebook_size: int = 32,
        seed: int = 0,
    ):
        self.sample_rate = sample_rate
        self.hop_length = hop_length
        self.frame_rate = sample_rate / hop_length
        self.codebook_size = codebook_size
        gen = torch.Generator().manual_seed(seed)
        self._projection = torch.randn(hop_length // 2 + 1, codebook_size, generator=gen)

    def num_frames(self, samples: int) -> int:
        return samples // self.hop_length

    def tokenize(self, audio: Tensor, lengths: Tensor | None = None) -> Tensor:
        check_audio(audio)
        mono = audio.mean(1)
        n = mono.shape[-1] // self.hop_length
        frames = rearrange(mono[:, : n * self.hop_length], "b (n w) -> b n w", w=self.hop_length)
        spectrum = torch.fft.rfft(frames, dim=-1).abs().add(1e-5).log()
        spectrum = spectrum - spectrum.mean(-1, keepdim=True)
        return _zero_past(
            (spectrum @ self._projection.to(spectrum)).argmax(-1), lengths, self.hop_length
        )


def toy_corpus_dir() -> Path:
    """The committed toy speech corpus (tests/data/toy_speech in the repository).

    Set ``CADENCE_TOY_CORPUS`` to use another directory; otherwise the repository is found
    by walking up from the current directory and from this file.
    """
    env = os.environ.get("CADENCE_TOY_CORPUS")
    if env:
        return Path(env)
    starts = [Path.cwd(), Path(__file__).resolve().parent]
    for start in starts:
        for parent in (start, *start.parents):
            candidate = parent / "tests" / "data" / "toy_speech"
            if (candidate / "train.jsonl").exists():
                return candidate
    raise FileNotFoundError(
        "toy corpus not found: run from inside the Cadence repository, set CADENCE_TOY_CORPUS, "
        "or make one with `cadence-toy-corpus DIR`"
    )


@dataclass(frozen=True)
class PythonExample:
    """One fenced ```python block of a Markdown page: its code and where it starts."""

    path: Path
    line: int
    code: str

    @property
    def name(self) -> str:
        return f"{self.path.name}:{self.line}"


def python_examples(page: str | os.PathLike) -> list[PythonExample]:
    """The ```python blocks of a Markdown page, in order (```python notest blocks are skipped).

    Docs pages and READMEs are tested by running these blocks as written, so an example that
    stops working fails CI instead of misleading a reader.
    """
    path = Path(page)
    examples, lines = [], path.read_text(encoding="utf-8").splitlines()
    i = 0
    while i < len(lines):
        fence = lines[i].strip()
        if fence.startswith("```python"):
            start, body = i + 1, []
            i += 1
            while i < len(lines) and lines[i].strip() != "```":
                body.append(lines[i])
                i += 1
            if "notest" not in fence:
                examples.append(
                    PythonExample(path=path, line=start + 1, code="\n".join(body) + "\n")
                )
        i += 1
    return examples


def run_python_example(
    example: PythonExample, workdir: str | os.PathLike, *, replace: dict[str, str] | None = None
) -> dict:
    """Run one example in ``workdir`` (the current directory while it runs); returns its globals.

    ``replace`` rewrites strings in the code first (a path the example writes to, say).
    """
    code = example.code
    for old, new in (replace or {}).items():
        code = code.replace(old, new)
    namespace: dict = {"__name__": "__example__"}
    previous = Path.cwd()
    os.chdir(workdir)
    try:
        exec(compile(code, f"{example.path}:{example.line}", "exec"), namespace)
    finally:
        os.chdir(previous)
    return namespace


@dataclass(frozen=True, kw_only=True)
class TinyModelConfig(Config):
    """Config of :class:`TinyModel`."""

    dim_in: int = 8
    dim: int = 32
    depth: int = 2
    dim_out: int = 1
    share_weights: bool = False  # first and last hidden layers share one weight (tied tensors)


class TinyModel(PretrainedMixin, nn.Module):
    """A small MLP with a buffer and optional tied weights, for checkpoint and trainer tests."""

    config_class = TinyModelConfig

    def __init__(self, config: TinyModelConfig):
        super().__init__()
        self.config = config
        self.proj_in = nn.Linear(config.dim_in, config.dim)
        self.layers = nn.ModuleList(nn.Linear(config.dim, config.dim) for _ in range(config.depth))
        self.norm = nn.LayerNorm(config.dim)
        self.proj_out = nn.Linear(config.dim, config.dim_out)
        self.register_buffer("scale", torch.ones(config.dim))
        if config.share_weights and config.depth > 1:
            self.layers[-1].weight = self.layers[0].weight

    def forward(self, x: Tensor) -> Tensor:
        h = self.proj_in(x)
        for layer in self.layers:
            h = h + torch.nn.functional.gelu(layer(h))
        return self.proj_out(self.norm(h) * self.scale)
