r"""Telescoping of the token-level log-ratios of the soft-optimal policy (a lemma of Swamy et al.
2026; docs/concepts.md).

Proposition
-----------
With the backward induction of :mod:`genver.softrl` (``V_H = r``, ``Q_h(s,a) = V_{h+1}(s·a)``,
``V_h(s) = β log Σ_a π_ref(a|s) e^{Q_h(s,a)/β}``, ``π*(a|s) = π_ref(a|s) e^{(Q_h(s,a) − V_h(s))/β}``),
for every prompt ``x``, completion ``y = (a_1..a_H)`` with prefixes ``s_h = (a_1..a_{h})``
(``s_0`` empty) and every depth ``0 ≤ k ≤ H``:

    Σ_{h<k} β log π*(a_{h+1}|s_h)/π_ref(a_{h+1}|s_h) = V_k(s_k) − V_0(x),

in particular (``k = H``) ``Σ_h β log π*(a_h|s_h)/π_ref(a_h|s_h) = r(x,y) − V_0(x)``: the
sequence-level implicit reward of ``π*`` is a sum of token-level soft advantages
``Q_h − V_h`` (Rafailov et al. 2024, "From r to Q*", Eq. 9; Ziebart 2010, MaxEnt IRL).

What is measured
----------------
Random instances (:func:`genver.theory._common.random_world`). The token conditionals of ``π*``
(:attr:`SoftOptimal.policy.cond`, from the numba kernel) and of ``π_ref`` are read token by token
at each ``(x, y, h)`` from the completion index (plain numpy indexing, independent of the
sequence log-prob code), and the partial sums compared with ``V_k(s_k) − V_0(x)`` at every
depth. Discrepancy: ``max |lhs − rhs| / max(1, |rhs|)`` over ``x, y, k``. Tolerance ``1e-9``.

Broken variant: the wrong sign, ``r(x,y) + V_0(x)`` at ``k = H`` (discrepancy ``2|V_0|``).
"""
from __future__ import annotations

import numpy as np

from ..softrl import soft_optimal
from ._common import case_generators, make_row, random_world, world_settings

ID = "telescoping"
STATEMENT = "Σ_h β log π*(a_h|s_h)/π_ref(a_h|s_h) = r(x,y) − V_0(x) (and V_k(s_k) − V_0 at every depth)"
TOLERANCE = 1e-9


def _partial_sums(sp, cond_pi, cond_ref, beta):
    """(H+1, P, T): Σ_{h<k} β(log π*(a|s_h) − log π_ref(a|s_h)) for k = 0..H."""
    y = np.arange(sp.T)
    out = np.zeros((sp.H + 1, sp.P, sp.T))
    for h in range(sp.H):
        node = sp.offset(h) + y // sp.V ** (sp.H - h)
        a = (y // sp.V ** (sp.H - h - 1)) % sp.V
        step = beta * (cond_pi[:, node, a] - cond_ref[:, node, a])
        out[h + 1] = out[h] + step
    return out


def check(quick: bool = True, random_state=None) -> list[dict]:
    """Measure :data:`STATEMENT` on random instances, and a broken variant beside it (module
    docstring): one tidy row per case (:func:`genver.theory._common.make_row`).

    Parameters
    ----------
    quick : bool
        Few instances (the CI size) rather than the full run.
    random_state : None, int, SeedSequence or Generator
        Source of the instances (:func:`genver.theory._common.case_generators`).

    Returns
    -------
    list of dict
        The rows: ``variant`` (``sound`` | ``broken``), ``discrepancy`` and the instance's settings.
    """
    n = 200 if quick else 3000
    rows = []
    for i, rng in enumerate(case_generators(random_state, n)):
        w = random_world(rng)
        sp, beta, ref, r = w["space"], w["beta"], w["ref"], w["r_star"]
        so = soft_optimal(r, ref, beta)
        lhs = _partial_sums(sp, so.policy.cond, ref.cond, beta)
        V0 = so.V(0)  # (P, 1)
        worst = 0.0
        for k in range(sp.H + 1):
            Vk = np.repeat(so.V(k), sp.V ** (sp.H - k), axis=1)  # V_k(s_k) broadcast to completions
            rhs = Vk - V0
            worst = max(worst, float(np.max(np.abs(lhs[k] - rhs) / np.maximum(1.0, np.abs(rhs)))))
        st = world_settings(w)
        rows.append(make_row(ID, "sound", i, worst, TOLERANCE, "all depths", **st))
        rhs_bad = r + V0
        rows.append(make_row(ID, "broken", i,
                             np.max(np.abs(lhs[sp.H] - rhs_bad) / np.maximum(1.0, np.abs(rhs_bad))),
                             TOLERANCE, "wrong sign of V_0", **st))
    return rows
