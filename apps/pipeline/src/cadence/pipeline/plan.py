"""``cadence plan RECIPE``: what each stage of a real recipe costs before it starts.

For every stage: parameters (the model built on the meta device from the stage's config, so
the count is the built model's), FLOPs per optimizer step, activation memory per micro-batch,
and GPU-hours on a stated GPU at a stated model-FLOPs utilization (MFU).

How the figures are made (say so when quoting them):

- FLOPs of the trained transformers are analytic, ``6 * N * tokens + 12 * L * n^2 * d`` per
  item (Kaplan et al. 2020; the second term is attention's score and value products, forward
  and backward), with ``N`` the parameters a token passes through (embedding lookups and the
  SoundStorm heads of the levels not predicted excluded). ``torch.utils.flop_counter`` cannot
  run these models on the meta device (their input checks read values, and x-transformers
  enters an autocast the meta device refuses), so a test checks the formula against the
  counter on small models built on the CPU (within 15 %). NaturalSpeech 2 (convolutional
  WaveNet, few attention layers) and the aligner (convolutions) use ``6 * N * frames``. Both
  are built from the recipe's jobs (``REAL_JOBS``), the sizes the recipe trains.
- FLOPs of the frozen EnCodec and HuBERT are measured: ``FlopCounterMode`` over one second of
  audio on the CPU (weight-norm parametrizations removed first; they hide the convolutions from
  the counter), times the corpus' seconds.
- Activation memory per micro-batch is an estimate, not a measurement: ``34 * n * b * d``
  bytes per transformer layer in bf16 with flash attention (Korthikanti et al. 2022, eq. 1
  without the stored attention scores), 1.5 times that for a Conformer layer (two half
  feed-forward blocks and a convolution module), plus the logits in fp32.
- GPU-hours: ``steps * FLOPs per step / (peak * MFU)``; peak dense bf16 (H100 / H200 SXM
  989 TFLOP/s, A100 312) and MFU (default 0.35) are assumptions, not measured throughput;
  bench/gpu/ measures both on a GPU.
"""

from __future__ import annotations

import functools
from dataclasses import asdict, dataclass
from typing import Any

import torch

from .components import PipelineError
from .real_recipe import (
    COMPONENTS,
    REAL_JOBS,
    REAL_RECIPES,
    deep_merge,
    items_per_step,
    steps_for,
)

__all__ = ["GPUS", "StagePlan", "count_parameters", "plan_recipe", "transformer_step_flops"]

# dense bf16 peak, TFLOP/s (vendor datasheets, SXM parts)
GPUS: dict[str, float] = {"h100": 989.4, "h200": 989.4, "a100": 312.0}

# the official parts' sizes (EnCodec 24 kHz at 6 kbit/s: 8 x 1024 at 75 Hz with 128-dim
# latents; HuBERT 50 Hz). num_phonemes: NaturalSpeech 2's and the aligner's vocabulary, an
# assumption (the corpus' espeak-ng symbols with stress marks, plus the 4 special ones; about
# 512 parameters each in NaturalSpeech 2, 256 in the aligner).
OFFICIAL_SIZES: dict[str, float] = {"num_quantizers": 8, "codebook_size": 1024, "frame_rate": 75.0,
                                    "semantic_frame_rate": 50.0, "latent_dim": 128,
                                    "num_phonemes": 80}  # fmt: skip


@dataclass(frozen=True)
class StagePlan:
    """One stage's cost; ``trained`` False for frozen parts (their cost is tokenizing)."""

    stage: str
    model: str
    parameters: int
    trained: bool
    steps: int
    items_per_step: int
    tokens_per_item: int
    flops_per_step: float
    activation_bytes: float
    gpu_hours: float
    flops_method: str


def count_parameters(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _meta(build: Any) -> torch.nn.Module:
    with torch.device("meta"):
        return build()


def _embedding_parameters(model: torch.nn.Module) -> int:
    return sum(m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.Embedding))


def transformer_step_flops(dense: int, tokens: int, depth: int, attn_dim: int, items: int) -> float:
    """``items * (6 N n + 12 L n^2 d)``: forward + backward of ``items`` sequences of ``tokens``."""
    return float(items * (6 * dense * tokens + 12 * depth * tokens * tokens * attn_dim))


def _activation_bytes(
    tokens: int, batch: int, dim: int, depth: int, factor: float, vocab: int
) -> float:
    return float(34 * tokens * batch * dim * depth * factor + 4 * tokens * batch * vocab)


@functools.lru_cache(maxsize=4)
def measured_flops_per_second(which: str) -> float:
    """Forward FLOPs of one second of audio through the official-size EnCodec encoder or HuBERT."""
    from torch.nn.utils import parametrize
    from torch.utils.flop_counter import FlopCounterMode

    if which == "hubert":
        from cadence.semantic import Hubert, HubertConfig

        model: Any = Hubert(HubertConfig.base(output_layer=9)).eval()
        run = lambda: model(torch.zeros(1, 16000))  # noqa: E731
    else:
        from cadence.codec import EnCodec, EnCodecConfig

        model = EnCodec(EnCodecConfig()).eval()
        run = lambda: model.encode(torch.zeros(1, 1, 24000))  # noqa: E731
    for module in model.modules():
        if parametrize.is_parametrized(module):
            for name in list(module.parametrizations):
                parametrize.remove_parametrizations(module, name)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        run()
    return float(counter.get_total_flops())


def _gpu_hours(flops: float, peak_tflops: float, mfu: float) -> float:
    return flops / (peak_tflops * 1e12 * mfu) / 3600


def _semantic_lm(spec: dict[str, Any], sizes: dict[str, float]) -> tuple[torch.nn.Module, dict]:
    from cadence.audiolm import SemanticTransformer, SemanticTransformerConfig
    from cadence.core.config import config_from_dict

    config = config_from_dict(SemanticTransformerConfig, {**spec["model"],
        "codebook_size": int(sizes["semantic_codebook_size"]), "frame_rate": sizes["semantic_frame_rate"]})  # fmt: skip
    model = _meta(lambda: SemanticTransformer(config))
    shape = {"tokens": config.max_seq_len, "depth": config.depth, "dim": config.dim,
             "attn_dim": config.heads * config.dim_head, "factor": 1.0, "vocab": config.codebook_size,
             "dense": count_parameters(model) - _embedding_parameters(model)}  # fmt: skip
    return model, shape


def _soundstorm(
    spec: dict[str, Any], sizes: dict[str, float], mean_seconds: float
) -> tuple[torch.nn.Module, dict]:
    from cadence.core.config import config_from_dict
    from cadence.soundstorm import SoundStorm, SoundStormConfig

    config = config_from_dict(SoundStormConfig, {**spec["model"],
        "num_quantizers": int(sizes["num_quantizers"]), "codebook_size": int(sizes["codebook_size"]),
        "frame_rate": sizes["frame_rate"], "semantic_codebook_size": int(sizes["semantic_codebook_size"]),
        "semantic_frame_rate": sizes["semantic_frame_rate"]})  # fmt: skip
    model = _meta(lambda: SoundStorm(config))
    q = config.num_quantizers
    # one level is predicted per step: the heads of the other q - 1 levels do no work
    head = model.get_parameter("head_weight")  # (q, d, v): one per level
    idle_heads = int(head.numel() * (q - 1) / q)
    backbone = config.backbone
    shape = {"tokens": max(1, round(mean_seconds * config.frame_rate)), "depth": backbone.depth,
             "dim": backbone.dim, "attn_dim": backbone.dim,
             "factor": 1.5 if backbone.kind == "conformer" else 1.0, "vocab": config.codebook_size,
             "dense": count_parameters(model) - _embedding_parameters(model) - idle_heads}  # fmt: skip
    return model, shape


def _phonemes(sizes: dict[str, float]) -> tuple[str, ...]:
    from cadence.naturalspeech2.text import SPECIAL_SYMBOLS

    count = max(len(SPECIAL_SYMBOLS), int(sizes["num_phonemes"]))
    return SPECIAL_SYMBOLS + tuple(f"p{i}" for i in range(count - len(SPECIAL_SYMBOLS)))


def _naturalspeech2(
    spec: dict[str, Any], sizes: dict[str, float], mean_seconds: float
) -> tuple[torch.nn.Module, dict]:
    from cadence.core.config import config_from_dict
    from cadence.naturalspeech2 import NaturalSpeech2, NaturalSpeech2Config

    config = config_from_dict(NaturalSpeech2Config, {**spec["model"], "phonemes": _phonemes(sizes),
        "latent_dim": int(sizes["latent_dim"]), "frame_rate": sizes["frame_rate"]})  # fmt: skip
    model = _meta(lambda: NaturalSpeech2(config))
    depth = config.wavenet_depth + config.encoder_depth + config.prompt_encoder_depth
    shape = {"tokens": max(1, round(mean_seconds * config.frame_rate)), "depth": depth,
             "dim": config.dim, "attn_dim": 0, "factor": 1.0, "vocab": 0,
             "dense": count_parameters(model) - _embedding_parameters(model)}  # fmt: skip
    return model, shape


def _aligner(
    spec: dict[str, Any], sizes: dict[str, float], mean_seconds: float
) -> tuple[torch.nn.Module, dict]:
    from cadence.core.config import config_from_dict
    from cadence.naturalspeech2 import Aligner, AlignerConfig

    phonemes = _phonemes(sizes)
    config = config_from_dict(AlignerConfig, {**spec["model"], "phonemes": phonemes,
                                              "vocab_size": len(phonemes)})  # fmt: skip
    model = _meta(lambda: Aligner(config))
    # 6 N n for its convolutions; the n x l distances (n l attention_dim) are small beside them
    shape = {"tokens": max(1, round(mean_seconds * sizes["frame_rate"])), "depth": 1,
             "dim": config.dim, "attn_dim": 0, "factor": 1.0, "vocab": 0,
             "dense": count_parameters(model) - _embedding_parameters(model)}  # fmt: skip
    return model, shape


def _frozen(stage: str, hours: float, mean_seconds: float, peak: float, mfu: float) -> StagePlan:
    from cadence.codec import EnCodec, EnCodecConfig
    from cadence.semantic import Hubert, HubertConfig

    if stage == "codec":
        model: torch.nn.Module = _meta(lambda: EnCodec(EnCodecConfig()))
        name, which = "EnCodec (frozen)", "encodec"
    else:
        model = _meta(lambda: Hubert(HubertConfig.base(output_layer=9)))
        name, which = "HuBERT-base (frozen)", "hubert"
    per_second = measured_flops_per_second(which)
    items = max(1, round(hours * 3600 / mean_seconds))
    return StagePlan(stage, name, count_parameters(model), False, items, 1,
                     round(mean_seconds * (75 if which == "encodec" else 50)), per_second * mean_seconds,
                     0.0, _gpu_hours(per_second * hours * 3600, peak, mfu),
                     "measured")  # fmt: skip


def plan_recipe(
    name: str,
    *,
    hours: float | None = None,
    mean_seconds: float | None = None,
    gpu: str = "h100",
    mfu: float = 0.35,
    num_processes: int = 1,
    override: dict[str, Any] | None = None,
    sizes: dict[str, float] | None = None,
    include_frozen: bool = True,
) -> list[StagePlan]:
    """The cost of every stage of real recipe ``name`` on ``hours`` of audio (default: the full corpus).

    ``sizes``: codec and tokenizer sizes (default the official EnCodec at 6 kbit/s and the
    recipe's k-means clusters); ``override``: the same tables ``cadence recipe --override`` takes.
    """
    if name not in REAL_RECIPES:
        raise PipelineError(f"unknown real recipe {name!r}; available: {', '.join(REAL_RECIPES)}")
    if gpu not in GPUS:
        raise PipelineError(f"unknown GPU {gpu!r}; known: {', '.join(GPUS)}")
    if not 0 < mfu <= 1:
        raise PipelineError(f"mfu must be in (0, 1], got {mfu}")
    recipe, override = REAL_RECIPES[name], override or {}
    hours = recipe["hours"] if hours is None else hours
    mean_seconds = recipe["mean_seconds"] if mean_seconds is None else mean_seconds
    clusters = deep_merge(COMPONENTS, override.get("components", {}))["kmeans"]["num_clusters"]
    sizes = {**OFFICIAL_SIZES, "semantic_codebook_size": clusters, **(sizes or {})}
    peak = GPUS[gpu]
    plans = (
        [_frozen(s, hours, mean_seconds, peak, mfu) for s in ("codec", "semantic_tokenizer")]
        if include_frozen
        else []
    )
    for stage in ("semantic_lm", "soundstorm", "aligner", "naturalspeech2"):
        spec = deep_merge(REAL_JOBS[stage], override.get(stage, {}))
        if stage == "semantic_lm":
            model, shape = _semantic_lm(spec, sizes)
        elif stage == "soundstorm":
            model, shape = _soundstorm(spec, sizes, mean_seconds)
        elif stage == "aligner":
            model, shape = _aligner(spec, sizes, mean_seconds)
        else:
            model, shape = _naturalspeech2(spec, sizes, mean_seconds)
        token_rate = sizes["semantic_frame_rate"] if stage == "semantic_lm" else sizes["frame_rate"]
        steps = spec["trainer"].get("max_steps") or steps_for(
            stage,
            spec,
            hours,
            mean_seconds=mean_seconds,
            token_rate=token_rate,
            num_processes=num_processes,
        )
        items = items_per_step(spec)  # per process
        flops = transformer_step_flops(
            shape["dense"], shape["tokens"], shape["depth"], shape["attn_dim"], items
        )
        activations = _activation_bytes(
            shape["tokens"],
            int(spec["trainer"]["batch_size"]),
            shape["dim"],
            shape["depth"],
            shape["factor"],
            shape["vocab"],
        )
        method = "analytic"
        plans.append(StagePlan(stage, type(model).__name__, count_parameters(model), True, int(steps),
                               items, shape["tokens"], flops, activations,
                               _gpu_hours(flops * steps * num_processes, peak, mfu), method))  # fmt: skip
    return plans


def plan_table(plans: list[StagePlan]) -> list[dict[str, Any]]:
    """The plans as JSON-ready rows (``cadence plan --json``)."""
    return [asdict(p) for p in plans]


def human(value: float, unit: str = "") -> str:
    for scale, suffix in (
        (1e18, "E"),
        (1e15, "P"),
        (1e12, "T"),
        (1e9, "G"),
        (1e6, "M"),
        (1e3, "k"),
    ):
        if abs(value) >= scale:
            return f"{value / scale:.3g} {suffix}{unit}"
    return f"{value:.3g} {unit}".strip()
