"""The README's and docs/packages/codec.md's Python examples run as written (core's python_examples)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from cadence.core.testing import python_examples, run_python_example

PACKAGE = Path(__file__).resolve().parents[1]
README = PACKAGE / "README.md"
DOCS = PACKAGE.parents[1] / "docs" / "packages" / "codec.md"


def test_readme_examples_run(tmp_path):
    examples = python_examples(README)
    assert examples, "the README shows at least one example"
    for example in examples:
        torch.manual_seed(0)
        namespace = run_python_example(example, tmp_path)
    assert namespace["codes"].shape == (1, 50, 4)
    assert namespace["audio"].shape == (1, 1, 16000)


@pytest.mark.slow
@pytest.mark.skipif(not DOCS.exists(), reason="docs are not shipped with the package")
def test_docs_examples_run(tmp_path):
    # The official-weights and file examples need files that are not in the repository:
    # they are fenced `python notest`.
    examples = python_examples(DOCS)
    assert len(examples) >= 5
    for example in examples:
        torch.manual_seed(0)
        run_python_example(
            example, tmp_path, replace={"/tmp/codec-run": str(tmp_path / "codec-run")}
        )
    assert (tmp_path / "codec-run" / "release" / "model.safetensors").exists()
