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

import copy
import hashlib
import itertools
import json
import pathlib
import sys
from dataclasses import dataclass, field

import numpy as np

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from ..stats import AGGREGATES
from .registry import ESTIMATORS, GENERATORS, default_route, metric_kind
from .registry import METRICS as METRIC_ENTRIES

__all__ = ["Spec", "load_spec", "parse_spec", "setting_id", "SpecError", "METRICS"]

#: fixed metric names (genver.experiments.registry.METRICS); plus the family "bon_reward@N"
METRICS = tuple(METRIC_ENTRIES)
_DEFAULT_METRICS = ("suboptimality", "kl_to_optimal", "kl_to_reference", "expected_reward", "win_rate")
_TABLES = {"experiment", "instance", "grid", "data", "estimators", "metrics", "expect", "smoke"}
_EXPERIMENT_KEYS = {"name": str, "generator": str, "question": str, "description": str, "expected": str}
_DATA_KEYS = {"sizes": (list, dict), "seeds": int, "root_seed": int, "temperature": float, "deterministic": bool,
              "population": bool}
_EXPECT_KEYS = {"ratio": str, "epsilon": float, "offline": str, "online": str, "order": list, "compare": list,
                "aggregate": str, "scaling_law": dict}
#: largest number of pairs in one data stream (memory guard)
MAX_N = 10**7
#: most replicate seeds of a spec (the unit list is seeds × settings; bootstrap CIs need far fewer)
MAX_SEEDS = 100_000


class SpecError(ValueError):
    """A malformed spec; the message names the file and the key."""


@dataclass
class Spec:
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
        return _knobs(self.grid)

    def settings(self) -> list[dict]:
        """Every grid point as full generator parameters (defaults, instance, then grid): the
        cartesian product of the grid's lists, and of the rows of its ``zip`` table (whose lists
        vary together)."""
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
        return hashlib.sha1(json.dumps(self.raw, sort_keys=True, default=str).encode()).hexdigest()

    @property
    def n_cells_per_unit(self) -> int:
        return len(self.sizes) * len(self.estimators)


def _knobs(grid: dict) -> list:
    """The swept parameters: the grid's keys, with the ``zip`` table's keys in its place."""
    out = []
    for k, v in grid.items():
        out += list(v) if k == "zip" and isinstance(v, dict) else [k]
    return out


def setting_id(params: dict) -> str:
    return hashlib.sha1(json.dumps(params, sort_keys=True, default=str).encode()).hexdigest()[:10]


def _type_ok(value, typ) -> bool:
    if isinstance(typ, frozenset):  # a choice among strings
        return isinstance(value, str) and value in typ
    if typ is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if typ is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if isinstance(typ, tuple):
        return isinstance(value, typ)
    return isinstance(value, typ)


def _tname(typ):
    if isinstance(typ, frozenset):
        return "one of " + ", ".join(repr(t) for t in sorted(typ))
    return " or ".join(t.__name__ for t in typ) if isinstance(typ, tuple) else typ.__name__


def _check_keys(src, where, table: dict, allowed: dict):
    if not isinstance(table, dict):
        raise SpecError(f"{src}: [{where}] must be a table")
    for k, v in table.items():
        if k not in allowed:
            raise SpecError(f"{src}: [{where}] {k}: unknown key (allowed: {', '.join(sorted(allowed))})")
        if not _type_ok(v, allowed[k]):
            raise SpecError(f"{src}: [{where}] {k}: expected {_tname(allowed[k])}, got {type(v).__name__} {v!r}")


def _sizes(src, value) -> list:
    if isinstance(value, dict):
        _check_keys(src, "data.sizes", value, {"start": int, "stop": int, "num": int})
        for k in ("start", "stop", "num"):
            if k not in value:
                raise SpecError(f"{src}: [data] sizes.{k}: missing")
        if value["start"] < 1 or value["stop"] < value["start"] or value["num"] < 1:
            raise SpecError(f"{src}: [data] sizes: need 1 <= start <= stop and num >= 1, got {value}")
        sizes = np.unique(np.round(np.geomspace(value["start"], value["stop"], value["num"])).astype(int)).tolist()
    else:
        sizes = value
    if not sizes:
        raise SpecError(f"{src}: [data] sizes: empty")
    if not all(isinstance(n, int) and not isinstance(n, bool) for n in sizes):
        raise SpecError(f"{src}: [data] sizes: must be integers, got {sizes!r}")
    if any(n < 1 for n in sizes) or max(sizes) > MAX_N:
        raise SpecError(f"{src}: [data] sizes: each must lie in [1, {MAX_N}], got {sizes!r}")
    if sorted(set(sizes)) != list(sizes):
        raise SpecError(f"{src}: [data] sizes: must be strictly increasing, got {sizes!r}")
    return list(sizes)


def _apply_smoke(src, raw: dict) -> dict:
    raw = copy.deepcopy(raw)
    smoke = raw.pop("smoke", None)
    if smoke is None:  # default: 2 seeds, first 3 sizes, first 2 values of every knob
        data = raw.setdefault("data", {})
        data["seeds"] = min(2, data.get("seeds", 2))
        if isinstance(data.get("sizes"), list):
            data["sizes"] = data["sizes"][:3]
        for k, v in raw.get("grid", {}).items():
            if isinstance(v, list):
                raw["grid"][k] = v[:2]
        return raw
    if not isinstance(smoke, dict):
        raise SpecError(f"{src}: [smoke] must be a table of dotted overrides")
    for dotted, value in smoke.items():
        parts = dotted.split(".")
        if len(parts) == 3 and parts[0] == "estimators":  # estimators.I.OPTION (e.g. fewer training steps)
            ests = raw.get("estimators", [])
            if not parts[1].isdigit() or int(parts[1]) >= len(ests):
                raise SpecError(f"{src}: [smoke] {dotted}: no estimator number {parts[1]} "
                                f"(the spec has {len(ests)}, numbered from 0)")
            ests[int(parts[1])][parts[2]] = value
            continue
        if len(parts) != 2 or parts[0] not in {"instance", "grid", "data", "expect"}:
            raise SpecError(f"{src}: [smoke] {dotted}: expected 'instance.KEY', 'grid.KEY', 'data.KEY', 'expect.KEY' "
                            f"or 'estimators.I.KEY'")
        raw.setdefault(parts[0], {})[parts[1]] = value
    return raw


def _parse_grid(src, raw: dict, schema: dict, instance: dict) -> dict:
    """The ``[grid]`` table, checked against the generator's parameter ``schema``."""
    grid = raw.get("grid", {})
    if not isinstance(grid, dict):
        raise SpecError(f"{src}: [grid] must be a table")
    zipped = grid.get("zip", {})
    if "zip" in grid and (not isinstance(zipped, dict) or not zipped):
        raise SpecError(f"{src}: [grid] zip: expected a table of equal-length lists (parameters swept "
                        f"together, e.g. zip = {{ V = [2, 4], H = [16, 8] }}), got {zipped!r}")
    flat = [(k, v, f"[grid] {k}") for k, v in grid.items() if k != "zip"] + \
        [(k, v, f"[grid] zip.{k}") for k, v in zipped.items()]
    for k, v, where in flat:
        if k not in schema:
            raise SpecError(f"{src}: {where}: unknown generator parameter (allowed: {', '.join(sorted(schema))})")
        if not isinstance(v, list):
            raise SpecError(f"{src}: {where}: expected a list of values, got {type(v).__name__}")
        if not v:
            raise SpecError(f"{src}: {where}: empty list")
        for item in v:
            if not _type_ok(item, schema[k][0]):
                raise SpecError(f"{src}: {where}: expected {_tname(schema[k][0])} values, got {item!r}")
        if k in instance:
            raise SpecError(f"{src}: {where}: also set in [instance]")
        if where.startswith("[grid] zip") and k in grid:
            raise SpecError(f"{src}: {where}: also a [grid] list")
    if len({len(v) for v in zipped.values()}) > 1:
        raise SpecError(f"{src}: [grid] zip: the lists must have one length (they vary together), got "
                        + ", ".join(f"{k}: {len(v)}" for k, v in zipped.items()))
    return grid


def _parse_data(src, raw: dict):
    """``(data table, sizes, seeds, temperature)`` of the ``[data]`` table."""
    data = raw.get("data", {})
    _check_keys(src, "data", data, _DATA_KEYS)
    if "sizes" not in data:
        raise SpecError(f"{src}: [data] sizes: missing")
    sizes = _sizes(src, data["sizes"])
    seeds = data.get("seeds", 10)
    if seeds < 1:
        raise SpecError(f"{src}: [data] seeds: must be >= 1, got {seeds}")
    if seeds > MAX_SEEDS:
        raise SpecError(f"{src}: [data] seeds: at most {MAX_SEEDS:,} replicate seeds, got {seeds:,}")
    temperature = float(data.get("temperature", 1.0))
    if not temperature > 0:
        raise SpecError(f"{src}: [data] temperature: must be > 0, got {temperature}")

    return data, sizes, seeds, temperature


def _parse_estimators(src, raw: dict) -> list[dict]:
    """The ``[[estimators]]`` tables, each checked against its registry entry's option schema."""
    ests = raw.get("estimators")
    if not ests or not isinstance(ests, list):
        raise SpecError(f"{src}: [[estimators]]: give at least one estimator table")
    labels = set()
    estimators = []
    for i, e in enumerate(ests):
        where = f"estimators.{i}"
        if not isinstance(e, dict) or "name" not in e:
            raise SpecError(f"{src}: [{where}] name: missing")
        name = e["name"]
        if name not in ESTIMATORS:
            raise SpecError(f"{src}: [{where}] name: unknown estimator {name!r} (choose from {sorted(ESTIMATORS)})")
        allowed = {"name": str, "label": str, "route": str, **ESTIMATORS[name].options}
        _check_keys(src, where, e, allowed)
        route = e.get("route", default_route(name))
        if route not in ("offline", "online", "other"):
            raise SpecError(f"{src}: [{where}] route: must be offline, online or other, got {route!r}")
        label = e.get("label", name)
        if label in labels:
            raise SpecError(f"{src}: [{where}] label: duplicate {label!r}")
        labels.add(label)
        opts = {k: v for k, v in e.items() if k not in ("name", "label", "route")}
        estimators.append({"name": name, "label": label, "route": route, "options": opts})
    return estimators


def _parse_metrics(src, raw: dict) -> list[str]:
    """The ``[metrics]`` names (plus ``bon_reward@N`` for each ``best_of_n`` size), each a registry metric."""
    metrics_t = raw.get("metrics", {"names": list(_DEFAULT_METRICS)})
    _check_keys(src, "metrics", metrics_t, {"names": list, "best_of_n": list})
    metrics = list(metrics_t.get("names", [] if "best_of_n" in metrics_t else list(_DEFAULT_METRICS)))
    for N in metrics_t.get("best_of_n", []):
        if not (isinstance(N, int) and not isinstance(N, bool) and N >= 1):
            raise SpecError(f"{src}: [metrics] best_of_n: sizes must be integers >= 1, got {N!r}")
        metrics.append(f"bon_reward@{N}")
    if not metrics:
        raise SpecError(f"{src}: [metrics] names: empty")
    for m in metrics:
        if not isinstance(m, str) or metric_kind(m) is None:
            raise SpecError(f"{src}: [metrics] names: unknown metric {m!r} (choose from {', '.join(METRICS)}, "
                            f"or bon_reward@N)")
    if len(set(metrics)) != len(metrics):
        raise SpecError(f"{src}: [metrics] names: duplicate metric in {metrics}")
    return metrics


def parse_spec(raw: dict, source: str = "<spec>", smoke: bool = False, memory_limit=None) -> Spec:
    """Validate a spec dictionary (as read from TOML); raise :class:`SpecError` naming the key.
    A ``[smoke]`` table is validated too, whether or not ``smoke`` is set; the run's memory
    estimate (one worker) is checked against ``memory_limit`` (:mod:`genver.experiments.memory`)
    before any instance is built."""
    src = source
    if not isinstance(raw, dict):
        raise SpecError(f"{src}: a spec must be a TOML table")
    for k in raw:
        if k not in _TABLES:
            raise SpecError(f"{src}: [{k}]: unknown table (allowed: {', '.join(sorted(_TABLES))})")
    full_raw = raw
    if smoke:
        raw = _apply_smoke(src, raw)
    exp = raw.get("experiment")
    if exp is None:
        raise SpecError(f"{src}: [experiment]: missing")
    _check_keys(src, "experiment", exp, _EXPERIMENT_KEYS)
    for k in ("name", "generator"):
        if k not in exp:
            raise SpecError(f"{src}: [experiment] {k}: missing")
    if exp["generator"] not in GENERATORS:
        raise SpecError(f"{src}: [experiment] generator: unknown {exp['generator']!r} "
                        f"(choose from {sorted(GENERATORS)})")
    schema = GENERATORS[exp["generator"]].params
    instance = raw.get("instance", {})
    _check_keys(src, "instance", instance, {k: t for k, (t, _) in schema.items()})
    grid = _parse_grid(src, raw, schema, instance)
    data, sizes, seeds, temperature = _parse_data(src, raw)
    estimators = _parse_estimators(src, raw)
    metrics = _parse_metrics(src, raw)
    expect = raw.get("expect", {})
    _check_keys(src, "expect", expect, _EXPECT_KEYS)
    if expect.get("aggregate", "mean") not in AGGREGATES:
        raise SpecError(f"{src}: [expect] aggregate: must be one of {', '.join(AGGREGATES)}, "
                        f"got {expect['aggregate']!r}")
    _check_expect(src, expect, _knobs(grid))
    _check_order(src, expect, {e["label"]: e["name"] for e in estimators}, metrics, _knobs(grid))
    _check_compare(src, expect, {e["label"] for e in estimators})
    _check_scaling_law(src, expect, estimators)
    spec = Spec(name=exp["name"], generator=exp["generator"], description=exp.get("description", ""),
                expected=exp.get("expected", ""), instance=instance, grid=grid, sizes=sizes, seeds=seeds,
                root_seed=data.get("root_seed", 0), temperature=temperature,
                deterministic=data.get("deterministic", False), estimators=estimators, metrics=list(metrics),
                expect=expect, raw={"spec": full_raw, "smoke": smoke}, source=src,
                population=data.get("population", False))
    _check_sizes(spec, memory_limit)
    if not smoke and "smoke" in full_raw:  # a typo in [smoke] is found now, not at the first --smoke run
        try:
            parse_spec(full_raw, source=source, smoke=True, memory_limit=memory_limit)
        except SpecError as e:
            msg = str(e)
            msg = msg[len(src) + 2:] if msg.startswith(f"{src}: ") else msg
            raise SpecError(f"{src}: with [smoke] applied (checked also without --smoke): {msg}") from None
    return spec


def _check_expect(src, expect: dict, knobs: list):
    """``[expect] epsilon`` is a finite number > 0; ``[expect] ratio`` follows the grammar of
    :func:`genver.stats.gap_verdict` and a trend names a swept knob."""
    from ..stats import RATIO_COMPARISON, RATIO_TREND
    if "epsilon" in expect:
        eps = float(expect["epsilon"])
        if not (np.isfinite(eps) and eps > 0):
            raise SpecError(f"{src}: [expect] epsilon: must be a finite number > 0, got {expect['epsilon']!r}")
    if "ratio" in expect:
        text = expect["ratio"]
        m = RATIO_TREND.match(text)
        if m:
            if m.group(2) not in knobs:
                raise SpecError(f"{src}: [expect] ratio: {text!r}: {m.group(2)!r} is not a swept knob "
                                f"({', '.join(knobs) or 'none'})")
        else:
            m = RATIO_COMPARISON.match(text)
            ok = False
            if m:
                try:
                    ok = np.isfinite(float(m.group(2)))
                except ValueError:
                    ok = False
            if not ok:
                raise SpecError(f"{src}: [expect] ratio: cannot parse {text!r}; use 'increasing in KNOB', "
                                f"'decreasing in KNOB', 'equals C', '>= C', '<= C', '> C' or '< C'")


def _check_compare(src, expect: dict, labels: set):
    for i, pair in enumerate(expect.get("compare", [])):
        if not (isinstance(pair, list) and len(pair) == 2 and all(isinstance(x, str) for x in pair)):
            raise SpecError(f"{src}: [expect] compare[{i}]: must be a pair of estimator labels "
                            f"[offline, online], got {pair!r}")
        for lab in pair:
            if lab not in labels:
                raise SpecError(f"{src}: [expect] compare[{i}]: unknown estimator label {lab!r} "
                                f"(labels: {', '.join(sorted(labels))})")


def _check_scaling_law(src, expect: dict, estimators: list):
    """``[expect] scaling_law``: keys, descriptor names (:data:`genver.scaling.DESCRIPTORS`)
    and an offline/online pair to fit."""
    opts = expect.get("scaling_law")
    if opts is None:
        return
    from ..scaling import DESCRIPTORS

    where = "expect.scaling_law"
    _check_keys(src, where, opts, {"against": (str, list), "ratio_against": (str, list), "epsilon": float})
    for key in ("against", "ratio_against"):
        names = opts.get(key, [])
        names = [names] if isinstance(names, str) else names
        if key in opts and not names:
            raise SpecError(f"{src}: [{where}] {key}: empty list")
        for name in names:
            if name not in DESCRIPTORS:
                raise SpecError(f"{src}: [{where}] {key}: unknown descriptor {name!r} "
                                f"(choose from {', '.join(DESCRIPTORS)})")
    if "epsilon" in opts and not opts["epsilon"] > 0:
        raise SpecError(f"{src}: [{where}] epsilon: must be > 0, got {opts['epsilon']}")
    routes = {e["route"] for e in estimators}
    if not ({"offline", "online"} <= routes or "offline" in expect or "online" in expect):
        raise SpecError(f"{src}: [{where}]: needs an offline and an online route to fit "
                        f"(estimators' routes: {', '.join(sorted(routes))})")


def _check_order(src, expect: dict, labels: dict, metrics: list, knobs: list):
    """Parse every ``[expect] order`` statement and check its labels (``label -> estimator
    name``), metric and knobs."""
    from .expect import parse_order

    for i, text in enumerate(expect.get("order", [])):
        where = f"{src}: [expect] order[{i}]"
        if not isinstance(text, str):
            raise SpecError(f"{where}: expected a string, got {text!r}")
        try:
            st = parse_order(text)
        except ValueError as e:
            raise SpecError(f"{where}: {e}") from None
        for a, _, b in st.pairs:
            for lab in (a, b):
                if lab not in labels:
                    raise SpecError(f"{where}: unknown estimator label {lab!r} (labels: {', '.join(sorted(labels))})")
        if st.metric == "frontier":
            if "beta" not in knobs:
                raise SpecError(f"{where}: 'frontier' needs beta in [grid]")
            if not {"expected_reward", "kl_to_reference"} <= set(metrics):
                raise SpecError(f"{where}: 'frontier' needs the metrics expected_reward and kl_to_reference")
        elif st.metric not in metrics:
            raise SpecError(f"{where}: metric {st.metric!r} is not in [metrics] ({', '.join(metrics)})")
        if st.metric == "frontier" or metric_kind(st.metric) == "policy":
            for a, _, b in st.pairs:
                for lab in (a, b):
                    if ESTIMATORS[labels[lab]].reward_only:
                        raise SpecError(f"{where}: {lab!r} ({labels[lab]}) fits a reward only; "
                                        f"{st.metric!r} needs a policy")
        if st.trend_knob is not None and st.trend_knob not in knobs:
            raise SpecError(f"{where}: trend knob {st.trend_knob!r} is not a swept knob ({', '.join(knobs) or 'none'})")
        for k in st.where:
            if k not in knobs:
                raise SpecError(f"{where}: 'where {k}': {k} is not a swept knob ({', '.join(knobs) or 'none'})")


def _check_sizes(spec: Spec, memory_limit=None):
    """Impossible sizes are refused before any work: build each setting's space, then check
    the run's memory estimate (:func:`genver.experiments.memory.check_memory`, one worker),
    then build each setting's seed-0 instance, so a bad generator parameter (e.g. an unknown
    ``case``) is a SpecError naming the setting."""
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
            make_instance(spec.generator, p, spec.root_seed, 0)
        except ValueError as e:
            raise SpecError(f"{spec.source}: setting {setting_id(p)} ({_knob_text(spec, p)}): {e}") from None


def _knob_text(spec: Spec, p: dict) -> str:
    return ", ".join(f"{k}={p[k]!r}" for k in spec.knobs) or "no knobs"


def load_spec(path, smoke: bool = False, memory_limit=None) -> Spec:
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
    return parse_spec(raw, source=str(path), smoke=smoke, memory_limit=memory_limit)
