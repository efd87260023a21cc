"""Training jobs: TOML files, the toy recipe end to end (few steps), and a 2-process accelerate run."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from cadence.core.checkpoint import halve_weights, load_pretrained
from cadence.pipeline.cli import default_pipeline
from cadence.pipeline.components import PipelineError
from cadence.pipeline.recipe import (
    COMPONENT_JOBS,
    REFINES,
    TOY_JOBS,
    job_toml,
    run_toy_recipe,
    write_jobs,
)
from cadence.pipeline.training import STAGES, TrainJob


def test_every_stage_has_a_toy_job():
    assert set(COMPONENT_JOBS) == set(STAGES)
    assert set(TOY_JOBS) == {*STAGES, *REFINES}


def test_job_files_round_trip(tmp_path, corpus):
    paths = write_jobs(tmp_path, corpus)
    for name, path in paths.items():
        job = TrainJob.from_toml(path)
        component = REFINES.get(name, name)
        assert job.stage == component
        assert (
            Path(job.output) == (tmp_path / "pipeline" / component).resolve()
        )  # relative to the job file
        # a refining job goes on from the release it writes over
        assert job.init_from == (str(Path(job.output)) if name in REFINES else None)
        assert job.model == TOY_JOBS[name].get("model", {})
        assert job.trainer == TOY_JOBS[name]["trainer"]


def test_job_errors(tmp_path):
    with pytest.raises(PipelineError, match="needs `shards"):
        TrainJob(stage="soundstorm", output="x")
    with pytest.raises(PipelineError, match="needs `codec"):
        TrainJob(stage="naturalspeech2", output="x", corpus="c")
    with pytest.raises(PipelineError, match="needs `codec"):  # its frames are the codec's
        TrainJob(stage="aligner", output="x", corpus="c")
    path = tmp_path / "job.toml"
    path.write_text(
        job_toml(
            {"stage": "semantic_lm", "output": "out", "shards": "s", "trainer": {"max_steps": 0}}
        )
    )
    job = TrainJob.from_toml(path)
    with pytest.raises(PipelineError, match="no shards"):
        from cadence.pipeline.training import run_job

        run_job(job)


def test_halved_weights_load_into_float32(tmp_path):
    source = default_pipeline() / "semantic_lm"
    model = load_pretrained(source)
    assert all(p.dtype == torch.float32 for p in model.parameters())
    model.save_pretrained(tmp_path / "lm")
    full = (tmp_path / "lm" / "model.safetensors").stat().st_size
    assert halve_weights(tmp_path / "lm") > 0.45 * full
    assert halve_weights(tmp_path / "lm") == 0  # once only
    again = load_pretrained(tmp_path / "lm")
    for a, b in zip(model.parameters(), again.parameters()):
        assert b.dtype == torch.float32
        torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-4)


@pytest.mark.slow
def test_toy_recipe_runs_end_to_end(tmp_path, mini_corpus):
    """Every stage, with each model's toy size, for a few steps on 17 utterances; two stages at
    a time in separate processes (the dependency order is what makes this work)."""
    pipeline = run_toy_recipe(tmp_path / "toy", mini_corpus, steps_scale=0.002, workers=2)
    logs = sorted(p.stem for p in (tmp_path / "toy" / "logs").glob("*.log"))
    assert logs == sorted((*STAGES, *REFINES, "tokenize"))
    # the codec's release is the decoder stage's, which went on from the codec stage's
    summary = json.loads((pipeline / "codec" / "training.json").read_text())
    assert Path(summary["init_from"]) == (pipeline / "codec").resolve()
    spec = json.loads((pipeline / "pipeline.json").read_text())
    assert set(spec["components"]) == set(STAGES)
    report = json.loads((pipeline / "eval.json").read_text())
    assert {
        "codec",
        "semantic_lm",
        "soundstorm",
        "naturalspeech2",
        "flowmatching",
        "intelligibility",
    } <= set(report)
    timings = json.loads((tmp_path / "toy" / "timings.json").read_text())
    assert "codec" in timings
    # a rerun finds every stage done and trains nothing
    before = {p: p.stat().st_mtime for p in pipeline.rglob("model.safetensors")}
    run_toy_recipe(tmp_path / "toy", mini_corpus, steps_scale=0.002)
    assert before == {p: p.stat().st_mtime for p in pipeline.rglob("model.safetensors")}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_train_stage_under_accelerate_launch_with_two_processes(tmp_path, mini_shards):
    shipped = default_pipeline()
    shutil.copytree(mini_shards, tmp_path / "shards")
    job = tmp_path / "semantic_lm.toml"
    job.write_text(
        job_toml(
            {
                "stage": "semantic_lm",
                "shards": "shards",
                "output": "release",
                "run_dir": "run",
                "model": {"dim": 32, "depth": 1, "heads": 2, "dim_head": 16, "max_seq_len": 256},
                "trainer": {
                    "max_steps": 6,
                    "batch_size": 2,
                    "learning_rate": 1e-3,
                    "save_every": 6,
                    "log_every": 1,
                },
            }
        )
    )
    # `--multi_gpu` with ACCELERATE_USE_CPU=1 runs torch.distributed over gloo on the CPU
    # (accelerate's own --cpu multi-process path needs mpirun); see docs/training.md.
    env = {
        **os.environ,
        "ACCELERATE_USE_CPU": "1",
        "CUDA_VISIBLE_DEVICES": "",
        "OMP_NUM_THREADS": "1",
    }
    cmd = [
        sys.executable, "-m", "accelerate.commands.launch",
        "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
        "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", str(_free_port()),
        "-m", "cadence.pipeline.cli", "train", "semantic_lm", "--config", str(job),
    ]  # fmt: skip
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=280, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-4000:]
    checkpoint = tmp_path / "run" / "checkpoints" / "step-00000006"
    assert {"random_states_0.pkl", "random_states_1.pkl"} <= {p.name for p in checkpoint.iterdir()}
    summary = json.loads((tmp_path / "release" / "training.json").read_text())
    assert summary["num_processes"] == 2
    model = load_pretrained(tmp_path / "release")
    assert (
        model.config.codebook_size == load_pretrained(shipped / "semantic_tokenizer").codebook_size
    )


def test_the_recipe_synthesizes_its_own_corpus_with_held_out_speakers_and_sentences(tmp_path):
    from cadence.pipeline.recipe import CORPUS, make_corpus

    assert (
        CORPUS["num_utterances"] >= 1500 and len(CORPUS["voices"]) * len(CORPUS["variants"]) >= 40
    )
    spec = {**CORPUS, "num_utterances": 90, "num_sentences": 400, "held_out_sentences": 10}
    corpus = make_corpus(tmp_path / "corpus", spec)
    rows = {split: [json.loads(x) for x in (corpus / f"{split}.jsonl").read_text().splitlines()]
            for split in ("train", "valid")}  # fmt: skip
    assert not {r["speaker"] for r in rows["train"]} & {r["speaker"] for r in rows["valid"]}
    assert not {r["text"] for r in rows["train"]} & {r["text"] for r in rows["valid"]}
    assert make_corpus(corpus, spec) == corpus  # a second call keeps what is there


@pytest.mark.slow
def test_codec_stage_retrains_the_shipped_decoder_alone(tmp_path, mini_corpus):
    """``init_from`` + ``frozen_modules``: how the shipped codec's decoder was retrained."""
    from cadence.codec import ISTFTCodec
    from cadence.pipeline.training import run_job

    shipped = default_pipeline() / "codec"
    frozen = ["mel", "encoder", "to_latent", "quantizer"]
    job = TrainJob(
        stage="codec", corpus=str(mini_corpus), output=str(tmp_path / "codec"),
        architecture="istft", init_from=str(shipped), crop_seconds=0.5,
        trainer={"max_steps": 2, "batch_size": 2, "eval_batch_size": 2, "generator_lr": 1e-3,
                 "discriminator_start_step": 10**9, "adversarial_start_step": 10**9,
                 "balancer": False, "l1_weight": 0.0, "save_every": None,
                 "frozen_modules": frozen},
    )  # fmt: skip
    run_job(job)
    before = ISTFTCodec.load_pretrained(shipped).state_dict()
    after = ISTFTCodec.load_pretrained(tmp_path / "codec").state_dict()
    moved = {k.split(".")[0] for k in before if not torch.equal(before[k], after[k])}
    assert moved == {"decoder", "head"}
    with pytest.raises(PipelineError, match="no \\[model\\]"):
        TrainJob(stage="codec", corpus="c", output="x", init_from="y", model={"dim": 8})
    with pytest.raises(PipelineError, match="a stage among codec, semantic_lm"):
        TrainJob(stage="naturalspeech2", corpus="c", codec="k", output="x", init_from="y")


def test_soundstorm_stage_fine_tunes_the_shipped_model(tmp_path, mini_shards):
    """``init_from`` on a token model: more steps on a release, its config kept; a release of
    other codes than the shards' is refused before any training."""
    from cadence.pipeline.training import run_job
    from cadence.soundstorm import SoundStorm, SoundStormConfig

    shipped = default_pipeline() / "soundstorm"
    trainer = {"max_steps": 2, "batch_size": 2, "learning_rate": 1e-3, "save_every": None}
    job = TrainJob(
        stage="soundstorm", shards=str(mini_shards), output=str(tmp_path / "ss"),
        init_from=str(shipped), trainer=trainer,
    )  # fmt: skip
    run_job(job)
    before, after = SoundStorm.load_pretrained(shipped), SoundStorm.load_pretrained(job.output)
    assert after.config == before.config
    old, new = before.state_dict(), after.state_dict()
    assert any(not torch.equal(old[k], new[k]) for k in old)  # trained from the release...
    drift = max((old[k].float() - new[k].float()).abs().max().item() for k in old)
    assert drift < 0.1  # ...not from scratch: two steps move weights by little

    SoundStorm(SoundStormConfig.tiny(num_quantizers=2)).save_pretrained(tmp_path / "other")
    other = TrainJob(
        stage="soundstorm", shards=str(mini_shards), output=str(tmp_path / "ss2"),
        init_from=str(tmp_path / "other"), trainer=trainer,
    )  # fmt: skip
    with pytest.raises(PipelineError, match="num_quantizers = 2 but the shards have 8"):
        run_job(other)
    assert not (tmp_path / "ss2").exists()
