"""Side-by-side timing: cadence-naturalspeech2 vs naturalspeech2-pytorch 0.1.8, matched small config.

Run (see README.md for the environment):
    /work/bench-envs/naturalspeech2/bin/python bench/naturalspeech2/bench_ns2.py

What is compared, on CPU with ``torch.set_num_threads(2)``:
* one denoiser evaluation on 250 latent frames (batch 1), with prompt conditioning;
* sampling 250 frames: ours with DPM-Solver++ at 32 steps (the whole generate(), encoders
  and predictors included) and DDPM at 1000 steps; the peer at its default (1000 DDPM
  steps), from its measured per-evaluation time x 1000 (its sampler is one network call per
  step; its full pipeline needs its codec and aligner, which need torchaudio);
* training steps/s of the denoiser (forward + backward, batch 4 x 250 frames), and of our
  whole train step (phoneme encoder, prompt encoder, predictors, denoiser, CE-RVQ).

The peer module imports torchaudio, audiolm_pytorch, pyworld and num_to_words (its text
normaliser; not on PyPI under that name) at import time, none of which is used by the parts
timed here (torchaudio does not install against torch 2.15); they are replaced by empty
stand-in modules before the import.
"""

from __future__ import annotations

import sys
import time
import types

import torch

torch.set_num_threads(2)
torch.manual_seed(0)

FRAMES = 250
DIM = 128  # channels of both denoisers
LAYERS = 8  # WaveNet layers in both


def _stub_peer_imports() -> None:
    names = (
        "torchaudio",
        "torchaudio.transforms",
        "audiolm_pytorch",
        "audiolm_pytorch.data",
        "pyworld",
        "num_to_words",
    )
    for name in names:
        module = types.ModuleType(name)
        module.__dict__.update(
            SoundStream=object,
            EncodecWrapper=object,
            SoundDataset=object,
            get_dataloader=None,
            num_to_word=None,
        )
        sys.modules.setdefault(name, module)
    sys.modules["torchaudio"].transforms = sys.modules["torchaudio.transforms"]


def timed(fn, repeat: int = 3, warmup: bool = True) -> float:
    if warmup:
        fn()
    start = time.perf_counter()
    for _ in range(repeat):
        fn()
    return (time.perf_counter() - start) / repeat


def ours():
    from cadence.naturalspeech2 import NaturalSpeech2, NaturalSpeech2Config, NaturalSpeech2TrainStep
    from cadence.naturalspeech2.text import SPECIAL_SYMBOLS

    config = NaturalSpeech2Config(
        phonemes=(*SPECIAL_SYMBOLS, *"abcdefghij"),
        latent_dim=16,
        dim=DIM,
        heads=4,
        encoder_depth=2,
        prompt_encoder_depth=1,
        predictor_depth=1,
        num_query_tokens=32,
        wavenet_channels=DIM,
        wavenet_depth=LAYERS,
        dropout=0.0,
    )
    model = NaturalSpeech2(config).eval()
    x = torch.randn(1, FRAMES, 16)
    cond = torch.randn(1, FRAMES, DIM)
    tokens = torch.randn(1, 32, DIM)
    mask = torch.ones(1, FRAMES, dtype=torch.bool)
    step = torch.tensor([500])
    with torch.inference_mode():
        per_eval = timed(lambda: model.denoiser(x, step, cond, tokens, mask), repeat=10)
    phonemes = torch.randint(4, 14, (1, 50))
    durations = torch.full((1, 50), FRAMES // 50)
    prompt = torch.randn(1, 150, 16)
    sample32 = timed(
        lambda: model.generate(phonemes, prompt, durations=durations, steps=32), repeat=2
    )
    ddpm = timed(
        lambda: model.generate(phonemes, prompt, durations=durations, sampler="ddpm"),
        repeat=1,
        warmup=False,
    )

    model.train()
    opt = torch.optim.AdamW(model.denoiser.parameters(), 1e-4)
    xb, cb, tb, mb = (
        x.repeat(4, 1, 1),
        cond.repeat(4, 1, 1),
        tokens.repeat(4, 1, 1),
        mask.repeat(4, 1),
    )

    def denoiser_step():
        loss = (model.denoiser(xb, torch.randint(0, 1000, (4,)), cb, tb, mb) - xb).pow(2).mean()
        loss.backward()
        opt.step()
        opt.zero_grad()

    train_denoiser = timed(denoiser_step)
    batch = dict(
        phonemes=torch.randint(4, 14, (4, 50)),
        phoneme_mask=torch.ones(4, 50, dtype=torch.bool),
        durations=torch.full((4, 50), FRAMES // 50),
        latents=torch.randn(4, FRAMES, 16),
        frame_mask=torch.ones(4, FRAMES, dtype=torch.bool),
        log_f0=torch.full((4, FRAMES), 5.0),
        voiced=torch.ones(4, FRAMES, dtype=torch.bool),
        codes=torch.randint(0, 64, (4, FRAMES, 4)),
    )
    train_step = NaturalSpeech2TrainStep(codebooks=torch.randn(4, 64, 16))
    full_opt = torch.optim.AdamW(model.parameters(), 1e-4)

    def full_step():
        train_step(model, batch).loss.backward()
        full_opt.step()
        full_opt.zero_grad()

    train_full = timed(full_step)
    params = sum(p.numel() for p in model.denoiser.parameters())
    return dict(
        per_eval=per_eval,
        sample32=sample32,
        ddpm1000=ddpm,
        train_denoiser=1 / train_denoiser,
        train_full=1 / train_full,
        params=params,
    )


def peer():
    _stub_peer_imports()
    from naturalspeech2_pytorch.naturalspeech2_pytorch import Model

    model = Model(
        dim=DIM,
        depth=1,
        dim_head=32,
        heads=4,
        wavenet_layers=LAYERS,
        wavenet_stacks=1,
        dim_prompt=DIM,
        num_latents_m=32,
        resampler_depth=1,
        condition_on_prompt=True,
        use_flash_attn=False,
    ).eval()
    x = torch.randn(1, FRAMES, DIM)
    prompt = torch.randn(1, 150, DIM)
    cond = torch.randn(1, DIM, FRAMES)
    times = torch.rand(1)
    with torch.inference_mode():
        per_eval = timed(
            lambda: model.forward_with_cond_scale(x, times, prompt=prompt, cond=cond), repeat=10
        )
    model.train()
    opt = torch.optim.AdamW(model.parameters(), 1e-4)
    xb, pb, cb = x.repeat(4, 1, 1), prompt.repeat(4, 1, 1), cond.repeat(4, 1, 1)

    def step():
        loss = (model(xb, torch.rand(4), prompt=pb, cond=cb) - xb).pow(2).mean()
        loss.backward()
        opt.step()
        opt.zero_grad()

    train = timed(step)
    denoiser_params = sum(p.numel() for p in model.parameters())
    return dict(
        per_eval=per_eval,
        sample1000=per_eval * 1000,
        train_denoiser=1 / train,
        params=denoiser_params,
    )


def main() -> None:
    a = ours()
    b = peer()
    rows = [
        ("denoiser params", f"{a['params'] / 1e6:.2f} M", f"{b['params'] / 1e6:.2f} M", ""),
        (
            "one denoiser evaluation, 250 frames",
            f"{a['per_eval'] * 1e3:.1f} ms",
            f"{b['per_eval'] * 1e3:.1f} ms",
            f"{b['per_eval'] / a['per_eval']:.2f}x",
        ),
        (
            "sample 250 frames, ours dpm++ 32 steps vs peer 1000 DDPM steps",
            f"{a['sample32']:.2f} s",
            f"{b['sample1000']:.1f} s (per-eval x 1000)",
            f"{b['sample1000'] / a['sample32']:.1f}x",
        ),
        (
            "sample 250 frames, both 1000 DDPM steps",
            f"{a['ddpm1000']:.1f} s",
            f"{b['sample1000']:.1f} s",
            f"{b['sample1000'] / a['ddpm1000']:.2f}x",
        ),
        (
            "denoiser train steps/s (batch 4 x 250)",
            f"{a['train_denoiser']:.2f}",
            f"{b['train_denoiser']:.2f}",
            f"{a['train_denoiser'] / b['train_denoiser']:.2f}x",
        ),
        ("full train step/s, all losses (ours only)", f"{a['train_full']:.2f}", "n/a", ""),
    ]
    print(
        f"torch {torch.__version__}, threads {torch.get_num_threads()}; ratio = peer time / ours (>1: ours faster)"
    )
    print(
        f"| {'measure':<66} | {'cadence':>12} | {'naturalspeech2-pytorch 0.1.8':>30} | {'ratio':>7} |"
    )
    print(f"|{'-' * 68}|{'-' * 14}|{'-' * 32}|{'-' * 9}|")
    for name, x, y, r in rows:
        print(f"| {name:<66} | {x:>12} | {y:>30} | {r:>7} |")


if __name__ == "__main__":
    main()
