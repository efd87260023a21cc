"""Regenerate this folder from AcademiCodec's own code (github.com/yangdongchao/AcademiCodec).

``layout_16k_320d.json``: every tensor name and shape of a released ``HiFi-Codec-16k-320d``
checkpoint (``{"generator", "encoder", "quantizer"}``), from the reference modules built with
the published ``egs/HiFi-Codec-16k-320d/config_16k_320d.json``.

``decoder.pt``: a small seeded generator + quantizer in the released layout with codes and
the reference's audio for them. The reference encoder's widths are fixed (32 -> 512), so a
whole model is ~60 M parameters; the decoding path is small enough to commit.

Run with a checkout of AcademiCodec on the path::

    PYTHONPATH=/path/to/AcademiCodec uv run --no-sync python packages/codec/tests/data/hificodec/make_fixture.py
"""

import json
from pathlib import Path

import torch
from academicodec.models.hificodec.env import AttrDict
from academicodec.models.hificodec.models import Encoder, Generator, Quantizer

HERE = Path(__file__).parent
OFFICIAL = {
    "resblock": "1",
    "upsample_rates": [8, 5, 4, 2],
    "upsample_kernel_sizes": [16, 11, 8, 4],
    "upsample_initial_channel": 512,
    "resblock_kernel_sizes": [3, 7, 11],
    "resblock_dilation_sizes": [[1, 3, 5], [1, 3, 5], [1, 3, 5]],
    "sampling_rate": 16000,
    "n_code_groups": 2,
    "n_codes": 1024,
    "codebook_loss_lambda": 1.0,
    "commitment_loss_lambda": 0.25,
}
SMALL = {
    **OFFICIAL,
    "upsample_rates": [4, 2],
    "upsample_kernel_sizes": [8, 4],
    "upsample_initial_channel": 16,
    "resblock_kernel_sizes": [3, 5],
    "resblock_dilation_sizes": [[1, 3, 5], [1, 3, 5]],
    "n_codes": 16,
}

h = AttrDict(OFFICIAL)
layout = {
    name: {k: list(v.shape) for k, v in net(h).state_dict().items()}
    for name, net in (("generator", Generator), ("encoder", Encoder), ("quantizer", Quantizer))
}
(HERE / "layout_16k_320d.json").write_text(json.dumps(layout, indent=1) + "\n")

torch.manual_seed(0)
h = AttrDict(SMALL)
generator, quantizer = Generator(h).eval(), Quantizer(h).eval()
codes = torch.randint(0, SMALL["n_codes"], (2, 7, 4), generator=torch.Generator().manual_seed(1))
with torch.no_grad():
    audio = generator(quantizer.embed(codes))
torch.save(
    {
        "config": SMALL,
        "generator": generator.state_dict(),
        "quantizer": quantizer.state_dict(),
        "codes": codes,
        "audio": audio,
    },
    HERE / "decoder.pt",
)
