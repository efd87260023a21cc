"""A seeded training job is reproducible on CPU (issue 20): two fresh runs log the same losses
and release the same weights, and a run killed and resumed equals one that never stopped."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from cadence.core.train import Trainer
from cadence.pipeline.recipe import job_toml
from cadence.pipeline.training import TrainJob, run_job


@pytest.fixture
def shards(mini_shards) -> Path:
    return mini_shards  # read only here


def semantic_lm_job(directory: Path, shards: Path, *, max_steps: int = 4) -> TrainJob:
    path = directory / "semantic_lm.toml"
    directory.mkdir(parents=True, exist_ok=True)
    model = {"dim": 32, "depth": 1, "heads": 2, "dim_head": 16, "max_seq_len": 128}
    # dropout on, so that reproducible dropout is part of what is checked
    model.update(attn_dropout=0.1, ff_dropout=0.1)
    trainer = {"max_steps": max_steps, "batch_size": 4, "learning_rate": 1e-3}
    trainer.update(save_every=2, log_every=1, seed=7)
    job = {"stage": "semantic_lm", "shards": str(shards), "output": "release", "run_dir": "run"}
    path.write_text(job_toml({**job, "model": model, "trainer": trainer}))
    return TrainJob.from_toml(path)


@pytest.fixture
def logged_losses(monkeypatch) -> list[list[float]]:
    """The per-step losses of every Trainer.train call, in order."""
    runs: list[list[float]] = []
    real = Trainer.train

    def train(self, *args, **kwargs):
        history = real(self, *args, **kwargs)
        runs.append([row["loss"] for row in history])
        return history

    monkeypatch.setattr(Trainer, "train", train)
    return runs


def weights(job: TrainJob) -> dict[str, torch.Tensor]:
    return load_file(str(Path(job.output) / "model.safetensors"))


def assert_same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), name


def test_two_fresh_runs_log_the_same_losses_and_release_the_same_weights(
    tmp_path, shards, logged_losses
):
    first = semantic_lm_job(tmp_path / "first", shards)
    second = semantic_lm_job(tmp_path / "second", shards)
    torch.manual_seed(123)  # whatever ran before must not matter
    run_job(first)
    torch.rand(1000)  # nor what ran in between
    run_job(second)
    assert len(logged_losses) == 2 and len(logged_losses[0]) == 4
    assert logged_losses[0] == logged_losses[1]
    assert_same_weights(weights(first), weights(second))


class Killed(Exception):
    """Stands for the process being killed."""


def test_a_killed_and_resumed_run_equals_an_uninterrupted_one(
    tmp_path, shards, logged_losses, monkeypatch
):
    whole = semantic_lm_job(tmp_path / "whole", shards)
    run_job(whole)

    killed = semantic_lm_job(tmp_path / "killed", shards)
    real_after_step = Trainer._after_step

    def after_step(self, bar):
        real_after_step(self, bar)
        if self.global_step == 3:  # after the step-2 checkpoint, before the next one
            raise Killed

    monkeypatch.setattr(Trainer, "_after_step", after_step)
    with pytest.raises(Killed):
        run_job(killed)
    assert not (Path(killed.output) / "model.safetensors").exists()
    monkeypatch.setattr(Trainer, "_after_step", real_after_step)
    run_job(killed)  # the same command again resumes from step 2

    uninterrupted, resumed = logged_losses[0], logged_losses[-1]
    assert len(resumed) == 2 and resumed == uninterrupted[2:]
    assert_same_weights(weights(whole), weights(killed))
