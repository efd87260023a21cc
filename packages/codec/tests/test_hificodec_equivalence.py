"""Our HiFi-Codec vs AcademiCodec's own modules on seeded random weights, encoder included.

AcademiCodec is not on PyPI; put a checkout on the path to run these tests::

    git clone https://github.com/yangdongchao/AcademiCodec /tmp/AcademiCodec
    PYTHONPATH=/tmp/AcademiCodec uv run --no-sync pytest packages/codec/tests/test_hificodec_equivalence.py

The reference modules (``Encoder``, ``Generator``, ``Quantizer`` of
``academicodec.models.hificodec.models``) are built from the released 16 kHz config, saved as a
``g_*`` checkpoint, and loaded through :meth:`HiFiCodec.from_official`.
"""

import importlib.util
import json

import pytest
import torch

from cadence.codec import HiFiCodec

pytestmark = pytest.mark.slow

if importlib.util.find_spec("academicodec") is None:
    pytest.skip(
        "AcademiCodec's source is not importable; put a checkout of "
        "github.com/yangdongchao/AcademiCodec on PYTHONPATH",
        allow_module_level=True,
    )

from academicodec.models.hificodec.env import AttrDict  # noqa: E402
from academicodec.models.hificodec.models import Encoder, Generator, Quantizer  # noqa: E402

# egs/HiFi-Codec-16k-320d/config_16k_320d.json, architecture keys
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


def test_codes_and_audio_equal_the_reference(tmp_path):
    torch.manual_seed(0)
    h = AttrDict(OFFICIAL)
    encoder, generator, quantizer = Encoder(h).eval(), Generator(h).eval(), Quantizer(h).eval()
    torch.save(
        {
            "generator": generator.state_dict(),
            "encoder": encoder.state_dict(),
            "quantizer": quantizer.state_dict(),
        },
        tmp_path / "HiFi-Codec-16k-320d",
    )
    (tmp_path / "config_16k_320d.json").write_text(json.dumps(OFFICIAL))
    ours = HiFiCodec.from_official(
        tmp_path / "HiFi-Codec-16k-320d", config=tmp_path / "config_16k_320d.json"
    )
    audio = (
        0.1 * torch.randn(2, 1, 16000 + 123, generator=torch.Generator().manual_seed(1))
    ).clamp(-1, 1)
    with torch.no_grad():
        # academicodec.models.hificodec.vqvae.VQVAE.encode / forward, on modules built above
        _, _, indices = quantizer(encoder(audio))
        ref_codes = torch.stack([i.reshape(2, -1) for i in indices], -1)
        ref_audio = generator(quantizer.embed(ref_codes))
    codes = ours.encode(audio)
    assert codes.shape == (2, 50, 4)
    assert len(codes.unique()) > 4
    assert torch.equal(codes, ref_codes)
    torch.testing.assert_close(ours.decode(codes), ref_audio, atol=1e-5, rtol=0)
