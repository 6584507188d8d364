"""What every estimator shares: the result object, the data and reference checks, the timer,
and the per-class solver dispatch.

Each estimator is a short public function (a *front door*: it validates its arguments, then
calls the solver of the class it was given) wrapped in :func:`timed`, and one
``functools.singledispatch`` solver per estimator made by :func:`unsupported`; each class
family registers its solvers in its own module (:mod:`genver.estimators.finite`,
:mod:`~genver.estimators.tabular`, :mod:`~genver.estimators.linear`). A new class family is one
module of ``@solver.register`` functions; a class without a solver is a ``ValueError`` that
names the estimator and the class.

The result object every estimator returns:

``policy`` is the fitted policy ``π̂`` (``None`` for pure reward estimators), ``reward`` the
fitted reward table ``r̂`` (P, T) where there is one. ``objective`` is the maximised objective
(e.g. the Bradley–Terry log-likelihood minus the penalty). Finite classes report the chosen
member indices (lowest index on ties); parametric classes the fitted parameters.

Well-posedness: ``set_valued`` is True when the objective has more than one maximiser (ties
between finite members with different policies, or unpenalised tabular coordinates that no
pair touches); ``identified`` then marks, per (x, y), the coordinates the data pin down.
``grad_norm`` (max-abs gradient at the solution), ``iterations`` and ``converged`` certify
the optimiser; exhaustive enumeration has ``grad_norm = 0`` and ``converged = True``. An RL
step's result (:func:`rl_fit`, shared by :mod:`genver.estimators.mle` and
:mod:`genver.estimators.mle_paths`) is exact for finite and tabular classes and
``converged`` when the optimiser's max-abs gradient ``‖∇J_β‖_∞ ≤ 1e-6`` for parametric ones.
"""
from __future__ import annotations

import functools
import time
from dataclasses import dataclass, field

import numpy as np

from .._solve import NEWTON_RTOL
from ..policy import Policy
from ..preferences import PairCounts, Preferences


@dataclass
class FitResult:
    """The result of every estimator (see the module docstring).

    Attributes
    ----------
    estimator : str
        The estimator's name (``"dpo"``, ``"rm_rl"``, …).
    objective : float
        The maximised objective.
    policy : Policy or None
        The fitted ``π̂`` (``None`` for pure reward estimators).
    reward : np.ndarray or None
        The fitted reward ``r̂``, shape ``(P, T)``, where there is one.
    policy_index, reward_index : int or None
        The chosen member of a finite class.
    params : np.ndarray or None
        The fitted parameters of a parametric class.
    converged : bool
        The optimiser's certificate held (always True for enumeration).
    iterations : int
        Optimiser iterations.
    grad_norm : float
        Max-abs gradient at the solution.
    set_valued : bool
        The objective has more than one maximiser.
    identified : np.ndarray or None
        Per ``(x, y)``: the coordinates the data pin down (tabular classes).
    wall_time : float
        Seconds from entry to return (written by :func:`timed`).
    extra : dict
        Estimator-specific details.
    """
    estimator: str
    objective: float
    policy: Policy | None = None
    reward: np.ndarray | None = None
    policy_index: int | None = None
    reward_index: int | None = None
    params: np.ndarray | None = None
    converged: bool = True
    iterations: int = 0
    grad_norm: float = 0.0
    set_valued: bool = False
    identified: np.ndarray | None = None
    wall_time: float = 0.0
    extra: dict = field(default_factory=dict)


#: Default ridge weight ``λ`` for the tabular classes (see :mod:`genver.estimators.tabular`).
DEFAULT_L2 = 1e-2


def as_counts(data) -> PairCounts:
    """The sufficient statistics of preference data: ``data.counts()`` for a
    :class:`~genver.preferences.Preferences` stream, ``data`` itself for
    :class:`~genver.preferences.PairCounts`; anything else is a ``ValueError``.

    Parameters
    ----------
    data : Preferences or PairCounts
        The preference pairs (a stream, or its sufficient statistics).

    Returns
    -------
    PairCounts
        The unique triples with their counts.
    """
    if isinstance(data, Preferences):
        return data.counts()
    if isinstance(data, PairCounts):
        return data
    raise ValueError(f"data must be Preferences or PairCounts, got {type(data).__name__}")


def check_ref(ref, space, what: str = "the data's space") -> Policy:
    """``ref`` if it is a :class:`~genver.policy.Policy` on ``space``, else a ``ValueError``.

    Parameters
    ----------
    ref : Any
        The value to check.
    space : TreeSpace
        The space it must live on.
    what : str
        How the message names ``space``.

    Returns
    -------
    Policy
        ``ref``.
    """
    if not isinstance(ref, Policy) or ref.space != space:
        raise ValueError(f"ref must be a Policy on {what}")
    return ref


def timed(fn):
    """The estimators' shared epilogue: ``fn`` (validation, then the class's solver) is timed
    and the wall time from entry to return is written into the :class:`FitResult` it returns.

    Parameters
    ----------
    fn : Callable[..., FitResult]
        The estimator's front door.

    Returns
    -------
    Callable[..., FitResult]
        ``fn`` wrapped (same signature and docstring).
    """
    @functools.wraps(fn)
    def wrapper(*args, **kwargs) -> FitResult:
        t0 = time.perf_counter()
        res = fn(*args, **kwargs)
        res.wall_time = time.perf_counter() - t0
        return res
    return wrapper


def unsupported(estimator: str, role: str):
    """The default of an estimator's per-class solver (``functools.singledispatch``): a
    ``ValueError`` naming the estimator and the class it has no solver for.

    Parameters
    ----------
    estimator : str
        The estimator's name, for the message.
    role : str
        ``"policy"`` or ``"reward"``: which class the solver dispatches on.

    Returns
    -------
    functools.singledispatch function
        The solver, to which class families ``register`` their implementations.
    """
    def solver(cls, *args, **kwargs):
        raise ValueError(f"{estimator}: unsupported {role} class {type(cls).__name__}")
    solver.__name__ = f"{estimator}_solver"
    return functools.singledispatch(solver)


def bt_weights(d: np.ndarray, count: np.ndarray) -> np.ndarray:
    """``c σ(d) σ(−d)``: the Bradley–Terry curvature of each pair with margin ``d`` and count
    ``c``, without overflow.

    Parameters
    ----------
    d : np.ndarray
        The margins ``r(y⁺) − r(y⁻)``.
    count : np.ndarray
        The pairs' counts, the shape of ``d``.

    Returns
    -------
    np.ndarray
        The weights, the shape of ``d``.
    """
    e = np.exp(-np.abs(d))
    return count * e / (1.0 + e) ** 2


def newton_gtol(c: PairCounts) -> float:
    """The Newton solvers' gradient tolerance on pair data: ``NEWTON_RTOL · max(1, N)``.

    Parameters
    ----------
    c : PairCounts
        The pair counts (``N`` = their sum).

    Returns
    -------
    float
        The tolerance on ``max|∇|``.
    """
    return NEWTON_RTOL * max(1.0, float(c.count.sum()))


def rl_fit(res, reward, wall_time: float = 0.0) -> FitResult:
    """The :class:`FitResult` of an RL step from the class's :class:`~genver.classes.RLResult`
    (``converged``: exact, or the optimiser's gradient norm ≤ 1e-6).

    Parameters
    ----------
    res : RLResult
        The class's RL result.
    reward : array_like
        The reward the step maximised against, shape ``(P, T)``.
    wall_time : float
        Seconds to report.

    Returns
    -------
    FitResult
        ``estimator = "rl_step"``, ``extra["residual_kl"]``.
    """
    return FitResult("rl_step", res.objective, policy=res.policy, reward=np.asarray(reward),
                     policy_index=res.index, params=res.params, iterations=res.iterations,
                     converged=res.params is None or res.grad_norm <= 1e-6,
                     grad_norm=res.grad_norm, wall_time=wall_time, extra={"residual_kl": res.residual_kl})
