r"""Shared conventions of the theory checks: the row format, the summary, seeds, random
instances, and the registry of check modules.

Every check module ``genver.theory.<ID>`` exposes

* ``ID``        — short identifier (equal to the module name), e.g. ``"reverse_kl"``;
* ``STATEMENT`` — the proposition in one line (the module docstring states it in full);
* ``TOLERANCE`` — the largest discrepancy that counts as "the proposition holds";
* ``check(quick: bool, random_state) -> list[dict]`` — draws many random instances, measures
  the discrepancy of each and returns tidy rows (:func:`make_row`).

Row format (one dict per measured case; extra keys are instance settings and diagnostics)
-------------------------------------------------------------------------------------------
``check``        the module ``ID``
``variant``      ``"sound"`` (the proposition as stated) or ``"broken"`` (a deliberately wrong
                 variant that a falsifiable check must catch)
``case``         running number within the variant (0, 1, ...)
``discrepancy``  a non-negative number, defined in the module docstring; 0 means exact agreement
``tolerance``    the module's ``TOLERANCE``
``detail``       a short free-text label of the sub-statement measured (e.g. ``"finite"``)

Summary (:func:`summarise`): ``cases`` = number of sound rows, ``max_discrepancy`` = the largest
sound discrepancy, ``broken_discrepancy`` = the largest broken discrepancy (a broken variant
is caught when *some* drawn instance exposes it), ``passed`` = ``max_discrepancy ≤ tolerance``
and ``broken_discrepancy > tolerance``. A NaN discrepancy fails the check.

Seeds: ``check(quick, random_state)`` builds one ``numpy.random.SeedSequence`` from
``random_state`` (None | int | SeedSequence | Generator) and spawns one child per drawn case
(:func:`case_generators`), so each case is reproducible on its own and every check gives the same
rows whether run alone (``--only``) or with the others.
"""
from __future__ import annotations

import importlib
import math
import numbers

import numpy as np

__all__ = ["CHECK_IDS", "registry", "make_row", "summarise", "root_seed", "case_generators",
           "random_world", "world_settings", "coverage_of", "max_abs_logp_diff", "sample_sizes",
           "SAME_POLICY_TV", "tv_distance", "finite_policy_gap", "random_finite_class"]

#: Every check module, in the order the runner reports them.
CHECK_IDS = (
    "reverse_kl",
    "bt_partition",
    "telescoping",
    "thm_2_2",
    "thm_2_3",
    "thm_3_1",
    "data_processing",
    "finite_sample_complexity",
    "literature",
)

_REQUIRED = ("ID", "STATEMENT", "TOLERANCE", "check")


def registry(only=None) -> dict:
    """``{ID: module}`` for every registered check (or the ids in ``only``), in report order.

    Raises ``KeyError`` naming the first unknown id in ``only``."""
    ids = list(CHECK_IDS)
    if only is not None:
        if isinstance(only, str):
            only = [only]
        for i in only:
            if i not in CHECK_IDS:
                raise KeyError(i)
        ids = [i for i in CHECK_IDS if i in set(only)]
    out = {}
    for i in ids:
        mod = importlib.import_module(f"genver.theory.{i}")
        missing = [a for a in _REQUIRED if not hasattr(mod, a)]
        if missing or mod.ID != i:
            raise RuntimeError(f"check module {i!r} is malformed (missing {missing}, ID={getattr(mod, 'ID', None)!r})")
        out[i] = mod
    return out


def make_row(check_id: str, variant: str, case: int, discrepancy: float, tolerance: float,
             detail: str = "", **settings) -> dict:
    """One tidy row (see the module docstring)."""
    if variant not in ("sound", "broken"):
        raise ValueError(f"variant must be 'sound' or 'broken', got {variant!r}")
    row = {"check": check_id, "variant": variant, "case": int(case), "discrepancy": float(discrepancy),
           "tolerance": float(tolerance), "detail": detail}
    for k, v in settings.items():
        if isinstance(v, (np.floating,)):
            v = float(v)
        elif isinstance(v, (np.integer,)):
            v = int(v)
        elif isinstance(v, np.bool_):
            v = bool(v)
        row[k] = v
    return row


def summarise(mod, rows: list[dict], seconds: float = float("nan")) -> dict:
    """The one summary row of a check (see the module docstring)."""
    sound = [r["discrepancy"] for r in rows if r["variant"] == "sound"]
    broken = [r["discrepancy"] for r in rows if r["variant"] == "broken"]
    tol = float(mod.TOLERANCE)

    def _max(v):
        if not v:
            return float("nan")
        return float("nan") if any(math.isnan(x) for x in v) else float(max(v))

    mx, bx = _max(sound), _max(broken)
    passed = bool(sound) and bool(broken) and mx <= tol and bx > tol  # NaN compares False
    return {"id": mod.ID, "statement": mod.STATEMENT, "cases": len(sound), "max_discrepancy": mx,
            "tolerance": tol, "broken_discrepancy": bx, "passed": passed, "seconds": seconds}


# -- seeds ----------------------------------------------------------------------------------
def root_seed(random_state) -> np.random.SeedSequence:
    """``random_state`` (None | int | SeedSequence | Generator) → a SeedSequence."""
    if isinstance(random_state, np.random.SeedSequence):
        return random_state
    if isinstance(random_state, np.random.Generator):
        return np.random.SeedSequence(int(random_state.integers(2**63)))
    if random_state is None:
        return np.random.SeedSequence()
    if isinstance(random_state, numbers.Integral) and not isinstance(random_state, (bool, np.bool_)):
        if random_state < 0:
            raise ValueError(f"random_state must be a non-negative integer, got {random_state}")
        return np.random.SeedSequence(int(random_state))
    raise ValueError(f"random_state must be None, an int, a SeedSequence or a Generator, "
                     f"got {type(random_state).__name__}")


def case_generators(random_state, n: int, stream: int = 0) -> list[np.random.Generator]:
    """``n`` independent generators, one per case; ``stream`` separates sub-studies of one check
    (case ``i`` of stream ``s`` is the same whatever the other streams draw)."""
    root = root_seed(random_state)
    ss = np.random.SeedSequence(root.entropy, spawn_key=tuple(root.spawn_key) + (int(stream),))
    return [np.random.default_rng(c) for c in ss.spawn(n)]


# -- random instances -------------------------------------------------------------------------
_SHAPES = [(P, V, H) for P in (1, 2, 3) for V in (2, 3) for H in (1, 2, 3) if V**H <= 27]


def random_world(rng: np.random.Generator, *, max_T: int = 27, max_PT: int = 81, beta_range=(0.1, 5.0),
                 reward_scale_range=(0.3, 3.0)) -> dict:
    """A random instance: space ``(P, V, H)``, ``β`` (log-uniform in ``beta_range``), a random
    full-support reference ``π_ref`` (Dirichlet nodes, random concentration and temperature),
    a sampler ``μ`` whose concentration controls coverage (temperature in [0.15, 1]: low
    temperature puts almost all mass on a few completions), and a true reward ``r*`` with
    i.i.d. normal entries of a random scale."""
    from ..policy import random_policy
    from ..spaces import TreeSpace

    shapes = [s for s in _SHAPES if s[1] ** s[2] <= max_T and s[0] * s[1] ** s[2] <= max_PT]
    P, V, H = shapes[int(rng.integers(len(shapes)))]
    sp = TreeSpace(P, V, H)
    beta = float(np.exp(rng.uniform(*np.log(beta_range))))
    ref = random_policy(sp, rng, concentration=float(rng.uniform(0.5, 3.0)),
                        temperature=float(rng.uniform(0.5, 1.5)))
    mu_temp = float(rng.uniform(0.15, 1.0))
    mu = random_policy(sp, rng, concentration=1.0, temperature=mu_temp)
    scale = float(np.exp(rng.uniform(*np.log(reward_scale_range))))
    r_star = scale * rng.standard_normal(sp.shape)
    return {"space": sp, "beta": beta, "ref": ref, "mu": mu, "mu_temperature": mu_temp,
            "reward_scale": scale, "r_star": r_star}


def world_settings(w: dict) -> dict:
    """The scalar settings of a :func:`random_world` instance, for rows."""
    sp = w["space"]
    return {"P": sp.P, "V": sp.V, "H": sp.H, "T": sp.T, "beta": w["beta"],
            "mu_temperature": w["mu_temperature"], "reward_scale": w["reward_scale"]}


def coverage_of(data) -> float:
    """Fraction of the ``P·T`` trajectories that appear in at least one pair."""
    sp = data.space
    seen = np.zeros(sp.P * sp.T, dtype=bool)
    seen[data.x * sp.T + data.y_pos] = True
    seen[data.x * sp.T + data.y_neg] = True
    return float(seen.mean())


def max_abs_logp_diff(a: np.ndarray, b: np.ndarray) -> float:
    """``max |log a − log b|`` over entries; ``+inf`` when the supports differ, 0 where both are
    ``−inf``."""
    a = np.asarray(a, dtype=float)
    b = np.asarray(b, dtype=float)
    fa, fb = np.isfinite(a), np.isfinite(b)
    if not np.array_equal(fa, fb):
        return float("inf")
    if not fa.any():
        return 0.0
    return float(np.max(np.abs(a[fa] - b[fa])))


#: Two members of a finite class whose policies are within this total variation (every prompt)
#: are the same optimum in float64: at small β soft-optimal policies are nearly deterministic and
#: ``J_β`` (or any likelihood) cannot separate members differing only by ~1e-12 of mass (seen:
#: two members 1.05e-12 apart in TV, tied in ``J_β`` to rounding, picked differently by the two
#: routes). Kept a decade below the checks' tolerance (1e-9), so it hides no real disagreement.
SAME_POLICY_TV = 1e-10


def tv_distance(a_logp: np.ndarray, b_logp: np.ndarray) -> float:
    """``max_x ½ Σ_y |a(y|x) − b(y|x)|`` for sequence log-probabilities of shape (..., P, T)."""
    return float(np.max(0.5 * np.abs(np.exp(a_logp) - np.exp(b_logp)).sum(axis=-1)))


def finite_policy_gap(i, j, a_logp, b_logp) -> float:
    """Discrepancy between two answers of a finite class (member indices ``i, j``):
    ``TV + 1[i ≠ j and TV > SAME_POLICY_TV]``."""
    tv = tv_distance(a_logp, b_logp)
    return tv + float(i != j and tv > SAME_POLICY_TV)


def sample_sizes(rng: np.random.Generator, PT: int, k: int) -> list[int]:
    """``k`` sample sizes drawn log-uniformly from ``[1, 20·P·T]``, always including one below
    ``P·T`` (partial coverage is then certain) — sorted, distinct."""
    hi = 20 * PT
    ns = {int(np.exp(rng.uniform(0.0, np.log(hi)))) for _ in range(k)}
    ns.add(int(rng.integers(1, max(2, PT))))
    return sorted(max(1, n) for n in ns)


def random_finite_class(rng, w):
    """A random finite policy class on the world ``w`` (:func:`random_world`): ``Π(R) ∪ D`` of a
    random ``R`` with up to 60 distractors, or ``K`` random policies; on worlds with several
    prompts, half the time with *twins* (members equal on prompt 0, different elsewhere)."""
    from ..classes import FinitePolicyClass, random_policy_class, random_reward_class

    sp, ref, beta = w["space"], w["ref"], w["beta"]
    if rng.random() < 0.5:
        R0 = random_reward_class(sp, int(rng.integers(2, 9)), rng, scale=w["reward_scale"])
        Pi = FinitePolicyClass.soft_optimal_of(R0, ref, beta).with_distractors(
            int(rng.integers(0, 61)), rng, ref=ref, beta=beta, scale=w["reward_scale"])
    else:
        Pi = random_policy_class(sp, int(rng.integers(2, 40)), rng, concentration=float(rng.uniform(0.5, 2)))
    if sp.P > 1 and rng.random() < 0.5:  # twins: equal on prompt 0, different elsewhere
        k = Pi.size
        src = rng.integers(k, size=max(1, k // 3))
        other = rng.integers(k, size=src.size)
        tw = Pi.logp[src].copy()
        tw[:, 1:] = Pi.logp[other][:, 1:]
        Pi = FinitePolicyClass(sp, np.concatenate([Pi.logp, tw]))
    return Pi
