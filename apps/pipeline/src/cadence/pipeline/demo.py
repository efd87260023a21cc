"""``cadence demo``: the shipped pipeline continues a held-out prompt; wav, spectrogram PNG, metrics."""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table

from cadence.core.audio import load, save

from .components import PipelineError, load_component
from .continuation import SpeechContinuation
from .pipeline import PipelineSpec
from .plots import save_spectrogram_png

EVAL_FILE = "eval.json"


def run_demo(
    pipeline_dir: Path,
    out: Path,
    *,
    prompt_seconds: float = 2.0,
    seconds: float = 3.0,
    seed: int = 0,
    console: Console | None = None,
) -> dict[str, float]:
    """Continue the pipeline's held-out prompt; returns the metrics it prints."""
    console = console or Console()
    spec = PipelineSpec.read(pipeline_dir)
    if spec.prompt is None or not spec.prompt.is_file():
        raise PipelineError(
            f'the pipeline in {pipeline_dir} has no demo prompt ("prompt" in its pipeline.json)'
        )
    if prompt_seconds <= 0 or seconds <= 0:
        raise PipelineError("--prompt-seconds and --seconds must be > 0")
    start = time.perf_counter()
    pipe = SpeechContinuation.from_pretrained(pipeline_dir)
    load_seconds = time.perf_counter() - start
    audio, rate = load(spec.prompt, sample_rate=pipe.sample_rate, channels=pipe.codec.channels)
    prompt = audio[:, : round(prompt_seconds * rate)]
    start = time.perf_counter()
    with console.status("continuing the prompt"):
        result = pipe.generate(prompt, sample_rate=rate, seconds=seconds, seed=seed)
    generate_seconds = time.perf_counter() - start
    generated = result.audio[0, :, : int(result.lengths[0])]
    out.mkdir(parents=True, exist_ok=True)
    save(out / "prompt.wav", prompt, rate)
    save(out / "continuation.wav", generated, rate)
    save(out / "prompt_and_continuation.wav", torch.cat([prompt, generated], -1), rate)
    save_spectrogram_png(
        torch.cat([prompt, generated], -1),
        rate,
        out / "spectrogram.png",
        title="prompt | generated",
        sections=[("prompt", 0.0), ("generated", prompt.shape[-1] / rate)],
    )
    metrics = {
        "prompt_seconds": prompt.shape[-1] / rate,
        "generated_seconds": generated.shape[-1] / rate,
        "load_seconds": load_seconds,
        "generate_seconds": generate_seconds,
        "real_time_factor": generate_seconds / max(generated.shape[-1] / rate, 1e-9),
        "rms_dbfs": float(20 * torch.log10(generated.pow(2).mean().sqrt().clamp_min(1e-9))),
    }
    recognized = None
    if spec.has("phoneme_recognizer"):
        from cadence.evaluation import PhonemeRecognizer

        recognizer = load_component(
            spec.path("phoneme_recognizer"), "phoneme_recognizer", PhonemeRecognizer
        )
        recognized = " ".join(recognizer.transcribe(generated, sample_rate=rate)[0])
    table = Table(title="this run")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key, value in metrics.items():
        table.add_row(key, f"{value:.3g}")
    console.print(table)
    if recognized is not None:
        console.print(f"phonemes heard in the continuation: [italic]{recognized or '(none)'}[/]")
    eval_file = Path(pipeline_dir) / EVAL_FILE
    if eval_file.is_file():
        report = json.loads(eval_file.read_text())
        shipped = Table(
            title=f"evaluation of these checkpoints ({report.get('setup', {}).get('utterances', '?')} held-out utterances, `cadence eval`)"
        )
        shipped.add_column("model")
        shipped.add_column("metric")
        shipped.add_column("value", justify="right")
        for model, values in report.items():
            if model == "setup":
                continue
            for key, value in values.items():
                if isinstance(value, list):  # per level, e.g. SoundStorm's guidance
                    shipped.add_row(model, key, " ".join(f"{v:.3g}" for v in value))
                elif isinstance(value, (int, float)):
                    shipped.add_row(model, key, f"{value:.3g}")
        console.print(shipped)
    console.print(
        f"wrote {out / 'continuation.wav'}, {out / 'prompt_and_continuation.wav'}, {out / 'spectrogram.png'}"
    )
    return metrics
