"""Records what the flow-matching train step gave before training moved out of ``forward``.

Run once at commit 2621415 (``flow_matching_step`` calling the model's loss-returning
``forward``), from the repository root:
``uv run --no-sync python packages/flowmatching/tests/data/record_train_step.py``.
It writes ``train_step_regression.safetensors`` beside it: the weights of a tiny
hierarchical model with the semantic prior (every zero-initialised part made random; the
Gaussian-prior model has the same weights without ``flow.prior_proj``), one padded batch,
and the step's loss terms for each prior under a fixed global seed with non-default
training settings.
``tests/test_train_step_regression.py`` checks that today's train step gives the same.
"""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import save_file

from cadence.flowmatching import (
    FlowMatcherConfig,
    HierarchicalConditionalFlowMatcher,
    HierarchicalFlowMatcherConfig,
    flow_matching_step,
)

# b batch | s semantic frames | n latent frames | d latent dim

HERE = Path(__file__).parent
TRAINING = dict(
    cond_drop_prob=0.3, context_prob=0.6, min_generate_fraction=0.5, prior_loss_weight=0.7
)
SEED = 1234


def batch() -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(5)
    token_lengths = torch.tensor([10, 7, 4, 9])
    tokens_mask = torch.arange(10)[None] < token_lengths[:, None]
    latents_mask = torch.arange(20)[None] < 2 * token_lengths[:, None]
    tokens = torch.randint(0, 32, (4, 10), generator=gen) * tokens_mask
    latents = torch.randn(4, 20, 8, generator=gen) * latents_mask[..., None]
    return dict(tokens=tokens, tokens_mask=tokens_mask, latents=latents, latents_mask=latents_mask)


def model(prior: str) -> HierarchicalConditionalFlowMatcher:
    torch.manual_seed(0)
    flow = FlowMatcherConfig.tiny(prior=prior, **TRAINING)
    out = HierarchicalConditionalFlowMatcher(HierarchicalFlowMatcherConfig.tiny(flow=flow))
    gen = torch.Generator().manual_seed(123)
    with torch.no_grad():
        for name, p in out.named_parameters():
            if "to_scale_shift" in name or "output_proj" in name or "null_semantic" in name:
                p.copy_(0.1 * torch.randn(p.shape, generator=gen))
        out.flow.set_latent_statistics(torch.linspace(-0.5, 0.5, 8), torch.linspace(0.5, 2.0, 8))
    return out.train()


def main() -> None:
    tensors = {f"batch.{k}": v.contiguous() for k, v in batch().items()}
    for prior in ("semantic", "gaussian"):
        m = model(prior)
        if prior == "semantic":
            tensors |= {f"model.{k}": v.clone() for k, v in m.state_dict().items()}
        else:  # built from the same seeds: the same weights, less the prior projection
            assert all(torch.equal(v, tensors[f"model.{k}"]) for k, v in m.state_dict().items())
        torch.manual_seed(SEED)
        out = flow_matching_step(m, batch())
        out.loss.backward()
        tensors[f"{prior}.loss"] = out.loss.detach().clone()
        tensors[f"{prior}.flow_loss"] = out.metrics["flow_loss"].clone()
        tensors[f"{prior}.prior_loss"] = out.metrics["prior_loss"].clone()
        tensors[f"{prior}.num_items"] = torch.tensor(out.num_items)
        tensors[f"{prior}.grad.input_proj"] = m.flow.input_proj.weight.grad.clone()
    save_file(tensors, str(HERE / "train_step_regression.safetensors"))


if __name__ == "__main__":
    main()
