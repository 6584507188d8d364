"""Slow, obviously-correct brute-force references for testing ``genver``.

Everything here is written directly from the mathematical definitions stated in the module
docstrings of ``genver.softrl``, ``genver.preferences`` and ``genver.estimators.mle`` with plain
Python loops,
``itertools.product`` over all completions and ``math.log`` / ``math.exp``.
Nothing is imported from ``genver``: these functions are meant to be an
independent check of the fast implementation, so clarity beats speed.
Use them only on tiny problems (T = V**H of a few hundred at most).

Conventions
-----------
* ``P`` prompts, vocabulary of ``V`` tokens, horizon ``H``, ``T = V**H``
  completions per prompt.
* A completion ``y = (a_1, ..., a_H)`` is indexed lexicographically with the
  FIRST token MOST significant: ``idx = sum_h a_h * V**(H-1-h)`` (h 0-based),
  i.e. the order of ``itertools.product(range(V), repeat=H)``.  Completions
  sharing a prefix of length h therefore form a contiguous block.
* Policies are sequence log-probabilities ``logp`` of shape ``(P, T)``; each
  row's ``exp`` sums to 1; entries may be ``-inf`` (zero probability).
  "In the support" always means ``logp > -inf`` (tested on the log, never on
  an ``exp`` that may underflow).
* Rewards ``r`` have shape ``(P, T)`` and are finite; ``beta > 0``.
* Prompt weights ``rho`` have shape ``(P,)`` and sum to 1; ``None`` means
  uniform ``1/P``.  Prompts with ``rho_x == 0`` are skipped entirely in every
  rho-weighted sum (so ``0 * inf`` never arises).
* ``0 * log 0 = 0``; ``KL(p || q) = +inf`` when some ``p > 0`` has ``q = 0``.
* Token-level conditionals at a prefix of probability zero are *defined* to
  be uniform, ``log(1/V)`` (see :func:`token_conditionals`).
"""

from __future__ import annotations

import itertools
import math
from collections import Counter

import numpy as np

NEG_INF = float("-inf")
POS_INF = float("inf")


# ---------------------------------------------------------------------------
# small helpers (pure Python, math only)
# ---------------------------------------------------------------------------

def _logsumexp_list(values):
    """log(sum_i exp(values[i])) with a max-shift; -inf if all are -inf."""
    values = [float(v) for v in values]
    m = NEG_INF
    for v in values:
        if v > m:
            m = v
    if m == NEG_INF:
        return NEG_INF
    total = 0.0
    for v in values:
        if v != NEG_INF:
            total += math.exp(v - m)
    return m + math.log(total)


def _check_shape(arr, P, T, name):
    arr = np.asarray(arr, dtype=float)
    if arr.shape != (P, T):
        raise ValueError(f"{name} has shape {arr.shape}, expected {(P, T)}")
    return arr


def _rho(rho, P):
    if rho is None:
        return [1.0 / P] * P
    rho = [float(v) for v in np.asarray(rho, dtype=float).reshape(-1)]
    if len(rho) != P:
        raise ValueError(f"rho has length {len(rho)}, expected {P}")
    return rho


def _infer_VH(T, V, H):
    if V ** H != T:
        raise ValueError(f"T={T} is not V**H = {V}**{H}")


# ---------------------------------------------------------------------------
# 1-2. completions and indexing
# ---------------------------------------------------------------------------

def all_completions(V, H):
    """All V**H completions as tuples, in index order (first token most significant)."""
    return list(itertools.product(range(V), repeat=H))


def encode(tokens, V):
    """Index of the completion ``tokens``: sum_h a_h * V**(H-1-h)."""
    tokens = tuple(int(a) for a in tokens)
    H = len(tokens)
    idx = 0
    for h, a in enumerate(tokens):
        if not 0 <= a < V:
            raise ValueError(f"token {a} out of range for V={V}")
        idx += a * V ** (H - 1 - h)
    return idx


def decode(idx, V, H):
    """Inverse of :func:`encode`: the tuple of H tokens with index ``idx``."""
    idx = int(idx)
    if not 0 <= idx < V ** H:
        raise ValueError(f"index {idx} out of range for V={V}, H={H}")
    tokens = []
    for h in range(H):
        place = V ** (H - 1 - h)
        tokens.append(idx // place)
        idx = idx % place
    return tuple(tokens)


def _all_prefixes(V, H, length):
    return list(itertools.product(range(V), repeat=length))


# ---------------------------------------------------------------------------
# 3-5. prefixes and token-level conditionals
# ---------------------------------------------------------------------------

def prefix_logp(logp, V, H, x, prefix):
    """log sum_{y starting with prefix} exp(logp[x, y]); -inf if that mass is 0.

    Brute force: scans every completion and keeps those whose first
    ``len(prefix)`` tokens equal ``prefix``.
    """
    logp = np.asarray(logp, dtype=float)
    prefix = tuple(int(a) for a in prefix)
    if len(prefix) > H:
        raise ValueError("prefix longer than the horizon")
    k = len(prefix)
    terms = []
    for y in all_completions(V, H):
        if y[:k] == prefix:
            terms.append(logp[x, encode(y, V)])
    return _logsumexp_list(terms)


def token_conditionals(logp, V, H):
    """Token-level conditionals log pi(a | x, prefix) of a sequence policy.

    Returns a dict keyed by ``(x, prefix_tuple)`` for every prompt and every
    prefix of length 0..H-1, valued by a length-V numpy array.

    * If the prefix has positive probability, the conditional is
      ``prefix_logp(prefix + (a,)) - prefix_logp(prefix)``; children of
      probability zero get ``-inf``.
    * If the prefix itself has probability zero the conditional is
      undetermined; it is DEFINED here to be uniform, ``log(1/V)`` for every
      token.  (With this convention the product of conditionals still gives
      probability zero to every completion through that prefix, because the
      step at which the path first leaves the support contributes ``-inf``.)
    """
    logp = np.asarray(logp, dtype=float)
    P, T = logp.shape
    _infer_VH(T, V, H)
    cond = {}
    for x in range(P):
        for h in range(H):
            for prefix in _all_prefixes(V, H, h):
                parent = prefix_logp(logp, V, H, x, prefix)
                out = np.empty(V, dtype=float)
                if parent == NEG_INF:
                    for a in range(V):
                        out[a] = math.log(1.0 / V)
                else:
                    for a in range(V):
                        child = prefix_logp(logp, V, H, x, prefix + (a,))
                        out[a] = NEG_INF if child == NEG_INF else child - parent
                cond[(x, prefix)] = out
    return cond


def sequence_logp_from_conditionals(cond, P, V, H):
    """log pi(y|x) = sum_h log pi(a_h | x, a_<h), shape (P, T)."""
    T = V ** H
    out = np.empty((P, T), dtype=float)
    for x in range(P):
        for y in all_completions(V, H):
            total = 0.0
            for h in range(H):
                total += float(cond[(x, y[:h])][y[h]])
            out[x, encode(y, V)] = total
    return out


# ---------------------------------------------------------------------------
# 6. soft-optimal policy
# ---------------------------------------------------------------------------

def soft_optimal(r, ref_logp, beta, V, H):
    """Soft-optimal policy of reward ``r`` by explicit backward induction.

    V_H(x, y) = r(x, y); Q_h(s, a) = V_{h+1}(s.a);
    V_h(s) = beta * log sum_a pi_ref(a|s) exp(Q_h(s, a)/beta);
    pi*(a|s) = pi_ref(a|s) exp((Q_h(s, a) - V_h(s))/beta),
    with pi_ref(a|s) from ``token_conditionals(ref_logp)`` (so uniform at
    prefixes that pi_ref never reaches).  Terms with pi_ref(a|s) = 0 contribute
    0 to the sum (and get log pi*(a|s) = -inf); if every term is zero,
    V_h(s) = -inf and pi*(.|s) is taken uniform (cannot happen for finite r
    with the uniform convention, but handled).

    Returns a dict with keys
      'V'    : {(x, prefix): float} for prefixes of length 0..H (V at length H is r)
      'Q'    : {(x, prefix): array(V)} for prefixes of length 0..H-1
      'cond' : {(x, prefix): array(V)} of log pi*(a | x, prefix)
      'logp' : (P, T) sequence log-probs of pi*
      'log_Z': (P,) array, V_0(x) / beta
    """
    if not beta > 0:
        raise ValueError("beta must be > 0")
    beta = float(beta)
    r = np.asarray(r, dtype=float)
    ref_logp = np.asarray(ref_logp, dtype=float)
    P, T = r.shape
    _infer_VH(T, V, H)
    _check_shape(ref_logp, P, T, "ref_logp")
    ref_cond = token_conditionals(ref_logp, V, H)

    Vd, Qd, cond = {}, {}, {}
    for x in range(P):
        for y in all_completions(V, H):
            Vd[(x, y)] = float(r[x, encode(y, V)])
        for h in range(H - 1, -1, -1):
            for s in _all_prefixes(V, H, h):
                q = np.empty(V, dtype=float)
                for a in range(V):
                    q[a] = Vd[(x, s + (a,))]
                Qd[(x, s)] = q
                lref = ref_cond[(x, s)]
                terms = []
                for a in range(V):
                    if lref[a] == NEG_INF or q[a] == NEG_INF:
                        continue  # contributes exactly 0 to the sum
                    terms.append(float(lref[a]) + float(q[a]) / beta)
                v = beta * _logsumexp_list(terms)
                Vd[(x, s)] = v
                c = np.empty(V, dtype=float)
                for a in range(V):
                    if v == NEG_INF:
                        c[a] = math.log(1.0 / V)
                    elif lref[a] == NEG_INF or q[a] == NEG_INF:
                        c[a] = NEG_INF
                    else:
                        c[a] = float(lref[a]) + (float(q[a]) - v) / beta
                cond[(x, s)] = c
    logp = sequence_logp_from_conditionals(cond, P, V, H)
    log_Z = np.array([Vd[(x, ())] / beta for x in range(P)], dtype=float)
    return {"V": Vd, "Q": Qd, "cond": cond, "logp": logp, "log_Z": log_Z}


def soft_optimal_closed_form(r, ref_logp, beta):
    """log pi*(y|x) = log pi_ref(y|x) + r(x,y)/beta - log Z(x), loops + max-shift."""
    if not beta > 0:
        raise ValueError("beta must be > 0")
    beta = float(beta)
    r = np.asarray(r, dtype=float)
    ref_logp = np.asarray(ref_logp, dtype=float)
    P, T = r.shape
    _check_shape(ref_logp, P, T, "ref_logp")
    out = np.empty((P, T), dtype=float)
    for x in range(P):
        tilted = []
        for y in range(T):
            lr = float(ref_logp[x, y])
            tilted.append(NEG_INF if lr == NEG_INF else lr + float(r[x, y]) / beta)
        log_z = _logsumexp_list(tilted)
        for y in range(T):
            out[x, y] = NEG_INF if tilted[y] == NEG_INF else tilted[y] - log_z
    return out


# ---------------------------------------------------------------------------
# 7-8. KL and the regularised objective
# ---------------------------------------------------------------------------

def kl_per_prompt(logp_p, logp_q, rho=None):
    """KL(p(.|x) || q(.|x)) for each prompt, shape (P,); +inf on support mismatch.

    ``rho`` is accepted for call-compatibility with :func:`kl` and ignored.
    """
    logp_p = np.asarray(logp_p, dtype=float)
    logp_q = np.asarray(logp_q, dtype=float)
    P, T = logp_p.shape
    _check_shape(logp_q, P, T, "logp_q")
    out = np.empty(P, dtype=float)
    for x in range(P):
        total = 0.0
        infinite = False
        for y in range(T):
            lp = float(logp_p[x, y])
            if lp == NEG_INF:
                continue  # 0 * log 0 = 0
            lq = float(logp_q[x, y])
            if lq == NEG_INF:
                infinite = True
                break
            total += math.exp(lp) * (lp - lq)
        out[x] = POS_INF if infinite else total
    return out


def kl(logp_p, logp_q, rho=None):
    """sum_x rho_x KL(p(.|x) || q(.|x)); prompts with rho_x = 0 are skipped."""
    per = kl_per_prompt(logp_p, logp_q)
    w = _rho(rho, per.shape[0])
    total = 0.0
    for x in range(per.shape[0]):
        if w[x] == 0.0:
            continue
        if per[x] == POS_INF:
            return POS_INF
        total += w[x] * float(per[x])
    return total


def J_beta_per_prompt(logp, r, ref_logp, beta, rho=None):
    """E_{y~pi(.|x)} r(x,y) - beta KL(pi(.|x) || pi_ref(.|x)), shape (P,); -inf if KL = inf.

    ``rho`` is accepted for call-compatibility with :func:`J_beta` and ignored.
    """
    if not beta > 0:
        raise ValueError("beta must be > 0")
    logp = np.asarray(logp, dtype=float)
    r = np.asarray(r, dtype=float)
    P, T = logp.shape
    _check_shape(r, P, T, "r")
    kls = kl_per_prompt(logp, ref_logp)
    out = np.empty(P, dtype=float)
    for x in range(P):
        if kls[x] == POS_INF:
            out[x] = NEG_INF
            continue
        expected = 0.0
        for y in range(T):
            lp = float(logp[x, y])
            if lp != NEG_INF:
                expected += math.exp(lp) * float(r[x, y])
        out[x] = expected - float(beta) * float(kls[x])
    return out


def J_beta(logp, r, ref_logp, beta, rho=None):
    """sum_x rho_x [E_pi r - beta KL(pi || pi_ref)]; -inf if a (weighted) KL is infinite."""
    per = J_beta_per_prompt(logp, r, ref_logp, beta)
    w = _rho(rho, per.shape[0])
    total = 0.0
    for x in range(per.shape[0]):
        if w[x] == 0.0:
            continue
        if per[x] == NEG_INF:
            return NEG_INF
        total += w[x] * float(per[x])
    return total


# ---------------------------------------------------------------------------
# 9-14. Bradley-Terry quantities
# ---------------------------------------------------------------------------

def log_sigmoid(z):
    """log sigma(z) = -log(1 + exp(-z)), stable for large |z| (math only)."""
    z = float(z)
    if z >= 0:
        return -math.log1p(math.exp(-z))
    return z - math.log1p(math.exp(z))


def _sigmoid(z):
    return math.exp(log_sigmoid(z))


def bt_loglik(r, pairs):
    """sum_i log sigma(r[x_i, y+_i] - r[x_i, y-_i]) for pairs rows (x, y_pos, y_neg)."""
    r = np.asarray(r, dtype=float)
    pairs = np.asarray(pairs, dtype=np.int64).reshape(-1, 3)
    terms = []
    for i in range(pairs.shape[0]):
        x, yp, yn = (int(v) for v in pairs[i])
        terms.append(log_sigmoid(float(r[x, yp]) - float(r[x, yn])))
    return math.fsum(terms)


def class_bt_loglik(scores, pairs):
    """Bradley-Terry log-likelihood of each of K reward tables, scores shape (K, P, T) -> (K,)."""
    scores = np.asarray(scores, dtype=float)
    out = np.empty(scores.shape[0], dtype=float)
    for k in range(scores.shape[0]):
        out[k] = bt_loglik(scores[k], pairs)
    return out


def win_rate(logp, ref_logp, r, rho=None):
    """sum_x rho_x sum_{y, y'} pi(y|x) pi_ref(y'|x) sigma(r(x,y) - r(x,y'))."""
    logp = np.asarray(logp, dtype=float)
    ref_logp = np.asarray(ref_logp, dtype=float)
    r = np.asarray(r, dtype=float)
    P, T = logp.shape
    _check_shape(ref_logp, P, T, "ref_logp")
    _check_shape(r, P, T, "r")
    w = _rho(rho, P)
    total = 0.0
    for x in range(P):
        if w[x] == 0.0:
            continue
        inner = 0.0
        for y in range(T):
            if logp[x, y] == NEG_INF:
                continue
            for y2 in range(T):
                if ref_logp[x, y2] == NEG_INF:
                    continue
                prob = math.exp(float(logp[x, y]) + float(ref_logp[x, y2]))
                inner += prob * _sigmoid(float(r[x, y]) - float(r[x, y2]))
        total += w[x] * inner
    return total


def expected_bt_loglik(r_model, r_true, mu_logp, rho=None):
    """Expected per-pair Bradley-Terry log-likelihood of ``r_model`` under labels from ``r_true``.

    sum_x rho_x sum_{y1, y2} mu(y1|x) mu(y2|x) [ sigma(r*_1 - r*_2) log sigma(r_1 - r_2)
                                                + sigma(r*_2 - r*_1) log sigma(r_2 - r_1) ]
    over ordered pairs (y1 = y2 included, where the bracket is -log 2).
    """
    r_model = np.asarray(r_model, dtype=float)
    r_true = np.asarray(r_true, dtype=float)
    mu_logp = np.asarray(mu_logp, dtype=float)
    P, T = mu_logp.shape
    _check_shape(r_model, P, T, "r_model")
    _check_shape(r_true, P, T, "r_true")
    w = _rho(rho, P)
    total = 0.0
    for x in range(P):
        if w[x] == 0.0:
            continue
        inner = 0.0
        for y1 in range(T):
            if mu_logp[x, y1] == NEG_INF:
                continue
            for y2 in range(T):
                if mu_logp[x, y2] == NEG_INF:
                    continue
                prob = math.exp(float(mu_logp[x, y1]) + float(mu_logp[x, y2]))
                d_true = float(r_true[x, y1]) - float(r_true[x, y2])
                d_model = float(r_model[x, y1]) - float(r_model[x, y2])
                bracket = (_sigmoid(d_true) * log_sigmoid(d_model)
                           + _sigmoid(-d_true) * log_sigmoid(-d_model))
                inner += prob * bracket
        total += w[x] * inner
    return total


def pair_counts(pairs):
    """Counter {(x, y_pos, y_neg): multiplicity} of the preference pairs (plain ints as keys)."""
    pairs = np.asarray(pairs, dtype=np.int64).reshape(-1, 3)
    counts = Counter()
    for i in range(pairs.shape[0]):
        counts[(int(pairs[i, 0]), int(pairs[i, 1]), int(pairs[i, 2]))] += 1
    return counts


# ---------------------------------------------------------------------------
# 15. telescoped local reward
# ---------------------------------------------------------------------------

def telescoped_local_reward(cond_pi, cond_ref, beta, V, H, P):
    """sum_h beta * (log pi(a_h|s_h) - log pi_ref(a_h|s_h)) for every (x, y), shape (P, T).

    ``cond_pi`` / ``cond_ref`` are conditional dicts as returned by
    :func:`token_conditionals` or ``soft_optimal(...)['cond']``.  Plain float
    arithmetic: a step where both conditionals are -inf (0/0, the log-ratio is
    undefined) makes the entry NaN; -inf/+inf appear where only one side is
    zero.  For pi = pi*_r the identity is r(x,y) - V_0(x) on pi_ref's support.
    """
    beta = float(beta)
    T = V ** H
    out = np.empty((P, T), dtype=float)
    for x in range(P):
        for y in all_completions(V, H):
            total = 0.0
            for h in range(H):
                s = y[:h]
                a = y[h]
                total += beta * (float(cond_pi[(x, s)][a]) - float(cond_ref[(x, s)][a]))
            out[x, encode(y, V)] = total
    return out


# ===========================================================================
# 16-20. imitation (SFT, MaxEnt IRL) and best-of-N: brute-force references
#        (written for genver.estimators.imitation / best_of_n; plain Python,
#        numpy and scipy only)
# ===========================================================================
#
# Demonstrations are an (N, 2) integer array of rows (x, y).  All objectives
# are written term by term from their definitions.

def demo_loglik(logp, demos):
    """sum_i log pi(y_i|x_i) for one policy logp (P, T); -inf if a demo has pi = 0."""
    logp = np.asarray(logp, dtype=float)
    demos = np.asarray(demos, dtype=np.int64).reshape(-1, 2)
    terms = []
    for i in range(demos.shape[0]):
        v = float(logp[int(demos[i, 0]), int(demos[i, 1])])
        if v == NEG_INF:
            return NEG_INF
        terms.append(v)
    return math.fsum(terms)


def sft_finite(logp_members, demos):
    """SFT over K explicit policies (K, P, T): (log-likelihood of every member (K,),
    the maximum, and the sorted list of all maximisers within 1e-12 relative)."""
    logp_members = np.asarray(logp_members, dtype=float)
    ll = np.array([demo_loglik(logp_members[k], demos) for k in range(logp_members.shape[0])])
    best = max(ll)
    if best == NEG_INF:
        return ll, best, list(range(len(ll)))
    tol = 1e-12 * max(1.0, abs(best))
    return ll, best, [k for k in range(len(ll)) if ll[k] >= best - tol]


def maxent_irl_loglik(r, ref_logp, beta, demos):
    """sum_i log pi*_r(y_i|x_i) with log pi*_r(y|x) = log pi_ref(y|x) + r(x,y)/beta - log Z_r(x),
    Z_r(x) = sum_y pi_ref(y|x) exp(r(x,y)/beta)."""
    r = np.asarray(r, dtype=float)
    ref_logp = np.asarray(ref_logp, dtype=float)
    demos = np.asarray(demos, dtype=np.int64).reshape(-1, 2)
    P, T = ref_logp.shape
    beta = float(beta)
    logZ = [_logsumexp_list([float(ref_logp[x, y]) + float(r[x, y]) / beta for y in range(T)])
            for x in range(P)]
    terms = []
    for i in range(demos.shape[0]):
        x, y = int(demos[i, 0]), int(demos[i, 1])
        v = float(ref_logp[x, y]) + float(r[x, y]) / beta - logZ[x]
        if v == NEG_INF:
            return NEG_INF
        terms.append(v)
    return math.fsum(terms)


def centred_penalty(r, l2):
    """(l2/2) sum_x sum_y (r(x,y) - mean_y' r(x,y'))^2."""
    r = np.asarray(r, dtype=float)
    total = 0.0
    for x in range(r.shape[0]):
        mean = math.fsum(float(v) for v in r[x]) / r.shape[1]
        total += math.fsum((float(v) - mean) ** 2 for v in r[x])
    return 0.5 * float(l2) * total


def tabular_penalised_sft(ref_logp, beta, demos, l2):
    """Penalised tabular SFT by generic numerical optimisation (scipy BFGS, finite-difference
    gradients), parametrised differently from genver: per prompt, T - 1 free logits with the
    last completion's logit fixed at 0, pi = softmax(log pi_ref + z).  Maximises
    sum_i log pi(y_i|x_i) - (l2/2) sum (r_pi - mean r_pi)^2 with r_pi = beta log pi/pi_ref.
    Returns (logp (P, T), objective)."""
    from scipy import optimize

    ref_logp = np.asarray(ref_logp, dtype=float)
    P, T = ref_logp.shape
    beta = float(beta)

    def unpack(v):
        z = np.concatenate([np.asarray(v).reshape(P, T - 1), np.zeros((P, 1))], axis=1)
        s = ref_logp + z
        m = s.max(axis=1, keepdims=True)
        return s - (m + np.log(np.exp(s - m).sum(axis=1, keepdims=True)))

    def objective(v):
        logp = unpack(v)
        return demo_loglik(logp, demos) - centred_penalty(beta * (logp - ref_logp), l2)

    res = optimize.minimize(lambda v: -objective(v), np.zeros(P * (T - 1)), method="BFGS",
                            options={"gtol": 1e-10, "maxiter": 20000})
    return unpack(res.x), objective(res.x)


def maxent_irl_linear(phi, ref_logp, beta, demos, l2):
    """MaxEnt IRL over r_w = w.phi (phi (P, T, d)) with ridge (l2/2)|w|^2, by scipy BFGS on
    the definition (finite-difference gradients).  Returns (w, objective)."""
    from scipy import optimize

    phi = np.asarray(phi, dtype=float)
    d = phi.shape[2]

    def objective(w):
        return maxent_irl_loglik(phi @ w, ref_logp, beta, demos) - 0.5 * float(l2) * float(np.dot(w, w))

    res = optimize.minimize(lambda w: -objective(w), np.zeros(d), method="BFGS",
                            options={"gtol": 1e-10, "maxiter": 20000})
    return res.x, objective(res.x)


def best_of_n(base_probs, r, N):
    """Exact best-of-N distribution (P, T) by enumerating all T**N ordered draws per prompt.

    Each tuple (y_1..y_N) has probability prod_k base(y_k|x); the returned draw is uniform
    over the POSITIONS k whose reward is maximal, so completion y receives
    prob * (#positions holding y among the maximal ones) / (#maximal positions)."""
    base_probs = np.asarray(base_probs, dtype=float)
    r = np.asarray(r, dtype=float)
    P, T = base_probs.shape
    out = np.zeros((P, T), dtype=float)
    for x in range(P):
        for draws in itertools.product(range(T), repeat=int(N)):
            prob = 1.0
            for y in draws:
                prob *= float(base_probs[x, y])
            if prob == 0.0:
                continue
            best = max(float(r[x, y]) for y in draws)
            winners = [y for y in draws if float(r[x, y]) == best]
            for y in winners:
                out[x, y] += prob / len(winners)
    return out


# ---------------------------------------------------------------------------
# Tabular Bradley-Terry fits by brute dense Newton (all P*T coordinates)
# ---------------------------------------------------------------------------

def laplacian_ridge_matrix(n, a, b, w, lam):
    """Dense (n, n) matrix L_w + lam*I, L_w = sum_k w_k (e_{a_k} - e_{b_k})(e_{a_k} - e_{b_k})^T,
    by a loop over the pairs (a self-pair a_k = b_k adds nothing)."""
    A = np.zeros((int(n), int(n)))
    for i in range(int(n)):
        A[i, i] = float(lam)
    for ak, bk, wk in zip(a, b, w):
        ak, bk, wk = int(ak), int(bk), float(wk)
        A[ak, ak] += wk
        A[bk, bk] += wk
        A[ak, bk] -= wk
        A[bk, ak] -= wk
    return A


def tabular_reward_mle_dense(P, T, pairs, counts, l2, max_iter=200):
    """argmax_r sum_k c_k log sigma(r[x_k, y+_k] - r[x_k, y-_k]) - (l2/2) sum_x sum_y (r[x,y] - rbar_x)^2,
    returned centred (rbar_x = 0), shape (P, T).

    Brute dense Newton on all P*T coordinates (untouched ones included): gradient by a loop
    over the pairs; the negated Hessian is L_w + l2*C (C the per-prompt centring), equal to the
    dense matrix L_w + l2*I on the per-prompt-mean-zero vectors where the iterates live
    (w_k = c_k sigma(d_k) sigma(-d_k)); steps damped by backtracking on the objective while it
    can judge them, full steps after; stops when the step is below 1e-14 (1 + max|r|)."""
    pairs = np.asarray(pairs, dtype=np.int64).reshape(-1, 3)
    counts = [float(c) for c in counts]
    n = int(P) * int(T)
    a = [int(x) * int(T) + int(yp) for x, yp, _ in pairs]
    b = [int(x) * int(T) + int(yn) for x, _, yn in pairs]

    def centred(r):
        rr = r.reshape(P, T)
        return (rr - rr.mean(axis=1, keepdims=True)).ravel()

    def objective(r):
        rc = centred(r)
        ll = math.fsum(c * log_sigmoid(r[i] - r[j]) for i, j, c in zip(a, b, counts))
        return ll - 0.5 * float(l2) * math.fsum(float(v) * float(v) for v in rc)

    def gradient(r):
        g = -float(l2) * centred(r)
        for i, j, c in zip(a, b, counts):
            s = c * _sigmoid(-(r[i] - r[j]))
            g[i] += s
            g[j] -= s
        return g

    r = np.zeros(n)
    for _ in range(max_iter):
        g = gradient(r)
        w = [c * _sigmoid(r[i] - r[j]) * _sigmoid(-(r[i] - r[j])) for i, j, c in zip(a, b, counts)]
        d = centred(np.linalg.solve(laplacian_ridge_matrix(n, a, b, w, l2), g))
        if np.abs(d).max(initial=0.0) <= 1e-14 * (1.0 + np.abs(r).max(initial=0.0)):
            break
        f0, dec, t = objective(r), float(g @ d), 1.0
        if dec > 1e-10 * (1.0 + abs(f0)):
            while objective(r + t * d) < f0 + 1e-4 * t * dec:
                t *= 0.5
        r = r + t * d
    return centred(r).reshape(P, T)


def censored_normal_regression(x, y, kind, sigma=None):
    """Maximum-likelihood ``(alpha, a, sigma)`` of ``y = alpha + a*x + sigma*z``, ``z ~ N(0,1)``,
    written straight from the likelihood: an exact point (kind 0) contributes the normal
    density of its residual, a right-censored one (kind 1, ``y`` its lower bound) the
    probability ``P(Y > y) = Φ((mu - y)/sigma)``, a left-censored one (kind 2, ``y`` its upper
    bound) ``P(Y <= y) = Φ((y - mu)/sigma)``, with ``Φ(t) = erfc(-t/√2)/2``. Nelder-Mead from
    the exact points' least-squares line, over ``(alpha, a, log sigma)``, or over ``(alpha, a)``
    with ``sigma`` held fixed when given."""
    from scipy import optimize

    x = [float(v) for v in x]
    y = [float(v) for v in y]
    kind = [int(k) for k in kind]

    def log_phi_cdf(t):
        return math.log(max(0.5 * math.erfc(-t / math.sqrt(2.0)), 1e-300))

    def nll(params):
        alpha, a = params[0], params[1]
        s = sigma if sigma is not None else math.exp(params[2])
        total = 0.0
        for xi, yi, ki in zip(x, y, kind):
            mu = alpha + a * xi
            if ki == 0:
                total += math.log(s) + 0.5 * math.log(2 * math.pi) + 0.5 * ((yi - mu) / s) ** 2
            elif ki == 1:
                total -= log_phi_cdf((mu - yi) / s)
            else:
                total -= log_phi_cdf((yi - mu) / s)
        return total

    ex = [i for i, k in enumerate(kind) if k == 0]
    xm = sum(x[i] for i in ex) / len(ex)
    ym = sum(y[i] for i in ex) / len(ex)
    a0 = sum((x[i] - xm) * (y[i] - ym) for i in ex) / sum((x[i] - xm) ** 2 for i in ex)
    start = [ym - a0 * xm, a0] + ([] if sigma is not None else [0.0])
    res = optimize.minimize(nll, start, method="Nelder-Mead",
                            options={"xatol": 1e-11, "fatol": 1e-13, "maxiter": 40000, "maxfev": 40000})
    s = sigma if sigma is not None else math.exp(res.x[2])
    return float(res.x[0]), float(res.x[1]), float(s)


# ----------------------------------------------------------- position-factorised (additive) worlds
def factorised_soft_optimal(ref_pos_logp, w, beta):
    """Closed form for an additive reward ``r(y) = sum_h w[h, a_h]`` and a reference that
    picks token a at position h with probability ``exp(ref_pos_logp[h, a])`` whatever the
    prefix: pi* factorises, ``pi*_h(a) = pi_ref,h(a) exp(w[h, a]/beta) / z_h`` and
    ``log Z = sum_h log z_h``.  Returns (log pi*_h as (H, V), log Z)."""
    ref_pos_logp = np.asarray(ref_pos_logp, dtype=float)
    w = np.asarray(w, dtype=float)
    out = np.empty_like(w)
    log_Z = 0.0
    for h in range(w.shape[0]):
        terms = [float(ref_pos_logp[h, a]) + float(w[h, a]) / beta for a in range(w.shape[1])]
        lz = _logsumexp_list(terms)
        log_Z += lz
        for a in range(w.shape[1]):
            out[h, a] = terms[a] - lz
    return out, log_Z


def factorised_kl(logp_pos, logq_pos):
    """KL between two position-factorised distributions: the sum of the per-position KLs."""
    total = 0.0
    for h in range(len(logp_pos)):
        for a in range(len(logp_pos[h])):
            p = math.exp(float(logp_pos[h][a]))
            if p > 0.0:
                total += p * (float(logp_pos[h][a]) - float(logq_pos[h][a]))
    return total


def factorised_count_pmf(logp_pos, token):
    """Distribution of the number of positions holding ``token`` under a position-factorised
    policy (Poisson-binomial, by dynamic programming over positions)."""
    pmf = [1.0]
    for h in range(len(logp_pos)):
        q = math.exp(float(logp_pos[h][token]))
        new = [0.0] * (len(pmf) + 1)
        for k, m in enumerate(pmf):
            new[k] += m * (1.0 - q)
            new[k + 1] += m * q
        pmf = new
    return np.array(pmf)


def bt_supremum_by_vanishing_ridge(pairs, n_nodes, eps=1e-9):
    """``sup_f sum_i c_i log sigma(f[a_i] - f[b_i])`` over ``f in R^n_nodes`` for one prompt,
    approached from below: maximise the objective minus ``eps/2 |f|^2`` (which has a unique
    finite maximiser) by BFGS and return the *unpenalised* objective there. ``pairs`` is a list
    of ``(a, b, c)``: ``a`` beat ``b`` with count ``c``. As ``eps -> 0`` the value tends to the
    supremum (from below, within O(eps log^2(1/eps)) per pair)."""
    from scipy.optimize import minimize

    def ll(f):
        return sum(c * -math.log1p(math.exp(-(f[a] - f[b]))) if f[a] - f[b] > -30 else c * (f[a] - f[b])
                   for a, b, c in pairs)

    def neg(f):
        g = np.zeros(n_nodes)
        for a, b, c in pairs:
            s = c / (1.0 + math.exp(min(f[a] - f[b], 700.0)))  # c * sigma(-(f_a - f_b))
            g[a] += s
            g[b] -= s
        return -(ll(f) - 0.5 * eps * float(f @ f)), -(g - eps * f)

    res = minimize(neg, np.zeros(n_nodes), jac=True, method="BFGS", options={"gtol": 1e-12, "maxiter": 10000})
    return ll(res.x)


def long_linear_log_partition(ref_logq, w, beta):
    """``log Z(x) = log sum_y pi_ref(y|x) exp(r*(y)/beta)`` for the position-wise reference
    ``pi_ref(y|x) = prod_h q_{x,h}(a_h)`` (``ref_logq`` (P, H, V)) and
    ``r*(y) = sum_v w_v #{h: a_h = v} + w_V [#{h: a_h = 0} odd] + w_{V+1} [a_1 = a_H]``,
    by enumerating every completion. Returns (P,)."""
    P, H, V = ref_logq.shape
    out = np.empty(P)
    for x in range(P):
        terms = []
        for y in itertools.product(range(V), repeat=H):
            counts = [sum(1 for a in y if a == v) for v in range(V)]
            r = sum(w[v] * counts[v] for v in range(V)) + w[V] * (counts[0] % 2) + w[V + 1] * (y[0] == y[-1])
            terms.append(sum(ref_logq[x, h, a] for h, a in enumerate(y)) + r / beta)
        m = max(terms)
        out[x] = m + math.log(sum(math.exp(t - m) for t in terms))
    return out
