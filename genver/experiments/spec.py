r"""Experiment specs: TOML files that are data only, validated before any work starts.

A spec has these tables (unknown keys anywhere are errors that name the key)::

    [experiment]
    name = "gap_finite"                # used in results and file names
    generator = "finite_gap"           # see genver.experiments.registry.GENERATORS
    question = "one line: what the experiment asks (listed by `genver specs`)"
    description = "..."
    expected = "one line: the qualitative result this experiment should show"

    [instance]                         # fixed generator parameters (defaults otherwise)
    P = 4

    [grid]                             # swept generator parameters: lists, cartesian product
    n_distractors = [0, 16, 256]
    zip = { V = [2, 4, 16], H = [8, 4, 2] }   # optional: lists of one length swept together (one
                                       #   setting per position, times the product of the rest)

    [data]
    sizes = [8, 16, 32]                # or { start = 8, stop = 4096, num = 10 } (log-spaced ints)
    seeds = 20                         # replicate seeds 0..seeds-1 (at most MAX_SEEDS)
    root_seed = 0
    temperature = 1.0                  # Bradley–Terry label temperature
    deterministic = false              # noise-free labels
    population = false                 # exact expected pair counts instead of sampled pairs

    [[estimators]]                     # one table per estimator
    name = "dpo"                       # see genver.experiments.registry.ESTIMATORS
    label = "offline"                  # column value (default: name)
    route = "offline"                  # offline | online | other (default from the name)
    l2 = 0.01                          # estimator options (types, or a set of allowed strings)

    [metrics]
    names = ["suboptimality", "kl_to_reference"]   # see METRICS
    best_of_n = [1, 2, 4]              # adds "bon_reward@1", "bon_reward@2", "bon_reward@4"

    [expect]                           # machine-checkable expectations for the report
    ratio = "increasing in n_distractors"   # or "equals 1", ">= 1" (genver.stats.gap_verdict; a trend
                                       #   names a swept knob)
    epsilon = 0.01                     # finite, > 0
    aggregate = "mean"                 # N_ε of the mean curve (default), or "median" | "iqm" of
                                       #   the seeds' own N_ε (genver.stats, per-seed N_ε)
    offline = "offline"                # labels compared by the ratio (default: the routes, or
    online = "online"                  #   the labels "offline"/"online")
    order = ["offline > online", "online_dpo_K100 >= online",
             "bt_loglik: global > local at n = max", "frontier: online > offline"]
    compare = [["neural offline", "neural online"]]   # more (offline, online) label pairs whose
                                       #   ratios the report shows beside the main one
    scaling_law = { against = ["n_params_Pi", "n_params_R"], ratio_against = "dim_ratio" }
                                       # fit N_ε ∝ dim^a (see below; every key optional)

    [smoke]                            # dotted overrides applied by --smoke (validated always)
    "estimators.0.l2" = 0.1            # (estimators.I.KEY: option KEY of the I-th estimator, from 0)
    "grid.n_distractors" = [0, 64]
    "data.seeds" = 2

``[expect] order`` statements compare estimators' curves (suboptimality unless a metric is
named): ``A >= B`` — A's mean is never significantly below B's at any (setting, n);
``A > B`` — never significantly below and significantly above on average over ``n`` in every
setting; ``A = B`` — consistent with equality everywhere; ``where KNOB = VALUE`` and
``at n = N | max`` / ``for n >= N`` restrict the cells; ``frontier: A > B`` compares reward at
matched ``KL(π̂‖π_ref)`` along a swept ``beta``; ``A - B increasing in KNOB`` checks the sign of
the Spearman correlation between a knob and the mean difference. Full syntax and statistics:
:mod:`genver.experiments.expect`. ``genver report`` prints PASS/FAIL for the ratio and for each
statement.

``[expect] scaling_law`` makes ``genver report`` add a "Scaling laws" section (a table, one
sentence per fit and the figure ``figures/scaling_law``) and one terminal row per fit: each
route's ``N_ε`` against each descriptor in ``against`` (a name or a list; default
``["n_params_Pi", "n_params_R"]``) and ``N_ε(offline)/N_ε(online)`` against ``ratio_against``
(default ``"dim_ratio"``), with bootstrap CIs on the exponent and the learning-theory bound's
prediction (:mod:`genver.scaling`, where the descriptors and the censoring rule are
defined). ``epsilon`` overrides ``[expect] epsilon`` for these fits. The rows read
``AGREES`` / ``DISAGREES`` / ``UNDEFINED``: measurements, never a FAIL. The spec needs an
offline and an online route (or ``[expect] offline`` / ``online`` labels).

``[data] population = true`` replaces the sampled pairs by their exact expected counts at each
``n`` (every estimator solves its population objective; see
:func:`genver.experiments.cells.population_counts`).

Every *setting* (one point of the grid) gets a stable id: the first 10 hex digits of the
SHA-1 of its generator parameters as canonical JSON (optional generator parameters, schema
default ``None``, are included only when set).
"""
from __future__ import annotations

import hashlib
import itertools
import json
import pathlib
import sys
from dataclasses import dataclass, field

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from ..runcache import RunCache
from .registry import GENERATORS
from .spec_tables import (
    MAX_N,
    MAX_SEEDS,
    METRICS,
    SpecError,
    apply_smoke,
    check_compare,
    check_expect,
    check_keys,
    check_order_statements,
    check_scaling_law,
    parse_data,
    parse_estimators,
    parse_grid,
    parse_metrics,
    swept_knobs,
)

__all__ = ["Spec", "load_spec", "parse_spec", "setting_id", "SpecError", "METRICS", "MAX_N", "MAX_SEEDS"]

_TABLES = {"experiment", "instance", "grid", "data", "estimators", "metrics", "expect", "smoke"}
_EXPERIMENT_KEYS = {"name": str, "generator": str, "question": str, "description": str, "expected": str}


@dataclass
class Spec:
    """A validated experiment spec (:func:`parse_spec`; the format in the module docstring).

    ``estimators`` holds one dict per ``[[estimators]]`` table (``name``, ``label``, ``route``,
    ``options``); ``metrics`` the metric names (``bon_reward@N`` included); ``raw`` the spec as
    read, with the smoke flag (what :meth:`hash` digests); ``source`` the file named in errors.
    """
    name: str
    generator: str
    description: str
    expected: str
    instance: dict
    grid: dict
    sizes: list
    seeds: int
    root_seed: int
    temperature: float
    deterministic: bool
    estimators: list
    metrics: list
    expect: dict
    raw: dict = field(repr=False, default_factory=dict)
    source: str = "<spec>"
    population: bool = False
    #: where neural estimators run (``auto`` | ``cpu`` | ``cuda``): a run-time choice, not part of the hash
    device: str = "auto"

    @property
    def knobs(self) -> list:
        """The swept parameters: the grid's keys, with the ``zip`` table's keys in its place."""
        return swept_knobs(self.grid)

    def settings(self) -> list[dict]:
        """Every grid point as full generator parameters (defaults, instance, then grid): the
        cartesian product of the grid's lists, and of the rows of its ``zip`` table (whose lists
        vary together).

        Returns
        -------
        list of dict
            one dict of generator parameters per setting, in grid order.
        """
        defaults = {k: d for k, (_, d) in GENERATORS[self.generator].params.items() if d is not None}
        keys = [k for k in self.grid if k != "zip"]
        zipped = self.grid.get("zip", {})
        rows = [dict(zip(zipped, vals)) for vals in zip(*zipped.values())] if zipped else [{}]
        out = []
        for combo in itertools.product(*(self.grid[k] for k in keys)):
            for row in rows:
                out.append({**defaults, **self.instance, **dict(zip(keys, combo)), **row})
        return out

    def hash(self) -> str:
        """SHA-1 of the spec as read (with the smoke flag): ``--resume`` refuses a results directory
        written by a different spec.

        Returns
        -------
        str
            the hex digest (40 characters).
        """
        return hashlib.sha1(json.dumps(self.raw, sort_keys=True, default=str).encode()).hexdigest()

    @property
    def n_cells_per_unit(self) -> int:
        """Cells of one unit (setting, seed): sizes × estimators."""
        return len(self.sizes) * len(self.estimators)


def setting_id(params: dict) -> str:
    """The stable id of a setting: the first 10 hex digits of the SHA-1 of its generator
    parameters as canonical JSON (sorted keys).

    Parameters
    ----------
    params : dict
        the setting's generator parameters (one of :meth:`Spec.settings`).

    Returns
    -------
    str
        10 hex digits.

    Examples
    --------
    >>> setting_id({"P": 4, "V": 2, "H": 3})
    '3a0f67771c'
    >>> setting_id({"H": 3, "V": 2, "P": 4})  # key order does not matter
    '3a0f67771c'
    """
    return hashlib.sha1(json.dumps(params, sort_keys=True, default=str).encode()).hexdigest()[:10]


def parse_spec(raw: dict, source: str = "<spec>", smoke: bool = False, memory_limit=None,
               cache: RunCache | None = None) -> Spec:
    """Validate a spec dictionary (as read from TOML); raise :class:`SpecError` naming the key.
    A ``[smoke]`` table is validated too, whether or not ``smoke`` is set; the run's memory
    estimate (one worker) is checked against ``memory_limit`` (:mod:`genver.experiments.memory`)
    before any instance is built.

    Parameters
    ----------
    raw : dict
        the spec's tables (module docstring).
    source : str
        the file named in errors.
    smoke : bool
        apply the ``[smoke]`` overrides (or the default smoke cut: 2 seeds, 3 sizes, 2 values per
        knob).
    memory_limit : int, str or None
        the memory limit's override (:func:`genver.experiments.memory.memory_limit`; ``"off"``: no
        check).
    cache : RunCache or None
        the run's :class:`~genver.runcache.RunCache`: the seed-0 instances built to check each
        setting are kept there for the run (None: built and dropped).

    Returns
    -------
    Spec
        the validated spec.

    Examples
    --------
    >>> spec = parse_spec({"experiment": {"name": "toy", "generator": "finite_gap"},
    ...                    "grid": {"n_distractors": [0, 4]}, "data": {"sizes": [8, 16], "seeds": 2},
    ...                    "estimators": [{"name": "dpo", "label": "offline"}, {"name": "rm_rl", "label": "online"}]})
    >>> spec.knobs, len(spec.settings()), spec.n_cells_per_unit
    (['n_distractors'], 2, 4)
    >>> try:
    ...     parse_spec({"experiment": {"name": "toy", "generator": "finite_gap"},
    ...                 "data": {"sizes": [8], "seeds": 0}, "estimators": [{"name": "dpo"}]})
    ... except SpecError as e:
    ...     print(e)
    <spec>: [data] seeds: must be >= 1, got 0
    """
    src = source
    if not isinstance(raw, dict):
        raise SpecError(f"{src}: a spec must be a TOML table")
    for k in raw:
        if k not in _TABLES:
            raise SpecError(f"{src}: [{k}]: unknown table (allowed: {', '.join(sorted(_TABLES))})")
    full_raw = raw
    if smoke:
        raw = apply_smoke(src, raw)
    exp = raw.get("experiment")
    if exp is None:
        raise SpecError(f"{src}: [experiment]: missing")
    check_keys(src, "experiment", exp, _EXPERIMENT_KEYS)
    for k in ("name", "generator"):
        if k not in exp:
            raise SpecError(f"{src}: [experiment] {k}: missing")
    if exp["generator"] not in GENERATORS:
        raise SpecError(f"{src}: [experiment] generator: unknown {exp['generator']!r} "
                        f"(choose from {sorted(GENERATORS)})")
    schema = GENERATORS[exp["generator"]].params
    instance = raw.get("instance", {})
    check_keys(src, "instance", instance, {k: t for k, (t, _) in schema.items()})
    grid = parse_grid(src, raw, schema, instance)
    data, sizes, seeds, temperature = parse_data(src, raw)
    estimators = parse_estimators(src, raw)
    metrics = parse_metrics(src, raw)
    expect = raw.get("expect", {})
    check_expect(src, expect, swept_knobs(grid))
    check_order_statements(src, expect, {e["label"]: e["name"] for e in estimators}, metrics, swept_knobs(grid))
    check_compare(src, expect, {e["label"] for e in estimators})
    check_scaling_law(src, expect, estimators)
    spec = Spec(name=exp["name"], generator=exp["generator"], description=exp.get("description", ""),
                expected=exp.get("expected", ""), instance=instance, grid=grid, sizes=sizes, seeds=seeds,
                root_seed=data.get("root_seed", 0), temperature=temperature,
                deterministic=data.get("deterministic", False), estimators=estimators, metrics=list(metrics),
                expect=expect, raw={"spec": full_raw, "smoke": smoke}, source=src,
                population=data.get("population", False))
    _check_sizes(spec, memory_limit, cache)
    if not smoke and "smoke" in full_raw:  # a typo in [smoke] is found now, not at the first --smoke run
        try:
            parse_spec(full_raw, source=source, smoke=True, memory_limit=memory_limit, cache=cache)
        except SpecError as e:
            msg = str(e)
            msg = msg[len(src) + 2:] if msg.startswith(f"{src}: ") else msg
            raise SpecError(f"{src}: with [smoke] applied (checked also without --smoke): {msg}") from None
    return spec


def _check_sizes(spec: Spec, memory_limit=None, cache: RunCache | None = None):
    """Impossible sizes are refused before any work: build each setting's space, then check
    the run's memory estimate (:func:`genver.experiments.memory.check_memory`, one worker),
    then build each setting's seed-0 instance, so a bad generator parameter (e.g. an unknown
    ``case``) is a SpecError naming the setting (kept in ``cache`` for the run, when given)."""
    from ..spaces import TreeSpace
    from .memory import check_memory
    max_entries = GENERATORS[spec.generator].max_entries
    limit = {} if max_entries is None else {"max_entries": max_entries}  # worlds without tables
    settings = spec.settings()
    for p in settings:
        try:
            TreeSpace(p["P"], p["V"], p["H"], **limit)
        except ValueError as e:
            where = f"setting {setting_id(p)} (P={p['P']}, V={p['V']}, H={p['H']})"
            raise SpecError(f"{spec.source}: {where}: {e}") from None
        for k, v in p.items():
            if k in ("P", "V", "H", "K_R", "d") and v < 1:
                raise SpecError(f"{spec.source}: {k}: must be >= 1, got {v}")
            if k in ("beta", "scale", "w_scale", "ref_concentration") and not v > 0:
                raise SpecError(f"{spec.source}: {k}: must be > 0, got {v}")
            if k == "n_distractors" and v < 0:
                raise SpecError(f"{spec.source}: n_distractors: must be >= 0, got {v}")
    check_memory(spec, workers=1, limit=memory_limit)
    from .cells import make_instance
    for p in settings:
        try:
            make_instance(spec.generator, p, spec.root_seed, 0, cache=cache)
        except ValueError as e:
            raise SpecError(f"{spec.source}: setting {setting_id(p)} ({_knob_text(spec, p)}): {e}") from None


def _knob_text(spec: Spec, p: dict) -> str:
    return ", ".join(f"{k}={p[k]!r}" for k in spec.knobs) or "no knobs"


def load_spec(path, smoke: bool = False, memory_limit=None, cache: RunCache | None = None) -> Spec:
    """Read and validate a spec file (:func:`parse_spec`); a missing, unreadable or non-TOML file
    is a :class:`SpecError` naming the path.

    Parameters
    ----------
    path : str or pathlib.Path
        the TOML file (a shipped spec's path: :func:`genver.experiments.catalog.resolve_spec`).
    smoke : bool
        apply the ``[smoke]`` overrides.
    memory_limit : int, str or None
        the memory limit's override (``"off"``: no check).
    cache : RunCache or None
        the run's cache (:func:`parse_spec`).

    Returns
    -------
    Spec
        the validated spec.

    Examples
    --------
    >>> from genver.experiments.catalog import resolve_spec
    >>> spec = load_spec(resolve_spec("gap_finite"), smoke=True)
    >>> spec.generator, spec.knobs, len(spec.settings()), spec.sizes
    ('finite_gap', ['n_distractors'], 2, [8, 64, 512])
    """
    path = pathlib.Path(path)
    try:
        raw = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise SpecError(f"{path}: no such spec file") from None
    except IsADirectoryError:
        raise SpecError(f"{path}: is a directory, not a spec file (a TOML file such as sims/gap_finite.toml)") from None
    except UnicodeDecodeError:
        raise SpecError(f"{path}: not a text file (a spec is a TOML file)") from None
    except tomllib.TOMLDecodeError as e:
        raise SpecError(f"{path}: not valid TOML: {e}") from None
    return parse_spec(raw, source=str(path), smoke=smoke, memory_limit=memory_limit, cache=cache)

