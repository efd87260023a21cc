import pytest
import torch

from cadence.codec.seanet import SEANetConfig, SEANetDecoder, SEANetEncoder
from cadence.core.config import ConfigError


def tiny(cls, **kwargs):
    torch.manual_seed(0)
    return cls(SEANetConfig(n_filters=4, latent_dim=8, strides=(2, 4), **kwargs)).eval()


@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize("lstm", [0, 2])
@pytest.mark.parametrize("length", [1, 7, 8, 9, 100])
def test_lengths(causal, lstm, length):
    encoder = tiny(SEANetEncoder, causal=causal, lstm=lstm)
    decoder = tiny(SEANetDecoder, causal=causal, lstm=lstm)
    assert encoder.hop_length == decoder.hop_length == 8
    z = encoder(torch.randn(2, 1, length))
    assert z.shape == (2, 8, -(-length // 8))  # ceil(t / hop_length) frames
    assert decoder(z).shape == (2, 1, z.shape[-1] * 8)


def test_strides_are_encoder_order_and_the_decoder_mirrors_them():
    config = SEANetConfig(strides=(2, 4, 5, 8))
    encoder, decoder = SEANetEncoder(config), SEANetDecoder(config)
    assert encoder.hop_length == decoder.hop_length == 320
    strides = [m.stride for m in encoder.modules() if hasattr(m, "padding_total") and m.stride > 1]
    assert strides == [2, 4, 5, 8]
    upsampling = [
        m.stride for m in decoder.modules() if hasattr(m, "padding_left") and m.stride > 1
    ]
    assert upsampling == [8, 5, 4, 2]


def test_causal_encoder_ignores_the_future():
    encoder = tiny(SEANetEncoder, causal=True, pad_mode="constant")
    x = torch.randn(1, 1, 64)
    y = x.clone()
    y[..., 40:] = torch.randn(24)
    with torch.no_grad():
        zx, zy = encoder(x), encoder(y)
    # Frames whose receptive field ends before sample 40 are unchanged.
    assert torch.equal(zx[..., :4], zy[..., :4])
    assert not torch.allclose(zx[..., 5:], zy[..., 5:])


def test_conv_shortcut_and_weight_norm_names():
    encoder = SEANetEncoder(SEANetConfig(true_skip=False))
    keys = set(encoder.state_dict())
    assert "model.0.conv.parametrizations.weight.original0" in keys
    assert "model.1.shortcut.conv.parametrizations.weight.original1" in keys
    assert "model.13.lstm.weight_ih_l0" in keys


def test_unknown_activation():
    with pytest.raises(ConfigError, match="unknown activation"):
        SEANetConfig(activation="Relu6x")


def test_config_refusals():
    with pytest.raises(ConfigError, match="causal"):
        SEANetConfig(causal=True, norm="time_group_norm")
    with pytest.raises(ConfigError, match="strides"):
        SEANetConfig(strides=())
    with pytest.raises(ConfigError, match="trim_right_ratio"):
        SEANetConfig(trim_right_ratio=0.5)  # only for causal models
