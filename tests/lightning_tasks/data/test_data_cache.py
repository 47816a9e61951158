"""Preprocessing cache: keys, atomic writes, recovery from damaged entries, compact dtypes only."""

from __future__ import annotations

import os

import numpy as np
import pytest

from lightning_tasks.data.cache import cache_key, cached_arrays, maybe_cached, resolve_cache_dir


@pytest.fixture
def source(tmp_path):
    p = tmp_path / "src.bin"
    p.write_bytes(b"abc")
    return p


def test_key_changes_with_settings_and_source_identity(source):
    k = cache_key("d", [source], {"dt": 1.0, "mode": "binary"})
    assert k == cache_key("d", [source], {"mode": "binary", "dt": 1.0})  # order-free
    assert k != cache_key("d", [source], {"dt": 2.0, "mode": "binary"})
    assert k != cache_key("e", [source], {"dt": 1.0, "mode": "binary"})
    st = os.stat(source)
    os.utime(source, ns=(st.st_atime_ns, st.st_mtime_ns + 1))
    assert k != cache_key("d", [source], {"dt": 1.0, "mode": "binary"})
    h = cache_key("d", [source], {}, content_hash=True)
    source.write_bytes(b"abd")  # same size, new content
    assert h != cache_key("d", [source], {}, content_hash=True)


def test_hit_returns_stored_arrays_without_rebuilding(tmp_path):
    calls = []

    def build():
        calls.append(1)
        return {"bits": np.packbits(np.array([1, 0, 1], dtype=bool)), "idx": np.arange(4, dtype=np.int32)}

    a = cached_arrays(tmp_path, "x", "k" * 64, build)
    b = cached_arrays(tmp_path, "x", "k" * 64, build)
    assert len(calls) == 1
    np.testing.assert_array_equal(np.unpackbits(b["bits"])[:3], [1, 0, 1])
    np.testing.assert_array_equal(a["idx"], b["idx"])
    assert isinstance(b["idx"], np.memmap)


def test_interrupted_build_leaves_no_entry(tmp_path):
    def broken():
        raise KeyboardInterrupt("simulated interruption while preprocessing")

    with pytest.raises(KeyboardInterrupt):
        cached_arrays(tmp_path, "x", "a" * 64, broken)
    assert list(tmp_path.iterdir()) == []


def test_interrupted_write_is_never_read(tmp_path, monkeypatch):
    import lightning_tasks.data.cache as cache

    real_save = np.save
    count = []

    def dying_save(fh, arr, allow_pickle=False):
        count.append(1)
        if len(count) == 2:  # second array: die half-way through the entry
            raise OSError("disk full")
        real_save(fh, arr, allow_pickle=allow_pickle)

    monkeypatch.setattr(cache.np, "save", dying_save)
    with pytest.raises(OSError, match="disk full"):
        cached_arrays(tmp_path, "x", "b" * 64, lambda: {"a": np.zeros(3, np.int8), "b": np.ones(3, np.int8)})
    assert list(tmp_path.iterdir()) == []  # the temporary directory was removed, no final entry exists
    monkeypatch.setattr(cache.np, "save", real_save)
    # A stale temp dir from a killed process (e.g. SIGKILL) is ignored by later runs.
    (tmp_path / ".tmp-x-bbbb-999-zz").mkdir()
    (tmp_path / ".tmp-x-bbbb-999-zz" / "a.npy").write_bytes(b"garbage")
    out = cached_arrays(tmp_path, "x", "b" * 64, lambda: {"a": np.zeros(3, np.int8), "b": np.ones(3, np.int8)})
    np.testing.assert_array_equal(out["b"], [1, 1, 1])


def test_damaged_entry_is_rebuilt(tmp_path):
    build = lambda: {"a": np.arange(5, dtype=np.int16)}  # noqa: E731
    cached_arrays(tmp_path, "x", "c" * 64, build)
    (entry,) = [p for p in tmp_path.iterdir() if p.is_dir()]
    (entry / "a.npy").write_bytes(b"\x93NUMPY truncated")
    with pytest.warns(UserWarning, match="unreadable cache entry"):
        out = cached_arrays(tmp_path, "x", "c" * 64, build)
    np.testing.assert_array_equal(out["a"], np.arange(5))


def test_dense_float64_and_object_arrays_are_refused(tmp_path):
    with pytest.raises(TypeError, match="float64"):
        cached_arrays(tmp_path, "x", "d" * 64, lambda: {"a": np.zeros(3)})
    with pytest.raises(TypeError, match="object"):
        cached_arrays(tmp_path, "x", "e" * 64, lambda: {"a": np.array([np.zeros(2), np.zeros(3)], dtype=object)})
    assert not [p for p in tmp_path.iterdir() if not p.name.startswith(".tmp")] and not list(tmp_path.iterdir())


def test_disabled_cache_touches_no_disk_and_default_location(tmp_path):
    out = maybe_cached(False, tmp_path / "never", "x", "f" * 64, lambda: {"a": np.zeros(2)})
    assert not (tmp_path / "never").exists() and out["a"].tolist() == [0.0, 0.0]
    assert resolve_cache_dir(tmp_path, None) == tmp_path / ".norse_dh_cache"
    assert resolve_cache_dir(tmp_path, tmp_path / "elsewhere") == tmp_path / "elsewhere"
