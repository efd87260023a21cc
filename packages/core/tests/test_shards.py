"""Shard writer / manifest / reader: exact round trips, dtypes, no pickle, clear errors."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from cadence.core.data import (
    FieldSpec,
    ShardFormatError,
    ShardMismatchError,
    ShardReader,
    ShardWriter,
    collate_sequences,
    smallest_int_dtype,
    write_manifest,
)

METADATA = {"sample_rate": 16000, "frame_rate": 50.0, "codebook_size": 1024, "num_quantizers": 4}


def make_items(count: int, seed: int = 0) -> dict[str, dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    items = {}
    for k in range(count):
        n = 0 if k == 3 else int(rng.integers(1, 40))  # one empty item
        items[f"utt{k:03d}"] = {
            "codes": rng.integers(0, 1024, size=(n, 4)),
            "tokens": rng.integers(0, 200, size=(n + k % 2,)),  # another length than codes
            "latents": rng.standard_normal((n, 6)).astype(np.float32),
        }
    return items


def write_shards(
    directory: Path, items, max_items: int = 4, manifest: bool = True, **kwargs
) -> list[str]:
    fields = {
        "codes": FieldSpec("int16", (4,)),
        "tokens": FieldSpec("uint8", ()),
        "latents": FieldSpec("float16", (6,)),
    }
    with ShardWriter(
        directory,
        fields=fields,
        max_items_per_shard=max_items,
        metadata=METADATA,
        codebook_sizes={"codes": 1024, "tokens": 256},
        **kwargs,
    ) as writer:
        for item_id, arrays in items.items():
            writer.add(item_id, **arrays)
    if manifest:
        write_manifest(directory)
    return writer.shard_names


@pytest.fixture
def shards(tmp_path: Path):
    items = make_items(10)
    names = write_shards(tmp_path / "shards", items)
    return tmp_path / "shards", items, names


def test_round_trip_is_exact_over_several_shards(shards):
    directory, items, names = shards
    assert names == ["shard-00000", "shard-00001", "shard-00002"]
    reader = ShardReader(directory)
    assert len(reader) == 10 and reader.ids == list(items)
    assert reader.metadata == METADATA and reader.shard_names == names
    for i, (item_id, arrays) in enumerate(items.items()):
        item = reader[i]
        assert item["id"] == item_id
        assert item["codes"].dtype == torch.long and item["tokens"].dtype == torch.long
        assert item["latents"].dtype == torch.float16
        np.testing.assert_array_equal(item["codes"].numpy(), arrays["codes"])
        np.testing.assert_array_equal(item["tokens"].numpy(), arrays["tokens"])
        np.testing.assert_array_equal(item["latents"].numpy(), arrays["latents"].astype(np.float16))
    assert reader[3]["codes"].shape == (0, 4)
    assert torch.equal(reader[-1]["codes"], reader[9]["codes"])
    assert torch.equal(reader.by_id("utt007")["tokens"], reader[7]["tokens"])
    np.testing.assert_array_equal(
        reader.lengths("codes"), [len(a["codes"]) for a in items.values()]
    )
    np.testing.assert_array_equal(
        reader.lengths("tokens"), [len(a["tokens"]) for a in items.values()]
    )
    stored = ShardReader(directory, int_dtype=None, float_dtype=torch.float32)[0]
    assert stored["codes"].dtype == torch.int16 and stored["tokens"].dtype == torch.uint8
    assert stored["latents"].dtype == torch.float32
    with pytest.raises(IndexError):
        reader[10]
    with pytest.raises(KeyError, match="nope"):
        reader.by_id("nope")


def test_no_pickle_anywhere(shards):
    directory, _, _ = shards
    manifest = json.loads((directory / "manifest.json").read_text())
    assert manifest["format"] == "cadence-shards" and manifest["version"] == 1
    assert manifest["num_items"] == 10 and [s["num_items"] for s in manifest["shards"]] == [4, 4, 2]
    assert manifest["fields"]["codes"] == {"dtype": "int16", "trailing_shape": [4]}
    files = sorted(p.name for p in directory.iterdir())
    assert all(f.endswith((".npy", ".json")) for f in files)
    assert not any(f.startswith(".") for f in files)  # no temp file left behind
    for path in directory.glob("*.npy"):
        array = np.load(path, allow_pickle=False)
        assert array.dtype != object
    first = np.load(directory / "shard-00000.codes.npy", allow_pickle=False)
    assert first.dtype == np.int16 and first.shape[1] == 4


def test_reader_pickles_and_feeds_two_workers(shards):
    directory, items, _ = shards
    reader = ShardReader(directory)
    reader[0]  # opens memory maps, which must not travel
    clone = pickle.loads(pickle.dumps(reader))
    assert torch.equal(clone[5]["codes"], reader[5]["codes"])
    loader = DataLoader(reader, batch_size=3, num_workers=2, collate_fn=collate_sequences)
    seen = []
    for batch in loader:
        seen += batch["id"]
        for b, item_id in enumerate(batch["id"]):
            n = int(batch["codes_lengths"][b])
            assert n == len(items[item_id]["codes"])
            np.testing.assert_array_equal(batch["codes"][b, :n].numpy(), items[item_id]["codes"])
            assert not batch["codes_mask"][b, n:].any()
    assert seen == list(items)


def test_inferred_fields_use_the_smallest_integer_dtype(tmp_path: Path):
    sizes = (2, 256, 257, 1024, 32768, 32769)
    expected = ["uint8", "uint8", "int16", "int16", "int16", "int32"]
    assert [smallest_int_dtype(s) for s in sizes] == expected
    writer = ShardWriter(tmp_path, codebook_sizes={"codes": 1024, "tokens": 100})
    writer.add(
        "a",
        codes=torch.randint(0, 1024, (5, 8)),
        tokens=torch.randint(0, 100, (7,)),
        pitch=torch.arange(5),
        latents=torch.randn(5, 3, dtype=torch.bfloat16),
    )
    writer.close()
    assert writer.fields == {
        "codes": FieldSpec("int16", (8,)),
        "tokens": FieldSpec("uint8", ()),
        "pitch": FieldSpec("int64", ()),  # no codebook given: keeps its dtype
        "latents": FieldSpec("float32", (3,)),  # numpy has no bfloat16
    }
    # the codebook sizes precompute records in the metadata are used too
    described = ShardWriter(
        tmp_path / "m", metadata={"codebook_size": 256, "tokenizer_codebook_size": 500}
    )
    described.add("a", codes=torch.randint(0, 256, (5, 8)), tokens=torch.randint(0, 500, (5,)))
    assert described.fields == {"codes": FieldSpec("uint8", (8,)), "tokens": FieldSpec("int16", ())}
    with pytest.raises(ValueError, match=r"outside \[0, 255\]"):
        described.add("b", codes=torch.full((1, 8), 256), tokens=torch.zeros(1, dtype=torch.long))


def test_check_compatible(shards):
    reader = ShardReader(shards[0])
    reader.check_compatible(codebook_size=1024, num_quantizers=4, frame_rate=50)  # 50 == 50.0
    with pytest.raises(ShardMismatchError) as err:
        reader.check_compatible(codebook_size=2048, num_quantizers=4, frame_rate=75)
    message = str(err.value)
    assert "codebook_size=1024" in message and "2048" in message and "frame_rate" in message
    assert (
        "num_quantizers" not in message and "re-run precompute with the matching codec" in message
    )
    with pytest.raises(ShardMismatchError, match="'latent_dim' is not recorded"):
        reader.check_compatible(latent_dim=64)


def test_writer_refuses_bad_items(tmp_path: Path):
    writer = ShardWriter(
        tmp_path, fields={"codes": FieldSpec("int16", (2,))}, codebook_sizes={"codes": 8}
    )
    with pytest.raises(ValueError, match=r"outside \[0, 7\]"):
        writer.add("a", codes=np.full((3, 2), 8))
    with pytest.raises(ValueError, match=r"expected \(n, 2\)"):
        writer.add("a", codes=np.zeros((3, 3), dtype=np.int64))
    with pytest.raises(TypeError, match="stores integers"):
        writer.add("a", codes=np.zeros((3, 2), dtype=np.float32))
    with pytest.raises(ValueError, match="fields"):
        writer.add("a", codes=np.zeros((3, 2), dtype=np.int64), tokens=np.zeros(3, dtype=np.int64))
    writer.add("a", codes=np.zeros((3, 2), dtype=np.int64))
    with pytest.raises(ValueError, match="duplicate"):
        writer.add("a", codes=np.zeros((3, 2), dtype=np.int64))
    writer.close()
    wide = ShardWriter(tmp_path / "f16", fields={"x": FieldSpec("float16", ())})
    with pytest.raises(ValueError, match="float16"):
        wide.add("a", x=np.array([1e6]))
    with pytest.raises(FileExistsError, match="overwrite=True"):
        ShardWriter(tmp_path, fields={"codes": FieldSpec("int16", (2,))}).add(
            "b", codes=np.zeros((1, 2), np.int16)
        )


def test_clear_errors_for_missing_or_corrupt_files(tmp_path: Path):
    items = make_items(6)
    directory = tmp_path / "s"
    write_shards(directory, items)
    (directory / "manifest.json").unlink()
    with pytest.raises(FileNotFoundError, match="write_manifest"):
        ShardReader(directory)
    path = write_manifest(directory)
    path.write_text(path.read_text()[:40])  # cut off
    with pytest.raises(ShardFormatError, match="not valid JSON"):
        ShardReader(directory)
    write_manifest(directory)
    codes = directory / "shard-00001.codes.npy"
    codes.write_bytes(codes.read_bytes()[:-10])  # truncated
    with pytest.raises(ShardFormatError, match="truncated or corrupt"):
        ShardReader(directory)
    codes.unlink()
    with pytest.raises(FileNotFoundError, match=r"shard-00001\.codes\.npy"):
        ShardReader(directory)
    (directory / "shard-00001.index.json").unlink()
    with pytest.raises(FileNotFoundError, match="never finalized"):
        ShardReader(directory)


def test_write_manifest_refuses_inconsistent_shards(tmp_path: Path):
    items = make_items(4)
    write_shards(tmp_path, items, prefix="a", manifest=False)
    write_shards(tmp_path, dict(list(items.items())[:1]), prefix="b", manifest=False)
    with pytest.raises(ShardFormatError, match="utt000"):
        write_manifest(tmp_path)
    path = write_manifest(tmp_path, shards=["a-00000"])
    assert json.loads(path.read_text())["num_items"] == 4
    other = ShardWriter(tmp_path, prefix="c", metadata={"frame_rate": 75.0})
    other.add(
        "z",
        codes=np.zeros((1, 4), np.int16),
        tokens=np.zeros(1, np.uint8),
        latents=np.zeros((1, 6), np.float16),
    )
    other.close()
    with pytest.raises(ShardFormatError, match="metadata"):
        write_manifest(tmp_path, shards=["a-00000", "c-00000"])
    with pytest.raises(ShardFormatError, match="no finalized shards"):
        write_manifest(tmp_path / "nothing")
