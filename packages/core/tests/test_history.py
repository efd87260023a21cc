"""The training log on disk (history.jsonl): what the Trainer writes, and how it reads back."""

from __future__ import annotations

import json
import math

import pytest

from cadence.core.train import HISTORY_FILE, Trainer, TrainerConfig, append_history, read_history

from .test_trainer import make_data, make_model, regression_step


def test_read_history_merges_a_step_keeps_the_last_value_and_skips_a_torn_line(tmp_path):
    path = tmp_path / HISTORY_FILE
    append_history(path, 4, {"train/loss": 2.0, "train/lr": 1e-3})
    append_history(path, 4, {"eval/loss": 3.0})
    append_history(path, 2, {"train/loss": 5.0, "train/bad": math.nan})
    append_history(path, 4, {"train/loss": 1.5})  # a resumed run logs step 4 again
    with open(path, "a") as f:
        f.write('{"step": 6, "train/lo')  # killed mid-write
    rows = read_history(path)
    assert rows == [
        {"step": 2.0, "train/loss": 5.0},
        {"step": 4.0, "train/loss": 1.5, "train/lr": 1e-3, "eval/loss": 3.0},
    ]
    assert read_history(tmp_path / "missing.jsonl") == []


def test_trainer_writes_its_logged_loss_and_eval_metrics_to_history_jsonl(tmp_path):
    cfg = TrainerConfig(max_steps=8, batch_size=4, log_every=4, eval_every=4, save_every=None)
    trainer = Trainer(
        make_model(), regression_step, make_data(), cfg, output_dir=tmp_path,
        eval_dataset=make_data(8, seed=1),
    )  # fmt: skip
    history = trainer.train()
    rows = read_history(tmp_path / HISTORY_FILE)
    assert [row["step"] for row in rows] == [4.0, 8.0]
    for row in rows:
        assert {"train/loss", "train/lr", "train/mae", "eval/loss"} <= set(row)
        step = int(row["step"])
        logged = [h["loss"] for h in history if step - 4 < h["step"] <= step]
        assert row["train/loss"] == pytest.approx(sum(logged) / len(logged))  # the mean
        assert row["eval/loss"] == next(h for h in history if h["step"] == step)["eval/loss"]
    lines = (tmp_path / HISTORY_FILE).read_text().splitlines()
    assert all(isinstance(json.loads(line), dict) for line in lines)
