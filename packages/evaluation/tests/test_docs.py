"""The README's examples run as written."""

from __future__ import annotations

from pathlib import Path

import pytest

from cadence.core.testing import python_examples, run_python_example

README = Path(__file__).resolve().parents[1] / "README.md"


@pytest.mark.parametrize("example", python_examples(README), ids=lambda e: e.name)
def test_readme_example_runs(example, tmp_path):
    run_python_example(example, tmp_path)
