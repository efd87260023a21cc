"""The `cadence` command line end to end on the shipped checkpoints, and its user errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import soundfile as sf
import torch
from typer.testing import CliRunner

from cadence.core.audio import load
from cadence.pipeline.cli import app, default_pipeline

runner = CliRunner()


def invoke(*args: str):
    return runner.invoke(app, [str(a) for a in args])


def check_audio_file(path: Path, *, min_seconds: float, max_seconds: float) -> torch.Tensor:
    assert path.is_file(), f"{path} was not written"
    info = sf.info(str(path))
    assert info.samplerate == 16000 and info.channels == 1
    seconds = info.frames / info.samplerate
    assert min_seconds <= seconds <= max_seconds, seconds
    audio, _ = load(path)
    assert torch.isfinite(audio).all()
    rms = audio.pow(2).mean().sqrt()
    assert rms > 1e-3, f"{path} is silent (rms {float(rms):.2e})"
    return audio


@pytest.fixture(scope="module")
def utterances(valid_items, corpus):
    return [corpus / item["path"] for item in valid_items]


def test_shipped_pipeline_is_complete():
    spec = json.loads((default_pipeline() / "pipeline.json").read_text())
    assert set(spec["components"]) == {
        "codec",
        "semantic_tokenizer",
        "semantic_lm",
        "soundstorm",
        "naturalspeech2",
        "flowmatching",
        "phoneme_recognizer",
    }
    total = sum(p.stat().st_size for p in default_pipeline().rglob("*") if p.is_file())
    assert total < 40 * 2**20, f"shipped checkpoints take {total / 2**20:.1f} MiB"


def test_generate_batch_of_prompts(tmp_path, utterances):
    out = tmp_path / "gen.wav"
    result = invoke(
        "generate",
        "--prompt",
        utterances[0],
        "--prompt",
        utterances[5],
        "--out",
        out,
        "--seconds",
        1.5,
        "--seed",
        0,
    )
    assert result.exit_code == 0, result.output
    # --seconds is honoured by default: EOS stopping is opt-in (--eos)
    for i in range(2):
        check_audio_file(tmp_path / f"gen-{i}.wav", min_seconds=1.48, max_seconds=1.52)
    assert "real-time factor" in result.output
    assert "shorter than" not in result.output


def test_generate_with_eos_says_when_shorter(tmp_path, utterances):
    out = tmp_path / "eos.wav"
    result = invoke("generate", "--prompt", utterances[2], "--out", out, "--seconds", 2, "--eos")
    assert result.exit_code == 0, result.output
    seconds = sf.info(str(out)).frames / 16000
    assert seconds <= 2.02
    if seconds < 1.95:
        assert "shorter than the 2 s asked" in result.output, result.output


def test_short_notice_names_file_and_reason(capsys):
    from cadence.pipeline import cli

    cli._short_notice(Path("x.wav"), 0.4, 3.0, eos=True)
    cli._short_notice(Path("y.wav"), 2.99, 3.0, eos=True)  # within a frame: silent
    err = capsys.readouterr().err
    assert "x.wav: 0.40 s, shorter than the 3 s asked" in err and "--eos" in err
    assert "y.wav" not in err


def test_generate_is_reproducible_with_a_seed(tmp_path, utterances):
    for name in ("a.wav", "b.wav"):
        result = invoke(
            "generate",
            "--prompt",
            utterances[1],
            "--out",
            tmp_path / name,
            "--seconds",
            1.0,
            "--no-eos",
            "--seed",
            3,
            "--include-prompt",
        )
        assert result.exit_code == 0, result.output
    a, b = load(tmp_path / "a.wav")[0], load(tmp_path / "b.wav")[0]
    prompt = load(utterances[1])[0]
    assert a.shape[-1] == prompt.shape[-1] + 16000
    assert torch.equal(a, b)


@pytest.mark.parametrize("method", ["soundstorm", "flow"])
def test_convert(tmp_path, utterances, method):
    out = tmp_path / f"{method}.wav"
    source = load(utterances[0])[0]
    result = invoke(
        "convert",
        "--source",
        utterances[0],
        "--target-voice",
        utterances[7],
        "--out",
        out,
        "--method",
        method,
        "--steps",
        8,
        "--seed",
        0,
    )
    assert result.exit_code == 0, result.output
    seconds = source.shape[-1] / 16000
    check_audio_file(out, min_seconds=seconds - 0.05, max_seconds=seconds + 0.05)


def test_tts(tmp_path, utterances):
    out = tmp_path / "tts.wav"
    result = invoke(
        "tts",
        "The ship sailed at dawn.",
        "--prompt",
        utterances[2],
        "--out",
        out,
        "--steps",
        8,
        "--seed",
        0,
        "--accent",
        "en-gb-x-rp",
    )
    assert result.exit_code == 0, result.output
    check_audio_file(out, min_seconds=0.3, max_seconds=6.0)


def test_demo_writes_wav_png_and_metrics(tmp_path):
    result = invoke("demo", "--out", tmp_path / "demo")
    assert result.exit_code == 0, result.output
    check_audio_file(tmp_path / "demo" / "continuation.wav", min_seconds=0.02, max_seconds=3.1)
    png = (tmp_path / "demo" / "spectrogram.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
    assert "real_time_factor" in result.output and "per_original" in result.output


def test_the_installed_script_runs(tmp_path, utterances):
    # The console script itself (not the in-process runner): help, and a user error's exit status.
    script = Path(sys.executable).parent / "cadence"
    help_text = subprocess.run([script, "--help"], capture_output=True, text=True, timeout=60)
    assert help_text.returncode == 0 and "generate" in help_text.stdout
    bad = subprocess.run(
        [script, "generate", "--prompt", tmp_path / "missing.wav", "--out", tmp_path / "o.wav"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert bad.returncode == 2
    assert "prompt file not found" in bad.stderr and "Traceback" not in bad.stderr


# -- user errors: a message and exit status 2, never a traceback ---------------------------


def check_user_error(result, *fragments: str) -> None:
    assert result.exit_code == 2, (result.exit_code, result.output)
    text = " ".join(result.output.split())
    assert "Traceback" not in text
    for fragment in fragments:
        assert fragment in text, text


def test_missing_prompt(tmp_path):
    check_user_error(
        invoke("generate", "--prompt", tmp_path / "nope.wav", "--out", tmp_path / "o.wav"),
        "prompt file not found",
    )


def test_corrupt_audio(tmp_path):
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"RIFF\x00\x00\x00\x00WAVEgarbage" * 10)
    check_user_error(
        invoke("tts", "hello", "--prompt", bad, "--out", tmp_path / "o.wav"), "bad.wav"
    )


def test_empty_audio(tmp_path):
    empty = tmp_path / "empty.wav"
    sf.write(str(empty), torch.zeros(0).numpy(), 16000)
    check_user_error(
        invoke("convert", "--source", empty, "--target-voice", empty, "--out", tmp_path / "o.wav"),
        "empty.wav",
    )


def test_wrong_output_format(tmp_path, utterances):
    check_user_error(
        invoke("generate", "--prompt", utterances[0], "--out", tmp_path / "o.mp4"), ".wav"
    )


def test_missing_pipeline(tmp_path, utterances):
    check_user_error(
        invoke(
            "generate",
            "--prompt",
            utterances[0],
            "--out",
            tmp_path / "o.wav",
            "--pipeline",
            tmp_path / "nowhere",
        ),
        "pipeline directory not found",
    )


def test_checkpoint_of_the_wrong_model(tmp_path, utterances, pipeline_copy):
    spec = json.loads((pipeline_copy / "pipeline.json").read_text())
    spec["components"]["soundstorm"] = "codec"
    (pipeline_copy / "pipeline.json").write_text(json.dumps(spec))
    check_user_error(
        invoke(
            "generate",
            "--prompt",
            utterances[0],
            "--out",
            tmp_path / "o.wav",
            "--pipeline",
            pipeline_copy,
        ),
        "soundstorm",
        "ISTFTCodec",  # the shipped codec's class
        "SoundStorm",
    )


def test_incompatible_components(tmp_path, utterances, pipeline_copy):
    config_path = pipeline_copy / "semantic_tokenizer" / "config.json"
    header = json.loads(config_path.read_text())
    header["config"]["kmeans"]["num_clusters"] += 1
    config_path.write_text(json.dumps(header))
    result = invoke(
        "generate",
        "--prompt",
        utterances[0],
        "--out",
        tmp_path / "o.wav",
        "--pipeline",
        pipeline_copy,
    )
    assert result.exit_code == 2 and "Traceback" not in result.output


def test_empty_text(tmp_path, utterances):
    check_user_error(
        invoke("tts", "   ", "--prompt", utterances[0], "--out", tmp_path / "o.wav"), "no text"
    )


def test_unknown_train_stage_and_bad_config(tmp_path):
    job = tmp_path / "job.toml"
    job.write_text('output = "x"\nbogus = 1\n')
    check_user_error(invoke("train", "soundstorm", "--config", job), "unknown keys", "bogus")
    job.write_text('output = "x"\n')
    check_user_error(invoke("train", "vocoder", "--config", job), "unknown stage", "vocoder")
    check_user_error(
        invoke("train", "soundstorm", "--config", tmp_path / "none.toml"), "config file not found"
    )
    job.write_text("output = [\n")
    check_user_error(invoke("train", "soundstorm", "--config", job), "not valid TOML")


def test_unknown_recipe(tmp_path):
    check_user_error(invoke("recipe", "huge", "--out", tmp_path), "unknown recipe")


def test_recipe_never_looks_for_a_corpus_outside_its_output(tmp_path, monkeypatch):
    # The command line must not find a corpus by walking up from the current directory:
    # without --corpus the recipe's own corpus is OUT/corpus (synthesized by the corpus stage).
    monkeypatch.chdir(tmp_path)
    check_user_error(
        invoke("recipe", "toy", "--out", tmp_path / "toy", "--only", "codec"),
        str(tmp_path / "toy" / "corpus"),
        "is not a corpus",
    )


def test_eval_defaults_to_the_held_out_set_shipped_in_the_pipeline(tmp_path, monkeypatch):
    from cadence.pipeline import PipelineSpec, default_pipeline

    held_out = PipelineSpec.read(default_pipeline()).held_out()
    assert held_out.is_relative_to(default_pipeline().resolve())
    from cadence.pipeline.recipe import CORPUS, SHIPPED_PER_SPEAKER

    rows = [json.loads(line) for line in (held_out / "valid.jsonl").read_text().splitlines()]
    # the recipe ships SHIPPED_PER_SPEAKER utterances of each held-out speaker
    assert len({row["speaker"] for row in rows}) == CORPUS["valid_speakers"]
    assert len(rows) == CORPUS["valid_speakers"] * SHIPPED_PER_SPEAKER
    monkeypatch.chdir(tmp_path)  # outside the repository
    result = invoke("eval", "--limit", "1", "--out", tmp_path / "eval.json")
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "eval.json").read_text())["setup"]["utterances"] == 1
