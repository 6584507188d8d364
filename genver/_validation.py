"""Argument checks shared by the public API, and the one random-state convention.

Every public function validates its inputs here and raises ``ValueError`` naming the
offending argument; nothing is silently clipped, wrapped or turned into NaN.
``random_state`` follows scikit-learn: ``None`` (fresh entropy), an ``int`` seed, a
``numpy.random.SeedSequence`` or a ``numpy.random.Generator`` (used as is).
"""
from __future__ import annotations

import numbers

import numpy as np


def check_beta(beta, name: str = "beta") -> float:
    """``β > 0`` and finite."""
    if isinstance(beta, (bool, np.bool_)) or not isinstance(beta, numbers.Real):
        raise ValueError(f"{name} must be a positive real number, got {beta!r}")
    beta = float(beta)
    if not np.isfinite(beta) or beta <= 0:
        raise ValueError(f"{name} must be finite and > 0, got {beta}")
    return beta


def check_positive_int(value, name: str, minimum: int = 1) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    value = int(value)
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return value


def check_prompt_weights(rho, P: int, name: str = "prompt_weights") -> np.ndarray:
    """Prompt distribution ``ρ``: shape (P,), non-negative, finite, summing to 1
    (within 1e-9). ``None`` means uniform."""
    if rho is None:
        return np.full(P, 1.0 / P)
    r = np.asarray(rho, dtype=np.float64)
    if r.shape != (P,):
        raise ValueError(f"{name} must have shape (P,) = ({P},), got {r.shape}")
    if not np.isfinite(r).all() or (r < 0).any():
        raise ValueError(f"{name} must be finite and non-negative")
    if abs(r.sum() - 1.0) > 1e-9:
        raise ValueError(f"{name} must sum to 1, sums to {r.sum():.12g}")
    return np.ascontiguousarray(r)


def as_generator(random_state) -> np.random.Generator:
    """``None`` | int | SeedSequence | Generator → Generator."""
    if isinstance(random_state, np.random.Generator):
        return random_state
    if random_state is None or isinstance(random_state, np.random.SeedSequence):
        return np.random.default_rng(random_state)
    if isinstance(random_state, numbers.Integral) and not isinstance(random_state, (bool, np.bool_)):
        if random_state < 0:
            raise ValueError(f"random_state must be a non-negative integer, got {random_state}")
        return np.random.default_rng(int(random_state))
    raise ValueError(
        f"random_state must be None, an int, a SeedSequence or a Generator, got {type(random_state).__name__}"
    )
