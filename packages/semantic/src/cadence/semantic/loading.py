"""Load HuBERT weights from fairseq ``.pt`` files, Hugging Face directories and Cadence checkpoints.

No fairseq, omegaconf or transformers import is needed. A fairseq checkpoint is a pickle
holding ``{"model": state_dict, "cfg": DictConfig}`` (newer) or ``{"args": Namespace}``
(older). Unpickling can run arbitrary code, so loading goes through torch's
``weights_only`` unpickler; the config classes that fairseq files hold (omegaconf containers
and nodes, ``argparse.Namespace``) are admitted as inert stand-ins that only collect their
state (omegaconf is never imported), and any other global is refused with an error naming it.
``allow_unsafe_pickle=True`` loads with ``weights_only=False`` for files you trust.

Key layouts (fairseq ``HubertModel`` -> ours):

    feature_extractor.conv_layers.{i}.0.weight          conv_layers.{i}.conv.weight
    feature_extractor.conv_layers.0.2.{weight,bias}     conv_layers.0.norm.*   (group norm, base)
    feature_extractor.conv_layers.{i}.2.1.{weight,bias} conv_layers.{i}.norm.* (layer norm, large)
    layer_norm.*, post_extract_proj.*                   feature_norm.*, feature_proj.*
    encoder.pos_conv.0.{weight_g,weight_v,bias}         pos_conv.{weight_g,weight_v,bias}
      (newer fairseq: encoder.pos_conv.0.parametrizations.weight.original{0,1})
    encoder.layers.{n}.{self_attn.*,self_attn_layer_norm.*,fc1.*,fc2.*,final_layer_norm.*}  layers.{n}.*
    encoder.layer_norm.*                                layer_norm.*
    mask_emb, label_embs_concat, final_proj.*           dropped (pre-training heads)

Hugging Face ``HubertModel`` -> ours: ``feature_extractor.conv_layers.{i}.conv`` / ``.layer_norm``,
``feature_projection.{layer_norm,projection}``, ``encoder.pos_conv_embed.conv.*``,
``encoder.layers.{n}.attention.*`` / ``.layer_norm`` / ``.feed_forward.{intermediate,output}_dense``
/ ``.final_layer_norm``, ``encoder.layer_norm``.
"""

from __future__ import annotations

import argparse
import ast
import collections
import json
import os
import pickle
import re
import typing
import zipfile
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from cadence.core.checkpoint import CONFIG_NAME, CheckpointError, load_pretrained

from .hubert import Hubert, HubertConfig

__all__ = [
    "UnsafeCheckpointError",
    "fairseq_to_cadence_state",
    "hf_to_cadence_state",
    "load_hubert",
    "read_fairseq_checkpoint",
]


class UnsafeCheckpointError(CheckpointError):
    """A pickled checkpoint references code that safe loading does not admit."""


# -- safe unpickling of fairseq files ------------------------------------------------------


class _StandIn(dict):
    """An inert object in place of a pickled config class: it only records what it is given.

    It subclasses dict so that pickle's SETITEMS on it (defaultdict, dict subclasses) works.
    """

    _global_name = "?"
    args: tuple[Any, ...]
    state: Any

    def __new__(cls, *args, **kwargs):
        inst = super().__new__(cls)
        inst.args = args
        inst.state = None
        return inst

    def __init__(self, *args, **kwargs):  # never forward arguments to dict
        pass

    def __setstate__(self, state: Any) -> None:
        self.state = state

    def __reduce__(self):  # pragma: no cover - stand-ins are never re-pickled
        raise pickle.PicklingError("stand-ins for checkpoint config classes cannot be pickled")


def _stand_in(full_name: str) -> type:
    module, _, name = full_name.rpartition(".")
    return type(name, (_StandIn,), {"_global_name": full_name, "__module__": module})


# Globals a fairseq checkpoint's config may name, and what stands in for each. Builtin types
# used as values (omegaconf records ``object_type=dict``) are admitted as themselves: calling
# them builds plain data and nothing else.
_ADMITTED_BUILTINS: dict[str, Any] = {
    "builtins.dict": dict,
    "builtins.list": list,
    "builtins.tuple": tuple,
    "builtins.frozenset": frozenset,
    "builtins.str": str,
    "builtins.int": int,
    "builtins.float": float,
    "builtins.bool": bool,
    "builtins.bytes": bytes,
    "builtins.object": object,
    "collections.defaultdict": collections.defaultdict,
    "typing.Any": typing.Any,
}
_KNOWN_CONFIG_GLOBALS = (
    "argparse.Namespace",
    "omegaconf.dictconfig.DictConfig",
    "omegaconf.listconfig.ListConfig",
    "omegaconf.base.ContainerMetadata",
    "omegaconf.base.Metadata",
    "omegaconf.nodes.AnyNode",
    "omegaconf.nodes.StringNode",
    "omegaconf.nodes.IntegerNode",
    "omegaconf.nodes.FloatNode",
    "omegaconf.nodes.BooleanNode",
    "omegaconf.nodes.EnumNode",
    "omegaconf.nodes.BytesNode",
    "omegaconf.nodes.PathNode",
)


def _is_admitted(full_name: str) -> bool:
    return (
        full_name in _ADMITTED_BUILTINS
        or full_name == "argparse.Namespace"
        or full_name.split(".", 1)[0] == "omegaconf"
    )


def _safe_globals(names: typing.Iterable[str]) -> list[tuple[Any, str]]:
    entries = []
    for name in sorted(set(names) | set(_KNOWN_CONFIG_GLOBALS) | set(_ADMITTED_BUILTINS)):
        obj = _ADMITTED_BUILTINS.get(name)
        entries.append((obj if obj is not None else _stand_in(name), name))
    return entries


_GLOBAL_IN_ERROR = re.compile(r"GLOBAL ([\w.]+)")


def _unsafe_error(path: Path, name: str) -> UnsafeCheckpointError:
    return UnsafeCheckpointError(
        f"{path} references the Python global {name!r}, which safe loading does not admit "
        "(unpickling it could run arbitrary code). Only tensors and the config classes of "
        "fairseq checkpoints (omegaconf containers, argparse.Namespace) load safely. If you "
        "trust this file, pass allow_unsafe_pickle=True (torch.load(weights_only=False); it "
        "needs the libraries the file refers to, e.g. omegaconf)."
    )


def _torch_load_safe(path: Path) -> Any:
    """``torch.load(weights_only=True)``, admitting fairseq config classes as stand-ins."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        first_error = err
    names: set[str] = set()
    if zipfile.is_zipfile(path):
        names = set(torch.serialization.get_unsafe_globals_in_checkpoint(path))
        refused = sorted(n for n in names if not _is_admitted(n))
        if refused:
            raise _unsafe_error(path, refused[0]) from first_error
    # Legacy (non-zip) files cannot be scanned up front: admit what each error names, if allowed.
    for _ in range(64):
        try:
            with torch.serialization.safe_globals(_safe_globals(names)):  # type: ignore[arg-type]  # list invariance
                return torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as err:
            match = _GLOBAL_IN_ERROR.search(str(err))
            if match is None:
                raise UnsafeCheckpointError(
                    f"{path} could not be loaded safely ({err}). If you trust this file, pass "
                    "allow_unsafe_pickle=True (torch.load(weights_only=False))."
                ) from err
            name = match.group(1)
            if "." not in name:
                name = f"builtins.{name}"
            if not _is_admitted(name) or name in names:
                raise _unsafe_error(path, name) from err
            names.add(name)
    raise UnsafeCheckpointError(f"{path}: too many distinct globals to admit safely")


def _plain(obj: Any, depth: int = 0) -> Any:
    """Stand-ins and containers -> plain dicts, lists and scalars."""
    if depth > 64:
        raise CheckpointError("checkpoint config nests too deeply")
    if isinstance(obj, argparse.Namespace):
        return {k: _plain(v, depth + 1) for k, v in vars(obj).items()}
    if isinstance(obj, _StandIn):
        state = obj.state
        if isinstance(state, tuple) and len(state) == 2 and isinstance(state[0], dict | type(None)):
            state = {**(state[0] or {}), **(state[1] or {})}
        if obj._global_name == "argparse.Namespace":
            return {k: _plain(v, depth + 1) for k, v in (state or {}).items()}
        if isinstance(state, dict):
            if "_content" in state:  # omegaconf DictConfig / ListConfig
                return _plain(state["_content"], depth + 1)
            if "_val" in state:  # omegaconf value node
                return _plain(state["_val"], depth + 1)
            return {k: _plain(v, depth + 1) for k, v in state.items() if not k.startswith("_")}
        if obj.args:  # an enum member rebuilt as EnumClass(value)
            return _plain(obj.args[0], depth + 1)
        return {k: _plain(v, depth + 1) for k, v in dict.items(obj)}
    if isinstance(obj, dict):
        return {k: _plain(v, depth + 1) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_plain(v, depth + 1) for v in obj]
    return obj


# -- fairseq -------------------------------------------------------------------------------


def _eval_conv_spec(spec: Any) -> tuple[tuple[int, int, int], ...]:
    """fairseq's ``conv_feature_layers`` string, evaluated without ``eval``.

    The string is a Python expression of lists of ``(dim, kernel, stride)`` tuples joined by
    ``+`` and repeated by ``*``, e.g. ``"[(512,10,5)] + [(512,3,2)] * 4 + [(512,2,2)] * 2"``.
    """
    if isinstance(spec, list | tuple):
        return tuple(tuple(int(v) for v in layer) for layer in spec)  # type: ignore[misc]  # (dim, kernel, stride)

    def value(node: ast.AST) -> Any:
        if isinstance(node, ast.Constant) and isinstance(node.value, int):
            return node.value
        if isinstance(node, ast.List | ast.Tuple):
            items = [value(e) for e in node.elts]
            return items if isinstance(node, ast.List) else tuple(items)
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add | ast.Mult):
            left, right = value(node.left), value(node.right)
            return left + right if isinstance(node.op, ast.Add) else left * right
        raise CheckpointError(
            f"conv_feature_layers {spec!r}: unsupported expression {ast.dump(node)}"
        )

    try:
        tree = ast.parse(str(spec), mode="eval")
    except SyntaxError as err:
        raise CheckpointError(f"conv_feature_layers {spec!r} is not a valid expression") from err
    layers = value(tree.body)
    if not isinstance(layers, list) or not all(
        isinstance(x, tuple) and len(x) == 3 for x in layers
    ):
        raise CheckpointError(
            f"conv_feature_layers {spec!r} is not a list of (dim, kernel, stride)"
        )
    return tuple(tuple(int(v) for v in layer) for layer in layers)  # type: ignore[misc]  # triples, checked above


_FAIRSEQ_DEFAULTS = {
    "extractor_mode": "default",
    "encoder_layers": 12,
    "encoder_embed_dim": 768,
    "encoder_ffn_embed_dim": 3072,
    "encoder_attention_heads": 12,
    "activation_fn": "gelu",
    "layer_norm_first": False,
    "conv_feature_layers": "[(512,10,5)] + [(512,3,2)] * 4 + [(512,2,2)] * 2",
    "conv_bias": False,
    "conv_pos": 128,
    "conv_pos_groups": 16,
    "normalize": False,
    "sample_rate": 16000,
}


def read_fairseq_checkpoint(
    path: str | os.PathLike, *, allow_unsafe_pickle: bool = False
) -> tuple[dict[str, Tensor], dict[str, Any], dict[str, Any]]:
    """Read a fairseq checkpoint: ``(state_dict, model_cfg, task_cfg)`` as plain data."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    if path.is_dir():
        raise CheckpointError(f"{path} is a directory; a fairseq checkpoint is one .pt file")
    if allow_unsafe_pickle:
        raw = torch.load(path, map_location="cpu", weights_only=False)
    else:
        try:
            raw = _torch_load_safe(path)
        except UnsafeCheckpointError:
            raise
        except (RuntimeError, EOFError, OSError, pickle.UnpicklingError, zipfile.BadZipFile) as err:
            raise CheckpointError(f"{path} is not a readable torch checkpoint ({err})") from err
    if not isinstance(raw, dict) or "model" not in raw:
        what = (
            f"a dict with keys {sorted(map(str, raw))[:8]}"
            if isinstance(raw, dict)
            else type(raw).__name__
        )
        raise CheckpointError(
            f"{path} holds {what}, not a fairseq checkpoint (a dict with 'model' and 'cfg' or "
            "'args'); for a Hugging Face model pass its directory, for a Cadence checkpoint its directory"
        )
    state = raw["model"]
    if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
        raise CheckpointError(f"{path}: 'model' is not a state dict of tensors")
    if raw.get("cfg") is not None:
        cfg = _plain(raw["cfg"])
        model_cfg, task_cfg = dict(cfg.get("model") or {}), dict(cfg.get("task") or {})
    elif raw.get("args") is not None:
        args = _plain(raw["args"])
        model_cfg, task_cfg = dict(args), dict(args)
        model_cfg.setdefault("_name", args.get("arch"))
    else:
        raise CheckpointError(
            f"{path} has weights but no 'cfg' or 'args'; cannot tell the architecture"
        )
    return state, model_cfg, task_cfg


def _describe_foreign(keys: list[str]) -> str:
    joined = " ".join(keys[:200])
    guesses = [
        (
            "w2v_encoder.",
            "a fine-tuned (CTC) wav2vec 2.0 / HuBERT model; extract its w2v_encoder.w2v_model",
        ),
        ("quantizer.", "wav2vec 2.0 (it has a quantizer)"),
        ("decoder.embed_tokens", "a fairseq text/translation model"),
        ("encoder.model.", "an EnCodec model"),
        ("hubert.", "a Hugging Face HubertFor* model saved as a .pt"),
    ]
    for marker, what in guesses:
        if marker in joined:
            return what
    return f"an unknown model (keys like {keys[:5]})"


def fairseq_config(
    model_cfg: dict[str, Any], task_cfg: dict[str, Any], **changes: Any
) -> HubertConfig:
    """A :class:`HubertConfig` from a fairseq checkpoint's model and task config."""

    def get(name: str, cfg: dict[str, Any] = model_cfg) -> Any:
        value = cfg.get(name)
        return _FAIRSEQ_DEFAULTS[name] if value is None else value

    if get("activation_fn") != "gelu":
        raise CheckpointError(
            f"fairseq activation_fn={get('activation_fn')!r} is not supported (only gelu)"
        )
    if int(model_cfg.get("pos_conv_depth") or 1) != 1:
        raise CheckpointError("pos_conv_depth > 1 (data2vec-style positional convs) is not HuBERT")
    mode = get("extractor_mode")
    if mode not in ("default", "layer_norm"):
        raise CheckpointError(f"unknown fairseq extractor_mode {mode!r}")
    values: dict[str, Any] = dict(
        conv_layers=_eval_conv_spec(get("conv_feature_layers")),
        conv_bias=bool(get("conv_bias")),
        extractor_norm="group" if mode == "default" else "layer",
        dim=int(get("encoder_embed_dim")),
        depth=int(get("encoder_layers")),
        heads=int(get("encoder_attention_heads")),
        ff_dim=int(get("encoder_ffn_embed_dim")),
        pos_conv_kernel=int(get("conv_pos")),
        pos_conv_groups=int(get("conv_pos_groups")),
        layer_norm_first=bool(get("layer_norm_first")),
        normalize_waveform=bool(get("normalize", task_cfg)),
        sample_rate=int(get("sample_rate", task_cfg)),
    )
    values.update(changes)
    return HubertConfig(**values)


_FAIRSEQ_DROPPED = ("mask_emb", "label_embs_concat", "label_embs", "final_proj.", "target_glu.")


def fairseq_to_cadence_state(state: dict[str, Tensor], config: HubertConfig) -> dict[str, Tensor]:
    """Rename a fairseq ``HubertModel`` state dict onto :class:`Hubert`'s keys."""
    out: dict[str, Tensor] = {}
    unknown = []
    for key, value in state.items():
        if key.startswith(_FAIRSEQ_DROPPED):
            continue
        new = _rename_fairseq(key, config)
        if new is None:
            unknown.append(key)
        else:
            out[new] = value
    if unknown:
        raise CheckpointError(f"unexpected fairseq keys for HuBERT: {unknown[:10]}")
    return out


def _rename_fairseq(key: str, config: HubertConfig) -> str | None:
    if m := re.fullmatch(r"feature_extractor\.conv_layers\.(\d+)\.0\.(weight|bias)", key):
        return f"conv_layers.{m[1]}.conv.{m[2]}"
    if m := re.fullmatch(r"feature_extractor\.conv_layers\.(\d+)\.2\.(?:1\.)?(weight|bias)", key):
        return f"conv_layers.{m[1]}.norm.{m[2]}"
    if m := re.fullmatch(r"layer_norm\.(weight|bias)", key):
        return f"feature_norm.{m[1]}"
    if m := re.fullmatch(r"post_extract_proj\.(weight|bias)", key):
        return f"feature_proj.{m[1]}"
    if m := re.fullmatch(r"encoder\.pos_conv\.0\.(weight_g|weight_v|bias)", key):
        return f"pos_conv.{m[1]}"
    if m := re.fullmatch(r"encoder\.pos_conv\.0\.parametrizations\.weight\.original([01])", key):
        return "pos_conv.weight_g" if m[1] == "0" else "pos_conv.weight_v"
    if m := re.fullmatch(r"encoder\.layer_norm\.(weight|bias)", key):
        return f"layer_norm.{m[1]}"
    if m := re.fullmatch(
        r"encoder\.layers\.(\d+)\.((?:self_attn\.(?:[qkv]|out)_proj|self_attn_layer_norm|fc1|fc2|final_layer_norm)\.(?:weight|bias))",
        key,
    ):
        return f"layers.{m[1]}.{m[2]}"
    return None


def _load_state_into(model: Hubert, state: dict[str, Tensor], where: str) -> Hubert:
    own = model.state_dict()
    # A model without a projection (conv width == dim) has no post_extract_proj in fairseq.
    if (
        "feature_proj.weight" not in state
        and own["feature_proj.weight"].shape[0] == own["feature_proj.weight"].shape[1]
    ):
        state = dict(state)
        state["feature_proj.weight"] = torch.eye(own["feature_proj.weight"].shape[0])
        state["feature_proj.bias"] = torch.zeros(own["feature_proj.bias"].shape)
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shapes = [
        f"{k}: file {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
        for k in own.keys() & state.keys()
        if own[k].shape != state[k].shape
    ]
    if missing or unexpected or shapes:
        raise CheckpointError(
            f"{where} does not match the HuBERT architecture read from its config: "
            f"missing {missing[:6]}, unexpected {unexpected[:6]}, shape mismatches {shapes[:4]}"
        )
    model.load_state_dict({k: v.float() for k, v in state.items()})
    return model.eval()


def load_fairseq_hubert(
    path: str | os.PathLike, *, output_layer: int | None = 9, allow_unsafe_pickle: bool = False
) -> Hubert:
    """A :class:`Hubert` from a fairseq checkpoint (``hubert_base_ls960.pt``, mHuBERT, ...)."""
    state, model_cfg, task_cfg = read_fairseq_checkpoint(
        path, allow_unsafe_pickle=allow_unsafe_pickle
    )
    name = str(model_cfg.get("_name") or "")
    keys = list(state)
    looks_like_hubert = any(k.startswith("feature_extractor.conv_layers.") for k in keys) and any(
        k.startswith("encoder.layers.") for k in keys
    )
    if not looks_like_hubert or (name and "hubert" not in name):
        what = f"a fairseq {name!r} model" if name else _describe_foreign(keys)
        if looks_like_hubert and name:
            what += " (its encoder looks like HuBERT's, but Cadence only loads HuBERT checkpoints)"
        elif not looks_like_hubert:
            what = _describe_foreign(keys) + (f" (fairseq model {name!r})" if name else "")
        raise CheckpointError(f"{path} holds {what}, not a HuBERT model")
    if name and name != "hubert":
        raise CheckpointError(
            f"{path} holds a fairseq {name!r} model; only pre-trained 'hubert' checkpoints are supported "
            "(for a fine-tuned model, load its w2v_encoder.w2v_model weights)"
        )
    config = fairseq_config(model_cfg, task_cfg, output_layer=output_layer)
    return _load_state_into(Hubert(config), fairseq_to_cadence_state(state, config), str(path))


# -- Hugging Face --------------------------------------------------------------------------


def hf_config(data: dict[str, Any], **changes: Any) -> HubertConfig:
    """A :class:`HubertConfig` from a transformers ``HubertConfig`` dict (config.json)."""
    model_type = data.get("model_type")
    if model_type != "hubert":
        raise CheckpointError(
            f"config.json describes a {model_type!r} model, not HuBERT (model_type 'hubert')"
        )
    if (
        data.get("hidden_act", "gelu") != "gelu"
        or data.get("feat_extract_activation", "gelu") != "gelu"
    ):
        raise CheckpointError("only GELU activations are supported")
    if data.get("conv_pos_batch_norm"):
        raise CheckpointError("conv_pos_batch_norm=True is not supported")
    norm = data.get("feat_extract_norm", "group")
    if norm not in ("group", "layer"):
        raise CheckpointError(f"unknown feat_extract_norm {norm!r}")
    conv = list(
        zip(
            data.get("conv_dim", [512] * 7),
            data.get("conv_kernel", [10, 3, 3, 3, 3, 2, 2]),
            data.get("conv_stride", [5, 2, 2, 2, 2, 2, 2]),
            strict=True,
        )
    )
    values = dict(
        conv_layers=tuple((int(d), int(k), int(s)) for d, k, s in conv),
        conv_bias=bool(data.get("conv_bias", False)),
        extractor_norm=norm,
        feature_layer_norm=bool(data.get("feat_proj_layer_norm", True)),
        dim=int(data.get("hidden_size", 768)),
        depth=int(data.get("num_hidden_layers", 12)),
        heads=int(data.get("num_attention_heads", 12)),
        ff_dim=int(data.get("intermediate_size", 3072)),
        pos_conv_kernel=int(data.get("num_conv_pos_embeddings", 128)),
        pos_conv_groups=int(data.get("num_conv_pos_embedding_groups", 16)),
        layer_norm_first=bool(data.get("do_stable_layer_norm", False)),
        layer_norm_eps=float(data.get("layer_norm_eps", 1e-5)),
    )
    values.update(changes)
    return HubertConfig(**values)


def hf_to_cadence_state(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """Rename a transformers ``HubertModel`` state dict (optionally ``hubert.``-prefixed)."""
    if any(k.startswith("hubert.") for k in state):
        state = {k[len("hubert.") :]: v for k, v in state.items() if k.startswith("hubert.")}
    rules = [
        (r"feature_extractor\.conv_layers\.(\d+)\.conv\.(weight|bias)", r"conv_layers.\1.conv.\2"),
        (
            r"feature_extractor\.conv_layers\.(\d+)\.layer_norm\.(weight|bias)",
            r"conv_layers.\1.norm.\2",
        ),
        (r"feature_projection\.layer_norm\.(weight|bias)", r"feature_norm.\1"),
        (r"feature_projection\.projection\.(weight|bias)", r"feature_proj.\1"),
        (r"encoder\.pos_conv_embed\.conv\.(weight_g|weight_v|bias)", r"pos_conv.\1"),
        (
            r"encoder\.pos_conv_embed\.conv\.parametrizations\.weight\.original0",
            "pos_conv.weight_g",
        ),
        (
            r"encoder\.pos_conv_embed\.conv\.parametrizations\.weight\.original1",
            "pos_conv.weight_v",
        ),
        (r"encoder\.layer_norm\.(weight|bias)", r"layer_norm.\1"),
        (
            r"encoder\.layers\.(\d+)\.attention\.((?:[qkv]|out)_proj\.(?:weight|bias))",
            r"layers.\1.self_attn.\2",
        ),
        (
            r"encoder\.layers\.(\d+)\.layer_norm\.(weight|bias)",
            r"layers.\1.self_attn_layer_norm.\2",
        ),
        (
            r"encoder\.layers\.(\d+)\.feed_forward\.intermediate_dense\.(weight|bias)",
            r"layers.\1.fc1.\2",
        ),
        (r"encoder\.layers\.(\d+)\.feed_forward\.output_dense\.(weight|bias)", r"layers.\1.fc2.\2"),
        (
            r"encoder\.layers\.(\d+)\.final_layer_norm\.(weight|bias)",
            r"layers.\1.final_layer_norm.\2",
        ),
    ]
    out, unknown = {}, []
    for key, value in state.items():
        if key == "masked_spec_embed":
            continue
        for pattern, repl in rules:
            if re.fullmatch(pattern, key):
                out[re.sub(pattern, repl, key)] = value
                break
        else:
            unknown.append(key)
    if unknown:
        raise CheckpointError(f"unexpected Hugging Face HuBERT keys: {unknown[:10]}")
    return out


def load_hf_hubert(directory: str | os.PathLike, *, output_layer: int | None = 9) -> Hubert:
    """A :class:`Hubert` from a Hugging Face directory (config.json + model.safetensors or .bin)."""
    directory = Path(directory)
    data = json.loads((directory / CONFIG_NAME).read_text())
    config = hf_config(data, output_layer=output_layer)
    if (directory / "model.safetensors").exists():
        from safetensors.torch import load_file

        state = load_file(str(directory / "model.safetensors"))
    elif (directory / "pytorch_model.bin").exists():
        try:
            state = torch.load(
                directory / "pytorch_model.bin", map_location="cpu", weights_only=True
            )
        except pickle.UnpicklingError as err:
            raise UnsafeCheckpointError(
                f"{directory / 'pytorch_model.bin'} holds more than tensors and was refused ({err})"
            ) from err
    else:
        raise CheckpointError(
            f"{directory} has a config.json but no model.safetensors or pytorch_model.bin"
        )
    return _load_state_into(Hubert(config), hf_to_cadence_state(state), str(directory))


# -- one entry point -----------------------------------------------------------------------


def load_hubert(
    path: str | os.PathLike,
    *,
    output_layer: int | None = 9,
    allow_unsafe_pickle: bool = False,
) -> Hubert:
    """Load HuBERT from a local path, whatever its format, in eval mode.

    Args:
        path: a fairseq ``.pt`` file; a Hugging Face directory (``config.json`` with
            ``model_type: hubert``); or a Cadence checkpoint directory (``save_pretrained``).
        output_layer: the block whose output the model returns (1-based, fairseq's
            ``output_layer``; None = the full model), for every format.
        allow_unsafe_pickle: load a fairseq file with ``torch.load(weights_only=False)``,
            which can run code stored in the file. Only for files you trust.

    Raises:
        FileNotFoundError: nothing at ``path``.
        CheckpointError: the file is not a HuBERT checkpoint (the message says what it looks like).
        UnsafeCheckpointError: the pickle references code that safe loading refuses.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    if path.is_dir():
        config_path = path / CONFIG_NAME
        if not config_path.exists():
            raise CheckpointError(
                f"{path} has no config.json: neither a Hugging Face nor a Cadence checkpoint"
            )
        try:
            header = json.loads(config_path.read_text())
        except json.JSONDecodeError as err:
            raise CheckpointError(f"{config_path} is not valid JSON ({err})") from err
        if "class" in header and "format_version" in header:
            model = load_pretrained(path, Hubert)
            if output_layer != model.config.output_layer:
                model.config = model.config.replace(output_layer=output_layer)
            return model.eval()
        return load_hf_hubert(path, output_layer=output_layer)
    return load_fairseq_hubert(
        path, output_layer=output_layer, allow_unsafe_pickle=allow_unsafe_pickle
    )
