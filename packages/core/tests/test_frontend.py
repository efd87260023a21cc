"""The log-mel front end: frame counts, padding independence, normalization, SpecAugment."""

from __future__ import annotations

import pytest
import torch

from cadence.core.audio import EmptyAudioError
from cadence.core.config import ConfigError
from cadence.core.nn import MelFrontend, MelFrontendConfig

# b batch | t samples | f mel bins | n frames | d width


@pytest.fixture(autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def tiny(**changes) -> MelFrontend:
    torch.manual_seed(0)
    return MelFrontend(MelFrontendConfig(dim=16, n_mels=20, **changes)).eval()


def speech(t: int, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    time = torch.arange(t) / 16000
    tone = torch.sin(2 * torch.pi * 150 * time) * torch.sin(2 * torch.pi * 3 * time)
    return (0.3 * tone + 0.02 * torch.randn(t, generator=gen))[None, None]


@pytest.mark.parametrize("t", [160, 319, 320, 321, 4000, 16000])
def test_frame_counts_follow_the_documented_formula(t):
    frontend = tiny()
    x, lengths = frontend(speech(t))
    n = (t // 160 + 1) // 2
    assert x.shape == (1, n, 16) and lengths.tolist() == [n]
    assert torch.equal(frontend.frame_lengths(torch.tensor([t])), lengths)
    assert frontend.config.frame_rate == 50.0


def test_items_give_the_same_frames_alone_and_padded_in_a_batch():
    frontend = tiny()
    sizes = [16000, 9000, 5333]
    batch = 0.5 * torch.randn(3, 1, 16000, generator=torch.Generator().manual_seed(1))
    for i, t in enumerate(sizes):  # garbage past each end must not leak in
        batch[i, :, :t] = speech(t, seed=i)[0]
    x, lengths = frontend(batch, torch.tensor(sizes))
    for i, t in enumerate(sizes):
        alone, n = frontend(speech(t, seed=i))
        assert lengths[i] == n[0]
        torch.testing.assert_close(x[i, : int(n[0])], alone[0], atol=1e-5, rtol=1e-5)
        assert not x[i, int(n[0]) :].any()


def test_features_are_normalized_per_utterance_and_ignore_the_level():
    frontend = tiny()
    audio = speech(8000)
    mel, n = frontend.features(audio, torch.tensor([8000]))
    assert mel.shape == (1, 20, 50) and n.tolist() == [50]
    torch.testing.assert_close(mel.mean(-1), torch.zeros(1, 20), atol=1e-4, rtol=0)
    torch.testing.assert_close(mel.std(-1, unbiased=False), torch.ones(1, 20), atol=1e-3, rtol=0)
    quieter, _ = frontend.features(0.25 * audio, torch.tensor([8000]))
    torch.testing.assert_close(quieter, mel, atol=1e-3, rtol=0)


def test_spec_augment_only_in_training():
    frontend = tiny()
    audio = speech(16000)
    lengths = torch.tensor([16000])
    clean, _ = frontend.features(audio, lengths)
    assert torch.equal(frontend.features(audio, lengths)[0], clean)  # eval: deterministic
    frontend.train()
    masked, _ = frontend.features(audio, lengths)
    assert not torch.equal(masked, clean)
    changed = masked != clean
    assert (masked[changed] == 0).all()  # masked cells hold the utterance mean, 0
    off = tiny(time_masks=0, freq_masks=0).train()
    assert torch.equal(off.features(audio, lengths)[0], clean)


def test_bad_configs_and_inputs_are_refused():
    with pytest.raises(ConfigError, match="n_fft"):
        MelFrontendConfig(dim=8, n_fft=401)
    with pytest.raises(ConfigError, match="freq_mask_width"):
        MelFrontendConfig(dim=8, n_mels=4)
    with pytest.raises(ConfigError, match="dim"):
        MelFrontendConfig(dim=0)
    frontend = tiny()
    with pytest.raises(ValueError, match="mono"):
        frontend(torch.zeros(1, 2, 4000))
    with pytest.raises(EmptyAudioError):
        frontend(torch.zeros(1, 1, 100))
    with pytest.raises(ValueError, match="lengths"):
        frontend(torch.zeros(2, 1, 4000), torch.tensor([4000]))
    assert MelFrontendConfig.from_json(frontend.config.to_json()) == frontend.config
