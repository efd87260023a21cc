"""Short CPU training on the committed toy corpus: diffusion and duration losses must fall."""

from __future__ import annotations

import pytest
import torch

from cadence.core.train import Trainer, TrainerConfig
from cadence.naturalspeech2 import (
    NaturalSpeech2,
    NaturalSpeech2TrainConfig,
    NaturalSpeech2TrainStep,
    codebooks_from_codec,
    collate_ns2,
    config_from_shards,
)
from cadence.naturalspeech2.diffusion import q_sample

EVAL_STEPS = (40, 60, 80)  # of 100 diffusion steps: noisy enough that conditioning matters


@torch.no_grad()
def _evaluate(model, batch):
    """Diffusion x0-MSE at fixed steps and noise (prompt = first 30 frames), duration MAE in frames."""
    model.eval()
    gen = torch.Generator().manual_seed(0)
    x0 = model.normalize(batch["latents"]) * batch["frame_mask"][..., None]
    prompt = batch["latents"][:, :30]
    _, _, tokens = model.encode_prompt(prompt, torch.ones(prompt.shape[:2], dtype=torch.bool))
    hidden = model.encode_phonemes(batch["phonemes"], batch["phoneme_mask"])
    from cadence.naturalspeech2 import length_regulate

    frames, mask = length_regulate(hidden, batch["durations"], x0.shape[1])
    c = model.config
    norm_f0 = (batch["log_f0"] - c.log_f0_mean) / c.log_f0_std * batch["voiced"]
    cond = model.frame_condition(frames, norm_f0, batch["voiced"])
    m = mask.float()[..., None]
    mse, wiener = [], []
    for t in EVAL_STEPS:
        step = torch.full((len(x0),), t)
        noise = torch.randn(x0.shape, generator=gen)
        x_t = q_sample(x0, step, noise, model.abar)
        pred = model.denoiser(x_t, step, cond, tokens, mask)
        mse.append(((pred - x0) ** 2 * m).sum() / (m.sum() * x0.shape[-1]))
        # the best an unconditional per-frame linear denoiser does on unit-variance data
        wiener.append(1 - model.abar[t])
    dur_tokens, _, _ = model.encode_prompt(prompt, torch.ones(prompt.shape[:2], dtype=torch.bool))
    log_dur = model.duration_predictor(hidden, batch["phoneme_mask"], dur_tokens)[..., 0]
    pm = batch["phoneme_mask"]
    predicted = torch.expm1(log_dur).round().clamp(min=0)
    mae = (predicted - batch["durations"]).abs()[pm].float().mean()
    model.train()
    return float(torch.stack(mse).mean()), float(torch.stack(wiener).mean()), float(mae)


@pytest.mark.slow
def test_training_on_toy_corpus_lowers_diffusion_and_duration_error(
    mel_shards, mel_codec, tmp_path
):
    torch.manual_seed(0)
    config = config_from_shards(mel_shards, tiny=True, wavenet_depth=4)
    model = NaturalSpeech2(config)
    batch = collate_ns2([mel_shards[i] for i in range(len(mel_shards))])
    mse0, wiener, mae0 = _evaluate(model, batch)
    durations = batch["durations"][batch["phoneme_mask"]].float()
    baseline_mae = float((durations - durations.mean().round()).abs().mean())

    trainer = Trainer(
        model,
        NaturalSpeech2TrainStep(
            NaturalSpeech2TrainConfig(cond_drop_prob=0.1), codebooks_from_codec(mel_codec)
        ),
        mel_shards,
        TrainerConfig(
            max_steps=80,
            batch_size=8,
            learning_rate=3e-3,
            warmup_steps=10,
            schedule="constant",
            ema_decay=0.9,
            save_every=None,
            log_every=20,
            seed=0,
        ),
        output_dir=tmp_path / "run",
        collate_fn=collate_ns2,
    )
    history = trainer.train()
    assert all(key in history[-1] for key in ("diffusion", "duration", "pitch", "ce_rvq"))
    trainer.ema.copy_to(model)
    mse, _, mae = _evaluate(model, batch)
    print(
        f"diffusion mse {mse0:.3f} -> {mse:.3f} (wiener {wiener:.3f}); duration MAE {mae0:.2f} -> {mae:.2f} "
        f"frames (mean-duration baseline {baseline_mae:.2f})"
    )
    assert mse < 0.6 * wiener  # far below what an unconditioned denoiser can do
    assert mse < 0.5 * mse0
    assert mae < 0.85 * baseline_mae  # beats predicting the mean duration for every phoneme


@pytest.mark.slow
def test_aligner_learns_toy_corpus_alignments():
    """Forward-sum training on log-mel frames: loss falls, MAS boundaries beat a uniform split."""
    from cadence.core.audio import load
    from cadence.core.data import pad_sequences
    from cadence.core.testing import toy_corpus_dir
    from cadence.naturalspeech2 import (
        Aligner,
        AlignerConfig,
        PhonemeVocabulary,
        durations_from_starts,
        mel_features,
    )
    from cadence.naturalspeech2.text import SILENCE, read_corpus_phonemes

    torch.manual_seed(0)
    rows = read_corpus_phonemes(toy_corpus_dir())[:16]
    vocab = PhonemeVocabulary.build([[SILENCE, *r["phonemes"]] for r in rows])
    ids, mels, durations = [], [], []
    for row in rows:
        audio, _ = load(toy_corpus_dir() / row["path"], sample_rate=16000, channels=1)
        t = audio.shape[-1] // 320
        mels.append(mel_features(audio[0], 16000, 320, t))
        ids.append(vocab.encode([SILENCE, *row["phonemes"]]))
        durations.append(
            torch.from_numpy(durations_from_starts(row["phoneme_starts"], row["duration"], 50.0, t))
        )
    phonemes, pmask = pad_sequences(ids)
    mel, fmask = pad_sequences(mels)
    target, _ = pad_sequences(durations)

    def boundary_error(d):
        return float((d.cumsum(-1) - target.cumsum(-1)).abs()[pmask].float().mean())

    uniform = torch.zeros_like(target)
    for i, (n, t) in enumerate(zip(pmask.sum(-1).tolist(), fmask.sum(-1).tolist())):
        uniform[i, :n] = t // n
        uniform[i, : t % n] += 1
    aligner = Aligner(AlignerConfig.tiny(vocab_size=len(vocab), feature_dim=80))
    opt = torch.optim.Adam(aligner.parameters(), 3e-3)
    with torch.no_grad():
        loss0 = float(aligner(phonemes, pmask, mel, fmask, hard=False).loss)
    for _ in range(40):
        idx = torch.randperm(16)[:8]
        out = aligner(phonemes[idx], pmask[idx], mel[idx], fmask[idx], hard=False)
        opt.zero_grad()
        out.loss.backward()
        opt.step()
    with torch.no_grad():
        out = aligner(phonemes, pmask, mel, fmask)
    assert (out.durations.sum(-1) == fmask.sum(-1)).all()
    assert float(out.loss) < 0.75 * loss0
    assert boundary_error(out.durations) < 0.75 * boundary_error(uniform)
