"""Data at scale (issue 14, item 3): nested pair counts extended incrementally, the finite-class
stream segments built from per-segment counts, and the blocked sampler — each compared with a
brute-force reference (``naive.pair_counts``) or with the implementation it replaced (kept
below as ``_old_segments``), bit for bit."""
import numpy as np
import pytest

import naive
from genver import preferences as prefs
from genver.estimators import mle_paths
from genver.preferences import NestedCounts, PairCounts, Preferences, merge_counts
from genver.runcache import RunCache
from genver.spaces import TreeSpace


def _old_segments(data, sizes):
    """``genver.estimators.mle_paths._segments`` before the per-segment counts (no memo)."""
    n = int(sizes[-1])
    x_, yp, yn = data.x[:n], data.y_pos[:n], data.y_neg[:n]
    T = data.space.T
    key = (x_ * T + yp) * T + yn
    uniq, inv = np.unique(key, return_inverse=True)
    inv = inv.ravel()
    M = uniq.size
    x, a, b = uniq // (T * T), (uniq // T) % T, uniq % T
    lo, hi = np.minimum(a, b), np.maximum(a, b)
    upair, uinv = np.unique((x * T + lo) * T + hi, return_inverse=True)
    U = upair.size
    entry = uinv.ravel() + np.where(a <= b, 0, U)
    pos = (upair // T).astype(np.int64)
    neg = ((upair // (T * T)) * T + upair % T).astype(np.int64)
    seg = np.searchsorted(sizes, np.arange(n), side="right")
    sk, cnt = np.unique(seg * M + inv, return_counts=True)
    ptr = np.concatenate([[0], np.cumsum(np.bincount(sk // M, minlength=sizes.size))]).astype(np.int64)
    return pos, neg, (entry[sk % M].astype(np.int64), cnt.astype(np.float64), ptr), sizes


def _random_stream(seed, read_only=False):
    """Pairs with many repeats, self-pairs (y⁺ = y⁻) and both orders of a pair, P ≥ 1."""
    rng = np.random.default_rng(seed)
    P, V, H = int(rng.integers(1, 5)), int(rng.integers(2, 4)), int(rng.integers(1, 4))
    sp = TreeSpace(P, V, H)
    n = int(rng.integers(1, 400))
    few = int(rng.integers(1, sp.T + 1))  # completions drawn from a few: repeats are common
    pairs = np.stack([rng.integers(0, P, n), rng.integers(0, few, n), rng.integers(0, few, n)], axis=1)
    self_pair = rng.random(n) < 0.2
    pairs[self_pair, 2] = pairs[self_pair, 1]
    data = Preferences.from_array(sp, pairs, self_pairs="keep")
    if read_only:
        for a in (data.x, data.y_pos, data.y_neg):
            a.setflags(write=False)
    sizes = np.unique(rng.integers(1, n + 1, size=int(rng.integers(1, 8))))
    return data, sizes


def _as_counter(c: PairCounts):
    return {(int(x), int(a), int(b)): float(k) for x, a, b, k in zip(c.x, c.y_pos, c.y_neg, c.count)}


def _assert_same_counts(got: PairCounts, want: PairCounts):
    for f in ("x", "y_pos", "y_neg", "count"):
        g, w = getattr(got, f), getattr(want, f)
        assert g.dtype == w.dtype and g.tobytes() == w.tobytes(), f


def test_nested_counts_equal_unique_of_every_prefix():
    for seed in range(120):
        data, sizes = _random_stream(seed)
        nested = NestedCounts(data)
        for n in sizes:
            got = nested.at(int(n))
            _assert_same_counts(got, data.head(int(n)).counts())  # np.unique of the prefix
            ref = naive.pair_counts(data.as_array()[: int(n)])
            assert _as_counter(got) == {k: float(v) for k, v in ref.items()}
            assert got.n_pairs == n
            # sorted unique triples
            key = (got.x * data.space.T + got.y_pos) * data.space.T + got.y_neg
            assert (np.diff(key) > 0).all()


def test_nested_counts_repeat_smaller_release_and_bad_sizes():
    data, _ = _random_stream(3)
    N = len(data)
    nested = NestedCounts(data, release=True)
    a = nested.at(N // 2 + 1)
    _assert_same_counts(nested.at(N // 2 + 1), a)                  # the same size twice
    _assert_same_counts(nested.at(1), data.head(1).counts())        # smaller: counted afresh
    _assert_same_counts(nested.at(N), data.counts())
    assert nested._data is None                                     # released after the last pair
    _assert_same_counts(nested.at(N), data.counts())
    with pytest.raises(ValueError, match="released"):
        nested.at(1)
    with pytest.raises(ValueError, match="exceeds"):
        NestedCounts(data).at(N + 1)
    with pytest.raises(ValueError, match="n must"):
        NestedCounts(data).at(-1)
    with pytest.raises(ValueError, match="Preferences"):
        NestedCounts(data.counts())
    assert NestedCounts(data).at(0).n_pairs == 0


def test_nested_counts_fall_back_when_keys_overflow():
    sp = TreeSpace(1, 2, 31, max_entries=2**32)                     # P·T² = 2**62: no int64 key
    rng = np.random.default_rng(0)
    pairs = np.stack([np.zeros(60, np.int64), rng.integers(2**31 - 4, 2**31, 60), rng.integers(0, 3, 60)], axis=1)
    data = Preferences.from_array(sp, pairs, self_pairs="keep")
    nested = NestedCounts(data)
    for n in (5, 30, 60):
        got = nested.at(n)
        assert _as_counter(got) == {k: float(v) for k, v in naive.pair_counts(pairs[:n]).items()}
    with pytest.raises(ValueError, match="overflow"):
        mle_paths._segments(data, np.array([5, 60]))


def test_merge_counts_against_a_counter():
    sp = TreeSpace(3, 2, 3)
    T = sp.T
    rng = np.random.default_rng(1)
    for _ in range(300):
        a = np.unique(rng.integers(0, sp.P * T * T, rng.integers(0, 40)))
        b = np.unique(rng.integers(0, sp.P * T * T, rng.integers(0, 40)))
        ca, cb = rng.integers(1, 9, a.size), rng.integers(1, 9, b.size)
        rest = a // T
        counts = PairCounts(sp, rest // T, rest % T, a % T, ca.astype(float))
        k, c = merge_counts(sp, a, counts, b, cb)
        want = {}
        for kk, cc in list(zip(a, ca)) + list(zip(b, cb)):
            t = (int(kk) // (T * T), int(kk) // T % T, int(kk) % T)
            want[t] = want.get(t, 0.0) + float(cc)
        assert _as_counter(c) == want and (np.diff(k) > 0).all()
        np.testing.assert_array_equal(k, (c.x * T + c.y_pos) * T + c.y_neg)
    # a shared key's counts are added, not overwritten
    a, b = np.array([1, 3]), np.array([3])
    k, c = merge_counts(sp, a, PairCounts(sp, a // 64, a // 8 % 8, a % 8, np.array([2.0, 2.0])), b, np.array([5]))
    assert c.count.tolist() == [2.0, 7.0] and k.tolist() == [1, 3]


@pytest.mark.parametrize("read_only", [False, True])
def test_segments_equal_the_old_whole_stream_algorithm(read_only):
    for seed in range(80):
        data, sizes = _random_stream(seed, read_only)
        cache = RunCache()
        got = mle_paths._segments(data, sizes, cache)
        want = _old_segments(data, sizes)
        for g, w in zip((got[0], got[1], *got[2]), (want[0], want[1], *want[2])):
            assert g.dtype == w.dtype and g.tobytes() == w.tobytes()
        assert mle_paths._segments(data, sizes, cache) is got               # the same stream again: memo


def test_blocked_search_and_labels_draw_the_old_stream(monkeypatch):
    """Blocks of 7 pairs (the default is 2**20) give the same draws as the old whole-array code."""
    from test_sweep_overheads import _old_sample_preferences, _random_case

    monkeypatch.setattr(prefs, "_SEARCH_BLOCK", 7)
    for seed in range(60):
        rng, sp, mu, r, rho = _random_case(seed)
        n = int(rng.integers(0, 300))
        for opts in ({}, {"deterministic": True}):
            new = prefs.sample_preferences(r, mu, n, seed, prompt_weights=rho, **opts)
            old = _old_sample_preferences(r, mu, n, seed, prompt_weights=rho, **opts)
            assert new.as_array().tobytes() == old.as_array().tobytes()
