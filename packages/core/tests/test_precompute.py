"""precompute: equals running the models item by item, resumes exactly, runs on 2 processes."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from cadence.core.audio import SampleRateMismatchError, save
from cadence.core.data import AudioDataset, ShardReader, precompute
from cadence.core.testing import FakeCodec, FakeSemanticTokenizer

WORKER = Path(__file__).parent / "scripts" / "precompute_worker.py"
# seconds per file: not multiples of the 320-sample hop, one shorter than a hop
DURATIONS = [0.51, 1.237, 0.3, 0.0125, 0.9, 0.66, 0.205, 1.1, 0.42, 0.75]


def make_corpus(root: Path, durations=DURATIONS, *, with_bad: bool = False) -> Path:
    for k, seconds in enumerate(durations):
        gen = torch.Generator().manual_seed(k)
        audio = 0.3 * torch.randn(1, round(seconds * 16000), generator=gen).clamp(-3, 3) / 3
        save(root / f"utt{k:02d}.wav", audio, 16000, subtype="FLOAT")
    if with_bad:
        (root / "utt99_broken.wav").write_bytes(b"RIFF" + bytes(200))
        gen = torch.Generator().manual_seed(99)
        save(
            root / "utt50_22k.wav",
            0.1 * torch.randn(1, 15000, generator=gen),
            22050,
            subtype="FLOAT",
        )
    return root


class Counting:
    """A codec wrapper that counts encode calls and can crash after some, like a preempted job."""

    def __init__(self, inner: FakeCodec, fail_after: int | None = None):
        self.inner = inner
        self.fail_after = fail_after
        self.calls = 0
        self.batch_shapes: list[tuple[int, ...]] = []
        for name in ("sample_rate", "channels", "frame_rate", "num_quantizers", "codebook_size"):
            setattr(self, name, getattr(inner, name))

    def encode(self, audio: torch.Tensor) -> torch.Tensor:
        if self.fail_after is not None and self.calls >= self.fail_after:
            raise RuntimeError("simulated crash")
        self.calls += 1
        self.batch_shapes.append(tuple(audio.shape))
        return self.inner.encode(audio)

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        return self.inner.decode(codes)


class OffByOne:
    """Returns one frame more (codes) or one fewer (tokens) than floor(t / hop)."""

    def __init__(self, codec: FakeCodec, tokenizer: FakeSemanticTokenizer):
        self.codec, self.tokenizer = codec, tokenizer
        self.sample_rate, self.channels, self.frame_rate = 16000, 1, 50.0
        self.num_quantizers, self.codebook_size = codec.num_quantizers, codec.codebook_size

    def encode(self, audio: torch.Tensor) -> torch.Tensor:
        codes = self.codec.encode(audio)
        return torch.cat([codes, torch.zeros_like(codes[:, :1])], dim=1)

    def tokenize(self, audio: torch.Tensor) -> torch.Tensor:
        return self.tokenizer.tokenize(audio)[:, :-1]


def test_precompute_equals_running_the_models_item_by_item(tmp_path: Path):
    corpus = make_corpus(tmp_path / "audio", with_bad=True)
    dataset = AudioDataset(corpus, sample_rate=16000)
    codec, tokenizer = FakeCodec(), FakeSemanticTokenizer()
    manifest = precompute(
        dataset,
        tmp_path / "out",
        codec=codec,
        tokenizer=tokenizer,
        latent_codec=codec,
        batch_size=3,
        max_items_per_shard=4,
        num_workers=2,
        progress=False,
    )
    reader = ShardReader(manifest.parent)
    good = [i for i in dataset.ids if "broken" not in i]
    assert sorted(reader.ids) == sorted(good) and len(reader) == 11
    assert list(reader.skipped) == ["utt99_broken.wav"]
    with torch.inference_mode():
        for index, item_id in enumerate(dataset.ids):
            if item_id not in good:
                continue
            audio = dataset.read(index)["audio"][None]
            item = reader.by_id(item_id)
            assert torch.equal(item["codes"], codec.encode(audio)[0])
            assert torch.equal(item["tokens"], tokenizer.tokenize(audio)[0])
            torch.testing.assert_close(item["latents"], codec.encode_latents(audio)[0])
            assert len(item["codes"]) == audio.shape[-1] // 320
    assert reader.by_id("utt03.wav")["codes"].shape == (0, 4)  # shorter than one hop
    assert reader.by_id("utt50_22k.wav")["codes"].shape == (15000 * 16000 // 22050 // 320, 4)
    reader.check_compatible(
        sample_rate=16000,
        frame_rate=50,
        num_quantizers=4,
        codebook_size=64,
        latent_dim=16,
        tokenizer_codebook_size=32,
        tokenizer_frame_rate=50,
    )
    assert reader.metadata["codec"] == "cadence.core.testing.FakeCodec"
    assert reader.metadata["tokenizer"] == "cadence.core.testing.FakeSemanticTokenizer"
    stored = ShardReader(manifest.parent, int_dtype=None)[0]
    assert stored["codes"].dtype == torch.uint8 and stored["tokens"].dtype == torch.uint8
    assert stored["latents"].dtype == torch.float32


def test_outputs_are_trimmed_to_each_items_frames_and_batches_capped(tmp_path: Path):
    corpus = make_corpus(tmp_path / "audio")
    dataset = AudioDataset(corpus, sample_rate=16000)
    model = OffByOne(FakeCodec(), FakeSemanticTokenizer())
    # one item per batch, so that "one frame fewer" applies to every item
    precompute(
        dataset, tmp_path / "out", codec=model, tokenizer=model, batch_size=1, progress=False
    )
    reader = ShardReader(tmp_path / "out")
    for item_id, seconds in zip(dataset.ids, DURATIONS):
        frames = round(seconds * 16000) // 320
        item = reader.by_id(item_id)
        assert len(item["codes"]) == frames  # the extra frame is cut
        assert len(item["tokens"]) == max(frames - 1, 0)  # the model's count when it is smaller

    counting = Counting(FakeCodec())
    precompute(
        dataset,
        tmp_path / "capped",
        codec=counting,
        batch_size=8,
        max_batch_seconds=2.0,
        progress=False,
    )
    for b, _, t in counting.batch_shapes:
        assert b == 1 or b * t <= 2.0 * 16000
    assert sum(b for b, _, _ in counting.batch_shapes) == len(dataset)
    # longest first: the first batch holds the longest file
    assert counting.batch_shapes[0][-1] == round(max(DURATIONS) * 16000)


def test_precompute_refuses_mismatched_inputs(tmp_path: Path):
    corpus = make_corpus(tmp_path / "audio", DURATIONS[:2])
    with pytest.raises(SampleRateMismatchError, match="sample_rate=16000"):
        precompute(AudioDataset(corpus, sample_rate=22050), tmp_path / "o", codec=FakeCodec())
    with pytest.raises(ValueError, match="crop_samples=None"):
        precompute(
            AudioDataset(corpus, sample_rate=16000, crop_samples=100),
            tmp_path / "o",
            codec=FakeCodec(),
        )
    with pytest.raises(ValueError, match="at least one"):
        precompute(AudioDataset(corpus, sample_rate=16000), tmp_path / "o")


def _snapshot(directory: Path) -> dict[str, bytes]:
    """Every published file (arrays, indexes, manifest), byte for byte."""
    return {
        p.name: p.read_bytes()
        for p in sorted(directory.iterdir())
        if p.suffix in (".npy", ".json") and not p.name.startswith("progress")
    }


def test_resume_after_a_crash_equals_an_uninterrupted_run(tmp_path: Path):
    corpus = make_corpus(tmp_path / "audio")
    dataset = AudioDataset(corpus, sample_rate=16000)
    kwargs = dict(
        tokenizer=FakeSemanticTokenizer(), batch_size=2, max_items_per_shard=4, progress=False
    )
    # 10 items -> shards of 4, 4, 2 -> 2 + 2 + 1 batches

    clean = Counting(FakeCodec())
    precompute(dataset, tmp_path / "clean", codec=clean, **kwargs)
    assert clean.calls == 5

    out = tmp_path / "resumed"
    crashing = Counting(FakeCodec(), fail_after=3)  # dies in the second batch of shard 1
    with pytest.raises(RuntimeError, match="simulated crash"):
        precompute(dataset, out, codec=crashing, **kwargs)
    progress = json.loads((out / "progress-rank000.json").read_text())
    assert list(progress["finished"]) == ["shard-rank000-00000"] and not progress["complete"]
    assert not (out / "manifest.json").exists()
    # debris of the interrupted shard: a half-written array and a temp file
    (out / "shard-rank000-00001.codes.npy").write_bytes(b"garbage")
    (out / ".shard-rank000-00001.tokens.npy.tmp-123").write_bytes(b"garbage")

    resumed = Counting(FakeCodec())
    precompute(dataset, out, codec=resumed, **kwargs)
    assert resumed.calls == 3  # shard 0 was not recomputed
    assert _snapshot(out) == _snapshot(tmp_path / "clean")
    assert not list(out.glob(".*tmp*"))

    again = Counting(FakeCodec())
    precompute(dataset, out, codec=again, **kwargs)  # everything done: no model call
    assert again.calls == 0
    with pytest.raises(RuntimeError, match="different arguments"):
        precompute(
            dataset, out, codec=Counting(FakeCodec()), **{**kwargs, "max_items_per_shard": 3}
        )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_processes_write_one_manifest(tmp_path: Path):
    corpus = make_corpus(tmp_path / "audio", DURATIONS[:7])
    out = tmp_path / "out"
    # --multi_gpu (torchrun) starts the processes; with --cpu accelerate would start only one
    # (several CPU processes need MPI). The worker forms a gloo group with PartialState(cpu=True).
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu"]
    launch += ["--num_processes", "2", "--num_machines", "1", "--mixed_precision", "no"]
    launch += ["--dynamo_backend", "no", "--main_process_port", str(_free_port())]
    command = [*launch, str(WORKER), str(corpus), str(out)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "rank 0 of 2 done" in done.stdout and "rank 1 of 2 done" in done.stdout

    reader = ShardReader(out)
    # rank 0 takes items 0, 2, 4, 6 (2 shards); rank 1 takes 1, 3, 5 (2 shards)
    names = [f"shard-rank{r:03d}-{k:05d}" for r in range(2) for k in range(2)]
    assert reader.shard_names == names
    dataset = AudioDataset(corpus, sample_rate=16000)
    assert sorted(reader.ids) == dataset.ids  # every item exactly once
    assert reader.ids[:4] == ["utt00.wav", "utt02.wav", "utt04.wav", "utt06.wav"]
    codec, tokenizer = FakeCodec(), FakeSemanticTokenizer()
    for index, item_id in enumerate(dataset.ids):
        audio = dataset.read(index)["audio"][None]
        item = reader.by_id(item_id)
        codes = codec.encode(audio)[0]
        # torchrun runs each process with one thread, so float sums round differently; the
        # fake's finest level (steps of 64**-3) is that sensitive, the coarse levels are not
        assert item["codes"].shape == codes.shape
        assert torch.equal(item["codes"][:, :2], codes[:, :2])
        assert (item["codes"] != codes).sum() <= 0.05 * codes.numel()
        assert torch.equal(item["tokens"], tokenizer.tokenize(audio)[0])
    assert np.array_equal(
        reader.lengths("codes"), [len(reader[i]["codes"]) for i in range(len(reader))]
    )


def test_truncated_and_too_short_files_are_skipped_and_listed(tmp_path: Path):
    corpus = make_corpus(tmp_path / "audio", DURATIONS[:3])
    cut = corpus / "utt07_cut.wav"
    save(cut, 0.1 * torch.randn(1, 16000, generator=torch.Generator().manual_seed(7)), 16000)
    cut.write_bytes(cut.read_bytes()[:20000])  # the header still promises 1 s
    save(corpus / "utt08_tiny.wav", torch.full((1, 28), 0.1), 16000)
    dataset = AudioDataset(corpus, sample_rate=16000)
    precompute(dataset, tmp_path / "out", codec=FakeCodec(), progress=False, min_seconds=0.05)
    reader = ShardReader(tmp_path / "out")
    assert sorted(reader.ids) == ["utt00.wav", "utt01.wav", "utt02.wav"]
    assert set(reader.skipped) == {"utt07_cut.wav", "utt08_tiny.wav"}
    assert "truncated" in reader.skipped["utt07_cut.wav"]
    assert "too short: 0.002 s" in reader.skipped["utt08_tiny.wav"]
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert set(manifest["skipped"]) == {"utt07_cut.wav", "utt08_tiny.wav"}
    with pytest.raises(ValueError, match="min_seconds"):
        precompute(dataset, tmp_path / "o2", codec=FakeCodec(), min_seconds=float("nan"))
