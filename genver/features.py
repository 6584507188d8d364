r"""Feature maps: trajectory features ``φ(x, y)`` for linear verifiers and token features
``ψ(x, s, a)`` for log-linear generators.

Trajectory features (arrays of shape ``(P, T, k)``) — the verifier side of the gap:

=======================  ==============================================================  =====
name                     ``φ(x, y)``                                                     k
=======================  ==============================================================  =====
``token_counts``         number of occurrences of each token ``v`` in ``y``               V
``parity``               ``1[#{h : a_h = token} is odd]`` (non-additive)                  1
``first_last_match``     ``1[a_1 = a_H]`` (non-additive)                                  1
``hamming``              ``−#{h : a_h ≠ t_{x,h}}`` for a hidden per-prompt target ``t``   1
                         (additive: the "hidden reference" / ROUGE-L analogue)
``target_match``         ``1[a_h = t_{x,h}]`` for each position ``h`` (additive)          H
``position_token``       indicator of ``(x, h, a_h)``: spans every additive reward        P·H·V
``random_gaussian``      i.i.d. ``N(0, 1)`` per ``(x, y)`` and feature                    d
``random_orthonormal``   per prompt, the first ``d ≤ T`` columns of an orthonormal         d
                         basis of ``ℝ^T`` whose first column is constant (QR of
                         ``[1, G]``): nested in ``d``; at ``d = T`` it spans every
                         reward, and ridge on ``w`` is then exactly the centred ridge
                         on ``r``
``tabular``              indicator of ``(x, y)``: spans every reward                      P·T
=======================  ==============================================================  =====

Token features (arrays of shape ``(P, n_internal, V, k)``, flat node layout) — the
generator side; a log-linear policy is ``π_θ(a|s) ∝ π_ref(a|s) exp(θ·ψ(x, s, a))``:

=======================  ==============================================================  ==============
``position_token``       indicator of ``(x, h, a)``: the local (additive) class           P·H·V
``tabular``              indicator of ``(x, s, a)``: every token-level policy             P·n_internal·V
``random_gaussian``      i.i.d. ``N(0, 1)``                                               d
=======================  ==============================================================  ==============

Random draws use ``random_state`` (None | int | SeedSequence | Generator); the hidden
target ``t`` is drawn uniformly unless given as ``target`` (shape (P, H)).
"""
from __future__ import annotations

import numpy as np

from ._validation import as_generator, check_positive_int
from .spaces import TreeSpace

__all__ = ["TRAJECTORY_FEATURES", "TOKEN_FEATURES", "trajectory_features", "token_features",
           "hidden_target"]

#: Refuse feature arrays larger than this many float64 entries (2 GiB).
MAX_FEATURE_ENTRIES = 2**28


def _check_size(name: str, n: int):
    if n > MAX_FEATURE_ENTRIES:
        raise ValueError(f"feature map {name!r} would have {n} entries, above the limit {MAX_FEATURE_ENTRIES}")


def hidden_target(space: TreeSpace, random_state=None, target=None) -> np.ndarray:
    """Per-prompt hidden target sequence ``t`` of shape (P, H).

    Parameters
    ----------
    space : TreeSpace
        The tree (``P`` prompts, horizon ``H``, ``V`` tokens).
    random_state : None, int, SeedSequence or Generator
        Seed of the uniform draw (ignored when ``target`` is given).
    target : array_like of int or None
        A given target, shape ``(P, H)``, tokens in ``[0, V)``.

    Returns
    -------
    np.ndarray
        ``t[x, h]`` (int64), shape ``(P, H)``.
    """
    if target is not None:
        t = np.asarray(target)
        if t.shape != (space.P, space.H) or not np.issubdtype(t.dtype, np.integer):
            raise ValueError(f"target must be an integer array of shape (P, H) = {(space.P, space.H)}")
        if t.min() < 0 or t.max() >= space.V:
            raise ValueError(f"target tokens must lie in [0, {space.V - 1}]")
        return t.astype(np.int64)
    return as_generator(random_state).integers(0, space.V, size=(space.P, space.H))


def _tokens(space):
    return space.all_tokens()  # (T, H)


def _token_counts(space, rng, **kw):
    toks = _tokens(space)
    counts = np.stack([(toks == v).sum(axis=1) for v in range(space.V)], axis=1).astype(float)
    return np.broadcast_to(counts, (space.P, space.T, space.V)).copy()


def _parity(space, rng, token: int = 0, **kw):
    if not 0 <= int(token) < space.V:
        raise ValueError(f"parity: token must lie in [0, {space.V - 1}], got {token}")
    par = ((_tokens(space) == int(token)).sum(axis=1) % 2).astype(float)
    return np.broadcast_to(par[None, :, None], (space.P, space.T, 1)).copy()


def _first_last(space, rng, **kw):
    toks = _tokens(space)
    m = (toks[:, 0] == toks[:, -1]).astype(float)
    return np.broadcast_to(m[None, :, None], (space.P, space.T, 1)).copy()


def _target_match(space, rng, target=None, **kw):
    t = hidden_target(space, rng, target)
    return (_tokens(space)[None, :, :] == t[:, None, :]).astype(float)  # (P, T, H)


def _hamming(space, rng, target=None, **kw):
    return -(1.0 - _target_match(space, rng, target)).sum(axis=2, keepdims=True)


def _position_token(space, rng, **kw):
    P, T, H, V = space.P, space.T, space.H, space.V
    _check_size("position_token", P * T * P * H * V)
    toks = _tokens(space)  # (T, H)
    phi = np.zeros((P, T, P, H, V))
    for x in range(P):
        for h in range(H):
            phi[x, np.arange(T), x, h, toks[:, h]] = 1.0
    return phi.reshape(P, T, P * H * V)


def _random_gaussian(space, rng, d: int = 4, **kw):
    d = check_positive_int(d, "d")
    _check_size("random_gaussian", space.P * space.T * d)
    return rng.standard_normal((space.P, space.T, d))


def _random_orthonormal(space, rng, d: int = 4, **kw):
    d = check_positive_int(d, "d")
    T = space.T
    if d > T:
        raise ValueError(f"random_orthonormal: d = {d} exceeds T = {T}")
    _check_size("random_orthonormal", space.P * T * T)
    out = np.empty((space.P, T, d))
    for x in range(space.P):
        G = np.concatenate([np.ones((T, 1)), rng.standard_normal((T, T - 1))], axis=1)
        Q, R = np.linalg.qr(G)
        Q *= np.sign(np.diag(R))  # unique: positive diagonal, first column = +1/sqrt(T)
        out[x] = Q[:, :d]
    return out


def _tabular(space, rng, **kw):
    n = space.P * space.T
    _check_size("tabular", n * n)
    return np.eye(n).reshape(space.P, space.T, n)


TRAJECTORY_FEATURES = {
    "token_counts": _token_counts,
    "parity": _parity,
    "first_last_match": _first_last,
    "hamming": _hamming,
    "target_match": _target_match,
    "position_token": _position_token,
    "random_gaussian": _random_gaussian,
    "random_orthonormal": _random_orthonormal,
    "tabular": _tabular,
}


def _parse_spec(spec):
    if isinstance(spec, str):
        return spec, {}
    if isinstance(spec, dict) and "name" in spec:
        kw = dict(spec)
        return kw.pop("name"), kw
    if isinstance(spec, (tuple, list)) and len(spec) == 2 and isinstance(spec[0], str):
        return spec[0], dict(spec[1])
    raise ValueError(f"feature spec must be a name, (name, kwargs) or {{'name': ..., ...}}, got {spec!r}")


def trajectory_features(space: TreeSpace, specs, random_state=None) -> np.ndarray:
    """Concatenate named trajectory feature maps into ``φ`` of shape ``(P, T, d)``.

    ``specs`` is one spec or a list of specs; a spec is a name from
    :data:`TRAJECTORY_FEATURES`, ``(name, kwargs)`` or ``{"name": name, **kwargs}``.

    Parameters
    ----------
    space : TreeSpace
        The tree the features live on.
    specs : str, tuple, dict or list of them
        The feature maps, concatenated in order along the last axis.
    random_state : None, int, SeedSequence or Generator
        Seed of the random maps (one generator shared by all of them, in order).

    Returns
    -------
    np.ndarray
        ``φ(x, y)``, shape ``(P, T, d)`` with ``d`` the sum of the maps' widths (C-contiguous).
    """
    if isinstance(specs, (str, dict)) or (isinstance(specs, tuple) and len(specs) == 2 and isinstance(specs[1], dict)):
        specs = [specs]
    specs = list(specs)
    if not specs:
        raise ValueError("features: give at least one feature map")
    rng = as_generator(random_state)
    blocks = []
    for spec in specs:
        name, kw = _parse_spec(spec)
        if name not in TRAJECTORY_FEATURES:
            raise ValueError(f"unknown trajectory feature {name!r}; choose from {sorted(TRAJECTORY_FEATURES)}")
        blocks.append(TRAJECTORY_FEATURES[name](space, rng, **kw))
    return np.ascontiguousarray(np.concatenate(blocks, axis=2))


def token_features(space: TreeSpace, name: str, random_state=None, *, d: int = 4) -> np.ndarray:
    """Token features ``ψ`` of shape ``(P, n_internal, V, k)`` (see the module table).

    Parameters
    ----------
    space : TreeSpace
        The tree the features live on (flat node layout).
    name : str
        One of :data:`TOKEN_FEATURES`.
    random_state : None, int, SeedSequence or Generator
        Seed of ``random_gaussian``.
    d : int
        Width of ``random_gaussian`` (the other maps have fixed width).

    Returns
    -------
    np.ndarray
        ``ψ(x, s, a)``, shape ``(P, n_internal, V, k)``.
    """
    P, V, n = space.P, space.V, space.n_internal
    if name == "position_token":
        k = P * space.H * V
        _check_size(name, P * n * V * k)
        psi = np.zeros((P, n, V, k))
        for h in range(space.H):
            off, m = space.offset(h), V**h
            for x in range(P):
                for a in range(V):
                    psi[x, off : off + m, a, (x * space.H + h) * V + a] = 1.0
        return psi
    if name == "tabular":
        k = P * n * V
        _check_size(name, P * n * V * k)
        return np.eye(k).reshape(P, n, V, k)
    if name == "random_gaussian":
        d = check_positive_int(d, "d")
        _check_size(name, P * n * V * d)
        return as_generator(random_state).standard_normal((P, n, V, d))
    raise ValueError(f"unknown token feature {name!r}; choose from {sorted(TOKEN_FEATURES)}")


TOKEN_FEATURES = ("position_token", "tabular", "random_gaussian")
