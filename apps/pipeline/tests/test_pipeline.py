"""Pipeline directories and the Python API over the shipped checkpoints."""

from __future__ import annotations

import json

import pytest
import torch

from cadence.audiolm import SamplingOptions
from cadence.core.audio import load
from cadence.pipeline import (
    PipelineError,
    PipelineSpec,
    SpeechContinuation,
    TextToSpeech,
    VoiceConversion,
    default_pipeline,
    load_component,
    write_pipeline,
)
from cadence.soundstorm import SoundStorm

NO_EOS = SamplingOptions(temperature=0.9, top_p=0.95, allow_eos=False)


@pytest.fixture(scope="module")
def pipe():
    return SpeechContinuation.from_pretrained(default_pipeline())


@pytest.fixture(scope="module")
def prompts(valid_items, corpus):
    return [load(corpus / item["path"])[0] for item in valid_items[:3]]


def test_spec_round_trip(tmp_path):
    write_pipeline(
        tmp_path, {"codec": "../elsewhere/codec", "soundstorm": "ss"}, prompt="p.wav", note="x"
    )
    spec = PipelineSpec.read(tmp_path)
    assert spec.path("codec") == (tmp_path.parent / "elsewhere" / "codec").resolve()
    assert spec.prompt == (tmp_path / "p.wav").resolve() and spec.extra == {"note": "x"}
    with pytest.raises(PipelineError, match="no 'semantic_lm' component"):
        spec.path("semantic_lm")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "has no pipeline.json"),
        ("{", "not valid JSON"),
        ('{"format": "other"}', "not a Cadence pipeline"),
        ('{"format": "cadence-pipeline", "version": 1, "components": {}}', "names no components"),
        (
            '{"format": "cadence-pipeline", "version": 1, "components": {"vocoder": "v"}}',
            "unknown components",
        ),
        ('{"format": "cadence-pipeline", "version": 99, "components": {"codec": "c"}}', "upgrade"),
    ],
)
def test_spec_errors(tmp_path, content, message):
    if content is not None:
        (tmp_path / "pipeline.json").write_text(content)
    with pytest.raises(PipelineError, match=message):
        PipelineSpec.read(tmp_path)


def test_load_component_refuses_another_model():
    with pytest.raises(PipelineError, match="must be a SoundStorm"):
        load_component(default_pipeline() / "codec", "soundstorm", SoundStorm)
    with pytest.raises(PipelineError, match="checkpoint not found"):
        load_component(default_pipeline() / "nothing", "soundstorm", SoundStorm)


def test_continuation_of_prompts_of_different_lengths(pipe, prompts):
    a, b = prompts[0][:, :24000], prompts[1][:, :17000]
    out = pipe.generate([a, b], sample_rate=16000, seconds=1.0, sampling=NO_EOS, seed=0)
    assert out.audio.shape == (2, 1, 16000) and out.lengths.tolist() == [16000, 16000]
    assert torch.isfinite(out.audio).all() and out.audio.abs().amax(-1).min() > 1e-3
    assert out.prompt_lengths.tolist() == [24000, 17000]
    assert out.codes.shape == (2, 50, pipe.codec.num_quantizers)


def test_continuation_resamples_and_downmixes(pipe, prompts):
    stereo_24k = torch.nn.functional.interpolate(prompts[0][None], scale_factor=1.5, mode="linear")[
        0
    ]
    stereo_24k = stereo_24k.repeat(2, 1)
    out = pipe.generate(stereo_24k, sample_rate=24000, seconds=0.5, sampling=NO_EOS, seed=0)
    assert out.audio.shape == (1, 1, 8000)


def test_continuation_beyond_the_trained_context(pipe, prompts):
    seconds = pipe.semantic_lm.config.max_frames / pipe.tokenizer.frame_rate + 1.0
    out = pipe.generate(
        prompts[0][:, :16000], sample_rate=16000, seconds=seconds, sampling=NO_EOS, seed=0
    )
    assert int(out.lengths[0]) == round(seconds * 50) * 320


def test_continuation_input_errors(pipe, prompts):
    with pytest.raises(PipelineError, match="shorter than"):
        pipe.generate(prompts[0][:, :100], sample_rate=16000)
    with pytest.raises(PipelineError, match="seconds must be > 0"):
        pipe.generate(prompts[0], sample_rate=16000, seconds=0)
    with pytest.raises(Exception, match=r"NaN|non-finite|finite"):
        pipe.generate(torch.full((1, 16000), float("nan")), sample_rate=16000)


def test_soundstorm_is_guided_unless_told_otherwise(pipe, prompts):
    from cadence.pipeline.guidance import FLOW_GUIDANCE, SOUNDSTORM_GUIDANCE

    assert SOUNDSTORM_GUIDANCE != 1.0
    prompt = prompts[0][:, :16000]
    kwargs = dict(sample_rate=16000, seconds=0.4, sampling=NO_EOS, seed=0)
    default = pipe.generate(prompt, **kwargs).codes
    assert torch.equal(default, pipe.generate(prompt, guidance_scale=SOUNDSTORM_GUIDANCE, **kwargs).codes)  # fmt: skip
    assert not torch.equal(default, pipe.generate(prompt, guidance_scale=1.0, **kwargs).codes)
    source, target = prompts[1][:, :8000], prompts[2]
    for method, guidance in (("soundstorm", SOUNDSTORM_GUIDANCE), ("flow", FLOW_GUIDANCE)):
        vc = VoiceConversion.from_pretrained(default_pipeline(), method=method)
        assert vc.default_guidance == guidance
        same = dict(sample_rate=16000, steps=2, seed=0)
        assert torch.equal(vc.convert(source, target, **same), vc.convert(source, target, guidance_scale=guidance, **same))  # fmt: skip


def test_the_pipelines_guide_soundstorm_on_its_coarsest_levels(pipe, prompts, monkeypatch):
    from cadence.pipeline.guidance import SOUNDSTORM_GUIDED_LEVELS, soundstorm_scales

    q = pipe.soundstorm.config.num_quantizers
    guided = SOUNDSTORM_GUIDED_LEVELS
    assert soundstorm_scales(3.0, q) == (3.0,) * guided + (1.0,) * (q - guided)
    assert soundstorm_scales(3.0, 1) == (3.0,)
    seen = []
    generate = pipe.soundstorm.generate

    def spy(*args, **kwargs):
        seen.append(kwargs["guidance_scale"])
        return generate(*args, **kwargs)

    monkeypatch.setattr(pipe.soundstorm, "generate", spy)
    prompt = prompts[0][:, :16000]
    pipe.generate(prompt, sample_rate=16000, seconds=0.4, sampling=NO_EOS, guidance_scale=3.0)
    chunks = pipe.stream(prompt, sample_rate=16000, seconds=0.4, chunk_seconds=0.2, left_context_seconds=0.4, sampling=NO_EOS, iterations=(2,) + (1,) * (q - 1), guidance_scale=3.0)  # fmt: skip
    list(chunks)
    assert seen and all(scales == soundstorm_scales(3.0, q) for scales in seen), seen


def test_incompatible_components_are_named(pipe):
    small = SoundStorm(pipe.soundstorm.config.replace(codebook_size=pipe.codec.codebook_size // 2))
    with pytest.raises(PipelineError, match=r"soundstorm models .* codes, the codec makes"):
        SpeechContinuation(pipe.codec, pipe.tokenizer, pipe.semantic_lm, small)


def test_voice_conversion_and_tts_objects(prompts):
    source, target = prompts[0], prompts[2]
    for method in ("soundstorm", "flow"):
        vc = VoiceConversion.from_pretrained(default_pipeline(), method=method)
        audio = vc.convert(source, target, sample_rate=16000, steps=4, seed=0)
        assert abs(audio.shape[-1] - source.shape[-1]) <= 320 and torch.isfinite(audio).all()
    tts = TextToSpeech.from_pretrained(default_pipeline())
    audio = tts.synthesize("Good morning.", target, sample_rate=16000, steps=4, seed=0)
    assert audio.ndim == 2 and audio.shape[-1] > 1600
    british = tts.synthesize(
        "Good morning.", target, sample_rate=16000, steps=4, seed=0, accent="en-gb-x-rp"
    )
    assert british.ndim == 2 and british.shape[-1] > 1600
    with pytest.raises(PipelineError, match=r"accent 'xx-nowhere'.*no voice"):
        tts.synthesize("Good morning.", target, sample_rate=16000, steps=4, accent="xx-nowhere")


def test_evaluation_reads_each_transcript_in_its_speakers_accent(prompts):
    from cadence.pipeline.evaluation import EvalSet, Listener, evaluate_tts

    data = EvalSet.read(
        default_pipeline() / "held_out", 16000, 1, limit=6, prompt_seconds=3.0, seed=0
    )
    asked = []

    class RecordingTTS:
        def synthesize(self, text, prompt, *, sample_rate, seed, accent=None):
            asked.append(accent)
            return torch.zeros(1, 1600)

    listener = Listener(None, data.references, data.sample_rate)
    evaluate_tts(data, RecordingTTS(), listener, lambda items, _: items)
    assert asked == [item["voice"] for item in data.items]
    assert len(set(asked)) > 1  # the held-out speakers have more than one accent


def test_evaluation_compares_the_generated_part_and_the_real_continuation(pipe):
    from cadence.pipeline.evaluation import (
        EvalSet,
        Listener,
        evaluate_codec,
        evaluate_continuation,
        evaluate_soundstorm,
    )

    data = EvalSet.read(default_pipeline() / "held_out", 16000, 1, limit=2, prompt_seconds=1.0, seed=0)  # fmt: skip
    pairs: list[tuple[int, int]] = []

    class Lengths:  # a speaker encoder that records the lengths of the clips it compares
        def embed(self, clips, *, sample_rate):
            pairs.append(tuple(c.shape[-1] for c in clips))
            return torch.ones(len(clips), 3)

    bar = lambda items, _: items  # noqa: E731
    listener = Listener(None, data.references, data.sample_rate, speaker=Lengths())
    _, codes = evaluate_codec(data, pipe.codec, listener, bar)
    semantic = [pipe.tokenizer.tokenize(a[None])[0] for a in data.audios]
    pairs.clear()
    storm = evaluate_soundstorm(data, pipe.soundstorm, pipe.codec, pipe.tokenizer, codes, semantic, listener, bar)  # fmt: skip
    assert storm["similarity_generated_part"] == pytest.approx(1.0)
    hop = pipe.codec.hop_length
    for i, audio in enumerate(data.audios):
        n = audio.shape[-1]
        # the whole utterance with its resynthesized prompt, then the generated frames alone
        assert pairs[2 * i] == (n, n) and pairs[2 * i + 1] == (n - 50 * hop,) * 2
    pairs.clear()
    cont = evaluate_continuation(data, pipe, listener, bar, seconds=0.5)
    assert cont["similarity_of_the_original"] == pytest.approx(1.0)
    for i in range(len(data.audios)):
        # the continuation against its 1 s prompt, then the speaker's real next 0.5 s
        assert pairs[2 * i] == (8000, 16000) and pairs[2 * i + 1] == (8000, 16000)


def test_shipped_evaluation_is_recorded():
    report = json.loads((default_pipeline() / "eval.json").read_text())
    assert report["setup"]["utterances"] >= 4
    assert {"per_original", "per_codec", "per_soundstorm", "per_naturalspeech2"} <= set(
        report["intelligibility"]
    )
