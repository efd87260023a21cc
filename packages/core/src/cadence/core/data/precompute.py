"""Run a codec / semantic tokenizer / latent codec once over a corpus and store the results.

Transformer training then reads shards (:class:`~cadence.core.data.ShardReader`) and never runs
the codec in its loop. The run is built for large corpora on many GPUs:

* batched, longest items first within a shard (little padding, and an out-of-memory batch
  shows up in the first seconds rather than hours in);
* resumable: each process records the shards it finalized in ``progress-rank<r>.json``; a
  restart with the same arguments skips them and redoes a half-written shard, so the result
  equals an uninterrupted run;
* multi-process under ``accelerate launch``: process ``r`` of ``p`` takes items
  ``index % p == r`` and writes shards ``shard-rank<r>-*``; the main process writes one
  ``manifest.json`` over all of them;
* a bad file (unreadable, truncated, or shorter than ``min_seconds``) is skipped and listed
  in the manifest's ``skipped``, never a crash.
"""

# b batch | c channels | t samples | n frames | q quantizers | d latent dim

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from ..audio import (
    AudioError,
    ChannelMismatchError,
    SampleRateMismatchError,
    TruncatedAudioWarning,
)
from ..interfaces import Codec, LatentCodec, SemanticTokenizer
from .collate import collate_audio
from .dataset import AudioDataset
from .shards import (
    FieldSpec,
    ShardWriter,
    _read_index,
    atomic_write_json,
    smallest_int_dtype,
    write_manifest,
)

__all__ = ["precompute"]


logger = logging.getLogger(__name__)

PROGRESS_VERSION = 1


class _ProcessState(Protocol):
    """What precompute needs from an ``accelerate.Accelerator`` or ``PartialState``."""

    num_processes: int
    process_index: int
    is_main_process: bool
    device: torch.device

    def wait_for_everyone(self) -> None: ...


class _SingleProcess:
    num_processes = 1
    process_index = 0
    is_main_process = True
    device = torch.device("cpu")

    def wait_for_everyone(self) -> None:
        pass


@dataclass(frozen=True)
class _Job:
    """One model and the field it fills."""

    field: str
    model: Any
    run: Callable[[Tensor], Tensor]
    frame_rate: float
    spec: FieldSpec
    codebook_size: int | None
    ndim: int  # dims of the output, batch included


def precompute(
    dataset: Dataset,
    output_dir: str | os.PathLike,
    *,
    codec: Codec | None = None,
    tokenizer: SemanticTokenizer | None = None,
    latent_codec: LatentCodec | None = None,
    batch_size: int = 8,
    max_batch_seconds: float | None = None,
    max_items_per_shard: int = 1024,
    latent_dtype: str = "float32",
    num_workers: int = 0,
    accelerator: _ProcessState | None = None,
    progress: bool = True,
    device: str | torch.device | None = None,
    min_seconds: float = 0.0,
) -> Path:
    """Encode every item of ``dataset`` and write the results as shards with a manifest.

    Fields written: ``"codes"`` ``(n, q)`` from ``codec.encode``, ``"tokens"`` ``(n,)`` from
    ``tokenizer.tokenize``, ``"latents"`` ``(n, d)`` from ``latent_codec.encode_latents``; each
    item keeps ``floor(length / hop)`` frames with ``hop = sample_rate / frame_rate`` (or
    fewer if the model returns fewer), so padding never leaks into the stored frames. Integer
    fields use the smallest dtype holding the codebook.

    Args:
        dataset: full-length audio items: an :class:`AudioDataset` built with
            ``crop_samples=None`` at the models' sample rate (it resamples), or any map-style
            dataset with ``sample_rate`` whose items hold ``"audio"`` ``(c, t)``, optionally
            ``"length"``, and ``"id"`` (else the index is the id).
        output_dir: shard directory; rerunning into it with the same arguments resumes.
        codec: writes ``"codes"``.
        tokenizer: writes ``"tokens"``.
        latent_codec: writes ``"latents"`` (pass the same object as ``codec`` for both).
        batch_size: items per model call.
        max_batch_seconds: also cap a batch at this much padded audio (long files then run
            in smaller batches).
        max_items_per_shard: items per shard, and the unit of resumption.
        latent_dtype: storage dtype of latents (``"float16"`` halves the disk).
        num_workers: DataLoader workers decoding audio while the model runs.
        accelerator: an ``accelerate.Accelerator`` or ``PartialState`` (on CPU-only machines
            built with ``cpu=True``, or accelerate forms no process group); default one
            process, or a ``PartialState`` when launched with ``WORLD_SIZE > 1``.
        progress: show a progress bar (main process only).
        device: where the models run; default the accelerator's device, else the device of
            the models' parameters, else CPU. ``nn.Module`` models are put in eval mode and
            moved there.
        min_seconds: items shorter than this are skipped (listed in ``skipped``) rather than
            stored with next to no frames; 0 keeps every item.

    Truncated files (a header promising more samples than the file holds,
    :class:`~cadence.core.audio.TruncatedAudioWarning`) are skipped like unreadable ones.

    Returns:
        Path of ``manifest.json``.

    Processes meet in ``wait_for_everyone()`` once, at the end; they get interleaved items, so
    they finish close together, but raise the process group timeout if your shards are huge.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if not math.isfinite(min_seconds) or min_seconds < 0:
        raise ValueError(f"min_seconds must be a finite number >= 0, got {min_seconds}")
    output_dir = Path(output_dir)
    state = accelerator if accelerator is not None else _default_state()
    rank, world = state.process_index, state.num_processes
    launched = int(os.environ.get("WORLD_SIZE", "1"))
    if launched > 1 and world == 1:
        # every process would believe it is alone and write the same shards over each other
        raise RuntimeError(
            f"launched as {launched} processes, but the accelerator sees one. Without GPUs, "
            "build it with PartialState(cpu=True) (or Accelerator(cpu=True))."
        )
    run_device = _pick_device(device, accelerator, (codec, tokenizer, latent_codec))

    sample_rate = _dataset_sample_rate(dataset)
    jobs = _jobs(codec, tokenizer, latent_codec, latent_dtype)
    for job in jobs:
        _check_model(job, dataset, sample_rate)
        if isinstance(job.model, nn.Module):
            job.model.eval().to(run_device)
    metadata = _metadata(sample_rate, codec, tokenizer, latent_codec)
    fields = {job.field: job.spec for job in jobs}
    codebook_sizes = {job.field: job.codebook_size for job in jobs if job.codebook_size}

    ids = _dataset_ids(dataset)
    mine = list(range(rank, len(dataset), world))  # type: ignore[arg-type]  # map-style: sized
    plan = [mine[k : k + max_items_per_shard] for k in range(0, len(mine), max_items_per_shard)]
    prefix = f"shard-rank{rank:03d}"
    names = [f"{prefix}-{k:05d}" for k in range(len(plan))]

    output_dir.mkdir(parents=True, exist_ok=True)
    _remove_temp_files(output_dir, prefix)
    progress_path = output_dir / f"progress-rank{rank:03d}.json"
    plan_hash = _hash(
        {
            "ids": [ids[i] for i in mine],
            "fields": {k: v.to_json() for k, v in fields.items()},
            "metadata": metadata,
            "max_items_per_shard": max_items_per_shard,
            "num_processes": world,
            # only when set, so that runs begun before the option existed still resume
            **({"min_seconds": min_seconds} if min_seconds else {}),
        }
    )
    record = _resume(progress_path, plan_hash)
    done = {
        name
        for name, shard_ids in record["finished"].items()
        if _finished(output_dir, name, shard_ids)
    }
    todo = [k for k, name in enumerate(names) if name not in done]

    show = progress and state.is_main_process
    read_headers = getattr(dataset, "read_headers", None)
    if todo and read_headers is not None:  # in parallel, for the longest-first batching
        read_headers([i for k in todo for i in plan[k]], progress=show)
    bar = tqdm(
        total=len(mine),
        initial=len(mine) - sum(len(plan[k]) for k in todo),
        desc=f"precompute {', '.join(fields)}",
        unit="item",
        disable=not show,
    )
    writer_args = {"fields": fields, "metadata": metadata, "codebook_sizes": codebook_sizes}
    encoded = _encode_shards(
        dataset,
        jobs,
        [(k, plan[k]) for k in todo],
        bar,
        batch_size=batch_size,
        max_batch_seconds=max_batch_seconds,
        num_workers=num_workers,
        device=run_device,
        sample_rate=sample_rate,
        min_samples=math.ceil(min_seconds * sample_rate),
    )
    with bar, torch.inference_mode():
        for k, results, skipped in encoded:
            _write_shard(output_dir, names[k], plan[k], ids, results, skipped, **writer_args)
            record["finished"][names[k]] = [ids[i] for i in plan[k]]
            atomic_write_json(progress_path, record)
    record["complete"] = True
    atomic_write_json(progress_path, record)

    state.wait_for_everyone()
    manifest = output_dir / "manifest.json"
    if state.is_main_process:
        shards = []
        for r in range(world):
            path = output_dir / f"progress-rank{r:03d}.json"
            other = _read_progress(path) if path.exists() else {}
            if not other.get("complete"):
                raise RuntimeError(f"process {r} of {world} did not complete its shards ({path})")
            shards.extend(sorted(other["finished"]))
        manifest = write_manifest(output_dir, shards=shards)
    # nobody returns before the manifest exists
    state.wait_for_everyone()
    return manifest


# ---------------------------------------------------------------------------------- setup


def _default_state() -> _ProcessState:
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        from accelerate import PartialState

        # without CUDA, accelerate only forms a process group when told it runs on CPU
        return PartialState(cpu=not torch.cuda.is_available())
    return _SingleProcess()


def _pick_device(device: Any, accelerator: Any, models: Sequence[Any]) -> torch.device:
    if device is not None:
        return torch.device(device)
    if accelerator is not None:
        return torch.device(accelerator.device)
    for model in models:
        if isinstance(model, nn.Module):
            for param in model.parameters():
                return param.device
    return torch.device("cpu")


def _dataset_sample_rate(dataset: Dataset) -> int:
    if isinstance(dataset, AudioDataset) and dataset.crop_samples is not None:
        raise ValueError(
            "precompute needs whole files, but the dataset crops to "
            f"{dataset.crop_samples} samples; build it with crop_samples=None"
        )
    rate = getattr(dataset, "sample_rate", None)
    if rate is None:
        raise TypeError(
            "the dataset must have a sample_rate attribute so it can be checked against the "
            "models' (AudioDataset has one)"
        )
    return int(rate)


def _dataset_ids(dataset: Dataset) -> list[str]:
    ids = getattr(dataset, "ids", None)
    ids = [str(i) for i in ids] if ids is not None else [str(i) for i in range(len(dataset))]  # type: ignore[arg-type]  # map-style: sized
    if len(set(ids)) != len(ids):
        raise ValueError("the dataset's item ids are not unique")
    return ids


def _jobs(
    codec: Codec | None,
    tokenizer: SemanticTokenizer | None,
    latent_codec: LatentCodec | None,
    latent_dtype: str,
) -> list[_Job]:
    jobs = []
    if codec is not None:
        jobs.append(
            _Job(
                field="codes",
                model=codec,
                run=codec.encode,
                frame_rate=float(codec.frame_rate),
                spec=FieldSpec(smallest_int_dtype(codec.codebook_size), (codec.num_quantizers,)),
                codebook_size=codec.codebook_size,
                ndim=3,
            )
        )
    if tokenizer is not None:
        jobs.append(
            _Job(
                field="tokens",
                model=tokenizer,
                run=tokenizer.tokenize,
                frame_rate=float(tokenizer.frame_rate),
                spec=FieldSpec(smallest_int_dtype(tokenizer.codebook_size), ()),
                codebook_size=tokenizer.codebook_size,
                ndim=2,
            )
        )
    if latent_codec is not None:
        if np.dtype(latent_dtype).kind != "f":
            raise ValueError(f"latent_dtype must be a float dtype, got {latent_dtype!r}")
        jobs.append(
            _Job(
                field="latents",
                model=latent_codec,
                run=latent_codec.encode_latents,
                frame_rate=float(latent_codec.frame_rate),
                spec=FieldSpec(latent_dtype, (latent_codec.latent_dim,)),
                codebook_size=None,
                ndim=3,
            )
        )
    if not jobs:
        raise ValueError("give at least one of codec=, tokenizer=, latent_codec=")
    return jobs


def _check_model(job: _Job, dataset: Dataset, sample_rate: int) -> None:
    name = type(job.model).__name__
    if int(job.model.sample_rate) != sample_rate:
        raise SampleRateMismatchError(
            f"the {name} ({job.field}) expects {job.model.sample_rate} Hz audio but the dataset "
            f"gives {sample_rate} Hz; build the dataset with sample_rate={job.model.sample_rate} "
            "(it resamples on load)"
        )
    model_channels = getattr(job.model, "channels", None)
    data_channels = getattr(dataset, "channels", None)
    if model_channels is not None and data_channels is not None and model_channels != data_channels:
        raise ChannelMismatchError(
            f"the {name} ({job.field}) expects {model_channels}-channel audio but the dataset "
            f"gives {data_channels}; build the dataset with channels={model_channels}"
        )


def _class_name(model: Any) -> str:
    cls = type(model)
    return f"{cls.__module__}.{cls.__qualname__}"


def _metadata(
    sample_rate: int,
    codec: Codec | None,
    tokenizer: SemanticTokenizer | None,
    latent_codec: LatentCodec | None,
) -> dict[str, Any]:
    meta: dict[str, Any] = {"sample_rate": sample_rate}
    if codec is not None:
        meta.update(
            codec=_class_name(codec),
            frame_rate=float(codec.frame_rate),
            num_quantizers=int(codec.num_quantizers),
            codebook_size=int(codec.codebook_size),
        )
    if latent_codec is not None:
        meta.update(
            latent_codec=_class_name(latent_codec),
            latent_dim=int(latent_codec.latent_dim),
            latent_frame_rate=float(latent_codec.frame_rate),
        )
        meta.setdefault("frame_rate", float(latent_codec.frame_rate))
    if tokenizer is not None:
        meta.update(
            tokenizer=_class_name(tokenizer),
            tokenizer_codebook_size=int(tokenizer.codebook_size),
            tokenizer_frame_rate=float(tokenizer.frame_rate),
        )
    return meta


# ---------------------------------------------------------------------------------- resuming


def _hash(data: Any) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()


def _read_progress(path: Path) -> dict[str, Any]:
    """A process's record: ``{"plan": hash, "finished": {shard: [ids]}, "complete": bool}``."""
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise RuntimeError(
            f"{path} is corrupt ({err}); delete it to redo this process's shards"
        ) from err


def _resume(path: Path, plan_hash: str) -> dict[str, Any]:
    """This process's record to continue from, or a fresh one."""
    if not path.exists():
        return {"version": PROGRESS_VERSION, "plan": plan_hash, "finished": {}, "complete": False}
    record = _read_progress(path)
    if record.get("plan") != plan_hash:
        raise RuntimeError(
            f"{path.parent} holds a precompute run with different arguments (dataset, models, "
            "max_items_per_shard or number of processes); use a new output directory, or delete "
            "this one to start over"
        )
    record["complete"] = False
    return record


def _finished(directory: Path, name: str, shard_ids: list[str]) -> bool:
    """A recorded shard counts only if its index is on disk and lists the same items."""
    try:
        index = _read_index(directory, name)
    except (OSError, ValueError):
        return False
    return sorted([*index["ids"], *index.get("skipped", {})]) == sorted(shard_ids)


def _remove_temp_files(directory: Path, prefix: str) -> None:
    # leftovers of an interrupted atomic write of this process's shards
    for path in directory.glob(f".{prefix}-*.tmp-*"):
        path.unlink(missing_ok=True)


# ---------------------------------------------------------------------------------- running


def _batches(
    dataset: Dataset,
    shards: list[tuple[int, list[int]]],
    batch_size: int,
    max_batch_seconds: float | None,
) -> tuple[list[list[int]], list[int], dict[int, int]]:
    """Batches over the unfinished shards, longest first within each shard.

    Returns the batches, the shard of each batch, and the last batch of each shard.
    """
    duration = getattr(dataset, "duration", None)
    batches: list[list[int]] = []
    shard_of_batch: list[int] = []
    last_batch: dict[int, int] = {}
    for k, items in shards:
        seconds = {i: float(duration(i)) if duration else 0.0 for i in items}
        order = sorted(items, key=lambda i: (-seconds[i], i))
        batch: list[int] = []
        for i in order:
            # the first item of a batch is its longest: padded size = len(batch) * longest
            too_long = (
                max_batch_seconds is not None
                and batch
                and (len(batch) + 1) * seconds[batch[0]] > max_batch_seconds
            )
            if len(batch) == batch_size or too_long:
                batches.append(batch)
                shard_of_batch.append(k)
                batch = []
            batch.append(i)
        if batch:
            batches.append(batch)
            shard_of_batch.append(k)
        last_batch[k] = len(batches) - 1
    return batches, shard_of_batch, last_batch


def _encode_shards(
    dataset: Dataset,
    jobs: list[_Job],
    shards: list[tuple[int, list[int]]],
    bar: tqdm,
    *,
    batch_size: int,
    max_batch_seconds: float | None,
    num_workers: int,
    device: torch.device,
    sample_rate: int,
    min_samples: int = 0,
) -> Iterator[tuple[int, dict[int, dict[str, np.ndarray]], dict[int, str]]]:
    """Run the models over ``(shard number, item indices)``; yields ``(shard, results, skipped)``.

    One DataLoader spans every shard, so workers start once and keep decoding across shard
    boundaries while the model runs.
    """
    if not shards:
        return
    batches, shard_of_batch, last_batch = _batches(dataset, shards, batch_size, max_batch_seconds)
    items_of = dict(shards)
    loader = DataLoader(
        _Reader(dataset, min_samples=min_samples, sample_rate=sample_rate),
        batch_sampler=batches,
        num_workers=num_workers,
        collate_fn=_collate,
        pin_memory=device.type == "cuda",
    )
    results: dict[int, dict[str, np.ndarray]] = {}
    skipped: dict[int, str] = {}
    for b, batch in enumerate(loader):
        skipped.update(batch["errors"])
        if batch["audio"] is not None:
            results.update(_run(jobs, batch, device, sample_rate))
        bar.update(len(batch["indices"]) + len(batch["errors"]))
        k = shard_of_batch[b]
        if last_batch[k] == b:
            items = items_of[k]
            done = {i: results.pop(i) for i in items if i in results}
            yield k, done, {i: skipped.pop(i) for i in items if i in skipped}


class _Reader(Dataset):
    """Reads items for precompute; a bad file becomes an error record, not a substitute.

    Bad means unreadable, truncated (its header promises more than it holds) or shorter
    than ``min_samples``.
    """

    def __init__(self, dataset: Dataset, *, min_samples: int = 0, sample_rate: int = 1):
        self.dataset = dataset
        self.min_samples = min_samples
        self.sample_rate = sample_rate

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> dict[str, Any]:
        try:
            with warnings.catch_warnings():
                # half a file must not become a training item: the warning is raised here
                warnings.simplefilter("error", TruncatedAudioWarning)
                read = getattr(self.dataset, "read", None)
                item = read(index) if read is not None else self.dataset[index]
        except (AudioError, OSError, TruncatedAudioWarning) as err:
            return {"index": index, "error": f"{type(err).__name__}: {err}"}
        audio = item["audio"]
        length = int(item.get("length", audio.shape[-1]))
        if length < self.min_samples:
            rate = self.sample_rate
            return {
                "index": index,
                "error": f"too short: {length / rate:.3f} s, the minimum is "
                f"{self.min_samples / rate:.3f} s",
            }
        return {"index": index, "audio": audio, "length": length}


def _collate(items: list[dict[str, Any]]) -> dict[str, Any]:
    good = [it for it in items if "error" not in it]
    errors = {it["index"]: it["error"] for it in items if "error" in it}
    batch: dict[str, Any] = (
        collate_audio(good) if good else {"audio": None, "lengths": None, "index": None}
    )
    indices = batch["index"].tolist() if good else []
    return {
        "audio": batch["audio"],
        "lengths": batch["lengths"],
        "indices": indices,
        "errors": errors,
    }


def _num_frames(length: int, sample_rate: int, frame_rate: float) -> int:
    # floor(length / hop), hop = sample_rate / frame_rate; the epsilon absorbs float error in
    # rates such as 24000 / 320 = 75.0
    return math.floor(length * frame_rate / sample_rate + 1e-6)


def _run(
    jobs: list[_Job], batch: dict[str, Any], device: torch.device, sample_rate: int
) -> dict[int, dict[str, np.ndarray]]:
    audio = batch["audio"].to(device, non_blocking=True)
    lengths = batch["lengths"].tolist()
    out: dict[int, dict[str, np.ndarray]] = {i: {} for i in batch["indices"]}
    for job in jobs:
        result = job.run(audio)
        name = type(job.model).__name__
        if not isinstance(result, Tensor) or result.ndim != job.ndim or len(result) != len(audio):
            shape = tuple(result.shape) if isinstance(result, Tensor) else type(result).__name__
            want = ", ".join(["b", "n", *map(str, job.spec.trailing_shape)])
            raise ValueError(
                f"{name} returned {shape} for audio {tuple(audio.shape)}; {job.field} must be ({want})"
            )
        if result.shape[2:] != job.spec.trailing_shape:
            raise ValueError(
                f"{name} returned {job.field} with frames of shape {tuple(result.shape[2:])}, "
                f"but it declares {job.spec.trailing_shape}"
            )
        result = result.cpu()
        for b, (index, length) in enumerate(zip(batch["indices"], lengths)):
            # a model may return a frame more or less than floor(length / hop): keep the min
            n = min(_num_frames(length, sample_rate, job.frame_rate), result.shape[1])
            array = result[b, :n]
            if array.is_floating_point():
                array = array.float()
            out[index][job.field] = array.numpy()
    return out


def _write_shard(
    directory: Path,
    name: str,
    items: list[int],
    ids: list[str],
    results: dict[int, dict[str, np.ndarray]],
    skipped: dict[int, str],
    *,
    fields: dict[str, FieldSpec],
    metadata: dict[str, Any],
    codebook_sizes: dict[str, int],
) -> None:
    prefix, number = name.rsplit("-", 1)
    writer = ShardWriter(
        directory,
        fields=fields,
        max_items_per_shard=len(items) + 1,  # one shard, finalized by close()
        prefix=prefix,
        metadata=metadata,
        codebook_sizes=codebook_sizes,
        first_shard=int(number),
        overwrite=True,  # a shard left by an interrupted run is redone
    )
    for i in items:  # dataset order inside the shard, whatever order the batches ran in
        if i in results:
            writer.add(ids[i], **results[i])
        else:
            reason = skipped.get(i, "not processed")
            logger.warning("precompute skipped %s (%s)", ids[i], reason)
            writer.skip(ids[i], reason)
    writer.close()
