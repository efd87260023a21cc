"""The ``semantic_tokenizer`` stage with ``architecture = "hubert"``: HuBERT + k-means fitted on a corpus.

AudioLM's and SpeechGPT-Gen's hierarchical models read HuBERT k-means tokens. The job fits
the centroids on the corpus's HuBERT features and saves the tokenizer as a Cadence
checkpoint (HuBERT and centroids together), which a ``pipeline.json`` names.

```toml
stage = "semantic_tokenizer"
architecture = "hubert"
corpus = "corpus"
output = "pipeline/semantic_tokenizer"

[model]
checkpoint = "/models/hubert_base_ls960.pt"  # fairseq .pt, Hugging Face or Cadence folder (absolute)
output_layer = 9                             # the tokenized block (SpeechGPT-Gen, AudioLM)
frames = "floor"                             # 50 tokens/s, aligned with 50 Hz codec frames

[trainer]                                    # the k-means (KMeansTrainConfig)
num_clusters = 500
```

Without ``checkpoint``, HuBERT is built randomly initialised from ``config`` (fields of
``HubertConfig``, default its ``tiny()``): the toy recipes' stand-in, seeded by
``trainer.seed``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from cadence.core.checkpoint import CheckpointError
from cadence.core.config import ConfigError, config_from_dict
from cadence.core.data import AudioDataset

from .components import PipelineError

if TYPE_CHECKING:
    from .training import TrainJob

__all__ = ["train_hubert_tokenizer"]

_MODEL_KEYS = ("checkpoint", "output_layer", "frames", "config")


def _hubert(model: dict[str, Any]) -> Any:
    from cadence.semantic import Hubert, HubertConfig, load_hubert

    if "checkpoint" in model:
        try:
            return load_hubert(
                Path(model["checkpoint"]), output_layer=int(model.get("output_layer", 9))
            )
        except (FileNotFoundError, CheckpointError) as err:
            raise PipelineError(f"[model] checkpoint: {err}") from err
    try:
        config = config_from_dict(
            HubertConfig, {**HubertConfig.tiny().to_dict(), **model.get("config", {})}
        )
        if "output_layer" in model:
            config = config.replace(output_layer=int(model["output_layer"]))
    except (ConfigError, TypeError, ValueError) as err:
        raise PipelineError(f"[model.config] does not make a valid HubertConfig: {err}") from err
    return Hubert(config).eval()


def train_hubert_tokenizer(job: TrainJob) -> dict[str, float]:
    """Fit k-means on HuBERT features of ``job.corpus``'s train split; save the tokenizer."""
    from cadence.semantic import HubertKMeansTokenizer, KMeansTrainConfig

    from .training import _config, _is_main, _manifest

    unknown = sorted(set(job.model) - set(_MODEL_KEYS))
    if unknown:
        raise PipelineError(
            f"[model] of the hubert tokenizer takes {', '.join(_MODEL_KEYS)}, not {unknown}"
        )
    frames = job.model.get("frames", "floor")
    if frames not in ("floor", "hubert"):
        raise PipelineError(f'[model] frames must be "floor" or "hubert", got {frames!r}')
    hubert = _hubert(job.model)
    data = AudioDataset(
        _manifest(cast(str, job.corpus), "train"),
        sample_rate=hubert.config.sample_rate,
        crop_seconds=None,
    )
    fitted = HubertKMeansTokenizer.fit(
        hubert,
        data,
        _config(KMeansTrainConfig, job.trainer, "trainer"),
        state_dir=job.run_path,
        progress=False,
    )
    tokenizer = HubertKMeansTokenizer.from_parts(fitted.hubert, fitted.kmeans, frames=frames)
    if _is_main():
        tokenizer.save_pretrained(job.output)
    return {"num_clusters": float(tokenizer.codebook_size)}
