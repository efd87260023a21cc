"""Precomputed codes / tokens / latents on disk: write once, memory-map many times.

Layout of a shard directory::

    manifest.json                  # written last, by write_manifest(), over finalized shards
    shard-00000.codes.npy          # every item's codes concatenated along n: (sum n_i, q)
    shard-00000.tokens.npy         # (sum n_i,)
    shard-00000.index.json         # ids, per-field lengths, fields, metadata, skipped items
    shard-00001....

Each field is one plain ``.npy`` array per shard (``np.load(..., mmap_mode="r",
allow_pickle=False)``: no pickle anywhere), so a reader touches only the frames it returns and
DataLoader workers share the page cache. A shard's index is renamed into place after its
arrays, so an index on disk means a complete shard; every file is written to a temporary name
and renamed (atomic on POSIX).

Integer fields inferred by :class:`ShardWriter` use the smallest dtype that holds the
codebook (see :func:`smallest_int_dtype`): uint8 up to 256 entries, int16 up to 32768, int32
beyond. :class:`ShardReader` returns them as ``torch.long`` by default.
"""

# n frames | q quantizers | d latent dim

from __future__ import annotations

import json
import math
import os
import re
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from ..io import atomic_file, write_json

__all__ = [
    "MANIFEST_NAME",
    "FieldSpec",
    "ShardError",
    "ShardFormatError",
    "ShardMismatchError",
    "ShardReader",
    "ShardWriter",
    "smallest_int_dtype",
    "write_manifest",
]


FORMAT = "cadence-shards"
INDEX_FORMAT = "cadence-shard-index"
VERSION = 1
MANIFEST_NAME = "manifest.json"
_INDEX_SUFFIX = ".index.json"
_FIELD_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_RESERVED_FIELDS = {"id"}


class ShardError(ValueError):
    """Base class of shard problems."""


class ShardFormatError(ShardError):
    """A manifest or shard file is corrupt, truncated, or not a Cadence shard."""


class ShardMismatchError(ShardError):
    """The shards were made with a different model or setting than the consumer expects."""


@dataclass(frozen=True)
class FieldSpec:
    """How one field is stored: its numpy dtype and the shape of one frame.

    ``codes`` ``(n, q)`` is ``FieldSpec("int16", (q,))``; ``tokens`` ``(n,)`` is
    ``FieldSpec("int16", ())``; ``latents`` ``(n, d)`` is ``FieldSpec("float16", (d,))``.
    """

    dtype: str
    trailing_shape: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        dtype = np.dtype(self.dtype)
        if dtype.kind not in "biuf":
            raise ValueError(f"field dtype must be bool, integer or float, got {dtype}")
        object.__setattr__(self, "dtype", dtype.name)
        object.__setattr__(self, "trailing_shape", tuple(int(s) for s in self.trailing_shape))

    def to_json(self) -> dict[str, Any]:
        return {"dtype": self.dtype, "trailing_shape": list(self.trailing_shape)}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> FieldSpec:
        return cls(data["dtype"], tuple(data["trailing_shape"]))


def smallest_int_dtype(codebook_size: int) -> str:
    """Smallest dtype holding codes in ``[0, codebook_size)``: uint8, int16 or int32.

    uint16 is skipped on purpose: torch supports it poorly, and int16 already covers the
    common 1024-8192 entry codebooks.
    """
    if codebook_size <= 0:
        raise ValueError(f"codebook_size must be positive, got {codebook_size}")
    if codebook_size <= 2**8:
        return "uint8"
    if codebook_size <= 2**15:
        return "int16"
    if codebook_size <= 2**31:
        return "int32"
    return "int64"


# ---------------------------------------------------------------------------------- file helpers


def atomic_write_json(path: Path, data: Any) -> None:
    """Write ``data`` as indented JSON to ``path`` atomically."""
    write_json(path, data, indent=1)


def _read_json(path: Path, what: str) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ShardFormatError(
            f"{what} {path} is not valid JSON ({err}); it is corrupt or was cut off. "
            "Re-run the precompute (it resumes) or write_manifest() to regenerate it."
        ) from err
    if not isinstance(data, dict):
        raise ShardFormatError(f"{what} {path} must hold a JSON object")
    return data


def _field_file(name: str, field: str) -> str:
    return f"{name}.{field}.npy"


def _to_numpy(value: Any) -> np.ndarray:
    if isinstance(value, Tensor):
        value = value.detach().cpu()
        if value.dtype == torch.bfloat16:  # numpy has no bfloat16
            value = value.float()
        return value.numpy()
    return np.asarray(value)


def _check_header(data: dict[str, Any], path: Path, expected_format: str, what: str) -> None:
    """The ``format`` tag is ours and the ``version`` is one this code can read."""
    if data.get("format") != expected_format:
        raise ShardFormatError(f"{path} is not a Cadence {what} (format={data.get('format')!r})")
    if data.get("version", 0) > VERSION:
        raise ShardFormatError(
            f"{path} has format version {data['version']}; this cadence reads up to "
            f"{VERSION}. Upgrade cadence-core."
        )


def _read_index(directory: Path, name: str) -> dict[str, Any]:
    path = directory / f"{name}{_INDEX_SUFFIX}"
    if not path.exists():
        raise FileNotFoundError(
            f"shard index {path} is missing: the shard was never finalized (an interrupted run?). "
            "Re-run the precompute (it resumes), or write_manifest() over the shards that exist."
        )
    index = _read_json(path, "shard index")
    _check_header(index, path, INDEX_FORMAT, "shard index")
    try:
        num = len(index["ids"])
        for field in index["fields"]:
            if len(index["lengths"][field]) != num:
                raise ShardFormatError(f"{path}: '{field}' has a length per item missing")
    except (KeyError, TypeError) as err:
        raise ShardFormatError(f"{path} is missing entry {err}; the index is corrupt") from err
    return index


# ---------------------------------------------------------------------------------- writing


class ShardWriter:
    """Accumulates items and writes them as shards of at most ``max_items_per_shard``.

    Example::

        with ShardWriter(out, metadata={"frame_rate": 50}) as writer:
            writer.add("utt1", codes=codes1, tokens=tokens1)   # codes (n, q), tokens (n,)
        write_manifest(out)

    Args:
        directory: where shards go (created).
        fields: ``name -> FieldSpec``; inferred from the first :meth:`add` if omitted (floats
            and bools keep their dtype; integers get :func:`smallest_int_dtype` of their
            ``codebook_sizes`` entry, or keep their own dtype without one).
        max_items_per_shard: items per shard; the last shard may hold fewer.
        prefix: shard names are ``f"{prefix}-{k:05d}"``.
        metadata: JSON-serializable facts about how the arrays were made (sample rate, frame
            rate, codebook size, model names); stored in every shard and the manifest.
        codebook_sizes: ``field -> codebook_size``; integer values are checked to lie in
            ``[0, codebook_size)`` so a wrong codec never writes silently-wrapped codes.
            Defaults to ``codes`` <- ``metadata["codebook_size"]`` and ``tokens`` <-
            ``metadata["tokenizer_codebook_size"]`` where the metadata has them (the names
            :func:`~cadence.core.data.precompute` writes).
        first_shard: number of the first shard written (to resume a numbering).
        overwrite: replace a finalized shard of the same name instead of raising.
    """

    def __init__(
        self,
        directory: str | os.PathLike,
        *,
        fields: Mapping[str, FieldSpec] | None = None,
        max_items_per_shard: int = 1024,
        prefix: str = "shard",
        metadata: Mapping[str, Any] | None = None,
        codebook_sizes: Mapping[str, int] | None = None,
        first_shard: int = 0,
        overwrite: bool = False,
    ):
        if max_items_per_shard < 1:
            raise ValueError(f"max_items_per_shard must be >= 1, got {max_items_per_shard}")
        if not re.fullmatch(r"[A-Za-z0-9_-]+", prefix):
            raise ValueError(f"prefix must be letters, digits, '_' or '-', got {prefix!r}")
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.max_items_per_shard = max_items_per_shard
        self.prefix = prefix
        self.metadata = dict(metadata or {})
        try:
            json.dumps(self.metadata)
        except TypeError as err:
            raise TypeError(f"metadata must be JSON-serializable: {err}") from err
        self.codebook_sizes = {
            field: int(self.metadata[key])
            for field, key in (("codes", "codebook_size"), ("tokens", "tokenizer_codebook_size"))
            if key in self.metadata
        }
        self.codebook_sizes.update(codebook_sizes or {})
        self.overwrite = overwrite
        self.fields: dict[str, FieldSpec] | None = None
        if fields is not None:
            self._set_fields(dict(fields))
        self._next_shard = first_shard
        self._written: list[str] = []
        self._seen: set[str] = set()
        self._closed = False
        self._reset_buffer()

    # -- public API

    @property
    def shard_names(self) -> list[str]:
        """Names of the shards finalized so far."""
        return list(self._written)

    def add(self, item_id: str, **arrays: Any) -> None:
        """Add one item; each array is ``(n, *trailing_shape)`` (numpy or torch; n may be 0)."""
        self._check_open()
        if not isinstance(item_id, str):
            raise TypeError(f"item_id must be a str, got {type(item_id).__name__}")
        if item_id in self._seen:
            raise ValueError(f"duplicate item id {item_id!r}: ids must be unique")
        converted = {name: _to_numpy(value) for name, value in arrays.items()}
        if self.fields is None:
            self._set_fields({name: self._infer(name, a) for name, a in converted.items()})
        assert self.fields is not None
        if set(converted) != set(self.fields):
            raise ValueError(
                f"item {item_id!r} has fields {sorted(converted)} but the shards hold "
                f"{sorted(self.fields)}; give every field for every item"
            )
        if not self._ids and not self._skipped:
            self._check_free()
        cast = {name: self._cast(item_id, name, a) for name, a in converted.items()}
        for name, array in cast.items():
            self._arrays[name].append(array)
        self._ids.append(item_id)
        self._seen.add(item_id)
        if len(self._ids) >= self.max_items_per_shard:
            self.flush()

    def skip(self, item_id: str, reason: str) -> None:
        """Record an item that could not be processed (listed in the manifest's ``skipped``)."""
        self._check_open()
        if not self._ids and not self._skipped:
            self._check_free()
        self._skipped[str(item_id)] = str(reason)

    def flush(self) -> str | None:
        """Finalize the current shard now (if it holds anything); returns its name."""
        self._check_open()
        if not self._ids and not self._skipped:
            return None
        if self.fields is None:
            raise ValueError("cannot write a shard without fields: pass fields= or add an item")
        name = self._shard_name()
        self._check_free()
        lengths: dict[str, list[int]] = {}
        for field, spec in self.fields.items():
            parts = self._arrays[field]
            array = (
                np.concatenate(parts)
                if parts
                else np.zeros((0, *spec.trailing_shape), dtype=spec.dtype)
            )
            lengths[field] = [len(p) for p in parts]
            # the data must be on disk before the index publishes it, or a crash could leave a
            # complete-looking index over truncated arrays (atomic_file fsyncs)
            with (
                atomic_file(self.directory / _field_file(name, field)) as tmp,
                open(tmp, "wb") as f,
            ):
                np.save(f, array, allow_pickle=False)
        index = {
            "format": INDEX_FORMAT,
            "version": VERSION,
            "name": name,
            "fields": {k: v.to_json() for k, v in self.fields.items()},
            "metadata": self.metadata,
            "ids": self._ids,
            "lengths": lengths,
            "skipped": self._skipped,
        }
        # the index goes last: its presence is what marks the shard complete
        atomic_write_json(self.directory / f"{name}{_INDEX_SUFFIX}", index)
        self._written.append(name)
        self._next_shard += 1
        self._reset_buffer()
        return name

    def close(self) -> list[str]:
        """Finalize the last shard; returns the names of every shard this writer wrote.

        Call :func:`write_manifest` afterwards (once, from one process) to publish them.
        """
        if not self._closed:
            self.flush()
            self._closed = True
        return self.shard_names

    def __enter__(self) -> ShardWriter:
        return self

    def __exit__(self, exc_type: Any, *_: Any) -> None:
        # on an error the partial shard is dropped, never written half-done
        if exc_type is None:
            self.close()
        else:
            self._closed = True

    # -- internals

    def _reset_buffer(self) -> None:
        self._ids: list[str] = []
        self._skipped: dict[str, str] = {}
        self._arrays: dict[str, list[np.ndarray]] = {name: [] for name in self.fields or {}}

    def _set_fields(self, fields: dict[str, FieldSpec]) -> None:
        if not fields:
            raise ValueError("at least one field is needed")
        for name, spec in fields.items():
            if not _FIELD_NAME.match(name) or name in _RESERVED_FIELDS:
                raise ValueError(f"invalid field name {name!r} (identifier, not 'id')")
            if not isinstance(spec, FieldSpec):
                raise TypeError(f"fields[{name!r}] must be a FieldSpec, got {type(spec).__name__}")
        self.fields = fields
        self._arrays = {name: [] for name in fields}

    def _infer(self, name: str, array: np.ndarray) -> FieldSpec:
        if array.ndim == 0:
            raise ValueError(f"field {name!r} must be (n, ...), got a scalar")
        dtype = array.dtype
        if dtype.kind in "iu" and name in self.codebook_sizes:
            dtype = np.dtype(smallest_int_dtype(self.codebook_sizes[name]))
        return FieldSpec(dtype.name, array.shape[1:])

    def _shard_name(self) -> str:
        return f"{self.prefix}-{self._next_shard:05d}"

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("this ShardWriter is closed")

    def _check_free(self) -> None:
        index = self.directory / f"{self._shard_name()}{_INDEX_SUFFIX}"
        if index.exists() and not self.overwrite:
            raise FileExistsError(
                f"shard {index} already exists; write to a new directory or prefix, "
                "or pass overwrite=True"
            )

    def _cast(self, item_id: str, name: str, array: np.ndarray) -> np.ndarray:
        assert self.fields is not None
        spec = self.fields[name]
        target = np.dtype(spec.dtype)
        where = f"item {item_id!r} field {name!r}"
        if array.ndim != 1 + len(spec.trailing_shape) or array.shape[1:] != spec.trailing_shape:
            want = ", ".join(["n", *map(str, spec.trailing_shape)])
            raise ValueError(f"{where} has shape {array.shape}; expected ({want})")
        kind = array.dtype.kind
        if target.kind in "iu":
            if kind not in "iub":
                raise TypeError(
                    f"{where} is {array.dtype} but the field stores integers ({target})"
                )
            if array.size:
                lo, hi = int(array.min()), int(array.max())
                if name in self.codebook_sizes:
                    low, high = 0, self.codebook_sizes[name] - 1
                else:
                    info = np.iinfo(target)
                    low, high = int(info.min), int(info.max)
                if lo < low or hi > high:
                    raise ValueError(
                        f"{where} holds values in [{lo}, {hi}], outside [{low}, {high}] "
                        f"(dtype {target}); is the codebook size in the metadata right?"
                    )
        elif target.kind == "b":
            if kind != "b":
                raise TypeError(f"{where} is {array.dtype} but the field stores bool")
        elif kind not in "fiu":
            raise TypeError(f"{where} is {array.dtype} but the field stores {target}")
        with np.errstate(over="ignore"):  # float16 overflow is reported just below
            out = np.ascontiguousarray(array, dtype=target)
        if target.kind == "f" and not np.isfinite(out).all():
            raise ValueError(
                f"{where} has NaN/inf values after conversion to {target} "
                "(a diverged model, or values too large for float16)"
            )
        return out


def _shard_names_in(directory: Path) -> list[str]:
    return sorted(
        p.name[: -len(_INDEX_SUFFIX)]
        for p in directory.glob(f"*{_INDEX_SUFFIX}")
        if not p.name.startswith(".")
    )


def write_manifest(directory: str | os.PathLike, *, shards: Iterable[str] | None = None) -> Path:
    """Publish finalized shards: check they agree and write ``manifest.json`` atomically.

    Args:
        directory: the shard directory.
        shards: shard names to include, in order; default every finalized shard (every
            ``*.index.json``) in sorted order.

    Returns:
        The manifest path. Raises :class:`ShardFormatError` when shards disagree on fields or
        metadata or repeat an item id.
    """
    directory = Path(directory)
    names = list(shards) if shards is not None else _shard_names_in(directory)
    if not names:
        raise ShardFormatError(f"no finalized shards (*{_INDEX_SUFFIX}) in {directory}")
    fields = metadata = None
    entries, skipped = [], {}
    seen: dict[str, str] = {}  # item id -> shard name
    num_items = 0
    for name in names:
        index = _read_index(directory, name)
        if fields is None:
            fields, metadata = index["fields"], index["metadata"]
        elif index["fields"] != fields or index["metadata"] != metadata:
            which = "fields" if index["fields"] != fields else "metadata"
            raise ShardFormatError(
                f"shard {name} has different {which} from shard {names[0]}: "
                f"{index[which]} vs {fields if which == 'fields' else metadata}. "
                "Shards of one manifest must come from one model and setting."
            )
        for item_id in index["ids"]:
            if item_id in seen:
                raise ShardFormatError(
                    f"item id {item_id!r} is in both shard {seen[item_id]} and {name}; "
                    "remove the stale shard or use a fresh directory"
                )
            seen[item_id] = name
        entries.append({"name": name, "num_items": len(index["ids"])})
        num_items += len(index["ids"])
        skipped.update(index.get("skipped", {}))
    manifest = {
        "format": FORMAT,
        "version": VERSION,
        "fields": fields,
        "metadata": metadata,
        "num_items": num_items,
        "shards": entries,
        "skipped": skipped,
    }
    path = directory / MANIFEST_NAME
    atomic_write_json(path, manifest)
    return path


# ---------------------------------------------------------------------------------- reading


def _read_manifest(directory: Path) -> dict[str, Any]:
    path = directory / MANIFEST_NAME
    if not directory.is_dir():
        raise FileNotFoundError(f"shard directory {directory} does not exist")
    if not path.exists():
        raise FileNotFoundError(
            f"no {MANIFEST_NAME} in {directory}: the precompute did not finish, or the shards were "
            "never published. Re-run the precompute (it resumes) or call write_manifest(directory)."
        )
    manifest = _read_json(path, "shard manifest")
    _check_header(manifest, path, FORMAT, "shard manifest")
    for key in ("fields", "metadata", "shards"):
        if key not in manifest:
            raise ShardFormatError(f"{path} has no '{key}' entry; the manifest is corrupt")
    return manifest


class ShardReader(Dataset):
    """A map-style Dataset over every item of a shard directory, read through memory maps.

    Each item is ``{"id": str, <field>: tensor (n, ...)}``; with the fields precompute writes,
    ``codes`` ``(n, q)``, ``tokens`` ``(n,)``, ``latents`` ``(n, d)``. Arrays are opened lazily
    and per process, so the reader pickles cheaply into DataLoader workers.

    Args:
        directory: a directory with ``manifest.json``.
        int_dtype: dtype integer fields are returned as (``torch.long``, what embeddings
            want); None keeps the stored dtype.
        float_dtype: dtype float fields are returned as; None keeps the stored dtype.
        max_open_shards: memory maps kept open per process (each holds a file descriptor).
        verify: check at construction that every array file exists with the shape and dtype its
            index promises, so a truncated shard fails now and not hours into training.
    """

    def __init__(
        self,
        directory: str | os.PathLike,
        *,
        int_dtype: torch.dtype | None = torch.long,
        float_dtype: torch.dtype | None = None,
        max_open_shards: int = 32,
        verify: bool = True,
    ):
        self.directory = Path(directory)
        self.manifest = _read_manifest(self.directory)
        self.int_dtype = int_dtype
        self.float_dtype = float_dtype
        self.max_open_shards = max(1, max_open_shards)
        self.fields = {k: FieldSpec.from_json(v) for k, v in self.manifest["fields"].items()}
        self._shards: list[str] = []
        self._ids: list[str] = []
        counts: list[int] = []
        lengths: dict[str, list[np.ndarray]] = {f: [] for f in self.fields}
        for entry in self.manifest["shards"]:
            name = entry["name"]
            index = _read_index(self.directory, name)
            if index["fields"] != self.manifest["fields"]:
                raise ShardFormatError(
                    f"shard {name} stores fields {index['fields']} but the manifest says "
                    f"{self.manifest['fields']}; regenerate the manifest with write_manifest()"
                )
            self._shards.append(name)
            self._ids.extend(index["ids"])
            counts.append(len(index["ids"]))
            for field in self.fields:
                lengths[field].append(np.asarray(index["lengths"][field], dtype=np.int64))
        # item i lives in shard s where starts[s] <= i < starts[s + 1]
        self._starts = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        self._lengths = {
            f: np.concatenate(v) if v else np.zeros(0, np.int64) for f, v in lengths.items()
        }
        # an item's offset inside its own shard's array: exclusive cumsum restarted per shard
        self._offsets = {
            f: np.concatenate([np.cumsum(x) - x for x in v]) if v else np.zeros(0, np.int64)
            for f, v in lengths.items()
        }
        self._totals = {f: [int(x.sum()) for x in v] for f, v in lengths.items()}
        self._id_to_index: dict[str, int] | None = None
        self._open_cache: OrderedDict[int, dict[str, np.ndarray]] = OrderedDict()
        if verify:
            for s in range(len(self._shards)):
                self._load_shard(s)

    # -- Dataset

    def __len__(self) -> int:
        return len(self._ids)

    def __getitem__(self, index: int) -> dict[str, Any]:
        i = int(index)
        if i < 0:
            i += len(self)
        if not 0 <= i < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} items")
        shard = int(np.searchsorted(self._starts, i, side="right")) - 1
        arrays = self._open(shard)
        item: dict[str, Any] = {"id": self._ids[i]}
        for field, array in arrays.items():
            start = int(self._offsets[field][i])
            stop = start + int(self._lengths[field][i])
            # copy out of the memory map: the tensor must not pin the map or be writable into it
            item[field] = self._to_torch(np.array(array[start:stop]))
        return item

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_open_cache"] = OrderedDict()  # memory maps are per process
        return state

    # -- lookups

    @property
    def ids(self) -> list[str]:
        """Item ids in reader order."""
        return list(self._ids)

    @property
    def metadata(self) -> dict[str, Any]:
        """How the arrays were made (sample rate, frame rate, codebook sizes, model names)."""
        return dict(self.manifest["metadata"])

    @property
    def skipped(self) -> dict[str, str]:
        """Items the producer could not process: ``id -> reason``."""
        return dict(self.manifest.get("skipped", {}))

    @property
    def shard_names(self) -> list[str]:
        return list(self._shards)

    def index_of(self, item_id: str) -> int:
        """Position of ``item_id`` in the reader."""
        if self._id_to_index is None:
            self._id_to_index = {item_id: i for i, item_id in enumerate(self._ids)}
        try:
            return self._id_to_index[item_id]
        except KeyError:
            raise KeyError(f"no item with id {item_id!r} in {self.directory}") from None

    def by_id(self, item_id: str) -> dict[str, Any]:
        """The item with id ``item_id``."""
        return self[self.index_of(item_id)]

    def lengths(self, field: str) -> np.ndarray:
        """``(num_items,)`` int64 frame counts of ``field`` per item, for length bucketing."""
        if field not in self._lengths:
            raise KeyError(f"no field {field!r}; the shards hold {sorted(self.fields)}")
        return self._lengths[field].copy()

    def check_compatible(self, **expected: Any) -> None:
        """Raise :class:`ShardMismatchError` unless the metadata has these values.

        Example: ``reader.check_compatible(codebook_size=1024, num_quantizers=8, frame_rate=50)``.
        Numbers compare with a relative tolerance of 1e-9 (so ``50 == 50.0``).
        """
        metadata = self.manifest["metadata"]
        problems = []
        for key, want in expected.items():
            if key not in metadata:
                problems.append(
                    f"'{key}' is not recorded (recorded: {', '.join(sorted(metadata)) or 'nothing'})"
                )
                continue
            have = metadata[key]
            if not _same(have, want):
                problems.append(f"{key}={have!r} in the shards but {want!r} expected")
        if problems:
            raise ShardMismatchError(
                f"shards in {self.directory} do not match: {'; '.join(problems)}; "
                "re-run precompute with the matching codec or tokenizer (or point to shards "
                "made with it)"
            )

    def __repr__(self) -> str:
        fields = ", ".join(
            f"{k}: {v.dtype}{list(v.trailing_shape)}" for k, v in self.fields.items()
        )
        return f"ShardReader({str(self.directory)!r}, items={len(self)}, shards={len(self._shards)}, fields={{{fields}}})"

    # -- internals

    def _to_torch(self, array: np.ndarray) -> Tensor:
        tensor = torch.from_numpy(array)
        if array.dtype.kind in "iu" and self.int_dtype is not None:
            tensor = tensor.to(self.int_dtype)
        elif array.dtype.kind == "f" and self.float_dtype is not None:
            tensor = tensor.to(self.float_dtype)
        return tensor

    def _open(self, shard: int) -> dict[str, np.ndarray]:
        cache = self._open_cache
        if shard in cache:
            cache.move_to_end(shard)
            return cache[shard]
        arrays = self._load_shard(shard)
        cache[shard] = arrays
        while len(cache) > self.max_open_shards:
            cache.popitem(last=False)
        return arrays

    def _load_shard(self, shard: int) -> dict[str, np.ndarray]:
        name = self._shards[shard]
        arrays = {}
        for field, spec in self.fields.items():
            path = self.directory / _field_file(name, field)
            if not path.exists():
                raise FileNotFoundError(
                    f"shard array {path} is missing; the shard directory is incomplete "
                    "(copy it again, or re-run the precompute)"
                )
            try:
                array = np.load(path, mmap_mode="r", allow_pickle=False)
            except ValueError as err:
                raise ShardFormatError(
                    f"cannot read {path} ({err}); the file is truncated or corrupt. Re-run the "
                    "precompute into a fresh directory."
                ) from err
            want = (self._totals[field][shard], *spec.trailing_shape)
            if array.shape != want or array.dtype != np.dtype(spec.dtype):
                raise ShardFormatError(
                    f"{path} holds {array.dtype}{array.shape} but its index promises "
                    f"{spec.dtype}{want}; the shard is corrupt or from another run"
                )
            arrays[field] = array
        return arrays


def _same(have: Any, want: Any) -> bool:
    numbers = (int, float)
    if isinstance(have, numbers) and isinstance(want, numbers):
        return math.isclose(have, want, rel_tol=1e-9, abs_tol=0.0)
    if isinstance(have, list) and isinstance(want, Sequence) and not isinstance(want, str):
        return len(have) == len(want) and all(_same(a, b) for a, b in zip(have, want))
    return have == want
