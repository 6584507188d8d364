r"""The tables of an experiment spec, each validated on its own (:mod:`genver.experiments.spec`
assembles them into a :class:`~genver.experiments.spec.Spec`).

Every check raises :class:`SpecError` with the file and the key, e.g.
``sims/x.toml: [data] seeds: must be >= 1, got 0``. A value's type is checked against a schema
entry: a Python type (``float`` accepts integers, ``int`` refuses booleans), a tuple of types,
or a ``frozenset`` of allowed strings. The tables:

* ``[grid]`` (:func:`parse_grid`): lists of generator parameters, swept as a cartesian product,
  and a ``zip`` table of equal-length lists swept together; its knobs are :func:`swept_knobs`;
* ``[data]`` (:func:`parse_data`): sizes (a strictly increasing list in ``[1, MAX_N]``, or
  ``{start, stop, num}`` log-spaced integers), ``1 <= seeds <= MAX_SEEDS``, temperature ``> 0``;
* ``[[estimators]]`` (:func:`parse_estimators`): each against its registry entry's option
  schema, with a unique label and a route (offline | online | other);
* ``[metrics]`` (:func:`parse_metrics`): registry metric names plus ``bon_reward@N``;
* ``[expect]`` (:func:`check_expect`, :func:`check_order_statements`, :func:`check_compare`,
  :func:`check_scaling_law`): the ratio grammar of :func:`genver.stats.gap_verdict`, the order
  statements of :mod:`genver.experiments.expect`, label pairs and scaling-law descriptors;
* ``[smoke]`` (:func:`apply_smoke`): dotted overrides applied by ``--smoke``.
"""
from __future__ import annotations

import copy

import numpy as np

from ..stats import AGGREGATES, RATIO_COMPARISON, RATIO_TREND
from .expect import parse_order
from .registry import ESTIMATORS, default_route, metric_kind
from .registry import METRICS as METRIC_ENTRIES

__all__ = ["SpecError", "METRICS", "MAX_N", "MAX_SEEDS", "swept_knobs", "check_keys", "apply_smoke", "parse_grid",
           "parse_data", "parse_estimators", "parse_metrics", "check_expect", "check_order_statements",
           "check_compare", "check_scaling_law"]

#: fixed metric names (genver.experiments.registry.METRICS); plus the family "bon_reward@N"
METRICS = tuple(METRIC_ENTRIES)
_DEFAULT_METRICS = ("suboptimality", "kl_to_optimal", "kl_to_reference", "expected_reward", "win_rate")
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


def swept_knobs(grid: dict) -> list:
    """The swept parameters: the grid's keys, with the ``zip`` table's keys in its place.

    Parameters
    ----------
    grid : dict
        the ``[grid]`` table.

    Returns
    -------
    list of str
        the knobs, in the grid's order.

    Examples
    --------
    >>> swept_knobs({"beta": [1.0, 2.0], "zip": {"V": [2, 4], "H": [8, 4]}})
    ['beta', 'V', 'H']
    """
    out = []
    for k, v in grid.items():
        out += list(v) if k == "zip" and isinstance(v, dict) else [k]
    return out


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


def check_keys(src: str, where: str, table: dict, allowed: dict) -> None:
    """Refuse a key of ``table`` not in ``allowed``, or a value not of its type.

    Parameters
    ----------
    src : str
        the spec's file, named in errors.
    where : str
        the table's name in errors (``"data"``, ``"estimators.0"``).
    table : dict
        the table.
    allowed : dict
        key -> type: a Python type (``float`` accepts integers; ``int`` refuses booleans), a tuple
        of types, or a ``frozenset`` of allowed strings.
    """
    if not isinstance(table, dict):
        raise SpecError(f"{src}: [{where}] must be a table")
    for k, v in table.items():
        if k not in allowed:
            raise SpecError(f"{src}: [{where}] {k}: unknown key (allowed: {', '.join(sorted(allowed))})")
        if not _type_ok(v, allowed[k]):
            raise SpecError(f"{src}: [{where}] {k}: expected {_tname(allowed[k])}, got {type(v).__name__} {v!r}")


def _parse_sizes(src, value) -> list:
    if isinstance(value, dict):
        check_keys(src, "data.sizes", value, {"start": int, "stop": int, "num": int})
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


def apply_smoke(src: str, raw: dict) -> dict:
    """The spec with its ``[smoke]`` overrides applied (a copy): dotted keys ``instance.KEY``,
    ``grid.KEY``, ``data.KEY``, ``expect.KEY`` or ``estimators.I.KEY`` (option ``KEY`` of the
    ``I``-th estimator, from 0). Without a ``[smoke]`` table: 2 seeds, the first 3 sizes and the
    first 2 values of every knob.

    Parameters
    ----------
    src : str
        the spec's file, named in errors.
    raw : dict
        the spec's tables.

    Returns
    -------
    dict
        the overridden tables, ``[smoke]`` removed.

    Examples
    --------
    >>> apply_smoke("<spec>", {"data": {"sizes": [8, 16, 32, 64], "seeds": 10}, "grid": {"V": [2, 3, 4]}})
    {'data': {'sizes': [8, 16, 32], 'seeds': 2}, 'grid': {'V': [2, 3]}}
    """
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


def parse_grid(src: str, raw: dict, schema: dict, instance: dict) -> dict:
    """The ``[grid]`` table, checked against the generator's parameter ``schema``.

    Parameters
    ----------
    src : str
        the spec's file, named in errors.
    raw : dict
        the spec's tables.
    schema : dict
        the generator's parameters: name -> (type, default).
    instance : dict
        the ``[instance]`` table (a knob may not also be fixed there).

    Returns
    -------
    dict
        the grid: knob -> list of values, and an optional ``zip`` table of equal-length lists.
    """
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


def parse_data(src: str, raw: dict) -> tuple[dict, list, int, float]:
    """``(data table, sizes, seeds, temperature)`` of the ``[data]`` table.

    Parameters
    ----------
    src : str
        the spec's file, named in errors.
    raw : dict
        the spec's tables.

    Returns
    -------
    tuple of (dict, list of int, int, float)
        the table, the strictly increasing sizes ``n``, the number of seeds and the
        Bradley–Terry temperature ``τ > 0``.
    """
    data = raw.get("data", {})
    check_keys(src, "data", data, _DATA_KEYS)
    if "sizes" not in data:
        raise SpecError(f"{src}: [data] sizes: missing")
    sizes = _parse_sizes(src, data["sizes"])
    seeds = data.get("seeds", 10)
    if seeds < 1:
        raise SpecError(f"{src}: [data] seeds: must be >= 1, got {seeds}")
    if seeds > MAX_SEEDS:
        raise SpecError(f"{src}: [data] seeds: at most {MAX_SEEDS:,} replicate seeds, got {seeds:,}")
    temperature = float(data.get("temperature", 1.0))
    if not temperature > 0:
        raise SpecError(f"{src}: [data] temperature: must be > 0, got {temperature}")

    return data, sizes, seeds, temperature


def parse_estimators(src: str, raw: dict) -> list[dict]:
    """The ``[[estimators]]`` tables, each checked against its registry entry's option schema.

    Parameters
    ----------
    src : str
        the spec's file, named in errors.
    raw : dict
        the spec's tables.

    Returns
    -------
    list of dict
        per estimator: ``name``, ``label`` (unique), ``route`` (offline | online | other) and
        ``options``.
    """
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
        check_keys(src, where, e, allowed)
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


def parse_metrics(src: str, raw: dict) -> list[str]:
    """The ``[metrics]`` names (plus ``bon_reward@N`` for each ``best_of_n`` size), each a registry
    metric.

    Parameters
    ----------
    src : str
        the spec's file, named in errors.
    raw : dict
        the spec's tables.

    Returns
    -------
    list of str
        the metric names (the default five without a ``[metrics]`` table).
    """
    metrics_t = raw.get("metrics", {"names": list(_DEFAULT_METRICS)})
    check_keys(src, "metrics", metrics_t, {"names": list, "best_of_n": list})
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


def check_expect(src: str, expect: dict, knobs: list) -> None:
    """The ``[expect]`` table's keys and ``aggregate`` (one of :data:`genver.stats.AGGREGATES`);
    ``[expect] epsilon`` is a finite number > 0; ``[expect] ratio`` follows the grammar of
    :func:`genver.stats.gap_verdict` and a trend names a swept knob.

    Parameters
    ----------
    src : str
        the spec's file, named in errors.
    expect : dict
        the ``[expect]`` table.
    knobs : list of str
        the swept knobs.
    """
    check_keys(src, "expect", expect, _EXPECT_KEYS)
    if expect.get("aggregate", "mean") not in AGGREGATES:
        raise SpecError(f"{src}: [expect] aggregate: must be one of {', '.join(AGGREGATES)}, "
                        f"got {expect['aggregate']!r}")
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


def check_compare(src: str, expect: dict, labels: set) -> None:
    """Each ``[expect] compare`` entry is a pair ``[offline, online]`` of estimator labels.

    Parameters
    ----------
    src : str
        the spec's file, named in errors.
    expect : dict
        the ``[expect]`` table.
    labels : set of str
        the estimators' labels.
    """
    for i, pair in enumerate(expect.get("compare", [])):
        if not (isinstance(pair, list) and len(pair) == 2 and all(isinstance(x, str) for x in pair)):
            raise SpecError(f"{src}: [expect] compare[{i}]: must be a pair of estimator labels "
                            f"[offline, online], got {pair!r}")
        for lab in pair:
            if lab not in labels:
                raise SpecError(f"{src}: [expect] compare[{i}]: unknown estimator label {lab!r} "
                                f"(labels: {', '.join(sorted(labels))})")


def check_scaling_law(src: str, expect: dict, estimators: list) -> None:
    """``[expect] scaling_law``: keys, descriptor names (:data:`genver.scaling.DESCRIPTORS`)
    and an offline/online pair to fit.

    Parameters
    ----------
    src : str
        the spec's file, named in errors.
    expect : dict
        the ``[expect]`` table.
    estimators : list of dict
        the parsed estimators (:func:`parse_estimators`).
    """
    opts = expect.get("scaling_law")
    if opts is None:
        return
    from ..scaling import DESCRIPTORS

    where = "expect.scaling_law"
    check_keys(src, where, opts, {"against": (str, list), "ratio_against": (str, list), "epsilon": float})
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


def check_order_statements(src: str, expect: dict, labels: dict, metrics: list, knobs: list) -> None:
    """Parse every ``[expect] order`` statement and check its labels (``label -> estimator
    name``), metric and knobs.

    Parameters
    ----------
    src : str
        the spec's file, named in errors.
    expect : dict
        the ``[expect]`` table.
    labels : dict of str to str
        estimator label -> estimator name.
    metrics : list of str
        the spec's metrics.
    knobs : list of str
        the swept knobs.
    """
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
