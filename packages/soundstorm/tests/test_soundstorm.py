"""SoundStorm model: shapes, checkpoints, and the decoding contract."""

from __future__ import annotations

import json

import pytest
import torch

from cadence.core.checkpoint import load_pretrained
from cadence.core.config import ConfigError
from cadence.core.nn import BackboneConfig
from cadence.core.validation import IdRangeError
from cadence.soundstorm import (
    SoundStorm,
    SoundStormConfig,
    SoundStormTrainConfig,
    default_iterations,
)


def _model(seed: int = 0, **changes) -> SoundStorm:
    torch.manual_seed(seed)
    return SoundStorm(SoundStormConfig.tiny(**changes)).eval()


def _semantic(b: int, m: int, seed: int = 0, vocab: int = 12) -> torch.Tensor:
    return torch.randint(0, vocab, (b, m), generator=torch.Generator().manual_seed(seed))


def _count_passes(model: SoundStorm):
    calls = []
    handle = model.backbone.register_forward_hook(
        lambda module, args, out: calls.append(args[0].shape[0])
    )
    return calls, handle


# -- config and checkpoints ------------------------------------------------------------------


def test_config_json_round_trip_keeps_the_nested_backbone():
    config = SoundStormConfig.tiny(
        backbone=BackboneConfig(kind="uconformer", dim=32, depth=2, heads=2),
    )
    assert SoundStormConfig.from_json(config.to_json()) == config
    assert (
        SoundStormConfig.from_dict(json.loads(SoundStormConfig().to_json())) == SoundStormConfig()
    )
    assert SoundStormConfig().backbone.dim == 1024  # the paper's model by default
    train = SoundStormTrainConfig(prompt_range=(0.1, 0.9))
    assert SoundStormTrainConfig.from_json(train.to_json()) == train


def test_training_settings_are_not_in_the_model_config():
    train_fields = set(SoundStormTrainConfig().to_dict())
    assert not train_fields & set(SoundStormConfig().to_dict())
    # every training setting that format-1 checkpoints held in the model config is dropped on
    # load; level_weights came later and was never there
    assert set(SoundStormConfig.dropped_keys) == train_fields - {"level_weights"}
    defaults = SoundStormTrainConfig()
    assert defaults.prompt_range == (0.0, 1.0)
    assert defaults.cond_drop_prob == defaults.prompt_cond_drop_prob == 0.1
    with pytest.raises(ConfigError, match="unknown key"):  # a format-2 config must not hold them
        SoundStormConfig.from_dict({"cond_drop_prob": 0.1})


@pytest.mark.parametrize(
    "changes, match",
    [
        (dict(codebook_size=0), "codebook_size"),
        (dict(semantic_frame_rate=0.0), "frame_rate"),
        (dict(backbone=BackboneConfig(dim=32, heads=2, cond_dim=4)), "cond_dim"),
    ],
)
def test_bad_config_is_refused(changes, match):
    with pytest.raises(ConfigError, match=match):
        SoundStormConfig.tiny(**changes)


@pytest.mark.parametrize(
    "changes, match",
    [
        (dict(cond_drop_prob=1.0), "cond_drop_prob"),
        (dict(prompt_cond_drop_prob=1.5), "prompt_cond_drop_prob"),
        (dict(prompt_range=(0.5, 0.1)), "prompt_range"),
    ],
)
def test_bad_train_config_is_refused(changes, match):
    with pytest.raises(ConfigError, match=match):
        SoundStormTrainConfig(**changes)


def test_save_load_round_trip(tmp_path):
    model = _model(seed=3)
    model.save_pretrained(tmp_path / "ckpt")
    header = json.loads((tmp_path / "ckpt" / "config.json").read_text())
    assert header["class"] == "cadence.soundstorm.SoundStorm"
    assert header["config"]["backbone"]["kind"] == "conformer"
    loaded = SoundStorm.load_pretrained(tmp_path / "ckpt").eval()
    assert loaded.config == model.config
    again = load_pretrained(tmp_path / "ckpt").eval()
    codes = torch.randint(0, 17, (2, 9, 3))
    semantic = _semantic(2, 9)
    expected = model(codes, semantic)
    assert torch.equal(loaded(codes, semantic), expected)
    assert torch.equal(again(codes, semantic), expected)
    gen = dict(iterations=(3, 1, 1), generator=torch.Generator().manual_seed(0))
    first = model.generate(semantic, **gen).codes
    gen["generator"] = torch.Generator().manual_seed(0)
    assert torch.equal(loaded.generate(semantic, **gen).codes, first)


# -- forward -----------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["conformer", "transformer", "uconformer"])
def test_forward_shapes_for_each_backbone(kind):
    model = _model(backbone=BackboneConfig(kind=kind, dim=32, depth=2, heads=2, conv_kernel_size=5))
    codes = torch.randint(0, 17, (2, 7, 3))  # 16 = mask id
    semantic = _semantic(2, 7)
    everything = model(codes, semantic)
    assert everything.shape == (2, 7, 3, 16)
    assert torch.allclose(model(codes, semantic, level=1), everything[:, :, 1], atol=1e-5)
    per_sample = model(codes, semantic, level=torch.tensor([2, 0]))
    assert torch.allclose(per_sample[0], everything[0, :, 2], atol=1e-5)
    assert torch.allclose(per_sample[1], everything[1, :, 0], atol=1e-5)


def test_forward_rejects_misaligned_inputs():
    model = _model()
    with pytest.raises(ValueError, match="one column per level"):
        model(torch.zeros(1, 5, 2, dtype=torch.long), _semantic(1, 5))
    with pytest.raises(ValueError, match="align_semantic"):
        model(torch.zeros(1, 5, 3, dtype=torch.long), _semantic(1, 3))


# -- generation ----------------------------------------------------------------------------------


def test_generate_shapes_and_frame_rate_conversion():
    model = _model(semantic_frame_rate=25.0)  # 25 Hz tokens, 50 Hz codes
    out = model.generate(
        _semantic(2, 10), semantic_lengths=torch.tensor([10, 6]), iterations=(4, 1, 1)
    )
    assert out.codes.shape == (2, 20, 3)
    assert out.lengths.tolist() == [20, 12]
    assert out.codes.min() >= 0 and out.codes.max() < 16
    assert (out.codes[1, 12:] == 0).all()


def test_forward_passes_equal_the_sum_of_iterations():
    model = _model()
    for plan in [(16, 1, 1), (5, 3, 2), (1, 1, 1)]:
        calls, handle = _count_passes(model)
        out = model.generate(_semantic(2, 12), iterations=plan)
        handle.remove()
        assert len(calls) == sum(plan) == out.forward_passes
    assert default_iterations(3) == (16, 1, 1)
    calls, handle = _count_passes(model)
    out = model.generate(_semantic(2, 12), iterations=(4, 1, 1), guidance_scale=2.5)
    handle.remove()
    # guidance runs the conditional and unconditional rows as one batch of 2b: one pass each
    assert len(calls) == 6 == out.forward_passes
    assert set(calls) == {4}


@pytest.mark.parametrize("guidance_scale", [1.0, 2.5])
def test_generation_never_alters_the_prompt(guidance_scale):
    model = _model()
    gen = torch.Generator().manual_seed(5)
    prompt = torch.randint(0, 16, (3, 8, 3), generator=gen)
    prompt_lengths = torch.tensor([8, 3, 0])
    out = model.generate(
        _semantic(3, 10),
        semantic_lengths=torch.tensor([10, 7, 4]),
        prompt_codes=prompt,
        prompt_lengths=prompt_lengths,
        prompt_semantic=_semantic(3, 8, seed=1),
        iterations=(6, 2, 1),
        guidance_scale=guidance_scale,
        generator=gen,
    )
    for i, p in enumerate(prompt_lengths.tolist()):
        assert torch.equal(out.sequence[i, :p], prompt[i, :p])
        n = int(out.lengths[i])
        assert torch.equal(out.sequence[i, p : p + n], out.codes[i, :n])
        assert (out.sequence[i, p + n :] == 0).all()
    assert out.lengths.tolist() == [10, 7, 4]
    assert out.codes.max() < 16  # no mask id left


def test_levels_with_one_iteration_are_the_argmax_of_a_direct_forward():
    model = _model(seed=1)
    semantic = _semantic(2, 11, seed=2)
    out = model.generate(semantic, iterations=(4, 1, 1), generator=torch.Generator().manual_seed(0))
    codes = out.codes
    mask_id = model.mask_id
    for level in (1, 2):
        inputs = codes.clone()
        inputs[..., level:] = mask_id
        logits = model(inputs, semantic, level=level)
        assert torch.equal(codes[..., level], logits.argmax(-1)), f"level {level} is not greedy"


def test_level_one_sampling_follows_the_cosine_schedule():
    # Count the mask tokens the network sees at level 1 on each of its iterations.
    model = _model()
    seen = []
    handle = model.code_embedding.register_forward_hook(
        lambda module, args, out: seen.append(args[0]) if args[0].ndim == 2 else None
    )
    model.generate(
        _semantic(1, 40), iterations=(8, 1, 1), generator=torch.Generator().manual_seed(0)
    )
    handle.remove()
    masked = [int((ids == model.mask_id).sum()) for ids in seen[:8]]
    expected = [40] + [int(40 * torch.cos(torch.tensor(s / 8 * torch.pi / 2))) for s in range(1, 8)]
    assert masked == expected


def test_outputs_at_real_frames_do_not_depend_on_padding():
    model = _model(seed=2)
    semantic = _semantic(2, 16, seed=3)
    prompt = torch.randint(0, 16, (2, 5, 3), generator=torch.Generator().manual_seed(4))
    greedy = dict(iterations=(4, 2, 1), temperature=0.0, choice_temperature=0.0)
    batched = model.generate(
        semantic,
        semantic_lengths=torch.tensor([16, 9]),
        prompt_codes=prompt,
        prompt_lengths=torch.tensor([2, 5]),
        **greedy,
    )
    for i, (m, p) in enumerate([(16, 2), (9, 5)]):
        alone = model.generate(
            semantic[i : i + 1, :m], prompt_codes=prompt[i : i + 1, :p], **greedy
        )
        assert torch.equal(batched.codes[i, :m], alone.codes[0])


def test_guidance_changes_the_output_and_scale_one_is_plain():
    model = _model(seed=4)
    semantic = _semantic(1, 12)
    greedy = dict(iterations=(4, 1, 1), temperature=0.0, choice_temperature=0.0)
    plain = model.generate(semantic, **greedy).codes
    assert torch.equal(model.generate(semantic, guidance_scale=1.0, **greedy).codes, plain)
    with torch.no_grad():  # make the condition matter, so guidance must change something
        model.semantic_embedding.weight.mul_(50)
    guided = model.generate(semantic, guidance_scale=3.0, **greedy).codes
    assert not torch.equal(guided, model.generate(semantic, **greedy).codes)


@pytest.mark.parametrize("name", ["aligned", "cross"])
def test_guidance_per_level_runs_the_unconditional_rows_only_where_asked(name):
    cross = BackboneConfig(
        kind="conformer",
        dim=32,
        depth=2,
        heads=2,
        ff_mult=2.0,
        conv_kernel_size=5,
        cross_attn_dim=32,
    )
    changes = (
        {} if name == "aligned" else dict(semantic_conditioning="cross_attention", backbone=cross)
    )
    model = _model(seed=4, **changes)
    with torch.no_grad():  # make the condition matter, so guidance must change something
        model.semantic_embedding.weight.mul_(50)
    semantic = _semantic(2, 12)
    run = dict(iterations=(4, 2, 1), generator=None)

    def generate(scale):
        calls, handle = _count_passes(model)
        out = model.generate(
            semantic, guidance_scale=scale, **run | {"generator": torch.Generator().manual_seed(0)}
        )
        handle.remove()
        return out, calls

    everywhere, _ = generate(2.5)
    same, _ = generate((2.5, 2.5, 2.5))
    assert torch.equal(same.codes, everywhere.codes)
    plain, _ = generate(1.0)
    assert torch.equal(generate((1.0, 1.0, 1.0))[0].codes, plain.codes)
    coarse, calls = generate((2.5, 1.0, 1.0))
    assert calls == [4] * 4 + [2] * 3  # 2b rows on the guided level, b on the others
    assert coarse.forward_passes == 7
    # level 0 is decoded first, with the same draws: exactly the all-levels guided result
    assert torch.equal(coarse.codes[..., 0], everywhere.codes[..., 0])
    assert not torch.equal(coarse.codes, everywhere.codes)


def test_convert_keeps_the_content_length_and_drops_the_prompt():
    model = _model(semantic_frame_rate=25.0)
    prompt = torch.randint(0, 16, (2, 30, 3), generator=torch.Generator().manual_seed(0))
    codes = model.convert(_semantic(2, 15), prompt, iterations=(3, 1, 1))
    assert codes.shape == (2, 30, 3)
    # the same call with the prompt's own semantic tokens
    codes = model.convert(
        _semantic(2, 15), prompt, prompt_semantic=_semantic(2, 15, seed=9), iterations=(3, 1, 1)
    )
    assert codes.shape == (2, 30, 3)


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(semantic=torch.zeros(5, dtype=torch.long)), IdRangeError, r"add a batch axis"),
        (dict(semantic=torch.full((1, 5), 12)), IdRangeError, "semantic vocabulary"),
        (dict(semantic=torch.zeros(1, 5)), IdRangeError, "integer"),
        (dict(iterations=(16, 1)), ValueError, "each of the 3 levels"),
        (dict(iterations=(16, 0, 1)), ValueError, "each of the 3 levels"),
        (dict(prompt_codes=torch.zeros(1, 4, 2, dtype=torch.long)), ValueError, "all 3 levels"),
        (dict(prompt_codes=torch.full((1, 4, 3), 16)), IdRangeError, "codebook"),
        (dict(prompt_codes=torch.zeros(1, 4, 3)), IdRangeError, "integer"),
        (dict(semantic=torch.zeros(1, 0, dtype=torch.long)), ValueError, "non-empty"),
        (
            dict(
                prompt_codes=torch.zeros(1, 4, 3, dtype=torch.long),
                prompt_lengths=torch.tensor([5]),
            ),
            ValueError,
            "prompt_lengths",
        ),
        (
            dict(
                prompt_semantic=torch.full((1, 3), -1),
                prompt_codes=torch.zeros(1, 4, 3, dtype=torch.long),
            ),
            IdRangeError,
            "prompt_semantic",
        ),
        (dict(semantic_lengths=torch.tensor([0])), ValueError, "semantic_lengths"),
        (dict(temperature=-1.0), ValueError, "temperature"),
        (dict(guidance_scale=-1.0), ValueError, "guidance_scale"),
        (dict(guidance_scale=(2.0, 1.0)), ValueError, "one per level"),
        (dict(guidance_scale=(2.0, -1.0, 1.0)), ValueError, "guidance_scale"),
    ],
)
def test_generate_rejects_bad_input(kwargs, error, match):
    model = _model()
    args = dict(semantic=torch.zeros(1, 5, dtype=torch.long)) | kwargs
    with pytest.raises(error, match=match):
        model.generate(args.pop("semantic"), **args)


def test_temperature_falls_to_zero_on_the_last_iteration_of_a_level():
    # Pass 1 of 2 on level 1 samples at temperature 1; pass 2 must be greedy (temperature 0)
    # on the frames pass 1 left masked.
    model = _model(seed=6)
    ids, hidden = [], []
    h1 = model.code_embedding.register_forward_hook(
        lambda module, args, out: ids.append(args[0].clone()) if args[0].ndim == 2 else None
    )
    h2 = model.backbone.register_forward_hook(lambda module, args, out: hidden.append(out.clone()))
    out = model.generate(
        _semantic(1, 30),
        iterations=(2, 1, 1),
        temperature=1.0,
        generator=torch.Generator().manual_seed(1),
    )
    h1.remove()
    h2.remove()
    left_masked = ids[1] == model.mask_id  # level-1 state seen by pass 2
    assert 0 < int(left_masked.sum()) < 30
    with torch.inference_mode():
        greedy = model.head(hidden[1], 0).argmax(-1)
        first = model.head(hidden[0], 0).argmax(-1)
    assert torch.equal(out.codes[..., 0][left_masked], greedy[left_masked])
    # while pass 1 sampled: its kept tokens are not all the argmax of its logits
    kept = ~left_masked
    assert not torch.equal(ids[1][kept], first[kept])


def test_padding_past_the_lengths_may_hold_any_id():
    # Only real frames are range-checked: collated batches pad with anything (here -1 and 99).
    model = _model()
    semantic = _semantic(2, 6).masked_fill(
        torch.tensor([[False] * 6, [False] * 3 + [True] * 3]), -1
    )
    prompt = torch.randint(0, 16, (2, 4, 3), generator=torch.Generator().manual_seed(1))
    prompt[1, 2:] = 99
    out = model.generate(
        semantic,
        semantic_lengths=torch.tensor([6, 3]),
        prompt_codes=prompt,
        prompt_lengths=torch.tensor([4, 2]),
        iterations=(2, 1, 1),
    )
    assert out.lengths.tolist() == [6, 3]
    assert torch.equal(out.sequence[1, :2], prompt[1, :2])
