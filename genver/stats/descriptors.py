"""The class-dimension descriptors of a setting, against which :mod:`genver.stats.scaling` fits
``N_ε ∝ dim^a`` (their table, and the bound's prediction, are in that module's docstring):
columns of a sweep's ``settings`` table (:func:`genver.experiments.generators.describe`), the
ratios computed from their parts (:func:`descriptor_values`), each with the class it measures
(``Π``, ``R`` or their ratio) and its family (``n_params``, ``log_size``, ``predicted``) in
:data:`DESCRIPTORS`; :func:`predicted_log_n` is the bound's ``log N`` in a family.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = ["DESCRIPTORS", "DEFAULT_AGAINST", "DEFAULT_RATIO_AGAINST", "descriptor_values"]

#: descriptor -> (class it measures: "Pi" | "R" | "ratio", family: "n_params" | "log_size" | "predicted")
DESCRIPTORS = {
    "n_params_Pi": ("Pi", "n_params"),
    "n_params_R": ("R", "n_params"),
    "log_size_Pi": ("Pi", "log_size"),
    "log_size_R": ("R", "log_size"),
    "log_size_Pi_R": ("R", "log_size"),
    "dim_ratio": ("ratio", "n_params"),
    "log_size_ratio": ("ratio", "log_size"),
    "predicted_ratio": ("ratio", "predicted"),
}

#: descriptors fitted by default: each route against both classes' dimensions, the ratio against theirs
DEFAULT_AGAINST = ("n_params_Pi", "n_params_R")
DEFAULT_RATIO_AGAINST = "dim_ratio"


def descriptor_values(settings: pd.DataFrame, name: str) -> pd.Series:
    """The descriptor ``name`` per setting (index ``setting_id``); the ratios are computed from
    their parts (NaN where a part is missing or not positive).

    Parameters
    ----------
    settings : pandas.DataFrame
        one row per ``setting_id`` with the descriptor columns (``DIR/settings.parquet``).
    name : str
        a descriptor of :data:`DESCRIPTORS`.

    Returns
    -------
    pandas.Series
        float per setting, indexed by ``setting_id``.

    Examples
    --------
    >>> import pandas as pd
    >>> s = pd.DataFrame({"setting_id": ["a", "b"], "n_params_Pi": [30, 120], "n_params_R": [3, 4]})
    >>> descriptor_values(s, "dim_ratio").tolist()
    [10.0, 30.0]
    """
    if name not in DESCRIPTORS:
        raise ValueError(f"against: unknown descriptor {name!r} (choose from {', '.join(DESCRIPTORS)})")
    s = settings.drop_duplicates("setting_id").set_index("setting_id")

    def col(c):
        return pd.to_numeric(s[c], errors="coerce").astype(float) if c in s.columns else pd.Series(np.nan, s.index)
    if name == "dim_ratio":
        return col("n_params_Pi") / col("n_params_R")
    if name == "log_size_ratio":
        return col("log_size_Pi") / col("log_size_R")
    return col(name)


def predicted_log_n(settings: pd.DataFrame, route: str, against: str) -> pd.Series:
    """The bound's ``log N`` (up to a constant) per setting for ``route`` in the family of ``against``:
    ``log dim_Π`` (offline), ``log dim_R`` (online), ``log dim_Π − log dim_R`` (ratio), or
    ``log predicted_ratio`` for the ``predicted`` family (the ratio only; NaN otherwise)."""
    family = DESCRIPTORS[against][1]
    if family == "predicted":
        v = descriptor_values(settings, "predicted_ratio") if route == "ratio" else None
        if v is None:
            s = settings.drop_duplicates("setting_id").set_index("setting_id")
            return pd.Series(np.nan, s.index)
        return _log(v)
    pi, r = (descriptor_values(settings, f"{family}_{c}") for c in ("Pi", "R"))
    return {"offline": _log(pi), "online": _log(r), "ratio": _log(pi) - _log(r)}[route]


def _log(v: pd.Series) -> pd.Series:
    """``log v``, NaN where ``v`` is not finite and positive."""
    v = v.astype(float)
    return np.log(v.where(np.isfinite(v) & (v > 0)))


def descriptor_lists(against, ratio_against) -> tuple[list[str], list[str]]:
    """``against`` and ``ratio_against`` as lists of known descriptor names (``None``: no ratio fit)."""
    against = [against] if isinstance(against, str) else list(against)
    ratio_against = [] if ratio_against is None else (
        [ratio_against] if isinstance(ratio_against, str) else list(ratio_against))
    for name in [*against, *ratio_against]:
        if name not in DESCRIPTORS:
            raise ValueError(f"against: unknown descriptor {name!r} (choose from {', '.join(DESCRIPTORS)})")
    return against, ratio_against
