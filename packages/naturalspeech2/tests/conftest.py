from __future__ import annotations

import pytest
import torch

from cadence.core.testing import FakeCodec, toy_corpus_dir
from cadence.naturalspeech2 import preprocess_corpus


@pytest.fixture(scope="session")
def codec() -> FakeCodec:
    return FakeCodec()


@pytest.fixture(scope="session")
def shards(tmp_path_factory, codec):
    """NaturalSpeech 2 shards of the first 48 toy-corpus training utterances (FakeCodec latents)."""
    torch.manual_seed(0)
    return preprocess_corpus(toy_corpus_dir(), codec, tmp_path_factory.mktemp("ns2") / "train",
                             limit=48, progress=False)
