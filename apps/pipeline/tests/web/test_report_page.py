"""``cadence eval --report``: a self-contained page whose every player plays, with per-item values."""

from __future__ import annotations

import html.parser
import math
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cadence.core.train import HISTORY_FILE, append_history
from cadence.pipeline import PipelineSpec, default_pipeline
from cadence.pipeline.cli import app
from cadence.pipeline.evaluation import evaluate_pipeline
from cadence.pipeline.report import SYSTEMS, training_curves, write_report

LIMIT = 2  # two utterances: enough for means to differ from single values, seconds to write


class _Page(html.parser.HTMLParser):
    """The tags and attributes of a page (the standard library's parser is enough here)."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    pipeline = default_pipeline()
    out = tmp_path_factory.mktemp("report") / "page"
    result = write_report(
        pipeline, PipelineSpec.read(pipeline).held_out(), out, limit=LIMIT, progress=False,
        speaker_similarity=False,
    )  # fmt: skip
    page = _Page()
    page.feed(result.index.read_text())
    return result, page


def test_the_page_is_self_contained_and_every_file_it_names_exists(written):
    result, page = written
    text = result.index.read_text()
    assert "http://" not in text and "https://" not in text and 'src="//' not in text
    assert not [tag for tag, _ in page.tags if tag in ("script", "link", "iframe")]
    sources = [attrs["src"] for tag, attrs in page.tags if tag in ("audio", "img")]
    assert sources and all(src and not Path(src).is_absolute() for src in sources)
    missing = [src for src in sources if not (result.index.parent / str(src)).is_file()]
    assert not missing


def test_each_utterance_has_a_player_and_a_spectrogram_for_every_system(written):
    _, page = written
    audios = [attrs["src"] for tag, attrs in page.tags if tag == "audio"]
    # The shipped pipeline has every component: all seven systems speak for each utterance.
    expected = [f"audio/{i:03d}-{system}.flac" for i in range(LIMIT) for system in SYSTEMS]
    assert sorted(audios) == sorted(expected)
    images = {attrs["src"] for tag, attrs in page.tags if tag == "img"}
    assert {
        src.replace("audio/", "spectrograms/").replace(".flac", ".png") for src in audios
    } <= images


def test_per_item_values_add_up_to_the_aggregates_and_are_on_the_page(written):
    result, _ = written
    items, report = result.items, result.report
    assert sorted(items) == list(range(LIMIT))

    def mean(key: str) -> float:
        return sum(items[i][key] for i in range(LIMIT)) / LIMIT

    assert mean("codec/si_snr") == pytest.approx(report["codec"]["si_snr"])
    assert mean("soundstorm/mel_distance") == pytest.approx(report["soundstorm"]["mel_distance"])
    assert mean("naturalspeech2/length_ratio") == pytest.approx(
        report["naturalspeech2"]["length_ratio"]
    )
    assert mean("continuation/seconds") == pytest.approx(report["continuation"]["seconds"])
    assert items[0]["codec/si_snr"] != items[1]["codec/si_snr"]
    text = result.index.read_text()
    assert f"{items[1]['per/codec']:.4g}" in text and f"{items[0]['codec/si_snr']:.4g}" in text


@pytest.mark.slow
def test_keeping_per_item_values_leaves_the_aggregate_figures_unchanged(written):
    result, _ = written
    pipeline = default_pipeline()
    plain = evaluate_pipeline(
        pipeline, PipelineSpec.read(pipeline).held_out(), limit=LIMIT, progress=False,
        speaker_similarity=False,
    )  # fmt: skip
    # equal up to float rounding (the two runs' kernels may sum in another order: 1e-7 apart)
    assert plain.keys() == result.report.keys()
    for section, figures in plain.items():
        other = result.report[section]
        assert figures.keys() == other.keys(), section
        for key, value in figures.items():
            if isinstance(value, float):
                assert value == pytest.approx(other[key], rel=1e-5, abs=1e-6), (section, key)
            else:
                assert value == other[key], (section, key)


def test_the_page_draws_the_training_logs_it_finds_and_names_the_missing_ones(written, tmp_path):
    result, _ = written
    spec = PipelineSpec.read(default_pipeline())
    text = result.index.read_text()
    for role in spec.components:
        if (spec.path(role) / HISTORY_FILE).is_file():
            assert f"curves/{role}-training.png" in text
        else:
            assert f"curves/{role}-" not in text and role in text.split('id="no-curves"')[1]
    # A recipe's layout: <out>/pipeline/<role> beside <out>/runs/<role>/history.jsonl.
    recipe = PipelineSpec(
        directory=tmp_path / "pipeline",
        components={role: tmp_path / "pipeline" / role for role in ("codec", "soundstorm")},
    )
    log = tmp_path / "runs" / "soundstorm" / HISTORY_FILE
    for step, loss in ((50, 4.0), (100, 3.0), (150, 2.5)):
        append_history(log, step, {"train/loss": loss, "train/lr": 1e-3})
    append_history(log, 150, {"eval/loss": 2.8, "eval/accuracy": 0.3})
    plots, looked = training_curves(recipe, tmp_path / "curves")
    assert [(role, what) for role, what, _ in plots] == [
        ("soundstorm", "training"),
        ("soundstorm", "held-out"),
    ]
    assert all(png.is_file() and png.stat().st_size > 1000 for _, _, png in plots)
    assert looked == [tmp_path / "pipeline" / "codec"]


def test_a_report_never_replaces_a_folder_that_holds_other_files(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    result = CliRunner().invoke(app, ["eval", "--report", str(tmp_path), "--limit", "1"])
    assert result.exit_code == 2, result.output
    assert "holds no previous report" in result.output
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_the_report_page_loads_without_console_errors_and_every_audio_decodes(
    written, browser, console_errors, decode_audio, screenshot
):
    result, page = written
    console_errors(browser)  # drain what an earlier test left
    browser.get(result.index.as_uri())
    clips = decode_audio(browser)
    assert len(clips) == len([tag for tag, _ in page.tags if tag == "audio"])
    for clip in clips:
        assert clip["error"] is None, clip
        assert clip["duration"] > 0.1 and math.isfinite(clip["duration"]), clip
        assert clip["decoded"] == pytest.approx(clip["duration"], abs=0.02), clip
    broken = browser.execute_script(
        "return [...document.images].filter(i => !i.complete || i.naturalWidth === 0).map(i => i.src)"
    )
    assert broken == []
    assert console_errors(browser) == []
    shot = screenshot(browser, "report-page")
    assert shot.stat().st_size > 10_000
