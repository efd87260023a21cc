"""The Python examples of the README and of docs/packages/flowmatching.md run as written."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from cadence.core.testing import python_examples, run_python_example

PACKAGE = Path(__file__).resolve().parents[1]
README = PACKAGE / "README.md"
DOC = PACKAGE.parents[1] / "docs" / "packages" / "flowmatching.md"
QUICK_START = '"/tmp/flow-quickstart"'


def _examples(page: Path) -> list:
    return python_examples(page) if page.exists() else []  # a wheel ships neither page


def _marked(example):
    # the quick start trains on shards of the toy corpus (about 20 s on one core)
    slow = QUICK_START in example.code
    return pytest.param(example, id=example.name, marks=[pytest.mark.slow] if slow else [])


@pytest.mark.skipif(not DOC.exists(), reason="docs are not shipped with the wheel")
def test_both_pages_have_examples():
    assert _examples(README) and len(_examples(DOC)) >= 2
    assert any(QUICK_START in example.code for example in _examples(DOC))


@pytest.mark.parametrize("example", [_marked(e) for e in _examples(DOC)])
def test_docs_example_runs(example, tmp_path):
    torch.manual_seed(0)
    run_python_example(example, tmp_path, replace={QUICK_START: repr(str(tmp_path / "quickstart"))})
    if QUICK_START in example.code:
        assert (tmp_path / "quickstart" / "release" / "model.safetensors").exists()


@pytest.mark.parametrize("example", [_marked(e) for e in _examples(README)])
def test_readme_example_runs(example, tmp_path):
    namespace = run_python_example(example, tmp_path)
    assert namespace["out"].latents.shape == (2, 20, 8)
    assert namespace["prompted"].latents.shape == (2, 20, 8)
