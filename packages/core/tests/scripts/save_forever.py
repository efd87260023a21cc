"""Save checkpoints of a ~16 MB model to one directory in a loop, until killed.

Used by test_checkpoint.py to kill a save midway. Prints "saved <i>" after each save.
"""

import sys

import torch

from cadence.core.testing import TinyModel, TinyModelConfig

directory = sys.argv[1]
model = TinyModel(TinyModelConfig(dim_in=8, dim=1024, depth=4))
i = 0
while True:
    with torch.no_grad():
        for p in model.parameters():
            p.fill_(float(i))
    model.save_pretrained(directory, metadata={"iteration": i})
    print(f"saved {i}", flush=True)
    i += 1
