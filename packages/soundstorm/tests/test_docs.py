"""The Python examples of the README and of docs/packages/soundstorm.md run as written."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from cadence.core.testing import python_examples, run_python_example

PACKAGE = Path(__file__).resolve().parents[1]
README = PACKAGE / "README.md"
DOCS = PACKAGE.parents[1] / "docs" / "packages" / "soundstorm.md"
PAGES = [page for page in (README, DOCS) if page.exists()]  # an installed wheel has neither
EXAMPLES = [example for page in PAGES for example in python_examples(page)]


def test_both_pages_have_examples():
    if not DOCS.exists():
        pytest.skip("docs/packages/soundstorm.md is not in this checkout")
    assert python_examples(README) and python_examples(DOCS)


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda e: e.name)
def test_example_runs(example, tmp_path):
    torch.manual_seed(0)
    run_python_example(example, tmp_path, replace={"/tmp/soundstorm-demo": str(tmp_path / "demo")})
