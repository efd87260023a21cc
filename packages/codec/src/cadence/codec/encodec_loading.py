"""Official EnCodec checkpoints <-> :class:`~cadence.codec.encodec.EnCodec`.

Two published layouts hold the same tensors under different names:

=====================  ============================================  =============================================
our key                original ``encodec_24khz-d7cc33bc.th``        Hugging Face ``facebook/encodec_24khz``
=====================  ============================================  =============================================
encoder.model.0.conv.  encoder.model.0.conv.conv.                    encoder.layers.0.conv.
decoder.model.3.conv.  decoder.model.3.convtr.convtr.                decoder.layers.3.conv.
encoder.model.0.norm.  encoder.model.0.conv.norm.                    encoder.layers.0.norm.
...parametrizations.   ...weight_g / weight_v (old torch weight norm)  either, depending on the transformers version
weight.original0/1
quantizer.codebooks    quantizer.vq.layers.{i}._codebook.embed       quantizer.layers.{i}.codebook.embed
=====================  ============================================  =============================================

The EMA statistics of the codebooks (``inited``, ``cluster_size``, ``embed_avg``) only matter
for training and are dropped. Files are read without unpickling code
(``torch.load(weights_only=True)`` or safetensors).
"""

from __future__ import annotations

import contextlib
import json
import os
import pickle
import re
import zipfile
from pathlib import Path
from typing import Any, Literal, NoReturn

import torch
from torch import Tensor

from cadence.core.checkpoint import CONFIG_NAME, CheckpointError

from .conv import StreamableConvTranspose1d
from .encodec import EnCodec, EnCodecConfig
from .seanet import SEANetConfig

__all__ = [
    "config_from_hf",
    "from_official_state_dict",
    "load_official",
    "to_official_state_dict",
]

Layout = Literal["original", "hf"]

_TRAINING_ONLY = ("inited", "cluster_size", "embed_avg")
_HINT = (
    "pass the original encodec_24khz-*.th file or a Hugging Face facebook/encodec_24khz directory "
    "(config.json + model.safetensors or pytorch_model.bin)"
)


def _weight_norm_to_ours(key: str) -> str:
    key = re.sub(r"\.weight_g$", ".parametrizations.weight.original0", key)
    return re.sub(r"\.weight_v$", ".parametrizations.weight.original1", key)


def _codebook_key(key: str, layout: Layout) -> tuple[int, str] | None:
    pattern = (
        r"quantizer\.vq\.layers\.(\d+)\._codebook\.(\w+)"
        if layout == "original"
        else r"quantizer\.layers\.(\d+)\.codebook\.(\w+)"
    )
    match = re.fullmatch(pattern, key)
    return (int(match.group(1)), match.group(2)) if match else None


def detect_layout(state: dict[str, Tensor], where: str) -> Layout:
    """Which published layout a state dict uses; CheckpointError when it is neither."""
    keys = list(state)
    if any(k.startswith("quantizer.vq.layers.") for k in keys) and any(
        k.startswith("encoder.model.") for k in keys
    ):
        return "original"
    if any(k.startswith("quantizer.layers.") for k in keys) and any(
        k.startswith("encoder.layers.") for k in keys
    ):
        return "hf"
    if "quantizer.codebooks" in state:
        raise CheckpointError(
            f"{where} holds Cadence EnCodec weights without their config.json; "
            "load a Cadence checkpoint directory with EnCodec.load_pretrained(dir)"
        )
    return _not_encodec(keys, where)


def _not_encodec(keys: list[str], where: str) -> NoReturn:
    prefixes = sorted({k.split(".")[0] for k in keys})[:8]
    raise CheckpointError(
        f"{where} is not an EnCodec checkpoint: it holds {len(keys)} tensors under "
        f"{prefixes} (e.g. {keys[:3]}); {_HINT}"
    )


def from_official_state_dict(state: dict[str, Tensor], layout: Layout) -> dict[str, Tensor]:
    """Rename an official state dict to our keys (and stack the codebooks)."""
    ours: dict[str, Tensor] = {}
    codebooks: dict[int, Tensor] = {}
    for key, value in state.items():
        level = _codebook_key(key, layout)
        if level is not None:
            index, name = level
            if name == "embed":
                codebooks[index] = value
            elif name not in _TRAINING_ONLY:
                raise CheckpointError(
                    f"unexpected quantizer entry {key!r} in an EnCodec checkpoint"
                )
            continue
        if layout == "original":
            new = re.sub(r"\.(conv|convtr)\.(conv|convtr)\.", ".conv.", key)
            new = re.sub(r"\.(conv|convtr)\.norm\.", ".norm.", new)
        else:
            new = re.sub(r"^(encoder|decoder)\.layers\.", r"\1.model.", key)
        ours[_weight_norm_to_ours(new)] = value
    if codebooks:
        if sorted(codebooks) != list(range(len(codebooks))):
            raise CheckpointError(f"EnCodec codebooks are not numbered 0..n-1: {sorted(codebooks)}")
        ours["quantizer.codebooks"] = torch.stack([codebooks[i] for i in range(len(codebooks))])
    return ours


def to_official_state_dict(
    model: EnCodec,
    layout: Layout = "original",
    *,
    weight_norm_names: Literal["g_v", "parametrizations"] = "g_v",
) -> dict[str, Tensor]:
    """Our weights under an official layout's keys (the inverse of :func:`from_official_state_dict`).

    Args:
        model: the model to export.
        layout: ``"original"`` (the ``encodec`` package's ``.th``) or ``"hf"`` (transformers).
        weight_norm_names: ``"g_v"`` writes ``weight_g`` / ``weight_v`` as the published files
            do; ``"parametrizations"`` keeps torch's newer ``parametrizations.weight.original*``.
    """
    out: dict[str, Tensor] = {}
    for key, value in model.state_dict().items():
        value = value.detach().clone()
        if key == "quantizer.codebooks":
            for i, embed in enumerate(value):
                if layout == "original":
                    base = f"quantizer.vq.layers.{i}._codebook."
                else:
                    base = f"quantizer.layers.{i}.codebook."
                out[base + "inited"] = torch.ones(1)
                out[base + "cluster_size"] = torch.ones(embed.shape[0])
                out[base + "embed"] = embed.clone()
                out[base + "embed_avg"] = embed.clone()
            continue
        if weight_norm_names == "g_v":
            key = key.replace(".parametrizations.weight.original0", ".weight_g")
            key = key.replace(".parametrizations.weight.original1", ".weight_v")
        match = re.fullmatch(r"((?:encoder|decoder)\.model\.[\d.a-z_]*?)\.(conv|norm)\.(.+)", key)
        if match is None:  # LSTM weights keep their names
            new = key
            if layout == "hf":
                new = re.sub(r"^(encoder|decoder)\.model\.", r"\1.layers.", new)
            out[new] = value
            continue
        prefix, kind, rest = match.groups()
        if layout == "original":
            module = model.get_submodule(prefix)
            name = "convtr" if isinstance(module, StreamableConvTranspose1d) else "conv"
            out[f"{prefix}.{name}.{'norm' if kind == 'norm' else name}.{rest}"] = value
        else:
            prefix = re.sub(r"^(encoder|decoder)\.model\.", r"\1.layers.", prefix)
            out[f"{prefix}.{kind}.{rest}"] = value
    return out


def config_from_hf(
    data: dict[str, Any], *, bandwidth: float = 6.0, where: str = "config.json"
) -> EnCodecConfig:
    """An :class:`EnCodecConfig` from a transformers ``EncodecConfig`` JSON dict."""
    model_type = data.get("model_type")
    if model_type != "encodec":
        raise CheckpointError(
            f"{where} describes a Hugging Face {model_type!r} model, not EnCodec; {_HINT}"
        )
    if data.get("normalize") or data.get("chunk_length_s"):
        raise CheckpointError(
            f"{where} is a chunked, loudness-normalized EnCodec (the 48 kHz model), which "
            "Cadence does not support yet; use the 24 kHz model (facebook/encodec_24khz)"
        )
    dim = data.get("hidden_size", 128)
    if data.get("codebook_dim") not in (None, dim):
        raise CheckpointError(
            f"{where}: codebook_dim {data['codebook_dim']} != hidden_size {dim} is not supported"
        )
    bandwidths = tuple(float(b) for b in data.get("target_bandwidths", (1.5, 3.0, 6.0, 12.0, 24.0)))
    config = EnCodecConfig(
        sample_rate=data.get("sampling_rate", 24000),
        seanet=_seanet_from_hf(data),
        codebook_size=data.get("codebook_size", 1024),
        target_bandwidths=bandwidths,
        bandwidth=bandwidth if bandwidth in bandwidths else bandwidths[0],
        n_codebooks=10_000,  # replaced below, once the frame rate is known
    )
    # transformers: num_quantizers = 1000 * max bandwidth // (ceil(frame rate) * 10).
    return config.replace(n_codebooks=config.quantizers_for(max(bandwidths)))


def _seanet_from_hf(data: dict[str, Any]) -> SEANetConfig:
    """transformers ``EncodecConfig`` names -> :class:`SEANetConfig` (defaults: the 24 kHz model)."""
    return SEANetConfig(
        channels=data.get("audio_channels", 1),
        latent_dim=data.get("hidden_size", 128),
        # upsampling_ratios are in decoder order; strides are in encoder order
        strides=tuple(reversed(data.get("upsampling_ratios", (8, 5, 4, 2)))),
        n_filters=data.get("num_filters", 32),
        n_residual_layers=data.get("num_residual_layers", 1),
        norm=data.get("norm_type", "weight_norm"),
        kernel_size=data.get("kernel_size", 7),
        residual_kernel_size=data.get("residual_kernel_size", 3),
        last_kernel_size=data.get("last_kernel_size", 7),
        dilation_base=data.get("dilation_growth_rate", 2),
        causal=data.get("use_causal_conv", True),
        pad_mode=data.get("pad_mode", "reflect"),
        true_skip=not data.get("use_conv_shortcut", True),
        compress=data.get("compress", 2),
        lstm=data.get("num_lstm_layers", 2),
        trim_right_ratio=float(data.get("trim_right_ratio", 1.0)),
    )


def _load_tensor_file(path: Path) -> dict[str, Tensor]:
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except (SafetensorError, OSError, ValueError) as err:
            raise CheckpointError(f"{path} is not a readable safetensors file ({err})") from err
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        # torch's message suggests weights_only=False, which would run whatever the file holds:
        # it is not passed on (nor chained).
        names = _pickled_globals(path, err)
        if names:
            raise CheckpointError(
                f"{path} holds Python objects besides tensors ({', '.join(names)}), and "
                "unpickling them can run code: it was refused and nothing in it ran (official "
                "EnCodec files hold only tensors; a training checkpoint also keeps its "
                f"experiment config this way); {_HINT}"
            ) from None
        raise CheckpointError(
            f"{path} is not a PyTorch checkpoint ({_unpickler_reason(err)}); {_HINT}"
        ) from None
    except (RuntimeError, EOFError, OSError, ValueError) as err:
        raise CheckpointError(f"{path} is not a PyTorch checkpoint ({err}); {_HINT}") from err
    if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
        raise CheckpointError(
            f"{path} holds a {type(state).__name__}, not a state dict of tensors; {_HINT}"
        )
    return state


_GLOBAL = re.compile(r"GLOBAL ([\w.]+)")


def _pickled_globals(path: Path, err: Exception) -> list[str]:
    """The Python globals a pickle refused by weights_only loading refers to (none: not a pickle)."""
    names = set(_GLOBAL.findall(str(err)))
    if zipfile.is_zipfile(path):
        # a damaged archive cannot be scanned: the error's own name is enough then
        with contextlib.suppress(Exception):
            names.update(torch.serialization.get_unsafe_globals_in_checkpoint(path))
    return sorted({n if "." in n else f"builtins.{n}" for n in names})


def _unpickler_reason(err: Exception) -> str:
    # The part of torch's message that says what is wrong, without its advice.
    match = re.search(r"Unpickler error:\s*(.+?)\s*(?:\n\s*\n|$)", str(err), re.S)
    return " ".join(match.group(1).split()) if match else "not a pickle"


def _config_from_original(state: dict[str, Tensor], bandwidth: float, where: str) -> EnCodecConfig:
    if any(".norm." in k for k in state):
        raise CheckpointError(
            f"{where} is the 48 kHz EnCodec (time group norm, chunked and loudness-normalized), "
            "which Cadence does not support yet; use encodec_24khz-d7cc33bc.th"
        )
    first = state.get(
        "encoder.model.0.conv.conv.weight_v", state.get("encoder.model.0.conv.conv.weight")
    )
    embed = state.get("quantizer.vq.layers.0._codebook.embed")
    if first is None or embed is None:
        _not_encodec(list(state), where)
    n_codebooks = sum(1 for k in state if k.endswith("._codebook.embed"))
    # The original files carry no config: everything but the channel count, codebook shape and
    # count is the published 24 kHz architecture (strict key/shape matching checks the rest).
    config = EnCodecConfig(
        codebook_size=embed.shape[0], n_codebooks=n_codebooks, bandwidth=bandwidth
    )
    return config.replace(
        seanet=config.seanet.replace(channels=first.shape[1], latent_dim=embed.shape[1])
    )


def _load_into(model: EnCodec, state: dict[str, Tensor], where: str) -> EnCodec:
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shapes = [
        f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
        for k in own.keys() & state.keys()
        if own[k].shape != state[k].shape
    ]
    if missing or unexpected or shapes:
        lines = [f"{where} does not match the EnCodec architecture it was detected as:"]
        if missing:
            lines.append(f"  missing ({len(missing)}): {missing[:6]}")
        if unexpected:
            lines.append(f"  unexpected ({len(unexpected)}): {unexpected[:6]}")
        if shapes:
            lines.append(f"  shape mismatches: {shapes[:6]}")
        raise CheckpointError("\n".join(lines))
    model.load_state_dict(state)
    return model.eval()


def load_official(
    path: str | os.PathLike, *, bandwidth: float = 6.0, device: str | torch.device = "cpu"
) -> EnCodec:
    """Load an official EnCodec checkpoint (original ``.th`` or Hugging Face directory). See
    :meth:`EnCodec.from_official`."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"no such file or directory: {path}; {_HINT}")
    if path.is_dir():
        config_path = path / CONFIG_NAME
        if not config_path.exists():
            raise CheckpointError(f"{path} has no {CONFIG_NAME}; {_HINT}")
        try:
            data = json.loads(config_path.read_text())
        except json.JSONDecodeError as err:
            raise CheckpointError(f"{config_path} is not valid JSON ({err})") from err
        if "format_version" in data and "class" in data:
            raise CheckpointError(
                f"{path} is a Cadence checkpoint of {data['class']}; load it with "
                f"{data['class'].rsplit('.', 1)[-1]}.load_pretrained({str(path)!r})"
            )
        config = config_from_hf(data, bandwidth=bandwidth, where=str(config_path))
        if bandwidth not in config.target_bandwidths:
            raise ValueError(
                f"bandwidth {bandwidth} kbps is not supported by this model; "
                f"choose one of {list(config.target_bandwidths)}"
            )
        for name in ("model.safetensors", "pytorch_model.bin"):
            if (path / name).exists():
                state = _load_tensor_file(path / name)
                break
        else:
            raise CheckpointError(
                f"{path} has no model.safetensors or pytorch_model.bin; the download is incomplete"
            )
        where = str(path)
        layout = detect_layout(state, where)
    else:
        state = _load_tensor_file(path)
        where = str(path)
        layout = detect_layout(state, where)
        if layout == "original":
            config = _config_from_original(state, bandwidth, where)
        else:
            raise CheckpointError(
                f"{path} holds Hugging Face EnCodec weights; pass the directory that also holds "
                "its config.json"
            )
    model = EnCodec(config)
    _load_into(model, from_official_state_dict(state, layout), where)
    return model.to(device)
