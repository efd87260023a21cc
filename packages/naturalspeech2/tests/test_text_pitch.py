from __future__ import annotations

import json

import librosa
import numpy as np
import pytest
import soundfile as sf

from cadence.core.testing import toy_corpus_dir
from cadence.naturalspeech2 import (
    PhonemeVocabulary,
    durations_from_starts,
    extract_pitch,
    phonemize,
    yin,
)
from cadence.naturalspeech2.espeak import EspeakNotFoundError, find_espeak
from cadence.naturalspeech2.text import (
    SILENCE,
    SPECIAL_SYMBOLS,
    UnreadableTextWarning,
    unreadable_characters,
)


def _first_row() -> dict:
    with (toy_corpus_dir() / "train.jsonl").open() as f:
        return json.loads(f.readline())


def test_vocabulary_round_trip_and_unknown():
    vocab = PhonemeVocabulary.build([["a", "b"], ["b", "c"]])
    assert vocab.symbols[: len(SPECIAL_SYMBOLS)] == SPECIAL_SYMBOLS
    ids = vocab.encode(["a", "zz", "c"])
    assert vocab.decode(ids) == ["a", "<unk>", "c"]
    with pytest.raises(ValueError, match="starts with"):
        PhonemeVocabulary(("a", "b"))


def test_phonemize_matches_corpus_phonemes():
    row = _first_row()
    assert phonemize(row["text"], row["voice"]) == [SILENCE, *row["phonemes"]]


def test_missing_espeak_names_the_install(monkeypatch):
    monkeypatch.setenv("CADENCE_ESPEAK_LIBRARY", "/nonexistent/libespeak-ng.so")
    with pytest.raises(
        EspeakNotFoundError, match=r"pip install espeakng-loader.*apt-get install espeak-ng"
    ):
        find_espeak()


def test_durations_from_starts_sum_to_frames():
    starts = [0.1, 0.15, 0.3, 0.62]
    d = durations_from_starts(starts, 0.9, 50.0, 45)
    assert d.tolist() == [5, 3, 7, 16, 14]
    assert d.sum() == 45 and (d >= 0).all()
    with pytest.raises(ValueError, match="non-decreasing"):
        durations_from_starts([0.2, 0.1], 1.0, 50.0, 50)


@pytest.mark.parametrize("freq", [95.0, 220.5, 317.0])
def test_yin_matches_librosa_on_sines(freq):
    sr = 16000
    t = np.arange(sr) / sr
    y = 0.5 * np.sin(2 * np.pi * freq * t)
    ours, aperiodicity = yin(y, sample_rate=sr, hop_length=320, frame_length=1024)
    ref = librosa.yin(y, fmin=60, fmax=500, sr=sr, frame_length=1024, hop_length=320)
    assert ours.shape == ref.shape
    np.testing.assert_allclose(ours, ref, rtol=1e-5)
    assert abs(np.median(ours) - freq) / freq < 0.01
    assert np.median(aperiodicity) < 0.15


def test_pitch_on_toy_utterance_agrees_with_librosa():
    row = _first_row()
    y, sr = sf.read(toy_corpus_dir() / row["path"])
    ours, _ = yin(y, sample_rate=sr, hop_length=320, frame_length=1024)
    ref = librosa.yin(y, fmin=60, fmax=500, sr=sr, frame_length=1024, hop_length=320)
    np.testing.assert_allclose(ours, ref, rtol=1e-3)
    track = extract_pitch(y, sample_rate=sr, hop_length=320, num_frames=len(ours))
    f0, voiced, _ = librosa.pyin(y, fmin=60, fmax=500, sr=sr, frame_length=1024, hop_length=320)
    assert (track.voiced == voiced).mean() > 0.7  # voicing decisions mostly agree with pYIN
    both = track.voiced & voiced
    assert both.sum() > 20
    rel = np.abs(track.f0[both] - f0[both]) / f0[both]
    assert np.percentile(rel, 90) < 0.02
    assert np.all(track.log_f0[~track.voiced] == 0)
    np.testing.assert_allclose(
        track.log_f0[track.voiced], np.log(track.f0[track.voiced]), rtol=1e-5
    )


def test_letters_the_voice_cannot_read_are_named():
    assert unreadable_characters("こんにちは、世界! ok", "en-us") == [
        "こ",
        "ん",
        "に",
        "ち",
        "は",
        "世",
        "界",
    ]
    assert unreadable_characters("Café, naïve Straße 42 ½ — ok?", "en-us") == []
    assert unreadable_characters("Ｆｕｌｌ ｗｉｄｔｈ", "en") == []
    assert unreadable_characters("привет мир", "ru") == []
    assert unreadable_characters("привет", "en-us") == ["п", "р", "и", "в", "е", "т"]
    assert unreadable_characters("こんにちは世界", "ja") == []
    assert unreadable_characters("anything こ", "xx-unknown") == []


def test_phonemize_warns_about_japanese_for_an_english_voice(recwarn):
    phonemize("hello there", "en-us")
    assert not [w for w in recwarn if issubclass(w.category, UnreadableTextWarning)]
    with pytest.warns(UnreadableTextWarning, match=r"en-us .*cannot read こ ん に ち は 世 界"):
        phonemize("こんにちは世界", "en-us")
