"""cadence plan: parameter counts of the built models, the FLOP formula against torch's counter."""

from __future__ import annotations

import json

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode
from typer.testing import CliRunner

from cadence.pipeline.plan import (
    _semantic_lm,
    _soundstorm,
    count_parameters,
    plan_recipe,
    transformer_step_flops,
)

SIZES = {"num_quantizers": 4, "codebook_size": 64, "frame_rate": 75.0,
         "semantic_codebook_size": 50, "semantic_frame_rate": 50.0}  # fmt: skip


def _on_cpu(meta_model: torch.nn.Module) -> torch.nn.Module:
    torch.manual_seed(0)
    return type(meta_model)(meta_model.config)


def _counted(run) -> float:
    with FlopCounterMode(display=False) as counter:
        run().float().sum().backward()
    return float(counter.get_total_flops())


def test_the_flop_formula_matches_torch_s_counter_on_small_models():
    spec = {"model": {"dim": 64, "depth": 2, "heads": 4, "dim_head": 16, "max_seq_len": 256}}
    meta, shape = _semantic_lm(spec, SIZES)
    model = _on_cpu(meta)
    assert count_parameters(model) == count_parameters(meta)
    tokens = torch.randint(0, 50, (2, shape["tokens"] - 1))  # START takes one place
    counted = _counted(lambda: model(tokens).logits)
    formula = transformer_step_flops(
        shape["dense"], shape["tokens"], shape["depth"], shape["attn_dim"], 2
    )
    assert abs(formula - counted) / counted < 0.15, (formula, counted)

    spec = {"model": {"backbone": {"kind": "conformer", "dim": 64, "depth": 2, "heads": 4,
                                   "ff_mult": 4.0, "conv_kernel_size": 5}}}  # fmt: skip
    meta, shape = _soundstorm(spec, SIZES, mean_seconds=200 / 75)
    model = _on_cpu(meta)
    codes = torch.randint(0, 64, (2, shape["tokens"], 4))
    semantic = torch.randint(0, 50, (2, shape["tokens"]))
    counted = _counted(lambda: model(codes, semantic, level=torch.zeros(2, dtype=torch.long)))
    formula = transformer_step_flops(
        shape["dense"], shape["tokens"], shape["depth"], shape["attn_dim"], 2
    )
    assert abs(formula - counted) / counted < 0.15, (formula, counted)


def test_paper_sizes_and_gpu_hours_scale_with_hours_and_mfu():
    plans = {p.stage: p for p in plan_recipe("libritts", hours=100, include_frozen=False)}
    # AudioLM's semantic stage 12 x 1024 (FF 4096): 12 * 12.6 M in the blocks; SoundStorm ~ 0.3 B
    assert 145e6 < plans["semantic_lm"].parameters < 160e6
    assert 290e6 < plans["soundstorm"].parameters < 330e6
    more = {p.stage: p for p in plan_recipe("libritts", hours=200, mfu=0.7, include_frozen=False)}
    for stage in ("semantic_lm", "soundstorm"):
        assert more[stage].steps == pytest.approx(2 * plans[stage].steps, rel=0.01)
        assert more[stage].gpu_hours == pytest.approx(plans[stage].gpu_hours, rel=0.01)
        assert plans[stage].activation_bytes > 1e9


def test_the_plan_command_prints_a_table_and_json(tmp_path):
    from cadence.pipeline.cli import app

    runner = CliRunner()
    result = runner.invoke(app, ["plan", "ljspeech", "--hours", "24", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert [s["stage"] for s in data["stages"]] == [
        "codec", "semantic_tokenizer", "semantic_lm", "soundstorm", "aligner", "naturalspeech2"
    ]  # fmt: skip
    assert data["stages"][0]["flops_method"] == "measured"
    result = runner.invoke(app, ["plan", "ljspeech", "--gpu", "tpu"])
    assert result.exit_code == 2 and "unknown GPU 'tpu'" in result.output
    result = runner.invoke(app, ["plan", "ljspeech", "--corpus", str(tmp_path)])
    assert result.exit_code == 2 and "corpus.json" in result.output
