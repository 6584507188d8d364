r"""Token-level policies on a prefix tree, and reference policies.

On a prefix tree a token-level policy ``π(a | x, a_<h)`` and a distribution over
completions are the same object: ``π(y|x) = Π_h π(a_h | x, a_<h)``, and conversely

    π(a | x, s) = π(s·a | x) / π(s | x),      π(s | x) = Σ_{y ⊒ s} π(y | x)

(prefix marginals are sums over the contiguous block of completions below ``s``; see
:mod:`genver.spaces`). :class:`Policy` stores the sequence log-probabilities
``logp[x, y] = log π(y|x)`` (shape ``(P, T)``, ``-inf`` allowed) and derives per-token
conditionals on demand in the flat node layout ``(P, n_internal, V)``. Where a prefix has
probability zero its conditional is undefined; genver then reports the uniform ``log(1/V)``
(it never affects a sequence probability).

Reference policies: :func:`uniform_policy`, :func:`random_policy` (each node's next-token
distribution drawn from a symmetric Dirichlet, optionally tempered) and
:meth:`Policy.from_probs` / :class:`Policy` for a given one.
"""
from __future__ import annotations

import numpy as np

from . import _kernels
from ._validation import as_generator, check_beta
from .spaces import TreeSpace

__all__ = [
    "Policy",
    "check_policy",
    "uniform_policy",
    "random_policy",
    "sequence_logp_from_cond",
    "logsumexp_rows",
    "node_score_coeff",
]

NORMALISATION_TOL = 1e-8


def logsumexp_rows(a: np.ndarray, axis: int = -1) -> np.ndarray:
    """Guarded log-sum-exp: an all ``-inf`` slice gives ``-inf`` (not NaN).

    Parameters
    ----------
    a : np.ndarray
        The log-values.
    axis : int
        The axis summed over.

    Returns
    -------
    np.ndarray
        ``log Σ exp(a)`` along ``axis``, that axis removed.
    """
    m = np.max(a, axis=axis, keepdims=True)
    m_safe = np.where(np.isfinite(m), m, 0.0)
    with np.errstate(divide="ignore"):
        out = np.log(np.sum(np.exp(a - m_safe), axis=axis, keepdims=True)) + m_safe
    return np.squeeze(out, axis=axis)


def sequence_logp_from_cond(space: TreeSpace, cond: np.ndarray) -> np.ndarray:
    """``log π(y|x) = Σ_h log π(a_h | x, s_h)`` from flat conditionals ``(P, n_internal, V)``.

    Parameters
    ----------
    space : TreeSpace
        The tree.
    cond : array_like
        Token conditionals ``log π(a|x,s)``, shape ``(P, n_internal, V)`` (flat node layout).

    Returns
    -------
    np.ndarray
        Sequence log-probabilities ``log π(y|x)``, shape ``(P, T)``.
    """
    P, V, H, T = space.P, space.V, space.H, space.T
    cond = np.asarray(cond, dtype=np.float64)
    if cond.shape != (P, space.n_internal, V):
        raise ValueError(f"cond must have shape (P, n_internal, V) = {(P, space.n_internal, V)}, got {cond.shape}")
    logp = np.zeros((P, T))
    for h in range(H):
        n, off, below = V**h, space.offset(h), V ** (H - h - 1)
        c = cond[:, off : off + n, :]  # (P, V**h, V)
        logp += np.broadcast_to(c[..., None], (P, n, V, below)).reshape(P, T)
    return logp


def node_score_coeff(space: TreeSpace, cond: np.ndarray, g: np.ndarray) -> np.ndarray:
    """``Σ_y g(x,y) ∂ log π(y|x)/∂z(x,s,a)`` for per-node softmax logits ``z``
    (``π(a|s) = softmax_a z(s,·)``), shape (P, n_internal, V).

    On the tree this is ``G(s·a) − π(a|s) G(s)`` with ``G(node) = Σ_{y ⊒ node} g(y)``: the
    policy-gradient contraction used by every token-level gradient in genver (contract with
    features ``ψ`` for a log-linear class).

    Parameters
    ----------
    space : TreeSpace
        The tree.
    cond : np.ndarray
        The policy's token conditionals ``log π(a|x,s)``, shape ``(P, n_internal, V)``.
    g : np.ndarray
        Per-completion weights ``g(x, y)``, shape ``(P, T)``.

    Returns
    -------
    np.ndarray
        The coefficients, shape ``(P, n_internal, V)``.
    """
    P, V = space.P, space.V
    coeff = np.empty((P, space.n_internal, V))
    child = g
    for h in range(space.H - 1, -1, -1):
        Gc = child.reshape(P, V**h, V)
        Gp = Gc.sum(axis=-1)
        off = space.offset(h)
        coeff[:, off : off + V**h, :] = Gc - np.exp(cond[:, off : off + V**h, :]) * Gp[..., None]
        child = Gp
    return coeff


class Policy:
    """A policy on ``space`` given by its sequence log-probabilities ``logp`` (P, T).

    Each row must satisfy ``logsumexp(logp[x]) = 0`` within 1e-8; ``-inf`` marks zero
    probability, NaN and ``+inf`` are refused.

    Parameters
    ----------
    space : TreeSpace
        The tree the policy lives on.
    logp : array_like
        ``log π(y|x)``, shape ``(P, T)``, rows normalised.
    name : str
        The argument's name, used in the error messages.
    """

    def __init__(self, space: TreeSpace, logp, *, name: str = "logp", _cond=None):
        if not isinstance(space, TreeSpace):
            raise ValueError(f"space must be a TreeSpace, got {type(space).__name__}")
        logp = space.check_array(name, logp, allow_neg_inf=True)
        norm = logsumexp_rows(logp)
        bad = np.abs(norm) > NORMALISATION_TOL
        if bad.any():
            x = int(np.argmax(bad))
            raise ValueError(
                f"{name} rows must be normalised (logsumexp = 0); prompt {x} has logsumexp {norm[x]:.3g}"
            )
        self.space = space
        self.logp = logp
        self.logp.setflags(write=False)
        self._cond = _cond

    # -- constructors ------------------------------------------------------------------
    @classmethod
    def from_normalised(cls, space: TreeSpace, logp: np.ndarray, cond: np.ndarray | None = None) -> Policy:
        """Wrap arrays that are normalised by construction, **without validation**.

        For library code that has just built ``logp`` by a normalising computation (backward
        induction, a row of a checked class): unlike :class:`Policy` and :meth:`from_probs`, it
        checks neither the shape, nor ``logsumexp(logp[x]) = 0``, nor NaN / ``+inf``; a caller
        passing anything else gets a :class:`Policy` whose results are meaningless. Both arrays
        are made read-only (in place, not copied).

        Parameters
        ----------
        space : TreeSpace
            The tree the policy lives on.
        logp : np.ndarray
            Sequence log-probabilities ``log π(y|x)``, shape ``(P, T)``, rows normalised.
        cond : np.ndarray or None
            The matching token conditionals ``log π(a|x,s)``, shape ``(P, n_internal, V)``, when
            already known (else derived on first use of :attr:`cond`).

        Returns
        -------
        Policy
            The policy ``π`` wrapping ``logp`` (and ``cond``).
        """
        pol = cls.__new__(cls)
        pol.space, pol.logp, pol._cond = space, logp, cond
        pol.logp.setflags(write=False)
        if cond is not None:
            cond.setflags(write=False)
        return pol

    @classmethod
    def from_probs(cls, space: TreeSpace, probs, *, name: str = "probs") -> Policy:
        """From sequence probabilities ``π(y|x)`` (P, T), rows summing to 1.

        Parameters
        ----------
        space : TreeSpace
            The tree.
        probs : array_like
            ``π(y|x) ≥ 0``, shape ``(P, T)``.
        name : str
            The argument's name, used in the error messages.

        Returns
        -------
        Policy
            The policy with ``logp = log probs``.
        """
        p = space.check_array(name, probs)
        if (p < 0).any():
            raise ValueError(f"{name} must be non-negative")
        with np.errstate(divide="ignore"):
            return cls(space, np.log(p), name=name)

    @classmethod
    def from_cond(cls, space: TreeSpace, cond) -> Policy:
        """From flat token conditionals ``log π(a|x,s)`` of shape (P, n_internal, V).

        Parameters
        ----------
        space : TreeSpace
            The tree.
        cond : array_like
            ``log π(a|x,s)``, shape ``(P, n_internal, V)``, every node's row normalised.

        Returns
        -------
        Policy
            The policy with ``logp = Σ_h log π(a_h|x,s_h)`` and these conditionals cached.
        """
        cond = np.ascontiguousarray(cond, dtype=np.float64)
        if cond.shape != (space.P, space.n_internal, space.V):
            raise ValueError(
                f"cond must have shape (P, n_internal, V) = {(space.P, space.n_internal, space.V)}, got {cond.shape}"
            )
        if np.isnan(cond).any() or np.isposinf(cond).any():
            raise ValueError("cond contains NaN or +inf")
        bad = np.abs(logsumexp_rows(cond)) > NORMALISATION_TOL
        if bad.any():
            raise ValueError("cond: every node's next-token distribution must be normalised")
        pol = cls(space, sequence_logp_from_cond(space, cond))
        pol._cond = cond
        pol._cond.setflags(write=False)
        return pol

    # -- derived quantities ------------------------------------------------------------
    @property
    def probs(self) -> np.ndarray:
        """``π(y|x)``, shape (P, T)."""
        return np.exp(self.logp)

    def prefix_logp(self, h: int) -> np.ndarray:
        """``log π(s|x)`` for the depth-``h`` prefixes.

        Parameters
        ----------
        h : int
            The depth, ``0 ≤ h ≤ H``.

        Returns
        -------
        np.ndarray
            Prefix log-marginals, shape ``(P, V**h)``.
        """
        sp = self.space
        return logsumexp_rows(self.logp.reshape(sp.P, sp.n_nodes(h), sp.block(h)))

    @property
    def cond(self) -> np.ndarray:
        """Flat token conditionals ``log π(a|x,s)``, shape (P, n_internal, V): the prefix
        marginals ``log π(s|x)`` bottom-up, prompt by prompt, in one kernel
        (:func:`genver._kernels.token_conditionals`, ``O(T)`` memory beyond the result)."""
        if self._cond is None:
            sp = self.space
            cond = np.empty((sp.P, sp.n_internal, sp.V))
            _kernels.token_conditionals(self.logp, sp.V, sp.H, cond)
            cond.setflags(write=False)
            self._cond = cond
        return self._cond

    def token_logp(self, h: int) -> np.ndarray:
        """Conditionals at depth ``h``: ``log π(a | x, s_h)``.

        Parameters
        ----------
        h : int
            The depth, ``0 ≤ h < H``.

        Returns
        -------
        np.ndarray
            Shape ``(P, V**h, V)`` (a view of :attr:`cond`).
        """
        sp = self.space
        if not 0 <= h < sp.H:
            raise ValueError(f"h must be in [0, {sp.H - 1}], got {h}")
        off = sp.offset(h)
        return self.cond[:, off : off + sp.V**h, :]

    @property
    def full_support(self) -> bool:
        """Whether every completion has positive probability (``logp`` finite everywhere)."""
        return bool(np.isfinite(self.logp).all())

    def require_full_support(self, name: str = "reference") -> None:
        """``ValueError`` unless the policy has full support (the first zero-probability completion
        is named).

        Parameters
        ----------
        name : str
            The argument's name, used in the message.
        """
        if not self.full_support:
            x, y = np.argwhere(~np.isfinite(self.logp))[0]
            raise ValueError(
                f"{name} must have full support (every token probability > 0); "
                f"completion {y} of prompt {x} has probability 0"
            )

    def __repr__(self):
        return f"Policy({self.space!r})"


def uniform_policy(space: TreeSpace) -> Policy:
    """``π(a|s) = 1/V`` at every node, i.e. ``π(y|x) = V**-H``.

    Parameters
    ----------
    space : TreeSpace
        The tree.

    Returns
    -------
    Policy
        The uniform policy.
    """
    return Policy(space, np.full(space.shape, -space.H * np.log(space.V)))


def random_policy(space: TreeSpace, random_state=None, *, concentration: float = 1.0,
                  temperature: float = 1.0) -> Policy:
    """Each node's next-token distribution ``~ Dirichlet(concentration·1_V)``, then tempered:
    ``π(a|s) ∝ p_a^{1/temperature}``. Full support is guaranteed (a draw with a zero
    probability, possible only for tiny ``concentration``, raises ``ValueError``).

    Parameters
    ----------
    space : TreeSpace
        The tree.
    random_state : None, int, SeedSequence or Generator
        Seed of the Dirichlet draws.
    concentration : float
        Dirichlet concentration ``> 0`` (small: peaked next-token distributions).
    temperature : float
        Tempering ``> 0`` applied after the draw (``> 1`` flattens).

    Returns
    -------
    Policy
        The drawn policy (token conditionals cached).
    """
    concentration = check_beta(concentration, "concentration")
    temperature = check_beta(temperature, "temperature")
    rng = as_generator(random_state)
    g = rng.gamma(concentration, size=(space.P, space.n_internal, space.V))
    with np.errstate(divide="ignore"):
        logits = np.log(g) / temperature
    if not np.isfinite(logits).all():
        raise ValueError(
            f"concentration={concentration} produced a zero token probability; use a larger concentration"
        )
    cond = logits - logsumexp_rows(logits)[..., None]
    return Policy.from_cond(space, cond)


def check_policy(name: str, pol, space: TreeSpace | None = None) -> Policy:
    """``pol`` itself if it is a :class:`Policy` (on ``space`` when given); else a ``ValueError``
    naming the argument ``name``. The argument check of every function that takes policies.

    Parameters
    ----------
    name : str
        The argument's name, used in the message.
    pol : Any
        The value to check.
    space : TreeSpace or None
        The tree ``pol`` must live on, when given.

    Returns
    -------
    Policy
        ``pol``.
    """
    if not isinstance(pol, Policy):
        raise ValueError(f"{name} must be a genver Policy, got {type(pol).__name__}")
    if space is not None and pol.space != space:
        raise ValueError(f"{name} lives on {pol.space!r}, expected {space!r}")
    return pol
