"""Corpus readers, each on a miniature copy of its real layout; the split; the errors."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from cadence.core.data import AudioDataset
from cadence.pipeline.corpora import CorpusLayoutError, prepare_corpus, read_layout
from cadence.pipeline.corpora.miniature import write_miniature

# layout -> (utterances found, speakers, an id, its text, its speaker, sample rate)
EXPECTED = {
    "librispeech": (12, 3, "26-495-0001", "LAZY DOG WHILE SEVEN", "26", 16000),
    "libritts": (12, 3, "103_198_000008_000000", "Dog while seven bright.", "103", 24000),
    "ljspeech": (12, 1, "LJ001-0003", '"Brown fox jumps over." number 2', "LJ", 22050),
    "vctk": (12, 4, "p227_002", "Lazy dog while seven.", "p227", 48000),
    "folder": (12, 4, "spk1/utt05", "Over a lazy dog.", "spk1", 16000),
}


@pytest.mark.parametrize("layout", sorted(EXPECTED))
def test_each_reader_finds_the_utterances_of_its_layout(tmp_path, layout):
    root = write_miniature(layout, tmp_path / "src", seconds=0.1)
    count, speakers, uid, text, speaker, rate = EXPECTED[layout]
    found = read_layout(layout, root)
    by_id = {u.id: u for u in found.utterances}
    assert len(by_id) == count
    assert len({u.speaker for u in found.utterances}) == speakers
    assert by_id[uid].text == text
    assert by_id[uid].speaker == speaker
    out = prepare_corpus(layout, root, tmp_path / "corpus", valid_fraction=0.3)
    rows = {
        split: [json.loads(line) for line in (out / f"{split}.jsonl").read_text().splitlines()]
        for split in ("train", "valid")
    }
    assert len(rows["train"]) + len(rows["valid"]) == count and rows["valid"]
    row = next(r for r in rows["train"] + rows["valid"] if r["id"] == uid)
    assert row["sample_rate"] == rate and row["num_samples"] == int(0.1 * rate)
    # what training reads: the manifest's paths resolve to the audio
    data = AudioDataset(out / "train.jsonl", sample_rate=16000, crop_seconds=None)
    assert data[0]["audio"].shape[-1] == 1600
    summary = json.loads((out / "corpus.json").read_text())
    assert summary["split_by"] == ("utterance" if speakers == 1 else "speaker")


def test_text_is_the_transcript_file_s(tmp_path):
    root = write_miniature("librispeech", tmp_path / "ls", seconds=0.1)
    texts = {u.id: u.text for u in read_layout("librispeech", root).utterances}
    assert texts["19-198-0000"] == "THE QUICK BROWN FOX"
    root = write_miniature("libritts", tmp_path / "tts", seconds=0.1)
    first = next(u for u in read_layout("libritts", root).utterances if u.id.startswith("19_"))
    assert first.text == "The quick brown fox."  # the normalized text, not the original


def test_vctk_skips_a_transcript_without_audio_and_reads_the_old_layout(tmp_path):
    root = write_miniature("vctk", tmp_path / "vctk", seconds=0.1)
    found = read_layout("vctk", root)
    assert any("p225_999" in path for path in found.skipped)
    assert all(u.path.name.endswith("_mic1.flac") for u in found.utterances)
    # VCTK 0.80: wav48/SPK/SPK_NNN.wav
    old = tmp_path / "vctk080"
    (old / "txt").mkdir(parents=True)
    (root / "txt").rename(old / "txt")
    (old / "wav48" / "p225").mkdir(parents=True)
    (root / "wav48_silence_trimmed" / "p225" / "p225_001_mic1.flac").rename(
        old / "wav48" / "p225" / "p225_001.wav"
    )
    assert [u.id for u in read_layout("vctk", old).utterances] == ["p225_001"]


def test_the_split_holds_out_whole_speakers_deterministically(tmp_path):
    root = write_miniature("libritts", tmp_path / "src", seconds=0.1)
    a = prepare_corpus("libritts", root, tmp_path / "a", valid_fraction=0.34)
    b = prepare_corpus("libritts", root, tmp_path / "b", valid_fraction=0.34)
    assert (a / "valid.jsonl").read_text() == (b / "valid.jsonl").read_text()
    summary = json.loads((a / "corpus.json").read_text())
    assert len(summary["valid"]["speakers"]) == 1
    assert not set(summary["valid"]["speakers"]) & set(summary["train"]["speakers"])
    other = prepare_corpus("libritts", root, tmp_path / "c", valid_fraction=0.34, seed=5)
    assert json.loads((other / "corpus.json").read_text())["seed"] == 5


def test_a_manifest_of_paths_and_texts(tmp_path):
    root = write_miniature("folder", tmp_path / "audio", seconds=0.1)
    lines = [
        json.dumps(
            {"path": f"audio/spk{i % 4}/utt{i:02d}.wav", "text": f"t{i}", "speaker": f"s{i % 3}"}
        )
        for i in range(12)
    ]
    (tmp_path / "list.jsonl").write_text("\n".join(lines))
    found = read_layout("manifest", tmp_path / "list.jsonl")
    assert {u.speaker for u in found.utterances} == {"s0", "s1", "s2"}
    csv_file = tmp_path / "list.csv"
    csv_file.write_text("path,text\naudio/spk0/utt00.wav,hello\n")
    (utterance,) = read_layout("manifest", csv_file).utterances
    assert (utterance.speaker, utterance.text) == ("spk0", "hello")
    assert root.exists()


def _cut(uid: str, audio: Path, duration: float, start: float = 0.0) -> dict:
    return {
        "id": uid,
        "start": start,
        "duration": duration,
        "channel": 0,
        "supervisions": [
            {
                "id": uid,
                "recording_id": uid,
                "start": 0.0,
                "duration": duration,
                "channel": 0,
                "text": f"text of {uid}",
                "speaker": uid[:3],
            }
        ],
        "recording": {
            "id": uid,
            "sources": [{"type": "file", "channels": [0], "source": str(audio)}],
            "sampling_rate": 16000,
            "num_samples": int(duration * 16000),
            "duration": duration,
        },
        "type": "MonoCut",
    }


def test_a_lhotse_cutset_manifest(tmp_path):
    root = write_miniature("folder", tmp_path / "audio", seconds=0.1)
    files = sorted(root.rglob("*.wav"))
    cuts = [_cut(f"{f.parent.name}-{f.stem}", f, 0.1) for f in files]
    manifest = tmp_path / "cuts.jsonl.gz"
    with gzip.open(manifest, "wt") as f:
        f.write("".join(json.dumps(c) + "\n" for c in cuts))
    found = read_layout("lhotse", manifest)
    assert len(found.utterances) == 12 and found.utterances[0].text.startswith("text of")
    with gzip.open(manifest, "wt") as f:
        f.write(json.dumps(_cut("seg", files[0], 0.05, start=0.02)) + "\n")
    with pytest.raises(CorpusLayoutError, match=r"segment.*save_audios"):
        read_layout("lhotse", manifest)


def test_a_cutset_written_by_lhotse_itself(tmp_path):
    lhotse = pytest.importorskip("lhotse")
    root = write_miniature("folder", tmp_path / "audio", seconds=0.1)
    cuts = []
    for path in sorted(root.rglob("*.wav")):
        recording = lhotse.Recording.from_file(path, recording_id=f"{path.parent.name}-{path.stem}")
        cut = recording.to_cut()
        cut.supervisions = [
            lhotse.SupervisionSegment(id=recording.id, recording_id=recording.id, start=0,
                                      duration=recording.duration, text="hi", speaker=path.parent.name)
        ]  # fmt: skip
        cuts.append(cut)
    lhotse.CutSet.from_cuts(cuts).to_file(tmp_path / "cuts.jsonl.gz")
    found = read_layout("lhotse", tmp_path / "cuts.jsonl.gz")
    assert len(found.utterances) == 12 and {u.speaker for u in found.utterances} == {
        "spk0", "spk1", "spk2", "spk3"
    }  # fmt: skip


@pytest.mark.parametrize(
    ("layout", "message"),
    [
        ("librispeech", r"no \*\.trans\.txt.*SPEAKER/CHAPTER"),
        ("libritts", r"no \*\.normalized\.txt"),
        ("ljspeech", "metadata.csv"),
        ("vctk", "txt/SPK"),
        ("folder", "transcript beside it"),
    ],
)
def test_a_wrong_layout_names_what_was_expected(tmp_path, layout, message):
    write_miniature("ljspeech" if layout != "ljspeech" else "vctk", tmp_path, seconds=0.05)
    if layout == "folder":
        for text in tmp_path.rglob("*.txt"):
            text.unlink()
        (tmp_path / "metadata.csv").unlink()
    with pytest.raises(CorpusLayoutError, match=message):
        read_layout(layout, tmp_path)


def test_missing_audio_and_bad_lines_are_named(tmp_path):
    root = write_miniature("librispeech", tmp_path / "ls", seconds=0.05)
    next(root.rglob("*.flac")).unlink()
    with pytest.raises(CorpusLayoutError, match="1 listed audio files are missing"):
        read_layout("librispeech", root)
    with pytest.raises(CorpusLayoutError, match="unknown corpus layout 'timit'"):
        read_layout("timit", root)
    with pytest.raises(CorpusLayoutError, match="is not a directory"):
        read_layout("libritts", tmp_path / "nowhere")


def test_the_corpus_command(tmp_path):
    from typer.testing import CliRunner

    from cadence.pipeline.cli import app

    root = write_miniature("vctk", tmp_path / "vctk", seconds=0.05)
    runner = CliRunner()
    result = runner.invoke(app, ["corpus", "vctk", str(root), "--out", str(tmp_path / "c")])
    assert result.exit_code == 0, result.output
    assert "train: " in result.output and (tmp_path / "c" / "valid.jsonl").is_file()
    result = runner.invoke(app, ["corpus", "ljspeech", str(root), "--out", str(tmp_path / "d")])
    assert result.exit_code == 2 and "metadata.csv" in result.output
