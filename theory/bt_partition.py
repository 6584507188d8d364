r"""The partition function cancels in Bradley–Terry (a lemma of Swamy et al. 2026;
docs/concepts.md, "The regularised objective and its optimum").

Proposition
-----------
Let ``π* = π*_r`` be the soft-optimal policy of a reward ``r`` (reference ``π_ref``, weight ``β``)
and ``r_{π*}(x,y) = β log π*(y|x)/π_ref(y|x)`` its induced (DPO-implicit) reward. Then

    r_{π*}(x,y) = r(x,y) − β log Z_r(x)          (pointwise), hence
    σ(r(x,y1) − r(x,y2)) = σ(r_{π*}(x,y1) − r_{π*}(x,y2))   for all x, y1, y2:

the Bradley–Terry model of ``r`` and of the policy's implicit reward coincide, because the
per-prompt constant ``β log Z_r(x)`` cancels in the difference (Rafailov et al. 2023, DPO, Eq. 5–6).
This is what makes the offline route a likelihood over policies.

What is measured
----------------
Random instances (see :func:`genver.theory._common.random_world`), every ``(x, y1, y2)`` of the
``P·T²`` pairs enumerated. ``π*`` from :func:`genver.softrl.soft_optimal` (token-level backward
induction), ``r_{π*}`` from :func:`genver.classes.induced_reward`. Sound rows:

* ``"pointwise"``: ``max |r_{π*} − (r − β log Z_r)| / max(1, |r|)``;
* ``"bradley_terry"``: ``max(|Δr − Δr_{π*}| / max(1, |Δr|), |σ(Δr) − σ(Δr_{π*})|)`` over pairs,
  ``Δf = f(x,y1) − f(x,y2)``.

Tolerance ``1e-9``. Broken variant: use ``π*``'s log-probabilities *without* the reference,
``Δ' = β(log π*(y1) − log π*(y2))``; it misses ``β(log π_ref(y1) − log π_ref(y2))``, which is large
for a non-uniform ``π_ref``.
"""
from __future__ import annotations

import numpy as np

from ..classes import induced_reward
from ..softrl import soft_optimal
from ._common import case_generators, make_row, random_world, world_settings

ID = "bt_partition"
STATEMENT = "σ(r(y1) − r(y2)) = σ(r_{π*_r}(y1) − r_{π*_r}(y2)): β log Z_r cancels"
TOLERANCE = 1e-9


def _sigmoid(z):
    return np.where(z >= 0, 1.0 / (1.0 + np.exp(-np.abs(z))), np.exp(-np.abs(z)) / (1.0 + np.exp(-np.abs(z))))


def _pair_discrepancy(f_true, f_model):
    d_true = f_true[:, :, None] - f_true[:, None, :]  # (P, T, T)
    d_model = f_model[:, :, None] - f_model[:, None, :]
    logit = np.max(np.abs(d_true - d_model) / np.maximum(1.0, np.abs(d_true)))
    prob = np.max(np.abs(_sigmoid(d_true) - _sigmoid(d_model)))
    return float(max(logit, prob))


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
        _sp, beta, ref, r = w["space"], w["beta"], w["ref"], w["r_star"]
        so = soft_optimal(r, ref, beta)
        r_pi = induced_reward(so.policy, ref, beta)
        st = world_settings(w)
        point = np.max(np.abs(r_pi - (r - beta * so.log_Z[:, None])) / np.maximum(1.0, np.abs(r)))
        rows.append(make_row(ID, "sound", 2 * i, point, TOLERANCE, "pointwise", **st))
        rows.append(make_row(ID, "sound", 2 * i + 1, _pair_discrepancy(r, r_pi), TOLERANCE,
                             "bradley_terry", **st))
        rows.append(make_row(ID, "broken", i, _pair_discrepancy(r, beta * so.policy.logp), TOLERANCE,
                             "reference omitted", **st))
    return rows
