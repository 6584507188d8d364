r"""The memory guard of a sweep: an estimate for the whole run, checked before anything is built.

``TreeSpace`` refuses one table of more than ``2**27`` entries, but a run holds many tables at
once — per unit (one setting, one seed) the world, both classes, the distractors, the pair
stream and the metrics — and ``workers`` units at a time. :func:`check_memory` refuses a spec
whose estimate exceeds the memory available, *before* the spec check builds any instance
(a ``P = 1, V = 2, H = 26`` world has tables of 512 MiB each; building them used to take a
minute and several GB before failing), naming the largest part and the key that sets it.

The estimate of one unit, in float64 words, with ``PT = P·V**H`` entries per table, ``K_R``
reward tables, ``K_Π = K_R + n_distractors`` policy members (finite classes), ``d`` features,
``n = max(sizes)`` pairs and ``S = len(sizes)``::

    world    = 16·PT                 π_ref, its conditionals, r*, π*, the sampler, metric temporaries
    classes  = PT·(K_R + 3·K_Π)      reward tables; member log-probs and their cached RL parts (π, KL)
             + 2·d·PT                feature arrays (linear / log-linear classes)
             + P·min(T, 2n, D)²      dense Laplacian blocks of the tabular fits (D = DENSE_MAX of
                                     genver._solve; larger prompts are solved sparse, below)
    streams  = 12·n                  the pair stream (x, y⁺, y⁻), its counts, a copy
             + 10·n                  the tabular fits' sparse Newton systems over the distinct
                                     pairs (CSR matrix, component labels, CG vectors; ~1.3 GiB
                                     measured for a DPO fit of 10⁷ pairs at T = 2²⁰)
    metrics  = 4·S·K_Π               likelihood paths, picks, metrics per size

The run needs ``workers × unit + RUN_OVERHEAD`` (the interpreter, numba's kernels, the
memos of the run's :class:`~genver.runcache.RunCache`). The limit is the machine's available memory
(``MemAvailable`` of ``/proc/meminfo``, else ``os.sysconf``), or the override: ``genver run
--memory-limit SIZE`` or the environment variable ``GENVER_MEMORY_LIMIT`` (``8G``, ``512M``,
bytes; ``off`` disables the check). The coefficients are generous: the check is meant to
stop runs that cannot fit, not to predict the peak.
"""
from __future__ import annotations

import os
import re

from .registry import GENERATORS

__all__ = ["unit_bytes", "check_memory", "available_bytes", "parse_size", "memory_limit", "RUN_OVERHEAD"]

#: bytes of a run outside its units: the interpreter and libraries, numba's kernels, the memos
RUN_OVERHEAD = 600 * 2**20
_UNITS = {"": 1, "b": 1, "k": 2**10, "kb": 2**10, "kib": 2**10, "m": 2**20, "mb": 2**20, "mib": 2**20,
          "g": 2**30, "gb": 2**30, "gib": 2**30, "t": 2**40, "tb": 2**40, "tib": 2**40}


def parse_size(text: str, what: str = "memory limit") -> int | None:
    """``"8G"``, ``"512MiB"``, ``"1.5g"``, ``"123456"`` -> bytes; ``"off"``/``"none"`` -> None.

    Parameters
    ----------
    text : str
        the size: a number with an optional unit (K, M, G, T, with or without ``B`` / ``iB``; powers
        of
        1024), or ``off`` / ``none``.
    what : str
        what the size is, named in the ``ValueError`` for malformed text.

    Returns
    -------
    int or None
        the size in bytes, or None for no limit.

    Examples
    --------
    >>> parse_size("8G"), parse_size("512MiB"), parse_size("1.5g"), parse_size("off")
    (8589934592, 536870912, 1610612736, None)
    """
    t = str(text).strip().lower()
    if t in ("off", "none", "no"):
        return None
    m = re.fullmatch(r"([0-9]*\.?[0-9]+(?:e[0-9]+)?)\s*([a-z]*)", t)
    if not m or m.group(2) not in _UNITS or float(m.group(1)) <= 0:
        raise ValueError(f"{what}: expected a size like 8G, 512M or a number of bytes (or 'off'), got {text!r}")
    return int(float(m.group(1)) * _UNITS[m.group(2)])


def available_bytes() -> int | None:
    """The memory available to new allocations: ``MemAvailable`` (Linux), else free pages.

    Returns
    -------
    int or None
        bytes, or None where neither is known.
    """
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def memory_limit(override=None) -> tuple[int | None, str]:
    """``(limit in bytes or None, where it came from)``: ``override`` (a size or its text),
    else ``GENVER_MEMORY_LIMIT``, else the available memory.

    Parameters
    ----------
    override : int, str or None
        ``--memory-limit``: bytes or a size text for :func:`parse_size` (None: not given).

    Returns
    -------
    tuple of (int or None, str)
        the limit (None: no check) and its source, as named in the refusal.
    """
    if override is not None:
        v = override if isinstance(override, int) else parse_size(override, "--memory-limit")
        return v, "--memory-limit"
    env = os.environ.get("GENVER_MEMORY_LIMIT", "").strip()
    if env:
        return parse_size(env, "GENVER_MEMORY_LIMIT"), "GENVER_MEMORY_LIMIT"
    return available_bytes(), "memory available on this machine"


def unit_bytes(spec, p: dict) -> dict:
    """The estimate of one unit of setting ``p`` (bytes), by part (see the module docstring).

    Parameters
    ----------
    spec : Spec
        the spec.
    p : dict
        the setting's full generator parameters.

    Returns
    -------
    dict of str to int
        ``{"world", "classes", "streams", "metrics"}`` -> bytes.
    """
    P, V, H = int(p["P"]), int(p["V"]), int(p["H"])
    T = V ** H
    PT = P * T
    K_R = int(p.get("K_R", 0)) if spec.generator == "finite_gap" else 0
    K_Pi = K_R + int(p.get("n_distractors", 0)) if spec.generator == "finite_gap" else 0
    d = int(p.get("d", 0) or 0) + len(p.get("features", []) or []) + (2 if spec.generator != "finite_gap" else 0)
    if p.get("per_prompt"):
        d *= P
    n = max(spec.sizes)
    from .._laplacian import DENSE_MAX
    tabular = spec.generator != "finite_gap"
    m = min(T, 2 * n, DENSE_MAX)
    return {"world": 8 * 16 * PT,
            "classes": 8 * (PT * (K_R + 3 * K_Pi) + 2 * d * PT + (P * m * m if tabular else 0)),
            "streams": 8 * (12 + (10 if tabular else 0)) * n,
            "metrics": 8 * 4 * len(spec.sizes) * K_Pi}


def _fmt_bytes(b: float) -> str:
    for unit, size in (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if b >= size:
            return f"{b / size:.1f} {unit}"
    return f"{int(b)} B"


def _key(spec, part: str, p: dict) -> str:
    if part == "world":
        return (f"[instance]/[grid] P, V or H (P·V**H = {p['P'] * p['V'] ** p['H']:,} entries per table, "
                f"{_fmt_bytes(8 * p['P'] * p['V'] ** p['H'])} each)")
    if part == "classes":
        if spec.generator == "finite_gap":
            return "n_distractors (or K_R): the members of the classes"
        return "H, V or P (the feature arrays and the tabular fits grow with P·V**H)"
    if part == "streams":
        return f"[data] sizes (largest n = {max(spec.sizes):,})"
    return "[data] sizes (fewer sizes) or n_distractors"


def check_memory(spec, workers: int = 1, limit=None) -> int:
    """Refuse (``SpecError``) a run whose estimate exceeds the limit (see the module
    docstring); returns the estimate in bytes. A sampled world (``max_entries`` set in its
    :data:`genver.experiments.registry.GENERATORS` entry: no ``(P, T)`` tables, evaluated by
    Monte Carlo) is not estimated: 0.

    Parameters
    ----------
    spec : Spec
        the spec.
    workers : int
        units held at once (the run's workers).
    limit : int, str or None
        the override of :func:`memory_limit` (None: ``GENVER_MEMORY_LIMIT`` or the available
        memory).

    Returns
    -------
    int
        the run's estimate, ``workers × largest unit + RUN_OVERHEAD`` bytes (0 for a sampled world).
    """
    from .spec import SpecError, setting_id
    if GENERATORS[spec.generator].max_entries is not None:
        return 0
    lim, where = memory_limit(limit)
    # the first setting of the largest estimate
    worst, worst_p = max(((unit_bytes(spec, p), p) for p in spec.settings()), key=lambda up: sum(up[0].values()))
    total = workers * sum(worst.values()) + RUN_OVERHEAD
    if lim is not None and total > lim:
        part = max(worst, key=worst.__getitem__)
        knobs = ", ".join(f"{k}={worst_p[k]!r}" for k in spec.knobs) or "no knobs"
        w = f" × {workers} workers" if workers > 1 else ""
        raise SpecError(
            f"{spec.source}: the run needs about {_fmt_bytes(total)} (setting {setting_id(worst_p)} ({knobs}): "
            f"{_fmt_bytes(sum(worst.values()))} per unit{w}, plus {_fmt_bytes(RUN_OVERHEAD)}), more than the "
            f"{_fmt_bytes(lim)} "
            f"limit ({where}); most of it is {part} ({_fmt_bytes(worst[part])}): reduce {_key(spec, part, worst_p)}"
            f"{', or --workers' if workers > 1 else ''}; override with --memory-limit or GENVER_MEMORY_LIMIT")
    return total
