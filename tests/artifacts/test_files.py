"""Atomic, durable writes: a failure at any step leaves the old file, and every step is fsync'd."""

from __future__ import annotations

import os

import numpy as np
import pytest

from latentmas_mesh.artifacts import files
from latentmas_mesh.errors import InvalidRequest


def test_write_replaces_the_file_and_leaves_no_temporary(tmp_path):
    """The new bytes are in place and nothing else is left in the directory."""
    target = tmp_path / "a" / "record.json"
    files.write_atomically(target, b"old")
    files.write_atomically(target, b"new")

    assert b"new" == target.read_bytes()
    assert ["record.json"] == sorted(p.name for p in target.parent.iterdir())


@pytest.mark.parametrize("failing", ["write", "fsync", "replace"])
def test_a_failure_at_any_step_keeps_the_old_file(tmp_path, monkeypatch, failing):
    """A crash before the rename (simulated by a failing step) never tears the target."""
    target = tmp_path / "map.safetensors"
    files.write_atomically(target, b"old")

    def fail(*args, **kwargs):
        raise OSError("disk full")

    if failing == "write":
        monkeypatch.setattr(files, "open", lambda *a, **k: (_ for _ in ()).throw(OSError()),
                            raising=False)  # fmt: skip
    else:
        monkeypatch.setattr(os, failing, fail)
    with pytest.raises(OSError):
        files.write_atomically(target, b"new")

    assert b"old" == target.read_bytes()
    assert ["map.safetensors"] == sorted(p.name for p in tmp_path.iterdir())


def test_the_file_and_then_its_directory_are_fsynced(tmp_path, monkeypatch):
    """Data is synced before the rename and the directory after it (the rename is durable)."""
    events: list[str] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(descriptor):
        events.append("dir" if os.path.isdir(f"/proc/self/fd/{descriptor}") else "file")
        real_fsync(descriptor)

    def replace(src, dst):
        events.append("rename")
        real_replace(src, dst)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    files.write_atomically(tmp_path / "x", b"data")

    assert ["file", "rename", "dir"] == events


def test_tensors_round_trip_with_their_description(tmp_path):
    """write_tensors / read_tensors keep every array and the JSON header."""
    arrays = {"a": np.arange(6, dtype=np.float32).reshape(2, 3), "b": np.ones(2, np.int64)}
    files.write_tensors(tmp_path / "t.safetensors", arrays, {"format": "x", "n": 2})

    tensors, meta = files.read_tensors(tmp_path / "t.safetensors")

    assert {"format": "x", "n": 2} == meta
    for name, array in arrays.items():
        np.testing.assert_array_equal(array, tensors[name])


def test_a_foreign_safetensors_file_is_refused(tmp_path):
    """A safetensors file without the project's header is not taken for an artifact."""
    from safetensors.numpy import save_file

    save_file({"a": np.zeros(2, np.float32)}, str(tmp_path / "f.safetensors"))
    with pytest.raises(InvalidRequest):
        files.read_tensors(tmp_path / "f.safetensors")


def test_fsync_tree_syncs_every_file_and_directory(tmp_path, monkeypatch):
    """A staged tree (a converted model) is synced file by file, then directory by directory."""
    (tmp_path / "sub").mkdir()
    for name in ("a", "sub/b"):
        (tmp_path / name).write_bytes(b"x")
    synced: list[str] = []
    real_fsync = os.fsync

    def fsync(descriptor):
        synced.append(os.path.realpath(f"/proc/self/fd/{descriptor}"))
        real_fsync(descriptor)

    monkeypatch.setattr(os, "fsync", fsync)
    files.fsync_tree(tmp_path)

    expected = {str(tmp_path / "a"), str(tmp_path / "sub" / "b"), str(tmp_path / "sub")}
    assert expected | {str(tmp_path)} == set(synced)
    assert str(tmp_path) == synced[-1]
