"""The README's and the docs' Python examples run as written.

Each package tests its own README and docs page (packages/*/tests/test_docs.py); this file
covers the repository's README and the pages of docs/ that belong to no single package.
Fragments that only illustrate (they use names defined elsewhere) are fenced ```python notest.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from cadence.core.testing import python_examples, run_python_example, toy_corpus_dir

ROOT = Path(__file__).resolve().parents[1]
PAGES = [
    ROOT / "README.md",
    *sorted((ROOT / "docs").glob("*.md")),
    ROOT / "docs/packages/core.md",
    ROOT / "packages/core/README.md",
    ROOT / "apps/pipeline/README.md",
    ROOT / "apps/corpus/README.md",
]
EXAMPLES = [example for page in PAGES for example in python_examples(page)]


def test_the_readme_has_examples():
    assert python_examples(ROOT / "README.md")


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda e: e.name)
def test_example_runs(example, tmp_path):
    # Examples read "speech.flac": give them a real utterance of the toy corpus.
    first = sorted((toy_corpus_dir() / "audio").rglob("*.flac"))[0]
    shutil.copy(first, tmp_path / "speech.flac")
    namespace = run_python_example(example, tmp_path)
    if "recon" in namespace:
        assert namespace["recon"].shape[:2] == (1, 1)
