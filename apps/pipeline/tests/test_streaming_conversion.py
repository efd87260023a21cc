"""VoiceConversion.stream as cadence.pipeline.streaming_conversion documents it: the source
read block by block, each chunk's tokens those of its window (the whole source's when the
windows cover it), each chunk's codes SoundStorm's for its left context, the audio the
one-shot decode of the streamed codes, every sample once."""

from __future__ import annotations

import json

import pytest
import torch

from cadence.core.audio import load, resample
from cadence.pipeline.cli import default_pipeline
from cadence.pipeline.guidance import SOUNDSTORM_GUIDANCE, soundstorm_scales
from cadence.pipeline.synthesis import VoiceConversion
from cadence.soundstorm import default_iterations

STEPS = 4  # SoundStorm passes on the first level: these tests check plumbing


@pytest.fixture(scope="module")
def vc() -> VoiceConversion:
    return VoiceConversion.from_pretrained(default_pipeline())


@pytest.fixture(scope="module")
def clips():
    held_out = default_pipeline() / "held_out"
    items = [json.loads(line) for line in (held_out / "valid.jsonl").read_text().splitlines()]
    source, rate = load(held_out / items[0]["path"])
    target, _ = load(held_out / items[-1]["path"])
    return source[:, : int(2.5 * rate)], target, rate


def _blocks(audio, size):
    return (audio[:, i : i + size] for i in range(0, audio.shape[-1], size))


def test_windows_that_cover_the_source_give_its_tokens_and_the_one_shot_decode(vc, clips):
    source, target, rate = clips
    stream = vc.stream(
        _blocks(source, 1000), target, sample_rate=rate, chunk_seconds=0.6,
        source_context_seconds=30, lookahead_seconds=30, steps=STEPS, seed=3,
    )  # fmt: skip
    chunks = list(stream)
    semantic = torch.cat([c.semantic for c in chunks])
    codes = torch.cat([c.codes for c in chunks])
    joined = torch.cat([c.audio for c in chunks], dim=-1)
    whole_tokens = vc.tokenizer.tokenize(source[None])[0]
    assert torch.equal(semantic, whole_tokens)  # 2.5 s: 125 tokens
    assert [c.semantic.numel() for c in chunks] == [30, 30, 30, 30, 5, 0]
    hop = vc.codec.hop_length
    assert joined.shape[-1] == codes.shape[0] * hop == 125 * hop
    assert torch.allclose(joined, vc.codec.decode(codes[None])[0], atol=1e-5)
    # the first chunk: SoundStorm prompted by the last 2 s of the target voice's codes
    tgt = target[None].float()
    first = vc.model.generate(
        chunks[0].semantic[None], num_frames=30, prompt_codes=vc.codec.encode(tgt)[:, -100:],
        prompt_semantic=vc.tokenizer.tokenize(tgt)[:, -100:],
        iterations=default_iterations(vc.model.config.num_quantizers, first=STEPS),
        guidance_scale=soundstorm_scales(SOUNDSTORM_GUIDANCE, vc.model.config.num_quantizers),
        generator=torch.Generator().manual_seed(3),
    )  # fmt: skip
    assert torch.equal(first.codes[0], chunks[0].codes)


def test_each_chunk_is_tokenized_on_its_own_window(vc, clips):
    source, target, rate = clips
    chunks = list(
        vc.stream(
            _blocks(source, 700), target, sample_rate=rate, chunk_seconds=0.5,
            source_context_seconds=0.4, lookahead_seconds=0.2, steps=STEPS, seed=0,
        )
    )  # fmt: skip
    hop = vc.sample_rate // 50  # 50 Hz tokens
    # the third chunk: tokens 50..75, its window the source from token 30 to token 85
    window = source[:, 30 * hop : 85 * hop]
    expected = vc.tokenizer.tokenize(window[None])[0, 20:45]
    assert torch.equal(chunks[2].semantic, expected)
    whole = vc.tokenizer.tokenize(source[None])[0]
    streamed = torch.cat([c.semantic for c in chunks])
    assert streamed.shape == whole.shape
    # short windows change some tokens, not most (the shipped tokenizer's encoder reaches
    # past 0.4 s on each side only a little)
    assert float((streamed == whole).float().mean()) > 0.6


def test_a_source_at_another_rate_is_resampled_as_a_stream(vc, clips):
    source, target, rate = clips
    fast = resample(source, rate, 44100)
    chunks = list(
        vc.stream(_blocks(fast, 4410), resample(target, rate, 44100), sample_rate=44100,
                  steps=STEPS, seed=0)
    )  # fmt: skip
    frames = sum(c.codes.shape[0] for c in chunks)
    assert abs(frames - 125) <= 1
    assert sum(c.audio.shape[-1] for c in chunks) == frames * vc.codec.hop_length


def test_streaming_conversion_is_lazy_and_bad_input_is_a_clear_error(vc, clips):
    source, target, rate = clips
    read = []

    def blocks():
        for block in _blocks(source, 1600):
            read.append(block.shape[-1])
            yield block

    stream = vc.stream(blocks(), target, sample_rate=rate, steps=STEPS)
    assert read == []  # nothing read until the first chunk is asked for
    next(stream)
    assert 0 < sum(read) < source.shape[-1]  # the first chunk came before the end

    with pytest.raises(ValueError, match="shorter than left_context_seconds = 2"):
        vc.stream(source, target[:, :rate], sample_rate=rate)
    with pytest.raises(ValueError, match="not a whole number of 50 Hz frames"):
        vc.stream(source, target, sample_rate=rate, chunk_seconds=0.03)
    with pytest.raises(ValueError, match="lookahead_seconds must be a finite number >= 0"):
        vc.stream(source, target, sample_rate=rate, lookahead_seconds=-1)
    with pytest.raises(ValueError, match="the source holds no samples"):
        list(vc.stream(iter([]), target, sample_rate=rate))
    bad = source.clone()
    bad[0, 100] = float("nan")
    with pytest.raises(ValueError, match="NaN or infinite"):
        list(vc.stream(bad, target, sample_rate=rate))
    flow = VoiceConversion.from_pretrained(default_pipeline(), method="flow")
    with pytest.raises(ValueError, match="streaming conversion runs the SoundStorm method"):
        flow.stream(source, target, sample_rate=rate)


def test_convert_stream_reads_the_source_in_blocks_and_writes_a_wav(tmp_path, clips):
    import subprocess
    import sys

    import soundfile as sf

    from cadence.core.audio import blocks, save

    source, target, rate = clips
    save(tmp_path / "src.flac", source, rate)
    save(tmp_path / "voice.flac", target, rate)
    reader, read_rate = blocks(tmp_path / "src.flac", seconds=0.1)
    parts = list(reader)
    assert read_rate == rate and len(parts) == 25 and parts[0].shape == (1, 1600)
    assert torch.allclose(torch.cat(parts, dim=-1), load(tmp_path / "src.flac")[0])

    out = tmp_path / "c.wav"
    base = [sys.executable, "-m", "cadence.pipeline.cli", "convert", "--source", str(tmp_path / "src.flac"), "--target-voice", str(tmp_path / "voice.flac"), "--stream", "--steps", "2", "--seed", "0"]  # fmt: skip
    done = subprocess.run([*base, "--out", str(out)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "first audio after" in done.stderr
    assert sf.info(str(out)).frames == 125 * 320
    flow = subprocess.run([*base, "--method", "flow", "--out", str(out)], capture_output=True, text=True)  # fmt: skip
    assert flow.returncode != 0 and "--method soundstorm" in flow.stderr
