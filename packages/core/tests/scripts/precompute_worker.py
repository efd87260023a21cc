"""One process of a multi-process precompute, for test_precompute (run under accelerate launch).

Usage: accelerate launch --multi_gpu --num_processes 2 precompute_worker.py AUDIO_DIR OUTPUT_DIR
(``--multi_gpu`` is what starts several processes; ``--cpu`` would start one unless MPI is set
up. Without CUDA, PartialState(cpu=True) makes them a gloo process group.)
"""

from __future__ import annotations

import sys

import torch
from accelerate import PartialState

from cadence.core.data import AudioDataset, precompute
from cadence.core.testing import FakeCodec, FakeSemanticTokenizer


def main(audio_dir: str, output_dir: str) -> None:
    state = PartialState(cpu=not torch.cuda.is_available())
    dataset = AudioDataset(audio_dir, sample_rate=16000)
    manifest = precompute(
        dataset,
        output_dir,
        codec=FakeCodec(),
        tokenizer=FakeSemanticTokenizer(),
        batch_size=2,
        max_items_per_shard=2,
        accelerator=state,
        progress=False,
    )
    # every process returns only once the manifest is there
    assert manifest.exists(), manifest
    print(f"rank {state.process_index} of {state.num_processes} done", flush=True)


if __name__ == "__main__":
    main(*sys.argv[1:])
