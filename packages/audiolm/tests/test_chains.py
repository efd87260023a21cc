"""Same-speaker chains in StageDataset: what a chained crop holds, and that it teaches the model
to continue across an utterance's end.

The fake shards below write, for utterance ``u``, semantic token ``1000 u + k`` at its frame
``k`` and code ``1000 u + j`` at acoustic frame ``j`` (every level), so a crop shows which
utterances it joined and where. The learning test uses the committed toy corpus (tokens from
its audio, see conftest.py) and its speakers.
"""

from __future__ import annotations

import math

import pytest
import torch

from cadence.audiolm import (
    CoarseTransformerConfig,
    FineTransformerConfig,
    SamplingOptions,
    SemanticTransformer,
    SemanticTransformerConfig,
    StageDataset,
    collate_stage,
    speaker_groups,
    stage_step,
)
from cadence.audiolm.chains import AlignedChain
from cadence.core.data import ShardReader, ShardWriter, write_manifest
from cadence.core.testing import toy_corpus_dir
from cadence.core.train import Trainer, TrainerConfig

STAGES = ("semantic", "coarse", "fine")


def fake_shards(
    directory, *, ratio=1.0, group_sizes=(10, 5, 2, 1), ungrouped=3, lengths=(6, 20), seed=0
):
    """``(reader, groups)``: utterances of random lengths whose tokens name them (see above).

    Groups are interleaved in the reader; ``ungrouped`` items belong to none. Codes are
    ``floor(s * ratio)`` frames long give or take one, as a codec's and a tokenizer's frame
    counts differ.
    """
    gen = torch.Generator().manual_seed(seed)
    owner = [g for g, size in enumerate(group_sizes) for _ in range(size)] + [-1] * ungrouped
    owner = [owner[i] for i in torch.randperm(len(owner), generator=gen).tolist()]
    with ShardWriter(directory, metadata={}, max_items_per_shard=8) as writer:
        for u in range(len(owner)):
            s = int(torch.randint(lengths[0], lengths[1] + 1, (1,), generator=gen))
            n = max(
                1, math.floor(s * ratio + 1e-6) + int(torch.randint(-1, 2, (1,), generator=gen))
            )
            tokens = 1000 * u + torch.arange(s)
            codes = (1000 * u + torch.arange(n))[:, None].expand(n, 4).contiguous()
            writer.add(f"u{u}", tokens=tokens, codes=codes)
    write_manifest(directory)
    groups = [[u for u, g in enumerate(owner) if g == k] for k in range(len(group_sizes))]
    return ShardReader(directory), groups


def stage_config(stage, ratio=1.0):
    if stage == "semantic":
        return SemanticTransformerConfig.tiny()
    if stage == "coarse":
        return CoarseTransformerConfig.tiny(frame_rate=50.0 * ratio, semantic_frame_rate=50.0)
    return FineTransformerConfig.tiny()


def target(stage, item) -> torch.Tensor:
    """The frames of the stream the stage predicts (level 0 of codes)."""
    if stage == "semantic":
        return item["tokens"]
    return item["codes" if stage == "coarse" else "coarse"][:, 0]


def runs(values: torch.Tensor) -> list[tuple[int, list[int]]]:
    """``[(utterance, its frames), ...]`` in the order the crop holds them."""
    out: list[tuple[int, list[int]]] = []
    for v in values.tolist():
        u, k = divmod(v, 1000)
        if out and out[-1][0] == u:
            out[-1][1].append(k)
        else:
            out.append((u, [k]))
    return out


def frames_of(reader, stage, u) -> int:
    return len(reader[u]["tokens" if stage == "semantic" else "codes"])


@pytest.mark.parametrize("stage", STAGES)
def test_chains_join_whole_utterances_of_the_item_group_only(stage, tmp_path):
    reader, groups = fake_shards(tmp_path)
    window = 24
    data = StageDataset(reader, stage_config(stage), max_frames=window, groups=groups)
    group_of = {i: set(g) for g in groups for i in g}
    longest = 0
    for epoch in range(3):
        data.set_epoch(epoch)
        for index in range(len(data)):
            pieces = runs(target(stage, data[index]))
            assert pieces[0][0] == index  # a chain starts in the item itself
            used = [u for u, _ in pieces]
            assert len(set(used)) == len(used)  # each utterance at most once
            if len(group_of.get(index, ())) < 2:
                assert len(pieces) == 1  # nothing to chain with
                continue
            assert set(used) <= group_of[index]  # never another speaker
            for k, (u, frames) in enumerate(pieces):
                assert frames == list(range(frames[0], frames[0] + len(frames)))
                if k > 0:
                    assert frames[0] == 0  # a follower from its start...
                if k < len(pieces) - 1:  # ...and all but the last to its end
                    # (a coarse chain drops the end a semantic frame's codes do not cover)
                    slack = 0 if stage != "coarse" else 1
                    assert frames_of(reader, stage, u) - slack <= frames[-1] + 1
            longest = max(longest, len(pieces))
    assert longest >= 3  # chains do happen, of several utterances


@pytest.mark.parametrize("ratio", [1.0, 2.0, 1.5])
def test_coarse_chains_keep_semantic_tokens_and_codes_aligned(ratio, tmp_path):
    reader, groups = fake_shards(tmp_path, ratio=ratio)
    config = stage_config("coarse", ratio)
    data = StageDataset(reader, config, max_frames=30, groups=groups)
    chained = 0
    for epoch in range(3):
        data.set_epoch(epoch)
        for index in range(len(data)):
            item = data[index]
            semantic, codes = runs(item["semantic"]), runs(item["codes"][:, 0])
            assert [u for u, _ in semantic] == [u for u, _ in codes]  # the same utterances
            chained += len(codes) > 1
            for (_, ks), (_, js) in zip(semantic, codes):
                # each utterance's tokens and codes span the same time, to a semantic frame
                assert abs(js[0] / ratio - ks[0]) < 1
                assert abs((js[-1] + 1) / ratio - (ks[-1] + 1)) < 1
            if ratio.is_integer():
                # a crop starts on a semantic frame: code i lies in semantic token i // ratio
                flat = [(u, k) for u, ks in semantic for k in ks]
                assert len(flat) == config.semantic_frames(len(item["codes"]))
                for i, value in enumerate(item["codes"][:, 0].tolist()):
                    u, j = divmod(value, 1000)
                    assert flat[i // int(ratio)] == (u, j // int(ratio))
    assert chained > 0


def test_aligned_chain_puts_every_boundary_on_both_grids():
    chain = AlignedChain(1.5)
    for s, n in [(7, 10), (5, 8), (9, 13), (3, 4)]:
        chain.add(torch.zeros(s, dtype=torch.long), torch.zeros(n, 2, dtype=torch.long))
        assert chain.frames == math.floor(chain.semantic_frames * 1.5)
        assert sum(len(c) for c in chain.codes) == chain.frames


@pytest.mark.parametrize("stage", STAGES)
def test_ends_only_where_the_crop_reaches_the_end_of_the_chain(stage, tmp_path):
    reader, groups = fake_shards(tmp_path)
    config = stage_config(stage)
    big, small = groups[0], groups[2]  # 10 utterances (>= 60 frames), and 2 (<= 40 frames)
    cases = [(24, big), (config.max_frames, small)]
    for window, group in cases:
        data = StageDataset(reader, config, max_frames=window, groups=groups)
        for epoch in range(4):
            data.set_epoch(epoch)
            for index in group:
                item = data[index]
                pieces = runs(target(stage, item))
                if group is big:
                    # a full window always fits after any start in the item: never an end
                    assert "ends" not in item or not item["ends"]
                    assert len(target(stage, item)) == window
                else:
                    # the whole group fits: the whole chain, from the item's start to the end
                    # of the last utterance, and EOS after it
                    assert {u for u, _ in pieces} == set(group)
                    assert pieces[0][1][0] == 0
                    last, frames = pieces[-1]
                    assert frames[-1] + 1 >= frames_of(reader, stage, last) - (stage == "coarse")
                    if stage != "fine":
                        assert item["ends"] is True


@pytest.mark.parametrize("stage", STAGES)
def test_items_that_are_not_chained_are_cropped_as_without_groups(stage, tmp_path):
    reader, groups = fake_shards(tmp_path, lengths=(20, 60))
    config = stage_config(stage)
    plain = StageDataset(reader, config, max_frames=16, seed=3)
    never = StageDataset(reader, config, max_frames=16, seed=3, groups=groups, chain_prob=0.0)
    grouped = StageDataset(reader, config, max_frames=16, seed=3, groups=groups)
    alone = [i for i in range(len(reader)) if not any(i in g and len(g) > 1 for g in groups)]
    assert alone
    for epoch in range(3):
        for d in (plain, never, grouped):
            d.set_epoch(epoch)
        for index in range(len(reader)):
            want = plain[index]
            for other in (never, grouped) if index in alone else (never,):
                got = other[index]
                assert got.keys() == want.keys()
                for key in want:
                    assert torch.equal(torch.as_tensor(got[key]), torch.as_tensor(want[key]))


def test_chain_prob_is_the_share_of_chained_items(tmp_path):
    reader, groups = fake_shards(tmp_path, group_sizes=(40, 40), ungrouped=0)
    data = StageDataset(
        reader, stage_config("semantic"), max_frames=40, groups=groups, chain_prob=0.5
    )
    chained = []
    for epoch in range(3):
        data.set_epoch(epoch)
        # utterances are shorter than the window: a chained item always holds two or more
        chained += [len(runs(data[i]["tokens"])) > 1 for i in range(len(data))]
    assert 0.4 < sum(chained) / len(chained) < 0.6


@pytest.mark.parametrize("stage", STAGES)
def test_chains_depend_on_seed_epoch_and_index_only(stage, tmp_path):
    reader, groups = fake_shards(tmp_path)
    config = stage_config(stage)

    def items(data, epoch, order):
        data.set_epoch(epoch)
        return {i: data[i] for i in order}

    def same(a, b):
        return all(
            torch.equal(torch.as_tensor(a[i][k]), torch.as_tensor(b[i][k])) for i in a for k in a[i]
        )

    forward = list(range(len(reader)))
    first = StageDataset(reader, config, max_frames=24, groups=groups, seed=1)
    epoch0, epoch1 = items(first, 0, forward), items(first, 1, forward)
    # a fresh dataset (another process, a resumed run), epochs and items visited in another order
    second = StageDataset(reader, config, max_frames=24, groups=groups, seed=1)
    assert same(items(second, 1, forward[::-1]), epoch1)
    assert same(items(second, 0, forward[::-1]), epoch0)
    assert not same(epoch0, epoch1)  # another epoch: other chains and crops
    other_seed = StageDataset(reader, config, max_frames=24, groups=groups, seed=2)
    assert not same(items(other_seed, 0, forward), epoch0)


def test_exact_resume_with_chains(tmp_path):
    reader, groups = fake_shards(tmp_path / "shards", group_sizes=(5, 4, 3), ungrouped=0)

    class Mod(StageDataset):
        # the fake tokens name utterances: fold them into the tiny model's vocabulary
        def __getitem__(self, index):
            item = super().__getitem__(index)
            return {**item, "tokens": item["tokens"] % 32}

    def run(output, resume=None):
        torch.manual_seed(0)
        model = SemanticTransformer(SemanticTransformerConfig.tiny(depth=1))
        data = Mod(reader, model.config, max_frames=24, groups=groups, seed=5)
        config = TrainerConfig(
            max_steps=8,
            batch_size=4,
            learning_rate=1e-3,
            save_every=3,
            keep_last_checkpoints=None,
            log_every=1,
            seed=0,
        )
        trainer = Trainer(
            model, stage_step, data, config, output_dir=output, collate_fn=collate_stage
        )
        return trainer.train(resume_from=resume)

    straight = run(tmp_path / "a")  # 3 batches per epoch: the resume crosses epochs
    # a fresh process builds everything again and resumes from the checkpoint at step 3
    rest = run(tmp_path / "b", resume=tmp_path / "a" / "checkpoints" / "step-00000003")
    assert [r["step"] for r in rest] == list(range(4, 9))
    assert [r["loss"] for r in rest] == [r["loss"] for r in straight[3:]]


def test_bad_groups_are_refused(tmp_path):
    reader, groups = fake_shards(tmp_path)
    config = stage_config("semantic")
    with pytest.raises(ValueError, match="out of range"):
        StageDataset(reader, config, groups=[[0, len(reader)]])
    with pytest.raises(ValueError, match="two groups"):
        StageDataset(reader, config, groups=[[0, 1], [1, 2]])
    with pytest.raises(ValueError, match="chain_prob"):
        StageDataset(reader, config, groups=groups, chain_prob=1.5)
    with ShardWriter(tmp_path / "cond", metadata={}) as writer:
        for k in range(2):
            writer.add(f"u{k}", tokens=torch.arange(5), cond=torch.randn(3, 4))
    write_manifest(tmp_path / "cond")
    conditioned = ShardReader(tmp_path / "cond")
    StageDataset(conditioned, config)  # single utterances: fine
    with pytest.raises(ValueError, match="'cond' field"):
        StageDataset(conditioned, config, groups=[[0, 1]])


def test_speaker_groups_follow_the_manifest(toy_shards):
    reader = toy_shards["train"]
    manifest = toy_corpus_dir() / "train.jsonl"
    groups = speaker_groups(reader.ids, manifest)
    speaker = {i: i.rsplit("-", 1)[0] for i in reader.ids}  # toy ids are <speaker>-<number>
    assert sorted(i for g in groups for i in g) == list(range(len(reader)))
    for group in groups:
        assert len({speaker[reader.ids[i]] for i in group}) == 1
    assert len(groups) == len(set(speaker.values()))
    # rows given directly, one without a speaker (never chained), ids defaulting to paths
    rows = [{"path": "a.wav", "speaker": "x"}, {"id": "b", "speaker": "x"}, {"id": "c"}]
    assert speaker_groups(["c", "b", "a.wav"], rows) == [[1, 2]]
    with pytest.raises(KeyError, match="not in the manifest"):
        speaker_groups(["d"], rows)


# Measured on the CPU when written (one thread, 40 steps each; 67 prompts: the validation and
# training utterances that leave room for one more second), single / chained:
#   P(EOS) after the last token: mean 0.169 / 0.0008, max 0.30 / 0.0015
#   continuation of the whole second asked for: 22% / 90%; ended within 0.2 s: 48% / 1.5%


def _train_semantic(shards, groups, tmp_path) -> SemanticTransformer:
    torch.manual_seed(0)
    model = SemanticTransformer(SemanticTransformerConfig.tiny())
    # a window holds a whole toy utterance (54 of 57 fit): single ones nearly always end in EOS
    data = StageDataset(shards, model.config, max_frames=160, seed=0, groups=groups)
    config = TrainerConfig(
        max_steps=40,
        batch_size=8,
        learning_rate=3e-3,
        warmup_steps=5,
        ema_decay=0.9,
        save_every=None,
        log_every=10,
        seed=0,
    )
    Trainer(model, stage_step, data, config, output_dir=tmp_path, collate_fn=collate_stage).train()
    return model.eval()


@pytest.mark.slow
def test_chained_training_continues_across_an_utterance_end(toy_shards, tmp_path):
    train, valid = toy_shards["train"], toy_shards["valid"]
    groups = speaker_groups(train.ids, toy_corpus_dir() / "train.jsonl")
    single = _train_semantic(train, None, tmp_path / "single")
    chained = _train_semantic(train, groups, tmp_path / "chained")

    # complete utterances, each ending in silence: unseen speakers' and the training ones
    ask = 50  # frames: one second more
    prompts = [r[i]["tokens"] for r in (valid, train) for i in range(len(r))]
    prompts = [p for p in prompts if len(p) + ask <= single.config.max_frames]
    batch = collate_stage([{"tokens": p} for p in prompts])
    tokens, lengths = batch["tokens"], batch["tokens_lengths"]

    def p_eos(model):
        """P(EOS) right after each utterance's last token."""
        with torch.no_grad():
            return model(tokens, lengths).eos_logits.softmax(-1)[:, -1]

    def continuation(model):
        """Frames generated after each prompt, of the ``ask`` asked for."""
        out = model.generate(
            tokens,
            lengths,
            max_frames=lengths + ask,
            sampling=SamplingOptions(temperature=1.0),
            generator=torch.Generator().manual_seed(0),
        )
        return out.lengths - lengths

    eos_single, eos_chained = p_eos(single), p_eos(chained)
    more_single, more_chained = continuation(single), continuation(chained)
    figures = {
        "P(EOS) mean": (eos_single.mean(), eos_chained.mean()),
        "P(EOS) max": (eos_single.max(), eos_chained.max()),
        "share continued 1 s": (
            (more_single == ask).float().mean(),
            (more_chained == ask).float().mean(),
        ),
        "share ended within 0.2 s": (
            (more_single <= 10).float().mean(),
            (more_chained <= 10).float().mean(),
        ),
    }
    print(f"{len(prompts)} prompts; single / chained:")
    for name, (a, b) in figures.items():
        print(f"  {name}: {float(a):.4f} / {float(b):.4f}")
    # trained on single utterances the model ends there; trained on chains it goes on
    assert eos_single.mean() > 0.05
    assert eos_chained.mean() < 0.01 and eos_chained.mean() < eos_single.mean() / 20
    assert (more_chained == ask).float().mean() > 0.75
    assert (more_single <= 10).float().mean() > 0.25
    assert (more_chained <= 10).float().mean() < 0.1
