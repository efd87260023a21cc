"""AudioDataset (folder / manifest, crops, resampling, bad files, workers) and collate."""

from __future__ import annotations

import json
import logging
import pickle
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from torch.utils.data import DataLoader

from cadence.core.audio import NonFiniteAudioError, load, save
from cadence.core.data import (
    AudioDataset,
    collate_audio,
    collate_sequences,
    lengths_to_mask,
    pad_sequences,
)
from cadence.core.testing import toy_corpus_dir


def noise(
    seconds: float, sample_rate: int = 16000, *, seed: int = 0, channels: int = 1
) -> torch.Tensor:
    """Deterministic noise, so that two different crops never look alike."""
    gen = torch.Generator().manual_seed(seed)
    return 0.3 * torch.randn(channels, round(seconds * sample_rate), generator=gen).clamp(-3, 3) / 3


def write(
    path: Path, seconds: float, sample_rate: int = 16000, *, seed: int = 0, channels: int = 1
) -> Path:
    # float WAV keeps the samples exact, so reads can be compared bit for bit
    subtype = "FLOAT" if path.suffix == ".wav" else None
    return save(
        path,
        noise(seconds, sample_rate, seed=seed, channels=channels),
        sample_rate,
        subtype=subtype,
    )


def add_bad_files(folder: Path) -> dict[str, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    corrupt = folder / "bad_corrupt.wav"
    corrupt.write_bytes(b"RIFF" + np.random.default_rng(0).bytes(500))
    empty = folder / "bad_empty.wav"
    empty.write_bytes(b"")
    nan = folder / "bad_nan.wav"
    data = np.zeros(1600, dtype=np.float32)
    data[100] = np.nan
    sf.write(str(nan), data, 16000, subtype="FLOAT")
    no_frames = folder / "bad_noframes.wav"  # a valid header over zero samples
    sf.write(str(no_frames), np.zeros(0, dtype=np.float32), 16000)
    return {"corrupt": corrupt, "empty": empty, "nan": nan, "no_frames": no_frames}


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    root = tmp_path / "audio"
    write(root / "spk1" / "a.wav", 1.0, seed=1)
    write(root / "spk1" / "b.flac", 0.5, seed=2)
    write(root / "spk2" / "c.wav", 0.75, seed=3, channels=2)
    (root / "notes.txt").write_text("not audio")
    write(root / ".hidden.wav", 0.2, seed=4)
    return root


# ------------------------------------------------------------------------------ folder, manifest


def test_folder_dataset_is_recursive_sorted_and_mono(folder: Path):
    ds = AudioDataset(folder, sample_rate=16000)
    assert ds.ids == ["spk1/a.wav", "spk1/b.flac", "spk2/c.wav"]  # no .txt, no hidden file
    item = ds[2]
    assert item["audio"].shape == (1, 12000)  # stereo mixed down to mono
    assert item["audio"].dtype == torch.float32
    assert item["length"] == 12000 and item["index"] == 2 and item["id"] == "spk2/c.wav"
    assert item["path"] == str(folder / "spk2" / "c.wav")
    stereo, _ = load(folder / "spk2" / "c.wav")
    torch.testing.assert_close(item["audio"], stereo.mean(0, keepdim=True))
    assert AudioDataset(folder, sample_rate=16000, channels=2)[2]["audio"].shape == (2, 12000)
    assert len(AudioDataset(folder, sample_rate=16000, extensions=("flac",))) == 1


def test_manifest_dataset_resolves_paths_and_carries_fields(folder: Path, tmp_path: Path):
    manifest = folder / "train.jsonl"
    rows = [
        {"path": "spk1/b.flac", "id": "utt-b", "text": "hello", "speaker": "spk1"},
        {"path": "spk2/c.wav", "id": "utt-c", "text": "world", "speaker": "spk2"},
    ]
    manifest.write_text("\n".join(json.dumps(r) for r in rows) + "\n\n")
    ds = AudioDataset(manifest, sample_rate=16000)
    assert ds.ids == ["utt-b", "utt-c"]  # manifest order, manifest ids
    item = ds[0]
    assert item["text"] == "hello" and item["speaker"] == "spk1" and item["id"] == "utt-b"
    assert item["path"] == str(folder / "spk1" / "b.flac") and item["length"] == 8000
    assert "text" not in AudioDataset(manifest, sample_rate=16000, keep_fields=False)[0]

    clash = tmp_path / "clash.jsonl"
    clash.write_text(json.dumps({"path": str(folder / "spk1/a.wav"), "length": 3}) + "\n")
    with pytest.raises(ValueError, match="clash"):
        AudioDataset(clash, sample_rate=16000)
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"path": "x.wav"}\n{"path": \n')
    with pytest.raises(ValueError, match=r"broken.jsonl:2"):
        AudioDataset(broken, sample_rate=16000)


# ------------------------------------------------------------------------------ crops


def test_crops_are_a_function_of_seed_epoch_and_index(folder: Path):
    make = lambda seed: AudioDataset(folder, sample_rate=16000, crop_samples=4000, seed=seed)  # noqa: E731
    a, b, c = make(0), make(0), make(1)
    full = AudioDataset(folder, sample_rate=16000)
    for i in range(len(a)):
        item = a[i]
        assert item["audio"].shape == (1, 4000) and item["length"] == 4000
        torch.testing.assert_close(item["audio"], b[i]["audio"], rtol=0, atol=0)
        # the crop is the same span of the whole file: only that region was read
        start = a.crop_start(i, full[i]["length"] - 4000)
        torch.testing.assert_close(item["audio"], full[i]["audio"][:, start : start + 4000])
    starts = lambda ds, epoch: [ds.crop_start(i, 12000, epoch) for i in range(3)]  # noqa: E731
    assert starts(a, 0) != starts(c, 0)  # other seed, other crops
    assert starts(a, 0) != starts(a, 1)  # other epoch, other crops
    before = a[0]["audio"]
    a.set_epoch(1)
    assert not torch.equal(a[0]["audio"], before)
    assert torch.equal(a[0]["audio"], a.read(0, epoch=1)["audio"])
    from_start = AudioDataset(folder, sample_rate=16000, crop_samples=4000, random_crop=False)
    assert torch.equal(from_start[0]["audio"], full[0]["audio"][:, :4000])


def test_resampled_file_and_crop(tmp_path: Path):
    path = write(tmp_path / "x22.wav", 1.3, 22050, seed=5)
    frames = round(1.3 * 22050)
    full = AudioDataset(tmp_path, sample_rate=16000)[0]
    assert full["audio"].shape == (1, round(frames * 16000 / 22050)) == (1, full["length"])
    reference, _ = load(path, sample_rate=16000)
    torch.testing.assert_close(full["audio"], reference)

    ds = AudioDataset(tmp_path, sample_rate=16000, crop_seconds=0.5, seed=3)
    for epoch in range(4):
        crop = ds.read(0, epoch=epoch)
        assert crop["audio"].shape == (1, 8000) and crop["length"] == 8000
        start = ds.crop_start(0, full["length"] - 8000, epoch)
        # reading a region phase-aligned with a margin gives what resampling the whole file gives
        torch.testing.assert_close(
            crop["audio"], full["audio"][:, start : start + 8000], atol=1e-5, rtol=0
        )


def test_short_file_is_zero_padded_with_its_length(tmp_path: Path):
    write(tmp_path / "short.wav", 0.1, seed=6)
    write(tmp_path / "short22.wav", 0.1, 22050, seed=7)
    ds = AudioDataset(tmp_path, sample_rate=16000, crop_samples=8000)
    for i, expected in enumerate([1600, 1600]):
        item = ds[i]
        assert item["audio"].shape == (1, 8000)
        assert item["length"] == expected
        assert item["audio"][:, expected:].abs().sum() == 0
        assert item["audio"][:, :expected].abs().sum() > 0


# ------------------------------------------------------------------------------ bad files


def test_bad_files_are_replaced_reported_once_and_scanned_out(folder: Path, caplog):
    bad = add_bad_files(folder)
    ds = AudioDataset(folder, sample_rate=16000)
    assert len(ds) == 7
    with caplog.at_level(logging.WARNING, logger="cadence.core.data.dataset"):
        for _ in range(2):
            items = [ds[i] for i in range(len(ds))]
    assert set(ds.skipped) == {str(p) for p in bad.values()}
    assert "NonFiniteAudioError" in ds.skipped[str(bad["nan"])]
    # every bad item was replaced by the next good one (wrapping around): spk1/a.wav
    assert [it["id"] for it in items] == ["spk1/a.wav"] * 5 + ["spk1/b.flac", "spk2/c.wav"]
    for path in bad.values():
        assert sum(str(path) in r.getMessage() for r in caplog.records) == 1  # once per file
    with pytest.raises(NonFiniteAudioError):
        ds.read(2)  # the non-substituting read raises

    fresh = AudioDataset(folder, sample_rate=16000)
    durations = fresh.durations
    assert durations[4:] == pytest.approx([1.0, 0.5, 0.75]) and durations[0] == 0.0
    report = fresh.scan(progress=False)  # headers only: the NaN file passes this
    assert set(report.dropped) == {str(bad[k]) for k in ("corrupt", "empty", "no_frames")}
    assert "EmptyAudioError" in report.dropped[str(bad["no_frames"])]
    assert len(fresh) == 4 and report.num_kept == 4 and report.num_files == 7
    report = fresh.scan(decode=True, progress=False)
    assert set(report.dropped) == {str(bad["nan"])}
    assert fresh.ids == ["spk1/a.wav", "spk1/b.flac", "spk2/c.wav"]
    assert report.total_seconds == pytest.approx(2.25)


def test_dataloader_with_two_persistent_workers(folder: Path):
    add_bad_files(folder)
    ds = AudioDataset(folder, sample_rate=16000, crop_samples=3000, seed=7)
    clone = pickle.loads(pickle.dumps(ds))
    assert torch.equal(clone[4]["audio"], ds[4]["audio"])
    loader = DataLoader(
        ds, batch_size=2, num_workers=2, collate_fn=collate_audio, persistent_workers=True
    )
    for epoch in range(2):
        ds.set_epoch(epoch)  # must reach the already-running workers
        batches = list(loader)
        assert sum(len(b["lengths"]) for b in batches) == len(ds)
        got = {i: a for b in batches for i, a in zip(b["index"].tolist(), b["audio"])}
        for i in (4, 5, 6):
            assert torch.equal(got[i], ds.read(i, epoch=epoch)["audio"])
        if epoch == 0:
            first = got[4]
    assert not torch.equal(first, got[4])


# ------------------------------------------------------------------------------ collate


def test_collate_audio_pads_and_masks():
    items = [
        {"audio": torch.ones(1, 5), "length": 5, "path": "a", "index": 0, "text": "x", "w": [1, 2]},
        {"audio": torch.ones(1, 3), "length": 2, "path": "b", "index": 1, "text": "y", "w": [3]},
    ]
    batch = collate_audio(items)
    assert batch["audio"].shape == (2, 1, 5)
    assert batch["audio"][1, 0].tolist() == [1, 1, 1, 0, 0]
    assert batch["lengths"].tolist() == [5, 2]
    assert batch["mask"].tolist() == [[True] * 5, [True, True, False, False, False]]
    assert batch["index"].tolist() == [0, 1]
    assert (
        batch["text"] == ["x", "y"] and batch["w"] == [[1, 2], [3]] and batch["path"] == ["a", "b"]
    )
    with pytest.raises(KeyError, match="same fields"):
        collate_audio([items[0], {"audio": torch.ones(1, 2)}])


def test_pad_and_collate_sequences():
    padded, mask = pad_sequences(
        [torch.ones(3, 2), torch.ones(0, 2), torch.ones(1, 2)], pad_value=-1
    )
    assert padded.shape == (3, 3, 2) and mask.sum(1).tolist() == [3, 0, 1]
    assert (padded[~mask] == -1).all() and (padded[mask] == 1).all()
    with pytest.raises(ValueError, match="trailing shape"):
        pad_sequences([torch.ones(3, 2), torch.ones(3, 4)])
    assert lengths_to_mask(torch.tensor([1, 3]), 4).tolist() == [
        [True, False, False, False],
        [True, True, True, False],
    ]

    items = [
        {
            "id": "a",
            "codes": torch.zeros(4, 2, dtype=torch.long),
            "tokens": torch.ones(2, dtype=torch.long),
        },
        {
            "id": "b",
            "codes": torch.zeros(2, 2, dtype=torch.long),
            "tokens": torch.ones(3, dtype=torch.long),
        },
    ]
    batch = collate_sequences(items, pad_value={"codes": 7, "tokens": 0})
    assert batch["codes"].shape == (2, 4, 2) and batch["tokens"].shape == (2, 3)
    assert batch["codes_lengths"].tolist() == [4, 2]
    assert batch["tokens_mask"].sum(1).tolist() == [2, 3]
    assert (batch["codes"][1, 2:] == 7).all() and batch["id"] == ["a", "b"]
    shared = collate_sequences(items, keys=["codes"], shared_mask=True)
    assert shared["mask"].tolist() == [[True] * 4, [True, True, False, False]]
    assert "codes_mask" not in shared
    with pytest.raises(ValueError, match="differ in length"):
        collate_sequences(items, shared_mask=True)


# ------------------------------------------------------------------------------ real corpus


def test_toy_corpus_manifest():
    corpus = toy_corpus_dir()  # committed: a missing corpus is a failure, not a skip
    manifest = corpus / "train.jsonl"
    rows = [json.loads(line) for line in manifest.read_text().splitlines() if line.strip()]
    ds = AudioDataset(manifest, sample_rate=16000, crop_seconds=1.0)
    assert len(ds) == len(rows)
    item = ds[0]
    assert item["audio"].shape == (1, 16000) and item["text"] == rows[0]["text"]
    assert item["length"] == min(16000, rows[0]["num_samples"])
    assert ds.durations[:5] == pytest.approx([r["duration"] for r in rows[:5]], abs=1e-3)
    batch = collate_audio([ds[i] for i in range(min(4, len(ds)))])
    assert batch["audio"].shape[-1] == 16000 and len(batch["phonemes"]) == batch["audio"].shape[0]
