r"""Vectorisable polynomial ``e^x``, ``log x`` and ``log(1 + e^{−|z|})`` (private).

libm's ``exp``/``log``/``log1p`` are opaque calls that LLVM cannot vectorise, so the stream
kernel, backward induction and the policy metrics use these instead; their bits do not depend on
the thread count or on how a loop is blocked.

Math
----
* ``e^{x} = 2^{n} e^{r}`` with ``n = ⌊x/ln2 + ½⌋`` and ``r = x − n ln2`` (Cody–Waite, ``ln2`` in
  two parts, ``|r| ≤ ln2/2``), ``e^{r}`` by its degree-13 Taylor polynomial (Horner), ``2^{n}`` as
  ``2^{n₁}·2^{n₂}`` built from bit patterns (each factor a normal number; a subnormal result
  rounds once, in the last product); arguments below −750 give 0.
* ``log1p(t) = 2 atanh(t/(2 + t))`` (odd series to degree 33, ``t ∈ [0, 1]``);
  ``log x = k ln2 + log1p(f − 1)`` for ``x = 2^{k} f``, ``f ∈ [1, 2)`` read from the bit pattern.
* ``log σ(z) = min(z, 0) − log1p(e^{−|z|})``: relative error ≤ 2e-15 against libm over the whole
  float range (tested).
* :func:`_exp_poly` / :func:`_log_poly` are the block versions' operations on one entry (the same
  bits), built with LLVM bitcasts so that a loop calling them stays one vectorised pass;
  :func:`_add_rounded` is an ``fadd`` LLVM may not fuse with the product feeding it.
"""
from __future__ import annotations

from typing import Any

import numpy as np
from llvmlite import ir as llvmir  # type: ignore[import-untyped]  # llvmlite ships no types
from numba import extending, njit
from numba.core import types

from .base import FASTMATH_POLY

#: ``numba.extending.intrinsic``, typed as ``Any``: mypy reads an intrinsic's ``__call__`` as taking
#: the typing context too, but in jitted code it is called with its value arguments only.
intrinsic: Any = extending.intrinsic

# -- vectorisable log-sigmoid ------------------------------------------------------------
# libm's exp/log1p are opaque calls that LLVM cannot vectorise (numba ships no SVML here), so
# the stream kernel evaluates log σ(z) = min(z, 0) − log1p(e^{−|z|}) with polynomials in two
# branch-free loops over a block (8 doubles per AVX-512 instruction). Compiled without
# ``reassoc``/``arcp``/``afn`` so the argument reduction and Horner order stay as written.


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
