r"""Every numba kernel of genver (private), and the Python dispatchers that pick their drivers.

Rules: kernels take preallocated ``out`` arrays, read no globals except
the compile-time flags of :mod:`genver._kernels.base`, draw no random numbers (one exception,
:func:`standard_normal_fill`: numba's port of numpy's ziggurat, the same draws bit for bit from
the caller's ``Generator``, ~3× faster than numpy's own), and parallelise only over
independent items (``prange`` over class members, prompts or subtrees, each writing its own
``out[k]`` with a serial inner reduction), so results are bitwise identical for any number
of threads. Wrappers in the public modules validate, cast to C-contiguous float64/int64 and
allocate. Kernels with a serial and a parallel driver are called through the dispatchers below,
which choose by problem size only (:func:`_parallel`), never by the thread count.

Modules, each stating the math it implements:

* :mod:`~genver._kernels.base`: the fastmath flag sets, the serial/parallel switch
  (:func:`serial_kernels`), the scalar libm ``log σ`` and ``σ``;
* :mod:`~genver._kernels.poly`: polynomial ``e^x``, ``log x``, ``log(1 + e^{−|z|})`` (vectorisable,
  the same bits in every kernel that uses them);
* :mod:`~genver._kernels.backward`: backward induction on the prefix tree (token-level soft RL);
* :mod:`~genver._kernels.bradley_terry`: Bradley–Terry log-likelihoods of a class, of a pair
  stream's prefixes, of one score vector with its gradient, and the expected log-likelihood;
* :mod:`~genver._kernels.metrics`: win rate, ``J_β`` parts, KL and expected reward, reward
  levels, token conditionals;
* :mod:`~genver._kernels.instances`: normal draws and the distractors' soft-optimal tables;
* :mod:`~genver._kernels.graph`: pair counts of nested sample sizes, pair-Laplacian products.

numba's on-disk cache (``cache=True``) is keyed by each function's own source file: a kernel that
inlines :mod:`~genver._kernels.poly` or :mod:`~genver._kernels.base` functions is not recompiled
when only those files change, so after editing them delete ``genver/_kernels/__pycache__``.
"""
from __future__ import annotations

import math

from .backward import _BI_LEAVES, _backward_induction_par, _backward_induction_ser
from .base import (
    _PARALLEL_ALLOWED,
    _PARALLEL_MIN_WORK,
    FASTMATH,
    FASTMATH_ORDERED,
    FASTMATH_POLY,
    _parallel,
    log_sigmoid,
    serial_kernels,
    sigmoid,
)
from .bradley_terry import (
    _class_bt_par,
    _class_bt_ser,
    _grouped_bt_loglik_par,
    _grouped_bt_loglik_ser,
    _stream_par,
    _stream_ser,
    bt_loglik_grad,
    class_bt_loglik_exact,
)
from .graph import merge_pair_counts, pair_laplacian_times, sorted_common_count, sym_upper_matvec
from .instances import _soft_optimal_par, _soft_optimal_ser, standard_normal_fill
from .metrics import (
    _grouped_win_rate_par,
    _grouped_win_rate_ser,
    _policy_rows_par,
    _policy_rows_ser,
    _token_cond_par,
    _token_cond_ser,
    finite_J,
    finite_rl_parts,
    first_appearance_groups,
    level_index,
    level_mass_add,
)
from .poly import (
    _add_rounded,
    _exp_poly,
    _log_poly,
    exp_block,
    log_block,
    log_sigmoid_array,
    softplus_neg_abs_block,
)

__all__ = [
    "FASTMATH", "FASTMATH_ORDERED", "FASTMATH_POLY", "_BI_LEAVES", "_PARALLEL_ALLOWED", "_PARALLEL_MIN_WORK",
    "_add_rounded", "_backward_induction_par", "_backward_induction_ser", "_class_bt_par", "_class_bt_ser",
    "_exp_poly", "_grouped_bt_loglik_par", "_grouped_bt_loglik_ser", "_grouped_win_rate_par",
    "_grouped_win_rate_ser", "_log_poly", "_parallel", "_policy_rows_par", "_policy_rows_ser",
    "_soft_optimal_par", "_soft_optimal_ser", "_stream_par", "_stream_ser", "_token_cond_par",
    "_token_cond_ser", "backward_induction", "bt_loglik_grad", "class_bt_loglik", "class_bt_loglik_exact",
    "class_bt_loglik_stream", "exp_block", "finite_J", "finite_rl_parts", "first_appearance_groups",
    "grouped_bt_loglik", "grouped_win_rate", "level_index", "level_mass_add", "log_block", "log_sigmoid",
    "log_sigmoid_array", "merge_pair_counts", "pair_laplacian_times", "policy_row_stats", "serial_kernels",
    "sigmoid", "soft_optimal_tables", "softplus_neg_abs_block", "sorted_common_count", "standard_normal_fill",
    "sym_upper_matvec", "token_conditionals",
]


def class_bt_loglik(scores, pos, neg, offset, count, scale, out):
    """scores (K, M_flat) member scores over flat (x, y) indices; pos/neg (M,) flat indices;
    offset (M,) and count (M,) per pair; out (K,) =
    Σ_j c_j log σ(scale·(f_k[pos_j] − f_k[neg_j]) + offset_j).

    Members are taken in groups of 4 (one ``prange`` item per group, so each pair's indices
    are loaded once for four members) and pairs in blocks of 256: gather the margins into a
    small buffer that stays in L1, then a branch-free ``min(z, 0) − log(1 + e^{−|z|})`` loop
    that LLVM vectorises (absolute error per term ≤ 3e-16, the rounding of ``1 + e^{−|z|}``;
    members this leaves tied are recomputed by :func:`class_bt_loglik_exact`).
    Each member's sum is serial, so results do not depend on the thread count or the driver
    (serial below ``_PARALLEL_MIN_WORK`` member-pairs)."""
    k = _class_bt_par if _parallel(scores.shape[0] * pos.shape[0]) else _class_bt_ser
    k(scores, pos, neg, offset, count, float(scale), out)


def grouped_win_rate(vals_a, mass_a, vals_b, mass_b, starts_a, starts_b, out):
    """Per prompt p: Σ_{i,j} mass_a[i] mass_b[j] σ(vals_a[i] − vals_b[j]) over the prompt's
    segment [starts[p], starts[p+1]) of grouped (value, mass) lists (serial when the work, about
    ``len(vals_a)·len(vals_b)/P``, is below ``_PARALLEL_MIN_WORK``)."""
    par = _parallel(vals_a.shape[0] * vals_b.shape[0] // max(out.shape[0], 1))  # ≈ P · Σ_p n_a n_b / P
    k = _grouped_win_rate_par if par else _grouped_win_rate_ser
    k(vals_a, mass_a, vals_b, mass_b, starts_a, starts_b, out)


def backward_induction(reward, ref_cond, beta, V, H, values_out, logpi_out, logp_out):
    """reward (P,T); ref_cond (P,n_int,V) log π_ref(a|s); values_out (P,n_int) = V_h(s);
    logpi_out (P,n_int,V) = log π*(a|s); logp_out (P,T) = Σ_h log π*(a_h|s_h) by a forward
    pass. Nodes are flat, depth by depth. Rounds of subtrees of at most ``_BI_LEAVES`` leaves,
    bottom-up then top-down; each level of a subtree is one fused pass over its nodes (see the
    section comment of :mod:`genver._kernels.backward`). The parallel driver
    (``P·T ≥ _PARALLEL_MIN_WORK``) splits each round's (prompt, subtree) items into up to
    ``_BI_CHUNKS`` contiguous runs; every item's arithmetic is the same in both drivers and for
    any thread count. No allocation beyond the subtrees' roots (``P·T/_BI_LEAVES`` doubles) and
    one scratch of ``_BI_LEAVES·(1/V + 1/V²)`` doubles per run (at most 384 KiB), whatever ``T``."""
    k = _backward_induction_par if _parallel(reward.size) else _backward_induction_ser
    k(reward, ref_cond, float(beta), V, H, values_out, logpi_out, logp_out, int(_BI_LEAVES))


def class_bt_loglik_stream(scores, pos, neg, offset, seg_idx, seg_cnt, seg_ptr, scale, out):
    """Log-likelihood of every member at every prefix size of one pair stream, with both
    orientations of an unordered pair sharing one log-sigmoid.

    pos/neg/offset (U,) describe the stream's unique *unordered* pairs ``u`` (prompt x,
    completions a ≤ b): ``z_k(u) = scale·(f_k[pos_u] − f_k[neg_u]) + offset_u`` is the margin
    of "a ≻ b", and the reverse orientation "b ≻ a" has margin exactly ``−z_k(u)`` (the offset
    of a reversed pair is the negated offset, and IEEE negation is exact). With
    ``sp = log(1 + e^{−|z|})`` the two orientations' log-likelihoods are
    ``log σ(±z) = min(±z, 0) − sp``: one exp and one log per (member, unordered pair), by the
    vectorisable :func:`softplus_neg_abs_block`. Ordered entry ``e`` of the stream refers to
    ``seg_idx[e] = u`` (a ≻ b) or ``U + u`` (b ≻ a); segment s (between consecutive prefix
    sizes) holds entries ``seg_ptr[s] … seg_ptr[s+1]−1`` with counts seg_cnt, and out (S, K) is
    the cumulative Σ_e c_e log σ(±z_k(u_e)) — one multiply-add per (segment, ordered pair in
    it), in entry order.

    Members are taken in blocks of 64 (one ``prange`` item per block; serially when
    ``K·U < _PARALLEL_MIN_WORK``), transposed so that every margin, log-sigmoid and
    multiply-add is a vector operation across the block's members. Each member's sum is serial
    in entry order, so results do not depend on the thread count or the driver."""
    k = _stream_par if _parallel(scores.shape[0] * pos.shape[0]) else _stream_ser
    k(scores, pos, neg, offset, seg_idx, seg_cnt, seg_ptr, scale, out)


def policy_row_stats(lp, lq, r, with_r, kl_out, er_out):
    """Per row ``i`` of ``lp`` (R, T) = log p, with ``lq = log q`` and ``r`` rows ``i % len``:
    ``kl_out[i] = KL(p‖q)`` with the conventions of ``softrl.kl_rows`` (support of p read from
    ``lp > −∞``; ``+∞`` if p has mass where q has none; a value within
    ``8·eps·Σ p(|log p| + |log q|)`` of 0 is exactly 0) and, if ``with_r``, ``er_out[i] = Σ_y p r``
    — one pass over the row: ``e^{log p}`` by :func:`exp_block` in leaves of 128 terms, each sum
    pairwise (8 running sums per leaf, leaves merged as equal-sized partial sums, like numpy's
    ``sum``). Rows in parallel when ``R·T ≥ _PARALLEL_MIN_WORK``; each row is serial, so the bits do
    not depend on the driver or the thread count. No allocation beyond ~1,000 doubles per row."""
    k = _policy_rows_par if _parallel(lp.size) else _policy_rows_ser
    k(lp, lq, r, bool(with_r), kl_out, er_out)


def soft_optimal_tables(ref_logp, z, scale, beta, out):
    """out[k] = log π*_{r_k} for the reward tables ``r_k = scale·z[k]`` (z (n, P, T), ref_logp
    (P, T)): ``s = log π_ref + r_k/β`` normalised per prompt, ``s − (m + log Σ_y e^{s_y − m})``
    with ``m`` the prompt's maximum (:func:`exp_block`); a prompt whose ``s`` is all ``−∞``
    stays ``−∞``, as in ``policy.logsumexp_rows``. ``out`` may be ``z`` itself (each entry is
    read before it is written). Members in chunks of ~4,096 entries (long vectorised ``exp``
    runs), chunks in parallel when ``z.size ≥ _PARALLEL_MIN_WORK``; each member's arithmetic is
    the same in both drivers."""
    C = max(1, 4096 // (z.shape[1] * z.shape[2]))  # members per chunk
    k = _soft_optimal_par if _parallel(z.size) else _soft_optimal_ser
    k(ref_logp, z, float(scale), float(beta), out, C)


def grouped_bt_loglik(r_model, r_true, mass, starts, work, out):
    """Per prompt p: ``Σ_{g,h} M_g M_h [σ(r*_g − r*_h) log σ(r_g − r_h) + σ(r*_h − r*_g) log σ(r_h −
    r_g)]`` over the prompt's segment ``[starts[p], starts[p+1])`` of groups (joint values
    ``(r_g, r*_g)`` and μ-masses ``M_g``, flat over prompts); groups of mass 0 are skipped in the
    outer sum. ``work`` = ``Σ_p K_p²`` picks the serial driver below ``_PARALLEL_MIN_WORK``.
    With one completion per group, in completion order, this is term for term the ungrouped
    ``O(T²)`` double sum."""
    k = _grouped_bt_loglik_par if _parallel(work) else _grouped_bt_loglik_ser
    k(r_model, r_true, mass, starts, out)


def token_conditionals(logp, V, H, cond_out):
    """``cond_out`` (P, n_internal, V) ← ``log π(a|x,s)`` from sequence log-probabilities ``logp``
    (P, T = V**H): per prompt, the prefix marginals ``M(s) = log Σ_a e^{M(s·a)}`` (``m = max_a``,
    ``m + log Σ_a e^{M(s·a) − m}``, ``a`` in order; ``m = 0`` when every child is ``−∞``) and
    ``M(s·a) − M(s)``, or ``−log V`` where ``M(s) = −∞``. One buffer of ``T/V`` doubles per prompt
    (``O(T)`` memory); prompts in parallel when ``P·T ≥ _PARALLEL_MIN_WORK``, each prompt serial
    (the same bits for any driver or thread count)."""
    k = _token_cond_par if _parallel(logp.size) else _token_cond_ser
    k(logp, V, H, math.log(V), cond_out)
