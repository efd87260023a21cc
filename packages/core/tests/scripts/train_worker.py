"""Run by test_trainer.py under `accelerate launch --num_processes 2 --cpu`.

Trains a tiny regressor with the shared Trainer on every process, resumes a second Trainer
from the mid-run checkpoint, and has the main process write a JSON report (world size,
per-rank losses, whether the ranks' weights agree, whether the resumed losses match).

Usage: python -m accelerate.commands.launch ... train_worker.py OUTPUT_DIR RESULT_JSON
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import TensorDataset

from cadence.core.config import Config
from cadence.core.train import StepOutput, Trainer, TrainerConfig


@dataclass(frozen=True, kw_only=True)
class WorkerModelConfig(Config):
    dim: int = 32


class WorkerModel(nn.Module):
    config_class = WorkerModelConfig

    def __init__(self, config: WorkerModelConfig):
        super().__init__()
        self.config = config
        self.net = nn.Sequential(
            nn.Linear(8, config.dim), nn.GELU(), nn.Dropout(0.1), nn.Linear(config.dim, 2)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def step(model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> StepOutput:
    x, y = batch
    return StepOutput(loss=F.mse_loss(model(x), y))


def data() -> TensorDataset:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(96, 8, generator=g)
    y = torch.tanh(x @ torch.randn(8, 2, generator=g)) * 2
    return TensorDataset(x, y)


def model() -> WorkerModel:
    torch.manual_seed(0)  # identical init on every rank (DDP also broadcasts rank 0's)
    return WorkerModel(WorkerModelConfig())


def main() -> None:
    out_dir, result_path = Path(sys.argv[1]), Path(sys.argv[2])
    # 96 items / (4 per batch x 2 ranks) = 12 batches per rank per epoch = 6 steps: the run
    # crosses epochs, and the step-15 checkpoint sits mid-epoch.
    cfg = TrainerConfig(
        max_steps=30,
        batch_size=4,
        learning_rate=2e-2,
        warmup_steps=2,
        gradient_accumulation_steps=2,
        max_grad_norm=1.0,
        ema_decay=0.9,
        save_every=15,
        keep_last_checkpoints=None,
        log_every=5,
        seed=7,
    )
    full = Trainer(model(), step, data(), cfg, output_dir=out_dir / "full")
    acc = full.accelerator
    history = full.train()
    full.save_pretrained(out_dir / "release")

    resumed = Trainer(model(), step, data(), cfg, output_dir=out_dir / "resumed")
    resumed_history = resumed.train(resume_from=out_dir / "full" / "checkpoints" / "step-00000015")

    losses = torch.tensor([r["loss"] for r in history], dtype=torch.float64)
    resumed_losses = torch.tensor([r["loss"] for r in resumed_history], dtype=torch.float64)
    exact = torch.tensor(float(torch.equal(resumed_losses, losses[15:])))
    params = torch.cat([p.detach().flatten() for p in full.unwrapped_model.parameters()])
    resumed_params = torch.cat([p.detach().flatten() for p in resumed.unwrapped_model.parameters()])

    all_losses = acc.gather(losses[None])  # (ranks, steps)
    all_params = acc.gather(params[None])
    all_exact = acc.gather(exact[None])
    resumed_same = acc.gather(torch.tensor([float(torch.equal(params, resumed_params))]))
    if acc.is_main_process:
        result = {
            "num_processes": acc.num_processes,
            "distributed_type": str(acc.distributed_type),
            "losses": all_losses.tolist(),
            "params_identical": bool(torch.equal(all_params[0], all_params[1])),
            "resume_exact": bool(all_exact.all()),
            "resumed_params_identical": bool(resumed_same.all()),
            "steps": [r["step"] for r in history],
        }
        result_path.write_text(json.dumps(result, indent=2))
    acc.wait_for_everyone()


if __name__ == "__main__":
    main()
