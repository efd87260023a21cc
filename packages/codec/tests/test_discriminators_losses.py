import pytest
import torch

from cadence.codec import (
    Balancer,
    CodecDiscriminator,
    DiscriminatorConfig,
    MultiPeriodDiscriminator,
    MultiScaleDiscriminator,
    MultiScaleMelLoss,
    MultiScaleSTFTDiscriminator,
    discriminator_adversarial_loss,
    feature_matching_loss,
    generator_adversarial_loss,
)


def noise(b=2, c=1, t=4000, seed=0):
    return torch.randn(b, c, t, generator=torch.Generator().manual_seed(seed)) * 0.1


@pytest.mark.parametrize(
    ("make", "count", "layers"),
    [
        (
            lambda: MultiScaleSTFTDiscriminator(
                filters=4, n_ffts=(256, 128), hop_lengths=(64, 32), win_lengths=(256, 128)
            ),
            2,
            5,
        ),
        (lambda: MultiPeriodDiscriminator(periods=(2, 3, 5), channels=(4, 8)), 3, 3),
        (
            lambda: MultiScaleDiscriminator(
                num_scales=3, filters=4, max_filters=16, downsample_factors=(4, 4)
            ),
            3,
            5,
        ),
    ],
    ids=["msstft", "mpd", "msd"],
)
def test_discriminator_shapes(make, count, layers):
    disc = make()
    audio = noise(t=4001)  # not a multiple of any period or hop
    logits, fmaps = disc(audio)
    assert len(logits) == len(fmaps) == count
    for logit, fmap in zip(logits, fmaps):
        assert logit.shape[0] == 2 and logit.ndim >= 3
        assert len(fmap) == layers and all(f.shape[0] == 2 for f in fmap)
    loss = sum(logit.mean() for logit in logits)
    loss.backward()
    assert all(p.grad is not None for p in disc.parameters())


def test_msstft_resolutions_and_mpd_folding():
    disc = MultiScaleSTFTDiscriminator(
        filters=4, n_ffts=(256,), hop_lengths=(64,), win_lengths=(256,)
    )
    logits, _ = disc(noise(t=256 + 64 * 9))
    assert logits[0].shape[2] == 10  # frames without centering: 1 + (t - n_fft) / hop
    mpd = MultiPeriodDiscriminator(periods=(5,), channels=(4,))
    _, fmaps = mpd(noise(t=1000))
    assert fmaps[0][0].shape[-1] == 5  # the period becomes the last axis


def test_codec_discriminator_combines_families_and_round_trips(tmp_path):
    config = DiscriminatorConfig.tiny()
    disc = CodecDiscriminator(config)
    logits, fmaps = disc(noise())
    assert len(logits) == 2 + 2 + 2  # msstft resolutions + periods + scales
    assert len(fmaps) == len(logits)
    disc.save_pretrained(tmp_path / "d")
    loaded = CodecDiscriminator.load_pretrained(tmp_path / "d")
    for a, b in zip(loaded(noise())[0], logits):
        torch.testing.assert_close(a, b)
    with pytest.raises(ValueError, match="duplicates"):
        DiscriminatorConfig(kinds=("mpd", "mpd"))
    with pytest.raises(ValueError, match="channel"):
        disc(noise(c=2))


def test_mel_loss_is_zero_on_equal_audio_and_grows_with_distortion():
    loss = MultiScaleMelLoss(16000)
    x = noise(t=8000)
    assert loss(x, x).item() == 0.0
    small, large = loss(x + 0.01 * noise(seed=1, t=8000), x), loss(0.3 * noise(seed=2, t=8000), x)
    assert 0 < small < large
    with pytest.raises(ValueError, match="same shape"):
        loss(x[..., :-1], x)


def test_adversarial_losses_on_known_logits():
    real, fake = [torch.full((2, 1, 3), 2.0)], [torch.full((2, 1, 3), -2.0)]
    # a perfect hinge discriminator: both margins met
    assert discriminator_adversarial_loss(real, fake, "hinge").item() == 0.0
    assert generator_adversarial_loss(fake, "hinge").item() == pytest.approx(3.0)
    assert discriminator_adversarial_loss(real, fake, "lsgan").item() == pytest.approx(1.0 + 4.0)
    assert generator_adversarial_loss(real, "lsgan").item() == pytest.approx(1.0)
    with pytest.raises(ValueError, match="hinge"):
        generator_adversarial_loss(fake, "wasserstein")  # type: ignore[arg-type]


def test_feature_matching():
    fm = [[torch.ones(2, 3), 2 * torch.ones(2, 4)]]
    assert feature_matching_loss(fm, fm).item() == 0.0
    shifted = [[torch.full((2, 3), 1.5), torch.full((2, 4), 3.0)]]
    # relative: |0.5| / 1 and |1| / 2, averaged
    assert feature_matching_loss(shifted, fm).item() == pytest.approx(0.5)
    assert feature_matching_loss(shifted, fm, relative=False).item() == pytest.approx(0.75)


@pytest.mark.parametrize("per_batch_item", [True, False])
def test_balancer_gives_gradient_shares_in_the_ratio_of_the_weights(per_batch_item):
    torch.manual_seed(0)
    weights = {"a": 1.0, "b": 3.0, "c": 6.0}
    balancer = Balancer(weights, per_batch_item=per_batch_item, total_norm=2.0)
    y = torch.randn(4, 1, 60, requires_grad=True)
    target = torch.randn(4, 1, 60)
    # Each loss reads its own third of the samples, so its contribution to the combined
    # gradient can be read off there; their gradient scales differ by ~10^6.
    parts = {"a": slice(0, 20), "b": slice(20, 40), "c": slice(40, 60)}
    for _ in range(3):  # repeated batches: the EMA of the norms is exact
        losses = {
            "a": 1e3 * (y[..., parts["a"]] - target[..., parts["a"]]).pow(2).sum(),
            "b": 1e-3 * y[..., parts["b"]].abs().sum(),
            "c": (y[..., parts["c"]].sin() * target[..., parts["c"]]).mean(),
        }
        combined, _ = balancer.gradient(losses, y)

    def norm(g):
        return g.flatten(1).norm(dim=1).mean() if per_batch_item else g.norm()

    share = {k: norm(combined[..., part]).item() for k, part in parts.items()}
    total = sum(weights.values())
    for k in weights:  # fractions w_k / sum(w) of total_norm
        assert share[k] == pytest.approx(2.0 * weights[k] / total, rel=1e-4)
    assert share["c"] / share["a"] == pytest.approx(6.0, rel=1e-4)
    # without balancing, the same losses would be 10^6 apart
    plain = Balancer(weights, per_batch_item=per_batch_item, balance_grads=False)
    raw, _ = plain.gradient(losses, y)
    assert norm(raw[..., parts["a"]]) / norm(raw[..., parts["c"]]) > 1e4


def test_balancer_backward_and_state():
    y = torch.randn(2, 1, 16, requires_grad=True)
    w = torch.randn(3, requires_grad=True)
    balancer = Balancer({"l1": 1.0, "l2": 1.0}, ema_decay=0.5)
    norms = balancer.backward(
        {"l1": y.abs().mean(), "l2": y.pow(2).mean()}, y, extra=w.pow(2).sum()
    )
    assert set(norms) == {"l1", "l2"}
    assert y.grad is not None and w.grad is not None
    torch.testing.assert_close(w.grad, 2 * w.detach())  # the extra loss is not rescaled
    state = balancer.state_dict()
    other = Balancer({"l1": 1.0, "l2": 1.0}, ema_decay=0.5)
    other.load_state_dict(state)
    assert other.state_dict() == state
    with pytest.raises(KeyError, match="no weight"):
        balancer.gradient({"l3": y.sum()}, y)
