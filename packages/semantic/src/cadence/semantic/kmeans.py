"""k-means in torch: k-means++ init, mini-batch updates (Sculley 2010), resumable, safetensors out.

The centroids are a tiny Cadence checkpoint (``config.json`` + ``model.safetensors`` holding
``centroids`` ``(v, d)``) with a :class:`KMeansConfig` that says how many clusters, their width,
and which features they were fitted on. Legacy ``km.bin`` files (a joblib-pickled sklearn
``MiniBatchKMeans``, as written by fairseq's ``learn_kmeans.py`` and read by audiolm-pytorch)
are converted by :func:`load_legacy_kmeans`, which unpickles only with ``trust_pickle=True``.
"""

# n points (feature vectors) | d feature dim | v clusters (codebook entries)

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import Tensor, nn
from tqdm.auto import tqdm

from cadence.core.checkpoint import CheckpointError, PretrainedMixin
from cadence.core.config import Config, ConfigError
from cadence.core.io import atomic_directory, recover_directory

__all__ = [
    "KMeans",
    "KMeansConfig",
    "KMeansTrainConfig",
    "UntrustedPickleError",
    "collect_features",
    "fit_kmeans",
    "kmeans_plus_plus",
    "load_legacy_kmeans",
]


class UntrustedPickleError(CheckpointError):
    """A legacy pickle was not loaded because the caller did not say it trusts the file."""


@dataclass(frozen=True, kw_only=True)
class KMeansConfig(Config):
    """What a centroid file holds.

    Attributes:
        num_clusters: ``k``; tokens lie in ``[0, k)``.
        dim: ``d``, the width of the features the centroids live in.
        features: a description of those features (e.g. ``"hubert_base_ls960 layer 9"``),
            checked by tokenizers and shown in errors.
    """

    num_clusters: int = 500
    dim: int = 768
    features: str = ""

    def __post_init__(self) -> None:
        if self.num_clusters < 1 or self.dim < 1:
            raise ConfigError(
                f"KMeansConfig needs num_clusters, dim >= 1, got {self.num_clusters}, {self.dim}"
            )


class KMeans(PretrainedMixin, nn.Module):
    """Centroids ``(v, d)`` and nearest-centroid assignment."""

    config_class = KMeansConfig
    centroids: Tensor

    def __init__(self, config: KMeansConfig):
        super().__init__()
        self.config = config
        # Seeded random centroids until fitted or loaded: an unfitted tokenizer still gives
        # varied (meaningless) tokens, which is what shape and plumbing tests need.
        init = torch.randn(
            config.num_clusters, config.dim, generator=torch.Generator().manual_seed(0)
        )
        self.register_buffer("centroids", init)

    @classmethod
    def from_centroids(cls, centroids: Tensor, *, features: str = "") -> KMeans:
        if centroids.ndim != 2:
            raise ValueError(f"centroids must be (v, d), got {tuple(centroids.shape)}")
        model = cls(
            KMeansConfig(num_clusters=centroids.shape[0], dim=centroids.shape[1], features=features)
        )
        model.centroids.copy_(centroids.detach().float())
        return model

    @property
    def codebook_size(self) -> int:
        return self.config.num_clusters

    def distances(self, x: Tensor) -> Tensor:
        """Squared euclidean distances ``(..., d)`` -> ``(..., v)``."""
        self._check_dim(x)
        c = self.centroids.to(x.dtype)
        return (x.square().sum(-1, keepdim=True) - 2 * x @ c.T + c.square().sum(-1)).clamp(min=0)

    def forward(self, x: Tensor) -> Tensor:
        """Nearest centroid of each ``(..., d)`` vector -> ``(...)`` long."""
        self._check_dim(x)
        c = self.centroids.to(x.dtype)
        # ||x||^2 does not change the argmin
        return (c.square().sum(-1) - 2 * x @ c.T).argmin(-1)

    predict = forward

    def _check_dim(self, x: Tensor) -> None:
        if x.shape[-1] != self.config.dim:
            what = f" (fitted on {self.config.features})" if self.config.features else ""
            raise ValueError(
                f"features have width {x.shape[-1]} but the k-means centroids have width "
                f"{self.config.dim}{what}; use centroids fitted on the same feature layer"
            )


def kmeans_plus_plus(x: Tensor, k: int, generator: torch.Generator) -> Tensor:
    """k-means++ seeding (Arthur & Vassilvitskii 2007): ``(n, d)`` -> ``(v, d)`` centroids."""
    m = x.shape[0]
    if m < k:
        raise ValueError(f"k-means++ needs at least k={k} points, got {m}")
    first = int(torch.randint(m, (1,), generator=generator).item())
    centers = [x[first]]
    closest = (x - x[first]).square().sum(-1)
    for _ in range(1, k):
        total = closest.sum()
        if total <= 0:  # fewer distinct points than clusters: pick any
            idx = int(torch.randint(m, (1,), generator=generator).item())
        else:
            idx = int(torch.multinomial(closest / total, 1, generator=generator).item())
        centers.append(x[idx])
        closest = torch.minimum(closest, (x - x[idx]).square().sum(-1))
    return torch.stack(centers)


@dataclass(frozen=True, kw_only=True)
class KMeansTrainConfig(Config):
    """Mini-batch k-means settings.

    Attributes:
        num_clusters: ``k``.
        batch_size: points per update.
        max_steps: updates.
        init_size: points k-means++ seeds from (at least ``k``).
        reassign_every: every this many steps, clusters that received no point since the
            last check are moved onto random points of the current batch (0 = never).
        seed: seeds init and batch sampling; same seed and data -> same centroids.
        save_every: with a ``state_dir``, save resumable state every this many steps.
    """

    num_clusters: int = 500
    batch_size: int = 10000
    max_steps: int = 200
    init_size: int = 30000
    reassign_every: int = 20
    seed: int = 0
    save_every: int = 50

    def __post_init__(self) -> None:
        for name in ("num_clusters", "batch_size", "init_size", "save_every"):
            if getattr(self, name) < 1:
                raise ConfigError(
                    f"KMeansTrainConfig.{name} must be >= 1, got {getattr(self, name)}"
                )
        if self.max_steps < 0 or self.reassign_every < 0:
            raise ConfigError("KMeansTrainConfig: max_steps and reassign_every must be >= 0")


_STATE_TENSORS = "kmeans_state.safetensors"
_STATE_JSON = "kmeans_state.json"


def _save_state(state_dir: Path, tensors: dict[str, Tensor], info: dict[str, Any]) -> None:
    """Write both state files as one directory, swapped in whole (core's atomic_directory)."""
    with atomic_directory(state_dir) as tmp:
        save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp / _STATE_TENSORS))
        (tmp / _STATE_JSON).write_text(json.dumps(info, indent=2, sort_keys=True) + "\n")


def _load_state(state_dir: Path) -> tuple[dict[str, Tensor], dict[str, Any]] | None:
    recover_directory(state_dir)  # a save interrupted between its two renames
    if not (state_dir / _STATE_JSON).exists():
        return None
    return load_file(str(state_dir / _STATE_TENSORS)), json.loads(
        (state_dir / _STATE_JSON).read_text()
    )


def fit_kmeans(
    features: Tensor,
    config: KMeansTrainConfig,
    *,
    state_dir: str | os.PathLike | None = None,
    features_description: str = "",
    progress: bool = True,
    stop_after: int | None = None,
) -> KMeans:
    """Fit mini-batch k-means to ``(n, d)`` features.

    Args:
        features: the points (float; kept where they are, CPU or GPU).
        config: training settings.
        state_dir: save resumable state here every ``config.save_every`` steps; rerunning
            with the same features, config and folder continues where it stopped and ends
            with exactly the centroids an uninterrupted run gives.
        features_description: stored in the result's :class:`KMeansConfig`.
        progress: show a progress bar.
        stop_after: stop (saving state) after this many steps of this call, to
            interrupt a run deliberately (tests, time-limited jobs).

    Returns:
        The fitted :class:`KMeans`.
    """
    if features.ndim != 2:
        raise ValueError(f"features must be (n, d), got {tuple(features.shape)}")
    if not torch.isfinite(features).all():
        raise ValueError("features contain NaN or infinite values")
    x = features.float()
    m, d = x.shape
    k = config.num_clusters
    if m < k:
        raise ValueError(
            f"{m} feature vectors cannot make {k} clusters; collect more data or lower num_clusters"
        )
    fingerprint = {
        "config": config.to_dict(),
        "shape": [m, d],
        "checksum": float(x[:: max(1, m // 1000)].double().sum()),
    }
    path = Path(state_dir) if state_dir is not None else None
    loaded = _load_state(path) if path is not None else None
    generator = torch.Generator().manual_seed(config.seed)
    if loaded is not None:
        tensors, info = loaded
        if info["fingerprint"] != fingerprint:
            raise ValueError(
                f"{path} holds k-means state for other data or settings; use a new state_dir "
                "or delete it to start over"
            )
        centroids, counts, since = (
            tensors["centroids"].to(x.device),
            tensors["counts"].to(x.device),
            tensors["since"].to(x.device),
        )
        generator.set_state(tensors["generator"])
        step = int(info["step"])
    else:
        init = torch.randperm(m, generator=generator)[: max(config.init_size, k)]
        centroids = kmeans_plus_plus(x[init.to(x.device)], k, generator)
        counts = torch.zeros(k, device=x.device)
        since = torch.zeros(k, device=x.device)
        step = 0

    def save() -> None:
        if path is not None:
            _save_state(
                path,
                {
                    "centroids": centroids.cpu(),
                    "counts": counts.cpu(),
                    "since": since.cpu(),
                    "generator": generator.get_state(),
                },
                {"step": step, "fingerprint": fingerprint},
            )

    bar = tqdm(
        total=config.max_steps, initial=step, desc="k-means", disable=not progress, leave=False
    )
    done_here = 0
    while step < config.max_steps:
        batch = x[torch.randint(m, (min(config.batch_size, m),), generator=generator).to(x.device)]
        assign = (centroids.square().sum(-1) - 2 * batch @ centroids.T).argmin(-1)
        batch_counts = torch.bincount(assign, minlength=k).to(x.dtype)
        sums = torch.zeros_like(centroids).index_add_(0, assign, batch)
        counts += batch_counts
        since += batch_counts
        # Per-center learning rate 1 / count: each center is the running mean of its points.
        hit = batch_counts > 0
        centroids[hit] += (sums[hit] - batch_counts[hit, None] * centroids[hit]) / counts[hit, None]
        step += 1
        done_here += 1
        if config.reassign_every and step % config.reassign_every == 0:
            dead = (since == 0).nonzero().flatten()
            if len(dead):
                pick = torch.randint(batch.shape[0], (len(dead),), generator=generator).to(x.device)
                centroids[dead] = batch[pick]
                counts[dead] = 0
            since.zero_()
        bar.update(1)
        if path is not None and (step % config.save_every == 0 or step == config.max_steps):
            save()
        if stop_after is not None and done_here >= stop_after:
            save()
            break
    bar.close()
    return KMeans.from_centroids(centroids.cpu(), features=features_description)


def collect_features(
    dataset: Iterable[dict[str, Any]] | Any,
    feature_fn: Callable[[Tensor], Tensor],
    *,
    max_frames: int | None = None,
    seed: int = 0,
    progress: bool = True,
) -> Tensor:
    """Features of every item of an audio dataset, stacked ``(n, d)``.

    Args:
        dataset: items with ``"audio"`` ``(c, t)`` and optionally ``"length"`` (a
            :class:`cadence.core.data.AudioDataset` with ``crop_samples=None``).
        feature_fn: ``(1, c, t)`` audio -> ``(n, d)`` features of one item.
        max_frames: keep a seeded random subset of at most this many frames.
        seed: seed of that subset.
        progress: show a progress bar.
    """
    chunks = []
    total = len(dataset) if hasattr(dataset, "__len__") else None  # type: ignore[arg-type]  # has __len__
    for item in tqdm(dataset, total=total, desc="features", disable=not progress, leave=False):
        audio = item["audio"]
        length = int(item.get("length", audio.shape[-1]))
        with torch.inference_mode():
            feats = feature_fn(audio[None, :, :length])
        if feats.ndim != 2:
            raise ValueError(f"feature_fn must return (n, d) per item, got {tuple(feats.shape)}")
        chunks.append(feats.detach().float().cpu())
    if not chunks:
        raise ValueError("the dataset yielded no items")
    x = torch.cat(chunks)
    if max_frames is not None and x.shape[0] > max_frames:
        keep = torch.randperm(x.shape[0], generator=torch.Generator().manual_seed(seed))[
            :max_frames
        ]
        x = x[keep.sort().values]
    return x


def load_legacy_kmeans(
    path: str | os.PathLike, *, trust_pickle: bool = False, features: str = ""
) -> KMeans:
    """Convert a joblib-pickled sklearn k-means (``km.bin``) to :class:`KMeans`.

    Save the result with ``.save_pretrained(dir)`` and use that from then on.

    Args:
        path: the ``km.bin`` file (fairseq ``learn_kmeans.py``, audiolm-pytorch).
        trust_pickle: required. Unpickling runs whatever code the file names, so only pass
            True for a file from a source you trust.
        features: description stored with the centroids.

    Raises:
        UntrustedPickleError: ``trust_pickle`` was not given.
        ImportError: joblib / scikit-learn are missing (``pip install 'cadence-semantic[legacy]'``).
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"k-means file not found: {path}")
    if not trust_pickle:
        raise UntrustedPickleError(
            f"{path} is a pickle (joblib/sklearn k-means); loading it can execute arbitrary code "
            "stored in the file. If you trust its source, convert it once with "
            "load_legacy_kmeans(path, trust_pickle=True).save_pretrained(new_dir) and use the "
            "safetensors checkpoint afterwards."
        )
    try:
        import joblib
        import sklearn  # noqa: F401  (the pickle refers to sklearn classes)
    except ImportError as err:
        raise ImportError(
            "reading legacy km.bin files needs joblib and scikit-learn: "
            "pip install 'cadence-semantic[legacy]'"
        ) from err
    model = joblib.load(path)
    centers = getattr(model, "cluster_centers_", None)
    if centers is None:
        raise CheckpointError(
            f"{path} holds a {type(model).__name__}, not a fitted sklearn k-means"
        )
    return KMeans.from_centroids(torch.as_tensor(centers, dtype=torch.float32), features=features)
