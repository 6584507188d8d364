"""Warnings for degenerate but legal set-ups of a sweep.

A spec can be valid and still unable to say what a user runs it for. Such set-ups are run as
asked, with a :class:`DegenerateSetupWarning` (a :class:`GenverWarning`, itself a
``UserWarning``) raised by :func:`genver.experiments.runner.run` before any unit runs:

* **one seed** (``[data] seeds = 1``): every confidence interval of the report is a bootstrap
  over the seeds (:mod:`genver.stats`), and resampling one seed gives that seed back every time:
  each CI collapses to a point, N_ε and the ratio N_ε(offline)/N_ε(online) carry no uncertainty,
  and a verdict cannot tell a gap from seed noise.

(A grid of sample sizes whose largest ``n`` reaches ε for no estimator is not warned about: the
report marks each such N_ε as censored, ``> n_max``.) Filter them as any warning:
``warnings.simplefilter("ignore", DegenerateSetupWarning)``; the CLI prints each as one
``genver: warning: ...`` line.
"""
from __future__ import annotations

import warnings

__all__ = ["GenverWarning", "DegenerateSetupWarning", "degenerate_setup", "warn_degenerate_setup"]


class GenverWarning(UserWarning):
    """Base class of the warnings genver raises (filter them all with this category)."""


class DegenerateSetupWarning(GenverWarning):
    """A legal set-up whose results cannot answer what the spec asks (see the module docstring)."""


def degenerate_setup(spec) -> list[str]:
    """What is degenerate about a spec, one sentence each.

    Parameters
    ----------
    spec : genver.experiments.spec.Spec
        A parsed spec (after ``--smoke``, if any, is applied).

    Returns
    -------
    list of str
        One message per degenerate feature, naming the spec and the key; empty when none.
    """
    out = []
    if spec.seeds == 1:
        out.append(f"{spec.source}: [data] seeds = 1: the bootstrap over seeds has one seed to resample, so every "
                   f"confidence interval (of the means, of N_ε and of the sample-efficiency ratio) is a single "
                   f"point and no verdict can tell a gap from seed noise; use seeds >= 2 (20 or more for a CI)")
    return out


def warn_degenerate_setup(spec) -> None:
    """Raise a :class:`DegenerateSetupWarning` for each message of :func:`degenerate_setup`.

    Parameters
    ----------
    spec : genver.experiments.spec.Spec
        A parsed spec.
    """
    for message in degenerate_setup(spec):
        warnings.warn(message, DegenerateSetupWarning, stacklevel=3)
