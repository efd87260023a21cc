from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from cadence.core.testing import toy_corpus_dir


@pytest.fixture(autouse=True)
def one_thread():
    # The suite runs on 2 cores; one thread per test process avoids oversubscription.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def corpus() -> Path:
    return toy_corpus_dir()


@pytest.fixture(scope="session")
def valid_items(corpus) -> list[dict]:
    return [json.loads(line) for line in (corpus / "valid.jsonl").read_text().splitlines()]


@pytest.fixture(scope="session")
def mini_corpus(tmp_path_factory, corpus) -> Path:
    """A corpus of 17 train (one more than the largest toy batch) and 4 valid utterances (absolute audio paths)."""
    root = tmp_path_factory.mktemp("mini_corpus")
    for split, count in (("train", 17), ("valid", 4)):
        lines = (corpus / f"{split}.jsonl").read_text().splitlines()[:count]
        items = [json.loads(line) for line in lines]
        for item in items:
            item["path"] = str((corpus / item["path"]).resolve())
        (root / f"{split}.jsonl").write_text(
            "".join(json.dumps(i, ensure_ascii=False) + "\n" for i in items)
        )
    return root


@pytest.fixture(scope="session")
def mini_shards(tmp_path_factory, mini_corpus) -> Path:
    """The mini corpus tokenized with the shipped codec and semantic tokenizer (read only)."""
    shards = tmp_path_factory.mktemp("mini_shards")
    from cadence.pipeline.cli import default_pipeline
    from cadence.pipeline.training import tokenize_corpus

    shipped = default_pipeline()
    for split in ("train", "valid"):
        tokenize_corpus(
            mini_corpus / f"{split}.jsonl",
            shards / split,
            codec=shipped / "codec",
            tokenizer=shipped / "semantic_tokenizer",
            progress=False,
        )
    return shards


@pytest.fixture
def pipeline_copy(tmp_path) -> Path:
    """A writable copy of the shipped pipeline (to break on purpose)."""
    from cadence.pipeline.cli import default_pipeline

    target = tmp_path / "pipeline"
    shutil.copytree(default_pipeline(), target)
    return target
