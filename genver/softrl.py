r"""Exact KL-regularised (soft) RL on a prefix tree.

For a reward ``r(x, y)``, reference ``π_ref`` and KL weight ``β > 0`` the regularised objective
(per prompt, then averaged with the prompt weights ``ρ``) is::

    J_β(π; r) = E_x [ E_{y~π(·|x)} r(x,y) − β KL(π(·|x) ‖ π_ref(·|x)) ].

Its maximiser over all policies is the soft-optimal policy
``π*_r(y|x) = π_ref(y|x) exp(r(x,y)/β) / Z_r(x)``, computed here token by token by backward
induction::

    V_H(x,y) = r(x,y),   Q_h(s,a) = V_{h+1}(s·a),
    V_h(s) = β log Σ_a π_ref(a|s) exp(Q_h(s,a)/β),
    π*(a|s) = π_ref(a|s) exp((Q_h(s,a) − V_h(s))/β),

so that ``β log Z_r(x) = V_0(x)``. Two identities follow and are tested:

* reverse KL:  ``J_β(π; r) = β log Z_r − β KL(π ‖ π*_r)`` (per prompt), so RL against ``r``
  over a class ``Π`` is the reverse-KL projection of ``π*_r`` onto ``Π``;
* telescoping: ``Σ_h β log π*(a_h|s_h)/π_ref(a_h|s_h) = r(x,y) − V_0(x)``.

Conventions: ``0·log 0 = 0``; ``KL(p‖q) = +∞`` when ``p`` puts mass where ``q`` has none,
and then ``J_β = −∞``; a KL within its own rounding floor ``8·eps·Σ_y p(|log p| + |log q|)``
is exactly 0 (:func:`kl_rows`).

Scale: for ``T = V**H`` completions per prompt, backward induction
(:func:`genver._kernels.backward_induction`) sweeps each prompt in rounds of subtrees of at most
2¹⁶ leaves, bottom-up for the values and conditionals (one fused pass per level of a subtree:
``max``, polynomial ``exp``, in-order sum, ``log`` and ``log π*(a|s)`` together) and top-down for
the sequence log-probs; a round's subtrees are independent, so large trees use both cores with
the same bits as one. Besides its outputs (values, token conditionals and sequence log-probs of
``π*``, all of them needed) it allocates the subtrees' roots (``P·T/2¹⁶`` doubles) and a scratch
of ``~2¹⁶/V`` doubles per parallel run, whatever ``T``. ``J_β``,
``KL`` and ``E_π r`` read the ``(P, T)`` log-probabilities once, fused in one kernel
(:func:`genver._kernels.policy_row_stats`), with no ``(P, T)`` temporaries (inputs that are
not C-contiguous float64, or that need broadcasting, are copied once).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import _kernels
from ._validation import check_beta, check_prompt_weights
from .policy import Policy, check_policy
from .spaces import TreeSpace

__all__ = ["SoftOptimal", "soft_optimal", "J_beta", "kl", "expected_reward"]


@dataclass(frozen=True)
class SoftOptimal:
    """Result of backward induction for reward ``r`` (see module docstring).

    Attributes
    ----------
    policy : Policy        the soft-optimal policy ``π*_r`` (token conditionals from the recursion)
    values : (P, n_internal) ``V_h(s)`` at every internal node (flat layout of :mod:`genver.spaces`)
    reward : (P, T)        ``r = V_H``
    beta : float
    """

    policy: Policy
    values: np.ndarray
    reward: np.ndarray
    beta: float

    @property
    def space(self) -> TreeSpace:
        """The tree of :attr:`policy`."""
        return self.policy.space

    @property
    def log_Z(self) -> np.ndarray:
        """``log Z_r(x) = V_0(x)/β``, shape (P,)."""
        return self.values[:, 0] / self.beta

    def V(self, h: int) -> np.ndarray:
        """``V_h(s)`` for the depth-``h`` prefixes; ``V_H = r``.

        Parameters
        ----------
        h : int
            The depth, ``0 ≤ h ≤ H``.

        Returns
        -------
        np.ndarray
            The soft values, shape ``(P, V**h)`` (a view).
        """
        sp = self.space
        if h == sp.H:
            return self.reward
        off = sp.offset(h)
        return self.values[:, off : off + sp.V**h]

    def Q(self, h: int) -> np.ndarray:
        """``Q_h(s, a) = V_{h+1}(s·a)``.

        Parameters
        ----------
        h : int
            The depth, ``0 ≤ h < H``.

        Returns
        -------
        np.ndarray
            The soft action values, shape ``(P, V**h, V)``.
        """
        sp = self.space
        if not 0 <= h < sp.H:
            raise ValueError(f"h must be in [0, {sp.H - 1}], got {h}")
        return self.V(h + 1).reshape(sp.P, sp.V**h, sp.V)


def soft_optimal(reward, ref: Policy, beta: float) -> SoftOptimal:
    """Soft-optimal policy ``π*_r`` and its values by exact backward induction.

    Parameters
    ----------
    reward : array_like
        The reward ``r``, shape ``(P, T)`` (finite).
    ref : Policy
        The reference ``π_ref``.
    beta : float
        The KL weight ``β > 0``.

    Returns
    -------
    SoftOptimal
        ``π*_r``, the values ``V_h(s)`` at every internal node, ``r`` and ``β``.

    Examples
    --------
    One prompt, ``V = 2``, ``H = 2``, uniform reference: ``V_0 = β log Z_r`` with
    ``Z_r = E_ref e^{r/β}``, and ``π*_r ∝ π_ref e^{r/β}``.

    >>> import numpy as np
    >>> from genver.spaces import TreeSpace
    >>> from genver.policy import uniform_policy
    >>> sp = TreeSpace(P=1, V=2, H=2)
    >>> r = np.array([[0.0, 1.0, 2.0, 3.0]])
    >>> opt = soft_optimal(r, uniform_policy(sp), beta=1.0)
    >>> round(float(opt.log_Z[0]), 10), round(float(np.log(np.exp(r).mean())), 10)
    (2.0538953374, 2.0538953374)
    >>> np.round(opt.policy.probs, 4)
    array([[0.0321, 0.0871, 0.2369, 0.6439]])
    >>> np.round(np.exp(opt.policy.token_logp(0)), 4)  # π*(a_1 | root)
    array([[[0.1192, 0.8808]]])
    """
    ref = check_policy("ref", ref)
    sp = ref.space
    beta = check_beta(beta)
    r = sp.check_array("reward", reward)
    values = np.empty((sp.P, sp.n_internal))
    logpi = np.empty((sp.P, sp.n_internal, sp.V))
    logp = np.empty(sp.shape)
    ref_cond = np.ascontiguousarray(ref.cond)
    _kernels.backward_induction(r, ref_cond, beta, sp.V, sp.H, values, logpi, logp)
    # normalised by construction: skip the validating constructor
    return SoftOptimal(policy=Policy.from_normalised(sp, logp, logpi), values=values, reward=r, beta=beta)


# -- objectives on raw arrays (shared by classes and estimators) ------------------------
def _as_rows(a: np.ndarray, shape: tuple) -> np.ndarray:
    """``a`` as C-contiguous rows ``(R_a, T)`` whose row ``i % R_a`` is row ``i`` of ``a``
    broadcast to ``shape`` (no copy when ``a`` is contiguous and its shape a suffix of ``shape``)."""
    if a.shape != shape[len(shape) - a.ndim:]:
        a = np.broadcast_to(a, shape)
    rows = np.ascontiguousarray(a, dtype=np.float64).reshape(-1, shape[-1]).view()
    rows.setflags(write=False)  # one compiled signature for every caller
    return rows


def _row_stats(logp, logq, reward=None):
    """Per row over the last axis (leading axes broadcast): ``(KL(p‖q), Σ_y p r)`` in one fused
    pass (:func:`genver._kernels.policy_row_stats`); the second is None without ``reward``."""
    lp = np.asarray(logp, dtype=np.float64)
    lq = np.asarray(logq, dtype=np.float64)
    shape = np.broadcast_shapes(lp.shape, lq.shape)
    r = None if reward is None else np.asarray(reward, dtype=np.float64)
    if r is not None:
        shape = np.broadcast_shapes(shape, r.shape)
    lead = shape[:-1]
    lp2 = _as_rows(lp, shape)
    lq2 = _as_rows(lq, shape)
    r2 = lq2 if r is None else _as_rows(r, shape)
    kl_out = np.empty(lp2.shape[0])
    er_out = np.empty(lp2.shape[0])
    _kernels.policy_row_stats(lp2, lq2, r2, r is not None, kl_out, er_out)
    return kl_out.reshape(lead), (None if r is None else er_out.reshape(lead))


def kl_rows(logp: np.ndarray, logq: np.ndarray) -> np.ndarray:
    """Per-row ``KL(p‖q)`` over the last axis; broadcasts leading axes. The support of ``p``
    is read from the log (``logp > -inf``), never from an ``exp`` that may underflow.

    A value within the rounding floor of its own computation,
    ``|KL| ≤ 8·eps·Σ_y p(y)(|log p(y)| + |log q(y)|)``, is reported as exactly 0: two
    computations of the same policy (e.g. backward induction and the closed form) differ by
    ``~1e-16`` in each log-probability, which would otherwise show up as a spurious ``1e-17``
    suboptimality. One fused pass per row (no temporaries of the rows' size); the sums are
    pairwise, as numpy's."""
    return _row_stats(logp, logq)[0]


def rho_weighted(vals: np.ndarray, rho: np.ndarray) -> np.ndarray:
    """``Σ_x ρ_x vals[..., x]`` skipping prompts with ``ρ_x = 0`` (so ``0·∞`` never gives NaN)."""
    keep = rho > 0
    return vals[..., keep] @ rho[keep]


def J_beta_arrays(logp: np.ndarray, reward: np.ndarray, ref_logp: np.ndarray, beta: float,
                  rho: np.ndarray) -> np.ndarray:
    """``J_β`` of policies given as log-prob arrays ``(..., P, T)``; returns shape ``(...)``."""
    k, er = _row_stats(logp, ref_logp, reward)
    return rho_weighted(er - beta * k, rho)


def J_beta(policy: Policy, reward, ref: Policy, beta: float, prompt_weights=None,
           *, per_prompt: bool = False):
    """``J_β(π; r)`` (scalar, ``ρ``-weighted) or its per-prompt values (P,).

    Parameters
    ----------
    policy : Policy
        The policy ``π``.
    reward : array_like
        The reward ``r``, shape ``(P, T)``.
    ref : Policy
        The reference ``π_ref``.
    beta : float
        The KL weight ``β > 0``.
    prompt_weights : array_like or None
        ``ρ``, shape ``(P,)``; ``None``: uniform.
    per_prompt : bool
        Return the per-prompt values instead of their ``ρ``-weighted mean.

    Returns
    -------
    float or np.ndarray
        ``E_x [E_π r − β KL(π ‖ π_ref)]``, or its terms, shape ``(P,)``; ``−∞`` where ``π`` is
        not absolutely continuous with respect to ``π_ref``.

    Examples
    --------
    By the reverse-KL identity the soft-optimal policy attains ``J_β(π*_r; r) = β log Z_r``:

    >>> import numpy as np
    >>> from genver.spaces import TreeSpace
    >>> from genver.policy import uniform_policy
    >>> sp = TreeSpace(P=1, V=2, H=2)
    >>> r, ref = np.array([[0.0, 1.0, 2.0, 3.0]]), uniform_policy(sp)
    >>> opt = soft_optimal(r, ref, beta=0.5)
    >>> round(J_beta(opt.policy, r, ref, 0.5), 10), round(0.5 * float(opt.log_Z[0]), 10)
    (2.3793917889, 2.3793917889)
    >>> J_beta(ref, r, ref, 0.5)  # the reference: E_ref r, no KL
    1.5
    """
    policy = check_policy("policy", policy)
    sp = policy.space
    ref = check_policy("ref", ref, sp)
    beta = check_beta(beta)
    r = sp.check_array("reward", reward)
    rho = check_prompt_weights(prompt_weights, sp.P)
    k, er = _row_stats(policy.logp, ref.logp, r)
    vals = er - beta * k
    return vals if per_prompt else float(rho_weighted(vals, rho))


def kl(p: Policy, q: Policy, prompt_weights=None, *, per_prompt: bool = False):
    """``E_x KL(p(·|x) ‖ q(·|x))`` (or per prompt), with ``+∞`` where ``p`` is not
    absolutely continuous with respect to ``q``.

    Parameters
    ----------
    p, q : Policy
        The two policies, on one space.
    prompt_weights : array_like or None
        ``ρ``, shape ``(P,)``; ``None``: uniform.
    per_prompt : bool
        Return the per-prompt values instead of their ``ρ``-weighted mean.

    Returns
    -------
    float or np.ndarray
        The KL divergence, ``≥ 0``, or its terms, shape ``(P,)``.
    """
    p = check_policy("p", p)
    q = check_policy("q", q, p.space)
    vals = kl_rows(p.logp, q.logp)
    if per_prompt:
        return vals
    rho = check_prompt_weights(prompt_weights, p.space.P)
    return float(rho_weighted(vals, rho))


def expected_reward(policy: Policy, reward, prompt_weights=None) -> float:
    """``E_x E_{y~π} r(x, y)``.

    Parameters
    ----------
    policy : Policy
        The policy ``π``.
    reward : array_like
        The reward ``r``, shape ``(P, T)``.
    prompt_weights : array_like or None
        ``ρ``, shape ``(P,)``; ``None``: uniform.

    Returns
    -------
    float
        The ``ρ``-weighted expected reward.
    """
    policy = check_policy("policy", policy)
    r = policy.space.check_array("reward", reward)
    rho = check_prompt_weights(prompt_weights, policy.space.P)
    return float(_row_stats(policy.logp, policy.logp, r)[1] @ rho)
