r"""``Π(R) = { π*_r : r ∈ R }`` (``SoftOptimalPolicyClass``): its solvers, registered in
:mod:`genver.estimators.solvers`.

* A finite ``R``: ``Π(R)`` is the member list ``log π_ref + r_k/β − log Z_{r_k}``
  (:meth:`~genver.classes.SoftOptimalPolicyClass.as_finite`), fitted by enumeration
  (:mod:`genver.estimators.finite`); member ``k`` is ``π*_{r_k}``, so DPO also reports
  ``reward_index = k``.
* A linear ``R``: ``π_w(y|x) ∝ π_ref(y|x) exp(w·φ(x,y)/β)``, whose local reward is ``w·φ`` minus a
  per-prompt constant. DPO over it is the linear reward MLE (the same Bradley–Terry fit, ridge
  ``(λ/2)‖w‖²``) mapped through ``w ↦ π_w``; SFT over it is MaxEnt IRL over ``R``
  (:mod:`genver.estimators.linear`). IPO is not implemented for it. DPO needs the class's own
  ``(π_ref, β)``.
"""
from __future__ import annotations

import numpy as np

from .._solve import check_l2, converged
from ..classes import SoftOptimalPolicyClass
from .base import FitResult
from .finite import dpo_members, ipo_members, sft_members
from .linear import linear_demo_fit
from .solvers import dpo_solver, ipo_solver, reward_mle_solver, sft_solver

__all__: list[str] = []


@dpo_solver.register(SoftOptimalPolicyClass)
def _dpo(policy_class, c, ref, beta, l2):
    fin = policy_class.as_finite()
    if fin is not None:
        return dpo_members(fin, c, ref, beta, reward_indexed=True)
    ref.require_full_support("ref")
    if beta != policy_class.beta or not np.array_equal(ref.logp, policy_class.ref.logp):
        raise ValueError("Π(R) is defined for its own (ref, beta); DPO must use the same ones")
    rm = reward_mle_solver(policy_class.reward_class, c, l2)
    pol = policy_class.policy(rm.params)
    return FitResult("dpo", rm.objective, policy=pol, reward=rm.reward, params=rm.params,
                     converged=rm.converged, iterations=rm.iterations, grad_norm=rm.grad_norm, extra=rm.extra)


@ipo_solver.register(SoftOptimalPolicyClass)
def _ipo(policy_class, c, ref, scale, target, l2, average):
    fin = policy_class.as_finite()
    if fin is None:
        raise ValueError("ipo: unsupported policy class SoftOptimalPolicyClass of a linear reward class")
    return ipo_members(fin, c, ref, scale, target, average)


@sft_solver.register(SoftOptimalPolicyClass)
def _sft(policy_class, C, n, ref, beta, l2):
    fin = policy_class.as_finite()
    if fin is not None:
        return sft_members(fin, C)
    l2 = check_l2(0.0 if l2 is None else l2, positive=False)
    pref = policy_class.ref
    pref.require_full_support("policy_class.ref")
    res, g, logp = linear_demo_fit(C, pref.logp, policy_class.reward_class.phi, policy_class.beta, l2)
    w = res.x
    return FitResult("sft", -float(res.fun), policy=policy_class.policy(w),
                     reward=policy_class.reward_class.reward(w), params=w,
                     converged=converged(g, n), iterations=int(res.nit), grad_norm=g, extra={"l2": l2})
