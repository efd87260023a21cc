"""Hostile and careless input (issue 20): never lose a user's file, never run unbounded, never
show a traceback for a user error.

Every command-line case asserts exit status 2, the message, no traceback, and that the input
files are byte for byte what they were. The runaway cases assert a bounded result (refused,
cropped or capped), not a time.
"""

from __future__ import annotations

import errno
import json
import math
import os
import tempfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from cadence.core.audio import load
from cadence.pipeline import (
    PipelineError,
    PipelineSpec,
    SpeechContinuation,
    default_pipeline,
    load_component,
)
from cadence.pipeline.cli import app

runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def check_user_error(result, *fragments: str, inputs=()) -> None:
    """Exit 2, one message holding ``fragments``, no traceback; ``inputs`` = {path: bytes}."""
    assert result.exit_code == 2, (result.exit_code, result.output, result.exception)
    text = " ".join(result.output.split())
    assert "Traceback" not in text
    for fragment in fragments:
        assert fragment in text, text
    for path, data in dict(inputs).items():
        assert path.read_bytes() == data, f"{path} was changed"


@pytest.fixture(scope="module")
def clip_dir(tmp_path_factory, corpus, valid_items) -> Path:
    """Short copies of two held-out utterances (short keeps every run below a second)."""
    root = tmp_path_factory.mktemp("clips")
    for name, item in (("a.wav", valid_items[0]), ("b.wav", valid_items[3])):
        audio, rate = load(corpus / item["path"])
        sf.write(str(root / name), audio[0, : rate // 2].numpy(), rate, subtype="PCM_16")
    return root


@pytest.fixture
def clips(tmp_path, clip_dir) -> tuple[Path, Path]:
    """Writable copies of the two clips in this test's tmp_path."""
    a, b = tmp_path / "a.wav", tmp_path / "b.wav"
    a.write_bytes((clip_dir / "a.wav").read_bytes())
    b.write_bytes((clip_dir / "b.wav").read_bytes())
    return a, b


def snapshot(*paths: Path) -> dict[Path, bytes]:
    return {p: p.read_bytes() for p in paths}


@pytest.fixture
def no_work(monkeypatch):
    """Fail the test if a command gets as far as loading a pipeline."""

    def refuse(*args, **kwargs):
        raise AssertionError("the command started working before refusing its input")

    monkeypatch.setattr(PipelineSpec, "read", refuse)


# -- data loss: an output that is an input ------------------------------------------------


def test_generate_refuses_to_overwrite_its_prompt(clips, no_work):
    a, _ = clips
    before = snapshot(a)
    check_user_error(
        invoke("generate", "--prompt", a, "--out", a), "is also an input", inputs=before
    )
    # the same file by another name: a relative path, a symbolic link, a hard link
    link = a.parent / "link.wav"
    link.symlink_to(a)
    hard = a.parent / "hard.wav"
    os.link(a, hard)
    for other in (link, hard, Path(os.path.relpath(a))):
        check_user_error(
            invoke("generate", "--prompt", a, "--out", other), "is also an input", inputs=before
        )


def test_generate_refuses_a_batch_output_that_is_one_of_its_prompts(clips, no_work):
    a, b = clips
    second = a.parent / "out-1.wav"
    second.write_bytes(b.read_bytes())
    before = snapshot(a, second)
    check_user_error(
        invoke("generate", "--prompt", a, "--prompt", second, "--out", a.parent / "out.wav"),
        "is also an input",
        inputs=before,
    )


@pytest.mark.parametrize("which", ["source", "target"])
def test_convert_refuses_to_overwrite_an_input(clips, no_work, which):
    a, b = clips
    before = snapshot(a, b)
    out = a if which == "source" else b
    check_user_error(
        invoke("convert", "--source", a, "--target-voice", b, "--out", out),
        "is also an input",
        inputs=before,
    )


def test_tts_refuses_to_overwrite_its_prompt(clips, no_work):
    a, _ = clips
    before = snapshot(a)
    check_user_error(
        invoke("tts", "hello", "--prompt", a, "--out", a), "is also an input", inputs=before
    )


def test_an_existing_output_is_replaced_whole_or_kept(clips, monkeypatch):
    a, _ = clips
    out = a.parent / "out.wav"
    out.write_bytes(b"the previous take")

    def broken_write(file, *args, **kwargs):
        Path(file).write_bytes(b"half a fi")  # the temporary file, never the output
        raise sf.LibsndfileError(2, prefix=f"Error opening {file!r}: ")

    monkeypatch.setattr("cadence.core.audio.sf.write", broken_write)
    result = invoke("generate", "--prompt", a, "--out", out, "--seconds", 0.1, "--seed", 0)
    check_user_error(result, "cannot write", "out.wav", "System error.", "writable")
    assert out.read_bytes() == b"the previous take"
    assert sorted(p.name for p in a.parent.iterdir()) == ["a.wav", "b.wav", "out.wav"]


# -- unwritable outputs, found before any work ------------------------------------------


def test_an_output_that_is_a_folder(clips, no_work):
    a, _ = clips
    folder = a.parent / "take.wav"
    folder.mkdir()
    check_user_error(
        invoke("generate", "--prompt", a, "--out", folder), "is a folder", inputs=snapshot(a)
    )


def test_a_read_only_output_file(clips, no_work):
    a, _ = clips
    out = a.parent / "keep.wav"
    out.write_bytes(b"protected")
    out.chmod(0o444)
    check_user_error(invoke("tts", "hi", "--prompt", a, "--out", out), "read-only")
    assert out.read_bytes() == b"protected"


def test_a_parent_that_cannot_be_created(clips, no_work):
    a, _ = clips
    blocker = a.parent / "notes.txt"
    blocker.write_text("a file where a folder would go")
    check_user_error(
        invoke("generate", "--prompt", a, "--out", blocker / "sub" / "o.wav"),
        "cannot be created",
        inputs=snapshot(a, blocker),
    )


def _refuse_writes_in(monkeypatch, folder: Path, code: int) -> None:
    """Make ``folder`` unwritable as the kernel would (root ignores chmod, so simulate)."""
    real = tempfile.mkstemp

    def mkstemp(*args, dir=None, **kwargs):
        if dir is not None and Path(dir).resolve() == folder.resolve():
            raise OSError(code, os.strerror(code), str(dir))
        return real(*args, dir=dir, **kwargs)

    monkeypatch.setattr(tempfile, "mkstemp", mkstemp)


@pytest.mark.parametrize(
    ("code", "message"),
    [(errno.EACCES, "Permission denied"), (errno.EROFS, "Read-only file system")],
)
def test_an_unwritable_folder(clips, no_work, monkeypatch, code, message):
    a, _ = clips
    folder = a.parent / "locked"
    folder.mkdir()
    folder.chmod(0o555)
    if os.geteuid() == 0 or code == errno.EROFS:
        _refuse_writes_in(monkeypatch, folder, code)
    try:
        check_user_error(
            invoke("generate", "--prompt", a, "--out", folder / "o.wav"),
            "not writable",
            message,
            inputs=snapshot(a),
        )
        check_user_error(
            invoke("eval", "--out", folder / "m.json"), "not writable", message, inputs={}
        )
    finally:
        folder.chmod(0o755)
    assert list(folder.iterdir()) == []


def test_tokenize_refuses_to_write_shards_into_its_data(clips, no_work):
    a, _ = clips
    check_user_error(
        invoke("tokenize", a.parent, "--out", a.parent, "--codec", "x"),
        "is also an input",
        inputs=snapshot(a),
    )


# -- options checked at parse time, with their range in --help ---------------------------

GENERATE_ERRORS = [
    (("--seconds", "nan"), "--seconds"),
    (("--seconds", "inf"), "--seconds"),
    (("--seconds", "-inf"), "--seconds"),
    (("--seconds", "1e9"), "0<x<=60"),
    (("--seconds", "0"), "--seconds"),
    (("--steps", "0"), "--steps"),
    (("--steps", "-3"), "--steps"),
    (("--steps", "1000000"), "--steps"),
    (("--temperature", "-1"), "--temperature"),
    (("--temperature", "nan"), "--temperature"),
    (("--top-p", "0"), "--top-p"),
    (("--top-p", "2"), "--top-p"),
    (("--top-p", "nan"), "--top-p"),
    (("--guidance", "-5"), "--guidance"),
    (("--guidance", "nan"), "--guidance"),
    (("--guidance-scale", "inf"), "--guidance-scale"),
    (("--seed", "-1"), "--seed"),
    (("--seed", str(2**70)), "--seed"),
    (("--seconds", "three"), "--seconds"),
]


@pytest.mark.parametrize(("option", "name"), GENERATE_ERRORS)
def test_generate_options_are_checked_before_any_work(clips, no_work, option, name):
    a, _ = clips
    out = a.parent / "o.wav"
    result = invoke("generate", "--prompt", a, "--out", out, *option)
    check_user_error(result, "Invalid value", name, inputs=snapshot(a))
    assert not out.exists()


@pytest.mark.parametrize(
    "option",
    [
        ("--method", "flow", "--steps", "0"),
        ("--method", "diffusion"),
        ("--steps", "-3"),
        ("--guidance", "nan"),
        ("--guidance-scale", "-1"),
    ],
)
def test_convert_options_are_checked_before_any_work(clips, no_work, option):
    a, b = clips
    result = invoke(
        "convert", "--source", a, "--target-voice", b, "--out", a.parent / "o.wav", *option
    )
    check_user_error(result, "Invalid value", option[-2], inputs=snapshot(a, b))


@pytest.mark.parametrize(
    "option", [("--steps", "0"), ("--steps", "-3"), ("--guidance", "nan"), ("--guidance", "inf")]
)
def test_tts_options_are_checked_before_any_work(clips, no_work, option):
    a, _ = clips
    result = invoke("tts", "hello", "--prompt", a, "--out", a.parent / "o.wav", *option)
    check_user_error(result, "Invalid value", option[0], inputs=snapshot(a))


@pytest.mark.parametrize(
    "args",
    [
        ("recipe", "toy", "--steps-scale", "0"),
        ("recipe", "toy", "--steps-scale", "nan"),
        ("recipe", "toy", "--workers", "0"),
        ("eval", "--limit", "0"),
        ("eval", "--prompt-seconds", "nan"),
        ("eval", "--prompt-seconds", "-1"),
        ("demo", "--seconds", "1e9"),
        ("demo", "--prompt-seconds", "inf"),
        ("tokenize", "data", "--out", "x", "--batch-size", "0"),
        ("tokenize", "data", "--out", "x", "--min-seconds", "nan"),
    ],
)
def test_other_commands_check_their_options(no_work, tmp_path, monkeypatch, args):
    monkeypatch.chdir(tmp_path)
    check_user_error(invoke(*args), "Invalid value")
    assert list(tmp_path.iterdir()) == []


def test_help_shows_each_range_and_the_guidance_alias():
    text = runner.invoke(app, ["generate", "--help"], env={"COLUMNS": "200"}).output
    for shown in ("[0<x<=60]", "[1<=x<=1000]", "[0<x<=1]", "(0 = greedy) [0<=x]"):
        assert shown in text, shown
    result = runner.invoke(app, ["convert", "--help"], env={"COLUMNS": "200"})
    assert "--guidance-scale,--guidance" in result.output


# -- unbounded work: capped, cropped ----------------------------------------------------


def test_a_continuation_is_capped():
    pipe = SpeechContinuation.from_pretrained(default_pipeline())
    with pytest.raises(PipelineError, match="at most 60"):
        pipe.generate(torch.zeros(1, 16000), sample_rate=16000, seconds=1e9)


def test_a_ten_minute_prompt_is_cropped_before_it_is_tokenized(monkeypatch):
    pipe = SpeechContinuation.from_pretrained(default_pipeline())
    seen: list[int] = []
    for model, name in ((pipe.tokenizer, "tokenize"), (pipe.codec, "encode")):
        real = getattr(model, name)

        def record(audio, lengths=None, real=real):
            seen.append(audio.shape[-1])
            return real(audio, lengths)

        monkeypatch.setattr(model, name, record)
    ten_minutes = 0.1 * torch.randn(1, 600 * 16000, generator=torch.Generator().manual_seed(0))
    stages: list[str] = []
    out = pipe.generate(
        [ten_minutes, ten_minutes[:, :16000]],
        sample_rate=16000,
        seconds=0.2,
        seed=0,
        progress=stages.append,
    )
    limit = math.ceil(pipe.prompt_seconds * 16000)
    assert seen and max(seen) <= limit and pipe.prompt_seconds == 10.0
    assert out.prompt_lengths.tolist() == [600 * 16000, 16000]  # the prompt itself is kept
    assert stages[0].startswith("tokenizing") and any(s.startswith("SoundStorm") for s in stages)


def test_the_command_line_says_that_a_long_prompt_is_cropped(tmp_path, clip_dir):
    audio, rate = load(clip_dir / "a.wav")
    long = tmp_path / "long.wav"
    sf.write(str(long), audio.repeat(1, 30)[0].numpy(), rate)  # 15 s
    before = snapshot(long)
    result = invoke("generate", "--prompt", long, "--out", tmp_path / "o.wav", "--seconds", 0.1)
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "long.wav is 15.0 s long; the models use its last 10 s" in text
    assert "tokenizing the prompt" in text and "SoundStorm" in text  # progress
    assert long.read_bytes() == before[long]


def test_a_long_voice_recording_is_cropped(tmp_path, clip_dir, monkeypatch):
    from cadence.pipeline.synthesis import VOICE_PROMPT_SECONDS, TextToSpeech

    audio, rate = load(clip_dir / "b.wav")
    long = tmp_path / "voice.wav"
    sf.write(str(long), audio.repeat(1, 24)[0].numpy(), rate)  # 12 s
    seen = []
    real = TextToSpeech.from_pretrained

    def spying(directory, **kwargs):
        model = real(directory, **kwargs)
        encode = model.codec.encode_latents
        model.codec.encode_latents = lambda a, lengths=None: (seen.append(a.shape[-1]), encode(a))[
            1
        ]
        return model

    monkeypatch.setattr(TextToSpeech, "from_pretrained", spying)
    result = invoke("tts", "Hello.", "--prompt", long, "--out", tmp_path / "o.wav", "--steps", 2)
    assert result.exit_code == 0, result.output
    assert "its first 10 s" in " ".join(result.output.split())
    assert seen == [VOICE_PROMPT_SECONDS * rate]


def test_tts_text_is_bounded(clips, no_work):
    a, _ = clips
    check_user_error(
        invoke("tts", "word " * 1000, "--prompt", a, "--out", a.parent / "o.wav"),
        "at most 1000",
    )


# -- corrupt pipeline files and checkpoints ---------------------------------------------


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"\x89PNG\r\n\x1a\n\x00\x00binary", "not valid JSON"),
        (b"[1, 2, 3]", "must hold a JSON object, not a list"),
        (b'"pipeline"', "must hold a JSON object"),
        (b'{"format": "cadence-pipeline", "version": "abc", "components": {"codec": "c"}}', "version must be a whole number"),
        (b'{"format": "cadence-pipeline", "version": 1.5, "components": {"codec": "c"}}', "version must be a whole number"),
        (b'{"format": "cadence-pipeline", "version": 1, "components": {"codec": 5}}', "must name checkpoint directories"),
        (b'{"format": "cadence-pipeline", "version": 1, "components": ["codec"]}', "names no components"),
        (b'{"format": "cadence-pipeline", "version": 1, "components": {"codec": "c"}, "prompt": 3}', "prompt must be a path"),
    ],
)  # fmt: skip
def test_corrupt_pipeline_json(tmp_path, clips, content, message):
    (tmp_path / "pipe").mkdir()
    (tmp_path / "pipe" / "pipeline.json").write_bytes(content)
    with pytest.raises(PipelineError, match=message):
        PipelineSpec.read(tmp_path / "pipe")
    a, _ = clips
    result = invoke(
        "generate", "--prompt", a, "--out", tmp_path / "o.wav", "--pipeline", tmp_path / "pipe"
    )
    check_user_error(result, message, inputs=snapshot(a))


def test_a_pipeline_option_that_is_a_file(clips):
    a, _ = clips
    result = invoke(
        "generate",
        "--prompt",
        a,
        "--out",
        a.parent / "o.wav",
        "-p",
        default_pipeline() / "pipeline.json",
    )
    check_user_error(result, "is a file", "give the directory that holds it", inputs=snapshot(a))


def _edit_component(pipeline: Path, role: str, edit) -> Path:
    path = pipeline / role / "config.json"
    header = json.loads(path.read_text())
    edit(header)
    path.write_text(json.dumps(header))
    return path


@pytest.mark.parametrize(
    ("role", "edit", "message"),
    [
        ("codec", lambda h: h["config"].update(strides=[]), "strides"),
        ("codec", lambda h: h["config"].update(n_filters=-16), "n_filters"),
        ("codec", lambda h: h.update(format_version="1"), "format_version"),
        ("codec", lambda h: h.update({"class": "cadence.codec.seanet"}), "not a model class"),
        ("soundstorm", lambda h: h["config"].update(codebook_size=100_000_000_000), "does not describe its weights"),
        ("semantic_lm", lambda h: h["config"].update(codebook_size=100_000_000_000), "does not describe its weights"),
        ("codec", lambda h: h["config"].update(decoder_dim=100_000_000_000), "too large"),
        ("semantic_lm", lambda h: h["config"].update(dim=100_000_000_000), "too large"),
        ("soundstorm", lambda h: h.update({"class": "cadence.audiolm.SemanticTransformer"}), "not a valid SemanticTransformerConfig"),
    ],
)  # fmt: skip
def test_tampered_component_configs(pipeline_copy, clips, role, edit, message):
    _edit_component(pipeline_copy, role, edit)
    with pytest.raises(PipelineError, match=message):
        load_component(pipeline_copy / role, role)
    a, _ = clips
    result = invoke(
        "generate", "--prompt", a, "--out", a.parent / "o.wav", "--pipeline", pipeline_copy
    )
    # the role and the checkpoint it comes from are named
    check_user_error(result, message, f"{role}:", str(pipeline_copy / role), inputs=snapshot(a))


def test_load_pretrained_with_a_class_on_a_config_naming_a_non_class(pipeline_copy):
    from cadence.codec import SoundStream
    from cadence.core.checkpoint import CheckpointError, load_pretrained

    _edit_component(pipeline_copy, "codec", lambda h: h.update({"class": "cadence.codec.seanet"}))
    with pytest.raises(CheckpointError, match=r"holds a cadence\.codec\.seanet checkpoint"):
        load_pretrained(pipeline_copy / "codec", SoundStream)


def test_a_train_config_error_starts_with_its_table(tmp_path):
    job = tmp_path / "job.toml"
    job.write_text('output = "x"\ncorpus = "c"\n[model]\nsample_rate = "fast"\n')
    check_user_error(
        invoke("train", "codec", "--config", job),
        "error: [model] does not make a valid SoundStreamConfig",
    )


# -- accepted silently before: truncated files, unreadable text ------------------------


def _truncated(path: Path, seconds: float = 1.0) -> Path:
    audio = 0.1 * np.sin(np.arange(int(seconds * 16000)) * 0.05).astype("float32")
    sf.write(str(path), audio, 16000, subtype="PCM_16")
    path.write_bytes(path.read_bytes()[: 44 + int(seconds * 16000)])  # half the samples
    return path


def test_a_truncated_prompt_is_a_warning(tmp_path):
    cut = _truncated(tmp_path / "cut.wav")
    before = snapshot(cut)
    result = invoke("generate", "--prompt", cut, "--out", tmp_path / "o.wav", "--seconds", 0.1)
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "warning:" in text and "cut.wav is truncated" in text and "1.00 s" in text
    assert "Traceback" not in text and cut.read_bytes() == before[cut]


def test_tokenize_skips_truncated_and_too_short_files(tmp_path, clip_dir):
    data = tmp_path / "data"
    data.mkdir()
    (data / "good.wav").write_bytes((clip_dir / "a.wav").read_bytes())
    _truncated(data / "cut.wav")
    sf.write(str(data / "tiny.wav"), np.full(28, 0.1, dtype="float32"), 16000)
    shipped = default_pipeline()
    result = invoke(
        "tokenize", data, "--out", tmp_path / "shards",
        "--codec", shipped / "codec", "--tokenizer", shipped / "semantic_tokenizer",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    manifest = json.loads((tmp_path / "shards" / "manifest.json").read_text())
    assert set(manifest["skipped"]) == {"cut.wav", "tiny.wav"}
    assert "truncated" in manifest["skipped"]["cut.wav"]
    assert "too short" in manifest["skipped"]["tiny.wav"]
    from cadence.core.data import ShardReader

    assert ShardReader(tmp_path / "shards").ids == ["good.wav"]


def test_japanese_text_for_an_english_model_is_a_warning_naming_the_characters(clips):
    a, _ = clips
    out = a.parent / "o.wav"
    result = invoke("tts", "こんにちは", "--prompt", a, "--out", out, "--steps", 2, "--seed", 0)
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "warning:" in text and "cannot read こ ん に ち は" in text
    assert out.is_file()


# -- property test: no option value gives a traceback ------------------------------------

FLOAT_TEXT = st.one_of(
    st.sampled_from(["nan", "-nan", "inf", "-inf", "1e9", "-1", "0", "-0", "1e-300", "abc", ""]),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.text(max_size=4),
)
INT_TEXT = st.one_of(
    st.sampled_from(["0", "-3", "1000001", str(2**70), "1.5", "x"]),
    st.integers(-(2**40), 2**40).map(str),
)
# Values that pass validation are kept small, so that a run that does happen stays short.
SMALL_SECONDS = st.sampled_from(["0.02", "0.1"])
SMALL_STEPS = st.sampled_from(["1", "2"])


def _no_traceback(result) -> None:
    assert result.exit_code in (0, 2), (result.exit_code, result.output, result.exception)
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


# A handful of examples by default (most fail validation at once); CADENCE_PROPERTY_EXAMPLES=200
# searches harder.
PROPERTY = settings(
    max_examples=int(os.environ.get("CADENCE_PROPERTY_EXAMPLES", "12")),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    database=None,
)


@PROPERTY
@given(
    seconds=st.one_of(FLOAT_TEXT, SMALL_SECONDS),
    temperature=st.one_of(FLOAT_TEXT, st.just("0.9")),
    top_p=st.one_of(FLOAT_TEXT, st.just("0.5")),
    steps=st.one_of(INT_TEXT, SMALL_STEPS),
    guidance=st.one_of(FLOAT_TEXT, st.just("1")),
)
def test_generate_never_shows_a_traceback(clip_dir, seconds, temperature, top_p, steps, guidance):
    a = clip_dir / "a.wav"
    before = a.read_bytes()
    with tempfile.TemporaryDirectory() as tmp:
        result = invoke(
            "generate", "--prompt", a, "--out", Path(tmp) / "o.wav", "--seed", 0,
            f"--seconds={seconds}", f"--temperature={temperature}", f"--top-p={top_p}",
            f"--steps={steps}", f"--guidance-scale={guidance}",
        )  # fmt: skip
    _no_traceback(result)
    assert a.read_bytes() == before


@PROPERTY
@given(
    method=st.one_of(st.sampled_from(["soundstorm", "flow"]), st.text(max_size=6)),
    steps=st.one_of(INT_TEXT, SMALL_STEPS),
    guidance=st.one_of(FLOAT_TEXT, st.just("1")),
)
def test_convert_never_shows_a_traceback(clip_dir, method, steps, guidance):
    a, b = clip_dir / "a.wav", clip_dir / "b.wav"
    before = (a.read_bytes(), b.read_bytes())
    with tempfile.TemporaryDirectory() as tmp:
        result = invoke(
            "convert", "--source", a, "--target-voice", b, "--out", Path(tmp) / "o.wav",
            f"--method={method}", f"--steps={steps}", f"--guidance={guidance}", "--seed", 0,
        )  # fmt: skip
    _no_traceback(result)
    assert (a.read_bytes(), b.read_bytes()) == before


@PROPERTY
@given(
    text=st.one_of(st.text(max_size=12), st.just("Good morning.")),
    steps=st.one_of(INT_TEXT, SMALL_STEPS),
    guidance=st.one_of(FLOAT_TEXT, st.just("1.5")),
)
def test_tts_never_shows_a_traceback(clip_dir, text, steps, guidance):
    a = clip_dir / "a.wav"
    before = a.read_bytes()
    with tempfile.TemporaryDirectory() as tmp:
        result = invoke(
            "tts", f"{text}", "--prompt", a, "--out", Path(tmp) / "o.wav",
            f"--steps={steps}", f"--guidance={guidance}", "--seed", 0,
        )  # fmt: skip
    _no_traceback(result)
    assert a.read_bytes() == before


def test_the_command_lines_bounds_are_the_pipelines():
    # The command line does not import the model packages to build its options, so it
    # repeats these numbers; they must agree.
    from cadence.pipeline import cli, continuation, synthesis

    assert cli.MAX_SECONDS == continuation.MAX_SECONDS
    assert synthesis.VOICE_PROMPT_SECONDS == 10.0  # "its first 10 s" in --help
    assert continuation.SOUNDSTORM_PROMPT_SECONDS == 10.0  # "the last 10 s" in --help
