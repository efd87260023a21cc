import json
import random
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from torch import nn

from cadence.core import checkpoint
from cadence.core.checkpoint import CheckpointError, load_pretrained, save_pretrained
from cadence.core.testing import TinyModel, TinyModelConfig

SCRIPTS = Path(__file__).parent / "scripts"


def make(seed=0, **kwargs):
    torch.manual_seed(seed)
    model = TinyModel(TinyModelConfig(**kwargs))
    with torch.no_grad():
        model.scale.uniform_(0.5, 1.5)  # a buffer that differs from its initial value
    return model.eval()


def test_round_trip_identical_outputs(tmp_path):
    model = make(dim=16, depth=3)
    path = model.save_pretrained(tmp_path / "ckpt", metadata={"step": 7})
    assert sorted(p.name for p in path.iterdir()) == ["config.json", "model.safetensors"]
    header = json.loads((path / "config.json").read_text())
    assert header["class"] == "cadence.core.testing.TinyModel"
    assert header["format_version"] == checkpoint.FORMAT_VERSION
    assert header["config"]["dim"] == 16 and header["metadata"] == {"step": 7}

    loaded = TinyModel.load_pretrained(path).eval()
    assert loaded.config == model.config
    x = torch.randn(4, 8)
    assert torch.equal(loaded(x), model(x))
    # Without a class, the recorded cadence class is imported.
    assert type(load_pretrained(path)) is TinyModel


def test_halved_weights_load_back_as_float32(tmp_path):
    model = make(dim=16, depth=2)
    with torch.no_grad():
        model.scale.fill_(1e6)  # does not fit float16: stays float32
    path = model.save_pretrained(tmp_path / "ckpt")
    full = (path / "model.safetensors").stat().st_size
    assert checkpoint.halve_weights(path) > 0.3 * full
    assert checkpoint.halve_weights(path) == 0  # already halved
    loaded = load_pretrained(path)
    assert all(
        p.dtype == torch.float32 for p in loaded.state_dict().values() if p.is_floating_point()
    )
    assert torch.equal(loaded.scale, model.scale)
    for a, b in zip(model.parameters(), loaded.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-4)
    assert sorted(p.name for p in path.iterdir()) == ["config.json", "model.safetensors"]


def test_quantized_weights_load_back_close_and_small(tmp_path):
    model = make(dim=128, depth=3, share_weights=True)
    with torch.no_grad():
        model.layers[1].weight[0, 0] = 40.0  # an outlier costs precision in its block only
    path = model.save_pretrained(tmp_path / "ckpt")
    full = (path / "model.safetensors").stat().st_size
    saved = checkpoint.quantize_weights(path)
    assert saved > 0.7 * full  # int8 + a float16 scale per 64 values: ~27% of float32
    assert checkpoint.quantize_weights(path) == 0  # already quantized
    loaded = load_pretrained(path).eval()
    assert all(p.dtype == torch.float32 for p in loaded.state_dict().values())
    assert loaded.layers[0].weight is loaded.layers[-1].weight  # tied weights stay tied
    for (name, a), b in zip(model.state_dict().items(), loaded.state_dict().values()):
        blocks = a.reshape(-1)
        bound = blocks.abs().max() / 254 + 1e-3 * blocks.abs().max() + 1e-6
        assert (a - b).abs().max() <= bound, name
    # away from the outlier's block, rows keep their own precision
    w, q = model.layers[1].weight, loaded.layers[1].weight
    assert (w[1:] - q[1:]).abs().max() < w[1:].abs().max() / 200
    x = torch.randn(32, 8)
    torch.testing.assert_close(loaded(x), model(x), rtol=0.02, atol=0.02)


def test_quantized_scales_must_match(tmp_path):
    from safetensors.torch import load_file, save_file

    path = make(dim=128).save_pretrained(tmp_path / "ckpt")
    checkpoint.quantize_weights(path)
    state = load_file(str(path / "model.safetensors"))
    key = next(k for k in state if k.endswith(".__int8_scales"))
    state[key] = state[key][:-1]
    save_file(state, str(path / "model.safetensors"), metadata={"stored_dtype": "int8"})
    with pytest.raises(CheckpointError, match="does not match its scales"):
        load_pretrained(path)


def test_tied_weights_survive(tmp_path):
    model = make(share_weights=True, depth=3)
    model.save_pretrained(tmp_path / "c")
    loaded = TinyModel.load_pretrained(tmp_path / "c")
    assert loaded.layers[0].weight is loaded.layers[-1].weight
    assert torch.equal(loaded.layers[-1].weight, model.layers[-1].weight)


def test_saves_unwrapped_compiled_module(tmp_path):
    model = make()
    wrapped = nn.DataParallel(model)
    save_pretrained(wrapped, tmp_path / "c")
    state_keys = TinyModel.load_pretrained(tmp_path / "c").state_dict().keys()
    assert not any(k.startswith(("module.", "_orig_mod.")) for k in state_keys)


class Unrelated(nn.Module):
    config_class = TinyModelConfig

    def __init__(self, config):
        super().__init__()
        self.config = config
        self.weight = nn.Parameter(torch.zeros(3))


def test_wrong_class_is_named(tmp_path):
    make().save_pretrained(tmp_path / "c")
    with pytest.raises(
        CheckpointError,
        match=r"holds a cadence\.core\.testing\.TinyModel checkpoint, not a .*Unrelated",
    ):
        load_pretrained(tmp_path / "c", Unrelated)


def test_config_mismatch_is_strict(tmp_path):
    make(dim=16).save_pretrained(tmp_path / "c")
    cfg = json.loads((tmp_path / "c/config.json").read_text())
    cfg["config"]["dim"] = 32
    (tmp_path / "c/config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match="shape mismatches"):
        TinyModel.load_pretrained(tmp_path / "c")
    cfg["config"]["bogus"] = 1
    (tmp_path / "c/config.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match="unknown key"):
        TinyModel.load_pretrained(tmp_path / "c")


def test_missing_and_corrupt(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        TinyModel.load_pretrained(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match=r"no config\.json"):
        TinyModel.load_pretrained(tmp_path / "empty")
    make().save_pretrained(tmp_path / "c")
    weights = tmp_path / "c/model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        TinyModel.load_pretrained(tmp_path / "c")
    (tmp_path / "c/config.json").write_text("{")
    with pytest.raises(CheckpointError, match="not valid JSON"):
        TinyModel.load_pretrained(tmp_path / "c")


def test_foreign_class_names_are_not_imported(tmp_path):
    make().save_pretrained(tmp_path / "c")
    cfg = json.loads((tmp_path / "c/config.json").read_text())
    cfg["class"] = "os.system"
    (tmp_path / "c/config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match="outside the cadence namespace"):
        load_pretrained(tmp_path / "c")


def test_loading_never_unpickles(tmp_path, monkeypatch):
    make().save_pretrained(tmp_path / "c")

    def forbidden(*args, **kwargs):
        raise AssertionError("pickle was used")

    import pickle

    monkeypatch.setattr(pickle, "loads", forbidden)
    monkeypatch.setattr(pickle, "load", forbidden)
    monkeypatch.setattr(torch, "load", forbidden)
    TinyModel.load_pretrained(tmp_path / "c")


def test_failed_save_keeps_previous(tmp_path, monkeypatch):
    old = make(seed=1)
    old.save_pretrained(tmp_path / "c")
    x = torch.randn(2, 8)
    expected = old(x)

    def crash(model, filename, metadata=None):
        Path(filename).write_bytes(b"partial")
        raise KeyboardInterrupt("killed while writing weights")

    monkeypatch.setattr(checkpoint, "save_model", crash)
    with pytest.raises(KeyboardInterrupt):
        make(seed=2).save_pretrained(tmp_path / "c")
    monkeypatch.undo()
    assert torch.equal(TinyModel.load_pretrained(tmp_path / "c").eval()(x), expected)
    assert [p.name for p in tmp_path.iterdir()] == ["c"]  # the temporary was cleaned up


def test_crash_between_renames_is_recovered(tmp_path, monkeypatch):
    old = make(seed=1)
    old.save_pretrained(tmp_path / "c")
    real_replace = checkpoint.os.replace
    calls = []

    def replace_then_die(src, dst):
        calls.append((src, dst))
        real_replace(src, dst)
        if len(calls) == 1:  # the old checkpoint was moved aside, the new one not yet in place
            raise SystemExit("power cut")

    monkeypatch.setattr(checkpoint.os, "replace", replace_then_die)
    with pytest.raises(SystemExit):
        make(seed=2).save_pretrained(tmp_path / "c")
    monkeypatch.undo()
    loaded = TinyModel.load_pretrained(tmp_path / "c")
    assert torch.equal(loaded.proj_in.weight, old.proj_in.weight)


@pytest.mark.slow
def test_killed_save_leaves_a_loadable_checkpoint(tmp_path):
    """SIGKILL a process that saves in a loop, at random moments: a checkpoint always loads."""
    directory = tmp_path / "ckpt"
    rng = random.Random(0)
    for attempt in range(4):
        proc = subprocess.Popen(
            [sys.executable, str(SCRIPTS / "save_forever.py"), str(directory)],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert proc.stdout.readline().startswith("saved")  # at least one complete save
        time.sleep(rng.uniform(0.0, 0.4))
        proc.kill()
        proc.wait()
        model = TinyModel.load_pretrained(directory)
        # All parameters were filled with one iteration's value: no mix of two saves.
        values = {p.flatten()[0].item() for p in model.parameters()}
        assert len(values) == 1, f"attempt {attempt}: mixed checkpoint {values}"
        iteration = json.loads((directory / "config.json").read_text())["metadata"]["iteration"]
        assert values == {float(iteration)}


# -- tampered config.json (issue 20): refused before anything large is allocated ----------


def _edit(path, **changes):
    header = json.loads((path / "config.json").read_text())
    for key, value in changes.items():
        if key in ("class", "format_version"):
            header[key] = value
        else:
            header["config"][key] = value
    (path / "config.json").write_text(json.dumps(header))


@pytest.mark.parametrize("dim", [100_000_000_000, 10**18])
def test_huge_config_is_refused_before_allocating(tmp_path, monkeypatch, dim):
    make().save_pretrained(tmp_path / "c")
    _edit(tmp_path / "c", dim=dim)
    built = []
    original = TinyModel.__init__

    def spy(self, config):
        built.append(torch.empty(0).device.type)  # the default device while building
        original(self, config)

    monkeypatch.setattr(TinyModel, "__init__", spy)
    with pytest.raises(CheckpointError, match=r"does not describe its weights|too large to exist"):
        TinyModel.load_pretrained(tmp_path / "c")
    assert built == ["meta"]  # never built for real


@dataclass(frozen=True, kw_only=True)
class TableConfig(TinyModelConfig):
    table: int = 16


class BigBuffer(TinyModel):
    """A model with a non-persistent buffer whose size no stored weight shows."""

    config_class = TableConfig

    def __init__(self, config):
        super().__init__(config)
        self.register_buffer("table", torch.zeros(config.table, 1024), persistent=False)


def test_huge_unstored_buffer_is_refused(tmp_path):
    BigBuffer(TableConfig()).save_pretrained(tmp_path / "c")
    assert isinstance(load_pretrained(tmp_path / "c", BigBuffer), BigBuffer)
    _edit(tmp_path / "c", table=100_000_000)  # 400 GB of table, the same weights file
    with pytest.raises(CheckpointError, match=r"builds a model of 381\.5 GiB"):
        load_pretrained(tmp_path / "c", BigBuffer)


def test_a_class_entry_naming_a_non_class_is_a_checkpoint_error(tmp_path):
    make().save_pretrained(tmp_path / "c")
    for name in ("cadence.core.testing", "cadence.core.config.config_from_dict"):
        _edit(tmp_path / "c", **{"class": name})
        with pytest.raises(CheckpointError, match="not a"):
            load_pretrained(tmp_path / "c", TinyModel)
        with pytest.raises(CheckpointError, match="not a model class"):
            load_pretrained(tmp_path / "c")


def test_a_changed_class_names_the_file_and_the_class(tmp_path):
    make().save_pretrained(tmp_path / "c")
    _edit(tmp_path / "c", **{"class": "cadence.core.testing.TinyModel"}, bogus=1)
    with pytest.raises(CheckpointError, match=r"config\.json.*TinyModelConfig.*bogus"):
        load_pretrained(tmp_path / "c")


@pytest.mark.parametrize("version", ["1", 1.5, True, None, 0, [1]])
def test_bad_format_version(tmp_path, version):
    make().save_pretrained(tmp_path / "c")
    _edit(tmp_path / "c", format_version=version)
    with pytest.raises(CheckpointError, match="format_version"):
        load_pretrained(tmp_path / "c")


@pytest.mark.parametrize("content", ["[1, 2]", '"text"', "\x00\x01binary\xff"])
def test_config_json_that_is_not_an_object(tmp_path, content):
    make().save_pretrained(tmp_path / "c")
    (tmp_path / "c" / "config.json").write_bytes(content.encode("latin-1"))
    with pytest.raises(CheckpointError, match=r"not an object|not valid JSON"):
        load_pretrained(tmp_path / "c")
