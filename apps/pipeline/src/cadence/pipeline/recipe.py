"""The toy recipe: the whole chain trained on a synthetic corpus it makes itself, on a CPU.

``cadence recipe toy --out runs/toy`` synthesizes its corpus with espeak-ng (``CORPUS``: about
70 minutes of 84 synthetic speakers, 8 of them and 100 of the sentences held out), writes one
TOML job per model to ``runs/toy/jobs/`` (edit and rerun any of them with ``cadence train``),
runs them in dependency order, and assembles ``runs/toy/pipeline`` (``pipeline.json`` + the
release checkpoints + a held-out prompt and evaluation set), the directory ``cadence demo``,
``cadence generate --pipeline`` and ``SpeechContinuation`` load. ``--corpus DIR`` trains on an
existing corpus instead. A finished stage is skipped on a rerun, so an interrupted recipe
continues where it stopped.

The budget: at most 90 minutes on 2 CPU cores with ``--workers 2`` (measured figures in
docs/pipeline.md).
"""

from __future__ import annotations

import json
import shutil
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from rich.console import Console

from cadence.core.checkpoint import CONFIG_NAME, quantize_weights
from cadence.core.io import write_json, write_text

from .components import PipelineError
from .demo import EVAL_FILE
from .evaluation import evaluate_pipeline
from .pipeline import PIPELINE_FILE, write_pipeline
from .training import TrainJob, run_job, tokenize_corpus

# The corpus the recipe synthesizes (cadence.corpus.generate_corpus): held-out speakers say
# only held-out sentences, so every evaluation is on new voices *and* new sentences.
CORPUS: dict[str, Any] = {
    "num_utterances": 1700,
    "voices": [
        "en-us",
        "en",
        "en-gb-x-rp",
        "en-gb-scotland",
        "en-029",
        "en-gb-x-gbclan",
        "en-gb-x-gbcwmd",
    ],
    "variants": ["m1", "m2", "m3", "m4", "m5", "m6", "m7", "f1", "f2", "f3", "f4", "f5"],
    "valid_speakers": 8,
    "num_sentences": 2000,
    "held_out_sentences": 100,
    "seed": 0,
}
# Held-out utterances per speaker shipped inside the pipeline (the `cadence eval` default).
SHIPPED_PER_SPEAKER = 5

_ADVERSARIAL_OFF = 10**9

# The codec's reconstruction on the mel loss alone, no GAN: measured, the waveform L1 and the
# gradient balancer cost this codec PESQ (docs/pipeline.md). Both codec jobs train so.
_MEL_ONLY = {
    "balancer": False,
    "mel_weight": 1.0,
    "l1_weight": 0.0,
    "discriminator_start_step": _ADVERSARIAL_OFF,
    "adversarial_start_step": _ADVERSARIAL_OFF,
    "ema_decay": 0.99,
    "save_every": 500,
    "eval_batch_size": 8,
    "log_every": 50,
}

# Each job: its stage, the inputs it needs, and its model and trainer settings.
TOY_JOBS: dict[str, dict[str, Any]] = {
    "codec": {
        # ISTFTCodec: a frame-rate codec with an inverse-STFT head (docs/packages/codec.md);
        # 8 levels x 1024 codes at 50 Hz = 4 kbit/s.
        "stage": "codec",
        "architecture": "istft",
        "crop_seconds": 1.0,
        # narrower than the class default (256/384): fits the recipe's time and size budgets
        "model": {"dim": 192, "decoder_dim": 320},
        "trainer": {
            "max_steps": 2500,
            "batch_size": 16,
            "generator_lr": 1e-3,
            "discriminator_lr": 2e-4,
            "betas": [0.8, 0.99],
            "weight_decay": 0.01,
            "warmup_steps": 100,
            "schedule": "cosine",
            **_MEL_ONLY,
        },
    },
    "codec_decoder": {
        # The codec's decoder alone goes on for 1500 more steps, its encoder side frozen
        # (`frozen_modules`): every code and latent stays the same, so the models trained on
        # them stay valid and this can run beside them. Measured (docs/pipeline.md): PESQ
        # 1.91 -> 2.01, resynthesis PER 3.6% -> 3.1%. It writes over the codec's release.
        "stage": "codec",
        "architecture": "istft",
        "crop_seconds": 1.0,
        "trainer": {
            "max_steps": 1500,
            "batch_size": 16,
            "generator_lr": 3e-4,
            "betas": [0.8, 0.99],
            "weight_decay": 0.01,
            "warmup_steps": 50,
            "schedule": "cosine",
            **_MEL_ONLY,
            "frozen_modules": ["mel", "encoder", "to_latent", "quantizer"],
        },
    },
    "semantic_tokenizer": {
        # supervised semantic tokens (CosyVoice's S3 idea): k-means over layer 4 of a CTC
        # phoneme encoder (bench/semantic/README.md: 0.63 phone purity vs 0.48 for MFCC k-means)
        "stage": "semantic_tokenizer",
        "architecture": "phonetic",
        "model": {"layer": 4},
        "train": {"num_clusters": 256, "batch_size": 10000, "max_steps": 150},
        "trainer": {
            # CTC's blank plateau lasts 200-400 steps, and the released EMA weights lag ~100
            # steps behind: at 500 steps the encoder still had 84% PER (900: see docs)
            "max_steps": 900,
            "batch_size": 16,
            "learning_rate": 2e-3,
            "warmup_steps": 60,
            "ema_decay": 0.99,
            "save_every": 300,
            "log_every": 25,
        },
    },
    "semantic_lm": {
        "stage": "semantic_lm",
        # chains of one speaker's utterances: the LM learns to go on after an utterance ends
        "speaker_chains": True,
        "model": {
            "dim": 192,
            "depth": 4,
            "heads": 4,
            "dim_head": 48,
            "max_seq_len": 512,
            "ff_dropout": 0.1,
            "attn_dropout": 0.1,
        },
        "trainer": {
            "max_steps": 500,
            "batch_size": 8,
            "learning_rate": 1e-3,
            "warmup_steps": 60,
            "weight_decay": 0.1,
            "ema_decay": 0.99,
            "save_every": 300,
            "log_every": 25,
        },
    },
    "soundstorm": {
        "stage": "soundstorm",
        "model": {
            "backbone": {
                "kind": "conformer",
                "dim": 192,
                "depth": 4,
                "heads": 4,
                "ff_mult": 2.0,
                "conv_kernel_size": 15,
            }
        },
        # levels 0-2 carry what a listener understands (the codec's resynthesis from level 0
        # alone has 22% PER, from 0-2 5%, from all 8 3%): train them more often
        "train": {"level_weights": [4, 3, 2, 1, 1, 1, 1, 1]},
        "trainer": {
            # 800 -> 2000 -> 4000 steps measured: held-out PER 45% -> 17% -> 12.5% (docs/pipeline.md)
            "max_steps": 4000,
            "batch_size": 16,
            "learning_rate": 1.5e-3,
            "warmup_steps": 150,
            "ema_decay": 0.99,
            "save_every": 500,
            "log_every": 25,
        },
    },
    "naturalspeech2": {
        "stage": "naturalspeech2",
        "model": {"tiny": True, "dim": 128, "wavenet_channels": 96, "wavenet_depth": 10},
        # the paper's CE-RVQ weight, 0.1, made CE-RVQ ~90% of the loss on these normalised
        # latents (MSE ~0.14 against 0.1 x 41): at 0.01 held-out PER 13.8% -> 9.5% (800 steps);
        # 0 measured 9.0%, so CE-RVQ stays, at a weight that no longer dominates
        "train": {"lambda_ce_rvq": 0.01},
        "trainer": {
            # at lambda_ce_rvq 0.01, 800 -> 1600 steps: held-out PER 9.3% -> 7.2% (`cadence
            # eval`; 2400 steps: 8.0%; at 0.1 the longer run had been worse: 24.3% -> 26.4%)
            "max_steps": 1600,
            "batch_size": 16,
            "learning_rate": 1e-3,
            "warmup_steps": 100,
            "ema_decay": 0.99,
            "save_every": 500,
            "log_every": 25,
        },
    },
    "flowmatching": {
        "stage": "flowmatching",
        "max_frames": 200,
        "model": {
            "flow": {
                "semantic_dim": 128,
                "backbone": {
                    "kind": "conformer",
                    "dim": 160,
                    "depth": 4,
                    "heads": 4,
                    "conv_kernel_size": 15,
                    "cond_dim": 160,
                },
            }
        },
        "trainer": {
            # 700 -> 1400 steps: held-out conversion PER 14.0% -> 10.9%, similarity 0.806 -> 0.824
            "max_steps": 1400,
            "batch_size": 16,
            "learning_rate": 1e-3,
            "warmup_steps": 100,
            "ema_decay": 0.99,
            "save_every": 500,
            "log_every": 25,
        },
    },
    "phoneme_recognizer": {
        # the grader: a separate model from the tokenizer's encoder (own seed, 4 blocks)
        "stage": "phoneme_recognizer",
        "trainer": {
            "max_steps": 800,
            "batch_size": 16,
            "learning_rate": 2e-3,
            "warmup_steps": 60,
            "ema_decay": 0.99,
            "save_every": 200,
            "log_every": 25,
            "seed": 1,
        },
    },
}

# Jobs that go on from another job's release and write over it (no component of their own).
REFINES = {"codec_decoder": "codec"}

# The pipeline's components, one job each.
COMPONENT_JOBS = tuple(name for name in TOY_JOBS if name not in REFINES)

# The order jobs run in; "tokenize" writes the shards the token-level models train on.
ORDER = (
    "corpus",
    "codec",
    "codec_decoder",
    "semantic_tokenizer",
    "tokenize",
    "semantic_lm",
    "soundstorm",
    "naturalspeech2",
    "flowmatching",
    "phoneme_recognizer",
)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {_toml_value(v)}" for k, v in value.items()) + " }"
    return repr(value)


def job_toml(spec: dict[str, Any]) -> str:
    """A job spec as TOML (top-level keys, then ``[model]``, ``[train]`` and ``[trainer]`` tables)."""
    lines, tables = [], []
    for key, value in spec.items():
        if key in ("model", "train", "trainer"):
            tables.append((key, value))
        else:
            lines.append(f"{key} = {_toml_value(value)}")
    for name, table in tables:
        lines += ["", f"[{name}]"] + [f"{k} = {_toml_value(v)}" for k, v in table.items()]
    return "\n".join(lines) + "\n"


def _scaled(spec: dict[str, Any], steps_scale: float) -> dict[str, Any]:
    spec = json.loads(json.dumps(spec))
    trainer = spec.get("trainer", {})
    if "max_steps" in trainer and steps_scale != 1.0:
        trainer["max_steps"] = max(2, round(trainer["max_steps"] * steps_scale))
        for key in ("warmup_steps", "save_every"):
            if key in trainer:
                trainer[key] = max(1, min(trainer[key], trainer["max_steps"] // 2 or 1))
    return spec


def write_jobs(out: Path, corpus: Path, *, steps_scale: float = 1.0) -> dict[str, Path]:
    """Write the toy recipe's job files to ``out/jobs`` (paths relative to them)."""
    jobs_dir = out / "jobs"
    jobs_dir.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name, spec in TOY_JOBS.items():
        spec = _scaled(spec, steps_scale)
        component = REFINES.get(name, name)
        spec = {
            "stage": spec.pop("stage"),
            "corpus": str(corpus.resolve()),
            "output": f"../pipeline/{component}",
            **({"init_from": f"../pipeline/{component}"} if name in REFINES else {}),
            "run_dir": f"../runs/{name}",
            **(
                {"shards": "../shards"}
                if name in ("semantic_lm", "soundstorm", "flowmatching")
                else {}
            ),
            **({"codec": "../pipeline/codec"} if name == "naturalspeech2" else {}),
            **spec,
        }
        paths[name] = jobs_dir / f"{name}.toml"
        write_text(paths[name], job_toml(spec))
    return paths


def _record_time(timing_file: Path, stage: str, elapsed: float) -> None:
    if elapsed > 1:
        # Re-read: stages of one recipe may run in separate processes (`--only`).
        timings = json.loads(timing_file.read_text()) if timing_file.is_file() else {}
        timings[stage] = round(elapsed, 1)
        write_json(timing_file, timings)


def _done(directory: Path) -> bool:
    return (directory / CONFIG_NAME).is_file()


def _refined(directory: Path) -> bool:
    """Whether the release in ``directory`` went on from another (its last job had init_from):
    a retrained base codec writes a summary without it, so its decoder stage runs again."""
    summary = directory / "training.json"
    return summary.is_file() and "init_from" in json.loads(summary.read_text())


def copy_held_out(corpus: Path, destination: Path, *, per_speaker: int | None = None) -> Path:
    """Copy the corpus's held-out split (``valid.jsonl`` and its audio) into the pipeline.

    ``cadence eval`` and ``cadence demo`` then need no corpus: the wheel carries speakers and
    sentences no model trained on. ``per_speaker`` keeps the first utterances of each held-out
    speaker only (what ships must stay small).
    """
    rows = [
        json.loads(line)
        for line in (corpus / "valid.jsonl").read_text().splitlines()
        if line.strip()
    ]
    if per_speaker is not None:
        seen: dict[str, int] = defaultdict(int)
        kept = []
        for row in rows:
            seen[row.get("speaker", "")] += 1
            if seen[row.get("speaker", "")] <= per_speaker:
                kept.append(row)
        rows = kept
    for row in rows:
        source = corpus / row["path"]  # an absolute manifest path stays absolute
        # the copy keeps the corpus layout (audio/<speaker>/<file>), relative to the new manifest
        row["path"] = Path("audio", source.parent.name, source.name).as_posix()
        target = destination / row["path"]
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)
    write_text(
        destination / "valid.jsonl", "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
    )
    return destination


def _held_out_prompt(corpus: Path, destination: Path) -> Path:
    """Copy the first validation utterance (a speaker no model trained on) as the demo prompt."""
    with open(corpus / "valid.jsonl") as f:
        item = json.loads(f.readline())
    source = corpus / item["path"]
    destination.mkdir(parents=True, exist_ok=True)
    target = destination / f"prompt{source.suffix}"
    shutil.copyfile(source, target)
    write_text(
        destination / "prompt.json",
        json.dumps(
            {k: item[k] for k in ("id", "text", "phonemes", "speaker") if k in item},
            indent=2,
            ensure_ascii=False,
        )
        + "\n",
    )
    return target


# What each step needs finished first (the parallel schedule follows it).
NEEDS: dict[str, tuple[str, ...]] = {
    "corpus": (),
    "codec": ("corpus",),
    "codec_decoder": ("codec",),
    "semantic_tokenizer": ("corpus",),
    "tokenize": ("codec", "semantic_tokenizer"),
    "semantic_lm": ("tokenize",),
    "soundstorm": ("tokenize",),
    "naturalspeech2": ("codec",),
    "flowmatching": ("tokenize",),
    "phoneme_recognizer": ("corpus",),
}


def make_corpus(
    directory: Path, spec: dict[str, Any] | None = None, *, console: Console | None = None
) -> Path:
    """Synthesize the recipe's corpus into ``directory`` (skipped when it is already there)."""
    from cadence.corpus import generate_corpus

    if (directory / "corpus.json").is_file():
        return directory
    spec = dict(CORPUS if spec is None else spec)
    (console or Console()).print(
        f"[bold]corpus[/]: synthesizing {spec['num_utterances']} utterances into {directory}"
    )
    generate_corpus(directory, **spec, overwrite=directory.exists())
    return directory


def _run_in_parallel(
    out: Path, corpus: Path, steps_scale: float, workers: int, console: Console
) -> None:
    """Run the steps as ``workers`` concurrent processes of one thread each, in dependency order.

    On a CPU, models this small use two cores better as two one-thread processes than as one
    two-thread process. Each step's output goes to ``out/logs/<step>.log``.
    """
    import os
    import subprocess
    import sys

    logs = out / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    # the corpus is made (or given) before the stages start
    pending, finished = [s for s in ORDER if s != "corpus"], {"corpus"}
    running: dict[str, tuple[subprocess.Popen, float, Any]] = {}
    while pending or running:
        for stage in [s for s in pending if all(n in finished for n in NEEDS[s])]:
            if len(running) >= workers:
                break
            command = [
                sys.executable,
                "-m",
                "cadence.pipeline.cli",
                "recipe",
                "toy",
                "--out",
                str(out),
                "--corpus",
                str(corpus),
                "--steps-scale",
                str(steps_scale),
                "--no-assemble",
                "--only",
                stage,
            ]
            log = open(logs / f"{stage}.log", "w")  # noqa: SIM115 (closed when the process ends)
            running[stage] = (
                subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT),
                time.time(),
                log,
            )
            pending.remove(stage)
            console.print(f"[bold]{stage}[/]: started (log: {logs / f'{stage}.log'})")
        time.sleep(1.0)
        for stage, (process, start, log) in list(running.items()):
            if process.poll() is None:
                continue
            del running[stage]
            log.close()
            if process.returncode != 0:
                for other, _, _ in running.values():
                    other.terminate()
                raise PipelineError(
                    f"recipe step {stage!r} failed (exit {process.returncode}); see {logs / f'{stage}.log'}"
                )
            finished.add(stage)
            console.print(f"[bold]{stage}[/]: done in {(time.time() - start) / 60:.1f} min")


def run_toy_recipe(
    out: str | Path,
    corpus: str | Path | None = None,
    *,
    steps_scale: float = 1.0,
    only: tuple[str, ...] | None = None,
    workers: int = 1,
    assemble: bool = True,
    console: Console | None = None,
) -> Path:
    """Train the chain on ``corpus`` into ``out``; returns the pipeline directory.

    ``corpus``: an existing corpus directory; None synthesizes the recipe's own (``CORPUS``)
    into ``out/corpus`` first. ``steps_scale`` multiplies every model's step count (e.g. 0.01
    for a smoke run);
    ``only`` limits the run to some stages (their inputs must exist); ``workers`` > 1 runs
    independent stages at the same time, each in its own one-thread process.
    """
    console = console or Console()
    out = Path(out)
    synthesize = corpus is None
    corpus = out / "corpus" if corpus is None else Path(corpus)
    if synthesize and (only is None or "corpus" in only):
        start = time.perf_counter()
        make_corpus(corpus, console=console)
        _record_time(out / "timings.json", "corpus", time.perf_counter() - start)
    for split in ("train", "valid"):
        if not (corpus / f"{split}.jsonl").is_file():
            raise PipelineError(f"{corpus} is not a corpus: {split}.jsonl is missing")
    if workers > 1 and only is None:
        _run_in_parallel(out, corpus, steps_scale, workers, console)
        only = ()  # every stage is done: what follows assembles and evaluates the pipeline
    paths = write_jobs(out, corpus, steps_scale=steps_scale)
    pipeline_dir = out / "pipeline"
    timing_file = out / "timings.json"
    for stage in ORDER:
        if stage == "corpus" or (only is not None and stage not in only):
            continue
        start = time.perf_counter()
        if stage == "tokenize":
            for split in ("train", "valid"):
                if (out / "shards" / split / "manifest.json").is_file():
                    continue
                console.print(
                    f"[bold]tokenize[/] {split}: codec codes, latents and semantic tokens"
                )
                tokenize_corpus(
                    corpus / f"{split}.jsonl",
                    out / "shards" / split,
                    codec=pipeline_dir / "codec",
                    tokenizer=pipeline_dir / "semantic_tokenizer",
                    latents=True,
                )
        else:
            job = TrainJob.from_toml(paths[stage])
            done = _refined if stage in REFINES else _done
            if done(Path(job.output)):
                console.print(f"[dim]{stage}: done ({job.output})[/]")
                continue
            console.rule(f"[bold]{stage}")
            (pipeline_dir / EVAL_FILE).unlink(
                missing_ok=True
            )  # the metrics no longer describe the pipeline
            metrics = run_job(job)
            console.print(f"{stage}: " + ", ".join(f"{k}={v:.4g}" for k, v in metrics.items()))
        _record_time(timing_file, stage, time.perf_counter() - start)
    # Stages run by the parallel scheduler leave the assembly to it (two finishing at once
    # would both write the pipeline).
    finished = all(_done(pipeline_dir / name) for name in COMPONENT_JOBS) and all(
        _refined(pipeline_dir / component) for component in REFINES.values()
    )
    if assemble and finished:
        _held_out_prompt(corpus, pipeline_dir / "prompts")
        copy_held_out(corpus, pipeline_dir / "held_out", per_speaker=SHIPPED_PER_SPEAKER)
        for name in COMPONENT_JOBS:
            # blockwise int8 storage: what ships stays under ~40 MB (cadence.core.checkpoint)
            quantize_weights(pipeline_dir / name)
        write_pipeline(
            pipeline_dir,
            {name: name for name in COMPONENT_JOBS},
            prompt="prompts/prompt.flac",
            description="toy recipe: ISTFTCodec, phonetic semantic tokens, AudioLM semantic stage, "
            "SoundStorm, NaturalSpeech 2, flow matching, trained on a synthetic corpus",
            weights_dtype="int8 blocks of 64 with float16 scales; small tensors float16",
            held_out="held_out",
        )
        eval_file = pipeline_dir / EVAL_FILE
        if not eval_file.is_file():
            console.rule("[bold]evaluate")
            start = time.perf_counter()
            # the held-out set that ships, so the figures are what `cadence eval` reproduces
            report = evaluate_pipeline(pipeline_dir, pipeline_dir / "held_out")
            report["setup"]["evaluate_seconds"] = round(time.perf_counter() - start, 1)
            write_json(eval_file, report)
        console.print(f"pipeline ready: {pipeline_dir / PIPELINE_FILE} (metrics in {eval_file})")
    return pipeline_dir
