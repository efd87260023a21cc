"""The README and the docs page's quick start run as written."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

PACKAGE = Path(__file__).resolve().parents[1]
DOCS = PACKAGE.parents[1] / "docs" / "packages" / "audiolm.md"


def python_blocks(path: Path) -> list[str]:
    return re.findall(r"```python\n(.*?)```", path.read_text(), flags=re.S)


def test_readme_example_runs():
    (block,) = python_blocks(PACKAGE / "README.md")
    torch.manual_seed(0)
    exec(compile(block, "README.md", "exec"), {})


@pytest.mark.skipif(not DOCS.exists(), reason="docs are not shipped with the package")
def test_docs_quick_start_runs():
    quick_start = python_blocks(DOCS)[0]  # the training block needs a corpus and a real run
    torch.manual_seed(0)
    namespace: dict = {}
    exec(compile(quick_start, str(DOCS), "exec"), namespace)
    assert namespace["out"].codes.shape[-1] == 4
    assert namespace["more"].codes.shape == (1, 240)
