"""SpeechContinuation.stream against the non-streaming path, as cadence.pipeline.streaming
documents it: the semantic tokens are generate()'s, the audio is the one-shot decode of the
streamed codes, every sample exactly once, and the memory of a long stream stays flat."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from cadence.core.audio import load
from cadence.pipeline import SpeechContinuation
from cadence.pipeline.cli import default_pipeline
from cadence.pipeline.continuation import DEFAULT_SAMPLING
from cadence.pipeline.guidance import SOUNDSTORM_GUIDANCE, soundstorm_scales
from cadence.soundstorm import default_iterations

NO_EOS = DEFAULT_SAMPLING.replace(allow_eos=False)
# fewer SoundStorm passes than the default (4 on the first level, 1 on each other level of
# the shipped codec): these tests check plumbing
PLAN = default_iterations(
    SpeechContinuation.from_pretrained(default_pipeline()).soundstorm.config.num_quantizers,
    first=4,
)


@pytest.fixture(scope="module")
def pipe() -> SpeechContinuation:
    return SpeechContinuation.from_pretrained(default_pipeline())


@pytest.fixture(scope="module")
def prompt():
    audio, rate = load(default_pipeline() / "prompts" / "prompt.flac")
    return audio, rate


def test_stream_joined_is_the_documented_non_streaming_generation(pipe, prompt):
    audio, rate = prompt
    chunks = list(
        pipe.stream(
            audio, sample_rate=rate, seconds=2.3, chunk_seconds=0.6, left_context_seconds=1.0,
            sampling=NO_EOS, iterations=PLAN, seed=4,
        )
    )  # fmt: skip
    semantic = torch.cat([c.semantic for c in chunks])
    codes = torch.cat([c.codes for c in chunks])
    joined = torch.cat([c.audio for c in chunks], dim=-1)
    # the semantic tokens are generate()'s for the same seed
    ref = pipe.generate(
        audio, sample_rate=rate, seconds=2.3, sampling=NO_EOS, iterations=PLAN, seed=4
    )
    assert torch.equal(semantic, ref.semantic[0, : int(ref.semantic_lengths[0])])
    assert [c.semantic.numel() for c in chunks] == [30, 30, 30, 25, 0]
    # chunk boundaries: every sample once, and the decoder state carried (one-shot decode)
    hop = pipe.codec.hop_length
    assert joined.shape[-1] == codes.shape[0] * hop == 115 * hop
    whole = pipe.codec.decode(codes[None])[0]
    assert torch.allclose(joined, whole, atol=1e-5)
    # the first chunk's codes are SoundStorm's for its tokens, prompted by the prompt's last
    # second of codes, with the generator seeded with seed + 1
    used = pipe.codec.encode(audio[None].float())
    first = pipe.soundstorm.generate(
        chunks[0].semantic[None], num_frames=30, prompt_codes=used[:, -50:],
        prompt_semantic=pipe.tokenizer.tokenize(audio[None].float())[:, -50:],
        iterations=PLAN, generator=torch.Generator().manual_seed(5),
        guidance_scale=soundstorm_scales(SOUNDSTORM_GUIDANCE, pipe.soundstorm.config.num_quantizers),
    )  # fmt: skip
    assert torch.equal(first.codes[0], chunks[0].codes)


def test_a_chunk_ends_where_the_decoder_can_see_far_enough(pipe, prompt):
    audio, rate = prompt
    # chunks of 50 frames: longer than the shipped ISTFTCodec's look-ahead (~29 frames)
    stream = pipe.stream(audio, sample_rate=rate, seconds=2.0, chunk_seconds=1.0, left_context_seconds=1.0, sampling=NO_EOS, iterations=PLAN, seed=0)  # fmt: skip
    first = next(stream)
    right = pipe._decoder_reach[1]  # the non-causal toy codec's look-ahead, measured
    assert 0 < right < 50
    assert first.audio.shape[-1] == (50 - right) * pipe.codec.hop_length
    rest = list(stream)
    assert sum(c.audio.shape[-1] for c in [first, *rest]) == 100 * pipe.codec.hop_length


def test_a_shorter_lookahead_starts_sooner_and_stays_close_to_the_exact_stream(pipe, prompt):
    audio, rate = prompt
    kwargs = dict(sample_rate=rate, seconds=1.8, chunk_seconds=0.6, left_context_seconds=1.0,
                  sampling=NO_EOS, iterations=PLAN, seed=2)  # fmt: skip
    exact = list(pipe.stream(audio, **kwargs))
    near = list(pipe.stream(audio, lookahead_seconds=0.16, **kwargs))
    hop = pipe.codec.hop_length
    # 8 frames of look-ahead instead of the measured ~29: a 30-frame first chunk gives 22
    assert near[0].audio.shape[-1] == (30 - 8) * hop > exact[0].audio.shape[-1]
    assert exact[0].audio.shape[-1] == (30 - pipe._decoder_reach[1]) * hop
    # the same codes (the look-ahead only changes the decoding), every sample once
    assert torch.equal(torch.cat([c.codes for c in near]), torch.cat([c.codes for c in exact]))
    a = torch.cat([c.audio for c in exact], -1)
    b = torch.cat([c.audio for c in near], -1)
    assert a.shape == b.shape
    snr = 10 * torch.log10(a.pow(2).sum() / (a - b).pow(2).sum())
    assert 40 < snr < 200, snr  # close (measured 67 dB on the held-out prompt), not exact
    with pytest.raises(ValueError, match="lookahead_seconds must be a finite number >= 0"):
        pipe.stream(audio, lookahead_seconds=-0.1, **kwargs)


@pytest.mark.parametrize(
    "options, message",
    [
        (dict(chunk_seconds=0.03), "not a whole number of 50 Hz frames; use a multiple of 0.02 s"),
        (dict(chunk_seconds=0.0), "chunk_seconds must be a finite number > 0"),
        (dict(left_context_seconds=12.0), "left_context_seconds must be at most 10"),
        (
            dict(left_context_seconds=5.0),
            "shorter than left_context_seconds = 5: give a longer prompt",
        ),
        (dict(seconds=1e9), "seconds must be in"),
    ],
)
def test_bad_chunks_and_a_prompt_shorter_than_the_context_are_clear_errors(pipe, prompt, options, message):  # fmt: skip
    audio, rate = prompt  # 2.98 s
    with pytest.raises(ValueError, match=message):
        pipe.stream(audio, sample_rate=rate, **options)  # raises at the call, before a chunk


MEASURE = """
import json, resource, sys, torch
torch.set_num_threads(1)
from cadence.core.audio import load
from cadence.pipeline import SpeechContinuation
from cadence.pipeline.cli import default_pipeline
from cadence.pipeline.continuation import DEFAULT_SAMPLING
pipe = SpeechContinuation.from_pretrained(default_pipeline())
audio, rate = load(default_pipeline() / "prompts" / "prompt.flac")
for seconds in map(float, sys.argv[1:]):  # the peak so far after each stream, in one process
    samples = 0
    for chunk in pipe.stream(audio, sample_rate=rate, seconds=seconds, chunk_seconds=2.0,
                             left_context_seconds=1.0, seed=0, guidance_scale=1.0,
                             iterations=(1,) * pipe.soundstorm.config.num_quantizers,
                             sampling=DEFAULT_SAMPLING.replace(allow_eos=False)):
        samples += chunk.audio.shape[-1]
    print(json.dumps({"samples": samples, "peak_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}))
"""


def test_a_long_stream_keeps_memory_flat():
    # One interpreter (its start and the model load are ~10 s): the process's peak after a
    # 10 s stream, then after a 40 s one. A stream whose memory grew with its length would
    # raise the peak; one whose memory is flat reuses what the first stream freed.
    out = subprocess.run(
        [sys.executable, "-c", MEASURE, "10", "40"], capture_output=True, text=True, check=True
    )
    short, long = (json.loads(line) for line in out.stdout.strip().splitlines()[-2:])
    assert short["samples"] == 10 * 16000 and long["samples"] == 40 * 16000
    # 4x the audio, the same memory (a one-shot 40 s generation holds SoundStorm's attention
    # over 2000 frames and the whole waveform: see bench/pipeline/README.md)
    assert long["peak_kib"] - short["peak_kib"] < 12 * 1024, (short, long)


def test_a_streamed_wav_is_valid_and_grows_during_generation(tmp_path, pipe, prompt):
    import soundfile as sf

    from cadence.pipeline.stream_output import stream_to

    audio, rate = prompt
    path = tmp_path / "grow.wav"
    seen = []

    def reader(written: int) -> None:  # another reader of the file, between chunks
        info = sf.info(str(path))
        data, _ = sf.read(str(path))
        seen.append((written, info.frames, len(data)))

    # chunks of 40 frames, longer than the codec's look-ahead, so each one brings audio
    chunks = pipe.stream(audio, sample_rate=rate, seconds=3.0, chunk_seconds=0.8, left_context_seconds=1.0, sampling=NO_EOS, iterations=PLAN, seed=1)  # fmt: skip
    with open(path, "wb") as sink:
        stream_to(chunks, sink=sink, sample_rate=rate, channels=1, on_chunk=reader)
    frames = [f for _, f, _ in seen]
    assert all(w == f == n for w, f, n in seen)  # the header always matches the data
    assert frames == sorted(frames) and frames[0] > 0 and len(set(frames)) >= 4
    assert sf.info(str(path)).frames == 3 * rate


def test_generate_stream_writes_a_wav_file_and_a_wav_to_stdout(tmp_path):
    import soundfile as sf

    prompt = default_pipeline() / "prompts" / "prompt.flac"
    out = tmp_path / "s.wav"
    # unguided: the test is about the file, and guidance doubles SoundStorm's work
    options = ["generate", "--prompt", str(prompt), "--stream", "--seconds", "1", "--steps", "2", "--guidance", "1", "--seed", "0"]  # fmt: skip
    base = [sys.executable, "-m", "cadence.pipeline.cli", *options]
    done = subprocess.run([*base, "--out", str(out)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "first audio after" in done.stderr
    assert sf.info(str(out)).frames == 16000
    # to stdout, with a shorter look-ahead: the same codes, nearly the same samples
    piped = subprocess.run([*base, "--lookahead", "0.16", "--out", "-"], capture_output=True)
    assert piped.returncode == 0, piped.stderr
    (tmp_path / "piped.wav").write_bytes(piped.stdout)  # streaming sizes in the header
    data, rate = sf.read(str(tmp_path / "piped.wav"))
    assert rate == 16000 and len(data) == 16000
    exact = sf.read(str(out))[0]
    assert abs(data - exact).max() < 0.02 < abs(exact).max()
    # refused before any model loads (in this process: a third interpreter costs ~10 s)
    from typer.testing import CliRunner

    from cadence.pipeline.cli import app

    refused = CliRunner().invoke(app, [*options, "--out", str(tmp_path / "s.flac")])
    assert refused.exit_code == 2 and "must end in one of .wav" in " ".join(refused.output.split())
