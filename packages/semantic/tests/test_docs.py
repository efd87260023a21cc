"""The README's and docs/packages/semantic.md's Python examples run as written (core's python_examples)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from cadence.core.testing import python_examples, run_python_example

PACKAGE = Path(__file__).resolve().parents[1]
README = PACKAGE / "README.md"
DOCS = PACKAGE.parents[1] / "docs" / "packages" / "semantic.md"


@pytest.mark.slow
def test_readme_examples_run(tmp_path):
    examples = python_examples(README)  # the HuBERT block needs released files: notest
    assert examples, "the README shows at least one example"
    namespaces = []
    for example in examples:
        torch.manual_seed(0)
        namespaces.append(run_python_example(example, tmp_path))
    mfcc, phonetic = namespaces
    ragged, lengths = mfcc["ragged"], mfcc["batch"]["lengths"]
    assert ragged.shape[0] == 2 and ragged.shape[1] == int(lengths.max()) // 320
    assert 0 < phonetic["scores"].purity <= 1 and phonetic["scores"].mutual_information > 0
    assert (tmp_path / "phonetic-run" / "run" / "checkpoints").is_dir()


@pytest.mark.slow
@pytest.mark.skipif(not DOCS.exists(), reason="docs are not shipped with the package")
def test_docs_examples_run(tmp_path):
    examples = python_examples(DOCS)  # the HuBERT block needs released files: notest
    assert examples
    for example in examples:
        torch.manual_seed(0)
        run_python_example(
            example,
            tmp_path,
            replace={
                "/tmp/mfcc-tokenizer": str(tmp_path / "mfcc-tokenizer"),
                "/tmp/phonetic": str(tmp_path / "phonetic"),
            },
        )
    assert (tmp_path / "mfcc-tokenizer" / "model.safetensors").exists()
    assert (tmp_path / "phonetic-tokenizer" / "model.safetensors").exists()
