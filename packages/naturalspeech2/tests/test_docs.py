"""The Python blocks of the package README and its docs page run as written."""

from __future__ import annotations

from pathlib import Path

import pytest

from cadence.core.testing import python_examples, run_python_example

ROOT = Path(__file__).resolve().parents[3]
PAGES = [
    ROOT / "packages" / "naturalspeech2" / "README.md",
    ROOT / "docs" / "packages" / "naturalspeech2.md",
]
EXAMPLES = [
    pytest.param(example, id=f"{page.name}:{example.line}")
    for page in PAGES
    if page.exists()
    for example in python_examples(page)
]


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_each_page_has_examples(page):
    if not page.exists():
        pytest.skip(f"{page} is not in this checkout")
    assert python_examples(page)


@pytest.mark.slow
@pytest.mark.parametrize("example", EXAMPLES)
def test_python_example_runs(example, tmp_path):
    run_python_example(example, tmp_path)
