from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from cadence.core.checkpoint import load_pretrained
from cadence.core.config import ConfigError
from cadence.core.data import lengths_to_mask
from cadence.core.testing import FakeCodec
from cadence.core.validation import IdRangeError
from cadence.naturalspeech2 import (
    NaturalSpeech2,
    NaturalSpeech2Config,
    NaturalSpeech2TrainConfig,
    NaturalSpeech2TrainStep,
    ce_rvq_loss,
    codebooks_from_codec,
    collate_ns2,
    config_from_shards,
    draw_training,
    length_regulate,
)


@pytest.fixture(scope="module")
def batch(shards):
    return collate_ns2([shards[i] for i in range(4)])


@pytest.fixture(scope="module")
def config(shards):
    return config_from_shards(shards, tiny=True)


def _draw(model, batch, config=None, *, cond_dropout=True):
    return draw_training(
        batch["latents"],
        batch["frame_mask"],
        diffusion_steps=model.config.diffusion_steps,
        config=config or NaturalSpeech2TrainConfig(),
        cond_dropout=cond_dropout,
    )


def _forward(model, batch, draw):
    return model(
        batch["phonemes"],
        batch["phoneme_mask"],
        batch["durations"],
        batch["latents"],
        batch["frame_mask"],
        batch["log_f0"],
        batch["voiced"],
        draw,
    )


def test_batch_shapes_and_masks(batch, shards):
    lengths = [len(shards[i]["latents"]) for i in range(4)]
    assert len(set(lengths)) > 1  # the batch really mixes lengths
    assert batch["latents"].shape == (4, max(lengths), 16)
    assert batch["frame_mask"].sum(-1).tolist() == lengths
    assert batch["durations"].sum(-1).tolist() == lengths
    assert batch["codes"].shape[:2] == batch["latents"].shape[:2]


def test_length_regulate():
    hidden = torch.arange(6.0).reshape(1, 3, 2).repeat(2, 1, 1)
    durations = torch.tensor([[2, 0, 3], [1, 1, 0]])
    out, mask = length_regulate(hidden, durations)
    assert out.shape == (2, 5, 2) and mask.sum(-1).tolist() == [5, 2]
    assert out[0, :, 0].tolist() == [0, 0, 4, 4, 4]
    assert out[1, :, 0].tolist() == [0, 2, 0, 0, 0]


def test_outputs_do_not_depend_on_padding(config, batch):
    torch.manual_seed(0)
    model = NaturalSpeech2(config).eval()
    i = int(batch["frame_mask"].sum(-1).argmin())  # the shortest item, padded in the batch
    n = int(batch["phoneme_mask"][i].sum())
    t = int(batch["frame_mask"][i].sum())
    prompt = batch["latents"][:, :10]
    full = model.generate(
        batch["phonemes"],
        prompt,
        durations=batch["durations"],
        log_f0=batch["log_f0"],
        voiced=batch["voiced"],
        steps=4,
        generator=torch.Generator().manual_seed(0),
    )
    alone = model.generate(
        batch["phonemes"][i : i + 1, :n],
        prompt[i : i + 1],
        durations=batch["durations"][i : i + 1, :n],
        log_f0=batch["log_f0"][i : i + 1],
        voiced=batch["voiced"][i : i + 1],
        steps=1,
    )
    assert full.latents.shape == batch["latents"].shape
    assert full.mask[i].sum() == t and (full.latents[i, t:] == 0).all()
    # steps=1 with dpm++ returns the network's x0 directly, so noise differences do not
    # matter only when the denoiser is called on identical inputs: compare the encoders
    h_full = model.encode_phonemes(batch["phonemes"], batch["phoneme_mask"])[i, :n]
    h_alone = model.encode_phonemes(
        batch["phonemes"][i : i + 1, :n], batch["phoneme_mask"][i : i + 1, :n]
    )[0]
    torch.testing.assert_close(h_full, h_alone, atol=1e-5, rtol=1e-4)
    assert alone.latents.shape == (1, t, 16)
    # the denoiser at real frames ignores padded frames
    x = torch.randn(1, t + 7, 16)
    cond = torch.randn(1, t + 7, config.dim)
    tokens = torch.randn(1, config.num_query_tokens, config.dim)
    step = torch.tensor([10])
    mask = lengths_to_mask(torch.tensor([t]), t + 7)
    a = model.denoiser(x, step, cond, tokens, mask)[:, :t]
    b = model.denoiser(x[:, :t], step, cond[:, :t], tokens, mask[:, :t])
    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)


def test_total_loss_is_weighted_sum_and_trains_the_predictors(config, batch, codec):
    torch.manual_seed(0)
    books = codebooks_from_codec(codec)
    model = NaturalSpeech2(config)
    step = NaturalSpeech2TrainStep(
        NaturalSpeech2TrainConfig(duration_loss_weight=0.7, pitch_loss_weight=1.3), codebooks=books
    )
    out = step(model, batch)
    parts = out.metrics
    expected = (
        parts["diffusion"] + 0.7 * parts["duration"] + 1.3 * parts["pitch"] + 0.1 * parts["ce_rvq"]
    )
    torch.testing.assert_close(out.loss, expected)
    torch.testing.assert_close(parts["pitch"], parts["f0"] + parts["voiced"])
    out.loss.backward()
    for name in (
        "duration_predictor",
        "pitch_predictor",
        "phoneme_encoder",
        "prompt_encoder",
        "denoiser",
        "duration_queries",
        "pitch_queries",
        "denoiser_queries",
        "pitch_embedding",
    ):
        grads = [p.grad for p in getattr(model, name).parameters() if p.grad is not None]
        assert grads and sum(g.abs().sum() for g in grads) > 0, f"no gradient reaches {name}"
    assert model.duration_predictor.head.weight.grad.abs().sum() > 0
    assert model.pitch_predictor.head.weight.grad.abs().sum() > 0


def test_ce_rvq_loss_is_low_at_the_true_quantized_latent():
    torch.manual_seed(0)
    books = torch.randn(3, 16, 4)
    codes = torch.randint(0, 16, (2, 5, 3))
    exact = sum(books[level][codes[..., level]] for level in range(3))
    mask = torch.ones(2, 5, dtype=torch.bool)
    low = ce_rvq_loss(exact * 1.0, codes, books * 1.0, mask)
    high = ce_rvq_loss(torch.randn(2, 5, 4), codes, books, mask)
    assert low < high


def test_codebooks_from_fake_codec_reproduce_its_first_level():
    codec = FakeCodec()
    books = codebooks_from_codec(codec)
    assert books.shape == (codec.num_quantizers, codec.codebook_size, codec.latent_dim)
    codes = torch.randint(0, codec.codebook_size, (1, 6, 1))
    first = codec.codes_to_latents(codes)
    torch.testing.assert_close(books[0][codes[0, :, 0]], first[0])


def test_guidance_one_equals_conditional(config, batch):
    torch.manual_seed(0)
    model = NaturalSpeech2(config).eval()
    with torch.no_grad():  # make the unconditional branch differ from the conditional one
        model.null_cond.add_(1.0)
    kwargs = dict(
        durations=batch["durations"], log_f0=batch["log_f0"], voiced=batch["voiced"], steps=6
    )
    prompt = batch["latents"][:, :12]

    def run(scale):
        return model.generate(
            batch["phonemes"],
            prompt,
            guidance_scale=scale,
            generator=torch.Generator().manual_seed(1),
            **kwargs,
        )

    cond = run(1.0)  # the default: one conditional pass
    # just above 1 the doubled (conditional + unconditional) batch runs; its conditional rows
    # must match the single pass, so the guided result barely moves
    near_one = run(1.0 + 1e-6)
    two = run(2.0)
    torch.testing.assert_close(near_one.latents, cond.latents, atol=1e-5, rtol=1e-4)
    assert (two.latents - cond.latents).abs().max() > 1e-3
    default = model.generate(
        batch["phonemes"], prompt, generator=torch.Generator().manual_seed(1), **kwargs
    )
    torch.testing.assert_close(default.latents, cond.latents, atol=0, rtol=0)


@pytest.mark.parametrize("sampler", ["ddpm", "ddim", "dpm++"])
def test_synthesize_from_phonemes_and_text(config, batch, sampler):
    torch.manual_seed(0)
    model = NaturalSpeech2(config).eval()
    prompt = batch["latents"][0, :20]
    out = model.synthesize(["h", "ˈɛ", "l", "oʊ"], prompt, steps=4, sampler=sampler)
    assert out.ndim == 3 and out.shape[0] == 1 and out.shape[-1] == 16 and torch.isfinite(out).all()
    assert not torch.is_inference_mode_enabled()
    text = model.synthesize("Hello there.", prompt, steps=3, guidance_scale=1.5)
    assert text.shape[0] == 1 and text.shape[1] >= 5


def test_synthesize_reads_the_text_in_the_accent_asked_for(config, batch, monkeypatch):
    model = NaturalSpeech2(config).eval()
    seen = []
    monkeypatch.setattr(
        model, "generate", lambda ids, prompt, **kw: seen.append(ids[0].tolist()) or _Out()
    )
    prompt = batch["latents"][0, :20]
    for voice in (None, "en-us", "en-gb-x-rp"):
        model.synthesize("What a lot of water.", prompt, voice=voice)
    default, us, rp = seen
    assert default == us  # config.voice is en-us
    assert rp != us  # /w ɒ t/ against /w ʌ t/, read through the vocabulary


class _Out:
    latents = torch.zeros(1, 1, 1)


def test_save_load_round_trip(tmp_path, config, batch):
    torch.manual_seed(0)
    model = NaturalSpeech2(config).eval()
    model.save_pretrained(tmp_path / "ns2")
    loaded = NaturalSpeech2.load_pretrained(tmp_path / "ns2").eval()
    assert loaded.config == config and loaded.config.vocabulary.symbols == config.phonemes
    args = (batch["phonemes"], batch["latents"][:, :10])
    a = model.generate(*args, steps=4, generator=torch.Generator().manual_seed(0))
    b = loaded.generate(*args, steps=4, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(a.latents, b.latents)
    torch.testing.assert_close(a.durations, b.durations)
    with pytest.raises(dataclasses.FrozenInstanceError):
        a.latents = b.latents  # type: ignore[misc]


def test_bad_inputs_raise(config, batch):
    model = NaturalSpeech2(config).eval()
    with pytest.raises(ValueError, match="prompt_latents must be"):
        model.generate(batch["phonemes"], torch.randn(4, 10, 3))
    with pytest.raises(IdRangeError, match=r"phoneme ids hold values in \[10000, 10000\]"):
        model.generate(torch.full((1, 3), 10_000), torch.randn(1, 10, 16))
    with pytest.raises(IdRangeError, match=r"phoneme ids must be \(b, n\)"):
        model.generate(batch["phonemes"][0], batch["latents"][:1, :10])
    bad = batch["durations"].clone()
    bad[0, 0] += 1
    draw = _draw(model, batch)
    with pytest.raises(ValueError, match="durations must sum"):
        model(
            batch["phonemes"],
            batch["phoneme_mask"],
            bad,
            batch["latents"],
            batch["frame_mask"],
            batch["log_f0"],
            batch["voiced"],
            draw,
        )
    outside = dataclasses.replace(draw, prompt_start=batch["frame_mask"].sum(-1))
    with pytest.raises(ValueError, match="prompt segment"):
        _forward(model, batch, outside)
    with pytest.raises(ValueError, match=r"draw\.noise"):
        _forward(model, batch, dataclasses.replace(draw, noise=draw.noise[:, :5]))
    with pytest.raises(ConfigError, match="cond_drop_prob"):
        NaturalSpeech2TrainConfig(cond_drop_prob=1.5)
    with pytest.raises(ConfigError, match="prompt_fraction"):
        NaturalSpeech2TrainConfig(prompt_fraction=(0.5, 0.25))
    with pytest.raises(ConfigError, match="pitch_loss_weight"):
        NaturalSpeech2TrainConfig(pitch_loss_weight=-1.0)
    with pytest.raises(ConfigError, match="log_f0_std"):
        NaturalSpeech2Config.tiny(log_f0_std=0.0)
    with pytest.raises(TypeError, match="codebooks="):
        NaturalSpeech2TrainStep(torch.zeros(2, 4, 16))  # the old positional codebooks


def test_train_step_reports_parts(config, batch, codec):
    step = NaturalSpeech2TrainStep(codebooks=codebooks_from_codec(codec))
    out = step(NaturalSpeech2(config), batch)
    assert set(out.metrics) >= {"diffusion", "duration", "pitch", "f0", "voiced", "ce_rvq"}
    assert out.num_items == 4
    assert "ce_rvq" not in NaturalSpeech2TrainStep()(NaturalSpeech2(config), batch).metrics


def test_training_settings_live_in_the_train_config_only():
    for key in (
        "cfg_drop_prob",
        "cond_drop_prob",
        "prompt_fraction",
        "lambda_ce_rvq",
        "duration_loss_weight",
        "pitch_loss_weight",
    ):
        with pytest.raises(TypeError):
            NaturalSpeech2Config.tiny(**{key: 0.1})
        assert key not in NaturalSpeech2Config.tiny().to_dict()
    assert (
        NaturalSpeech2TrainConfig.from_dict(NaturalSpeech2TrainConfig().to_dict())
        == NaturalSpeech2TrainConfig()
    )


def test_a_format_1_checkpoint_with_training_settings_loads(tmp_path, config):
    torch.manual_seed(0)
    model = NaturalSpeech2(config)
    model.save_pretrained(tmp_path / "ns2")
    path = tmp_path / "ns2" / "config.json"
    saved = json.loads(path.read_text())
    saved["format_version"] = 1
    saved["config"].update(
        cfg_drop_prob=0.2,
        prompt_fraction=[0.3, 0.4],
        lambda_ce_rvq=0.3,
        duration_loss_weight=2.0,
        pitch_loss_weight=0.5,
    )
    path.write_text(json.dumps(saved))
    loaded = load_pretrained(tmp_path / "ns2")
    assert isinstance(loaded, NaturalSpeech2) and loaded.config == config
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key


def test_draws_put_the_prompt_inside_each_item_and_drop_only_in_training(config, batch):
    model = NaturalSpeech2(config)
    lengths = batch["frame_mask"].sum(-1)
    train_config = NaturalSpeech2TrainConfig(cond_drop_prob=0.5, prompt_fraction=(0.25, 0.5))
    drops = []
    for seed in range(20):
        torch.manual_seed(seed)
        draw = _draw(model, batch, train_config)
        assert (draw.prompt_start >= 0).all() and (
            draw.prompt_start + draw.prompt_lengths <= lengths
        ).all()
        fraction = draw.prompt_lengths / lengths
        assert (fraction <= 0.5).all() and (
            draw.prompt_lengths >= (0.25 * lengths).floor().clamp(min=1)
        ).all()
        assert ((draw.step >= 0) & (draw.step < config.diffusion_steps)).all()
        assert draw.noise.shape == batch["latents"].shape
        drops.append(draw.cond_drop)
    drops = torch.stack(drops)
    assert 0 < drops.float().mean() < 1  # some items dropped, some kept
    assert not _draw(model, batch, train_config, cond_dropout=False).cond_drop.any()
    torch.manual_seed(0)
    a = _draw(model, batch, train_config)
    torch.manual_seed(0)
    b = _draw(model, batch, train_config)
    for field in dataclasses.fields(a):  # the global RNG alone decides (exact resume)
        assert torch.equal(getattr(a, field.name), getattr(b, field.name)), field.name


def test_predictions_skip_the_prompt_and_follow_the_draw(config, batch):
    torch.manual_seed(0)
    model = NaturalSpeech2(config).eval()
    draw = _draw(model, batch)
    with torch.no_grad():
        first, again = _forward(model, batch, draw), _forward(model, batch, draw)
    lengths = batch["frame_mask"].sum(-1)
    assert first.target_mask.sum(-1).tolist() == (lengths - draw.prompt_lengths).tolist()
    assert not (first.target_mask & ~first.frame_mask).any()
    assert not (first.voiced & ~first.frame_mask).any()
    b, n, d = batch["latents"].shape
    assert (
        first.x0.shape == (b, n, d)
        and first.log_f0.shape == (b, n)
        and first.voiced_logits.shape == (b, n)
    )
    assert first.log_durations.shape == batch["phonemes"].shape
    for field in dataclasses.fields(first):
        torch.testing.assert_close(getattr(first, field.name), getattr(again, field.name))
    with torch.no_grad():
        dropped = _forward(
            model, batch, dataclasses.replace(draw, cond_drop=torch.ones(b, dtype=torch.bool))
        )
    assert (dropped.x0 - first.x0).abs().max() > 1e-4  # condition dropout reaches the denoiser
    torch.testing.assert_close(dropped.log_durations, first.log_durations)  # and only the denoiser
    with pytest.raises(dataclasses.FrozenInstanceError):
        first.x0 = first.x0  # type: ignore[misc]
