"""TreeSpace: sizes, indexing (first token most significant), guards."""
import numpy as np
import pytest

import naive
from genver.spaces import DEFAULT_MAX_ENTRIES, INT64_LIMIT, TreeSpace

SHAPES = [(2, 1), (2, 3), (3, 1), (3, 2), (3, 3), (4, 2)]


@pytest.mark.parametrize("V,H", SHAPES)
def test_all_tokens_and_encode_decode_match_naive(V, H):
    sp = TreeSpace(2, V, H)
    T = V**H
    toks = sp.all_tokens()
    assert toks.shape == (T, H)
    np.testing.assert_array_equal(toks, np.array(naive.all_completions(V, H)))
    np.testing.assert_array_equal(sp.encode(toks), np.arange(T))
    np.testing.assert_array_equal(sp.decode(np.arange(T)), toks)
    for i, y in enumerate(naive.all_completions(V, H)):
        assert sp.encode(np.array(y)) == naive.encode(y, V) == i
        assert tuple(sp.decode(i)) == naive.decode(i, V, H)


def test_encode_decode_hand_values_and_batch_shapes():
    sp = TreeSpace(1, 3, 2)
    assert sp.encode([2, 1]) == 7  # 2*3 + 1
    np.testing.assert_array_equal(sp.decode(7), [2, 1])
    sp2 = TreeSpace(1, 2, 3)
    assert sp2.encode([1, 0, 0]) == 4  # first token most significant
    assert sp2.encode([0, 0, 1]) == 1
    batch = np.array([[[1, 0, 0], [0, 1, 1]], [[1, 1, 1], [0, 0, 0]]])
    np.testing.assert_array_equal(sp2.encode(batch), [[4, 3], [7, 0]])
    np.testing.assert_array_equal(sp2.decode(np.array([[4, 3], [7, 0]])), batch)


@pytest.mark.parametrize("V,H", SHAPES)
def test_prefix_index_and_contiguous_blocks(V, H):
    sp = TreeSpace(1, V, H)
    idx = np.arange(sp.T)
    for h in range(H + 1):
        got = sp.prefix_index(idx, h)
        want = [naive.encode(naive.decode(i, V, H)[:h], V) for i in idx]
        np.testing.assert_array_equal(got, want)
        # the completions below one depth-h prefix are one contiguous block of size V**(H-h)
        np.testing.assert_array_equal(got, np.repeat(np.arange(V**h), V ** (H - h)))
        assert sp.block(h) == V ** (H - h)
        assert sp.n_nodes(h) == V**h


@pytest.mark.parametrize("V,H", SHAPES)
def test_offsets_and_sizes(V, H):
    sp = TreeSpace(3, V, H)
    assert sp.T == V**H
    assert sp.shape == (3, V**H)
    assert sp.n_internal == sum(V**k for k in range(H))
    for h in range(H):
        assert sp.offset(h) == sum(V**k for k in range(h))
    # depth-h node blocks tile [0, n_internal) exactly
    ends = [sp.offset(h) + V**h for h in range(H)]
    assert ends[-1] == sp.n_internal
    assert [sp.offset(h) for h in range(1, H)] == ends[:-1]
    with pytest.raises(ValueError, match=rf"h must be in \[0, {H - 1}\]"):
        sp.offset(H)
    with pytest.raises(ValueError, match=rf"h must be in \[0, {H}\]"):
        sp.block(H + 1)
    with pytest.raises(ValueError, match="h must be >= 0"):
        sp.n_nodes(-1)


def test_equality_hash_repr():
    a, b, c = TreeSpace(2, 3, 2), TreeSpace(2, 3, 2), TreeSpace(2, 9, 1)
    assert a == b and hash(a) == hash(b)
    assert a != c  # same (P, T) but a different tree
    assert a.shape == c.shape
    assert "V=3" in repr(a) and "T=9" in repr(a)


def test_overflow_guard_names_size():
    # 2**61 is allowed (no allocation happens in the constructor) ...
    sp = TreeSpace(1, 2, 61, max_entries=2**62)
    assert sp.T == 2**61
    # ... 2**62 and beyond are refused whatever max_entries is
    with pytest.raises(ValueError, match=str(2**62)) as e:
        TreeSpace(1, 2, 62, max_entries=2**70)
    assert "2**62" in str(e.value)
    with pytest.raises(ValueError, match=str(3**40)):
        TreeSpace(1, 3, 40, max_entries=2**70)
    with pytest.raises(ValueError, match=str(10**19)):
        TreeSpace(1, 10, 19, max_entries=2**70)
    assert TreeSpace(1, 10, 18, max_entries=2**70).T == 10**18
    assert INT64_LIMIT == 2**62


def test_memory_guard_names_numbers():
    with pytest.raises(ValueError, match="3072") as e:
        TreeSpace(3, 2, 10, max_entries=3000)
    assert "max_entries = 3000" in str(e.value)
    assert TreeSpace(3, 2, 10, max_entries=3072).T == 1024  # boundary: P*T == max_entries is fine
    with pytest.raises(ValueError, match=str(2**28)) as e:
        TreeSpace(1, 2, 28)
    assert str(DEFAULT_MAX_ENTRIES) in str(e.value)
    assert DEFAULT_MAX_ENTRIES == 2**27


@pytest.mark.parametrize(
    "args,name",
    [
        ((0, 2, 2), "P"),
        ((2, 1, 2), "V"),
        ((2, 2, 0), "H"),
        ((2, 2, 2, 0), "max_entries"),
        ((2.0, 2, 2), "P"),
        ((2, 2.5, 2), "V"),
        ((2, 2, "3"), "H"),
        ((True, 2, 2), "P"),
        ((2, np.float64(3.0), 2), "V"),
    ],
)
def test_bad_sizes_name_the_argument(args, name):
    with pytest.raises(ValueError, match=rf"^{name} must be"):
        TreeSpace(*args)


def test_numpy_integers_accepted():
    sp = TreeSpace(np.int64(2), np.int32(3), np.uint8(2))
    assert (sp.P, sp.V, sp.H, sp.T) == (2, 3, 2, 9)
    assert all(type(v) is int for v in (sp.P, sp.V, sp.H, sp.T))


def test_encode_decode_validation():
    sp = TreeSpace(1, 3, 2)
    with pytest.raises(ValueError, match="tokens must have last axis of length H=2"):
        sp.encode([0, 1, 2])
    with pytest.raises(ValueError, match="tokens must be integers"):
        sp.encode([0.0, 1.0])
    with pytest.raises(ValueError, match=r"tokens must lie in \[0, V-1\]"):
        sp.encode([0, 3])
    with pytest.raises(ValueError, match=r"tokens must lie in \[0, V-1\]"):
        sp.encode([-1, 0])
    with pytest.raises(ValueError, match=r"idx must lie in \[0, T-1\] = \[0, 8\]"):
        sp.decode(9)
    with pytest.raises(ValueError, match="idx must be integers"):
        sp.decode(1.0)


def test_check_array():
    sp = TreeSpace(2, 2, 1)
    out = sp.check_array("reward", [[1, 2], [3, 4]])
    assert out.dtype == np.float64 and out.flags.c_contiguous
    np.testing.assert_array_equal(out, [[1.0, 2.0], [3.0, 4.0]])
    with pytest.raises(ValueError, match=r"reward must have shape \(P, T\) = \(2, 2\), got \(2, 3\)"):
        sp.check_array("reward", np.zeros((2, 3)))
    with pytest.raises(ValueError, match="reward contains NaN"):
        sp.check_array("reward", [[np.nan, 0.0], [0.0, 0.0]])
    with pytest.raises(ValueError, match="reward contains inf"):
        sp.check_array("reward", [[-np.inf, 0.0], [0.0, 0.0]])
    with pytest.raises(ValueError, match=r"logp contains \+inf"):
        sp.check_array("logp", [[np.inf, 0.0], [0.0, 0.0]], allow_neg_inf=True)
    ok = sp.check_array("logp", [[-np.inf, 0.0], [0.0, 0.0]], allow_neg_inf=True)
    assert ok[0, 0] == -np.inf
    with pytest.raises(ValueError, match="reward must be a real array"):
        sp.check_array("reward", np.array([[True, False], [True, True]]))
