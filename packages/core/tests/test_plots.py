import pytest
import torch

pytest.importorskip("matplotlib")

from cadence.core.plots import save_curves_png

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_curves_png(tmp_path):
    path = save_curves_png(
        {"train": [3.0, 2.0, 1.0], "valid": torch.tensor([3.5, 2.5, 2.0])},
        tmp_path / "c.png",
        log_y=True,
    )
    assert path.read_bytes()[:8] == PNG_MAGIC
