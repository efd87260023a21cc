"""Each stage learns the toy corpus: trained with core's Trainer (EMA on) over token shards.

Tokens come from the real audio (see conftest.py). Baselines, measured on the validation
split: the uniform distribution (log of the classes) and the training set's unigram
distribution per predicted level. A stage passes when its EMA validation loss is below a
fixed threshold that lies well under the uniform loss and under the unigram loss, i.e. the
model uses the context (previous tokens, semantic tokens, coarse codes) and not only
token frequencies. Measured on the CPU when written (one thread, 40/40/100 steps):

    stage     loss   threshold  unigram  uniform  context-blind model*
    semantic  2.30   2.80       3.48     3.47     3.49
    coarse    2.25   2.50       2.68     2.77     2.82
    fine      2.60   2.66       2.71     2.77     2.76

*the decoder's output replaced by zeros, so only the output biases learn: it fails every
threshold. The fine levels (residual k-means of what the coarse levels leave) carry the
least structure, hence the smallest margin.
"""

from __future__ import annotations

import math

import pytest
import torch

from cadence.audiolm import (
    CoarseTransformer,
    CoarseTransformerConfig,
    FineTransformer,
    FineTransformerConfig,
    SemanticTransformer,
    SemanticTransformerConfig,
    StageDataset,
    collate_stage,
    stage_step,
)
from cadence.core.data import ShardMismatchError
from cadence.core.train import Trainer, TrainerConfig

SEMANTIC_CODEBOOK = 32  # as in conftest.py
CODEBOOK = 16


def unigram_loss(train, valid, key, levels, classes) -> float:
    """Cross-entropy on ``valid`` of the per-level unigram of ``train`` (add-one smoothing)."""

    def stack(reader):
        return torch.cat([reader[i][key] for i in range(len(reader))]).reshape(
            -1, 1 if key == "tokens" else reader.fields[key].trailing_shape[0]
        )

    tr, va = stack(train), stack(valid)
    losses = []
    for level in levels:
        counts = torch.bincount(tr[:, level], minlength=classes).float() + 1
        logp = (counts / counts.sum()).log()
        losses.append(-logp[va[:, level]].mean().item())
    return sum(losses) / len(losses)


CASES = {
    # stage: (model, steps, threshold, unigram levels)
    "semantic": (
        lambda: SemanticTransformer(SemanticTransformerConfig.tiny()),
        40,
        2.8,
        ("tokens", [0], SEMANTIC_CODEBOOK),
    ),
    "coarse": (
        lambda: CoarseTransformer(CoarseTransformerConfig.tiny(codebook_size=CODEBOOK)),
        40,
        2.5,
        ("codes", [0, 1], CODEBOOK),
    ),
    "fine": (
        lambda: FineTransformer(FineTransformerConfig.tiny(codebook_size=CODEBOOK)),
        100,
        2.66,
        ("codes", [2, 3], CODEBOOK),
    ),
}


@pytest.mark.slow
@pytest.mark.parametrize("stage", list(CASES))
def test_stage_learns_toy_corpus(stage, toy_shards, tmp_path):
    make, steps, threshold, (key, levels, classes) = CASES[stage]
    torch.manual_seed(0)
    model = make()
    train = StageDataset(toy_shards["train"], model.config, max_frames=32, seed=0)
    valid = StageDataset(toy_shards["valid"], model.config, max_frames=32, seed=0)
    config = TrainerConfig(
        max_steps=steps,
        batch_size=8,
        learning_rate=3e-3,
        warmup_steps=5,
        ema_decay=0.9,
        save_every=None,
        log_every=10,
        seed=0,
    )
    trainer = Trainer(
        model,
        stage_step,
        train,
        config,
        output_dir=tmp_path,
        collate_fn=collate_stage,
        eval_dataset=valid,
    )
    history = trainer.train()
    loss = history[-1]["eval/loss"]
    unigram = unigram_loss(toy_shards["train"], toy_shards["valid"], key, levels, classes)
    uniform = math.log(classes)
    assert threshold < unigram < uniform + 0.1  # the threshold is a real bar
    assert loss < threshold, (
        f"{stage}: validation loss {loss:.3f} (unigram {unigram:.3f}, uniform {uniform:.3f})"
    )
    # the release weights (EMA) reload and are as good on the validation crops
    trainer.save_pretrained(tmp_path / "release")
    reloaded = type(model).load_pretrained(tmp_path / "release").eval()
    batch = collate_stage([valid[i] for i in range(len(valid))])
    with torch.no_grad():
        assert stage_step(reloaded, batch).loss < threshold


def test_shards_that_do_not_fit_are_refused(toy_shards):
    with pytest.raises(ShardMismatchError, match="tokenizer_codebook_size"):
        StageDataset(toy_shards["train"], SemanticTransformerConfig.tiny(codebook_size=50))
    with pytest.raises(ShardMismatchError, match="code levels"):
        StageDataset(
            toy_shards["train"],
            FineTransformerConfig.tiny(codebook_size=CODEBOOK, num_fine_quantizers=5),
        )
