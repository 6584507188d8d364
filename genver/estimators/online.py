r"""On-policy estimators driven by a fitted reward ``r̂``: online DPO and policy gradient.

**Online DPO** (the paper's practical pipeline; ``docs/concepts.md``, *The two routes*). Round ``t``: draw
prompts ``x ~ ρ``, ``K`` completions from the current policy ``π_t``, and label a pair with
``r̂``:

* ``labels="top_bottom"`` (the paper): the completion with the highest ``r̂`` is preferred to
  the one with the lowest (lowest index among equals; rounds whose ``K`` draws all tie give a
  pair of equals, which carries no information);
* ``labels="bradley_terry"``: the first two draws, labelled ``y1 ≻ y2`` with probability
  ``σ(r̂(y1) − r̂(y2))`` — the data-processing version (H1): the labels carry no information
  about ``r*`` beyond ``r̂``, and as the pool grows the exact DPO solution tends to ``π*_{r̂}``
  (tabular class), never past it;
* ``labels="all_pairs"``: every one of the ``K(K−1)/2`` pairs among the ``K`` draws, each
  labelled like ``"bradley_terry"`` (independent labels): the same data-processing estimator,
  with ``K(K−1)/2`` pairs per prompt draw, so it approaches ``π*_{r̂}`` as ``K`` and the number
  of rounds grow.

Pairs accumulate in a pool (``accumulate=True``; kept as counts of unique triples) or are
replaced each round, and
``π_{t+1}`` is the exact DPO solution on the pool with reference ``π_ref``
(:func:`genver.estimators.dpo`). ``start`` is the sampling policy of round 0 (``π_ref`` by
default, or e.g. the offline-DPO policy). ``extra["kl_to_target"]`` records
``E_x KL(π_t ‖ π*_{r̂})`` after every round (exact).

**Policy gradient** against ``r̂`` with KL: maximise ``J_β(π_θ; r̂)`` by gradient ascent on
per-node logits (tabular) or on ``θ`` (log-linear). The gradient is
``∇J = E_x E_{y~π_θ} [(r̂(y) − β log π_θ(y)/π_ref(y)) ∇ log π_θ(y)]``; ``exact=True`` computes
it by enumeration, otherwise REINFORCE with the leave-one-out baseline estimates it from ``K``
samples per prompt: ``(1/K) Σ_k (R_k − (1/(K−1)) Σ_{j≠k} R_j) ∇ log π_θ(y_k)``.

**DPO 2×** (the "two epochs" control): with exact optimisation a second epoch over the same
pairs is the same data counted twice, i.e. DPO on doubled counts.
"""
from __future__ import annotations

import numpy as np

from .._validation import as_generator, check_beta, check_positive_int, check_prompt_weights
from ..policy import Policy, sequence_logp_from_cond
from ..preferences import PairCounts, Preferences, sample_completions
from ..softrl import kl_rows, soft_optimal
from .base import FitResult, as_counts, timed
from .mle import dpo
from .solvers import gradient_solver

__all__ = ["online_dpo", "policy_gradient", "dpo_2x"]


def dpo_2x(data, policy_class, ref: Policy, beta: float, *, l2: float | None = None) -> FitResult:
    """DPO run for two epochs, solved exactly: DPO on doubled pair counts.

    Parameters
    ----------
    data : Preferences or PairCounts
        The preference pairs (a stream, or its sufficient statistics).
    policy_class : PolicyClass
        The policy class ``Π`` (finite, soft-optimal, tabular or log-linear).
    ref : Policy
        The reference ``π_ref``.
    beta : float
        The KL weight ``β > 0``.
    l2 : float or None
        Ridge weight ``λ``; ``None``: the class family's default (:data:`DEFAULT_L2` for the
        tabular classes).

    Returns
    -------
    FitResult
        :func:`~genver.estimators.dpo`'s fit on the doubled counts, ``estimator = "dpo_2x"``.
    """
    c = as_counts(data)
    res = dpo(PairCounts(c.space, c.x, c.y_pos, c.y_neg, 2.0 * c.count), policy_class, ref, beta, l2=l2)
    res.estimator = "dpo_2x"
    return res


@timed
def online_dpo(reward_hat, policy_class, ref: Policy, beta: float, *, K: int = 25, rounds: int = 10,
               pairs_per_round: int = 64, labels: str = "top_bottom", accumulate: bool = True,
               start: Policy | None = None, l2: float | None = None, prompt_weights=None,
               random_state=None) -> FitResult:
    """Online DPO labelled by ``r̂`` (see the module docstring).

    Parameters
    ----------
    reward_hat : array_like
        The labelling reward ``r̂``, shape ``(P, T)``.
    policy_class : PolicyClass
        The policy class ``Π`` (finite, soft-optimal, tabular or log-linear).
    ref : Policy
        The reference ``π_ref``.
    beta : float
        The KL weight ``β > 0``.
    K : int
        Completions drawn per prompt and round, ``≥ 2``.
    rounds : int
        Number of rounds, ``≥ 1``.
    pairs_per_round : int
        Prompts drawn per round.
    labels : {"top_bottom", "bradley_terry", "all_pairs"}
        How the ``K`` draws become pairs.
    accumulate : bool
        Fit each round on all pairs so far (else on the round's only).
    start : Policy or None
        The first sampler; ``None``: ``ref``.
    l2 : float or None
        Ridge weight ``λ``; ``None``: the class family's default (:data:`DEFAULT_L2` for the
        tabular classes).
    prompt_weights : array_like or None
        ``ρ``, shape ``(P,)``; ``None``: uniform.
    random_state : None, int, SeedSequence or Generator
        Seed of the draws.

    Returns
    -------
    FitResult
        The last round's DPO fit; ``extra``: ``kl_to_target`` per round (to ``π*_{r̂}``),
        ``n_pairs``, ``K``, ``rounds``, ``labels``.
    """
    sp = ref.space
    r_hat = sp.check_array("reward_hat", reward_hat)
    beta = check_beta(beta)
    K = check_positive_int(K, "K", minimum=2)
    rounds = check_positive_int(rounds, "rounds")
    m = check_positive_int(pairs_per_round, "pairs_per_round")
    if labels not in ("top_bottom", "bradley_terry", "all_pairs"):
        raise ValueError(f"labels must be 'top_bottom', 'bradley_terry' or 'all_pairs', got {labels!r}")
    rho = check_prompt_weights(prompt_weights, sp.P)
    rng = as_generator(random_state)
    target = soft_optimal(r_hat, ref, beta).policy
    pi = ref if start is None else start
    if not isinstance(pi, Policy) or pi.space != sp:
        raise ValueError("start must be a Policy on the reference's space")
    pool = None
    history, res = [], None
    for _ in range(rounds):
        x = rng.choice(sp.P, size=m, p=rho).astype(np.int64)
        ys = np.stack([sample_completions(pi.probs, x, rng.random(m)) for _ in range(K)], axis=1)  # (m, K)
        rv = r_hat[x[:, None], ys]
        if labels == "top_bottom":
            rows = np.arange(m)
            y_pos, y_neg = ys[rows, np.argmax(rv, axis=1)], ys[rows, np.argmin(rv, axis=1)]
        else:
            if labels == "all_pairs":
                i, j = np.triu_indices(K, 1)
            else:
                i, j = np.array([0]), np.array([1])
            y1, y2 = ys[:, i].ravel(), ys[:, j].ravel()
            d = (rv[:, i] - rv[:, j]).ravel()
            x = np.repeat(x, i.size)
            u = rng.random(d.size)
            first = u < 1.0 / (1.0 + np.exp(-np.clip(d, -700, 700)))
            y_pos = np.where(first, y1, y2)
            y_neg = np.where(first, y2, y1)
        new = Preferences(sp, x, y_pos, y_neg).counts()
        pool = _merge_counts(pool, new) if (accumulate and pool is not None) else new
        res = dpo(pool, policy_class, ref, beta, l2=l2)
        pi = res.policy
        history.append(float(kl_rows(pi.logp, target.logp) @ rho))
    assert res is not None and pool is not None  # rounds >= 1
    res.estimator = "online_dpo"
    res.extra.update(kl_to_target=history, n_pairs=pool.n_pairs, K=K, rounds=rounds, labels=labels)
    return res


def _merge_counts(a: PairCounts, b: PairCounts) -> PairCounts:
    """Union of two sets of pair counts (unique sorted triples, counts added)."""
    T = a.space.T
    key = np.concatenate([(a.x * T + a.y_pos) * T + a.y_neg, (b.x * T + b.y_pos) * T + b.y_neg])
    uniq, inv = np.unique(key, return_inverse=True)
    cnt = np.bincount(inv, weights=np.concatenate([a.count, b.count]), minlength=uniq.size)
    rest = uniq // T
    return PairCounts(a.space, rest // T, rest % T, uniq % T, cnt)


@timed
def policy_gradient(reward_hat, policy_class, ref: Policy, beta: float, *, steps: int = 200, lr: float = 0.5,
                    K: int = 8, exact: bool = False, normalise: bool = False, prompt_weights=None,
                    random_state=None) -> FitResult:
    """KL-regularised policy gradient against ``r̂`` (tabular or log-linear class), starting
    at ``π_ref``; sampled REINFORCE-leave-one-out or the exact gradient. ``normalise=True``
    steps by ``lr·∇/max|∇|`` (each parameter moves by at most ``lr`` per step).

    Parameters
    ----------
    reward_hat : array_like
        The reward ``r̂``, shape ``(P, T)``.
    policy_class : TabularPolicyClass or LogLinearPolicyClass
        The class.
    ref : Policy
        The reference ``π_ref`` (full support).
    beta : float
        The KL weight ``β > 0``.
    steps : int
        Number of steps, ``≥ 1``.
    lr : float
        Step size ``> 0``.
    K : int
        Samples per prompt and step (REINFORCE leave-one-out), ``≥ 2``.
    exact : bool
        Use the exact gradient instead of samples.
    normalise : bool
        Steps ``lr·∇/max|∇|``.
    prompt_weights : array_like or None
        ``ρ``, shape ``(P,)``; ``None``: uniform.
    random_state : None, int, SeedSequence or Generator
        Seed of the samples.

    Returns
    -------
    FitResult
        The final policy and its ``J_β``, ``converged = False`` (a budget); ``extra``:
        ``gap_to_optimum``, ``gap_history``, ``kl_to_target``.
    """
    sp = ref.space
    r_hat = sp.check_array("reward_hat", reward_hat)
    beta = check_beta(beta)
    steps = check_positive_int(steps, "steps")
    lr = check_beta(lr, "lr")
    K = check_positive_int(K, "K", minimum=2)
    rho = check_prompt_weights(prompt_weights, sp.P)
    rng = as_generator(random_state)
    ref.require_full_support("ref")
    params, cond_of, grad_of, reports_params = gradient_solver(policy_class, ref)
    target = soft_optimal(r_hat, ref, beta)
    J_star = float(beta * target.log_Z @ rho)
    history = []
    for _ in range(steps):
        cond = cond_of(params)
        logp = sequence_logp_from_cond(sp, cond)
        ret = r_hat - beta * (logp - ref.logp)  # per-completion regularised return
        if exact:
            g = np.exp(logp) * ret * rho[:, None]
        else:
            x = np.repeat(np.arange(sp.P), K)
            y = sample_completions(np.exp(logp), x, rng.random(x.size)).reshape(sp.P, K)
            R = ret[np.arange(sp.P)[:, None], y]
            adv = R - (R.sum(axis=1, keepdims=True) - R) / (K - 1)
            g = np.zeros(sp.shape)
            np.add.at(g, (np.repeat(np.arange(sp.P), K), y.ravel()), (adv * rho[:, None] / K).ravel())
        step = grad_of(cond, g)
        if normalise:
            smax = float(np.abs(step).max())
            step = step / smax if smax > 0 else step
        params = params + lr * step
        history.append(J_star - float((np.exp(logp) * ret).sum(axis=1) @ rho))
    cond = cond_of(params)
    pol = Policy.from_cond(sp, cond)
    J = float((pol.probs * (r_hat - beta * (pol.logp - ref.logp))).sum(axis=1) @ rho)
    return FitResult("policy_gradient", J, policy=pol, reward=r_hat,
                     params=params if reports_params else None, converged=False, iterations=steps,
                     extra={"exact_gradient": exact, "gap_to_optimum": J_star - J, "gap_history": history,
                            "kl_to_target": float(kl_rows(pol.logp, target.policy.logp) @ rho)})
