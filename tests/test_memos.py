"""The run's memos (a :class:`genver.runcache.RunCache` passed as ``cache=``): what a sweep's
settings share is computed once per run, a hit is bit for bit what the computation gives, and
a library call without a cache keeps nothing.

Checked here: the LRU byte budget and clearing; the pair stream of a seed shared by
the settings of a sweep (read-only, equal to a fresh draw); policy metrics keyed by the
instance's world (another ``r*`` is never a hit); values derived from a stream cached only
when it is read-only; and a sweep's table independent of the order its units run in and of
what ran before in the process; nested distractor classes (one lineage per seed) equal to
fresh draws, and their shared likelihood paths and RL parts equal to the direct computation."""
from __future__ import annotations

import gc
import sys
import weakref
from dataclasses import replace

import numpy as np
import pandas as pd

from genver.classes import FinitePolicyClass
from genver.estimators import mle, mle_paths
from genver.experiments import cells, generators
from genver.experiments.cells import _data, make_instance, run_unit, seed_sequence
from genver.experiments.executors import InProcessExecutor
from genver.experiments.spec import parse_spec, setting_id
from genver.metrics import suboptimality
from genver.preferences import sample_preferences
from genver.runcache import DEFAULT_BUDGETS, RunCache, cache_key


def _spec(seeds=3, distractors=(0, 16, 256)):
    return parse_spec({
        "experiment": {"name": "memo", "generator": "finite_gap"},
        "instance": {"P": 3, "V": 2, "H": 3, "beta": 0.7, "K_R": 3, "scale": 0.6},
        "grid": {"n_distractors": list(distractors)},
        "data": {"sizes": [4, 16, 64, 256], "seeds": seeds},
        "estimators": [{"name": "dpo", "label": "offline"}, {"name": "rm_rl", "label": "online"}],
        "metrics": {"names": ["suboptimality", "kl_to_reference", "expected_reward", "win_rate"]},
    })


def test_bounded_memo_evicts_least_recently_used_beyond_its_budget_and_clears():
    m = RunCache({"test": 100})
    a, b, c, huge = cache_key("a"), cache_key("b"), cache_key("c"), cache_key("huge")
    m.put("test", a, 1, 40)
    m.put("test", b, 2, 40)
    assert m.get("test", a) == 1  # a is now the most recent
    m.put("test", c, 3, 40)  # over budget: b (least recently used) goes
    assert m.get("test", b) is None and m.get("test", a) == 1 and m.get("test", c) == 3 and m.nbytes("test") == 80
    m.put("test", huge, 4, 101)  # larger than the budget: not stored, nothing evicted
    assert m.get("test", huge) is None and len(m) == 2
    m.clear()
    assert len(m) == 0 and m.nbytes() == 0 and m.get("test", a) is None


def test_settings_of_a_seed_share_one_read_only_stream_equal_to_a_fresh_draw():
    cache = RunCache()
    spec = _spec()
    streams = []
    for p in spec.settings():
        inst = make_instance(spec.generator, p, spec.root_seed, 1, cache=cache)
        streams.append(_data(spec, inst, 1, cache).stream)
    assert streams[0] is streams[1] is streams[2]  # one draw for the three settings
    s = streams[0]
    assert not (s.x.flags.writeable or s.y_pos.flags.writeable or s.y_neg.flags.writeable)
    fresh = sample_preferences(inst.reward_true, inst.sampler, max(spec.sizes),
                               np.random.default_rng(seed_sequence(spec.root_seed, 1, 1)))
    for a, b in ((s.x, fresh.x), (s.y_pos, fresh.y_pos), (s.y_neg, fresh.y_neg)):
        assert a.tobytes() == b.tobytes()
    other = _data(spec, make_instance(spec.generator, spec.settings()[0], spec.root_seed, 2, cache=cache), 2,
                  cache).stream
    assert other is not s and other.x.tobytes() != s.x.tobytes()  # another seed, another stream


def test_policy_metric_memo_never_serves_another_world(monkeypatch):
    """The same class members evaluated against two instances that differ only in ``r*`` get
    each instance's own values (the picks overlap, so a memo keyed by the member alone would
    serve the first world's numbers); a repeat within one world is served from the memo."""
    cache = RunCache()
    spec = _spec(seeds=1, distractors=(16,))
    p = spec.settings()[0]
    inst_a = make_instance(spec.generator, p, spec.root_seed, 0)
    inst_b = replace(inst_a, reward_true=inst_a.reward_class.member(1).copy(), extra={})  # another r* in R
    calls = []
    real = cells._evaluate
    monkeypatch.setattr(cells, "_evaluate", lambda name, res, inst: calls.append(name) or real(name, res, inst))
    monkeypatch.setattr(cells, "make_instance", lambda *a, **k: replace(inst_a, extra={}))
    df_a = run_unit(spec, p, setting_id(p), 0, cache=cache)
    n_first = len(calls)
    pd.testing.assert_frame_equal(df_a.drop(columns="wall_time"),
                                  run_unit(spec, p, setting_id(p), 0, cache=cache).drop(columns="wall_time"))
    assert len(calls) == n_first  # every policy metric of the repeat came from the memo
    monkeypatch.setattr(cells, "make_instance", lambda *a, **k: replace(inst_b, extra={}))
    df_b = run_unit(spec, p, setting_id(p), 0, cache=cache)
    picks = {}
    for name, inst in (("a", inst_a), ("b", inst_b)):
        data = _data(spec, inst, 0).stream
        picks[name] = {"offline": mle.dpo_path(data, spec.sizes, inst.policy_class, inst.ref, inst.beta),
                       "online": mle.rm_rl_path(data, spec.sizes, inst.reward_class, inst.policy_class, inst.ref,
                                                inst.beta)}
    chosen = [{f.policy_index for fits in picks[w].values() for f in fits} for w in "ab"]
    assert chosen[0] & chosen[1]  # overlapping picks
    for df, inst, w in ((df_a, inst_a, "a"), (df_b, inst_b, "b")):
        for label, fits in picks[w].items():
            got = df[(df.metric == "suboptimality") & (df.estimator == label)].value.to_numpy()
            want = [suboptimality(f.policy, inst.reward_true, inst.ref, inst.beta) for f in fits]
            np.testing.assert_array_equal(got, np.array(want))


def test_values_derived_from_a_writeable_stream_are_never_cached():
    spec = _spec(seeds=1, distractors=(0,))
    inst = make_instance(spec.generator, spec.settings()[0], spec.root_seed, 0)
    data = sample_preferences(inst.reward_true, inst.sampler, 256, np.random.default_rng(3))
    cache = RunCache()
    a = mle_paths._stream(data, [16, 256], cache)
    assert "_token" not in data.__dict__
    data.y_pos[:16], data.y_neg[:16] = data.y_neg[:16].copy(), data.y_pos[:16].copy()  # relabel 16 pairs in place
    b = mle_paths._stream(data, [16, 256], cache)
    assert not np.array_equal(a[2][0], b[2][0])  # the new labels were seen
    for arr in (data.x, data.y_pos, data.y_neg):
        arr.setflags(write=False)
    c = mle_paths._stream(data, [16, 256], cache)
    assert mle_paths._stream(data, [16, 256], cache) is c and all(np.array_equal(u, v) for u, v in zip(b[2], c[2]))


def test_table_does_not_depend_on_unit_order_or_on_earlier_runs():
    spec = _spec()
    units = [(p, s) for p in spec.settings() for s in range(spec.seeds)]

    def table(order, cache):
        frames = [run_unit(spec, p, setting_id(p), s, cache=cache) for p, s in order]
        return (pd.concat(frames).drop(columns="wall_time")
                .sort_values(["setting_id", "seed", "n", "estimator", "metric"]).reset_index(drop=True))

    forward = table(units, RunCache())
    cache = RunCache()
    backward = table(units[::-1], cache)
    warm = table(units[1::2] + units[::2], cache)  # memos full from the backward run
    pd.testing.assert_frame_equal(forward, backward, check_exact=True)
    pd.testing.assert_frame_equal(forward, warm, check_exact=True)


# ---------------------------------------------------------------- nested classes (lineages)
def _fresh(p, seed, spec):
    """The instance built without a cache: all of its distractors drawn at once."""
    rng = np.random.default_rng(seed_sequence(spec.root_seed, seed, 0))
    inst = generators._finite_gap(p, rng)
    return inst, rng.bit_generator.state


def test_nested_distractor_classes_are_the_fresh_draws_with_one_lineage_per_seed():
    """Settings built in the order 16, 300, 40, 1000 (an extension, a smaller class, a larger
    one) give the classes and generator states of fresh builds; one lineage token per seed."""
    spec = _spec(seeds=2, distractors=(16, 300, 40, 1000))
    want = {(p["n_distractors"], s): _fresh(p, s, spec) for p in spec.settings() for s in range(2)}
    cache = RunCache()
    tokens = {}
    for p in spec.settings():
        for s in range(2):
            rng = np.random.default_rng(seed_sequence(spec.root_seed, s, 0))
            inst = generators._finite_gap(p, rng, cache)
            ref_inst, ref_state = want[(p["n_distractors"], s)]
            assert inst.policy_class.logp.tobytes() == ref_inst.policy_class.logp.tobytes()
            assert rng.bit_generator.state == ref_state
            token, K = inst.policy_class.lineage
            assert K == inst.policy_class.size == 3 + p["n_distractors"]
            tokens.setdefault(s, set()).add(token)
    assert len(tokens[0]) == len(tokens[1]) == 1 and tokens[0] != tokens[1]


def test_lineage_paths_and_rl_parts_equal_the_direct_computation_bitwise():
    """The DPO likelihood path and the RL parts of classes of one lineage, requested in the
    order 20, 100, 70, 301 members (block size 64 is not a divisor), are bitwise those of the
    same members as a class without a lineage."""
    spec = _spec(seeds=1, distractors=(298,))
    cache = RunCache()
    inst = make_instance(spec.generator, spec.settings()[0], spec.root_seed, 0, cache=cache)
    data = _data(spec, inst, 0, cache).stream
    full = inst.policy_class
    token = full.lineage[0]
    for K in (20, 100, 70, 301):
        lp = full.logp[:K].copy()
        with_lineage = FinitePolicyClass.from_normalised(full.space, lp.copy(), token)
        plain = FinitePolicyClass.from_normalised(full.space, lp)
        assert plain.lineage is None and with_lineage.lineage == (token, K)
        a = mle.dpo_path(data, spec.sizes, with_lineage, inst.ref, inst.beta, cache=cache)
        b = mle.dpo_path(data, spec.sizes, plain, inst.ref, inst.beta, cache=cache)
        assert [(f.policy_index, f.objective) for f in a] == [(f.policy_index, f.objective) for f in b]
        lr = inst.ref.logp.ravel()
        pos, neg, segments, sizes = mle_paths._stream(data, spec.sizes, cache)
        off = -inst.beta * (lr[pos] - lr[neg])
        ll_a = mle_paths._class_path(with_lineage, data, pos, neg, off, segments, sizes, inst.beta, cache)
        ll_b = mle_paths._path(plain.logp.reshape(K, -1), pos, neg, off, segments, sizes, inst.beta)
        assert ll_a.tobytes() == ll_b.tobytes()
        pa, ka = with_lineage._rl_arrays(inst.ref, cache)
        pb, kb = plain._rl_arrays(inst.ref, cache)
        assert pa.tobytes() == pb.tobytes() and ka.tobytes() == kb.tobytes()


# ---------------------------------------------------------------- outside a run: nothing kept
def _module_containers() -> dict:
    """``(module, name) -> len`` of every dict, list, set and RunCache held at module level by genver."""
    out = {}
    for name, mod in list(sys.modules.items()):
        if name == "genver" or name.startswith("genver."):
            for k, v in list(vars(mod).items()):
                if isinstance(v, (dict, list, set, RunCache)) and not k.startswith("__"):
                    out[(name, k)] = len(v)
    return out


def test_a_library_call_without_a_cache_keeps_nothing():
    """Without ``cache=`` the instance, stream, paths and unit are computed afresh: no module-level
    container grows, a second call builds new objects, and once the caller lets go of its
    objects nothing in genver keeps them alive."""
    spec = _spec(seeds=1, distractors=(16,))
    p = spec.settings()[0]
    run_unit(spec, p, setting_id(p), 0)  # warm-up: imports and compiled kernels
    before = _module_containers()
    inst = make_instance(spec.generator, p, spec.root_seed, 0)
    data = _data(spec, inst, 0).stream
    fits = (mle.dpo_path(data, spec.sizes, inst.policy_class, inst.ref, inst.beta)
            + mle.rm_rl_path(data, spec.sizes, inst.reward_class, inst.policy_class, inst.ref, inst.beta))
    df = run_unit(spec, p, setting_id(p), 0)
    assert _module_containers() == before
    again = make_instance(spec.generator, p, spec.root_seed, 0)
    assert again.policy_class is not inst.policy_class and again.reward_class is not inst.reward_class
    assert _data(spec, again, 0).stream is not data
    assert len(fits) == 2 * len(spec.sizes) and len(df)
    refs = [weakref.ref(o) for o in (inst.policy_class, inst.reward_class, inst.restricted_class, data)]
    del inst, again, data, fits, df
    gc.collect()
    assert [r() for r in refs] == [None] * len(refs)


def test_budgets_bound_every_memo_and_never_change_a_number():
    """The same units with the default budgets (memos shared across settings: hits) and with
    budgets of 4 KiB (almost nothing kept): every memo stays within its budget, and the
    tables are identical."""
    spec = _spec(seeds=2)
    units = [(setting_id(p), p, s) for s in range(spec.seeds) for p in spec.settings()]
    tiny_budgets = {name: 2**12 for name in DEFAULT_BUDGETS}
    tables = {}
    for label, cache in (("default", RunCache()), ("tiny", RunCache(tiny_budgets)), ("none", None)):
        if cache is None:  # library calls, each unit afresh
            rows = [(sid, s, cells.unit_columns(spec, p, sid, s)) for sid, p, s in units]
        else:
            rows = list(InProcessExecutor().map(spec, units, cache=cache))
        tables[label] = (pd.concat([cells.unit_frame(t) for _, _, t in rows]).drop(columns="wall_time")
                         .reset_index(drop=True))
        if cache is None:
            continue
        budgets = DEFAULT_BUDGETS if label == "default" else tiny_budgets
        used = [name for name in budgets if cache.nbytes(name)]
        assert used and all(cache.nbytes(name) <= budgets[name] for name in budgets)
        if label == "default":
            assert cache.hits > 0 and {"instances", "pair_streams", "distractor_pools", "stream_derived",
                                       "lineage_rl_parts", "policy_metrics"} <= set(used)
    pd.testing.assert_frame_equal(tables["default"], tables["tiny"], check_exact=True)
    pd.testing.assert_frame_equal(tables["default"], tables["none"], check_exact=True)



def test_a_run_builds_each_instance_once(tmp_path, monkeypatch):
    """The spec check, the settings table and the units of one run share the run's cache: each
    (setting, seed) instance is drawn once (the spec check's seed-0 instances are not drawn
    again), and the table equals that of units run without any cache."""
    from genver.experiments.runner import run
    from genver.experiments.store import ResultStore

    spec_path = tmp_path / "memo.toml"
    spec_path.write_text("""
[experiment]
name = "memo"
generator = "finite_gap"
[instance]
P = 3
V = 2
H = 3
beta = 0.7
K_R = 3
scale = 0.6
[grid]
n_distractors = [0, 16, 256]
[data]
sizes = [4, 16, 64, 256]
seeds = 3
[[estimators]]
name = "dpo"
label = "offline"
[[estimators]]
name = "rm_rl"
label = "online"
[metrics]
names = ["suboptimality", "kl_to_reference"]
""")
    drawn = []
    real = generators._finite_gap

    def counting(p, rng, cache=None):
        drawn.append((p["n_distractors"], rng.bit_generator.state["state"]["state"]))
        return real(p, rng, cache)

    monkeypatch.setattr(generators, "_finite_gap", counting)
    run(spec_path, tmp_path / "out", progress=False)
    assert len(drawn) == len(set(drawn)) == 3 * 3  # settings × seeds, none twice
    ours = ResultStore(tmp_path / "out").load()
    spec = _spec(seeds=3)
    spec.metrics = ["suboptimality", "kl_to_reference"]
    fresh = pd.concat([run_unit(spec, p, setting_id(p), s) for p in spec.settings() for s in range(3)])
    keys = ["setting_id", "seed", "n", "estimator", "metric"]
    merged = ours.merge(fresh, on=keys, suffixes=("", "_fresh"))
    assert len(merged) == len(fresh) == len(ours) > 0
    assert (merged["value"].to_numpy() == merged["value_fresh"].to_numpy()).all()
