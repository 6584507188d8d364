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
        """``K = |R|``."""
        return self.tables.shape[0]

    @property
    def log_size(self) -> float:
        """``log |R|``, the term of the finite-class bounds."""
        return float(np.log(self.size))

    n_params = None
    identifiable_dim = None

    def as_finite(self) -> FiniteRewardClass:
        """The class itself.

        Returns
        -------
        FiniteRewardClass
            ``self``.
        """
        return self

    def draw(self, rng: np.random.Generator) -> np.ndarray:
        """A uniformly drawn member (one ``rng.integers`` draw).

        Parameters
        ----------
        rng : np.random.Generator
            The generator the draw consumes.

        Returns
        -------
        np.ndarray
            The member's table, shape ``(P, T)`` (read-only).
        """
        return self.member(int(rng.integers(self.size)))

    def member(self, k: int) -> np.ndarray:
        """Member ``k``'s table.

        Parameters
        ----------
        k : int
            The member index, ``0 ≤ k < K``.

        Returns
        -------
        np.ndarray
            ``r_k``, shape ``(P, T)`` (read-only).
        """
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
        """``d``, the number of features."""
        return self.phi.shape[2]

    @property
    def identifiable_dim(self) -> float:
        """Parameters Bradley–Terry can identify: the rank of the features centred within each
        prompt (per-prompt constants are invisible)."""
        phi = self.phi - self.phi.mean(axis=1, keepdims=True)
        return float(np.linalg.matrix_rank(phi.reshape(-1, phi.shape[2])))

    def as_finite(self) -> None:
        """``None``: a linear class is not finite.

        Returns
        -------
        None
            Always.
        """
        return None

    def draw(self, rng: np.random.Generator) -> np.ndarray:
        """``w·φ`` with ``w ~ N(0, I_d)`` (one ``rng.standard_normal(d)`` draw).

        Parameters
        ----------
        rng : np.random.Generator
            The generator the draw consumes.

        Returns
        -------
        np.ndarray
            The reward, shape ``(P, T)``.
        """
        return self.reward(rng.standard_normal(self.n_params))

    def reward(self, w) -> np.ndarray:
        """The member ``r_w = w·φ``.

        Parameters
        ----------
        w : array_like
            The weights, shape ``(d,)``, finite.

        Returns
        -------
        np.ndarray
            ``r_w(x, y)``, shape ``(P, T)``.
        """
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
        """``P·(T − 1)``: per-prompt constants are invisible to Bradley–Terry."""
        return self.space.P * (self.space.T - 1)

    @property
    def identifiable_dim(self) -> int:
        """``n_params`` (every free parameter is identifiable)."""
        return self.n_params

    def as_finite(self) -> None:
        """``None``: the tabular class is not finite.

        Returns
        -------
        None
            Always.
        """
        return None

    def draw(self, rng: np.random.Generator) -> np.ndarray:
        """A table with i.i.d. ``N(0, 1)`` entries.

        Parameters
        ----------
        rng : np.random.Generator
            The generator the draw consumes.

        Returns
        -------
        np.ndarray
            The reward, shape ``(P, T)``.
        """
        return rng.standard_normal(self.space.shape)

    def __repr__(self):
        return f"TabularRewardClass({self.space!r})"


def induced_reward(policy: Policy, ref: Policy, beta: float) -> np.ndarray:
    """``r_π(x, y) = β (log π(y|x) − log π_ref(y|x))``; both policies need full support.

    Parameters
    ----------
    policy : Policy
        The policy ``π``.
    ref : Policy
        The reference ``π_ref``.
    beta : float
        The KL weight ``β > 0``.

    Returns
    -------
    np.ndarray
        DPO's implicit reward ``r_π``, shape ``(P, T)``.
    """
    beta = check_beta(beta)
    if not isinstance(policy, Policy) or not isinstance(ref, Policy):
        raise ValueError("policy and ref must be genver Policy objects")
    if policy.space != ref.space:
        raise ValueError(f"policy lives on {policy.space!r} but ref on {ref.space!r}")
    policy.require_full_support("policy")
    ref.require_full_support("ref")
    return beta * (policy.logp - ref.logp)


def induced_reward_class(policy_class, ref: Policy, beta: float):
    """``R(Π)``: finite for a finite policy class, tabular for the tabular class.

    Parameters
    ----------
    policy_class : FinitePolicyClass or TabularPolicyClass
        ``Π`` (finite members need full support).
    ref : Policy
        The reference ``π_ref`` (full support).
    beta : float
        The KL weight ``β > 0``.

    Returns
    -------
    FiniteRewardClass or TabularRewardClass
        ``{ r_π : π ∈ Π }``.
    """
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
    """``K`` reward tables with i.i.d. ``N(0, scale²)`` entries.

    Parameters
    ----------
    space : TreeSpace
        The tree.
    K : int
        Number of members, ``≥ 1``.
    random_state : None, int, SeedSequence or Generator
        Seed of the draw (one ``(K, P, T)`` array).
    scale : float
        Standard deviation ``> 0``.

    Returns
    -------
    FiniteRewardClass
        The ``K`` tables.
    """
    K = check_positive_int(K, "K")
    scale = check_beta(scale, "scale")
    if K * space.P * space.T > 2**28:
        raise ValueError(f"K*P*T = {K * space.P * space.T} entries exceeds the limit 2**28")
    rng = as_generator(random_state)
    return FiniteRewardClass(space, scale * rng.standard_normal((K, space.P, space.T)))
