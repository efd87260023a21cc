"""Mini-batch k-means: recovers planted clusters, resumes exactly, saves safetensors, converts km.bin."""

import numpy as np
import pytest
import torch

from cadence.semantic import (
    KMeans,
    KMeansTrainConfig,
    UntrustedPickleError,
    fit_kmeans,
    kmeans_plus_plus,
    load_legacy_kmeans,
)


def planted(k: int = 12, per: int = 300, dim: int = 16, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    centers = 6 * torch.randn(k, dim, generator=gen)
    labels = torch.arange(k).repeat_interleave(per)
    points = centers[labels] + torch.randn(k * per, dim, generator=gen)
    order = torch.randperm(k * per, generator=gen)
    return points[order], labels[order], centers


def purity(pred: torch.Tensor, labels: torch.Tensor) -> float:
    hits = 0
    for c in pred.unique():
        hits += torch.bincount(labels[pred == c]).max().item()
    return hits / len(labels)


def inertia(x: torch.Tensor, centroids: torch.Tensor) -> float:
    return torch.cdist(x, centroids).min(-1).values.square().mean().item()


def test_recovers_planted_clusters_and_beats_its_init():
    x, labels, centers = planted()
    config = KMeansTrainConfig(
        num_clusters=12, batch_size=512, max_steps=60, init_size=1000, seed=3
    )
    km = fit_kmeans(x, config, progress=False)
    pred = km(x)
    assert purity(pred, labels) > 0.99
    assert pred.unique().numel() == 12
    # the updates learn: lower inertia than the k-means++ seeds they started from
    init = kmeans_plus_plus(
        x[torch.randperm(len(x), generator=torch.Generator().manual_seed(3))[:1000]],
        12,
        torch.Generator().manual_seed(3),
    )
    assert inertia(x, km.centroids) < inertia(x, init)
    assert inertia(x, km.centroids) < 1.2 * inertia(x, centers)  # ~ the true centers' (dim = 16)


def test_same_seed_same_centroids_and_resume_equals_uninterrupted(tmp_path):
    x, _, _ = planted(seed=1)
    config = KMeansTrainConfig(
        num_clusters=10,
        batch_size=256,
        max_steps=40,
        init_size=800,
        seed=5,
        save_every=7,
        reassign_every=5,
    )
    full = fit_kmeans(x, config, progress=False)
    assert torch.equal(fit_kmeans(x, config, progress=False).centroids, full.centroids)
    state = tmp_path / "state"
    fit_kmeans(x, config, state_dir=state, progress=False, stop_after=13)  # interrupted
    assert (state / "kmeans_state.safetensors").exists()
    resumed = fit_kmeans(x, config, state_dir=state, progress=False)
    assert torch.equal(resumed.centroids, full.centroids)
    other = KMeansTrainConfig(**{**config.to_dict(), "seed": 6})
    with pytest.raises(ValueError, match="other data or settings"):
        fit_kmeans(x, other, state_dir=state, progress=False)


def test_a_state_save_interrupted_between_its_renames_resumes(tmp_path):
    from cadence.core.io import OLD_SUFFIX

    x, _, _ = planted(seed=1)
    config = KMeansTrainConfig(
        num_clusters=10, batch_size=256, max_steps=20, init_size=800, seed=5, save_every=4
    )
    full = fit_kmeans(x, config, progress=False)
    state = tmp_path / "state"
    fit_kmeans(x, config, state_dir=state, progress=False, stop_after=9)
    # A crash after the old state was moved aside and before the new one moved in.
    state.rename(state.with_name(state.name + OLD_SUFFIX))
    assert not state.exists()
    resumed = fit_kmeans(x, config, state_dir=state, progress=False)
    assert torch.equal(resumed.centroids, full.centroids)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state"]  # no temporaries left


def test_save_load_and_dimension_checks(tmp_path):
    km = KMeans.from_centroids(torch.randn(7, 5), features="toy features")
    km.save_pretrained(tmp_path / "km")
    again = KMeans.load_pretrained(tmp_path / "km")
    assert again.config == km.config and torch.equal(again.centroids, km.centroids)
    x = torch.randn(3, 4, 5)
    assert torch.equal(again(x), km.distances(x).argmin(-1))
    with pytest.raises(
        ValueError,
        match=r"width 6 but the k-means centroids have width 5 \(fitted on toy features\)",
    ):
        km(torch.randn(2, 6))
    with pytest.raises(ValueError, match="cannot make 7 clusters"):
        fit_kmeans(torch.randn(5, 5), KMeansTrainConfig(num_clusters=7), progress=False)
    with pytest.raises(ValueError, match="NaN"):
        fit_kmeans(
            torch.full((20, 5), float("nan")), KMeansTrainConfig(num_clusters=2), progress=False
        )


@pytest.mark.slow  # importing sklearn takes seconds
def test_legacy_km_bin_needs_trust_and_converts(tmp_path):
    joblib = pytest.importorskip("joblib")
    cluster = pytest.importorskip("sklearn.cluster")
    x, _, _ = planted(k=6, per=100, dim=8, seed=2)
    sk = cluster.MiniBatchKMeans(n_clusters=6, n_init=3, random_state=0, batch_size=256).fit(
        x.numpy()
    )
    path = tmp_path / "km.bin"
    joblib.dump(sk, path)
    with pytest.raises(UntrustedPickleError, match="trust_pickle=True"):
        load_legacy_kmeans(path)
    km = load_legacy_kmeans(path, trust_pickle=True, features="toy")
    km.save_pretrained(tmp_path / "converted")
    converted = KMeans.load_pretrained(tmp_path / "converted")
    queries = torch.randn(500, 8) * 6
    np.testing.assert_array_equal(converted(queries).numpy(), sk.predict(queries.numpy()))
    np.testing.assert_array_equal(converted(x).numpy(), sk.predict(x.numpy()))
