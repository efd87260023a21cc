import math

import numpy as np
import pytest
import soundfile as sf
import torch

from cadence.core import audio
from cadence.core.audio import (
    AudioDecodeError,
    ChannelMismatchError,
    EmptyAudioError,
    NonFiniteAudioError,
    SampleRateMismatchError,
)


def sine(freq: float, sample_rate: int, seconds: float = 1.0, channels: int = 1) -> torch.Tensor:
    t = torch.arange(int(seconds * sample_rate)) / sample_rate
    return (0.5 * torch.sin(2 * math.pi * freq * t)).repeat(channels, 1)


def dominant_frequency(x: torch.Tensor, sample_rate: int) -> float:
    spectrum = torch.fft.rfft(x * torch.hann_window(x.shape[-1]), dim=-1).abs()
    return spectrum.argmax().item() * sample_rate / x.shape[-1]


@pytest.mark.parametrize("suffix", [".wav", ".flac", ".ogg", ".mp3"])
def test_round_trip_formats(tmp_path, suffix):
    x = sine(440, 16000, 0.5)
    path = audio.save(tmp_path / f"a{suffix}", x, 16000)
    y, sr = audio.load(path)
    assert sr == 16000 and y.shape[0] == 1 and y.dtype == torch.float32
    if suffix in (".wav", ".flac"):  # lossless up to 16-bit quantization
        assert y.shape == x.shape
        assert (y - x).abs().max() < 1e-4
    else:  # lossy: length may include codec padding, pitch must survive
        assert abs(y.shape[-1] - x.shape[-1]) < 0.1 * 16000
        assert abs(dominant_frequency(y[0], sr) - 440) < 5


def test_resampling_keeps_frequency(tmp_path):
    x = sine(1000, 44100, 1.0)
    audio.save(tmp_path / "a.wav", x, 44100)
    y, sr = audio.load(tmp_path / "a.wav", sample_rate=16000)
    assert sr == 16000 and y.shape[-1] == 16000
    assert abs(dominant_frequency(y[0], sr) - 1000) <= 1.0
    # and the amplitude survives (soxr is band-limited, the tone is far from Nyquist)
    assert abs(y[0, 2000:-2000].abs().max().item() - 0.5) < 0.01


def test_resample_batched_shapes():
    x = torch.randn(3, 2, 24000)
    y = audio.resample(x, 24000, 16000)
    assert y.shape == (3, 2, 16000)
    assert torch.allclose(audio.resample(y, 16000, 16000), y)


def test_channel_conversion(tmp_path):
    stereo = torch.stack([sine(300, 16000)[0], -sine(300, 16000)[0] * 0.5])
    audio.save(tmp_path / "s.wav", stereo, 16000)
    mono, _ = audio.load(tmp_path / "s.wav", channels=1)
    assert mono.shape[0] == 1
    torch.testing.assert_close(mono[0], stereo.mean(0), atol=1e-4, rtol=0)
    dup = audio.convert_channels(mono, 2)
    assert dup.shape[0] == 2 and torch.equal(dup[0], dup[1])
    with pytest.raises(ChannelMismatchError, match="mix down"):
        audio.convert_channels(torch.zeros(3, 10), 2)


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        audio.load(tmp_path / "nope.wav")


def test_corrupt_file(tmp_path):
    path = tmp_path / "bad.wav"
    path.write_bytes(b"RIFF\x00\x00\x00\x00WAVEgarbage" + bytes(100))
    with pytest.raises(AudioDecodeError, match="cannot decode"):
        audio.load(path)
    text = tmp_path / "notes.flac"
    text.write_text("this is not audio")
    with pytest.raises(AudioDecodeError):
        audio.load(text)


def test_empty_file(tmp_path):
    path = tmp_path / "empty.wav"
    sf.write(str(path), np.zeros((0, 1), dtype=np.float32), 16000)
    with pytest.raises(EmptyAudioError, match="no audio"):
        audio.load(path)


def test_nan_samples(tmp_path):
    data = np.zeros((100, 1), dtype=np.float32)
    data[10] = np.nan
    path = tmp_path / "nan.wav"
    sf.write(str(path), data, 16000, subtype="FLOAT")
    with pytest.raises(NonFiniteAudioError, match="NaN"):
        audio.load(path)
    with pytest.raises(NonFiniteAudioError):
        audio.save(tmp_path / "out.wav", torch.tensor([[0.0, float("inf")]]), 16000)


def test_wrong_sample_rate():
    with pytest.raises(SampleRateMismatchError, match="24000 Hz but 16000 Hz"):
        audio.check_sample_rate(24000, 16000)
    x = torch.zeros(1, 1, 100)
    with pytest.raises(SampleRateMismatchError, match="resample"):
        audio.check_audio(x, sample_rate=44100, expected_sample_rate=16000)


def test_check_audio_shapes():
    with pytest.raises(audio.AudioError, match=r"\(b, c, t\)"):
        audio.check_audio(torch.zeros(100))
    with pytest.raises(ChannelMismatchError, match="2 channel"):
        audio.check_audio(torch.zeros(1, 2, 100), channels=1)
    with pytest.raises(EmptyAudioError):
        audio.check_audio(torch.zeros(1, 1, 0))
    with pytest.raises(audio.AudioError, match="floating"):
        audio.check_audio(torch.zeros(1, 1, 10, dtype=torch.long))
    x = torch.zeros(2, 1, 10)
    assert audio.check_audio(x, channels=1) is x


def test_save_unknown_format_and_atomic(tmp_path):
    with pytest.raises(audio.AudioError, match="unknown audio format"):
        audio.save(tmp_path / "a.xyz", torch.zeros(1, 10), 16000)
    audio.save(tmp_path / "a.wav", torch.zeros(1, 10), 16000)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.wav"]  # no temporary left behind


def test_batch_audio_validates_converts_and_pads_once():
    import torch

    from cadence.core.audio import EmptyAudioError, NonFiniteAudioError, batch_audio

    clips = [torch.rand(2, 800) - 0.5, torch.rand(1, 400) - 0.5]
    audio, lengths = batch_audio(clips, 8000, target_rate=16000, channels=1)
    assert audio.shape == (2, 1, 1600) and lengths.tolist() == [1600, 800]
    assert not audio[1, :, 800:].any()
    # a (b, c, t) batch is taken as b full-length clips
    audio, lengths = batch_audio(torch.zeros(3, 1, 100) + 0.1, 16000)
    assert audio.shape == (3, 1, 100) and lengths.tolist() == [100] * 3
    with pytest.raises(NonFiniteAudioError, match="prompt 1"):
        batch_audio([torch.zeros(1, 10), torch.full((1, 10), float("nan"))], 16000, what="prompt")
    with pytest.raises(EmptyAudioError, match="at least"):
        batch_audio([torch.zeros(1, 10)], 16000, min_samples=320)
    with pytest.raises(EmptyAudioError):
        batch_audio([], 16000)


def test_a_directory_or_missing_path_raises_an_audio_error(tmp_path):
    from cadence.core.audio import AudioError, AudioNotFoundError, NotAnAudioFileError

    with pytest.raises(NotAnAudioFileError, match="is a directory"):
        audio.load(tmp_path)
    with pytest.raises(AudioNotFoundError, match="not found") as info:
        audio.load(tmp_path / "missing.wav")
    assert isinstance(info.value, (AudioError, FileNotFoundError))


def _cut_in_half(path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def test_a_truncated_wav_warns_and_gives_what_is_there(tmp_path):
    path = tmp_path / "cut.wav"
    sf.write(str(path), np.full(48000, 0.1, dtype="float32"), 16000, subtype="PCM_16")
    _cut_in_half(path)
    with pytest.warns(
        audio.TruncatedAudioWarning, match=r"prompt .*cut\.wav is truncated.*3\.00 s.*1\.50 s"
    ):
        clip, rate = audio.load(path, what="prompt")
    assert rate == 16000 and 23900 < clip.shape[-1] < 24000


def test_whole_files_and_partial_reads_do_not_warn(tmp_path, recwarn):
    whole = tmp_path / "whole.wav"
    sf.write(str(whole), np.full(16000, 0.1, dtype="float32"), 16000)
    audio.load(whole)
    cut = tmp_path / "cut.wav"
    sf.write(str(cut), np.full(16000, 0.1, dtype="float32"), 16000, subtype="PCM_16")
    _cut_in_half(cut)
    audio.load(cut, offset=100, frames=1000)  # a crop of what is there
    assert not [w for w in recwarn if issubclass(w.category, audio.TruncatedAudioWarning)]


def test_a_streamed_wav_with_an_unknown_size_does_not_warn(tmp_path, recwarn):
    path = tmp_path / "streamed.wav"
    sf.write(str(path), np.full(16000, 0.1, dtype="float32"), 16000, subtype="PCM_16")
    data = bytearray(path.read_bytes())
    at = data.index(b"data") + 4
    data[at : at + 4] = (0xFFFFFFFF).to_bytes(4, "little")  # what a pipe writer leaves
    path.write_bytes(bytes(data))
    clip, _ = audio.load(path)
    assert clip.shape[-1] == 16000
    assert not [w for w in recwarn if issubclass(w.category, audio.TruncatedAudioWarning)]


def test_blocks_reads_lazily_and_checks_what_it_reads(tmp_path):
    path = tmp_path / "a.wav"
    data = np.sin(np.arange(2500) / 10.0).astype(np.float32) * 0.5
    sf.write(path, np.stack([data, -data], axis=1), 8000, subtype="FLOAT")
    reader, rate = audio.blocks(path, seconds=0.1)
    parts = list(reader)
    assert rate == 8000 and [p.shape for p in parts] == [(2, 800)] * 3 + [(2, 100)]
    assert torch.allclose(torch.cat(parts, dim=-1)[0], torch.from_numpy(data))
    with pytest.raises(audio.AudioNotFoundError, match="source file not found"):
        audio.blocks(tmp_path / "missing.wav", what="source")
    bad = data.copy()
    bad[2000] = np.nan
    sf.write(tmp_path / "nan.wav", bad, 8000, subtype="FLOAT")
    reader, _ = audio.blocks(tmp_path / "nan.wav")
    next(reader)  # the first blocks are fine; the bad one fails when it is read
    with pytest.raises(audio.NonFiniteAudioError, match="NaN or infinite"):
        list(reader)
    sf.write(tmp_path / "empty.wav", np.zeros(0, np.float32), 8000)
    with pytest.raises(audio.EmptyAudioError, match="holds no samples"):
        audio.blocks(tmp_path / "empty.wav")
