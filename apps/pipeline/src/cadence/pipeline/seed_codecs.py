"""The seed recipes' stand-in codecs, written in their publishers' layouts.

The CoIG and hierarchical recipes (:mod:`.seed_recipes`) need a SpeechTokenizer and a DAC.
Cadence has no trainer for either (``cadence-codec`` trains SoundStream and ISTFTCodec), and
their released weights are large downloads, so a toy recipe builds small ones from a config:

- a SpeechTokenizer, randomly initialised, whose RVQ codebooks are fitted to the corpus by
  residual k-means on its encoder's latents (the codebook initialisation SoundStream and
  EnCodec use before training; a fresh SpeechTokenizer's codebooks are all zero, which
  would map every frame to code 0), saved as the official ``SpeechTokenizer.pt`` +
  ``config.json``;
- a DAC, randomly initialised by ``transformers``, saved as a Hugging Face folder.

So a toy pipeline is laid out as the real one is: swapping in the released folders
(``speechtokenizer_hubert_avg``, ``descript/dac_16khz``) is a change of path.
"""

# n frames | d latent dim | v codebook entries

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from cadence.core.config import ConfigError, config_from_dict
from cadence.core.data import AudioDataset
from cadence.core.io import atomic_directory, write_json

from .components import PipelineError
from .official import SPEECHTOKENIZER_FILE

__all__ = [
    "official_speechtokenizer_config",
    "write_dac",
    "write_speechtokenizer",
]


def official_speechtokenizer_config(config: Any) -> dict[str, Any]:
    """A :class:`~cadence.codec.SpeechTokenizerConfig` as the official ``config.json`` (the
    inverse of ``cadence.codec.speechtokenizer_loading.config_from_official``)."""
    seanet = config.seanet
    return {
        "sample_rate": config.sample_rate,
        "n_filters": seanet.n_filters,
        "strides": list(reversed(seanet.strides)),  # official: decoder order
        "dimension": seanet.latent_dim,
        "semantic_dimension": config.semantic_dim,
        "bidirectional": config.bidirectional,
        "dilation_base": seanet.dilation_base,
        "residual_kernel_size": seanet.residual_kernel_size,
        "n_residual_layers": seanet.n_residual_layers,
        "lstm_layers": seanet.lstm,
        "activation": seanet.activation,
        "codebook_size": config.codebook_size,
        "n_q": config.num_quantizers,
    }


def _latents(model: Any, dataset: AudioDataset, max_frames: int) -> Tensor:
    """Encoder latents ``(n, d)`` of the dataset's files, at most ``max_frames`` of them."""
    chunks, total = [], 0
    for i in range(len(dataset)):
        audio = dataset[i]["audio"]
        chunks.append(model.encode_latents(audio[None])[0])
        total += chunks[-1].shape[0]
        if total >= max_frames:
            break
    if not chunks:
        raise PipelineError("the corpus has no training audio to fit the codebooks on")
    return torch.cat(chunks)[:max_frames]


def fit_codebooks(model: Any, latents: Tensor, *, steps: int, seed: int = 0) -> None:
    """Residual k-means: level ``l``'s codebook clusters what levels ``< l`` leave of ``latents`` ``(n, d)``."""
    from cadence.semantic import KMeansTrainConfig
    from cadence.semantic.kmeans import fit_kmeans

    residual = latents.float()
    v = model.codebook_size
    train = KMeansTrainConfig(
        num_clusters=v,
        batch_size=min(4096, residual.shape[0]),
        max_steps=steps,
        init_size=residual.shape[0],
        seed=seed,
    )
    with torch.no_grad():
        for level in range(model.num_quantizers):
            kmeans = fit_kmeans(residual, train.replace(seed=seed + level), progress=False)
            model.quantizer.codebooks[level].copy_(kmeans.centroids)
            residual = residual - kmeans.centroids[kmeans(residual)]


def write_speechtokenizer(
    directory: str | os.PathLike,
    values: dict[str, Any],
    manifest: Path,
    *,
    max_frames: int = 20000,
    kmeans_steps: int = 30,
    seed: int = 0,
) -> Path:
    """A SpeechTokenizer of config ``values``, codebooks fitted on ``manifest``'s audio, in the official layout."""
    from cadence.codec import SpeechTokenizer, SpeechTokenizerConfig
    from cadence.codec.speechtokenizer_loading import to_official_state_dict

    try:
        config = config_from_dict(SpeechTokenizerConfig, values)
    except (ConfigError, TypeError, ValueError) as err:
        raise PipelineError(f"the CoIG codec config is not a SpeechTokenizerConfig: {err}") from err
    from cadence.codec.speechtokenizer_loading import config_from_official

    official = config_from_official(official_speechtokenizer_config(config))
    if official != config:
        # the official config.json cannot say everything a SpeechTokenizerConfig can
        raise PipelineError(
            "the CoIG codec config has fields the official SpeechTokenizer layout cannot hold "
            f"(it would load as {official}); keep the released model's (e.g. seanet.true_skip = false)"
        )
    if config.codebook_size > max_frames:
        raise PipelineError(
            f"codebook_size {config.codebook_size} needs at least as many frames to fit; "
            f"max_frames is {max_frames}"
        )
    torch.manual_seed(seed)
    model = SpeechTokenizer(config).eval()
    dataset = AudioDataset(manifest, sample_rate=config.sample_rate, crop_seconds=None)
    fit_codebooks(model, _latents(model, dataset, max_frames), steps=kmeans_steps, seed=seed)
    with atomic_directory(directory) as tmp:
        torch.save(to_official_state_dict(model), tmp / SPEECHTOKENIZER_FILE)
        write_json(tmp / "config.json", official_speechtokenizer_config(config))
    return Path(directory)


def write_dac(directory: str | os.PathLike, values: dict[str, Any], *, seed: int = 0) -> Path:
    """A randomly initialised DAC of ``transformers.DacConfig(**values)``, as a Hugging Face folder."""
    try:
        from transformers import DacConfig, DacModel
    except ImportError as err:
        raise PipelineError(
            "the hierarchical recipe's DAC needs transformers: pip install 'cadence-codec[hf]'"
        ) from err
    try:
        config = DacConfig(**values)
    except (TypeError, ValueError) as err:
        raise PipelineError(f"the hierarchical codec config is not a DacConfig: {err}") from err
    torch.manual_seed(seed)
    model = DacModel(config).eval()
    with atomic_directory(directory) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
    return Path(directory)
