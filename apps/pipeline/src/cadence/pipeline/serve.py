"""``cadence serve``: a local web app (Gradio) for continuation, voice conversion and TTS.

Gradio is optional (``pip install "cadence-pipeline[serve]"``) and imported only when the app
is built. :class:`Studio` does the work and checks the inputs with the command line's own
bounds and messages (``cli.range_problem``, ``cli.crop_message``, ``cli.check_text``,
``cli.user_message``), so a bad input reads the same in the browser as in a terminal;
:func:`build_app` lays it out in three tabs. The app binds to 127.0.0.1 unless told otherwise,
and needs no network: the theme uses the system's fonts, not Google Fonts.
"""

# c channels | t samples

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from cadence.core.audio import load, save

from . import cli
from .components import PipelineError
from .guidance import FLOW_GUIDANCE, SOUNDSTORM_GUIDANCE
from .pipeline import default_pipeline
from .plots import save_spectrogram_png
from .recipe import CORPUS

__all__ = ["DEFAULT_HOST", "DEFAULT_PORT", "Generated", "Studio", "build_app", "serve"]

DEFAULT_HOST = "127.0.0.1"  # this machine only: the app has no authentication
DEFAULT_PORT = 7860  # Gradio's usual port
SEED_MAX = 2**32 - 1
TOY_ACCENTS: tuple[str, ...] = tuple(CORPUS["voices"])  # the shipped toy model's accents

Progress = Callable[[str], None]


@dataclass(frozen=True)
class Generated:
    """One generation: the audio file, its spectrogram picture, and notices for the user."""

    audio: Path
    spectrogram: Path
    seconds: float
    notices: tuple[str, ...] = ()


def _check(
    name: str, value: Any, low: float | None, high: float | None, *, above: bool = False
) -> float:
    if value is None:
        raise PipelineError(f"{name}: give a value")
    problem = cli.range_problem(float(value), low, high, above=above)
    if problem:
        raise PipelineError(f"{name}: {problem}")
    return float(value)


def _steps(value: Any) -> int:
    steps = _check("steps", value, 1, cli.MAX_STEPS)
    if steps != int(steps):
        raise PipelineError(f"steps: {steps:g} is not a whole number")
    return int(steps)


def _seed(value: Any) -> int | None:
    """A blank seed is a random one, as when the command line's --seed is left out."""
    if value is None or value == "":
        return None
    seed = _check("seed", value, 0, SEED_MAX)
    if seed != int(seed):
        raise PipelineError(f"seed: {seed:g} is not a whole number")
    return int(seed)


class Studio:
    """The app's work, without the app: load the models once, generate, write the files.

    Args:
        pipeline_dir: the pipeline (default: the shipped toy pipeline).
        out_dir: where generated audio and pictures go (default: a new temporary folder).
    """

    def __init__(
        self,
        pipeline_dir: str | os.PathLike | None = None,
        out_dir: str | os.PathLike | None = None,
    ):
        self.pipeline_dir = Path(pipeline_dir) if pipeline_dir is not None else default_pipeline()
        self.out_dir = Path(out_dir or tempfile.mkdtemp(prefix="cadence-serve-"))
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self._models: dict[str, Any] = {}

    def _model(self, key: str) -> Any:
        if key not in self._models:
            from .continuation import SpeechContinuation
            from .synthesis import TextToSpeech, VoiceConversion

            build = {
                "continuation": lambda: SpeechContinuation.from_pretrained(self.pipeline_dir),
                "soundstorm": lambda: VoiceConversion.from_pretrained(
                    self.pipeline_dir, method="soundstorm"
                ),
                "flow": lambda: VoiceConversion.from_pretrained(self.pipeline_dir, method="flow"),
                "tts": lambda: TextToSpeech.from_pretrained(self.pipeline_dir),
            }[key]
            self._models[key] = build()
        return self._models[key]

    def _input(self, path: Any, what: str, rate: int) -> torch.Tensor:
        if not path:
            raise PipelineError(f"{what}: upload or record a clip first")
        return load(Path(path), sample_rate=rate, what=what)[0]

    def _write(
        self,
        kind: str,
        audio: torch.Tensor,
        rate: int,
        sections: list[tuple[str, float]] | None = None,
        picture: torch.Tensor | None = None,
    ) -> tuple[Path, Path]:
        name = f"{kind}-{uuid.uuid4().hex[:8]}"
        wav = save(self.out_dir / f"{name}.wav", audio, rate)
        png = save_spectrogram_png(
            picture if picture is not None else audio, rate, self.out_dir / f"{name}.png",
            sections=sections or (),
        )  # fmt: skip
        return wav, png

    def continuation(self, prompt: Any, *, seconds: Any = 3.0, steps: Any = 16, temperature: Any = 0.9,
                     guidance: Any = SOUNDSTORM_GUIDANCE, seed: Any = None, progress: Progress | None = None) -> Generated:  # fmt: skip
        """Continue the prompt clip at ``prompt`` (a file) by ``seconds``."""
        from cadence.audiolm import SamplingOptions
        from cadence.soundstorm import default_iterations

        seconds = _check("seconds", seconds, 0, cli.MAX_SECONDS, above=True)
        steps, seed = _steps(steps), _seed(seed)
        # As `cadence generate` without --eos: the seconds asked are honoured.
        sampling = SamplingOptions(
            temperature=_check("temperature", temperature, 0, None), top_p=0.95, allow_eos=False
        )
        guidance = _check("guidance", guidance, 0, None)
        pipe = self._model("continuation")
        audio = self._input(prompt, "prompt", pipe.sample_rate)
        notices = [
            cli.crop_message("the prompt", audio, pipe.sample_rate, pipe.prompt_seconds, "last")
        ]
        result = pipe.generate(
            audio, sample_rate=pipe.sample_rate, seconds=seconds, sampling=sampling,
            iterations=default_iterations(pipe.soundstorm.config.num_quantizers, first=steps),
            guidance_scale=guidance, seed=seed, progress=progress,
        )  # fmt: skip
        generated = result.audio[0, :, : int(result.lengths[0])]
        got = generated.shape[-1] / result.sample_rate
        if got < seconds - 0.05:
            notices.append(
                f"{got:.2f} s, shorter than the {seconds:g} s asked: the model's context"
            )
        used = result.prompt_audio[0, :, : int(result.prompt_lengths[0])]
        wav, png = self._write(
            "continuation", generated, result.sample_rate,
            sections=[("prompt", 0.0), ("generated", used.shape[-1] / result.sample_rate)],
            picture=torch.cat([used, generated], -1),
        )  # fmt: skip
        return Generated(wav, png, got, tuple(n for n in notices if n))

    def conversion(self, source: Any, voice: Any, *, method: str = "soundstorm", steps: Any = 16,
                   guidance: Any = None, seed: Any = None, progress: Progress | None = None) -> Generated:  # fmt: skip
        """Say ``source``'s words in ``voice``'s voice (``method``: soundstorm or flow;
        ``guidance`` None: the method's default)."""
        from .synthesis import VOICE_PROMPT_SECONDS

        if method not in ("soundstorm", "flow"):
            raise PipelineError(f"method: {method!r} is not one of soundstorm, flow.")
        steps, seed = _steps(steps), _seed(seed)
        guidance = None if guidance is None else _check("guidance", guidance, 0, None)
        vc = self._model(method)
        src = self._input(source, "source", vc.sample_rate)
        tgt = self._input(voice, "target voice", vc.sample_rate)
        notice = cli.crop_message(
            "the target voice", tgt, vc.sample_rate, VOICE_PROMPT_SECONDS, "first"
        )
        if progress is not None:
            progress(f"converting {src.shape[-1] / vc.sample_rate:.1f} s ({method})")
        audio = vc.convert(
            src, tgt, sample_rate=vc.sample_rate, steps=steps, guidance_scale=guidance, seed=seed
        )
        wav, png = self._write("conversion", audio, vc.sample_rate)
        return Generated(wav, png, audio.shape[-1] / vc.sample_rate, (notice,) if notice else ())

    def tts(self, text: str, voice: Any, *, steps: Any = 32, guidance: Any = 1.5, seed: Any = None,
            accent: Any = None, progress: Progress | None = None) -> Generated:  # fmt: skip
        """Say ``text`` in the voice of the clip at ``voice``, read in ``accent`` (an espeak-ng
        voice such as en-gb-x-rp; blank: the model's)."""
        from .synthesis import VOICE_PROMPT_SECONDS

        cli.check_text(text or "")
        if not (text or "").strip():
            raise PipelineError("text: write the sentence to say")
        steps, seed = _steps(steps), _seed(seed)
        guidance = _check("guidance", guidance, 0, None)
        accent = str(accent).strip() if accent is not None else ""
        model = self._model("tts")
        prompt = self._input(voice, "voice prompt", model.sample_rate)
        notice = cli.crop_message(
            "the voice prompt", prompt, model.sample_rate, VOICE_PROMPT_SECONDS, "first"
        )
        if progress is not None:
            progress("synthesizing")
        audio = model.synthesize(text, prompt, sample_rate=model.sample_rate, steps=steps,
                                 guidance_scale=guidance, seed=seed, accent=accent or None)  # fmt: skip
        wav, png = self._write("tts", audio, model.sample_rate)
        return Generated(wav, png, audio.shape[-1] / model.sample_rate, (notice,) if notice else ())


# ----------------------------------------------------------------------------- the app


def _gradio() -> Any:
    try:
        import gradio
    except ImportError as err:
        raise PipelineError(
            'cadence serve needs Gradio, an optional extra: pip install "cadence-pipeline[serve]" '
            "(in this repository: uv sync --all-packages)"
        ) from err
    return gradio


def _handler(gr: Any, work: Callable[..., Generated]) -> Callable[..., tuple[str, str, str]]:
    """Wrap a Studio method for Gradio: user errors become the CLI's one-line message."""

    def run(*args: Any, progress: Any = None) -> tuple[str, str, str]:
        def report(stage: str) -> None:
            if progress is not None:
                progress(None, desc=stage)

        try:
            out = work(*args, progress=report)
        except cli.USER_ERRORS as err:
            raise gr.Error(cli.user_message(err)) from None
        for notice in out.notices:
            gr.Warning(notice)
        summary = f"{out.seconds:.2f} s" + "".join(f"\nnote: {n}" for n in out.notices)
        return str(out.audio), str(out.spectrogram), summary

    return run


def _with_progress(
    gr: Any, run: Callable[..., tuple[str, str, str]]
) -> Callable[..., tuple[str, str, str]]:
    # Gradio finds the progress tracker by a parameter's default value, so each handler
    # has to spell it out in its own signature.
    def handler(*args: Any, progress: Any = gr.Progress()) -> tuple[str, str, str]:  # noqa: B008
        return run(*args, progress=progress)

    return handler


def build_app(studio: Studio) -> Any:
    """The Gradio Blocks app of ``studio``: tabs for continuation, voice conversion and TTS."""
    gr = _gradio()

    def outputs(prefix: str) -> list[Any]:
        return [
            gr.Audio(label="generated", type="filepath", interactive=False, elem_id=f"{prefix}-audio",
                     buttons=["download"]),
            gr.Image(label="log-mel spectrogram", type="filepath", interactive=False, elem_id=f"{prefix}-spectrogram"),
            gr.Textbox(label="result", interactive=False, elem_id=f"{prefix}-result"),
        ]  # fmt: skip

    def common(prefix: str, steps: int, guidance: float, steps_label: str) -> list[Any]:
        return [
            gr.Slider(1, min(cli.MAX_STEPS, 200), value=steps, step=1, label=steps_label, elem_id=f"{prefix}-steps"),
            gr.Slider(0, 10, value=guidance, step=0.1, label="guidance (1 = off)", elem_id=f"{prefix}-guidance"),
            gr.Number(value=0, precision=0, minimum=0, maximum=SEED_MAX, label="seed (blank: random)",
                      elem_id=f"{prefix}-seed"),
        ]  # fmt: skip

    sources = ["upload", "microphone"]
    with gr.Blocks(title="Cadence", analytics_enabled=False) as app:
        gr.Markdown(f"# Cadence\nPipeline: `{studio.pipeline_dir}`")
        with gr.Tab("Continuation"):
            prompt = gr.Audio(
                sources=sources, type="filepath", label="prompt", elem_id="continuation-prompt"
            )
            seconds = gr.Slider(0.5, cli.MAX_SECONDS, value=3.0, step=0.5, label="seconds to add",
                                elem_id="continuation-seconds")  # fmt: skip
            temperature = gr.Slider(0, 2, value=0.9, step=0.05, label="temperature (0 = greedy)",
                                    elem_id="continuation-temperature")  # fmt: skip
            steps, guidance, seed = common(
                "continuation", 16, SOUNDSTORM_GUIDANCE, "SoundStorm steps (first level)"
            )
            button = gr.Button("Continue", variant="primary", elem_id="continuation-run")
            results = outputs("continuation")
            run = _handler(gr, lambda p, s, st, t, g, sd, progress: studio.continuation(
                p, seconds=s, steps=st, temperature=t, guidance=g, seed=sd, progress=progress))  # fmt: skip
            button.click(
                _with_progress(gr, run),
                [prompt, seconds, steps, temperature, guidance, seed],
                results,
            )
        with gr.Tab("Voice conversion"):
            source = gr.Audio(
                sources=sources,
                type="filepath",
                label="source (the words)",
                elem_id="conversion-source",
            )
            voice = gr.Audio(
                sources=sources, type="filepath", label="target voice", elem_id="conversion-voice"
            )
            method = gr.Radio(
                ["soundstorm", "flow"],
                value="soundstorm",
                label="method",
                elem_id="conversion-method",
            )
            steps, guidance, seed = common(
                "conversion", 16, SOUNDSTORM_GUIDANCE, "steps (SoundStorm passes or ODE steps)"
            )
            # each method starts from its own default guidance (the flow's is off)
            method.change(
                lambda m: SOUNDSTORM_GUIDANCE if m == "soundstorm" else FLOW_GUIDANCE,
                method,
                guidance,
            )
            button = gr.Button("Convert", variant="primary", elem_id="conversion-run")
            results = outputs("conversion")
            run = _handler(gr, lambda s, v, m, st, g, sd, progress: studio.conversion(
                s, v, method=m, steps=st, guidance=g, seed=sd, progress=progress))  # fmt: skip
            button.click(
                _with_progress(gr, run), [source, voice, method, steps, guidance, seed], results
            )
        with gr.Tab("Text to speech"):
            text = gr.Textbox(label=f"text (at most {cli.MAX_TEXT_CHARACTERS} characters)",
                              value="The ship sailed at dawn.", elem_id="tts-text")  # fmt: skip
            voice = gr.Audio(
                sources=sources, type="filepath", label="voice prompt", elem_id="tts-voice"
            )
            # the accents the toy corpus speaks; any other espeak-ng voice can be typed in
            accent = gr.Dropdown([("the model's", "")] + [(v, v) for v in TOY_ACCENTS], value="",
                                 allow_custom_value=True, label="accent (espeak-ng voice)",
                                 elem_id="tts-accent")  # fmt: skip
            steps, guidance, seed = common("tts", 32, 1.5, "diffusion steps")
            button = gr.Button("Speak", variant="primary", elem_id="tts-run")
            results = outputs("tts")
            run = _handler(gr, lambda t, v, a, st, g, sd, progress: studio.tts(
                t, v, accent=a, steps=st, guidance=g, seed=sd, progress=progress))  # fmt: skip
            button.click(
                _with_progress(gr, run), [text, voice, accent, steps, guidance, seed], results
            )
    return app


def launch(app: Any, studio: Studio, *, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT,
           block: bool = True) -> str:  # fmt: skip
    """Start serving ``app``; returns its address (with ``block=False`` the call returns at once)."""
    gr = _gradio()
    # The system's fonts: the default theme would fetch Google Fonts, and the app is offline.
    theme = gr.themes.Default(
        font=["system-ui", "sans-serif"], font_mono=["ui-monospace", "monospace"]
    )
    _, url, _ = app.launch(
        server_name=host, server_port=port, prevent_thread_lock=not block, share=False,
        inbrowser=False, quiet=True, ssr_mode=False, allowed_paths=[str(studio.out_dir)],
        theme=theme, footer_links=[],
    )  # fmt: skip
    return url


def serve(pipeline_dir: str | os.PathLike | None = None, *, host: str = DEFAULT_HOST,
          port: int = DEFAULT_PORT) -> None:  # fmt: skip
    """Build and serve the app until interrupted."""
    studio = Studio(pipeline_dir)
    launch(build_app(studio), studio, host=host, port=port, block=True)
