"""The real recipe's pretrained parts: official EnCodec 24 kHz and HuBERT-base + k-means.

Nothing downloads at run time. Each part comes from a local ``path`` given in the recipe's
``components.toml`` or, when ``path`` is empty, from the Hugging Face cache that
``huggingface_hub`` resolves with ``local_files_only=True`` (``repo_id``, at ``revision``).
The parts are converted once into Cadence checkpoints (``pipeline/codec``,
``pipeline/semantic_tokenizer``), which every later stage loads.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from torch import Tensor

from cadence.core.checkpoint import CONFIG_NAME
from cadence.core.data import AudioDataset

from .components import PipelineError

__all__ = ["AtRate", "import_codec", "import_semantic_tokenizer", "resolve_pretrained"]


def resolve_pretrained(
    path: str, repo_id: str, *, revision: str | None = None, cache_dir: str = "", what: str
) -> Path:
    """A local path, or ``repo_id``'s snapshot in the Hugging Face cache (never downloaded).

    ``cache_dir`` "" is huggingface_hub's default (``HF_HUB_CACHE`` / ``HF_HOME``).
    """
    if path:
        local = Path(path).expanduser()
        if not local.exists():
            raise PipelineError(f"{what}: {local} does not exist; fix `path` in components.toml")
        return local
    if not repo_id:
        raise PipelineError(f"{what}: give `path` (a local file or directory) or `repo_id`")
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        snapshot = snapshot_download(
            repo_id, revision=revision, cache_dir=cache_dir or None, local_files_only=True
        )
        return Path(snapshot)
    except (LocalEntryNotFoundError, FileNotFoundError, OSError) as err:
        raise PipelineError(
            f"{what}: {repo_id} is not in the Hugging Face cache ({cache_dir or _default_cache()}); "
            f"fetch it once with `hf download {repo_id}` where there is a network, "
            "or set `path` in components.toml to a local copy"
        ) from err


def _default_cache() -> str:
    return os.environ.get("HF_HUB_CACHE") or os.environ.get("HF_HOME") or "~/.cache/huggingface"


def _resolve(spec: dict[str, Any], what: str) -> Path:
    return resolve_pretrained(
        str(spec.get("path", "")),
        str(spec.get("repo_id", "")),
        revision=spec.get("revision"),
        cache_dir=str(spec.get("cache_dir", "")),
        what=what,
    )


def import_codec(spec: dict[str, Any], output: Path) -> Any:
    """Official EnCodec (a ``.th`` file or a Hugging Face directory) -> a Cadence checkpoint."""
    from cadence.codec import EnCodec

    source = _resolve(spec, "encodec")
    codec = EnCodec.from_official(source, bandwidth=float(spec.get("bandwidth", 6.0)))
    codec.save_pretrained(output)
    return codec


def import_semantic_tokenizer(
    hubert_spec: dict[str, Any],
    kmeans_spec: dict[str, Any],
    corpus: Path,
    output: Path,
    state: Path,
) -> Any:
    """HuBERT (fairseq ``.pt`` / Hugging Face directory) + k-means (given, or fitted on ``corpus``)."""
    from cadence.semantic import HubertKMeansTokenizer, KMeans, KMeansTrainConfig, load_hubert

    source = _resolve(hubert_spec, "hubert")
    hubert = load_hubert(source, output_layer=int(hubert_spec.get("output_layer", 9)))
    centroids = kmeans_spec.get("path", "")
    if centroids:
        if not (Path(centroids) / CONFIG_NAME).is_file():
            raise PipelineError(
                f"kmeans: {centroids} is not a Cadence KMeans directory; convert a released "
                "joblib file once with cadence.semantic.load_legacy_kmeans(...).save_pretrained(DIR)"
            )
        tokenizer = HubertKMeansTokenizer.from_parts(
            hubert, KMeans.load_pretrained(centroids), frames="floor"
        )
    else:
        fit = {k: v for k, v in kmeans_spec.items() if k not in ("path", "max_frames")}
        # the checkpoint's own HuBERT weights are frozen; only the centroids are fitted
        data = AudioDataset(corpus / "train.jsonl", sample_rate=16000, crop_seconds=None)
        fitted = HubertKMeansTokenizer.fit(
            hubert,
            data,
            KMeansTrainConfig(**fit),
            max_frames=int(kmeans_spec.get("max_frames", 100_000)),
            state_dir=state,
        )
        # "floor" frames: floor(t / 320) tokens, aligned with the codec's frames
        tokenizer = HubertKMeansTokenizer.from_parts(fitted.hubert, fitted.kmeans, frames="floor")
    tokenizer.save_pretrained(output)
    return tokenizer


class AtRate:
    """A semantic tokenizer that takes audio at another rate (the codec's), resampling inside.

    ``precompute`` encodes one dataset at one rate; EnCodec wants 24 kHz and HuBERT 16 kHz,
    so the tokenizer is presented at the codec's rate and resamples each clip itself
    (``tokenize(..., sample_rate=...)``), instead of reading the corpus twice.
    """

    def __init__(self, tokenizer: Any, sample_rate: int):
        self.tokenizer = tokenizer
        self.sample_rate = sample_rate
        self.frame_rate = float(tokenizer.frame_rate)
        self.codebook_size = int(tokenizer.codebook_size)

    def num_frames(self, samples: int) -> int:
        return int(
            self.tokenizer.num_frames(samples * self.tokenizer.sample_rate // self.sample_rate)
        )

    def tokenize(self, audio: Tensor, lengths: Tensor | None = None) -> Tensor:
        return self.tokenizer.tokenize(audio, lengths, sample_rate=self.sample_rate)

    def to(self, *args: Any, **kwargs: Any) -> AtRate:
        self.tokenizer.to(*args, **kwargs)
        return self

    def eval(self) -> AtRate:
        self.tokenizer.eval()
        return self
