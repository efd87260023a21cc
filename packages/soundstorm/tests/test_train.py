"""Training: the loss is on the masked frames of one level; SoundStorm learns on the toy corpus."""

from __future__ import annotations

import pytest
import torch

from cadence.core.data import ShardMismatchError, collate_sequences
from cadence.core.train import TrainerConfig
from cadence.soundstorm import (
    SoundStorm,
    SoundStormTrainConfig,
    SoundStormTrainStep,
    masked_accuracy,
    open_shards,
    train_soundstorm,
    training_mask,
    unigram_accuracy,
)

LEVELS = 2  # the toy shards' levels and semantic vocabulary (conftest.py)
SEMANTIC_VOCAB = 32


class _Recorder(torch.nn.Module):
    """Wraps a model and keeps the logits it returns, to inspect their gradient."""

    def __init__(self, model):
        super().__init__()
        self.model = model
        self.config = model.config  # the train step reads the model's levels and vocabularies
        self.logits = None

    def forward(self, *args, **kwargs):
        self.args = args
        self.logits = self.model(*args, **kwargs)
        self.logits.retain_grad()
        return self.logits


def test_loss_only_on_masked_frames_of_the_drawn_level(toy_shards, toy_config):
    config = toy_config()
    train_config = SoundStormTrainConfig(cond_drop_prob=0.0)
    batch = collate_sequences([toy_shards["train"][i] for i in range(4)])
    recorder = _Recorder(SoundStorm(config))
    torch.manual_seed(7)
    out = SoundStormTrainStep(train_config)(recorder, batch)
    torch.manual_seed(7)  # the step draws its mask from the global RNG: redraw the same one
    codes = batch["codes"]
    draw = training_mask(
        batch["codes_lengths"], codes.shape[1], LEVELS, prompt_range=train_config.prompt_range
    )
    assert torch.isfinite(out.loss)
    out.loss.backward()
    touched = recorder.logits.grad.abs().sum(-1) > 0  # (b, n)
    assert torch.equal(touched, draw.loss_mask)
    assert 0.0 <= float(out.metrics["accuracy"]) <= 1.0


def test_condition_dropout_of_the_prompt_and_of_whole_samples(toy_shards, toy_config):
    batch = collate_sequences([toy_shards["train"][i] for i in range(6)])
    codes, null = batch["codes"], SEMANTIC_VOCAB
    # prompt only: the semantic tokens of the prompt frames become "no condition", the rest stay
    config = toy_config()
    train_config = SoundStormTrainConfig(cond_drop_prob=0.0, prompt_cond_drop_prob=1.0)
    recorder = _Recorder(SoundStorm(config)).train()
    torch.manual_seed(3)
    SoundStormTrainStep(train_config)(recorder, batch)
    torch.manual_seed(3)
    draw = training_mask(
        batch["codes_lengths"], codes.shape[1], LEVELS, prompt_range=train_config.prompt_range
    )
    semantic = recorder.args[1]
    frames = torch.arange(codes.shape[1])[None]
    in_prompt = frames < draw.prompt_lengths[:, None]
    real = frames < batch["codes_lengths"][:, None]
    assert (semantic[in_prompt] == null).all()
    assert (semantic[real & ~in_prompt] != null).all()
    # whole samples, with probability cond_drop_prob (here 0.5 over 6 samples, seeded)
    train_config = SoundStormTrainConfig(cond_drop_prob=0.5, prompt_cond_drop_prob=0.0)
    recorder = _Recorder(SoundStorm(config)).train()
    torch.manual_seed(4)
    SoundStormTrainStep(train_config)(recorder, batch)
    dropped = (recorder.args[1] == null).all(1)
    assert 0 < int(dropped.sum()) < 6
    # evaluation never drops the condition
    recorder.eval()
    SoundStormTrainStep(train_config)(recorder, batch)
    assert not (recorder.args[1][real] == null).any()


def test_shards_of_another_codec_are_refused(toy_shards, toy_config):
    with pytest.raises(ShardMismatchError, match="codebook_size"):
        open_shards(toy_shards["train"].directory, toy_config(codebook_size=32))
    with pytest.raises(ShardMismatchError, match="tokenizer_frame_rate"):
        open_shards(toy_shards["train"].directory, toy_config(semantic_frame_rate=50.0))


@pytest.mark.slow
def test_learns_level_one_on_the_toy_corpus(toy_shards, toy_config, tmp_path):
    """Level-1 masked-token accuracy on held-out speakers after 200 CPU steps.

    Measured (EMA weights; seeds 0 and 1): 0.452 and 0.438 after training vs 0.269 for the
    unigram baseline and 0.002 / 0.044 before training. The thresholds leave margin on both
    sides: a broken step (targets shifted by 3 frames) stays below them.
    """
    train, valid = toy_shards["train"], toy_shards["valid"]
    torch.manual_seed(0)
    model = SoundStorm(toy_config())
    batch = collate_sequences([valid[i] for i in range(len(valid))])
    before = masked_accuracy(model, batch, level=0)
    baseline = unigram_accuracy([train[i]["codes"] for i in range(len(train))], batch, level=0)
    trainer = train_soundstorm(
        model,
        train.directory,
        TrainerConfig(
            max_steps=200,
            batch_size=8,
            learning_rate=5e-3,
            warmup_steps=10,
            ema_decay=0.9,
            save_every=None,
            log_every=25,
        ),
        output_dir=tmp_path / "run",
        resume_from=None,
    )
    trainer.save_pretrained(tmp_path / "release")  # EMA weights
    trained = SoundStorm.load_pretrained(tmp_path / "release")
    after = masked_accuracy(trained, batch, level=0)
    assert before < 0.15
    assert after > 0.36, f"accuracy {after:.3f} after training"
    assert after > baseline + 0.06, (
        f"accuracy {after:.3f} does not beat the unigram baseline {baseline:.3f}"
    )
    # and the trained model decodes from semantic tokens alone
    codes = trained.generate(
        batch["tokens"][:2], semantic_lengths=batch["tokens_lengths"][:2], iterations=(8, 1)
    )
    assert codes.codes.shape[-1] == LEVELS
