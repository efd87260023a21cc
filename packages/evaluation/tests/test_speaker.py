"""Speaker similarity with Resemblyzer's bundled GE2E encoder, on the committed toy corpus."""

from __future__ import annotations

import json
import math
import socket
import subprocess
import sys
import warnings

import numpy as np
import pytest
import torch

from cadence.core import audio as audio_io
from cadence.core.audio import EmptyAudioError
from cadence.core.testing import toy_corpus_dir
from cadence.evaluation import (
    SpeakerEncoder,
    pairwise_similarity,
    similarity,
    speaker_pair_similarity,
    speaker_similarity_report,
)

BACKEND = "cadence.evaluation._resemblyzer"


@pytest.fixture(scope="module")
def encoder():
    return SpeakerEncoder()


@pytest.fixture(scope="module")
def valid():
    """The first 3 utterances of each of the 3 held-out speakers: ``(clips, speakers)``."""
    root = toy_corpus_dir()
    entries = [json.loads(line) for line in (root / "valid.jsonl").read_text().splitlines()]
    chosen: list[dict] = []
    for speaker in sorted({e["speaker"] for e in entries}):
        chosen += [e for e in entries if e["speaker"] == speaker][:3]
    clips = [audio_io.load(root / e["path"])[0] for e in chosen]
    return clips, [e["speaker"] for e in chosen]


@pytest.fixture(scope="module")
def embeddings(encoder, valid):
    return encoder.embed(valid[0], sample_rate=16000)


def test_same_speaker_pairs_score_higher_than_different_speaker_pairs(embeddings, valid):
    """Measured (resemblyzer 0.1.4, torch 2.15): on these 9 clips, same-speaker 0.840 over
    9 pairs, different-speaker 0.785 over 27; on the whole valid split (30 clips, 3 female
    voices) 0.833 over 135 pairs against 0.752 over 300, and on the train split (17 speakers
    of both sexes) 0.832 against 0.682. GE2E embeddings are non-negative, so unrelated
    voices still score well above 0 (digital silence against speech scores about 0.45)."""
    pairs = speaker_pair_similarity(embeddings, valid[1])
    assert (pairs.same_pairs, pairs.different_pairs) == (9, 27)
    assert pairs.same_speaker > pairs.different_speaker + 0.03
    assert 0.7 < pairs.same_speaker < 1.0 and 0.5 < pairs.different_speaker < 0.95


def test_embeddings_are_unit_vectors_and_an_utterance_matches_itself(encoder, embeddings, valid):
    assert embeddings.shape == (9, 256) and embeddings.dtype == torch.float32
    assert torch.allclose(embeddings.norm(dim=-1), torch.ones(9), atol=1e-5)
    assert (embeddings >= 0).all()  # a ReLU precedes the normalization
    again = encoder.embed(valid[0][0], sample_rate=16000)
    assert again.shape == (1, 256)
    assert similarity(again[0], embeddings[0]) > 0.9999
    assert torch.allclose(pairwise_similarity(embeddings).diagonal(), torch.ones(9), atol=1e-5)


def test_padded_batches_resampling_and_channels_do_not_change_embeddings(
    encoder, embeddings, valid
):
    clips = valid[0][:3]
    batch, lengths = audio_io.batch_audio(clips, 16000)
    batch[0, :, lengths[0] :] = 0.5  # what lies past an item's length must not matter
    padded = encoder.embed(batch, sample_rate=16000, lengths=lengths)
    assert torch.allclose(padded, embeddings[:3], atol=1e-6)
    # 24 kHz stereo copies (both channels the same, so the mono mix is the clip itself)
    stereo = [audio_io.resample(clip, 16000, 24000).repeat(2, 1) for clip in clips]
    assert (similarity(encoder.embed(stereo, sample_rate=24000), embeddings[:3]) > 0.99).all()


def test_preprocessing_is_resemblyzers_and_output_matches_its_voice_encoder(encoder, valid):
    import importlib

    from resemblyzer import VoiceEncoder, preprocess_wav

    backend = importlib.import_module(BACKEND)
    wav = valid[0][0][0].numpy()
    assert np.array_equal(backend.preprocess(wav), preprocess_wav(wav))
    theirs = VoiceEncoder("cpu", verbose=False).embed_utterance(preprocess_wav(wav))
    ours = encoder.embed(valid[0][0], sample_rate=16000)[0].numpy()
    assert np.allclose(ours, theirs, atol=1e-6)


def test_silence_and_noise_still_embed_without_warnings(encoder):
    # preprocess_wav would give NaN for digital silence (an infinite gain) and nothing at
    # all for a clip where the VAD hears no voice; both are embedded whole instead.
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = encoder.embed([torch.zeros(1, 16000), 0.1 * torch.randn(1, 8000)], sample_rate=16000)
    assert torch.isfinite(out).all()
    assert torch.allclose(out.norm(dim=-1), torch.ones(2), atol=1e-5)


def test_wrong_inputs(encoder):
    with pytest.raises(EmptyAudioError):
        encoder.embed(torch.zeros(1, 0), sample_rate=16000)
    with pytest.raises(EmptyAudioError):
        encoder.embed([], sample_rate=16000)
    with pytest.raises(ValueError, match="lengths"):
        encoder.embed(torch.zeros(2, 1, 800), sample_rate=16000, lengths=torch.tensor([800]))
    with pytest.raises(ValueError, match="lengths"):
        encoder.embed(torch.zeros(1, 800), sample_rate=16000, lengths=torch.tensor([800]))
    with pytest.raises(ValueError, match="width"):
        similarity(torch.ones(3), torch.ones(4))
    with pytest.raises(ValueError, match=r"\(i, d\)"):
        pairwise_similarity(torch.ones(3))


def test_loading_never_downloads_and_reads_tensors_only(monkeypatch):
    def no_network(*args, **kwargs):
        raise AssertionError("the speaker encoder tried to open a network connection")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    calls = []
    real_load = torch.load

    def spy_load(*args, **kwargs):
        calls.append(kwargs)
        return real_load(*args, **kwargs)

    monkeypatch.setattr(torch, "load", spy_load)
    encoder = SpeakerEncoder()
    assert [call.get("weights_only") for call in calls] == [True]
    assert encoder.embed(0.1 * torch.randn(1, 4000), sample_rate=16000).shape == (1, 256)


def test_missing_resemblyzer_names_the_extra(monkeypatch):
    monkeypatch.delitem(sys.modules, BACKEND, raising=False)
    monkeypatch.setitem(sys.modules, "resemblyzer", None)  # `import resemblyzer` now fails
    with pytest.raises(ImportError, match=r'pip install "cadence-evaluation\[speaker\]"'):
        SpeakerEncoder()


def test_the_old_webrtcvad_gets_its_own_fix(monkeypatch):
    import cadence.evaluation.speaker as speaker

    def old_webrtcvad(name):
        raise ModuleNotFoundError("No module named 'pkg_resources'", name="pkg_resources")

    monkeypatch.setattr(speaker.importlib, "import_module", old_webrtcvad)
    with pytest.raises(ImportError, match="webrtcvad-wheels"):
        SpeakerEncoder()


def test_importing_the_package_does_not_import_resemblyzer():
    code = (
        "import sys, cadence.evaluation; "
        "print(sorted({'resemblyzer', 'webrtcvad', 'cadence.evaluation._resemblyzer'} & set(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# -- figures of an evaluation --------------------------------------------------------------


def test_report_on_known_embeddings():
    references = torch.tensor([[1.0, 0.0], [1.0, 1.0], [0.0, 1.0]])
    hypotheses = {"copy": references.clone(), "turned": references.flip(-1)}
    report = speaker_similarity_report(references, hypotheses, ["a", "a", "b"])
    cos45 = 1 / math.sqrt(2)
    assert report["speaker_sim_copy"] == pytest.approx(1.0)
    assert report["speaker_sim_turned"] == pytest.approx((0 + 1 + 0) / 3)
    assert report["speaker_sim_same"] == pytest.approx(cos45)  # only pair: 0-1
    assert report["speaker_sim_different"] == pytest.approx((0 + cos45) / 2)  # pairs 0-2, 1-2
    assert set(speaker_similarity_report(references, hypotheses)) == {
        "speaker_sim_copy",
        "speaker_sim_turned",
    }
    lonely = speaker_pair_similarity(references, ["a", "b", "c"])
    assert math.isnan(lonely.same_speaker) and lonely.different_pairs == 3
    with pytest.raises(ValueError, match="one output per reference"):
        speaker_similarity_report(references, {"short": references[:2]})
    with pytest.raises(ValueError, match="collides"):
        speaker_similarity_report(references, {"same": references})
    with pytest.raises(ValueError, match="speakers"):
        speaker_pair_similarity(references, ["a"])
