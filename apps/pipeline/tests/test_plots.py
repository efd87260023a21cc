import math

import pytest
import torch

pytest.importorskip("matplotlib")

from cadence.pipeline.plots import save_spectrogram_png

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_spectrogram_png(tmp_path):
    t = torch.arange(16000) / 16000
    path = save_spectrogram_png(
        torch.sin(2 * math.pi * 440 * t)[None], 16000, tmp_path / "s.png", title="A4"
    )
    assert path.read_bytes()[:8] == PNG_MAGIC and path.stat().st_size > 2000


def test_spectrogram_png_marks_sections(tmp_path):
    t = torch.arange(32000) / 16000
    audio = torch.sin(2 * math.pi * 440 * t)[None]
    plain = save_spectrogram_png(audio, 16000, tmp_path / "plain.png")
    marked = save_spectrogram_png(
        audio, 16000, tmp_path / "marked.png", sections=[("a", 0.0), ("b", 1.0)]
    )
    assert marked.read_bytes()[:8] == PNG_MAGIC
    assert marked.read_bytes() != plain.read_bytes()  # the boundary and labels are drawn
