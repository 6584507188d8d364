"""The run state (``genver.runcache``) and the atomic-write helper (``genver.atomic``)."""
import os
import stat

import numpy as np
import pytest

from genver.atomic import atomic_open, atomic_write_bytes
from genver.runcache import RunCache, cache_key


def test_cache_key_distinguishes_types_bits_and_contents():
    base = (1, 2.0, "a", np.arange(3), {"b": (None, True)}, np.random.default_rng(0))
    assert cache_key(*base) == cache_key(1, 2.0, "a", np.arange(3), {"b": (None, True)}, np.random.default_rng(0))
    variants = [(1, 2.0, "a", np.arange(3.0), {"b": (None, True)}, np.random.default_rng(0)),  # dtype
                (1, 2.0, "a", np.arange(3).reshape(1, 3), {"b": (None, True)}, np.random.default_rng(0)),  # shape
                (1, 2.0, "a", np.arange(3), {"b": (None, False)}, np.random.default_rng(0)),
                (1, 2.0, "a", np.arange(3), {"b": (None, True)}, np.random.default_rng(1))]
    assert len({cache_key(*v) for v in variants} | {cache_key(*base)}) == 5
    assert len({cache_key(0.0), cache_key(-0.0), cache_key(0), cache_key("0"), cache_key(False)}) == 5
    assert cache_key({"a": 1, "b": 2}) == cache_key({"b": 2, "a": 1})
    rng = np.random.default_rng(0)
    k0 = cache_key(rng)
    rng.random()
    assert cache_key(rng) != k0  # the state, not the object
    with pytest.raises(TypeError, match="cannot key a object"):
        cache_key(object())


def test_run_cache_lru_budget_and_make_once():
    c = RunCache({"m": 200})
    calls = []

    def make(v):
        calls.append(v)
        return np.full(10, v, dtype=np.float64)  # 80 bytes

    for v in (1, 2, 1):  # the third is a hit
        c.get_or_make("m", cache_key(v), lambda v=v: make(v))
    assert calls == [1, 2] and c.hits == 1 and len(c) == 2
    c.get_or_make("m", cache_key(3), lambda: make(3))  # 240 > 200: the least recently used (2) goes
    assert c.get("m", cache_key(2)) is None and c.get("m", cache_key(1)) is not None
    c.put("m", cache_key(4), np.zeros(100))  # larger than the budget alone: not kept
    assert c.get("m", cache_key(4)) is None and c.nbytes("m") == 160
    c.clear()
    assert len(c) == 0


def test_atomic_write_respects_umask_and_leaves_nothing_on_failure(tmp_path):
    old = os.umask(0o027)
    try:
        atomic_write_bytes(tmp_path / "f.bin", b"abc")
    finally:
        os.umask(old)
    assert (tmp_path / "f.bin").read_bytes() == b"abc"
    assert stat.S_IMODE(os.stat(tmp_path / "f.bin").st_mode) == 0o640
    with pytest.raises(RuntimeError), atomic_open(tmp_path / "f.bin") as f:
        f.write(b"half")
        raise RuntimeError("killed")
    assert (tmp_path / "f.bin").read_bytes() == b"abc" and os.listdir(tmp_path) == ["f.bin"]
    with pytest.raises(OSError, match="nodir"):
        atomic_write_bytes(tmp_path / "nodir" / "f", b"x")


def test_io_save_functions_write_atomically(tmp_path, monkeypatch):
    """genver.io's writers go through genver.atomic: a write that fails before the rename leaves
    the previous file untouched and no temporary file behind."""
    from genver import io
    from genver.spaces import TreeSpace
    sp = TreeSpace(1, 2, 1)
    path = tmp_path / "pairs.npz"
    io.save_pairs(path, np.array([[0, 0, 1]]), sp)
    before = path.read_bytes()

    def broken(a, b):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(os, "replace", broken)
    with pytest.raises(OSError, match="No space left"):
        io.save_pairs(path, np.array([[0, 1, 0], [0, 0, 1]]), sp)
    with pytest.raises(OSError, match="No space left"):
        io.save_instance(tmp_path / "inst.npz", ref_logp=np.log([[0.5, 0.5]]), reward_true=[[0.0, 1.0]], beta=1.0)
    monkeypatch.undo()
    assert path.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["pairs.npz"]
    np.testing.assert_array_equal(io.load_pairs(path, sp).as_array(), [[0, 0, 1]])


def test_exact_types_and_their_subclasses_key_alike():
    """The exact-type table and the isinstance chain of the encoder agree: a subclass (or the
    numpy scalar) of each common part keys like the built-in value, and distinct values differ."""
    from collections import OrderedDict, namedtuple

    class S(str):
        pass

    class B(bytes):
        pass

    Pair = namedtuple("Pair", "a b")
    same = [(OrderedDict(a=1, b=2), {"b": 2, "a": 1}), (S("x"), "x"), (B(b"x"), b"x"), (np.float64(0.5), 0.5),
            (np.int64(-3), -3), (Pair(1, 2), (1, 2)), ([1, "a"], (1, "a")), (bytearray(b"ab"), b"ab"),
            (np.arange(3.0)[::1], np.arange(3.0))]
    for a, b in same:
        assert cache_key(a) == cache_key(b), (a, b)
    distinct = [0, 0.0, -0.0, False, None, "0", b"0", (0,), {"0": 0}, np.zeros(1), np.zeros(1, np.int64)]
    assert len({cache_key(v) for v in distinct}) == len(distinct)
