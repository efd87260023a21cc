"""Atomic writes: a failed write leaves the old file; an interrupted swap is recovered."""

from __future__ import annotations

import os

import pytest

from cadence.core.io import (
    OLD_SUFFIX,
    atomic_directory,
    atomic_file,
    recover_directory,
    write_json,
    write_text,
)


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    path = tmp_path / "out.txt"
    write_text(path, "old")
    with pytest.raises(RuntimeError), atomic_file(path) as tmp:
        tmp.write_text("half")
        raise RuntimeError("crash")
    assert path.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.txt"]


def test_the_temporary_keeps_the_suffix_and_the_write_replaces(tmp_path):
    path = tmp_path / "sub" / "x.wav"
    with atomic_file(path) as tmp:
        assert tmp.suffix == ".wav" and tmp.parent == path.parent
        tmp.write_bytes(b"new")
    assert path.read_bytes() == b"new"
    write_json(path.with_suffix(".json"), {"a": 1})
    assert path.with_suffix(".json").read_text() == '{\n  "a": 1\n}\n'


def test_a_directory_swap_replaces_the_whole_directory(tmp_path):
    target = tmp_path / "ckpt"
    with atomic_directory(target) as tmp:
        (tmp / "a").write_text("1")
    with atomic_directory(target) as tmp:
        (tmp / "b").write_text("2")
    assert sorted(p.name for p in target.iterdir()) == ["b"]
    with pytest.raises(RuntimeError), atomic_directory(target) as tmp:
        (tmp / "c").write_text("3")
        raise RuntimeError("crash")
    assert sorted(p.name for p in target.iterdir()) == ["b"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]


def test_a_swap_interrupted_between_its_renames_is_recovered(tmp_path):
    target = tmp_path / "ckpt"
    with atomic_directory(target) as tmp:
        (tmp / "a").write_text("1")
    os.replace(target, target.with_name(target.name + OLD_SUFFIX))  # the crash point
    recover_directory(target)
    assert (target / "a").read_text() == "1"
