"""``cadence eval --report DIR``: a static page to listen to and compare every system.

The page is self-contained (``index.html``, ``audio/*.flac``, ``spectrograms/*.png``,
``curves/*.png``; no network, no script, no external style sheet), so it opens from the disk
(``file://``) or from any static host. On top: the aggregate metrics and the recipe's training
curves; below, one row per held-out utterance with a player, a spectrogram and the
utterance's own metrics for each system: the original, the codec's and SoundStorm's
resynthesis, the continuation, TTS and voice conversion (SoundStorm and flow).

The page is written with the standard library's ``html.escape`` rather than a template
engine: it is one small, fixed layout, and the pipeline then needs no template dependency.
"""

# c channels | t samples

from __future__ import annotations

import html
import json
import math
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import Tensor

from cadence.core.audio import save
from cadence.core.io import atomic_directory, write_json, write_text
from cadence.core.train import HISTORY_FILE, read_history

from .components import PipelineError
from .pipeline import COMPONENTS, PipelineSpec

__all__ = [
    "DEFAULT_LIMIT",
    "MAX_LIMIT",
    "SYSTEMS",
    "ReportResult",
    "training_curves",
    "write_report",
]

# What each system the evaluation hears is called on the page, in the page's order.
SYSTEMS = {
    "original": "original",
    "codec": "codec resynthesis",
    "soundstorm": "SoundStorm resynthesis",
    "continuation": "continuation",
    "naturalspeech2": "TTS (NaturalSpeech 2)",
    "conversion_soundstorm": "voice conversion (SoundStorm)",
    "flowmatching": "voice conversion (flow)",
}
DEFAULT_LIMIT = 50  # utterances on a page unless --limit says otherwise (the toy set has 30)
MAX_LIMIT = 500  # each utterance costs ~7 generations, files and pictures
MARKER = "report.json"  # tells a previous report (which may be replaced) from other folders


@dataclass(frozen=True)
class ReportResult:
    """What :func:`write_report` made: the page, and the evaluation's aggregate metrics."""

    index: Path
    report: dict[str, Any]
    items: dict[int, dict[str, float]]


def write_report(
    pipeline_dir: str | os.PathLike,
    corpus: str | os.PathLike,
    out: str | os.PathLike,
    *,
    limit: int | None = None,
    prompt_seconds: float = 3.0,
    seed: int = 0,
    progress: bool = True,
    runs: str | os.PathLike | None = None,
    speaker_similarity: bool | None = None,
) -> ReportResult:
    """Evaluate ``pipeline_dir`` on ``corpus`` and write the page to ``out``.

    Args:
        limit: utterances on the page (default :data:`DEFAULT_LIMIT`, at most :data:`MAX_LIMIT`).
        runs: where the training runs are (``<runs>/<role>/history.jsonl``); by default the
            pipeline's own ``<role>/history.jsonl``, then the recipe layout's ``../runs``.
        speaker_similarity: as in :func:`~cadence.pipeline.evaluation.evaluate_pipeline`.

    ``out`` is replaced whole (atomically) when it holds a previous report; a folder that
    holds anything else is refused, so a report never deletes unrelated files.
    """
    from .evaluation import evaluate_pipeline
    from .plots import save_spectrogram_png

    limit = DEFAULT_LIMIT if limit is None else limit
    if not 1 <= limit <= MAX_LIMIT:
        raise PipelineError(f"a report shows 1 to {MAX_LIMIT} utterances, not {limit}")
    out = Path(out)
    _check_replaceable(out)
    start = time.perf_counter()
    with atomic_directory(out) as tmp:
        (tmp / "audio").mkdir()
        (tmp / "spectrograms").mkdir()
        heard: dict[int, dict[str, tuple[str, float] | None]] = {}
        rate = {"value": 0}

        def keep(system: str, index: int, audio: Tensor) -> None:
            name = f"{index:03d}-{system}"
            seconds = audio.shape[-1] / rate["value"]
            if audio.shape[-1] == 0 or not bool(audio.isfinite().all()):
                heard.setdefault(index, {})[system] = None  # shown as "no audio"
                return
            save(tmp / "audio" / f"{name}.flac", audio, rate["value"])
            save_spectrogram_png(audio, rate["value"], tmp / "spectrograms" / f"{name}.png")
            heard.setdefault(index, {})[system] = (name, seconds)

        items: dict[int, dict[str, float]] = {}
        spec = PipelineSpec.read(pipeline_dir)
        rate["value"] = spec.load("codec").sample_rate
        report = evaluate_pipeline(
            pipeline_dir, corpus, limit=limit, prompt_seconds=prompt_seconds, seed=seed,
            progress=progress, keep=keep, items=items, speaker_similarity=speaker_similarity,
        )  # fmt: skip
        rows = _manifest_rows(Path(corpus))[:limit]
        curves, looked = training_curves(spec, tmp / "curves", runs=runs)
        page = _page(
            spec,
            report,
            rows,
            heard,
            items,
            curves,
            looked,
            seconds=time.perf_counter() - start,
        )
        write_text(tmp / "index.html", page)
        write_json(tmp / MARKER, {"format": "cadence-report", "version": 1, "report": report})
    return ReportResult(out / "index.html", report, items)


def _check_replaceable(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise PipelineError(f"cannot write the report: {out} is a file, not a folder")
    if out.is_dir() and any(out.iterdir()) and not (out / MARKER).is_file():
        raise PipelineError(
            f"{out} is not empty and holds no previous report; a report replaces its folder "
            "whole, so give a new or empty folder"
        )


def _manifest_rows(corpus: Path) -> list[dict[str, Any]]:
    lines = (corpus / "valid.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines if line.strip()]


# ----------------------------------------------------------------------------- training curves


def _history_file(spec: PipelineSpec, role: str, runs: Path | None) -> Path | None:
    candidates = [runs / role / HISTORY_FILE] if runs is not None else []
    candidates += [
        spec.path(role) / HISTORY_FILE,
        spec.directory.parent / "runs" / role / HISTORY_FILE,
    ]
    return next((path for path in candidates if path.is_file()), None)


def training_curves(
    spec: PipelineSpec, folder: Path, *, runs: str | os.PathLike | None = None
) -> tuple[list[tuple[str, str, Path]], list[Path]]:
    """Plot each component's training log (``history.jsonl``) into ``folder``.

    Returns ``(role, what, png)`` for each plot (``what``: "training" or "held-out"), and the
    folders looked in (for the page to say where logs were missing).
    """
    from cadence.core.plots import save_curves_png

    runs = Path(runs) if runs is not None else None
    plots, looked = [], []
    for role in COMPONENTS:
        if not spec.has(role):
            continue
        path = _history_file(spec, role, runs)
        if path is None:
            looked.append(spec.path(role))
            continue
        history = read_history(path)
        for what, prefix in (("training", "train/"), ("held-out", "eval/")):
            curves = _series(history, prefix)
            if not curves:
                continue
            folder.mkdir(parents=True, exist_ok=True)
            steps = sorted({step for xs, _ in curves.values() for step in xs})
            png = folder / f"{role}-{what}.png"
            save_curves_png(
                {name: _aligned(xs, ys, steps) for name, (xs, ys) in curves.items()},
                png,
                steps=steps,
                title=f"{role}: {what}",
                log_y=all(v > 0 for _, ys in curves.values() for v in ys),
            )
            plots.append((role, what, png))
    return plots, looked


# Logged values that are not curves to judge a model by.
_NOT_CURVES = ("lr", "items_per_s", "grad_norm", "g_grad_norm")


def _series(
    history: Sequence[Mapping[str, float]], prefix: str
) -> dict[str, tuple[list[int], list[float]]]:
    out: dict[str, tuple[list[int], list[float]]] = {}
    for row in history:
        for key, value in row.items():
            name = key.removeprefix(prefix)
            if not key.startswith(prefix) or name.split("/")[0] in _NOT_CURVES:
                continue
            xs, ys = out.setdefault(name, ([], []))
            xs.append(int(row["step"]))
            ys.append(value)
    return out


def _aligned(xs: list[int], ys: list[float], steps: list[int]) -> list[float]:
    """``ys`` on the shared ``steps`` axis, NaN (a gap in the line) where a value is missing."""
    at = dict(zip(xs, ys))
    return [at.get(step, math.nan) for step in steps]


# ----------------------------------------------------------------------------- the page

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5em; color: #222; }
table.metrics { border-collapse: collapse; margin: 0.5em 0 1.5em; }
table.metrics td, table.metrics th { border: 1px solid #ccc; padding: 2px 8px; }
table.metrics td.value { text-align: right; font-variant-numeric: tabular-nums; }
.curves img { max-width: 32em; margin: 0 1em 1em 0; }
.utterance { border-top: 2px solid #888; padding: 0.8em 0; }
.systems { display: flex; flex-wrap: wrap; gap: 0.8em; }
.system { border: 1px solid #ddd; padding: 0.4em; width: 21em; }
.system h4 { margin: 0 0 0.3em; }
.system audio { width: 100%; }
.system img { width: 100%; }
.system dl { margin: 0.2em 0; font-size: 0.85em; display: grid;
             grid-template-columns: minmax(0, 1fr) auto; column-gap: 0.6em; }
.system dt { overflow-wrap: anywhere; }
.system dd { margin: 0; text-align: right; font-variant-numeric: tabular-nums; }
.missing { color: #a00; }
"""


def _number(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, (int, float)) and math.isfinite(value) else "–"


def _aggregate_table(report: Mapping[str, Any]) -> str:
    rows = [
        f"<tr><td>{html.escape(model)}</td><td>{html.escape(key)}</td>"
        f'<td class="value">{_number(value)}</td></tr>'
        for model, metrics in report.items()
        if isinstance(metrics, dict) and model != "setup"
        for key, value in metrics.items()
        if isinstance(value, (int, float))
    ]
    return (
        '<table class="metrics" id="aggregate"><tr><th>model</th><th>metric</th><th>value</th></tr>'
        + "".join(rows)
        + "</table>"
    )


def _curves_section(curves: list[tuple[str, str, Path]], looked: list[Path]) -> str:
    parts = ['<h2>Training curves</h2><div class="curves">']
    parts += [
        f'<img src="curves/{png.name}" alt="{html.escape(role)} {what} curves">'
        for role, what, png in curves
    ]
    parts.append("</div>")
    if looked:
        roles = ", ".join(html.escape(path.name) for path in looked)
        where = html.escape(str(looked[0].parent))
        parts.append(
            f'<p class="missing" id="no-curves">No training log ({HISTORY_FILE}) was found for '
            f"{roles}: their curves are not shown (looked beside each checkpoint in {where} and in "
            "the recipe's runs folder, ../runs/&lt;component&gt;). The trainers write the log in "
            "their run folder and <code>cadence train</code> copies it beside the checkpoint; "
            "checkpoints trained before that carry none.</p>"
        )
    return "".join(parts)


def _metric_name(key: str, system: str) -> str:
    """A per-item key as a card shows it: ``codec/si_snr`` on the codec's card is ``si_snr``."""
    kind, _, rest = key.partition("/")
    if rest == system:
        return {"per": "PER", "similarity": "speaker similarity"}.get(kind, key)
    return rest if kind == system else key


def _system_card(system: str, clip: tuple[str, float] | None, values: Mapping[str, float]) -> str:
    label = html.escape(SYSTEMS[system])
    if clip is None:
        return f'<div class="system"><h4>{label}</h4><p class="missing">no audio</p></div>'
    name, seconds = clip
    mine = {
        key: value
        for key, value in values.items()
        if key.split("/", 1)[0] == system
        or key.split("/", 1)[-1] == system
        or (system == "original" and key.startswith("semantic_lm/"))
    }
    metrics = "".join(
        f"<dt>{html.escape(_metric_name(key, system))}</dt><dd>{_number(value)}</dd>"
        for key, value in sorted(mine.items())
    )
    return (
        f'<div class="system" data-system="{system}"><h4>{label} ({seconds:.2f} s)</h4>'
        f'<audio controls preload="metadata" src="audio/{name}.flac"></audio>'
        f'<img src="spectrograms/{name}.png" alt="log-mel spectrogram: {label}">'
        f"<dl>{metrics}</dl></div>"
    )


def _utterance(
    index: int, row: Mapping[str, Any], clips: Mapping[str, Any], values: Mapping[str, float]
) -> str:
    cards = "".join(
        _system_card(system, clips[system], values) for system in SYSTEMS if system in clips
    )
    title = html.escape(str(row.get("id", index)))
    speaker = html.escape(str(row.get("speaker", "")))
    text = html.escape(str(row.get("text", "")))
    return (
        f'<div class="utterance" id="u{index:03d}"><h3>{index + 1}. {title} '
        f"<small>speaker {speaker}</small></h3><p><q>{text}</q></p>"
        f'<div class="systems">{cards}</div></div>'
    )


def _page(
    spec: PipelineSpec,
    report: Mapping[str, Any],
    rows: list[dict[str, Any]],
    heard: Mapping[int, Mapping[str, Any]],
    items: Mapping[int, Mapping[str, float]],
    curves: list[tuple[str, str, Path]],
    looked: list[Path],
    *,
    seconds: float,
) -> str:
    setup = report.get("setup", {})
    utterances = "".join(
        _utterance(i, rows[i] if i < len(rows) else {}, heard[i], items.get(i, {}))
        for i in sorted(heard)
    )
    description = html.escape(spec.description or str(spec.directory))
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>Cadence evaluation: {description}</title><style>{_STYLE}</style></head><body>"
        f"<h1>Cadence evaluation</h1><p>{description}: {setup.get('utterances', '?')} held-out "
        f"utterances of {html.escape(str(setup.get('corpus', '')))}, seed {setup.get('seed', '?')}, "
        f"{_number(setup.get('prompt_seconds'))} s prompts; written in {seconds:.0f} s by "
        "<code>cadence eval --report</code>. Continuation and TTS take the voice of the "
        "utterance's speaker; voice conversion says the utterance in the next speaker's voice.</p>"
        f"<h2>Aggregate metrics</h2>{_aggregate_table(report)}"
        f"{_curves_section(curves, looked)}<h2>Utterances</h2>{utterances}</body></html>\n"
    )
