r"""Instance generators: the class pairs whose generation–verification gap the sweeps dial.

Each generator takes validated parameters and two random generators and returns an
:class:`Instance`: the world (``TreeSpace``, ``π_ref``, ``β``, ``r*``, prompt weights ``ρ``,
sampling policy ``μ``), the verifier class ``R``, the generator class ``Π`` and, where it is
smaller than ``Π``, the restricted class ``Π(R)``.

=================  =============================================================================
``finite_gap``     ``R`` = ``K_R`` random reward tables (entries ``N(0, scale²)``), ``r* ∈ R``;
                   ``Π = Π(R) ∪ D`` with ``|D| = n_distractors`` soft-optimal policies of other
                   random tables. Gap ``log(|Π|/|R|)``; none at ``|D| = 0`` (Theorem 2.2).
``linear_gap``     ``R = {w·φ}`` with named trajectory features (non-additive by default),
                   ``r* = w*·φ``, ``w* ~ N(0, w_scale²)`` (with ``normalise_reward``, rescaled so
                   the per-prompt spread of ``r*`` is ``w_scale``); ``Π`` = tabular class with
                   ``P(V**H − 1)`` parameters. The gap grows with ``H`` (``gap_horizon``) and
                   closes as ``φ`` spans every reward (``gap_verifier``).
``additive_target``  ``r*(x, y) = −scale·Hamming(y, t_x)`` for a hidden per-prompt target ``t``;
                   ``R`` = additive rewards (position-token features), ``Π`` = the position-token
                   log-linear class over a uniform ``π_ref``: isomorphic classes, no gap
                   (the ROUGE-L analogue).
=================  =============================================================================

Randomness: ``instance_rng`` draws the world and classes in a fixed order (reference, reward
class, true reward, distractors), so settings that differ only in a later knob (e.g. the number
of distractors) share everything drawn before it — common random numbers across the sweep.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..classes import (FinitePolicyClass, LinearRewardClass, LogLinearPolicyClass, SoftOptimalPolicyClass,
                       TabularPolicyClass, random_reward_class)
from ..features import token_features, trajectory_features
from ..policy import Policy, random_policy, uniform_policy
from ..spaces import TreeSpace

__all__ = ["Instance", "GENERATORS", "describe"]


@dataclass
class Instance:
    space: TreeSpace
    ref: Policy
    beta: float
    reward_true: np.ndarray
    reward_class: object
    policy_class: object
    restricted_class: object | None = None
    sampler: Policy | None = None
    prompt_weights: np.ndarray | None = None
    extra: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.sampler is None:
            self.sampler = self.ref


def _world(p, rng):
    sp = TreeSpace(p["P"], p["V"], p["H"])
    if p.get("uniform_ref", False):
        ref = uniform_policy(sp)
    else:
        ref = random_policy(sp, rng, concentration=p["ref_concentration"])
    return sp, ref


def _sampler(p, sp, ref, rng):
    c = p.get("sampler_concentration", 0.0)
    return ref if not c else random_policy(sp, rng, concentration=c)


def finite_gap(p, rng) -> Instance:
    sp, ref = _world(p, rng)
    R = random_reward_class(sp, p["K_R"], rng, scale=p["scale"])
    r_star = R.member(0)
    Pi_R = FinitePolicyClass.soft_optimal_of(R, ref, p["beta"])
    Pi = Pi_R.with_distractors(p["n_distractors"], rng, ref=ref, beta=p["beta"], scale=p["scale"])
    return Instance(sp, ref, p["beta"], r_star, R, Pi, restricted_class=Pi_R, sampler=_sampler(p, sp, ref, rng))


def _per_prompt(phi):
    """Block-diagonal replication: separate weights for every prompt."""
    P, T, d = phi.shape
    out = np.zeros((P, T, P * d))
    for x in range(P):
        out[x, :, x * d : (x + 1) * d] = phi[x]
    return out


def linear_gap(p, rng) -> Instance:
    sp, ref = _world(p, rng)
    specs = [(f, {"d": p["d"]}) if f in ("random_gaussian", "random_orthonormal") else f for f in p["features"]]
    phi = trajectory_features(sp, specs, rng)
    if p["per_prompt"]:
        phi = _per_prompt(phi)
    R = LinearRewardClass(sp, phi)
    w_star = p["w_scale"] * rng.standard_normal(R.n_params)
    if p["normalise_reward"]:  # per-completion spread of r* (centred per prompt) = w_scale
        r = R.reward(w_star)
        spread = float(np.sqrt(np.mean((r - r.mean(axis=1, keepdims=True)) ** 2)))
        w_star = w_star * (p["w_scale"] / spread) if spread > 0 else w_star
    return Instance(sp, ref, p["beta"], R.reward(w_star), R, TabularPolicyClass(sp),
                    restricted_class=SoftOptimalPolicyClass(R, ref, p["beta"]),
                    sampler=_sampler(p, sp, ref, rng), extra={"w_star": w_star})


def additive_target(p, rng) -> Instance:
    sp = TreeSpace(p["P"], p["V"], p["H"])
    ref = uniform_policy(sp)
    hamming = trajectory_features(sp, "hamming", rng)[..., 0]
    r_star = p["scale"] * hamming
    R = LinearRewardClass(sp, trajectory_features(sp, "position_token"))
    Pi = LogLinearPolicyClass(sp, ref, token_features(sp, "position_token"))
    return Instance(sp, ref, p["beta"], r_star, R, Pi, sampler=_sampler(p, sp, ref, rng))


_WORLD = {"P": (int, 4), "V": (int, 2), "H": (int, 4), "beta": (float, 1.0),
          "ref_concentration": (float, 1.0), "sampler_concentration": (float, 0.0)}

#: name -> (function, {parameter: (type, default)})
GENERATORS = {
    "finite_gap": (finite_gap, {**_WORLD, "K_R": (int, 4), "n_distractors": (int, 0), "scale": (float, 0.5)}),
    "linear_gap": (linear_gap, {**_WORLD, "P": (int, 1),
                                "features": (list, ["token_counts", "parity", "first_last_match"]),
                                "d": (int, 4), "per_prompt": (bool, False), "w_scale": (float, 1.0),
                                "normalise_reward": (bool, False),
                                "uniform_ref": (bool, False)}),
    "additive_target": (additive_target, {"P": (int, 4), "V": (int, 3), "H": (int, 4), "beta": (float, 1.0),
                                          "scale": (float, 1.0), "sampler_concentration": (float, 0.0)}),
}


def _log_size(cls):
    s = getattr(cls, "size", None)
    return float(np.log(s)) if s else np.nan


def describe(inst: Instance, n_probe: int = 3, random_state=0) -> dict:
    """Gap descriptors: log-size / parameter counts of ``R``, ``Π(R)`` and ``Π``; the largest
    reverse-KL residual of projecting ``π*_r`` (``r`` drawn from ``R``) onto ``Π`` — 0 when
    ``Π(R) ⊆ Π``; and the ratio the finite-class bound predicts, ``log|Π| / log|R|`` (or
    ``dim Π / dim R`` for parametric classes)."""
    R, Pi = inst.reward_class, inst.policy_class
    rng = np.random.default_rng(random_state)
    out = {"log_size_R": _log_size(R), "log_size_Pi": _log_size(Pi),
           "n_params_R": float(R.n_params) if getattr(R, "n_params", None) else np.nan,
           "n_params_Pi": float(Pi.n_params) if getattr(Pi, "n_params", None) else np.nan}
    if inst.restricted_class is not None:
        out["log_size_Pi_R"] = _log_size(inst.restricted_class)
    if np.isfinite(out["log_size_R"]) and np.isfinite(out["log_size_Pi"]) and out["log_size_R"] > 0:
        out["predicted_ratio"] = out["log_size_Pi"] / out["log_size_R"]
    elif np.isfinite(out["n_params_R"]) and np.isfinite(out["n_params_Pi"]):
        out["predicted_ratio"] = out["n_params_Pi"] / out["n_params_R"]
    else:
        out["predicted_ratio"] = np.nan
    residual = 0.0
    for _ in range(n_probe):
        if hasattr(R, "tables"):
            r = R.member(int(rng.integers(R.size)))
        else:
            r = R.reward(rng.standard_normal(R.n_params))
        residual = max(residual, Pi.rl_argmax(r, inst.ref, inst.beta, inst.prompt_weights).residual_kl)
    out["containment_residual"] = residual
    return out
