"""Real recipes: ``cadence recipe libritts|librispeech|ljspeech|vctk --corpus DIR``.

Two chains at the papers' sizes, on a real corpus, with official pretrained parts: AudioLM
(semantic stage) + SoundStorm, and NaturalSpeech 2.

- codec: official EnCodec 24 kHz (8 levels x 1024 codes at 75 Hz, 6 kbit/s; its 128-dim
  continuous latents are what NaturalSpeech 2 diffuses);
- semantic tokens: fairseq HuBERT-base (``hubert_base_ls960``) layer 9 + k-means (500
  clusters, fitted on the corpus unless a converted k-means is given), 50 Hz;
- semantic_lm: AudioLM's semantic stage, a 12-layer decoder of width 1024, 16 heads, FF 4096
  (Borsos et al. 2022, sec. 5: "12 layers, 16 attention heads, embedding dimension 1024,
  feed-forward 4096, dropout 0.1");
- soundstorm: the paper's 12-layer Conformer of width 1024, 16 heads, FF 4096, kernel 5
  (Borsos et al. 2023, sec. 4);
- phonemes: the manifests' text through espeak-ng (:mod:`.real_phonemes`, the G2P
  ``NaturalSpeech2.synthesize`` uses), written into the manifests;
- aligner: the unsupervised aligner of Badlani et al. 2022 ("One TTS Alignment to Rule Them
  All"), trained on the corpus' phonemes and log-mel frames at the codec's 75 Hz; its MAS
  durations replace the timings a real corpus does not carry (``durations``: NaturalSpeech 2's
  shards, :mod:`.real_ns2`);
- naturalspeech2: NaturalSpeech 2 (Shen et al. 2023, sec. 4.1): phoneme encoder and prompt
  encoder of 6 Transformer layers, width 512, 8 heads; WaveNet diffusion of 40 layers of 512
  channels with a prompt-attention layer every 3 and 32 query tokens. Cadence's duration and
  pitch predictors are 3-block sequence models, not the paper's 30-layer convolution stacks.

``cadence recipe NAME --corpus DIR --out OUT`` writes the corpus manifests (``OUT/corpus``),
plain TOML job files (``OUT/jobs``: ``components.toml`` for the pretrained parts, then one
:class:`~cadence.pipeline.training.TrainJob` per trained stage, bf16 with gradient
accumulation), and runs the steps in order (:data:`ORDER`); a finished step is skipped and a
stopped stage resumes from its last checkpoint (``OUT/runs/STAGE``). ``--launch
"--num_processes 8"`` runs each training stage and the tokenizing under ``accelerate launch``
with those arguments (N GPUs, M nodes: ``--num_machines``, ``--machine_rank``,
``--main_process_ip``); phonemizing and NaturalSpeech 2's shards run in the recipe's own
process (on its GPU when it has one).
"""

from __future__ import annotations

import copy
import json
import math
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

from rich.console import Console

from cadence.core.checkpoint import CONFIG_NAME

from .components import PipelineError, load_component
from .recipe import job_toml

__all__ = [
    "NS2_PAPER",
    "ORDER",
    "REAL_JOBS",
    "REAL_RECIPES",
    "deep_merge",
    "run_real_recipe",
    "steps_for",
    "write_real_jobs",
]

# recipe -> the corpus layout it reads and the mean utterance length (s) of the full corpus
# (LibriTTS 585 h / 375k utterances; LibriSpeech 960 h / 281k; LJSpeech 24 h / 13.1k; VCTK 44 h / 44k)
REAL_RECIPES: dict[str, dict[str, Any]] = {
    "libritts": {"layout": "libritts", "mean_seconds": 5.6, "hours": 585.0},
    "librispeech": {"layout": "librispeech", "mean_seconds": 12.3, "hours": 960.0},
    "ljspeech": {"layout": "ljspeech", "mean_seconds": 6.6, "hours": 24.0},
    "vctk": {"layout": "vctk", "mean_seconds": 3.6, "hours": 44.0},
}

COMPONENTS: dict[str, dict[str, Any]] = {
    # path = "" resolves repo_id in the Hugging Face cache (local_files_only)
    "encodec": {"path": "", "repo_id": "facebook/encodec_24khz", "cache_dir": "", "bandwidth": 6.0},
    "hubert": {"path": "", "repo_id": "facebook/hubert-base-ls960", "cache_dir": "",
               "output_layer": 9},
    # path = "": fit on the corpus' HuBERT features (num_clusters, KMeansTrainConfig fields)
    "kmeans": {"path": "", "num_clusters": 500, "batch_size": 10000, "max_steps": 300,
               "max_frames": 2_000_000},
}  # fmt: skip

_TRAINER: dict[str, Any] = {
    "mixed_precision": "bf16",
    "warmup_steps": 5000,
    "schedule": "cosine",
    "weight_decay": 0.01,
    "max_grad_norm": 1.0,
    "ema_decay": 0.999,
    "save_every": 2000,
    "keep_last_checkpoints": 3,
    "log_every": 100,
    "num_workers": 4,
}

# NaturalSpeech 2 (Shen et al. 2023, sec. 4.1 and app. B): phoneme encoder 6 layers and prompt
# encoder 6 layers of width 512, 8 heads; WaveNet diffusion 40 layers of 512 channels with a
# query-token attention every 3 layers (32 queries). The paper's duration / pitch predictors are
# 30-layer convolution stacks; Cadence's predictor is a 3-block sequence model (its count is its
# own). latent_dim and frame_rate come from the codec (EnCodec: 128 at 75 Hz).
NS2_PAPER: dict[str, Any] = {"dim": 512, "heads": 8, "encoder_depth": 6, "prompt_encoder_depth": 6,
                             "predictor_depth": 3, "wavenet_channels": 512, "wavenet_depth": 40,
                             "attention_every": 3, "num_query_tokens": 32}  # fmt: skip

# Each trained stage: its job (sizes of the papers) and the epochs over the corpus it runs.
REAL_JOBS: dict[str, dict[str, Any]] = {
    "semantic_lm": {
        "stage": "semantic_lm",
        "shards": "../shards",
        "speaker_chains": True,  # long crops of one speaker's utterances, as AudioLM's 30 s crops
        "epochs": 30,
        "model": {"dim": 1024, "depth": 12, "heads": 16, "dim_head": 64, "ff_mult": 4,
                  "max_seq_len": 1536, "attn_dropout": 0.1, "ff_dropout": 0.1},
        # 8 x 4 sequences of 1536 tokens per GPU and optimizer step
        "trainer": {**_TRAINER, "batch_size": 8, "gradient_accumulation_steps": 4,
                    "learning_rate": 3e-4},
    },
    "soundstorm": {
        "stage": "soundstorm",
        "shards": "../shards",
        "epochs": 30,
        "model": {"backbone": {"kind": "conformer", "dim": 1024, "depth": 12, "heads": 16,
                               "ff_mult": 4.0, "conv_kernel_size": 5}},
        "train": {"cond_drop_prob": 0.1},
        "trainer": {**_TRAINER, "batch_size": 16, "gradient_accumulation_steps": 2,
                    "learning_rate": 5e-4},
    },
    # Badlani et al.'s layout (two convolutions over phonemes, three over 80 log-mel bins at
    # the codec's frame rate); the widths, epochs and optimizer are Cadence's: it converges
    # in a few epochs, and only its durations are kept.
    "aligner": {
        "stage": "aligner",
        "codec": "../pipeline/codec",
        "epochs": 5,
        "model": {"feature_dim": 80, "dim": 256, "attention_dim": 64},
        "train": {"max_seconds": 30.0},
        "trainer": {**_TRAINER, "batch_size": 32, "gradient_accumulation_steps": 1,
                    "learning_rate": 1e-3, "warmup_steps": 500, "save_every": 1000},
    },
    # model.voice: the espeak-ng voice of the `phonemes` step and of synthesize(text).
    # 16 utterances x 2 accumulation steps per GPU: 16 x 5.6 s x 75 Hz = 6.7k latent frames per
    # GPU and micro-batch, about the paper's 6k.
    "naturalspeech2": {
        "stage": "naturalspeech2",
        "shards": "../ns2_shards",
        "codec": "../pipeline/codec",
        "aligner": "../pipeline/aligner",
        "epochs": 30,
        "model": {**NS2_PAPER, "voice": "en-us"},
        "trainer": {**_TRAINER, "batch_size": 16, "gradient_accumulation_steps": 2,
                    "learning_rate": 5e-4},
    },
}  # fmt: skip

# the steps in order; each trained stage is a key of REAL_JOBS
ORDER = ("corpus", "codec", "semantic_tokenizer", "tokenize", "semantic_lm", "soundstorm",
         "phonemes", "aligner", "durations", "naturalspeech2")  # fmt: skip


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """``base`` with ``override``'s keys, tables merged key by key (a copy)."""
    out = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def items_per_step(spec: dict[str, Any], *, num_processes: int = 1) -> int:
    trainer = spec["trainer"]
    return (
        int(trainer["batch_size"])
        * int(trainer.get("gradient_accumulation_steps", 1))
        * num_processes
    )


def seconds_per_item(
    stage: str, spec: dict[str, Any], mean_seconds: float, token_rate: float
) -> float:
    """Audio seconds one training item covers: the LM's full context, SoundStorm's utterance."""
    if stage == "semantic_lm":
        return spec["model"].get("max_seq_len", 1024) / token_rate
    return mean_seconds


def steps_for(
    stage: str,
    spec: dict[str, Any],
    hours: float,
    *,
    mean_seconds: float,
    token_rate: float = 50.0,
    num_processes: int = 1,
) -> int:
    """Optimizer steps for ``spec['epochs']`` passes over ``hours`` of audio."""
    seconds = seconds_per_item(stage, spec, mean_seconds, token_rate)
    items = hours * 3600 / seconds
    return max(
        1,
        math.ceil(
            spec.get("epochs", 1) * items / items_per_step(spec, num_processes=num_processes)
        ),
    )


def _components_toml(components: dict[str, dict[str, Any]]) -> str:
    head = (
        '# Pretrained parts of the real recipe. path = "": resolve repo_id in the Hugging Face\n'
        "# cache with local_files_only (nothing downloads); else a local file or directory.\n"
    )
    # job_toml writes a [model] table; the same writer, renamed, for each part
    tables = [job_toml({"model": t}).replace("[model]", f"[{n}]") for n, t in components.items()]
    return head + "".join(tables)


def write_real_jobs(
    out: Path,
    corpus: Path,
    *,
    override: dict[str, Any] | None = None,
    num_processes: int = 1,
    mean_seconds: float | None = None,
) -> dict[str, Path]:
    """Write ``out/jobs/components.toml`` and one TOML per trained stage; returns their paths.

    ``override``: tables merged over the recipe's (``components``, ``semantic_lm``,
    ``soundstorm``, ``aligner``, ``naturalspeech2``), e.g. tiny models for a smoke run.
    ``max_steps`` comes from the corpus hours (``corpus.json``) and the stage's epochs unless
    the override sets it.
    """
    override = override or {}
    unknown = sorted(set(override) - {"components", *REAL_JOBS})
    if unknown:
        raise PipelineError(
            f"override: unknown tables {unknown}; known: components, {', '.join(REAL_JOBS)}"
        )
    summary = (
        json.loads((corpus / "corpus.json").read_text())
        if (corpus / "corpus.json").is_file()
        else {}
    )
    hours = float(summary.get("train", {}).get("hours", 0.0))
    utterances = int(summary.get("train", {}).get("utterances", 0))
    if mean_seconds is None:
        mean_seconds = hours * 3600 / utterances if utterances else 6.0
    jobs = out / "jobs"
    jobs.mkdir(parents=True, exist_ok=True)
    from cadence.core.io import write_text

    paths = {"components": jobs / "components.toml"}
    write_text(
        paths["components"],
        _components_toml(deep_merge(COMPONENTS, override.get("components", {}))),
    )
    for name, base in REAL_JOBS.items():
        spec = deep_merge(base, override.get(name, {}))
        epochs = spec.pop("epochs", 1)
        if "max_steps" not in spec["trainer"]:
            spec["trainer"]["max_steps"] = steps_for(
                name,
                {**spec, "epochs": epochs},
                hours,
                mean_seconds=mean_seconds,
                num_processes=num_processes,
            )
        job = {"stage": spec.pop("stage"), "corpus": str(corpus.resolve()),
               "output": f"../pipeline/{name}", "run_dir": f"../runs/{name}", **spec}  # fmt: skip
        paths[name] = jobs / f"{name}.toml"
        write_text(
            paths[name],
            f"# {name}: {epochs} epochs over {hours:.1f} h on {num_processes} process(es)\n"
            + job_toml(job),
        )
    return paths


def _done(directory: Path) -> bool:
    return (directory / CONFIG_NAME).is_file()


def _prepared_corpus(name: str, corpus: Path, out: Path, console: Console) -> Path:
    if (corpus / "train.jsonl").is_file() and (corpus / "valid.jsonl").is_file():
        return corpus  # already manifests (cadence corpus ...)
    target = out / "corpus"
    if not (target / "train.jsonl").is_file():
        from .corpora import prepare_corpus

        console.print(f"[bold]corpus[/]: reading {corpus} as {REAL_RECIPES[name]['layout']}")
        prepare_corpus(REAL_RECIPES[name]["layout"], corpus, target)
    return target


def _tokenize(corpus: Path, out: Path, console: Console) -> None:
    from cadence.core.data import AudioDataset, precompute

    from .pretrained_components import AtRate

    codec = load_component(out / "pipeline" / "codec", "codec")
    tokenizer = AtRate(
        load_component(out / "pipeline" / "semantic_tokenizer", "semantic_tokenizer"),
        codec.sample_rate,
    )
    for split in ("train", "valid"):
        if (out / "shards" / split / "manifest.json").is_file():
            continue
        console.print(f"[bold]tokenize[/] {split}: EnCodec codes and HuBERT k-means tokens")
        data = AudioDataset(
            corpus / f"{split}.jsonl", sample_rate=codec.sample_rate, crop_seconds=None
        )
        precompute(data, out / "shards" / split, codec=codec, tokenizer=tokenizer, min_seconds=0.1)


def _train(stage: str, job_file: Path, launch: str | None) -> None:
    if launch is None:
        from .training import TrainJob, run_job

        run_job(TrainJob.from_toml(job_file))
        return
    command = [sys.executable, "-m", "accelerate.commands.launch", *shlex.split(launch),
               "-m", "cadence.pipeline.cli", "train", stage, "--config", str(job_file)]  # fmt: skip
    if subprocess.run(command, check=False).returncode != 0:
        raise PipelineError(f"{stage}: `{shlex.join(command)}` failed; rerun to resume")


def run_real_recipe(
    name: str,
    corpus: str | Path,
    out: str | Path,
    *,
    override: dict[str, Any] | None = None,
    only: tuple[str, ...] | None = None,
    launch: str | None = None,
    num_processes: int = 1,
    write_only: bool = False,
    console: Console | None = None,
) -> Path:
    """Run recipe ``name`` on ``corpus`` (raw layout or manifests) into ``out``; returns ``out/pipeline``."""
    if name not in REAL_RECIPES:
        raise PipelineError(f"unknown real recipe {name!r}; available: {', '.join(REAL_RECIPES)}")
    console = console or Console()
    out, corpus = Path(out), Path(corpus)
    manifests = _prepared_corpus(name, corpus, out, console)
    paths = write_real_jobs(out, manifests, override=override, num_processes=num_processes)
    if write_only:
        return out / "jobs"
    components = tomllib.loads(paths["components"].read_text())
    pipeline = out / "pipeline"
    for step in ORDER[1:]:
        if only is not None and step not in only:
            continue
        if step == "codec" and not _done(pipeline / "codec"):
            from .pretrained_components import import_codec

            console.print("[bold]codec[/]: official EnCodec -> pipeline/codec")
            import_codec(components["encodec"], pipeline / "codec")
        elif step == "semantic_tokenizer" and not _done(pipeline / "semantic_tokenizer"):
            from .pretrained_components import import_semantic_tokenizer

            console.print(
                "[bold]semantic_tokenizer[/]: HuBERT + k-means -> pipeline/semantic_tokenizer"
            )
            import_semantic_tokenizer(components["hubert"], components["kmeans"], manifests,
                                      pipeline / "semantic_tokenizer", out / "runs" / "kmeans")  # fmt: skip
        elif step == "tokenize":
            _tokenize(manifests, out, console)
        elif step == "phonemes":
            from .real_phonemes import phonemize_manifests

            ns2_job = tomllib.loads(paths["naturalspeech2"].read_text())
            voice = ns2_job.get("model", {}).get("voice", "en-us")  # the model's G2P voice
            phonemize_manifests(manifests, voice=voice, console=console)
        elif step == "durations":
            from .real_ns2 import write_ns2_shards

            write_ns2_shards(pipeline, out / "ns2_shards", manifests, console)
        elif step in REAL_JOBS and not _done(pipeline / step):
            console.rule(f"[bold]{step}")
            _train(step, paths[step], launch)
    return pipeline
