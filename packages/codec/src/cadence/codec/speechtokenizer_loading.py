"""Loading the official SpeechTokenizer checkpoint (``SpeechTokenizer.pt`` + ``config.json``).

The ``speechtokenizer`` package (1.0.1) saves a plain state dict with audiocraft's module
names and old-style weight norm; its ``config.json`` mixes model and training settings.
Only this module knows those names:

=====================================================  ================================================
official                                               Cadence
=====================================================  ================================================
``{encoder,decoder}.model.{i}.conv.conv.weight_g/_v``  ``...model.{i}.conv.parametrizations.weight.original0/1``
``decoder.model.{i}.convtr.convtr.*``                  ``decoder.model.{i}.conv.*``
``encoder.model.{i}.lstm.*`` (bidirectional)           unchanged
``quantizer.vq.layers.{i}._codebook.embed``            ``quantizer.codebooks[i]``
``transform.{weight,bias}``                            unchanged
=====================================================  ================================================

config.json: ``n_filters``, ``strides`` (decoder order), ``dimension`` (latent width),
``semantic_dimension``, ``bidirectional``, ``dilation_base``, ``residual_kernel_size``,
``n_residual_layers``, ``lstm_layers``, ``activation``, ``sample_rate``, ``codebook_size``,
``n_q``; the rest (learning rate, mel settings, ...) is training state and is ignored.
Files are read with ``torch.load(weights_only=True)``: a file whose pickle needs code is refused.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from cadence.core.checkpoint import CONFIG_NAME, CheckpointError

from .official_files import describe_keys, load_into, read_json, read_torch_file, refuse_cadence_dir
from .seanet import SEANetConfig
from .speechtokenizer import SpeechTokenizer, SpeechTokenizerConfig

__all__ = [
    "config_from_official",
    "from_official_state_dict",
    "load_official",
    "to_official_state_dict",
]

CHECKPOINT_NAME = "SpeechTokenizer.pt"
_HINT = (
    "pass SpeechTokenizer.pt with its config.json beside it, or the directory holding both "
    "(e.g. fnlp/SpeechTokenizer/speechtokenizer_hubert_avg)"
)
_REQUIRED = ("n_filters", "strides", "dimension", "codebook_size", "n_q")
_TRAINING_ONLY = ("inited", "cluster_size", "embed_avg")
_CODEBOOK = re.compile(r"quantizer\.vq\.layers\.(\d+)\._codebook\.(\w+)")


def config_from_official(
    data: dict[str, Any], *, where: str = CONFIG_NAME
) -> SpeechTokenizerConfig:
    """A :class:`SpeechTokenizerConfig` from the official ``config.json`` dict."""
    if "model_type" in data:
        raise CheckpointError(
            f"{where} describes a Hugging Face {data['model_type']!r} model, not SpeechTokenizer; "
            f"{_HINT}"
        )
    missing = [k for k in _REQUIRED if k not in data]
    if missing:
        raise CheckpointError(
            f"{where} is not a SpeechTokenizer config: it lacks {missing} (it has "
            f"{sorted(data)[:10]}); {_HINT}"
        )
    activation = data.get("activation", "ELU")
    if activation == "Snake":
        raise CheckpointError(
            f"{where}: the Snake activation is not supported (only torch.nn ones)"
        )
    seanet = SEANetConfig(
        n_filters=data["n_filters"],
        strides=tuple(reversed(data["strides"])),  # official: decoder order
        latent_dim=data["dimension"],
        dilation_base=data.get("dilation_base", 2),
        residual_kernel_size=data.get("residual_kernel_size", 3),
        n_residual_layers=data.get("n_residual_layers", 1),
        lstm=data.get("lstm_layers", 2),
        activation=activation,
        true_skip=False,
    )
    return SpeechTokenizerConfig(
        sample_rate=data.get("sample_rate", data.get("sampling_rate", 16000)),
        seanet=seanet,
        bidirectional=bool(data.get("bidirectional", False)),
        num_quantizers=data["n_q"],
        codebook_size=data["codebook_size"],
        semantic_dim=data.get("semantic_dimension", data["dimension"]),
    )


def _check_is_speechtokenizer(state: Any, where: str) -> dict[str, Tensor]:
    if not isinstance(state, dict):
        raise CheckpointError(f"{where} holds a {type(state).__name__}, not a state dict; {_HINT}")
    nested = sorted(k for k, v in state.items() if isinstance(v, dict))
    if nested:
        what = (
            "an AcademiCodec HiFi-Codec checkpoint (load it with HiFiCodec.from_official)"
            if {"generator", "encoder", "quantizer"} <= set(nested)
            else "a training checkpoint"
        )
        raise CheckpointError(f"{where} is {what}, holding sub-dicts {nested}; {_HINT}")
    if not all(isinstance(v, Tensor) for v in state.values()):
        raise CheckpointError(f"{where} holds values other than tensors; {_HINT}")
    keys = list(state)
    if "quantizer.codebooks" in state:
        raise CheckpointError(
            f"{where} holds Cadence weights without their config.json; load a Cadence "
            "checkpoint directory with load_pretrained(dir)"
        )
    if not any(_CODEBOOK.fullmatch(k) for k in keys) or not any(
        k.startswith("encoder.model.") for k in keys
    ):
        raise CheckpointError(
            f"{where} is not a SpeechTokenizer checkpoint: it holds {describe_keys(keys)}; {_HINT}"
        )
    return state


def from_official_state_dict(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """Rename an official state dict to our keys (and stack the codebooks)."""
    ours: dict[str, Tensor] = {}
    codebooks: dict[int, Tensor] = {}
    for key, value in state.items():
        if match := _CODEBOOK.fullmatch(key):
            if match[2] == "embed":
                codebooks[int(match[1])] = value
            elif match[2] not in _TRAINING_ONLY:
                raise CheckpointError(
                    f"unexpected quantizer entry {key!r} in a SpeechTokenizer checkpoint"
                )
            continue
        new = re.sub(r"\.(conv|convtr)\.(conv|convtr)\.", ".conv.", key)
        new = re.sub(r"\.weight_g$", ".parametrizations.weight.original0", new)
        ours[re.sub(r"\.weight_v$", ".parametrizations.weight.original1", new)] = value
    if sorted(codebooks) != list(range(len(codebooks))):
        raise CheckpointError(
            f"SpeechTokenizer codebooks are not numbered 0..n-1: {sorted(codebooks)}"
        )
    ours["quantizer.codebooks"] = torch.stack([codebooks[i] for i in range(len(codebooks))])
    return ours


def to_official_state_dict(model: SpeechTokenizer) -> dict[str, Tensor]:
    """Our weights under the official keys (the inverse of :func:`from_official_state_dict`)."""
    out: dict[str, Tensor] = {}
    for key, value in model.state_dict().items():
        value = value.detach().clone()
        if key == "quantizer.codebooks":
            for i, embed in enumerate(value):
                base = f"quantizer.vq.layers.{i}._codebook."
                out[base + "inited"] = torch.ones(1)
                out[base + "cluster_size"] = torch.ones(embed.shape[0])
                out[base + "embed"] = embed.clone()
                out[base + "embed_avg"] = embed.clone()
            continue
        key = key.replace(".parametrizations.weight.original0", ".weight_g")
        key = key.replace(".parametrizations.weight.original1", ".weight_v")
        if match := re.fullmatch(
            r"((?:encoder|decoder)\.model\.\d+(?:\.block\.\d+|\.shortcut)?)\.conv\.(.+)", key
        ):
            prefix, rest = match.groups()
            name = "convtr" if _is_transposed(model, prefix) else "conv"
            key = f"{prefix}.{name}.{name}.{rest}"
        out[key] = value
    return out


def _is_transposed(model: SpeechTokenizer, prefix: str) -> bool:
    from .conv import StreamableConvTranspose1d

    return isinstance(model.get_submodule(prefix), StreamableConvTranspose1d)


def _paths(path: Path, config: str | os.PathLike | None) -> tuple[Path, Path]:
    if not path.exists():
        raise CheckpointError(f"no such file or directory: {path}; {_HINT}")
    if path.is_dir():
        refuse_cadence_dir(path)
        checkpoint = path / CHECKPOINT_NAME
        if not checkpoint.is_file():
            found = sorted(p.name for p in path.glob("*.pt"))
            raise CheckpointError(f"{path} has no {CHECKPOINT_NAME} (.pt files: {found}); {_HINT}")
    else:
        checkpoint = path
    return checkpoint, Path(config) if config is not None else checkpoint.parent / CONFIG_NAME


def load_official(
    path: str | os.PathLike,
    *,
    config: str | os.PathLike | None = None,
    device: str | torch.device = "cpu",
) -> SpeechTokenizer:
    """Load an official SpeechTokenizer checkpoint. See :meth:`SpeechTokenizer.from_official`."""
    checkpoint, config_path = _paths(Path(path), config)
    model_config = config_from_official(read_json(config_path, hint=_HINT), where=str(config_path))
    state = _check_is_speechtokenizer(read_torch_file(checkpoint, hint=_HINT), str(checkpoint))
    if model_config.bidirectional and not any(k.endswith("_reverse") for k in state):
        raise CheckpointError(
            f"{checkpoint} has a one-directional encoder LSTM while {config_path} says "
            "bidirectional: it looks like an EnCodec checkpoint (load it with "
            "EnCodec.from_official) or the config belongs to another model"
        )
    model = SpeechTokenizer(model_config)
    load_into(model, from_official_state_dict(state), where=str(checkpoint), what="SpeechTokenizer")
    return model.eval().to(device)
