"""Tests of the toy speech corpus: the committed copy (always) and the generator (with espeak).

The committed corpus lives at ``tests/data/toy_speech`` in the repository root; point
``CADENCE_TOY_CORPUS`` elsewhere to check another copy. Generator tests need libespeak-ng
(``pip install "cadence-corpus"`` or ``apt-get install espeak-ng``) and are skipped
without it.
"""

from __future__ import annotations

import itertools
import json
import os
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from cadence.core import audio as audio_io
from cadence.corpus import (
    MANIFEST_FIELDS,
    SENTENCES,
    SPLITS,
    EspeakError,
    EspeakNotFoundError,
    espeak_available,
    find_espeak,
    generate_corpus,
    read_manifest,
    summarize_corpus,
    synthesize,
)
from cadence.corpus.cli import main

CORPUS = Path(
    os.environ.get("CADENCE_TOY_CORPUS")
    or Path(__file__).resolve().parents[3] / "tests" / "data" / "toy_speech"
)
SAMPLE_RATE = 16000

needs_espeak = pytest.mark.skipif(
    not espeak_available(),
    reason='no libespeak-ng: pip install "cadence-corpus" or apt-get install espeak-ng',
)


def _records(corpus: Path) -> dict[str, list[dict]]:
    return {split: read_manifest(corpus / f"{split}.jsonl") for split in SPLITS}


@pytest.fixture(scope="module")
def committed() -> dict[str, list[dict]]:
    assert (CORPUS / "train.jsonl").is_file(), f"committed corpus missing at {CORPUS}"
    return _records(CORPUS)


def _all(records: dict[str, list[dict]]) -> list[dict]:
    return [r for split in SPLITS for r in records[split]]


def _check_record(r: dict) -> None:
    """Everything one manifest line promises, without reading the audio."""
    assert tuple(r) == MANIFEST_FIELDS, f"{r.get('id')}: fields {tuple(r)}"
    assert r["sample_rate"] == SAMPLE_RATE
    assert r["duration"] == pytest.approx(r["num_samples"] / r["sample_rate"], abs=1e-5)
    assert r["text"].strip(), r["id"]
    phonemes, starts = r["phonemes"], r["phoneme_starts"]
    assert phonemes and len(phonemes) == len(starts), r["id"]
    assert all(isinstance(p, str) and p for p in phonemes), r["id"]
    assert all(b >= a for a, b in itertools.pairwise(starts)), f"{r['id']}: {starts}"
    assert starts[0] >= 0.0 and starts[-1] < r["duration"], f"{r['id']}: {starts}"
    assert r["path"] == f"audio/{r['speaker']}/{r['id']}.flac"
    assert r["speaker"].split("+")[0] == r["voice"]


# --------------------------------------------------------------------- committed corpus


def test_committed_manifests_are_well_formed(committed):
    records = _all(committed)
    for r in records:
        _check_record(r)
    ids = [r["id"] for r in records]
    assert len(ids) == len(set(ids)), "duplicate utterance ids"


@pytest.fixture
def one_torch_thread():
    # Hundreds of tiny tensors: with 2+ intra-op threads on a busy machine, waking the
    # thread pool costs more than the work (20 ms instead of 0.7 ms per file).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.usefixtures("one_torch_thread")
def test_committed_audio_matches_manifest(committed):
    for r in _all(committed):
        audio, sr = audio_io.load(CORPUS / r["path"])
        assert sr == SAMPLE_RATE, r["path"]
        assert audio.shape == (1, r["num_samples"]), r["path"]
        peak = audio.abs().max().item()
        assert 0.3 < peak < 1.0, f"{r['path']}: peak {peak}"
        # Every file starts and ends with the same short margin of (near) silence.
        margin = int(0.09 * sr)
        assert audio[0, :margin].abs().max() < 0.01, r["path"]
        assert audio[0, -margin:].abs().max() < 0.01, r["path"]


def test_committed_phoneme_times_follow_the_speech(committed):
    for r in _all(committed):
        # Speech starts right after the 0.1 s lead-in and phonemes span most of the audio.
        assert r["phoneme_starts"][0] == pytest.approx(0.1, abs=0.05), r["id"]
        assert r["phoneme_starts"][-1] > 0.5 * r["duration"] or r["duration"] < 1.0, r["id"]
        # espeak-ng speaks around 10-15 phonemes per second; 3 to 25 leaves room for pauses.
        speech = r["duration"] - 0.2
        assert 3 < len(r["phonemes"]) / speech < 25, r["id"]


def test_committed_split_is_by_speaker(committed):
    train = {r["speaker"] for r in committed["train"]}
    valid = {r["speaker"] for r in committed["valid"]}
    assert not train & valid, f"speakers in both splits: {train & valid}"
    assert len(train | valid) >= 16
    assert 2 <= len(valid) <= len(train) // 2
    assert len(committed["train"]) + len(committed["valid"]) >= 200
    assert len(committed["valid"]) >= 20
    for split in SPLITS:
        counts = [
            sum(r["speaker"] == s for r in committed[split])
            for s in {r["speaker"] for r in committed[split]}
        ]
        assert min(counts) >= 5, f"{split}: a speaker has only {min(counts)} utterances"


def test_committed_texts_and_inventory(committed):
    records = _all(committed)
    assert {r["text"] for r in records} <= set(SENTENCES)
    assert len({r["text"] for r in records}) >= 150
    inventory = {p for r in records for p in r["phonemes"]}
    # Core English consonants must all occur.
    assert {
        "p",
        "b",
        "t",
        "d",
        "k",
        "s",
        "z",
        "m",
        "n",
        "l",
        "f",
        "v",
        "ʃ",
        "ð",
        "θ",
        "h",
    } <= inventory


def test_committed_metadata_agrees_with_manifests(committed):
    meta = json.loads((CORPUS / "corpus.json").read_text(encoding="utf-8"))
    assert meta["counts"] == {split: len(committed[split]) for split in SPLITS}
    for split in SPLITS:
        assert meta["speakers"][split] == sorted({r["speaker"] for r in committed[split]})
    total = sum(r["duration"] for r in _all(committed))
    assert meta["seconds"]["total"] == pytest.approx(total, abs=0.01)
    assert meta["parameters"]["sample_rate"] == SAMPLE_RATE
    readme = (CORPUS / "README.md").read_text(encoding="utf-8")
    assert meta["command"] in readme and "espeak-ng" in readme.lower()
    flac_bytes = sum(f.stat().st_size for f in (CORPUS / "audio").rglob("*.flac"))
    assert flac_bytes < 11e6, f"committed corpus grew to {flac_bytes / 1e6:.1f} MB"
    assert len(list((CORPUS / "audio").rglob("*.flac"))) == sum(meta["counts"].values())


def test_summary_of_committed_corpus(committed, capsys):
    summary = summarize_corpus(CORPUS)
    assert summary.counts == {split: len(committed[split]) for split in SPLITS}
    assert summary.total_seconds == pytest.approx(sum(r["duration"] for r in _all(committed)))
    assert 0 < summary.audio_bytes < summary.total_bytes
    assert main(["--summary-only", str(CORPUS)]) == 0
    out = capsys.readouterr().out
    assert f"utterances: {summary.num_utterances}" in out and "MB" in out


def test_summary_of_missing_corpus_fails(tmp_path, capsys):
    with pytest.raises(FileNotFoundError):
        summarize_corpus(tmp_path)
    assert main(["--summary-only", str(tmp_path)]) == 2
    assert "no train.jsonl" in capsys.readouterr().err


def test_missing_library_error_says_what_to_install(monkeypatch, tmp_path):
    monkeypatch.setenv("CADENCE_ESPEAK_LIBRARY", str(tmp_path / "libespeak-ng.so.404"))
    with pytest.raises(
        EspeakNotFoundError, match=r"cadence-core\[corpus\]|apt-get install espeak-ng"
    ):
        find_espeak()


# ---------------------------------------------------------------------------- espeak


@needs_espeak
def test_synthesize_phonemes_are_timed_inside_the_audio():
    syn = synthesize("The quick brown fox jumps over the lazy dog.", "en-us", "f3", rate=170)
    assert syn.sample_rate == 22050 and syn.samples.dtype == np.int16
    assert 1.5 < syn.duration < 5.0
    assert np.abs(syn.samples).max() > 1000
    starts = [p.start for p in syn.phonemes]
    assert 25 <= len(starts) <= 40  # ~32 phonemes in this sentence
    assert all(b >= a for a, b in itertools.pairwise(starts))
    assert 0 <= starts[0] < 0.2 and starts[-1] < syn.duration
    symbols = "".join(p.symbol for p in syn.phonemes)
    assert "ð" in symbols and "z" in symbols  # IPA, not espeak's ASCII mnemonics ("D")


@needs_espeak
def test_synthesize_is_deterministic_across_calls():
    text = "Which witch switched the wristwatches?"
    first = synthesize(text, "en-gb-x-rp", "m3", rate=180, pitch=40)
    synthesize("Something else, to disturb the library's state.", "en", "f1", rate=210)
    again = synthesize(text, "en-gb-x-rp", "m3", rate=180, pitch=40)
    assert np.array_equal(first.samples, again.samples)
    assert first.phonemes == again.phonemes
    faster = synthesize(text, "en-gb-x-rp", "m3", rate=240, pitch=40)
    assert faster.duration < 0.9 * first.duration


@needs_espeak
def test_synthesize_rejects_bad_input():
    with pytest.raises(EspeakError, match="no voice"):
        synthesize("hello", "xx-nonexistent")
    with pytest.raises(ValueError):
        synthesize("   ")
    with pytest.raises(ValueError):
        synthesize("hello", pitch=120)


# -------------------------------------------------------------------------- generator

_SMALL = {
    "num_utterances": 6,
    "voices": ("en-us", "en"),
    "variants": ("m1", "f3"),
    "valid_speakers": 1,
    "progress": False,
}


def _files(corpus: Path) -> dict[str, bytes]:
    return {
        f.relative_to(corpus).as_posix(): f.read_bytes()
        for f in sorted(corpus.rglob("*"))
        if f.is_file() and f.name not in ("README.md", "corpus.json")
    }


def _meta(corpus: Path) -> dict:
    meta = json.loads((corpus / "corpus.json").read_text(encoding="utf-8"))
    meta.pop("command")  # names the output directory, which differs between runs here
    return meta


@pytest.fixture(scope="module")
def small_corpora(tmp_path_factory) -> tuple[Path, Path, Path]:
    if not espeak_available():
        pytest.skip("no libespeak-ng")
    root = tmp_path_factory.mktemp("toy")
    a, b, c = root / "a", root / "b", root / "c"
    generate_corpus(a, seed=7, **_SMALL)
    generate_corpus(b, seed=7, **_SMALL)
    generate_corpus(c, seed=8, **_SMALL)
    return a, b, c


@needs_espeak
def test_generate_is_deterministic(small_corpora):
    a, b, _ = small_corpora
    files_a, files_b = _files(a), _files(b)
    assert len([f for f in files_a if f.endswith(".flac")]) == 6
    assert files_a.keys() == files_b.keys()
    different = [name for name in files_a if files_a[name] != files_b[name]]
    assert not different, f"differ between runs with the same seed: {different}"
    assert _meta(a) == _meta(b)


@needs_espeak
def test_generate_depends_on_the_seed(small_corpora):
    a, _, c = small_corpora
    for name in ("train.jsonl", "valid.jsonl"):
        assert (a / name).read_bytes() != (c / name).read_bytes(), name
    assert _meta(a)["speaker_styles"] != _meta(c)["speaker_styles"]


@needs_espeak
def test_generated_corpus_is_consistent(small_corpora):
    a, _, _ = small_corpora
    records = _records(a)
    assert len(records["train"]) + len(records["valid"]) == 6
    valid = {r["speaker"] for r in records["valid"]}
    train = {r["speaker"] for r in records["train"]}
    assert len(valid) == 1 and len(train) == 3 and not valid & train
    for r in _all(records):
        _check_record(r)
        audio, sr = audio_io.load(a / r["path"])
        assert sr == SAMPLE_RATE and audio.shape == (1, r["num_samples"])
        # Phoneme count tracks the text: English has ~0.8 phonemes per letter.
        if not re.search(r"\d", r["text"]):
            letters = sum(ch.isalpha() for ch in r["text"])
            assert 0.4 < len(r["phonemes"]) / letters < 1.3, (r["text"], r["phonemes"])
    meta = json.loads((a / "corpus.json").read_text(encoding="utf-8"))
    assert meta["seed"] == 7
    assert meta["counts"] == {split: len(records[split]) for split in SPLITS}
    assert "cadence-toy-corpus" in (a / "README.md").read_text(encoding="utf-8")


@needs_espeak
def test_generate_refuses_to_clobber(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError):
        generate_corpus(tmp_path, seed=0, **_SMALL)
    with pytest.raises(FileExistsError, match=r"no corpus\.json"):
        generate_corpus(tmp_path, seed=0, overwrite=True, **_SMALL)
    assert (tmp_path / "notes.txt").read_text() == "mine"


@needs_espeak
def test_cli_generates_and_overwrites(tmp_path, capsys):
    out = tmp_path / "cli"
    args = [str(out), "--num-utterances", "3", "--voices", "en-029", "--variants", "m1,f1,f3"]
    args += ["--valid-speakers", "1", "--seed", "3", "--quiet"]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "utterances: 3" in printed and "phonemes:" in printed
    assert main(args) == 2  # exists
    assert "not empty" in capsys.readouterr().err
    assert main([*args, "--overwrite"]) == 0
    assert len(list((out / "audio").rglob("*.flac"))) == 3


def test_template_sentences_are_distinct_seeded_and_new():
    from cadence.corpus.templates import template_sentences

    a = template_sentences(2000, seed=0)
    assert len(set(a)) == 2000 and a == template_sentences(2000, seed=0)
    assert a != template_sentences(2000, seed=1)
    assert all(s[0].isupper() and s[-1] in ".?!" for s in a)
    assert not set(a) & set(SENTENCES)


@needs_espeak
def test_held_out_speakers_say_only_held_out_sentences(tmp_path):
    summary = generate_corpus(
        tmp_path / "c",
        num_utterances=40,
        voices=["en-us", "en"],
        variants=["m1", "f1"],
        valid_speakers=1,
        num_sentences=300,
        held_out_sentences=20,
        progress=False,
    )
    train = read_manifest(tmp_path / "c" / "train.jsonl")
    valid = read_manifest(tmp_path / "c" / "valid.jsonl")
    assert summary.counts == {"train": 30, "valid": 10}
    assert not {r["text"] for r in train} & {r["text"] for r in valid}
    assert not {r["speaker"] for r in train} & {r["speaker"] for r in valid}
    meta = json.loads((tmp_path / "c" / "corpus.json").read_text())
    assert (
        "--held-out-sentences 20" in meta["command"] and meta["parameters"]["num_sentences"] == 300
    )
