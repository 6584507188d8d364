r"""Every numba kernel of genver (private).

Rules (see ``design.md``): kernels take preallocated ``out`` arrays, read no globals except
the compile-time flag set below, draw no random numbers, and parallelise only over
independent items (``prange`` over class members or prompts, each writing its own
``out[k]`` with a serial inner reduction), so results are bitwise identical for any number
of threads. Wrappers in the public modules validate, cast to C-contiguous float64/int64 and
allocate.

``FASTMATH`` deliberately excludes ``nnan`` and ``ninf``: a guarded log-sum-exp over all
``-inf`` entries must stay ``-inf``, not become NaN.

Math
----
* ``log σ(z) = −log(1 + e^{−z})``, evaluated as ``−log1p(e^{−z})`` for ``z ≥ 0`` and
  ``z − log1p(e^{z})`` for ``z < 0`` (no overflow for any finite ``z``).
* Backward induction on the prefix tree (token-level soft RL), in units of β:
  ``v_H = r/β``; ``v_h(s) = log Σ_a π_ref(a|s) e^{v_{h+1}(s·a)}``;
  ``log π*(a|s) = log π_ref(a|s) + v_{h+1}(s·a) − v_h(s)``; ``V_h = β v_h``.
* Bradley–Terry log-likelihood of the scores ``f_k`` of class member ``k`` on pair counts
  ``(i⁺_j, i⁻_j, c_j)``: ``ℓ_k = Σ_j c_j log σ(s·(f_k[i⁺_j] − f_k[i⁻_j]) + o_j)``; DPO uses
  ``f_k = log π_k``, ``s = β`` and ``o_j = −β(log π_ref[i⁺_j] − log π_ref[i⁻_j])``.
"""
from __future__ import annotations

import math
import os

import numba
import numpy as np
from numba import njit, prange

# Threading layer: numba's OpenMP workers spin after every parallel region and starve the
# BLAS calls inside scipy's L-BFGS on a small machine (one gap_verifier unit: 10 s with
# "omp", 0.17 s with "workqueue", measured on 2 cores). The workqueue layer does not spin;
# results are identical (every prange item is computed serially). An explicit
# NUMBA_THREADING_LAYER in the environment wins.
if "NUMBA_THREADING_LAYER" not in os.environ:
    numba.config.THREADING_LAYER = "workqueue"

#: The package's one fastmath flag set (no ``nnan``/``ninf``).
FASTMATH = {"nsz", "arcp", "contract", "afn", "reassoc"}


@njit(cache=True, fastmath=FASTMATH, inline="always")
def log_sigmoid(z):
    if z >= 0.0:
        return -math.log1p(math.exp(-z))
    return z - math.log1p(math.exp(z))


@njit(cache=True, fastmath=FASTMATH, inline="always")
def sigmoid(z):
    if z >= 0.0:
        return 1.0 / (1.0 + math.exp(-z))
    e = math.exp(z)
    return e / (1.0 + e)


@njit(cache=True, fastmath=FASTMATH, parallel=True)
def backward_induction(reward, ref_cond, beta, V, H, values_out, logpi_out, logp_out):
    """reward (P,T); ref_cond (P,n_int,V) log π_ref(a|s); values_out (P,n_int) = V_h(s);
    logpi_out (P,n_int,V) = log π*(a|s); logp_out (P,T) = Σ_h log π*(a_h|s_h) by a forward
    pass. Nodes are flat, depth by depth."""
    P, T = reward.shape
    for p in prange(P):
        v = np.empty(T)
        for i in range(T):
            v[i] = reward[p, i] / beta
        n = T // V
        off = (n - 1) // (V - 1)
        for _ in range(H):  # depth h = H-1 .. 0; n = V**h, off = offset(h)
            for j in range(n):
                m = -np.inf
                for a in range(V):
                    t = ref_cond[p, off + j, a] + v[j * V + a]
                    if t > m:
                        m = t
                if m == -np.inf:
                    lse = -np.inf
                else:
                    s = 0.0
                    for a in range(V):
                        s += math.exp(ref_cond[p, off + j, a] + v[j * V + a] - m)
                    lse = m + math.log(s)
                for a in range(V):
                    if lse == -np.inf:
                        logpi_out[p, off + j, a] = -math.log(V)
                    else:
                        logpi_out[p, off + j, a] = ref_cond[p, off + j, a] + v[j * V + a] - lse
                v[j] = lse  # safe in place: j <= j*V
                values_out[p, off + j] = beta * lse
            n //= V
            off = (n - 1) // (V - 1)
        # forward pass: v[j] holds log π*(prefix j) at the current depth
        v[0] = 0.0
        n = 1
        off = 0
        for _ in range(H):
            for j in range(n - 1, -1, -1):  # backwards: children j*V+a >= j
                base = v[j]
                for a in range(V - 1, -1, -1):
                    v[j * V + a] = base + logpi_out[p, off + j, a]
            off += n
            n *= V
        for i in range(T):
            logp_out[p, i] = v[i]


@njit(cache=True, fastmath=FASTMATH, parallel=True)
def class_bt_loglik(scores, pos, neg, offset, count, scale, out):
    """scores (K, M_flat) member scores over flat (x, y) indices; pos/neg (M,) flat indices;
    offset (M,) and count (M,) per pair; out (K,) =
    Σ_j c_j log σ(scale·(f_k[pos_j] − f_k[neg_j]) + offset_j).

    Members are taken in groups of 4 (one ``prange`` item per group, so each pair's indices
    are loaded once for four members) and pairs in blocks of 256: gather the margins into a
    small buffer that stays in L1, then a branch-free ``min(z, 0) − log(1 + e^{−|z|})`` loop
    that LLVM vectorises (absolute error per term ≤ 3e-16, the rounding of ``1 + e^{−|z|}``).
    Each member's sum is serial, so results do not depend on the thread count."""
    K = scores.shape[0]
    M = pos.shape[0]
    B = 256
    G = 4
    for b in prange((K + G - 1) // G):
        k0 = b * G
        g = min(G, K - k0)
        z = np.empty((G, B))
        acc = np.zeros(G)
        for j0 in range(0, M, B):
            m = min(B, M - j0)
            for j in range(m):
                p = pos[j0 + j]
                q = neg[j0 + j]
                o = offset[j0 + j]
                for i in range(g):
                    z[i, j] = scale * (scores[k0 + i, p] - scores[k0 + i, q]) + o
            for i in range(g):
                s = 0.0
                for j in range(m):
                    zj = z[i, j]
                    s += count[j0 + j] * (min(zj, 0.0) - math.log(1.0 + math.exp(-abs(zj))))
                acc[i] += s
        for i in range(g):
            out[k0 + i] = acc[i]


@njit(cache=True, fastmath=FASTMATH)
def bt_loglik_grad(scores, pos, neg, count, scale, grad_out):
    """Bradley–Terry log-likelihood of one score vector (flat (x,y)) and its gradient with
    respect to the scores: d/df[pos] += c·s·σ(−s·Δ), d/df[neg] −= the same."""
    for i in range(grad_out.shape[0]):
        grad_out[i] = 0.0
    total = 0.0
    for j in range(pos.shape[0]):
        d = scale * (scores[pos[j]] - scores[neg[j]])
        total += count[j] * log_sigmoid(d)
        g = count[j] * scale * sigmoid(-d)
        grad_out[pos[j]] += g
        grad_out[neg[j]] -= g
    return total


@njit(cache=True, fastmath=FASTMATH, parallel=True)
def grouped_win_rate(vals_a, mass_a, vals_b, mass_b, starts_a, starts_b, out):
    """Per prompt p: Σ_{i,j} mass_a[i] mass_b[j] σ(vals_a[i] − vals_b[j]) over the prompt's
    segment [starts[p], starts[p+1]) of grouped (value, mass) lists."""
    P = out.shape[0]
    for p in prange(P):
        s = 0.0
        for i in range(starts_a[p], starts_a[p + 1]):
            inner = 0.0
            for j in range(starts_b[p], starts_b[p + 1]):
                inner += mass_b[j] * sigmoid(vals_a[i] - vals_b[j])
            s += mass_a[i] * inner
        out[p] = s


@njit(cache=True, fastmath=FASTMATH, parallel=True)
def expected_bt_loglik(r_model, r_true, mu, out):
    """Per prompt: Σ_{y1,y2} μ1 μ2 [σ(r*1−r*2) log σ(r1−r2) + σ(r*2−r*1) log σ(r2−r1)]."""
    P, T = r_model.shape
    for p in prange(P):
        s = 0.0
        for i in range(T):
            if mu[p, i] == 0.0:
                continue
            inner = 0.0
            for j in range(T):
                d = r_model[p, i] - r_model[p, j]
                dt = r_true[p, i] - r_true[p, j]
                inner += mu[p, j] * (sigmoid(dt) * log_sigmoid(d) + sigmoid(-dt) * log_sigmoid(-d))
            s += mu[p, i] * inner
        out[p] = s


@njit(cache=True, fastmath=FASTMATH, parallel=True)
def class_bt_loglik_stream(scores, pos, neg, offset, seg_idx, seg_cnt, seg_ptr, scale, out):
    """Log-likelihood of every member at every prefix size of one pair stream.

    pos/neg/offset (M,) describe the stream's unique pairs; segment s (between consecutive
    prefix sizes) holds the unique pairs seg_idx[seg_ptr[s]:seg_ptr[s+1]] with their counts
    seg_cnt; out (S, K) = cumulative Σ_j c_j ℓ_k(j) with
    ℓ_k(j) = log σ(scale·(f_k[pos_j] − f_k[neg_j]) + offset_j): one log-sigmoid per unique pair
    and member, then one multiply-add per (segment, unique pair) — bounded by S·M, so the cost
    stops growing with the stream length once every distinct pair has been seen."""
    K = scores.shape[0]
    M = pos.shape[0]
    S = seg_ptr.shape[0] - 1
    for k in prange(K):
        ls = np.empty(M)
        for j in range(M):
            ls[j] = scale * (scores[k, pos[j]] - scores[k, neg[j]]) + offset[j]
        for j in range(M):
            zj = ls[j]
            ls[j] = min(zj, 0.0) - math.log(1.0 + math.exp(-abs(zj)))
        acc = 0.0
        for t in range(S):
            for e in range(seg_ptr[t], seg_ptr[t + 1]):
                acc += seg_cnt[e] * ls[seg_idx[e]]
            out[t, k] = acc
