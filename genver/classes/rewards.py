r"""Reward classes ``R`` (verifiers) and the reward class induced by a policy class.

* :class:`LinearRewardClass` — ``R_lin = { w·φ(x, y) : w ∈ ℝ^d }`` with trajectory features
  ``φ`` (a "global" verifier); ``d`` free parameters.
* :class:`TabularRewardClass` — every reward table ``r(x, y)``; Bradley–Terry cannot see
  per-prompt constants, so it has ``P·(T − 1)`` identifiable parameters.
* :class:`FiniteRewardClass` — ``K`` explicit tables; ``log |R| = log K``.
* :func:`induced_reward` / :func:`induced_reward_class` — the local reward of a policy,
  ``r_π(x, y) = β log π(y|x)/π_ref(y|x)`` (DPO's implicit reward), and
  ``R(Π) = { r_π : π ∈ Π }``. Classes are *isomorphic* when ``R = R(Π)`` modulo per-prompt
  constants.
"""
from __future__ import annotations

import numpy as np

from .._validation import as_generator, check_beta, check_positive_int
from ..policy import Policy
from ..spaces import TreeSpace

__all__ = ["FiniteRewardClass", "LinearRewardClass", "TabularRewardClass", "induced_reward",
           "induced_reward_class", "random_reward_class"]


class FiniteRewardClass:
    """``K`` explicit reward tables, ``tables`` of shape ``(K, P, T)`` (finite values)."""

    kind = "finite"

    def __init__(self, space: TreeSpace, tables):
        t = np.asarray(tables)
        if t.ndim != 3 or t.shape[1:] != space.shape or t.shape[0] < 1:
            raise ValueError(f"tables must have shape (K, P, T) with K >= 1 and (P, T) = {space.shape}, got {t.shape}")
        t = np.ascontiguousarray(t, dtype=np.float64)
        if not np.isfinite(t).all():
            raise ValueError("tables contains NaN or inf")
        t.setflags(write=False)
        self.space = space
        self.tables = t

    @property
    def size(self) -> int:
        return self.tables.shape[0]

    @property
    def log_size(self) -> float:
        return float(np.log(self.size))

    n_params = None
    identifiable_dim = None

    def as_finite(self) -> FiniteRewardClass:
        return self

    def draw(self, rng: np.random.Generator) -> np.ndarray:
        """A uniformly drawn member (one ``rng.integers`` draw)."""
        return self.member(int(rng.integers(self.size)))

    def member(self, k: int) -> np.ndarray:
        if not 0 <= k < self.size:
            raise ValueError(f"member index must lie in [0, {self.size - 1}], got {k}")
        return self.tables[k]

    def __repr__(self):
        return f"FiniteRewardClass(K={self.size}, {self.space!r})"


class LinearRewardClass:
    """``r_w(x, y) = w·φ(x, y)`` with features ``phi`` of shape ``(P, T, d)``."""

    kind = "linear"
    size = None

    def __init__(self, space: TreeSpace, phi):
        f = np.asarray(phi)
        if f.ndim != 3 or f.shape[:2] != space.shape or f.shape[2] < 1:
            raise ValueError(f"phi must have shape (P, T, d) with (P, T) = {space.shape} and d >= 1, got {f.shape}")
        f = np.ascontiguousarray(f, dtype=np.float64)
        if not np.isfinite(f).all():
            raise ValueError("phi contains NaN or inf")
        f.setflags(write=False)
        self.space = space
        self.phi = f

    @property
    def n_params(self) -> int:
        return self.phi.shape[2]

    @property
    def identifiable_dim(self) -> float:
        """Parameters Bradley–Terry can identify: the rank of the features centred within each
        prompt (per-prompt constants are invisible)."""
        phi = self.phi - self.phi.mean(axis=1, keepdims=True)
        return float(np.linalg.matrix_rank(phi.reshape(-1, phi.shape[2])))

    def as_finite(self) -> None:
        return None

    def draw(self, rng: np.random.Generator) -> np.ndarray:
        """``w·φ`` with ``w ~ N(0, I_d)`` (one ``rng.standard_normal(d)`` draw)."""
        return self.reward(rng.standard_normal(self.n_params))

    def reward(self, w) -> np.ndarray:
        w = np.asarray(w, dtype=np.float64)
        if w.shape != (self.n_params,):
            raise ValueError(f"w must have shape (d,) = ({self.n_params},), got {w.shape}")
        if not np.isfinite(w).all():
            raise ValueError("w contains NaN or inf")
        return self.phi @ w

    def __repr__(self):
        return f"LinearRewardClass(d={self.n_params}, {self.space!r})"


class TabularRewardClass:
    """Every reward table on ``space``."""

    kind = "tabular"
    size = None

    def __init__(self, space: TreeSpace):
        self.space = space

    @property
    def n_params(self) -> int:
        return self.space.P * (self.space.T - 1)

    @property
    def identifiable_dim(self) -> int:
        return self.n_params

    def as_finite(self) -> None:
        return None

    def draw(self, rng: np.random.Generator) -> np.ndarray:
        """A table with i.i.d. ``N(0, 1)`` entries."""
        return rng.standard_normal(self.space.shape)

    def __repr__(self):
        return f"TabularRewardClass({self.space!r})"


def induced_reward(policy: Policy, ref: Policy, beta: float) -> np.ndarray:
    """``r_π(x, y) = β (log π(y|x) − log π_ref(y|x))``; both policies need full support."""
    beta = check_beta(beta)
    if not isinstance(policy, Policy) or not isinstance(ref, Policy):
        raise ValueError("policy and ref must be genver Policy objects")
    if policy.space != ref.space:
        raise ValueError(f"policy lives on {policy.space!r} but ref on {ref.space!r}")
    policy.require_full_support("policy")
    ref.require_full_support("ref")
    return beta * (policy.logp - ref.logp)


def induced_reward_class(policy_class, ref: Policy, beta: float):
    """``R(Π)``: finite for a finite policy class, tabular for the tabular class."""
    from .policies import FinitePolicyClass, TabularPolicyClass

    beta = check_beta(beta)
    if not isinstance(ref, Policy) or ref.space != getattr(policy_class, "space", None):
        raise ValueError("ref must be a Policy on the policy class's space")
    ref.require_full_support("ref")
    if isinstance(policy_class, FinitePolicyClass):
        if not np.isfinite(policy_class.logp).all():
            raise ValueError("policy_class members must have full support for induced rewards")
        return FiniteRewardClass(policy_class.space, beta * (policy_class.logp - ref.logp[None]))
    if isinstance(policy_class, TabularPolicyClass):
        return TabularRewardClass(policy_class.space)
    raise ValueError(f"induced_reward_class supports finite and tabular policy classes, got "
                     f"{type(policy_class).__name__}")


def random_reward_class(space: TreeSpace, K: int, random_state=None, *, scale: float = 1.0) -> FiniteRewardClass:
    """``K`` reward tables with i.i.d. ``N(0, scale²)`` entries."""
    K = check_positive_int(K, "K")
    scale = check_beta(scale, "scale")
    if K * space.P * space.T > 2**28:
        raise ValueError(f"K*P*T = {K * space.P * space.T} entries exceeds the limit 2**28")
    rng = as_generator(random_state)
    return FiniteRewardClass(space, scale * rng.standard_normal((K, space.P, space.T)))
