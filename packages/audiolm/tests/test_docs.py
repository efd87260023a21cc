"""The README's and the docs page's Python examples run as written (core's python_examples)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from cadence.core.testing import python_examples, run_python_example

PACKAGE = Path(__file__).resolve().parents[1]
README = PACKAGE / "README.md"
DOCS = PACKAGE.parents[1] / "docs" / "packages" / "audiolm.md"


def test_readme_examples_run(tmp_path):
    examples = python_examples(README)
    assert examples, "the README shows at least one example"
    for example in examples:
        torch.manual_seed(0)
        namespace = run_python_example(example, tmp_path)
        if "model.generate(" in example.code:
            assert namespace["out"].codes.shape[0] == 2
        if "StageDataset(" in example.code:
            assert namespace["groups"] == [[0, 2, 4], [1, 3, 5]]
            assert len(namespace["data"][0]["tokens"]) == 60


@pytest.mark.skipif(not DOCS.exists(), reason="docs are not shipped with the package")
def test_docs_examples_run(tmp_path):
    examples = python_examples(DOCS)  # the training block needs a corpus: it is marked notest
    assert examples
    for example in examples:
        torch.manual_seed(0)
        namespace = run_python_example(example, tmp_path)
        if "audiolm.generate(" in example.code:
            assert namespace["out"].codes.shape[-1] == 4
            assert namespace["more"].codes.shape == (4, 240)
        if "speaker_groups(" in example.code:
            assert namespace["groups"] == [[0, 1, 2, 3], [4, 5, 6, 7]]
            assert namespace["item"]["tokens"].shape == (100,)
