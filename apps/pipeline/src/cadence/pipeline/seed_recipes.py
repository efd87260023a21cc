"""The seeds' voice-conversion pipelines as toy recipes: ``cadence recipe coig`` and ``cadence recipe hierarchical``.

- ``coig`` (SpeechGPT-Gen's Chain-of-Information Generation): a SpeechTokenizer whose RVQ-1
  is the semantic stream; SoundStorm (codes) and the hierarchical flow matcher (latents)
  learn RVQ-2..q from it; the SpeechTokenizer decoder speaks (:mod:`.coig`).
- ``hierarchical`` (SpeechGPT-Gen's hierarchical model): HuBERT k-means tokens -> flow
  matching -> DAC latents -> the DAC decoder (:class:`~.synthesis.VoiceConversion`, flow).

Each writes ``OUT/pipeline/pipeline.json`` for ``cadence convert --pipeline OUT/pipeline``.
The codecs are small stand-ins in their publishers' layouts (:mod:`.seed_codecs`); the
trained stages are ordinary ``cadence train`` jobs (``OUT/jobs/*.toml``, the toy recipe's
model and trainer settings). Pointing a pipeline at released weights instead is a change
of paths in ``pipeline.json`` (docs/pipeline.md, "The seeds' pipelines"). A finished step
is skipped on a rerun.
"""

from __future__ import annotations

import copy
import time
from pathlib import Path
from typing import Any

from rich.console import Console

from cadence.core.checkpoint import CONFIG_NAME
from cadence.core.data import AudioDataset, precompute
from cadence.core.io import write_text

from .components import PipelineError
from .pipeline import PIPELINE_FILE, write_pipeline
from .recipe import TOY_JOBS, _held_out_prompt, _scaled, job_toml, make_corpus
from .training import TrainJob, run_job, tokenize_corpus

__all__ = ["COIG_CODEC", "HIERARCHICAL_CODEC", "SEED_JOBS", "SEED_RECIPES", "run_seed_recipe"]

SEED_RECIPES = ("coig", "hierarchical")

# A SpeechTokenizer the size of the toy recipe's codec: the released layout (bidirectional
# LSTM, 8 levels, hop 320 = 50 frames/s at 16 kHz), narrower (16 filters, 128-wide latents)
# and with 256 codes per level.
COIG_CODEC: dict[str, Any] = {
    "sample_rate": 16000,
    "seanet": {
        "n_filters": 16,
        "latent_dim": 128,
        "strides": [2, 4, 5, 8],
        "lstm": 1,
        "true_skip": False,
    },
    "bidirectional": True,
    "num_quantizers": 8,
    "codebook_size": 256,
    "semantic_dim": 128,
}

# A DAC with dac_16khz's strides (hop 320, 50 frames/s), narrow: 128-wide latents, 4 levels
# of 256 codes (transformers.DacConfig fields).
HIERARCHICAL_CODEC: dict[str, Any] = {
    "sampling_rate": 16000,
    "encoder_hidden_size": 8,
    "downsampling_ratios": [2, 4, 5, 8],
    "decoder_hidden_size": 96,
    "n_codebooks": 4,
    "codebook_size": 256,
    "codebook_dim": 8,
}


def _toy(stage: str) -> dict[str, Any]:
    return copy.deepcopy(TOY_JOBS[stage])


# The trained stages of each recipe: the toy recipe's settings for the same stage.
SEED_JOBS: dict[str, dict[str, dict[str, Any]]] = {
    "coig": {"soundstorm": _toy("soundstorm"), "flowmatching": _toy("flowmatching")},
    "hierarchical": {
        "semantic_tokenizer": {
            # a random tiny HuBERT stands in for hubert_base_ls960 (give [model] checkpoint =
            # "<path>" and output_layer = 9 for the real one); 50 Hz tokens match DAC's frames
            "stage": "semantic_tokenizer",
            "architecture": "hubert",
            "model": {"frames": "floor"},
            "trainer": {"num_clusters": 256, "batch_size": 10000, "max_steps": 150},
        },
        "flowmatching": _toy("flowmatching"),
    },
}

_DESCRIPTIONS = {
    "coig": "SpeechGPT-Gen CoIG voice conversion: SpeechTokenizer RVQ-1 -> SoundStorm or flow "
    "matching -> RVQ-2..8 -> the SpeechTokenizer decoder (toy stand-in codec, synthetic corpus)",
    "hierarchical": "SpeechGPT-Gen hierarchical voice conversion: HuBERT k-means -> flow matching "
    "-> DAC latents -> the DAC decoder (toy stand-in HuBERT and DAC, synthetic corpus)",
}


def write_seed_jobs(
    name: str, out: Path, corpus: Path, *, steps_scale: float = 1.0
) -> dict[str, Path]:
    """Write recipe ``name``'s job files to ``out/jobs`` (paths relative to them)."""
    paths = {}
    for stage, spec in SEED_JOBS[name].items():
        spec = _scaled(spec, steps_scale)
        spec = {
            "stage": spec.pop("stage", stage),
            "corpus": str(corpus.resolve()),
            "output": f"../pipeline/{stage}",
            "run_dir": f"../runs/{stage}",
            **({"shards": "../shards"} if stage != "semantic_tokenizer" else {}),
            **spec,
        }
        paths[stage] = out / "jobs" / f"{stage}.toml"
        write_text(paths[stage], job_toml(spec))
    return paths


def _done(directory: Path) -> bool:
    return (directory / CONFIG_NAME).is_file()


def _write_codec(name: str, directory: Path, corpus: Path, steps_scale: float) -> None:
    from .seed_codecs import write_dac, write_speechtokenizer

    if name == "coig":
        steps = max(2, round(30 * min(steps_scale, 1.0)))
        write_speechtokenizer(directory, COIG_CODEC, corpus / "train.jsonl", kmeans_steps=steps)
    else:
        write_dac(directory, HIERARCHICAL_CODEC)


def _tokenize(name: str, pipeline_dir: Path, corpus: Path, shards: Path) -> None:
    """Shards of codes, latents and semantic tokens for the trained stages."""
    for split in ("train", "valid"):
        if (shards / split / "manifest.json").is_file():
            continue
        if name == "hierarchical":
            tokenize_corpus(
                corpus / f"{split}.jsonl",
                shards / split,
                codec=pipeline_dir / "codec",
                tokenizer=pipeline_dir / "semantic_tokenizer",
                latents=True,
                progress=False,
            )
            continue
        from cadence.codec import SpeechTokenizer, SpeechTokenizerAcoustic

        codec = SpeechTokenizer.from_official(pipeline_dir / "codec")
        # RVQ-2..q: what the models generate (Any: the protocols declare plain attributes)
        acoustic: Any = SpeechTokenizerAcoustic(codec)
        semantic: Any = codec.semantic_tokenizer()
        precompute(
            AudioDataset(
                corpus / f"{split}.jsonl", sample_rate=codec.sample_rate, crop_seconds=None
            ),
            shards / split,
            codec=acoustic,
            tokenizer=semantic,
            latent_codec=acoustic,
            progress=False,
            min_seconds=0.1,
        )


def run_seed_recipe(
    name: str,
    out: str | Path,
    corpus: str | Path | None = None,
    *,
    steps_scale: float = 1.0,
    console: Console | None = None,
) -> Path:
    """Build recipe ``name`` (``"coig"`` or ``"hierarchical"``) into ``out``; returns the pipeline directory.

    ``corpus``: an existing corpus; None synthesizes the toy recipe's into ``out/corpus``.
    ``steps_scale`` multiplies every trained stage's steps (e.g. 0.01 for a smoke run).
    """
    if name not in SEED_RECIPES:
        raise PipelineError(
            f"unknown recipe {name!r}; the seed recipes are {', '.join(SEED_RECIPES)}"
        )
    console = console or Console()
    out = Path(out)
    corpus = make_corpus(out / "corpus", console=console) if corpus is None else Path(corpus)
    for split in ("train", "valid"):
        if not (corpus / f"{split}.jsonl").is_file():
            raise PipelineError(f"{corpus} is not a corpus: {split}.jsonl is missing")
    pipeline_dir, shards = out / "pipeline", out / "shards"
    paths = write_seed_jobs(name, out, corpus, steps_scale=steps_scale)
    start = time.perf_counter()
    if not (pipeline_dir / "codec" / CONFIG_NAME).is_file():
        console.print(f"[bold]codec[/]: the {name} recipe's stand-in codec")
        _write_codec(name, pipeline_dir / "codec", corpus, steps_scale)
    for stage in ("semantic_tokenizer", "tokenize", "soundstorm", "flowmatching"):
        if stage == "tokenize":
            _tokenize(name, pipeline_dir, corpus, shards)
            continue
        if stage not in paths:
            continue
        job = TrainJob.from_toml(paths[stage])
        if _done(Path(job.output)):
            continue
        console.rule(f"[bold]{name}: {stage}")
        metrics = run_job(job)
        console.print(f"{stage}: " + ", ".join(f"{k}={v:.4g}" for k, v in metrics.items()))
    prompt = _held_out_prompt(corpus, pipeline_dir / "prompts")
    components = {"codec": "codec", **{stage: stage for stage in SEED_JOBS[name]}}
    if name == "coig":
        components["semantic_tokenizer"] = "codec"  # RVQ-1 of the codec itself
    write_pipeline(
        pipeline_dir,
        components,
        prompt=prompt.relative_to(pipeline_dir).as_posix(),
        description=_DESCRIPTIONS[name],
        **({"conversion": "coig"} if name == "coig" else {}),
    )
    console.print(
        f"pipeline ready in {time.perf_counter() - start:.0f} s: {pipeline_dir / PIPELINE_FILE}"
    )
    return pipeline_dir
