r"""The worlds from the literature (rows of the table in :mod:`genver.experiments.generators`,
which re-exports them): ``linear_bandit`` (Li, Xu, Yu 2023: a discretised contextual bandit,
``r* = θ*·φ``, matched or sin/cos-swapped policy features), ``peaked_bandit`` (Tajwar et al.
2024: one prompt, a peaked ``π_ref``, a quadratic global verifier), ``dichotomy`` (Shi et al.
2025: linear reward and log-linear policy classes on a per-prompt orthonormal basis, each
realisable or misspecified) and ``sparse_reward`` (Shi et al. 2025: the finite class of
``k``-sparse signed rewards against the dense log-linear ``Π``). Each is ``fn(params, rng) ->
Instance``, drawing from ``rng`` in a fixed order.
"""
from __future__ import annotations

import numpy as np

from ..classes import (
    FiniteRewardClass,
    LinearRewardClass,
    LogLinearPolicyClass,
    SoftOptimalPolicyClass,
    TabularPolicyClass,
)
from ..policy import Policy, random_policy, uniform_policy
from ..spaces import TreeSpace
from .instance import Instance

__all__ = ["linear_bandit", "peaked_bandit", "dichotomy", "sparse_reward"]


def _orthonormal_basis(T, rng):
    """Columns of an orthonormal basis of ℝ^T whose first column is constant (QR of [1, G])."""
    G = np.concatenate([np.ones((T, 1)), rng.standard_normal((T, T - 1))], axis=1)
    Q, Rm = np.linalg.qr(G)
    return Q * np.sign(np.diag(Rm))


def _bandit_psi(phi):
    """Token features of a one-step (H = 1) log-linear class from trajectory features (P, T, d)."""
    return np.ascontiguousarray(phi[:, None, :, :])


def _bandit_space(p, one_prompt: bool = False) -> TreeSpace:
    if p["H"] != 1:
        raise ValueError(f"this generator is a bandit: H must be 1, got {p['H']}")
    if one_prompt and p["P"] != 1:
        raise ValueError(f"this generator has one prompt: P must be 1, got {p['P']}")
    return TreeSpace(p["P"], p["V"], 1)


def linear_bandit(p, rng) -> Instance:
    """The ``linear_bandit`` instance (module docstring): Li, Xu, Yu (2023)'s discretised contextual
    bandit.

    Parameters
    ----------
    p : dict
        the setting's full parameters (the schema of its
        :data:`genver.experiments.registry.GENERATORS` entry, defaults filled in).
    rng : numpy.random.Generator
        the instance's generator (``spawn_key = (seed, 0)``), drawn in a fixed order.

    Returns
    -------
    Instance
        the world, ``R``, ``Π``.
    """
    sp = _bandit_space(p)
    ref = uniform_policy(sp)
    s = (np.arange(sp.P) + 0.5) / sp.P  # grid midpoints of U[0, 1]
    a = np.arange(sp.V) + 1.0
    cs, sn = np.cos(np.pi * s)[:, None], np.sin(np.pi * s)[:, None]
    phi = np.stack([a[None, :] * cs, sn / a[None, :]], axis=2)  # (P, V, 2)
    if p["policy_features"] == "matched":
        psi = phi
    elif p["policy_features"] == "swapped":
        psi = np.stack([a[None, :] * sn, cs / a[None, :]], axis=2)
    else:
        raise ValueError(f"policy_features must be 'matched' or 'swapped', got {p['policy_features']!r}")
    theta = np.asarray(p["theta_star"], dtype=float)
    if theta.shape != (2,):
        raise ValueError(f"theta_star must have 2 entries, got {p['theta_star']!r}")
    R = LinearRewardClass(sp, phi)
    Pi = LogLinearPolicyClass(sp, ref, _bandit_psi(psi))
    return Instance(sp, ref, p["beta"], R.reward(theta), R, Pi, extra={"s": s, "theta_star": theta})


def peaked_bandit(p, rng) -> Instance:
    """The ``peaked_bandit`` instance (module docstring): Tajwar et al. (2024)'s one-prompt bandit with
    a peaked reference.

    Parameters
    ----------
    p : dict
        the setting's full parameters (the schema of its
        :data:`genver.experiments.registry.GENERATORS` entry, defaults filled in).
    rng : numpy.random.Generator
        the instance's generator (``spawn_key = (seed, 0)``), drawn in a fixed order.

    Returns
    -------
    Instance
        the world, ``R``, ``Π``.
    """
    sp = _bandit_space(p, one_prompt=True)
    a = np.arange(sp.V, dtype=float)
    if not 0 <= p["peak"] < sp.V or not 0 <= p["ref_mode"] < sp.V:
        raise ValueError(f"peak and ref_mode must lie in [0, {sp.V - 1}]")
    logits = -0.5 * ((a - p["ref_mode"]) / p["ref_width"]) ** 2
    ref = Policy(sp, (logits - np.logaddexp.reduce(logits))[None, :])
    u = a / (sp.V - 1)
    r_star = -p["scale"] * (u - p["peak"] / (sp.V - 1)) ** 2
    R = LinearRewardClass(sp, np.stack([u, u**2], axis=1)[None])
    return Instance(sp, ref, p["beta"], r_star[None, :], R, TabularPolicyClass(sp))


_DICHOTOMY = {"none": ((1, 2), (1, 2)), "policy": ((1, 2), (1, 3)), "reward": ((1, 3), (1, 2)),
              "both": ((1, 3), (1, 3))}  # case -> (reward features, policy features), as basis indices


def dichotomy(p, rng) -> Instance:
    """The ``dichotomy`` instance (module docstring): Shi et al. (2025)'s realisable / misspecified
    reward and policy classes.

    Parameters
    ----------
    p : dict
        the setting's full parameters (the schema of its
        :data:`genver.experiments.registry.GENERATORS` entry, defaults filled in).
    rng : numpy.random.Generator
        the instance's generator (``spawn_key = (seed, 0)``), drawn in a fixed order.

    Returns
    -------
    Instance
        the world, ``R``, ``Π``.
    """
    sp = _bandit_space(p)
    if sp.T < 4:
        raise ValueError("dichotomy needs V >= 4 actions (basis vectors q_0..q_3)")
    if p["case"] not in _DICHOTOMY:
        raise ValueError(f"case must be one of {sorted(_DICHOTOMY)}, got {p['case']!r}")
    ref = random_policy(sp, rng, concentration=p["ref_concentration"])
    Q = np.stack([_orthonormal_basis(sp.T, rng) for _ in range(sp.P)]) * np.sqrt(sp.T)  # unit mean square
    c = rng.standard_normal(2)
    r_star = p["w_scale"] * (c[0] * Q[:, :, 1] + c[1] * Q[:, :, 2])
    fr, fp = _DICHOTOMY[p["case"]]
    R = LinearRewardClass(sp, Q[:, :, list(fr)])
    Pi = LogLinearPolicyClass(sp, ref, _bandit_psi(Q[:, :, list(fp)]))
    return Instance(sp, ref, p["beta"], r_star, R, Pi, extra={"c": c})


def sparse_reward(p, rng) -> Instance:
    """The ``sparse_reward`` instance (module docstring): Shi et al. (2025)'s ``k``-sparse finite ``R``
    against a dense log-linear ``Π``.

    Parameters
    ----------
    p : dict
        the setting's full parameters (the schema of its
        :data:`genver.experiments.registry.GENERATORS` entry, defaults filled in).
    rng : numpy.random.Generator
        the instance's generator (``spawn_key = (seed, 0)``), drawn in a fixed order.

    Returns
    -------
    Instance
        the world, ``R``, ``Π``.
    """
    import itertools
    from math import comb

    sp = _bandit_space(p, one_prompt=True)
    d, k = p["d"], p["k"]
    if not 1 <= k <= d:
        raise ValueError(f"need 1 <= k <= d, got k = {k}, d = {d}")
    if comb(d, k) * 2**k * sp.T > 2**26:
        raise ValueError(f"sparse_reward: C(d, k)·2^k·V = {comb(d, k) * 2**k * sp.T} reward entries is too many")
    ref = random_policy(sp, rng, concentration=p["ref_concentration"])
    phi = rng.standard_normal((sp.T, d))
    phi /= np.sqrt((phi**2).mean(axis=0, keepdims=True))  # unit mean square per feature
    tables = []
    for S in itertools.combinations(range(d), k):
        for signs in itertools.product((1.0, -1.0), repeat=k):
            tables.append(p["scale"] * phi[:, list(S)] @ np.asarray(signs))
    R = FiniteRewardClass(sp, np.asarray(tables)[:, None, :])
    star = int(rng.integers(R.size))
    dense = LinearRewardClass(sp, phi[None])
    return Instance(sp, ref, p["beta"], R.member(star), R, SoftOptimalPolicyClass(dense, ref, p["beta"]),
                    extra={"star_index": star})
