"""Shared helpers for the genver test suite.

The tests directory is put on ``sys.path`` so that every test module can do
``import naive`` / ``from conftest import ...`` whatever pytest's import mode.
Everything here builds *inputs* (random trees, policies with zeros); expected
values always come from ``naive.py`` or from closed forms written in the tests.
All arrays are float64 so each numba kernel compiles once per session.
"""
from __future__ import annotations

import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import naive  # noqa: E402
from genver.spaces import TreeSpace  # noqa: E402

NINF = float("-inf")


def lse(a, axis=-1):
    """Plain numpy log-sum-exp with an all -inf guard (independent of genver)."""
    a = np.asarray(a, dtype=float)
    m = np.max(a, axis=axis, keepdims=True)
    m = np.where(np.isfinite(m), m, 0.0)
    with np.errstate(divide="ignore"):
        return np.squeeze(np.log(np.exp(a - m).sum(axis=axis, keepdims=True)) + m, axis=axis)


def random_logp(rng, space: TreeSpace, zero_frac: float = 0.0, zero_prefix: bool = False):
    """Random normalised sequence log-probs (P, T).

    ``zero_frac``: fraction of completions set to probability 0 (each row keeps one).
    ``zero_prefix``: also make whole prefixes unreachable (prompt 0: the depth-1 prefix
    ``(0,)``; last prompt, when ``H >= 3``: the depth-2 prefix ``(1, 0)``), so that
    token conditionals at zero-probability prefixes are exercised.
    """
    P, T, V, H = space.P, space.T, space.V, space.H
    logits = rng.normal(size=(P, T)) * 1.5
    mask = rng.random((P, T)) < zero_frac
    if zero_prefix and H >= 2:
        mask[0, : V ** (H - 1)] = True
        if H >= 3:
            b = V ** (H - 2)
            mask[P - 1, V * b : V * b + b] = True  # prefix (1, 0) = index V of depth 2
    for x in range(P):
        if mask[x].all():
            mask[x, T - 1] = False  # (V-1, ..., V-1) lies outside both zeroed prefixes
    logits[mask] = NINF
    return logits - lse(logits)[:, None]


def assert_logp_equal(actual, expected, atol=1e-10):
    """Same -inf pattern exactly, finite entries within ``atol``."""
    actual = np.asarray(actual, dtype=float)
    expected = np.asarray(expected, dtype=float)
    assert actual.shape == expected.shape
    np.testing.assert_array_equal(np.isneginf(actual), np.isneginf(expected))
    assert not np.isnan(actual).any()
    fin = np.isfinite(expected)
    np.testing.assert_allclose(actual[fin], expected[fin], rtol=0, atol=atol)


def cond_to_dict(space: TreeSpace, cond):
    """genver's flat conditionals (P, n_internal, V) -> naive's {(x, prefix): array(V)}."""
    out = {}
    for x in range(space.P):
        for h in range(space.H):
            for j, prefix in enumerate(naive._all_prefixes(space.V, space.H, h)):
                out[(x, prefix)] = np.asarray(cond[x, space.offset(h) + j], dtype=float)
    return out


def naive_cond_array(space: TreeSpace, cond_dict):
    """naive's conditional dict -> flat array (P, n_internal, V) in genver's node layout,
    built from the definition (node (x, s) of depth h at offset(h) + encode(s))."""
    out = np.full((space.P, space.n_internal, space.V), np.nan)
    off = 0
    for h in range(space.H):
        for prefix in naive._all_prefixes(space.V, space.H, h):
            j = naive.encode(prefix, space.V) if h else 0
            for x in range(space.P):
                out[x, off + j] = cond_dict[(x, prefix)]
        off += space.V ** h
    assert not np.isnan(out).any()
    return out


class StopAfter:
    """A progress stream for ``genver.experiments.runner.run(stream=...)`` that raises
    KeyboardInterrupt at its ``k``-th line (one line per unit when not a terminal): Ctrl-C in
    the middle of a run, at a known point."""

    def __init__(self, k: int):
        self.k, self.lines = k, 0

    def isatty(self):
        return False

    def write(self, s):
        self.lines += 1
        if self.lines >= self.k:
            raise KeyboardInterrupt

    def flush(self):
        pass
