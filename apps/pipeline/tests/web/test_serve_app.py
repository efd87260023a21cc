"""``cadence serve``: the app's checks read as the command line's, and it generates what is asked."""

from __future__ import annotations

import socket
import sys
import time

import pytest
import torch
from typer.testing import CliRunner

from cadence.core.audio import load, save
from cadence.pipeline import PipelineError, PipelineSpec, cli, default_pipeline
from cadence.pipeline.serve import DEFAULT_HOST, Studio, build_app, launch


@pytest.fixture(scope="module")
def studio(tmp_path_factory) -> Studio:
    return Studio(default_pipeline(), tmp_path_factory.mktemp("served"))


@pytest.fixture(scope="module")
def prompt(tmp_path_factory):
    """Two seconds of a held-out utterance (a short prompt keeps the generation quick)."""
    spec = PipelineSpec.read(default_pipeline())
    audio, rate = load(spec.prompt)
    path = tmp_path_factory.mktemp("prompt") / "prompt.wav"
    save(path, audio[:, : 2 * rate], rate)
    return path


def _cli_error(*args: str) -> str:
    result = CliRunner().invoke(cli.app, list(args))
    assert result.exit_code == 2, result.output
    return " ".join(result.output.split())  # rich wraps long lines


def test_bad_numbers_and_text_are_refused_with_the_command_lines_messages(studio, prompt, tmp_path):
    out = str(tmp_path / "o.wav")
    with pytest.raises(PipelineError, match="prompt: upload or record a clip first"):
        studio.continuation(None)
    with pytest.raises(PipelineError) as seconds:
        studio.continuation(str(prompt), seconds=0)
    problem = cli.range_problem(0, 0, cli.MAX_SECONDS, above=True)
    assert problem and str(seconds.value) == f"seconds: {problem}"
    assert problem in _cli_error(
        "generate", "--prompt", str(prompt), "--out", out, "--seconds", "0"
    )
    with pytest.raises(PipelineError, match=r"guidance: -1 is not in the range 0<=x\."):
        studio.conversion(str(prompt), str(prompt), guidance=-1)
    with pytest.raises(PipelineError, match="steps: 1001 is not in the range"):
        studio.tts("Hello.", str(prompt), steps=cli.MAX_STEPS + 1)
    text = "a" * (cli.MAX_TEXT_CHARACTERS + 1)
    with pytest.raises(PipelineError) as long_text:
        studio.tts(text, str(prompt))
    assert str(long_text.value) in _cli_error("tts", text, "--prompt", str(prompt), "--out", out)


def test_tts_reads_in_the_chosen_accent_and_names_an_unknown_one(studio, prompt):
    with pytest.raises(PipelineError, match="accent 'xx-nowhere'"):
        studio.tts("The ship sailed at dawn.", str(prompt), steps=2, accent="xx-nowhere")
    text, voice = "The ship sailed at dawn.", str(prompt)
    default = load(studio.tts(text, voice, accent="", steps=2, seed=0).audio)[0]
    other = load(studio.tts(text, voice, accent=" en-gb-scotland ", steps=2, seed=0).audio)[0]
    # another accent reads other phonemes: other durations, so another length or other samples
    assert default.shape != other.shape or not torch.allclose(default, other)


def test_a_continuation_has_the_asked_length_and_a_long_prompt_is_noticed(studio, tmp_path):
    spec = PipelineSpec.read(default_pipeline())
    audio, rate = load(spec.prompt)
    pipe = studio._model("continuation")
    repeats = int(pipe.prompt_seconds * rate // audio.shape[-1]) + 1
    long_prompt = tmp_path / "long.wav"
    save(long_prompt, audio.repeat(1, repeats), rate)
    out = studio.continuation(str(long_prompt), seconds=0.5, steps=1, seed=0)
    got, got_rate = load(out.audio)
    assert got.shape[-1] == pytest.approx(0.5 * got_rate, abs=1) and out.seconds == pytest.approx(
        0.5
    )
    expected = cli.crop_message(
        "the prompt", audio.repeat(1, repeats), rate, pipe.prompt_seconds, "last"
    )
    assert expected and out.notices == (expected,)
    assert out.spectrogram.stat().st_size > 1000


def test_serve_without_gradio_names_the_extra_to_install(studio, monkeypatch):
    monkeypatch.setitem(sys.modules, "gradio", None)  # import gradio now raises ImportError
    with pytest.raises(PipelineError, match=r"cadence-pipeline\[serve\]"):
        build_app(studio)
    result = CliRunner().invoke(cli.app, ["serve", "--port", "7999"])
    assert result.exit_code == 2 and "cadence-pipeline[serve]" in result.output


def test_serve_binds_to_this_machine_by_default():
    result = CliRunner().invoke(cli.app, ["serve", "--help"])
    assert result.exit_code == 0 and "127.0.0.1" in result.output
    assert DEFAULT_HOST == "127.0.0.1"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def served(studio):
    pytest.importorskip("gradio", reason="cadence serve needs the `serve` extra (gradio)")
    app = build_app(studio)
    url = launch(app, studio, port=_free_port(), block=False)
    yield url
    app.close()


def _wait(browser, condition, timeout: float, what: str):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = browser.execute_script(condition)
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")


def _click(browser, selector: str) -> None:
    # A script click: Gradio's layout still moves while it renders, which intercepts a
    # pointer click aimed at where the button was.
    from selenium.webdriver.common.by import By

    browser.execute_script("arguments[0].click()", browser.find_element(By.CSS_SELECTOR, selector))


def _set_number(browser, selector: str, value: str) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    field = browser.find_element(By.CSS_SELECTOR, selector)
    field.send_keys(Keys.CONTROL, "a")
    field.send_keys(value, Keys.TAB)


def test_a_generation_through_the_app_returns_audio_of_the_asked_length(
    served, prompt, browser, console_errors, screenshot
):
    from selenium.webdriver.common.by import By

    console_errors(browser)
    browser.get(served)
    _wait(browser, "return document.querySelector('#continuation-run')", 30, "the app")
    # A run without a prompt shows the command line's message.
    _click(browser, "#continuation-run")
    _wait(browser, "return document.body.innerText.includes('upload or record a clip first')", 120,
          "the missing-prompt message")  # fmt: skip
    browser.find_element(By.CSS_SELECTOR, "#continuation-prompt input[type=file]").send_keys(
        str(prompt)
    )
    _wait(browser, "return document.querySelector('#continuation-prompt audio, #continuation-prompt "
          "[data-testid=waveform-controls]')", 30, "the uploaded prompt")  # fmt: skip
    _set_number(browser, "#continuation-seconds input[type=number]", "1.5")
    _set_number(browser, "#continuation-steps input[type=number]", "2")
    _click(browser, "#continuation-run")
    _wait(browser, "const t = document.querySelector('#continuation-result textarea, "
          "#continuation-result input'); return t && t.value.includes(' s')", 300,
          "the generated audio")  # fmt: skip
    result = browser.find_element(
        By.CSS_SELECTOR, "#continuation-result textarea, #continuation-result input"
    )
    assert result.get_attribute("value").startswith("1.50 s")
    # The player's download link (Gradio's waveform player keeps its <audio> out of the page).
    src = _wait(browser, "const a = document.querySelector('#continuation-audio a[download], "
                "#continuation-audio audio'); return a && (a.href || a.src)", 60,
                "the output player")  # fmt: skip
    seconds = browser.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "fetch(arguments[0]).then(r => r.arrayBuffer())"
        ".then(b => new OfflineAudioContext(1, 1, 16000).decodeAudioData(b))"
        ".then(buf => done(buf.duration), e => done(String(e)));",
        src,
    )
    assert seconds == pytest.approx(1.5, abs=0.02), seconds
    image = browser.execute_script(
        "const i = document.querySelector('#continuation-spectrogram img'); return i && i.naturalWidth"
    )
    assert image and image > 100
    shot = screenshot(browser, "serve-app")
    assert shot.stat().st_size > 10_000
    errors = [e for e in console_errors(browser) if "upload or record" not in e["message"]]
    assert errors == []
