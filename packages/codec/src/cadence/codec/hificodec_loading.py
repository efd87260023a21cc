"""Loading AcademiCodec's released HiFi-Codec checkpoints (``g_*`` files, e.g. ``HiFi-Codec-16k-320d``).

A released file is ``torch.save({"generator": ..., "encoder": ..., "quantizer": ...})`` of
three state dicts with old-style weight norm (``weight_g`` / ``weight_v``). Our modules keep
AcademiCodec's names, so loading prefixes each network's keys and renames weight norm to
``parametrizations.weight.original0/1``. Its JSON config (``config_16k_320d.json``) mixes
model and training settings; only the architecture keys are read. Files are read with
``torch.load(weights_only=True)``: a file whose pickle needs code is refused.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from cadence.core.checkpoint import CheckpointError

from .hificodec import HiFiCodec, HiFiCodecConfig
from .official_files import describe_keys, load_into, read_json, read_torch_file

__all__ = [
    "config_from_official",
    "from_official_state_dict",
    "load_official",
    "to_official_state_dict",
]

NETWORKS = ("generator", "encoder", "quantizer")
_HINT = (
    "pass an AcademiCodec HiFi-Codec generator checkpoint (a g_* file such as HiFi-Codec-16k-320d, "
    "holding 'generator', 'encoder' and 'quantizer') and its config JSON"
)


def config_from_official(data: dict[str, Any], *, where: str = "config") -> HiFiCodecConfig:
    """A :class:`HiFiCodecConfig` from AcademiCodec's JSON config dict."""
    needed = ("upsample_rates", "upsample_kernel_sizes", "upsample_initial_channel", "n_codes")
    missing = [k for k in needed if k not in data]
    if missing:
        raise CheckpointError(
            f"{where} is not a HiFi-Codec config: it lacks {missing} (it has {sorted(data)[:10]}); {_HINT}"
        )
    base = HiFiCodecConfig()
    rates = tuple(data["upsample_rates"])
    return HiFiCodecConfig(
        # AcademiCodec's encoder widths are fixed, 32 * 2 ** i, ending at 512 after four
        # rates; with another count its encoder cannot be built, and ours starts wider.
        encoder_width=base.latent_dim >> len(rates),
        sample_rate=data.get("sampling_rate", base.sample_rate),
        upsample_rates=rates,
        upsample_kernel_sizes=tuple(data["upsample_kernel_sizes"]),
        upsample_initial_channel=data["upsample_initial_channel"],
        resblock=str(data.get("resblock", "1")),  # type: ignore[arg-type]  # checked by the config
        resblock_kernel_sizes=tuple(data.get("resblock_kernel_sizes", base.resblock_kernel_sizes)),
        resblock_dilation_sizes=tuple(
            tuple(d) for d in data.get("resblock_dilation_sizes", base.resblock_dilation_sizes)
        ),
        n_code_groups=data.get("n_code_groups", base.n_code_groups),
        codebook_size=data["n_codes"],
    )


def _check_is_hificodec(state: Any, where: str) -> dict[str, dict[str, Tensor]]:
    if not isinstance(state, dict):
        raise CheckpointError(
            f"{where} holds a {type(state).__name__}, not a checkpoint dict; {_HINT}"
        )
    keys = sorted(state)
    if {"mpd", "msd"} & set(keys) or "optim_g" in keys:
        raise CheckpointError(
            f"{where} is an AcademiCodec discriminator / optimizer checkpoint (a do_* file, holding "
            f"{keys}); {_HINT}"
        )
    if all(isinstance(v, Tensor) for v in state.values()):
        flat = list(state)
        what = (
            "a flat state dict of a SEANet codec (SpeechTokenizer or EnCodec layout)"
            if any(k.startswith("encoder.model.") for k in flat)
            else f"a flat state dict of {describe_keys(flat)}"
        )
        raise CheckpointError(f"{where} is {what}, not a HiFi-Codec checkpoint; {_HINT}")
    missing = [n for n in NETWORKS if not isinstance(state.get(n), dict)]
    if missing:
        raise CheckpointError(
            f"{where} lacks the {missing} state dict(s) (it holds {keys}); {_HINT}"
        )
    return {n: state[n] for n in NETWORKS}


def from_official_state_dict(state: dict[str, dict[str, Tensor]]) -> dict[str, Tensor]:
    """The three released state dicts as one dict under our keys."""
    ours = {}
    for network in NETWORKS:
        for key, value in state[network].items():
            key = re.sub(r"\.weight_g$", ".parametrizations.weight.original0", key)
            key = re.sub(r"\.weight_v$", ".parametrizations.weight.original1", key)
            ours[f"{network}.{key}"] = value
    return ours


def to_official_state_dict(model: HiFiCodec) -> dict[str, dict[str, Tensor]]:
    """Our weights in the released layout (the inverse of :func:`from_official_state_dict`)."""
    out: dict[str, dict[str, Tensor]] = {n: {} for n in NETWORKS}
    for key, value in model.state_dict().items():
        network, rest = key.split(".", 1)
        rest = rest.replace(".parametrizations.weight.original0", ".weight_g")
        rest = rest.replace(".parametrizations.weight.original1", ".weight_v")
        out[network][rest] = value.detach().clone()
    return out


def load_official(
    path: str | os.PathLike,
    *,
    config: str | os.PathLike | None = None,
    device: str | torch.device = "cpu",
) -> HiFiCodec:
    """Load a released HiFi-Codec checkpoint. See :meth:`HiFiCodec.from_official`."""
    path = Path(path)
    if path.is_dir():
        found = sorted(p.name for p in path.iterdir())[:10]
        raise CheckpointError(f"{path} is a directory (holding {found}); {_HINT}")
    model_config = (
        HiFiCodecConfig()
        if config is None
        else config_from_official(read_json(Path(config), hint=_HINT), where=str(config))
    )
    state = _check_is_hificodec(read_torch_file(path, hint=_HINT), str(path))
    model = HiFiCodec(model_config)
    load_into(model, from_official_state_dict(state), where=str(path), what="HiFi-Codec")
    return model.eval().to(device)
