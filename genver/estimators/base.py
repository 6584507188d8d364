"""The result object every estimator returns.

``policy`` is the fitted policy ``π̂`` (``None`` for pure reward estimators), ``reward`` the
fitted reward table ``r̂`` (P, T) where there is one. ``objective`` is the maximised objective
(e.g. the Bradley–Terry log-likelihood minus the penalty). Finite classes report the chosen
member indices (lowest index on ties); parametric classes the fitted parameters.

Well-posedness: ``set_valued`` is True when the objective has more than one maximiser (ties
between finite members with different policies, or unpenalised tabular coordinates that no
pair touches); ``identified`` then marks, per (x, y), the coordinates the data pin down.
``grad_norm`` (max-abs gradient at the solution), ``iterations`` and ``converged`` certify
the optimiser; exhaustive enumeration has ``grad_norm = 0`` and ``converged = True``.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..policy import Policy


@dataclass
class FitResult:
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
