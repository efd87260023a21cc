"""Self-describing model checkpoints: ``config.json`` + ``model.safetensors``.

A checkpoint directory holds everything needed to rebuild a model and nothing executable:

    my-model/
      config.json        {"class": "cadence.soundstorm.SoundStorm", "format_version": 2,
                          "config": {...}, "cadence_core_version": "0.1.0"}
      model.safetensors  the weights of the unwrapped module

No pickle is involved in saving or loading. Saving is atomic: the new checkpoint is
written into a sibling temporary directory, fsynced, and swapped in by renames, so a crash
at any point leaves either the previous checkpoint or the new one loadable (a crash between
the two renames is recovered by the next load). Loading is strict about keys, shapes and
the class the checkpoint was saved from.
"""

from __future__ import annotations

import importlib
import json
import math
import os
import re
from pathlib import Path
from typing import Any, TypeVar, cast, overload

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file, save_model
from torch import nn

from .config import Config, ConfigError, config_from_dict, upgrade_config_dict
from .io import atomic_directory, atomic_file, recover_directory

__all__ = [
    "CONFIG_NAME",
    "FORMAT_VERSION",
    "WEIGHTS_NAME",
    "CheckpointError",
    "PretrainedMixin",
    "halve_weights",
    "load_pretrained",
    "quantize_weights",
    "read_checkpoint_config",
    "save_pretrained",
    "unwrap_model",
]

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
# 2: training settings (losses, their weights, prompt sampling, condition dropout) moved out of
#    the model configs into train configs; format-1 configs are upgraded on load
#    (Config.upgrade_dict drops the keys that moved).
FORMAT_VERSION = 2

M = TypeVar("M", bound=nn.Module)

# torch's words for a size that no device could hold (on meta nothing is allocated, so only
# the size arithmetic can fail).
_IMPOSSIBLE_SIZE = re.compile(r"overflow|negative dimension|too large|invalid shape", re.I)
# Memory a model may hold beyond twice its stored weights (tables, caches, filterbanks).
_UNSTORED_ALLOWANCE = 1 << 30


class CheckpointError(ValueError):
    """A checkpoint is missing, corrupt, or holds another model than the one asked for."""


def unwrap_model(model: nn.Module) -> nn.Module:
    """Strip DDP / FSDP-style ``.module`` and ``torch.compile``'s ``_orig_mod`` wrappers."""
    while True:
        if hasattr(model, "_orig_mod"):
            model = cast(nn.Module, model._orig_mod)
        elif isinstance(model, (nn.parallel.DistributedDataParallel, nn.DataParallel)):
            model = model.module
        else:
            return model


def _qualified_name(cls: type) -> str:
    """The public import path of a class: its package's re-export when there is one."""
    module = cls.__module__
    # Prefer the shortest parent package that re-exports the class (cadence.soundstorm.SoundStorm
    # rather than cadence.soundstorm.soundstorm.SoundStorm), so refactors inside a package
    # do not invalidate checkpoints.
    parts = module.split(".")
    for i in range(2, len(parts)):
        parent = ".".join(parts[:i])
        try:
            if getattr(importlib.import_module(parent), cls.__qualname__, None) is cls:
                return f"{parent}.{cls.__qualname__}"
        except ImportError:
            continue
    return f"{module}.{cls.__qualname__}"


def save_pretrained(
    model: nn.Module,
    directory: str | os.PathLike,
    *,
    config: Config | None = None,
    metadata: dict[str, Any] | None = None,
) -> Path:
    """Save ``model`` (unwrapped) with its config as a checkpoint directory, atomically.

    Args:
        model: a module with a ``config`` attribute (a Config dataclass), or pass ``config``.
        directory: where the checkpoint goes; an existing checkpoint there is replaced.
        config: the config, when the model does not carry one.
        metadata: extra JSON-able information kept in config.json under "metadata"
            (training step, data description); never needed to rebuild the model.
    """
    model = unwrap_model(model)
    config = config if config is not None else getattr(model, "config", None)
    if config is None or not isinstance(config, Config):
        raise CheckpointError(
            f"{type(model).__name__} has no `config` (a cadence.core.config.Config dataclass); "
            "give one with save_pretrained(model, dir, config=...)"
        )
    from . import __version__

    header: dict[str, Any] = {
        "class": _qualified_name(type(model)),
        "config_class": _qualified_name(type(config)),
        "format_version": FORMAT_VERSION,
        "cadence_core_version": __version__,
        "config": config.to_dict(),
    }
    if metadata:
        header["metadata"] = metadata
    directory = Path(directory)
    with atomic_directory(directory) as tmp:
        (tmp / CONFIG_NAME).write_text(json.dumps(header, indent=2, sort_keys=True) + "\n")
        # save_model handles tied/shared tensors (they are stored once and re-tied on load).
        save_model(
            model, str(tmp / WEIGHTS_NAME), metadata={"format": "pt", "class": header["class"]}
        )
    return directory


def halve_weights(directory: str | os.PathLike) -> int:
    """Store a checkpoint's float32 weights as float16 (for shipping); returns the bytes saved.

    :func:`load_pretrained` casts them back into the model's float32 parameters. A tensor
    whose values do not fit float16 (e.g. large running sums) stays float32. The file is
    rewritten atomically; a checkpoint already halved is left as it is (0 is returned).
    """
    path = Path(directory) / WEIGHTS_NAME
    before = path.stat().st_size
    with safe_open(str(path), "pt") as f:
        metadata = dict(f.metadata() or {})
    if metadata.get("stored_dtype") == "float16":
        return 0
    state = load_file(str(path))
    limit = torch.finfo(torch.float16).max
    for name, tensor in state.items():
        if tensor.dtype == torch.float32 and (
            tensor.numel() == 0 or float(tensor.abs().max()) < limit
        ):
            state[name] = tensor.half()
    with atomic_file(path) as tmp:
        save_file(state, str(tmp), metadata={**metadata, "stored_dtype": "float16"})
    return before - path.stat().st_size


# Blockwise int8 storage (the scheme of bitsandbytes' blockwise quantization, Dettmers et al.
# 2022, arXiv 2110.02861): each run of BLOCK consecutive values shares one float16 absmax
# scale, so an outlier costs precision only inside its own block. Written here rather than
# taken from bitsandbytes, whose CPU build is a heavy native dependency for ~30 lines; the
# weights are dequantized to float32 on load (storage only, not int8 inference).
_QUANT_BLOCK = 64
_SCALE_SUFFIX = ".__int8_scales"


def quantize_weights(directory: str | os.PathLike, *, min_numel: int = 4096) -> int:
    """Store a checkpoint's large float tensors as blockwise int8 (for shipping); bytes saved.

    Tensors with at least ``min_numel`` values (weight matrices, convolutions, embeddings,
    codebooks) become int8 with one float16 scale per 64 values (about 0.2% of each block's
    largest value as rounding error); the other float tensors become float16 where they fit
    (as :func:`halve_weights`). :func:`load_pretrained` restores float32 tensors, so a
    quantized checkpoint loads like any other. The file is rewritten atomically; a checkpoint
    already quantized is left as it is (0 is returned).
    """
    path = Path(directory) / WEIGHTS_NAME
    before = path.stat().st_size
    with safe_open(str(path), "pt") as f:
        metadata = dict(f.metadata() or {})
    if metadata.get("stored_dtype") == "int8":
        return 0
    state = load_file(str(path))
    limit = torch.finfo(torch.float16).max
    out: dict[str, torch.Tensor] = {}
    for name, tensor in state.items():
        if not tensor.is_floating_point() or tensor.numel() == 0:
            out[name] = tensor
        elif tensor.numel() >= min_numel and bool(torch.isfinite(tensor).all()):
            out[name], out[name + _SCALE_SUFFIX] = _quantize_blocks(tensor.float())
        elif tensor.dtype == torch.float32 and float(tensor.abs().max()) < limit:
            out[name] = tensor.half()
        else:
            out[name] = tensor
    with atomic_file(path) as tmp:
        save_file(out, str(tmp), metadata={**metadata, "stored_dtype": "int8"})
    return before - path.stat().st_size


def _quantize_blocks(tensor: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    flat = tensor.reshape(-1)
    pad = (-flat.numel()) % _QUANT_BLOCK
    blocks = torch.cat([flat, flat.new_zeros(pad)]).view(-1, _QUANT_BLOCK)
    scales = (blocks.abs().amax(dim=1) / 127).clamp_min(torch.finfo(torch.float16).tiny).half()
    codes = torch.round(blocks / scales.float()[:, None]).clamp(-127, 127).to(torch.int8)
    return codes.view(-1)[: flat.numel()].view(tensor.shape), scales


def _dequantize(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Undo :func:`quantize_weights`: int8 blocks times their scales, as float32."""
    for key in [k for k in state if k.endswith(_SCALE_SUFFIX)]:
        scales = state.pop(key).float()
        name = key.removesuffix(_SCALE_SUFFIX)
        codes = state[name]
        if codes.dtype != torch.int8 or scales.numel() != -(-codes.numel() // _QUANT_BLOCK):
            raise CheckpointError(f"quantized tensor {name!r} does not match its scales")
        flat = codes.reshape(-1).float()
        flat = torch.cat([flat, flat.new_zeros((-flat.numel()) % _QUANT_BLOCK)])
        values = (flat.view(-1, _QUANT_BLOCK) * scales[:, None]).view(-1)
        state[name] = values[: codes.numel()].view(codes.shape)
    return state


def read_checkpoint_config(directory: str | os.PathLike) -> dict[str, Any]:
    """The parsed ``config.json`` of a checkpoint directory (class, version, config)."""
    directory = Path(directory)
    recover_directory(directory)  # a save interrupted after moving the previous one aside
    if not directory.exists():
        raise CheckpointError(f"checkpoint not found: {directory}")
    if not directory.is_dir():
        raise CheckpointError(
            f"{directory} is a file; a Cadence checkpoint is a directory holding "
            f"{CONFIG_NAME} and {WEIGHTS_NAME}"
        )
    path = directory / CONFIG_NAME
    if not path.exists():
        raise CheckpointError(
            f"{directory} has no {CONFIG_NAME}; it is not a Cadence checkpoint "
            "(official third-party checkpoints have their own loaders, e.g. EnCodec.from_official)"
        )
    try:
        header = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise CheckpointError(
            f"{path} is not valid JSON ({err}); the checkpoint is corrupt"
        ) from err
    if not isinstance(header, dict):
        raise CheckpointError(
            f"{path} holds a JSON {type(header).__name__}, not an object; it is not a Cadence checkpoint"
        )
    for key in ("class", "format_version", "config"):
        if key not in header:
            raise CheckpointError(f"{path} lacks {key!r}; it is not a Cadence checkpoint")
    version = header["format_version"]
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise CheckpointError(
            f"{path}: format_version must be a whole number >= 1, got {version!r}; the checkpoint is corrupt"
        )
    if version > FORMAT_VERSION:
        raise CheckpointError(
            f"{directory} uses checkpoint format {version}, newer than this "
            f"cadence-core understands ({FORMAT_VERSION}); upgrade cadence-core"
        )
    if not isinstance(header["class"], str) or not isinstance(header["config"], dict):
        raise CheckpointError(
            f"{path}: 'class' must be a string and 'config' an object; the checkpoint is corrupt"
        )
    return header


def _import_class(path: str) -> type:
    # Only classes in the cadence namespace are imported by name: a checkpoint must not be
    # able to make us import arbitrary modules.
    if not path.startswith("cadence."):
        raise CheckpointError(
            f"checkpoint names class {path!r} outside the cadence namespace; "
            "pass the model class explicitly: load_pretrained(dir, cls=YourModel)"
        )
    module, _, name = path.rpartition(".")
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as err:
        raise CheckpointError(
            f"the checkpoint holds a {path}, which is not importable here ({err}); "
            "install the package that provides it"
        ) from err


@overload
def load_pretrained(
    directory: str | os.PathLike,
    cls: type[M],
    *,
    device: str | torch.device = "cpu",
    strict: bool = True,
) -> M: ...
@overload
def load_pretrained(
    directory: str | os.PathLike,
    cls: None = None,
    *,
    device: str | torch.device = "cpu",
    strict: bool = True,
) -> nn.Module: ...
def load_pretrained(
    directory: str | os.PathLike,
    cls: type[M] | None = None,
    *,
    device: str | torch.device = "cpu",
    strict: bool = True,
) -> M | nn.Module:
    """Rebuild a model from a checkpoint directory.

    Args:
        directory: a directory written by :func:`save_pretrained`.
        cls: the expected model class. The checkpoint must have been saved from it (or a
            subclass); loading another model's checkpoint raises a CheckpointError naming both.
            When omitted, the class recorded in config.json is imported (cadence classes only).
        device: where the weights go.
        strict: every parameter/buffer must be present with the same shape, and no extra.
    """
    directory = Path(directory)
    header = read_checkpoint_config(directory)
    saved_name = header["class"]
    if cls is None:
        cls = _import_class(saved_name)
    else:
        expected = _qualified_name(cls)
        # Accept the class itself or a saved subclass whose name we can import and check.
        ok = saved_name == expected or saved_name.rsplit(".", 1)[-1] == cls.__qualname__
        if not ok:
            try:
                saved = _import_class(saved_name)
            except CheckpointError:
                saved = None
            # A name that is not a class (a module, a function) is simply another thing.
            ok = isinstance(saved, type) and issubclass(saved, cls)
        if not ok:
            raise CheckpointError(
                f"{directory} holds a {saved_name} checkpoint, not a {expected}; "
                f"load it with {saved_name.rsplit('.', 1)[-1]}.load_pretrained"
            )
    if not isinstance(cls, type) or not issubclass(cls, nn.Module):
        raise CheckpointError(f"{directory} names {saved_name}, which is not a model class")
    config_class = getattr(cls, "config_class", None)
    if not (isinstance(config_class, type) and issubclass(config_class, Config)):
        raise CheckpointError(
            f"{cls.__name__} has no `config_class` (a Config dataclass); it cannot be rebuilt from config.json"
        )
    data = header["config"]
    try:
        if header["format_version"] < FORMAT_VERSION:
            data = upgrade_config_dict(config_class, data, header["format_version"])
        config = config_from_dict(config_class, data)
    except (ConfigError, KeyError, TypeError, ValueError) as err:
        # An upgrade hook or a config of another class (the "class" entry was edited) fails
        # here; the message names the file and the class it claims to hold.
        raise CheckpointError(
            f"{directory / CONFIG_NAME}: its config is not a valid {config_class.__name__} "
            f"(the checkpoint says it holds a {saved_name}): {err}"
        ) from err
    weights = directory / WEIGHTS_NAME
    if not weights.exists():
        raise CheckpointError(f"{directory} has no {WEIGHTS_NAME}; the checkpoint is incomplete")
    shapes = _stored_shapes(weights)
    _check_shapes_before_building(cls, config, shapes, where=str(directory))
    model = cls(config)
    try:
        state = _dequantize(load_file(str(weights), device=str(device)))
    except (SafetensorError, OSError, ValueError) as err:
        raise CheckpointError(f"{weights} is corrupt or truncated ({err})") from err
    upgrade = getattr(cls, "upgrade_state_dict", None)
    if upgrade is not None and header["format_version"] < FORMAT_VERSION:
        state = upgrade(state, header["format_version"])
    _load_state(model, state, strict=strict, where=str(directory))
    return model.to(device)


def _stored_shapes(weights: Path) -> dict[str, tuple[int, ...]]:
    """Tensor shapes from a safetensors header, without reading the data."""
    try:
        with safe_open(str(weights), "pt") as f:
            return {name: tuple(f.get_slice(name).get_shape()) for name in f.keys()}  # noqa: SIM118 (safe_open is not iterable)
    except (SafetensorError, OSError, ValueError) as err:
        raise CheckpointError(f"{weights} is corrupt or truncated ({err})") from err


def _check_shapes_before_building(
    cls: type, config: Config, shapes: dict[str, tuple[int, ...]], *, where: str
) -> None:
    """Refuse a config that does not describe the stored weights, before allocating anything.

    The model is built on the meta device (shapes, no memory), so a tampered config asking
    for a 10^11-entry codebook is refused by comparing shapes, not by running out of memory.
    Tensors that are not stored (non-persistent buffers) are bounded too: the model may not
    need much more memory than its weights file holds.
    """
    try:
        with torch.device("meta"):
            skeleton = cls(config)
    except (RuntimeError, ValueError) as err:
        if _IMPOSSIBLE_SIZE.search(str(err)):
            raise CheckpointError(
                f"checkpoint {where}: its {CONFIG_NAME} asks for tensors too large to exist "
                f"({err}); the config was edited or is corrupt"
            ) from err
        return  # a model whose __init__ cannot run on meta: checked after loading
    except Exception:
        return
    own = {k: tuple(v.shape) for k, v in skeleton.state_dict().items()}
    wrong = [
        f"{k}: checkpoint {shapes[k]} vs config {own[k]}"
        for k in own.keys() & shapes.keys()
        if own[k] != shapes[k]
    ]
    if wrong:
        raise CheckpointError(
            f"checkpoint {where}: its {CONFIG_NAME} does not describe its weights, {len(wrong)} shape "
            f"mismatches: {wrong[:5]}; the config was edited or belongs to other weights"
        )
    needed = sum(
        t.numel() * t.element_size()
        for t in (*skeleton.parameters(), *skeleton.buffers())  # buffers include non-persistent
    )
    stored = sum(math.prod(shape) for shape in shapes.values()) * 4  # float32 upper bound
    if needed > 2 * stored + _UNSTORED_ALLOWANCE:
        raise CheckpointError(
            f"checkpoint {where}: its {CONFIG_NAME} builds a model of {needed / 2**30:.1f} GiB "
            f"from {stored / 2**30:.3f} GiB of weights; the config was edited or is corrupt"
        )


def _load_state(
    model: nn.Module, state: dict[str, torch.Tensor], *, strict: bool, where: str
) -> None:
    own = model.state_dict()
    # Tied tensors are stored once by save_model; fill the aliases from their twin.
    aliases = _shared_aliases(model)
    for name, twin in aliases.items():
        if name not in state and twin in state:
            state[name] = state[twin]
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shape_errors = [
        f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
        for k in own.keys() & state.keys()
        if own[k].shape != state[k].shape
    ]
    if strict and (missing or unexpected or shape_errors):
        lines = [f"checkpoint {where} does not match {type(model).__name__}:"]
        if missing:
            lines.append(f"  missing keys ({len(missing)}): {missing[:10]}")
        if unexpected:
            lines.append(f"  unexpected keys ({len(unexpected)}): {unexpected[:10]}")
        if shape_errors:
            lines.append(f"  shape mismatches: {shape_errors[:10]}")
        lines.append("  (was it saved from another version or config of this model?)")
        raise CheckpointError("\n".join(lines))
    if shape_errors:
        raise CheckpointError(f"checkpoint {where}: shape mismatches {shape_errors[:10]}")
    model.load_state_dict(state, strict=strict)


def _shared_aliases(model: nn.Module) -> dict[str, str]:
    """Names of state entries that share storage with an earlier entry -> that entry."""
    seen: dict[tuple[int, int, tuple[int, ...]], str] = {}
    aliases = {}
    for name, tensor in model.state_dict(keep_vars=False).items():
        key = (tensor.untyped_storage().data_ptr(), tensor.storage_offset(), tuple(tensor.shape))
        if key in seen and tensor.numel() > 0:
            aliases[name] = seen[key]
        else:
            seen[key] = name
    return aliases


class PretrainedMixin:
    """``save_pretrained`` / ``load_pretrained`` for a module built from ``config_class``.

    A model sets ``config_class = ItsConfig``, takes the config as its only ``__init__``
    argument and stores it as ``self.config``. A model whose parameter names changed between
    checkpoint formats overrides :meth:`upgrade_state_dict`.
    """

    config_class: type[Config]

    @classmethod
    def upgrade_state_dict(
        cls, state: dict[str, torch.Tensor], from_version: int
    ) -> dict[str, torch.Tensor]:
        """Rename or drop weights saved by checkpoint format ``from_version`` (default: as is)."""
        return state

    def save_pretrained(self, directory: str | os.PathLike, **kwargs: Any) -> Path:
        return save_pretrained(self, directory, **kwargs)  # type: ignore[arg-type]

    @classmethod
    def load_pretrained(  # type: ignore[misc]  # the mixin only ever completes an nn.Module
        cls: type[M],
        directory: str | os.PathLike,
        *,
        device: str | torch.device = "cpu",
        strict: bool = True,
    ) -> M:
        return load_pretrained(directory, cls, device=device, strict=strict)
