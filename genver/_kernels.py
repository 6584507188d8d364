r"""Every numba kernel of genver (private).

Rules (see ``design.md``): kernels take preallocated ``out`` arrays, read no globals except
the compile-time flag set below, draw no random numbers (one exception,
:func:`standard_normal_fill`: numba's port of numpy's ziggurat, the same draws bit for bit from
the caller's ``Generator``, ~3× faster than numpy's own), and parallelise only over
independent items (``prange`` over class members or prompts, each writing its own
``out[k]`` with a serial inner reduction), so results are bitwise identical for any number
of threads. Wrappers in the public modules validate, cast to C-contiguous float64/int64 and
allocate.

``FASTMATH`` deliberately excludes ``nnan`` and ``ninf``: a guarded log-sum-exp over all
``-inf`` entries must stay ``-inf``, not become NaN. ``FASTMATH_ORDERED`` also drops
``reassoc`` (sums in program order: a body shared by a serial and a parallel driver gives the
same bits in both), and ``FASTMATH_POLY`` keeps only ``nsz`` and ``contract`` for the
polynomial kernels, whose argument reduction and Horner order must stay as written. Kernels
with a small-problem serial driver dispatch on problem size only (``_PARALLEL_MIN_WORK``),
never on the thread count.

Math
----
* ``log σ(z) = −log(1 + e^{−z})``, evaluated as ``−log1p(e^{−z})`` for ``z ≥ 0`` and
  ``z − log1p(e^{z})`` for ``z < 0`` (no overflow for any finite ``z``). The vectorisable
  form used by the stream kernel: ``log σ(z) = min(z, 0) − log1p(e^{−|z|})`` with
  ``e^{−a} = 2^{−n} e^{−r}`` (``n = ⌊a/ln2 + ½⌋``, ``|r| ≤ ln2/2``, degree-13 Taylor
  polynomial, ``2^{−n}`` from its bit pattern) and ``log1p(t) = 2 atanh(t/(2 + t))`` (odd
  series to degree 33 on ``t ∈ [0, 1]``); relative error ≤ 2e-15 against libm over the whole
  float range (tested), where LLVM cannot vectorise libm's ``exp``/``log1p`` calls.
* Backward induction on the prefix tree (token-level soft RL), in units of β:
  ``v_H = r/β``; ``v_h(s) = log Σ_a π_ref(a|s) e^{v_{h+1}(s·a)}``;
  ``log π*(a|s) = log π_ref(a|s) + v_{h+1}(s·a) − v_h(s)``; ``V_h = β v_h``. Each node:
  ``t_a = log π_ref(a|s) + v_{h+1}(s·a)``, ``m = max_a t_a``, ``v_h = m + log Σ_a e^{t_a − m}``
  (``−∞`` when every ``t_a`` is; then ``π*(·|s)`` is uniform), swept in subtrees of at most
  ``_BI_LEAVES`` leaves so the sweep touches each input and output once; each level of a subtree
  is one fused, vectorised pass over its nodes with the polynomial ``e^x`` and ``log x`` of
  :func:`exp_block` and :func:`log_block` inlined (:func:`_exp_poly`, :func:`_log_poly`: the same
  operations, hence the same bits); for ``V = 2`` one exponential per node (``e^{t_max − m} =
  e^0 = 1`` exactly).
* Policy metrics (:func:`policy_row_stats`): per row, ``KL(p‖q) = Σ_{p>0} p (log p − log q)``
  (``+∞`` if some ``p > 0 = q``) and ``Σ_y p r`` in one pass, pairwise-summed.
* Bradley–Terry log-likelihood of the scores ``f_k`` of class member ``k`` on pair counts
  ``(i⁺_j, i⁻_j, c_j)``: ``ℓ_k = Σ_j c_j log σ(s·(f_k[i⁺_j] − f_k[i⁻_j]) + o_j)``; DPO uses
  ``f_k = log π_k``, ``s = β`` and ``o_j = −β(log π_ref[i⁺_j] − log π_ref[i⁻_j])``. Reversing a
  pair negates its margin exactly, so the two orientations of an unordered pair share
  ``log1p(e^{−|z|})``: ``log σ(±z) = min(±z, 0) − log1p(e^{−|z|})``.
* ``J_β(π_k; r) = Σ_x ρ_x (Σ_y π_k(y|x) r(x, y) − β KL(π_k(·|x) ‖ π_ref(·|x)))``: the
  probabilities and KL terms do not depend on ``r`` and are computed once per (class,
  reference).
* Distractors ``π*_{r_k}``: ``log π_ref + r_k/β`` minus its per-prompt log-sum-exp.
* Exact metrics at scale: level masses ``a_i = Σ_{y: level(y) = i} w_y`` in completion order
  (:func:`level_mass_add`, as ``np.bincount``); each completion's level by a branch-free binary
  search (:func:`level_index`); the expected Bradley–Terry log-likelihood over groups of equal
  ``(r, r*)`` numbered by first appearance (:func:`first_appearance_groups`,
  :func:`grouped_bt_loglik`); token conditionals ``log π(a|s) = M(s·a) − M(s)`` from the prefix
  marginals ``M(s) = log Σ_a e^{M(s·a)}``, bottom-up per prompt (:func:`token_conditionals`).
"""
from __future__ import annotations

import contextlib
import math
import os

import numba
import numpy as np
from llvmlite import ir as llvmir
from numba import njit, prange
from numba.core import types
from numba.extending import intrinsic

# Threading layer: numba's OpenMP workers spin after every parallel region and starve the
# BLAS calls inside scipy's L-BFGS on a small machine (one gap_verifier unit: 10 s with
# "omp", 0.17 s with "workqueue", measured on 2 cores). The workqueue layer does not spin;
# results are identical (every prange item is computed serially). An explicit
# NUMBA_THREADING_LAYER in the environment wins.
if "NUMBA_THREADING_LAYER" not in os.environ:
    numba.config.THREADING_LAYER = "workqueue"

#: The package's one fastmath flag set (no ``nnan``/``ninf``).
FASTMATH = {"nsz", "arcp", "contract", "afn", "reassoc"}
#: Without ``reassoc``: sums stay in program order, so a body compiled into a serial and into a
#: parallel driver gives bitwise identical results (LLVM may not vectorise the reduction
#: differently in the two contexts).
FASTMATH_ORDERED = FASTMATH - {"reassoc"}


@njit(cache=True, nogil=True, fastmath=FASTMATH, inline="always")
def log_sigmoid(z):
    if z >= 0.0:
        return -math.log1p(math.exp(-z))
    return z - math.log1p(math.exp(z))


@njit(cache=True, nogil=True, fastmath=FASTMATH, inline="always")
def sigmoid(z):
    if z >= 0.0:
        return 1.0 / (1.0 + math.exp(-z))
    e = math.exp(z)
    return e / (1.0 + e)


# Small problems run serially: a parallel region costs ~25 µs to start (far more on a busy
# machine), more than a whole backward induction or win rate on a small tree. Each kernel below
# has a per-prompt body and a serial and a parallel driver; the Python-level dispatcher picks
# one by problem size, so the choice never depends on the thread count, and the two drivers
# give bitwise identical results (tested): the win-rate and expected-likelihood bodies are
# compiled without ``reassoc`` (FASTMATH_ORDERED) so that LLVM cannot vectorise their sums
# differently in the two drivers; backward induction's sums run over V children in order (its
# drivers share one item body, :func:`_bi_items`).
_PARALLEL_MIN_WORK = 1 << 15
#: ``[False]`` while units run side by side in threads (``genver.experiments.executors``): numba's
#: default ``workqueue`` layer cannot start parallel regions from two threads at once, so every
#: dispatcher then takes its serial driver (the same bits). Set through :func:`serial_kernels`.
_PARALLEL_ALLOWED = [True]


def _parallel(work: int) -> bool:
    """Whether a kernel with ``work`` items takes its parallel driver."""
    return _PARALLEL_ALLOWED[0] and work >= _PARALLEL_MIN_WORK


@contextlib.contextmanager
def serial_kernels():
    """Within this block every kernel runs its serial driver (all kernels release the GIL, so
    several Python threads running kernels use several cores)."""
    before = _PARALLEL_ALLOWED[0]
    _PARALLEL_ALLOWED[0] = False
    try:
        yield
    finally:
        _PARALLEL_ALLOWED[0] = before


@njit(cache=True, nogil=True, fastmath=FASTMATH)
def _class_bt_group(b, scores, pos, neg, offset, count, scale, out):
    """Members ``4b … 4b+3`` of :func:`class_bt_loglik`."""
    K = scores.shape[0]
    M = pos.shape[0]
    B = 256
    G = 4
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


@njit(cache=True, nogil=True, fastmath=FASTMATH, parallel=True)
def _class_bt_par(scores, pos, neg, offset, count, scale, out):
    for b in prange((scores.shape[0] + 3) // 4):
        _class_bt_group(b, scores, pos, neg, offset, count, scale, out)


@njit(cache=True, nogil=True, fastmath=FASTMATH)
def _class_bt_ser(scores, pos, neg, offset, count, scale, out):
    for b in range((scores.shape[0] + 3) // 4):
        _class_bt_group(b, scores, pos, neg, offset, count, scale, out)


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


@njit(cache=True, nogil=True, fastmath=FASTMATH)
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


@njit(cache=True, nogil=True, fastmath=FASTMATH_ORDERED)
def _grouped_win_rate_prompt(p, vals_a, mass_a, vals_b, mass_b, starts_a, starts_b, out):
    s = 0.0
    for i in range(starts_a[p], starts_a[p + 1]):
        inner = 0.0
        for j in range(starts_b[p], starts_b[p + 1]):
            inner += mass_b[j] * sigmoid(vals_a[i] - vals_b[j])
        s += mass_a[i] * inner
    out[p] = s


@njit(cache=True, nogil=True, fastmath=FASTMATH, parallel=True)
def _grouped_win_rate_par(vals_a, mass_a, vals_b, mass_b, starts_a, starts_b, out):
    for p in prange(out.shape[0]):
        _grouped_win_rate_prompt(p, vals_a, mass_a, vals_b, mass_b, starts_a, starts_b, out)


@njit(cache=True, nogil=True, fastmath=FASTMATH)
def _grouped_win_rate_ser(vals_a, mass_a, vals_b, mass_b, starts_a, starts_b, out):
    for p in range(out.shape[0]):
        _grouped_win_rate_prompt(p, vals_a, mass_a, vals_b, mass_b, starts_a, starts_b, out)


def grouped_win_rate(vals_a, mass_a, vals_b, mass_b, starts_a, starts_b, out):
    """Per prompt p: Σ_{i,j} mass_a[i] mass_b[j] σ(vals_a[i] − vals_b[j]) over the prompt's
    segment [starts[p], starts[p+1]) of grouped (value, mass) lists (serial when the work, about
    ``len(vals_a)·len(vals_b)/P``, is below ``_PARALLEL_MIN_WORK``)."""
    par = _parallel(vals_a.shape[0] * vals_b.shape[0] // max(out.shape[0], 1))  # ≈ P · Σ_p n_a n_b / P
    k = _grouped_win_rate_par if par else _grouped_win_rate_ser
    k(vals_a, mass_a, vals_b, mass_b, starts_a, starts_b, out)


# -- vectorisable log-sigmoid ------------------------------------------------------------
# libm's exp/log1p are opaque calls that LLVM cannot vectorise (numba ships no SVML here), so
# the stream kernel evaluates log σ(z) = min(z, 0) − log1p(e^{−|z|}) with polynomials in two
# branch-free loops over a block (8 doubles per AVX-512 instruction). Compiled without
# ``reassoc``/``arcp``/``afn`` so the argument reduction and Horner order stay as written.
FASTMATH_POLY = {"nsz", "contract"}
_LOG2E = 1.4426950408889634
_LN2_HI = 6.93147180369123816490e-01  # 32 significant bits: n·_LN2_HI is exact for |n| < 2**21
_LN2_LO = 1.90821492927058770002e-10
_EXP_CLAMP = 750.0  # e^{-750} underflows to 0 (the smallest subnormal is e^{-744.4})


@njit(cache=True, nogil=True, fastmath=FASTMATH_POLY, error_model="numpy", inline="always")
def _exp_reduced(x):
    """e^x for |x| ≤ ln2/2 + 1e-9: Taylor polynomial of degree 13 (truncation < 5e-18
    relative), Horner."""
    p = 1.0 / 6227020800.0
    p = p * x + 1.0 / 479001600.0
    p = p * x + 1.0 / 39916800.0
    p = p * x + 1.0 / 3628800.0
    p = p * x + 1.0 / 362880.0
    p = p * x + 1.0 / 40320.0
    p = p * x + 1.0 / 5040.0
    p = p * x + 1.0 / 720.0
    p = p * x + 1.0 / 120.0
    p = p * x + 1.0 / 24.0
    p = p * x + 1.0 / 6.0
    p = p * x + 0.5
    p = p * x + 1.0
    return p * x + 1.0


@njit(cache=True, nogil=True, fastmath=FASTMATH_POLY, error_model="numpy", inline="always")
def _log1p_unit(t):
    """log(1 + t) for 0 ≤ t ≤ 1: ``2 atanh(s)``, ``s = t/(2 + t) ∈ [0, 1/3]``, series in s² to
    s³² (truncation < 2e-18 relative)."""
    s = t / (2.0 + t)
    s2 = s * s
    q = 1.0 / 33.0
    q = q * s2 + 1.0 / 31.0
    q = q * s2 + 1.0 / 29.0
    q = q * s2 + 1.0 / 27.0
    q = q * s2 + 1.0 / 25.0
    q = q * s2 + 1.0 / 23.0
    q = q * s2 + 1.0 / 21.0
    q = q * s2 + 1.0 / 19.0
    q = q * s2 + 1.0 / 17.0
    q = q * s2 + 1.0 / 15.0
    q = q * s2 + 1.0 / 13.0
    q = q * s2 + 1.0 / 11.0
    q = q * s2 + 1.0 / 9.0
    q = q * s2 + 1.0 / 7.0
    q = q * s2 + 1.0 / 5.0
    q = q * s2 + 1.0 / 3.0
    q = q * s2 + 1.0
    return 2.0 * s * q


@njit(cache=True, nogil=True, fastmath=FASTMATH_POLY, error_model="numpy", inline="always")
def _exp_split(x):
    """For finite ``x ∈ [−750, 709]``: ``(e^r, bits(2^{n₁}), bits(2^{n₂}))`` with
    ``e^x = e^r·2^{n₁}·2^{n₂}``, ``n = ⌊x/ln2 + ½⌋``, ``r = x − n·ln2`` (Cody–Waite,
    ``|r| ≤ ln2/2``), ``n₁ = ⌊n/2⌋``, ``n₂ = n − n₁``: each power of two is a normal number,
    built from its bit pattern (biased exponent ``1023 + n_i``), and a subnormal result
    rounds once, in the last product."""
    n = np.floor(x * _LOG2E + 0.5)
    r = (x - n * _LN2_HI) - n * _LN2_LO
    n1 = np.floor(n * 0.5)
    return _exp_reduced(r), np.int64(1023.0 + n1) << 52, np.int64(1023.0 + (n - n1)) << 52


@njit(cache=True, nogil=True, fastmath=FASTMATH_POLY, error_model="numpy")
def exp_block(x, out, b1, b2):
    """out[j] = e^{x[j]} for the first ``out.shape[0]`` entries of x, for ``x ≤ 709``
    (``−∞`` and anything below −750 give 0, NaN stays NaN); b1, b2: int64 scratch of the same
    length. Vectorisable replacement of ``math.exp`` (relative error ≤ 2e-16 on normal
    results, tested)."""
    m = out.shape[0]
    f1 = b1.view(np.float64)
    f2 = b2.view(np.float64)
    for j in range(m):
        xj = x[j]
        xj = max(xj if xj == xj else 0.0, -_EXP_CLAMP)
        out[j], b1[j], b2[j] = _exp_split(xj)
    for j in range(m):
        v = out[j] * f1[j] * f2[j]
        xj = x[j]
        out[j] = v if xj == xj else xj


@njit(cache=True, nogil=True, fastmath=FASTMATH_POLY, error_model="numpy")
def softplus_neg_abs_block(z, sp_out, b1, b2):
    """sp_out[j] = log(1 + e^{−|z[j]|}) for the first ``sp_out.shape[0]`` entries of z
    (b1, b2: int64 scratch of the same length): ``e^{−|z|}`` as in :func:`exp_block`, then
    :func:`_log1p_unit`. NaN stays NaN; ``|z| ≥ 750`` gives exactly 0."""
    m = sp_out.shape[0]
    f1 = b1.view(np.float64)
    f2 = b2.view(np.float64)
    for j in range(m):
        zj = z[j]
        a = min(abs(zj) if zj == zj else 0.0, _EXP_CLAMP)
        sp_out[j], b1[j], b2[j] = _exp_split(-a)
    for j in range(m):
        t = sp_out[j] * f1[j] * f2[j]
        v = _log1p_unit(t)
        zj = z[j]
        sp_out[j] = v if zj == zj else zj


@njit(cache=True, nogil=True, fastmath=FASTMATH_POLY, error_model="numpy")
def log_sigmoid_array(z, out):
    """``out = log σ(z)`` elementwise by the vectorisable polynomial route (the stream
    kernel's log-sigmoid; tested against libm over the whole float range)."""
    n = z.shape[0]
    B = 512
    b1 = np.empty(B, np.int64)
    b2 = np.empty(B, np.int64)
    sp = np.empty(B)
    for j0 in range(0, n, B):
        m = min(B, n - j0)
        softplus_neg_abs_block(z[j0 : j0 + m], sp[:m], b1, b2)
        for j in range(m):
            out[j0 + j] = min(z[j0 + j], 0.0) - sp[j]


@njit(cache=True, nogil=True, fastmath=FASTMATH_POLY, error_model="numpy")
def log_block(x, out, bits):
    """out[j] = log x[j] for the first ``out.shape[0]`` entries of x, each ``0`` (gives ``−∞``)
    or in ``[1, 2**1023)``; bits: int64 scratch of the same length. Vectorisable replacement of
    ``math.log``: ``x = 2^k f`` with ``f ∈ [1, 2)`` read from the bit pattern, then
    ``k ln2 + log1p(f − 1)`` (:func:`_log1p_unit`); absolute error ≤ 2e-16·(1 + |log x|), tested."""
    m = out.shape[0]
    xi = x.view(np.int64)
    fb = bits.view(np.float64)
    for j in range(m):
        u = xi[j]
        out[j] = np.float64((u >> 52) - 1023)
        bits[j] = (u & 0x000FFFFFFFFFFFFF) | 0x3FF0000000000000
    for j in range(m):
        k = out[j]
        v = k * _LN2_HI + (k * _LN2_LO + _log1p_unit(fb[j] - 1.0))
        out[j] = v if x[j] > 0.0 else -np.inf


# -- backward induction (token-level soft RL) ------------------------------------------------
# Each level of a subtree is ONE pass over its nodes: t_a = log π_ref(a|s) + v(s·a), the max, the
# exponentials, their sum, the log and log π*(a|s) for a node's V children, with the polynomial
# e^x and log x of exp_block / log_block inlined (same operations, same bits). Three passes:
# V = 2 (:func:`_bi_level_pair`, vectorised across nodes; one exponential per node, since the
# larger child's e^{t − m} is e^0 = 1 exactly), 8 ≤ V ≤ 16 (:func:`_bi_level_rows`, node-major
# blocks) and any other V (:func:`_bi_level`, blocks of _BI_NODES nodes transposed token-major
# in L1). The tree is swept in rounds of subtrees of at most _BI_LEAVES leaves, so each input
# and output is read or written once (log π*(a|s) once more by the forward pass); the subtrees
# of one round are independent (each writes its own slice of the outputs and one root), so they
# are the parallel driver's items. Every node's arithmetic is the same whatever the blocking,
# the pass, the driver or the thread count: m = max_a t_a (exact in any order), s = Σ_a
# e^{t_a − m} (a in order, each term rounded before it is added: :func:`_add_rounded`),
# v = m + log s; the results are bit for bit those of the previous 16-pass kernel.
# Time: the polynomial e^x and log x dominate (~35 cycles per 8-wide AVX-512 vector each, so
# ~9 cycles per node at V = 2), and one core is compute-bound at V = 2 and V = 16, not
# memory-bound (profile in benchmarks/README.md).
_BI_LEAVES = 1 << 16  # long streams for the prefetcher (4,096 was 1.3–1.7× slower); scratch ≤ 384 KiB
_BI_NODES = 64  # nodes per block of the V > 2 passes: ≤ 3·V·64 doubles, in L1 for V ≤ 16


@intrinsic
def _f64_from_bits(typingctx, u):
    """The float64 whose bit pattern is the int64 ``u`` (an LLVM bitcast, no memory round trip:
    a loop that builds 2^n this way stays one vectorisable pass)."""
    if u != types.int64:
        return None

    def codegen(context, builder, sig, args):
        return builder.bitcast(args[0], llvmir.DoubleType())
    return types.float64(types.int64), codegen


@intrinsic
def _bits_from_f64(typingctx, x):
    """The int64 bit pattern of the float64 ``x`` (an LLVM bitcast)."""
    if x != types.float64:
        return None

    def codegen(context, builder, sig, args):
        return builder.bitcast(args[0], llvmir.IntType(64))
    return types.int64(types.float64), codegen


@intrinsic
def _add_rounded(typingctx, a, b):
    """``a + b`` as an ``fadd`` carrying only ``nsz``: without ``contract`` LLVM cannot fuse it with
    a product that feeds it, so ``s + e`` rounds ``e`` first, as a sum over a stored array does
    (numba adds its fastmath flags only to instructions that carry none)."""
    if a != types.float64 or b != types.float64:
        return None

    def codegen(context, builder, sig, args):
        return builder.fadd(args[0], args[1], flags=("nsz",))
    return types.float64(types.float64, types.float64), codegen


@njit(cache=True, nogil=True, fastmath=FASTMATH_POLY, error_model="numpy", inline="always")
def _exp_poly(x):
    """``e^x``, the operations of :func:`exp_block` on one entry (the same bits)."""
    xc = max(x if x == x else 0.0, -_EXP_CLAMP)
    er, b1, b2 = _exp_split(xc)
    v = er * _f64_from_bits(b1) * _f64_from_bits(b2)
    return v if x == x else x


@njit(cache=True, nogil=True, fastmath=FASTMATH_POLY, error_model="numpy", inline="always")
def _log_poly(x):
    """``log x``, the operations of :func:`log_block` on one entry (the same bits)."""
    u = _bits_from_f64(x)
    k = np.float64((u >> 52) - 1023)
    f = _f64_from_bits((u & 0x000FFFFFFFFFFFFF) | 0x3FF0000000000000)
    v = k * _LN2_HI + (k * _LN2_LO + _log1p_unit(f - 1.0))
    return v if x > 0.0 else -np.inf


@njit(cache=True, nogil=True, fastmath=FASTMATH_POLY, error_model="numpy", inline="always")
def _lse_pair(t0, t1):
    """``m + log(e^{t0 − m} + e^{t1 − m})``, ``m = max(t0, t1)`` (``0`` if both are ``−∞``, which
    gives ``−∞``): the larger term is ``e^0 = 1`` exactly, so one exponential."""
    m = max(t0, t1)
    lo = min(t0, t1)
    fin = m > -np.inf
    m = m if fin else 0.0
    s = _add_rounded(1.0, _exp_poly(lo - m)) if fin else 0.0
    return m + _log_poly(s)


@njit(cache=True, nogil=True, fastmath=FASTMATH_POLY, error_model="numpy")
def _bi_level_pair(x, div, scaled, rcs, lps, vs, vnext, n, beta, logV):
    """One level of ``n`` nodes, V = 2: children values ``x[2j + a]`` (``/ div`` if ``scaled``),
    ``rcs``/``lps`` the level's log π_ref / log π* conditionals (2n), ``vs`` its ``V_h`` (n) and
    ``vnext`` its ``v_h`` (units of β, the next level's children)."""
    if scaled:
        for j in range(n):
            q = max(2 * j, 0)  # provably ≥ 0: no wrap-around test, so LLVM vectorises
            t0 = rcs[q] + x[q] / div
            t1 = rcs[q + 1] + x[q + 1] / div
            ls = _lse_pair(t0, t1)
            fin = ls > -np.inf
            lps[q] = t0 - ls if fin else -logV
            lps[q + 1] = t1 - ls if fin else -logV
            vs[j] = beta * ls
            vnext[j] = ls
    else:
        for j in range(n):
            q = max(2 * j, 0)
            t0 = rcs[q] + x[q]
            t1 = rcs[q + 1] + x[q + 1]
            ls = _lse_pair(t0, t1)
            fin = ls > -np.inf
            lps[q] = t0 - ls if fin else -logV
            lps[q + 1] = t1 - ls if fin else -logV
            vs[j] = beta * ls
            vnext[j] = ls


@njit(cache=True, nogil=True, fastmath=FASTMATH_POLY, error_model="numpy")
def _bi_level(x, div, scaled, rcs, lps, vs, vnext, n, V, beta, logV, t, mm, ss):
    """:func:`_bi_level_pair` for any V, in blocks of ``_BI_NODES`` nodes: ``t`` (V·_BI_NODES)
    holds the block token-major (entry (j, a) at ``a·_BI_NODES + j``), ``mm``/``ss`` the block's
    maxima and sums, so every loop runs across the block's nodes."""
    NB = _BI_NODES
    for j0 in range(0, n, NB):
        nb = min(NB, n - j0)
        xb = x[j0 * V : (j0 + nb) * V]
        rb = rcs[j0 * V : (j0 + nb) * V]
        lb = lps[j0 * V : (j0 + nb) * V]
        for a in range(V):
            ta = t[a * NB : a * NB + nb]
            if scaled:
                for j in range(nb):
                    q = max(j * V, 0) + a
                    ta[j] = rb[q] + xb[q] / div
            else:
                for j in range(nb):
                    q = max(j * V, 0) + a
                    ta[j] = rb[q] + xb[q]
            if a == 0:
                for j in range(nb):
                    mm[j] = ta[j]
            else:
                for j in range(nb):
                    mm[j] = max(mm[j], ta[j])
        for j in range(nb):
            mm[j] = mm[j] if mm[j] > -np.inf else 0.0  # all −∞: e^{t − 0} = 0, no NaN
            ss[j] = 0.0
        for a in range(V):
            ta = t[a * NB : a * NB + nb]
            for j in range(nb):
                ss[j] = _add_rounded(ss[j], _exp_poly(ta[j] - mm[j]))
        for j in range(nb):
            ls = mm[j] + _log_poly(ss[j])
            ss[j] = ls
            vs[j0 + j] = beta * ls
            vnext[j0 + j] = ls
        for a in range(V):
            ta = t[a * NB : a * NB + nb]
            for j in range(nb):
                ls = ss[j]
                lb[max(j * V, 0) + a] = ta[j] - ls if ls > -np.inf else -logV


@njit(cache=True, nogil=True, fastmath=FASTMATH_POLY, error_model="numpy")
def _bi_level_rows(x, div, scaled, rcs, lps, vs, vnext, n, V, beta, logV, t, mm, ss):
    """:func:`_bi_level` with the block kept node-major (faster for 8 ≤ V ≤ 16): ``t`` (3·V·_BI_NODES)
    holds t, e^{t − m} and a per-entry copy of the node's m (then of its v), so the elementwise
    loops (t, e^{t − m}, log π*) run over the block's V·nb contiguous entries and only the max and
    the in-order sum run node by node."""
    NB = _BI_NODES
    for j0 in range(0, n, NB):
        nb = min(NB, n - j0)
        nbV = nb * V
        xb = x[j0 * V : (j0 + nb) * V]
        rb = rcs[j0 * V : (j0 + nb) * V]
        lb = lps[j0 * V : (j0 + nb) * V]
        tt = t[0:nbV]
        e = t[nbV : 2 * nbV]
        me = t[2 * nbV : 3 * nbV]
        if scaled:
            for i in range(nbV):
                tt[i] = rb[i] + xb[i] / div
        else:
            for i in range(nbV):
                tt[i] = rb[i] + xb[i]
        for j in range(nb):
            q = max(j * V, 0)
            m = tt[q]
            for a in range(1, V):
                m = max(m, tt[q + a])
            m = m if m > -np.inf else 0.0  # all −∞: e^{t − 0} = 0, no NaN
            mm[j] = m
            for a in range(V):
                me[q + a] = m
        for i in range(nbV):
            e[i] = _exp_poly(tt[i] - me[i])
        for j in range(nb):
            q = max(j * V, 0)
            s = 0.0
            for a in range(V):
                s = _add_rounded(s, e[q + a])
            ss[j] = s
        for j in range(nb):
            ls = mm[j] + _log_poly(ss[j])
            ss[j] = ls
            vs[j0 + j] = beta * ls
            vnext[j0 + j] = ls
        for j in range(nb):
            q = max(j * V, 0)
            ls = ss[j]
            for a in range(V):
                me[q + a] = ls
        for i in range(nbV):
            ls = me[i]
            lb[i] = tt[i] - ls if ls > -np.inf else -logV


@njit(cache=True, nogil=True, fastmath=FASTMATH_POLY, error_model="numpy")
def _bi_subtree(src, div, scaled, rc, lpi, vals, beta, V, d_leaf, k, b, logV, w):
    """Backward induction over the ``k`` levels above the ``V**k`` leaves ``src`` (``/ div`` if
    ``scaled``, else already in units of β) at depth ``d_leaf``; the subtree's root is node ``b``
    at depth ``d_leaf − k``. Writes log π*(a|s) into ``lpi`` and ``V_h(s) = β v_h(s)`` into
    ``vals`` (the prompt's flat node layout) and returns ``v`` at the root. ``w``: scratch of
    ``V**(k−1) + V**(k−2) + (3V+2)·_BI_NODES`` doubles or more (:func:`_bi_items`)."""
    half = V ** (k - 1)
    NB = _BI_NODES
    va = w[0:half]  # even levels (n = V**(k-1), V**(k-3), …)
    vb = w[half : half + half // V]  # odd levels
    o = w.shape[0] - (3 * V + 2) * NB
    t = w[o : o + 3 * V * NB]
    mm = w[o + 3 * V * NB : o + 3 * V * NB + NB]
    ss = w[o + 3 * V * NB + NB : o + 3 * V * NB + 2 * NB]
    x = src
    n = half
    for lev in range(k):
        depth = d_leaf - 1 - lev
        g0 = (V**depth - 1) // (V - 1) + b * n  # flat index of the level's first node
        rcs = rc[g0 * V : (g0 + n) * V]
        lps = lpi[g0 * V : (g0 + n) * V]
        vs = vals[g0 : g0 + n]
        out = va if lev % 2 == 0 else vb
        sc = scaled and lev == 0
        if V == 2:
            _bi_level_pair(x, div, sc, rcs, lps, vs, out, n, beta, logV)
        elif 8 <= V <= 16:
            _bi_level_rows(x, div, sc, rcs, lps, vs, out, n, V, beta, logV, t, mm, ss)
        else:
            _bi_level(x, div, sc, rcs, lps, vs, out, n, V, beta, logV, t, mm, ss)
        x = out
        n //= V
    return x[0]


@njit(cache=True, nogil=True, fastmath=FASTMATH_POLY, error_model="numpy")
def _bi_forward_subtree(root, lpi, dst, V, d_root, k, b, w):
    """Sequence log-probabilities below node ``b`` at depth ``d_root``, ``k`` levels down:
    ``dst[i] = root + Σ log π*(a|s)`` along the path to the subtree's leaf ``i``, added top-down in
    path order (prefix + next token). Intermediate levels live in ``w`` (≥ V**(k−1) + V**(k−2)):
    level ``k − 2`` in the first V**(k−1), ``k − 3`` after it, and so on alternately."""
    half = V ** (k - 1)
    wa = w[0:half]
    wb = w[half : half + half // V]
    cur = wb if k >= 2 and k % 2 == 0 else wa  # the buffer level 0 does not write
    cur[0] = root
    n = 1
    for lev in range(k):
        depth = d_root + lev
        g0 = (V**depth - 1) // (V - 1) + b * n
        lps = lpi[g0 * V : (g0 + n) * V]
        if lev == k - 1:
            out = dst
        elif (k - 2 - lev) % 2 == 0:
            out = wa
        else:
            out = wb
        if V == 2:
            for j in range(n):
                q = max(2 * j, 0)
                c = cur[j]
                out[q] = c + lps[q]
                out[q + 1] = c + lps[q + 1]
        else:
            for j in range(n):
                c = cur[j]
                q = max(j * V, 0)
                for a in range(V):
                    out[q + a] = c + lps[q + a]
        cur = out
        n *= V


@njit(cache=True, nogil=True)
def _bi_rounds(V, H, leaves):
    """The sweep's rounds, bottom-up, as one int64 array ``(3, nr + 1)`` and ``K``: round ``r``'s
    subtrees have ``rounds[0, r]`` levels, their leaves at depth ``rounds[1, r]`` and their roots'
    values at ``roots[rounds[2, r] : rounds[2, r + 1]]`` (``V**(depth of the roots)`` of them);
    ``K`` is the most levels with ``V**K ≤ leaves``."""
    K = 1
    while K < H and V ** (K + 1) <= leaves:
        K += 1
    nr = (H + K - 1) // K
    rounds = np.zeros((3, nr + 1), np.int64)
    d = H
    for r in range(nr):
        k = min(K, d)
        rounds[0, r] = k
        rounds[1, r] = d
        rounds[2, r + 1] = rounds[2, r] + V ** (d - k)
        d -= k
    return rounds, K


@njit(cache=True, nogil=True, fastmath=FASTMATH_POLY, error_model="numpy")
def _bi_item(it, r, backward, reward, ref_cond, beta, V, rounds, roots, values_out, logpi_out,
             logp_out, logV, w):
    """Subtree ``b`` of prompt ``p`` (``it = p·n_sub + b``) of round ``r``: backward (its values
    and conditionals, and its root's ``v`` into ``roots``) or forward (its sequence log-probs
    below its root's, read from ``roots``)."""
    k = rounds[0, r]
    dl = rounds[1, r]
    n_sub = V ** (dl - k)
    p = it // n_sub
    b = it - p * n_sub
    nl = V**k
    n_int = ref_cond.shape[1]
    rc = ref_cond[p].reshape(n_int * V)
    lpi = logpi_out[p].reshape(n_int * V)
    o = rounds[2, r]
    if backward:
        if r == 0:
            src = reward[p, b * nl : (b + 1) * nl]
            roots[p, o + b] = _bi_subtree(src, beta, True, rc, lpi, values_out[p], beta, V, dl, k, b, logV, w)
        else:
            o1 = rounds[2, r - 1]
            src = roots[p, o1 + b * nl : o1 + (b + 1) * nl]
            roots[p, o + b] = _bi_subtree(src, 1.0, False, rc, lpi, values_out[p], beta, V, dl, k, b, logV, w)
    else:
        if r == 0:
            dst = logp_out[p, b * nl : (b + 1) * nl]
        else:
            o1 = rounds[2, r - 1]
            dst = roots[p, o1 + b * nl : o1 + (b + 1) * nl]
        root = roots[p, o + b] if r < rounds.shape[1] - 2 else 0.0
        _bi_forward_subtree(root, lpi, dst, V, dl - k, k, b, w)


@njit(cache=True, nogil=True, fastmath=FASTMATH_POLY, error_model="numpy")
def _bi_items(lo, hi, r, backward, reward, ref_cond, beta, V, rounds, roots, values_out, logpi_out,
              logp_out, w):
    """Items ``lo … hi−1`` of round ``r`` with the scratch ``w`` (:func:`_bi_scratch` doubles)."""
    logV = math.log(V)
    for i in range(hi - lo):
        it = lo + i if backward else hi - 1 - i  # forward: last written first (still in L3)
        _bi_item(it, r, backward, reward, ref_cond, beta, V, rounds, roots, values_out, logpi_out,
                 logp_out, logV, w)


@njit(cache=True, nogil=True, inline="always")
def _bi_scratch(V, K):
    """Scratch doubles of one run of items: V**(K−1) + V**(K−2) for the levels, (3V+2)·_BI_NODES
    for the blocks of the V > 2 passes."""
    half = V ** (K - 1)
    return half + half // V + (3 * V + 2) * _BI_NODES


_BI_CHUNKS = 4  # parallel items per round: contiguous runs of subtrees, one scratch buffer each


@njit(cache=True, nogil=True, fastmath=FASTMATH_POLY, error_model="numpy", parallel=True)
def _backward_induction_par(reward, ref_cond, beta, V, H, values_out, logpi_out, logp_out, leaves=_BI_LEAVES):
    P = reward.shape[0]
    rounds, K = _bi_rounds(V, H, leaves)
    nr = rounds.shape[1] - 1
    ws = _bi_scratch(V, K)
    roots = np.empty((P, rounds[2, nr]))
    w0 = np.empty(ws)
    for step in range(2 * nr):  # rounds bottom-up (backward), then top-down (forward)
        backward = step < nr
        r = step if backward else 2 * nr - 1 - step
        n_it = P * V ** (rounds[1, r] - rounds[0, r])
        n_ch = min(n_it, _BI_CHUNKS)
        if n_ch == 1:
            _bi_items(0, n_it, r, backward, reward, ref_cond, beta, V, rounds, roots, values_out,
                      logpi_out, logp_out, w0)
        else:
            for i in prange(n_ch):
                c = np.int64(i)
                if not backward:
                    c = n_ch - 1 - c
                w = np.empty(ws)
                _bi_items(c * n_it // n_ch, (c + 1) * n_it // n_ch, r, backward, reward, ref_cond, beta, V,
                          rounds, roots, values_out, logpi_out, logp_out, w)


@njit(cache=True, nogil=True, fastmath=FASTMATH_POLY, error_model="numpy")
def _backward_induction_ser(reward, ref_cond, beta, V, H, values_out, logpi_out, logp_out, leaves=_BI_LEAVES):
    P = reward.shape[0]
    rounds, K = _bi_rounds(V, H, leaves)
    nr = rounds.shape[1] - 1
    R = rounds[2, nr]
    buf = np.empty(P * R + _bi_scratch(V, K))  # the roots, then the scratch: one allocation
    roots = buf[: P * R].reshape((P, R))
    w = buf[P * R :]
    for step in range(2 * nr):
        backward = step < nr
        r = step if backward else 2 * nr - 1 - step
        n_it = P * V ** (rounds[1, r] - rounds[0, r])
        _bi_items(0, n_it, r, backward, reward, ref_cond, beta, V, rounds, roots, values_out,
                  logpi_out, logp_out, w)


def backward_induction(reward, ref_cond, beta, V, H, values_out, logpi_out, logp_out):
    """reward (P,T); ref_cond (P,n_int,V) log π_ref(a|s); values_out (P,n_int) = V_h(s);
    logpi_out (P,n_int,V) = log π*(a|s); logp_out (P,T) = Σ_h log π*(a_h|s_h) by a forward
    pass. Nodes are flat, depth by depth. Rounds of subtrees of at most ``_BI_LEAVES`` leaves,
    bottom-up then top-down; each level of a subtree is one fused pass over its nodes (see the
    section comment). The parallel driver (``P·T ≥ _PARALLEL_MIN_WORK``) splits each round's
    (prompt, subtree) items into up to ``_BI_CHUNKS`` contiguous runs; every item's arithmetic is
    the same in both drivers and for any thread count. No allocation beyond the subtrees' roots
    (``P·T/_BI_LEAVES`` doubles) and one scratch of ``_BI_LEAVES·(1/V + 1/V²)`` doubles per run
    (at most 384 KiB), whatever ``T``."""
    k = _backward_induction_par if _parallel(reward.size) else _backward_induction_ser
    k(reward, ref_cond, float(beta), V, H, values_out, logpi_out, logp_out, int(_BI_LEAVES))


_STREAM_G = 64  # members per prange item: the block's log-sigmoids (2U × 64 doubles) stay in L2
_SP_PIECE = 512  # softplus scratch length


@njit(cache=True, nogil=True, fastmath=FASTMATH_POLY, error_model="numpy")
def _stream_block(b, scores, pos, neg, offset, seg_idx, seg_cnt, seg_ptr, scale, out):
    """Members ``64b … 64b+63`` of :func:`class_bt_loglik_stream`."""
    K, F = scores.shape
    U = pos.shape[0]
    S = seg_ptr.shape[0] - 1
    G = _STREAM_G
    UG = U * G
    k0 = b * G
    g = min(G, K - k0)
    sT = np.empty((F, G))
    for i in range(G):
        if i < g:
            for f in range(F):
                sT[f, i] = scores[k0 + i, f]
        else:
            for f in range(F):
                sT[f, i] = 0.0
    sTf = sT.ravel()
    L = np.empty(2 * UG)  # [0, UG): log σ(z), [UG, 2UG): log σ(−z); row u holds the block
    for u in range(U):
        p = pos[u]
        q = neg[u]
        o = offset[u]
        ub = max(u, 0) * G  # indices provably ≥ 0 (no wrap-around tests): LLVM vectorises
        pb = max(p, 0) * G
        qb = max(q, 0) * G
        for i in range(G):
            L[ub + i] = scale * (sTf[pb + i] - sTf[qb + i]) + o
    sp = np.empty(_SP_PIECE)
    b1 = np.empty(_SP_PIECE, np.int64)
    b2 = np.empty(_SP_PIECE, np.int64)
    for j0 in range(0, UG, _SP_PIECE):
        m = min(_SP_PIECE, UG - j0)
        softplus_neg_abs_block(L[j0 : j0 + m], sp[:m], b1, b2)
        jb = max(j0, 0)
        jc = max(UG + j0, 0)
        for j in range(m):
            zj = L[jb + j]
            s_ = sp[j]
            L[jb + j] = min(zj, 0.0) - s_
            L[jc + j] = min(-zj, 0.0) - s_
    acc = np.zeros(G)
    for t in range(S):
        for e in range(seg_ptr[t], seg_ptr[t + 1]):
            w = seg_cnt[e]
            base = max(seg_idx[e], 0) * G  # provably ≥ 0: no wrap-around test, so LLVM vectorises
            for i in range(G):
                acc[i] += w * L[base + i]
        for i in range(g):
            out[t, k0 + i] = acc[i]


@njit(cache=True, nogil=True, fastmath=FASTMATH_POLY, error_model="numpy", parallel=True)
def _stream_par(scores, pos, neg, offset, seg_idx, seg_cnt, seg_ptr, scale, out):
    for b in prange((scores.shape[0] + _STREAM_G - 1) // _STREAM_G):
        _stream_block(b, scores, pos, neg, offset, seg_idx, seg_cnt, seg_ptr, scale, out)


@njit(cache=True, nogil=True, fastmath=FASTMATH_POLY, error_model="numpy")
def _stream_ser(scores, pos, neg, offset, seg_idx, seg_cnt, seg_ptr, scale, out):
    for b in range((scores.shape[0] + _STREAM_G - 1) // _STREAM_G):
        _stream_block(b, scores, pos, neg, offset, seg_idx, seg_cnt, seg_ptr, scale, out)


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


# -- RL step over a finite policy class -------------------------------------------------------
# The three kernels below are serial: on 2 cores their parallel versions were no faster
# (1-3 ms for 16,388 members, memory- and exp-bound) and cost ~1 s of compilation each.


@njit(cache=True, nogil=True, fastmath=FASTMATH_POLY, error_model="numpy")
def finite_rl_parts(logp, ref_logp, probs_out, kl_out):
    """logp (K, P, T) members' sequence log-probs, ref_logp (P, T): probs_out = e^{logp}
    (:func:`exp_block`) and kl_out (K, P) = KL(π_k(·|x) ‖ π_ref(·|x)) with the conventions of
    ``softrl.kl_rows``: the support of π_k is read from ``logp > −∞``; +∞ where π_k has mass
    where π_ref has none; a value within ``8·eps·Σ_y p(|log p| + |log q|)`` of 0 is exactly 0.
    These are the reward-independent parts of ``J_β(π_k; r) = Σ_x ρ_x (Σ_y π_k r − β KL_k(x))``."""
    K, P, T = logp.shape
    PT = P * T
    eps8 = 8.0 * 2.220446049250313e-16
    CH = 4096  # exp in long vectorised runs over the flat array
    b1 = np.empty(CH, np.int64)
    b2 = np.empty(CH, np.int64)
    lpf = logp.ravel()
    prf = probs_out.ravel()
    for j0 in range(0, K * PT, CH):
        m = min(CH, K * PT - j0)
        exp_block(lpf[j0 : j0 + m], prf[j0 : j0 + m], b1[:m], b2[:m])
    for k in range(K):
        for x in range(P):
            s = 0.0
            scale = 0.0
            n_inf = 0
            for y in range(T):
                a = logp[k, x, y]
                q = ref_logp[x, y]
                p = probs_out[k, x, y]
                supp = a > -np.inf
                both = supp and q > -np.inf
                s += p * (a - q) if both else 0.0
                scale += p * (abs(a) + abs(q)) if both else 0.0
                n_inf += 1 if supp and not both else 0
            if n_inf > 0:
                kl_out[k, x] = np.inf
            elif abs(s) <= eps8 * scale:
                kl_out[k, x] = 0.0
            else:
                kl_out[k, x] = s


@njit(cache=True, nogil=True, fastmath=FASTMATH)
def finite_J(probs, kl, rewards, beta, rho, out):
    """out (m, K): ``out[j, k] = Σ_{x: ρ_x > 0} ρ_x (Σ_y probs[k, x, y] rewards[j, x, y] − β kl[k, x])``
    for m rewards at once (each member's probabilities are read once; prompts with ρ_x = 0 are
    skipped, so ``0·∞`` never gives NaN; rewards are finite)."""
    K, P, T = probs.shape
    m = rewards.shape[0]
    for k in range(K):
        for j in range(m):
            J = 0.0
            for x in range(P):
                if rho[x] == 0.0:
                    continue
                e = 0.0
                for y in range(T):
                    e += probs[k, x, y] * rewards[j, x, y]
                J += rho[x] * (e - beta * kl[k, x])
            out[j, k] = J


# -- exact policy metrics over completions ---------------------------------------------------
_PW_LEAF = 128  # pairwise summation: leaves of 128 terms (8 running sums each), as numpy's


@njit(cache=True, nogil=True, fastmath=FASTMATH_POLY, error_model="numpy")
def _leaf_sum8(x, m):
    """Σ x[:m] with 8 running sums then ((s0+s1)+(s2+s3))+((s4+s5)+(s6+s7)), tail serial
    (numpy's pairwise leaf)."""
    if m < 8:
        s = 0.0
        for i in range(m):
            s += x[i]
        return s
    acc = np.empty(8)
    for lane in range(8):
        acc[lane] = x[lane]
    m8 = m - m % 8
    for i in range(8, m8, 8):
        for lane in range(8):
            acc[lane] += x[i + lane]
    s = ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]))
    for i in range(m8, m):
        s += x[i]
    return s


@njit(cache=True, nogil=True, fastmath=FASTMATH_POLY, error_model="numpy")
def _policy_row(lp, lq, r, with_r, w):
    """One row of :func:`policy_row_stats`: returns (Σ p(log p − log q), Σ p(|log p| + |log q|),
    number of y with p > 0 = q, Σ p r) over the support of p (``lp > −∞``) where q > 0."""
    T = lp.shape[0]
    L = _PW_LEAF
    p = w[0]
    tk = w[1]
    ts = w[2]
    tr = w[3]
    b1 = w[4].view(np.int64)
    b2 = w[5].view(np.int64)
    stack = np.empty((3, 64))
    level = np.empty(64, np.int64)
    top = 0
    n_inf = 0
    for i0 in range(0, T, L):
        m = min(L, T - i0)
        lps = lp[i0 : i0 + m]
        lqs = lq[i0 : i0 + m]
        exp_block(lps, p[:m], b1[:m], b2[:m])
        for i in range(m):
            a = lps[i]
            q = lqs[i]
            supp = a > -np.inf
            both = supp and q > -np.inf
            tk[i] = p[i] * (a - q) if both else 0.0
            ts[i] = p[i] * (abs(a) + abs(q)) if both else 0.0
            n_inf += 1 if supp and not both else 0
        s0 = _leaf_sum8(tk, m)
        s1 = _leaf_sum8(ts, m)
        s2 = 0.0
        if with_r:
            rs = r[i0 : i0 + m]
            for i in range(m):
                tr[i] = p[i] * rs[i]
            s2 = _leaf_sum8(tr, m)
        lvl = 0
        while top > 0 and level[top - 1] == lvl:  # pairwise: merge equal-sized partial sums
            top -= 1
            s0 = stack[0, top] + s0
            s1 = stack[1, top] + s1
            s2 = stack[2, top] + s2
            lvl += 1
        stack[0, top] = s0
        stack[1, top] = s1
        stack[2, top] = s2
        level[top] = lvl
        top += 1
    s0 = 0.0
    s1 = 0.0
    s2 = 0.0
    for k in range(top - 1, -1, -1):
        s0 = stack[0, k] + s0
        s1 = stack[1, k] + s1
        s2 = stack[2, k] + s2
    return s0, s1, n_inf, s2


@njit(cache=True, nogil=True, fastmath=FASTMATH_POLY, error_model="numpy")
def _policy_rows_item(i, lp, lq, r, with_r, kl_out, er_out):
    w = np.empty((6, _PW_LEAF))
    s, scale, n_inf, er = _policy_row(lp[i], lq[i % lq.shape[0]], r[i % r.shape[0]], with_r, w)
    if n_inf > 0:
        kl_out[i] = np.inf
    elif abs(s) <= 8.0 * 2.220446049250313e-16 * scale:
        kl_out[i] = 0.0
    else:
        kl_out[i] = s
    er_out[i] = er


@njit(cache=True, nogil=True, fastmath=FASTMATH_POLY, error_model="numpy", parallel=True)
def _policy_rows_par(lp, lq, r, with_r, kl_out, er_out):
    for i in prange(lp.shape[0]):
        _policy_rows_item(i, lp, lq, r, with_r, kl_out, er_out)


@njit(cache=True, nogil=True, fastmath=FASTMATH_POLY, error_model="numpy")
def _policy_rows_ser(lp, lq, r, with_r, kl_out, er_out):
    for i in range(lp.shape[0]):
        _policy_rows_item(i, lp, lq, r, with_r, kl_out, er_out)


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



# -- instance generation --------------------------------------------------------------------
@njit(cache=True, nogil=True)
def standard_normal_fill(rng, out):
    """``out`` (1-D, C-contiguous) ← ``rng.standard_normal(out.size)``: the same draws, bit for
    bit, and the same generator state after (numba implements ``Generator.standard_normal`` with
    numpy's ziggurat on the generator's own bit generator; tested). 2.5 ns per draw on this
    machine against numpy's 8.5 ns (1M draws, median of 20; why numpy's own fill is slower was
    not investigated)."""
    for i in range(out.shape[0]):
        out[i] = rng.standard_normal()


@njit(cache=True, nogil=True, fastmath=FASTMATH_POLY, error_model="numpy")
def _soft_optimal_chunk(k0, c, ref_logp, z, scale, beta, out):
    """Members ``k0 … k0+c−1`` of :func:`soft_optimal_tables`."""
    n, P, T = z.shape
    PT = P * T
    d = np.empty(c * PT)
    e = np.empty(c * PT)
    shift = np.empty(c * P)
    b1 = np.empty(c * PT, np.int64)
    b2 = np.empty(c * PT, np.int64)
    for i in range(c):
        k = k0 + i
        for x in range(P):
            m = -np.inf
            for y in range(T):
                s = ref_logp[x, y] + scale * z[k, x, y] / beta
                out[k, x, y] = s
                m = max(m, s)
            if not np.isfinite(m):
                m = 0.0
            shift[i * P + x] = m
            for y in range(T):
                d[(i * P + x) * T + y] = out[k, x, y] - m
    exp_block(d, e, b1, b2)
    for i in range(c):
        k = k0 + i
        for x in range(P):
            acc = 0.0
            for y in range(T):
                acc += e[(i * P + x) * T + y]
            lse = math.log(acc) + shift[i * P + x]
            for y in range(T):
                out[k, x, y] = out[k, x, y] - lse


@njit(cache=True, nogil=True, fastmath=FASTMATH_POLY, error_model="numpy")
def _soft_optimal_ser(ref_logp, z, scale, beta, out, C):
    n = z.shape[0]
    for j in range((n + C - 1) // C):
        _soft_optimal_chunk(j * C, min(C, n - j * C), ref_logp, z, scale, beta, out)


@njit(cache=True, nogil=True, fastmath=FASTMATH_POLY, error_model="numpy", parallel=True)
def _soft_optimal_par(ref_logp, z, scale, beta, out, C):
    n = z.shape[0]
    for j in prange((n + C - 1) // C):
        _soft_optimal_chunk(j * C, min(C, n - j * C), ref_logp, z, scale, beta, out)


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


# -- pair counts of nested sample sizes (genver.preferences.NestedCounts) --------------------
@njit(cache=True, nogil=True)
def sorted_common_count(a, b):
    """Number of values two sorted unique int64 arrays share (one linear walk)."""
    i = j = c = 0
    while i < a.size and j < b.size:
        if a[i] < b[j]:
            i += 1
        elif a[i] > b[j]:
            j += 1
        else:
            c += 1
            i += 1
            j += 1
    return c


@njit(cache=True, nogil=True)
def merge_pair_counts(keys, cnt, new, new_cnt, T, keys_out, cnt_out, x_out, pos_out, neg_out):
    """Merge the sorted unique keys ``keys`` (counts ``cnt``) with ``new`` (``new_cnt``) into
    ``keys_out``/``cnt_out`` (sorted, unique, counts summed; sized by
    :func:`sorted_common_count`) and decode each key ``(x·T + y⁺)·T + y⁻`` into ``x_out``,
    ``pos_out``, ``neg_out``. Counts are float64 integers (exact below 2**53)."""
    i = j = m = 0
    while i < keys.size or j < new.size:
        if j == new.size or (i < keys.size and keys[i] < new[j]):
            k, c = keys[i], cnt[i]
            i += 1
        elif i == keys.size or new[j] < keys[i]:
            k, c = new[j], float(new_cnt[j])
            j += 1
        else:
            k, c = keys[i], cnt[i] + float(new_cnt[j])
            i += 1
            j += 1
        keys_out[m] = k
        cnt_out[m] = c
        rest = k // T
        neg_out[m] = k - rest * T
        x = rest // T
        x_out[m] = x
        pos_out[m] = rest - x * T
        m += 1


@njit(cache=True, nogil=True, fastmath=FASTMATH)
def sym_upper_matvec(indptr, indices, data, diag, p, q):
    """``q = (D + U + Uᵀ) p`` for a strictly upper-triangular CSR matrix ``U`` (``indptr``,
    ``indices``, ``data``) and a diagonal ``diag``, in one pass over ``U``'s entries: row ``i``
    gathers ``U[i, j] p[j]`` into ``q[i]`` and scatters ``U[i, j] p[i]`` into ``q[j]`` (the
    Laplacian-plus-ridge product of the conjugate-gradient path of ``genver._solve``). Serial:
    the same bits for any thread count."""
    n = p.size
    for i in range(n):
        q[i] = diag[i] * p[i]
    for i in range(n):
        pi = p[i]
        s = q[i]
        for k in range(indptr[i], indptr[i + 1]):
            j = indices[k]
            d = data[k]
            s += d * p[j]
            q[j] += d * pi
        q[i] = s


@njit(cache=True, nogil=True, fastmath=FASTMATH)
def pair_laplacian_times(pos, neg, w, phi, out):
    """``out = L_w φ`` for the weighted pair Laplacian ``L_w = Σ_k w_k (e_{a_k} − e_{b_k})(e_{a_k} −
    e_{b_k})ᵀ`` (``a = pos``, ``b = neg``; flat coordinates) and a dense ``φ`` of shape
    ``(n, d)``, in one pass over the pairs, ``O(pairs·d)`` time and no ``(pairs, d)`` array
    (the linear reward MLE's Hessian ``Dᵀ diag(w) D = φᵀ L_w φ`` with ``D = φ[a] − φ[b]``).
    Serial: the same bits for any thread count."""
    out[:] = 0.0
    d = phi.shape[1]
    for k in range(pos.shape[0]):
        a = pos[k]
        b = neg[k]
        wk = w[k]
        for j in range(d):
            t = wk * (phi[a, j] - phi[b, j])
            out[a, j] += t
            out[b, j] -= t


@njit(cache=True, nogil=True, fastmath=FASTMATH_ORDERED)
def class_bt_loglik_exact(scores, members, pos, neg, offset, count, scale, out):
    """:func:`class_bt_loglik` for the listed ``members`` only (``out[i]`` for member
    ``members[i]``), with libm's ``log1p`` (:func:`log_sigmoid`): every term accurate *relative*
    to itself, also where ``log σ(z) ≈ −e^{−z}`` is far below the vectorised kernel's absolute
    3e-16 (the saturated members of a finite class, e.g. −1e-19, −1e-59, −1e-119, which that
    kernel rounds to the same 0). Serial and scalar: for the few members a pick leaves tied."""
    for i in range(members.shape[0]):
        k = members[i]
        s = 0.0
        for j in range(pos.shape[0]):
            s += count[j] * log_sigmoid(scale * (scores[k, pos[j]] - scores[k, neg[j]]) + offset[j])
        out[i] = s


# -- exact metrics at scale: level masses, grouped Bradley–Terry likelihood, token conditionals --
@njit(cache=True, nogil=True)
def level_mass_add(level, w, mass):
    """``mass[level[i]] += w[i]`` for ``i`` in order (``np.bincount(level, weights=w)`` added
    into ``mass``, the same bits: each level's terms are summed in index order)."""
    for i in range(level.shape[0]):
        mass[level[i]] += w[i]


@njit(cache=True, nogil=True)
def first_appearance_groups(code, n_codes, gid_out):
    """Groups of equal ``code[y] ∈ [0, n_codes)`` numbered in order of first appearance:
    ``gid_out[y]`` = the group of ``y``; returns each group's first ``y`` (one pass, a table of
    ``n_codes`` entries)."""
    rank = np.full(n_codes, -1, np.int64)
    first = np.empty(min(n_codes, code.shape[0]), np.int64)
    n = 0
    for y in range(code.shape[0]):
        c = code[y]
        g = rank[c]
        if g < 0:
            g = n
            rank[c] = n
            first[n] = y
            n += 1
        gid_out[y] = g
    return first[:n]


@njit(cache=True, nogil=True, fastmath=FASTMATH_ORDERED)
def _grouped_bt_loglik_prompt(p, r_model, r_true, mass, starts, out):
    s = 0.0
    for i in range(starts[p], starts[p + 1]):
        if mass[i] == 0.0:
            continue
        inner = 0.0
        for j in range(starts[p], starts[p + 1]):
            d = r_model[i] - r_model[j]
            dt = r_true[i] - r_true[j]
            inner += mass[j] * (sigmoid(dt) * log_sigmoid(d) + sigmoid(-dt) * log_sigmoid(-d))
        s += mass[i] * inner
    out[p] = s


@njit(cache=True, nogil=True, fastmath=FASTMATH, parallel=True)
def _grouped_bt_loglik_par(r_model, r_true, mass, starts, out):
    for p in prange(out.shape[0]):
        _grouped_bt_loglik_prompt(p, r_model, r_true, mass, starts, out)


@njit(cache=True, nogil=True, fastmath=FASTMATH)
def _grouped_bt_loglik_ser(r_model, r_true, mass, starts, out):
    for p in range(out.shape[0]):
        _grouped_bt_loglik_prompt(p, r_model, r_true, mass, starts, out)


def grouped_bt_loglik(r_model, r_true, mass, starts, work, out):
    """Per prompt p: ``Σ_{g,h} M_g M_h [σ(r*_g − r*_h) log σ(r_g − r_h) + σ(r*_h − r*_g) log σ(r_h −
    r_g)]`` over the prompt's segment ``[starts[p], starts[p+1])`` of groups (joint values
    ``(r_g, r*_g)`` and μ-masses ``M_g``, flat over prompts); groups of mass 0 are skipped in the
    outer sum. ``work`` = ``Σ_p K_p²`` picks the serial driver below ``_PARALLEL_MIN_WORK``.
    With one completion per group, in completion order, this is term for term the ungrouped
    ``O(T²)`` double sum."""
    k = _grouped_bt_loglik_par if _parallel(work) else _grouped_bt_loglik_ser
    k(r_model, r_true, mass, starts, out)


@njit(cache=True, nogil=True, fastmath=FASTMATH_ORDERED)
def _token_cond_prompt(p, logp, V, H, logV, buf, cond_out):
    """Prefix marginals bottom-up (``buf`` holds depth ``h+1``'s, overwritten in place by depth
    ``h``'s: node ``j`` reads entries ``jV … jV+V−1 ≥ j``) and ``log π(a|s) = M(s·a) − M(s)``."""
    n_child = V**H
    src = logp[p]
    for h in range(H - 1, -1, -1):
        n = n_child // V
        off = (V**h - 1) // (V - 1)
        for j in range(n):
            m = -np.inf
            for a in range(V):
                m = max(m, src[j * V + a])
            ms = m if np.isfinite(m) else 0.0
            s = 0.0
            for a in range(V):
                s += math.exp(src[j * V + a] - ms)
            parent = math.log(s) + ms  # log 0 = −inf: every child has probability 0
            if np.isfinite(parent):
                for a in range(V):
                    cond_out[p, off + j, a] = src[j * V + a] - parent
            else:
                for a in range(V):
                    cond_out[p, off + j, a] = -logV
            buf[j] = parent
        src = buf
        n_child = n


@njit(cache=True, nogil=True, fastmath=FASTMATH, parallel=True)
def _token_cond_par(logp, V, H, logV, cond_out):
    for p in prange(logp.shape[0]):
        _token_cond_prompt(p, logp, V, H, logV, np.empty(max(logp.shape[1] // V, 1)), cond_out)


@njit(cache=True, nogil=True, fastmath=FASTMATH)
def _token_cond_ser(logp, V, H, logV, cond_out):
    buf = np.empty(max(logp.shape[1] // V, 1))
    for p in range(logp.shape[0]):
        _token_cond_prompt(p, logp, V, H, logV, buf, cond_out)


def token_conditionals(logp, V, H, cond_out):
    """``cond_out`` (P, n_internal, V) ← ``log π(a|x,s)`` from sequence log-probabilities ``logp``
    (P, T = V**H): per prompt, the prefix marginals ``M(s) = log Σ_a e^{M(s·a)}`` (``m = max_a``,
    ``m + log Σ_a e^{M(s·a) − m}``, ``a`` in order; ``m = 0`` when every child is ``−∞``) and
    ``M(s·a) − M(s)``, or ``−log V`` where ``M(s) = −∞``. One buffer of ``T/V`` doubles per prompt
    (``O(T)`` memory); prompts in parallel when ``P·T ≥ _PARALLEL_MIN_WORK``, each prompt serial
    (the same bits for any driver or thread count)."""
    k = _token_cond_par if _parallel(logp.size) else _token_cond_ser
    k(logp, V, H, math.log(V), cond_out)


@njit(cache=True, nogil=True)
def level_index(u, row, offset, out):
    """``out[y] = offset + i`` with ``u[i] = row[y]`` for sorted distinct ``u`` holding every value
    of ``row`` (``np.searchsorted(u, row) + offset``): a branch-free binary search whose halving
    steps depend on ``len(u)`` only, run on 16 entries at a time so the searches overlap."""
    n = u.shape[0]
    T = row.shape[0]
    B = 16
    lo = np.zeros(B, np.int64)
    for y0 in range(0, T, B):
        m = min(B, T - y0)
        for k in range(m):
            lo[k] = 0
        length = n
        while length > 1:
            half = length >> 1
            for k in range(m):
                lo[k] += half * (u[lo[k] + half] <= row[y0 + k])
            length -= half
        for k in range(m):
            out[y0 + k] = lo[k] + offset
