"""The sweep's non-kernel overheads, made cheaper without changing a number: the win rate's
reward levels computed once per instance, vectorised completion sampling, and shards written
from in-memory Parquet bytes, several units to a shard.

Each new path is checked bitwise against the implementation it replaced (kept below as
``_old_*``, verbatim apart from names) on many random shapes and seeds, and against the
brute-force references of ``tests/naive.py`` where one exists."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from conftest import random_logp

import naive
from genver import _kernels
from genver._validation import as_generator, check_beta, check_prompt_weights
from genver.experiments import store as store_mod
from genver.experiments.cells import make_instance, run_unit
from genver.experiments.registry import METRICS
from genver.experiments.spec import parse_spec, setting_id
from genver.experiments.store import ResultStore, parquet_bytes
from genver.metrics import RewardLevels, reward_levels, win_rate
from genver.policy import Policy
from genver.preferences import Preferences, _completion_cdf, _search_cdf, sample_completions, sample_preferences
from genver.runcache import RunCache
from genver.spaces import TreeSpace


# --------------------------------------------------------- the implementations replaced
def _old_group(values, mass):
    vals, masses, starts = [], [], [0]
    for v, m in zip(values, mass):
        u, inv = np.unique(v, return_inverse=True)
        vals.append(u)
        masses.append(np.bincount(inv, weights=m, minlength=u.size))
        starts.append(starts[-1] + u.size)
    return np.concatenate(vals), np.concatenate(masses), np.asarray(starts, dtype=np.int64)


def _old_win_rate(policy, ref, reward, prompt_weights=None):
    sp = policy.space
    r = sp.check_array("reward", reward)
    rho = check_prompt_weights(prompt_weights, sp.P)
    va, ma, sa = _old_group(r, policy.probs)
    vb, mb, sb = _old_group(r, ref.probs)
    out = np.empty(sp.P)
    _kernels.grouped_win_rate(va, ma, vb, mb, sa, sb, out)
    return float(out @ rho)


def _old_sample_completions(mu_probs, x, u):
    P, T = mu_probs.shape
    cdf = np.cumsum(mu_probs, axis=1)
    cdf /= cdf[:, -1:]
    last = T - 1 - np.argmax(mu_probs[:, ::-1] > 0, axis=1)
    cdf[np.arange(T)[None, :] >= last[:, None]] = 1.0
    y = np.empty(x.shape, dtype=np.int64)
    for p in np.unique(x):
        sel = x == p
        y[sel] = np.searchsorted(cdf[p], u[sel], side="right")
    return np.minimum(y, T - 1)


def _old_sample_preferences(reward, sampler, n, random_state=None, *, prompt_weights=None, temperature=1.0,
                            deterministic=False):
    sp = sampler.space
    r = sp.check_array("reward", reward)
    temperature = check_beta(temperature, "temperature")
    rho = check_prompt_weights(prompt_weights, sp.P)
    rng = as_generator(random_state)
    x = rng.choice(sp.P, size=n, p=rho).astype(np.int64)
    mu = sampler.probs
    y1 = _old_sample_completions(mu, x, rng.random(n))
    y2 = _old_sample_completions(mu, x, rng.random(n))
    u = rng.random(n)
    diff = r[x, y1] - r[x, y2]
    if deterministic:
        p1 = np.where(diff > 0, 1.0, np.where(diff < 0, 0.0, 0.5))
    else:
        z = diff / temperature
        p1 = np.where(z >= 0, 1.0 / (1.0 + np.exp(-np.abs(z))), np.exp(-np.abs(z)) / (1.0 + np.exp(-np.abs(z))))
    first = u < p1
    return Preferences(sp, x, np.where(first, y1, y2), np.where(first, y2, y1))


def _random_case(seed):
    """A random tree, sampler/reference with zero-mass completions, a reward (ties on odd
    seeds) and prompt weights (a zero weight on every third seed)."""
    rng = np.random.default_rng(seed)
    P, V, H = int(rng.integers(1, 6)), int(rng.integers(2, 4)), int(rng.integers(1, 4))
    sp = TreeSpace(P, V, H)
    mu = Policy(sp, random_logp(rng, sp, zero_frac=float(rng.choice([0.0, 0.3, 0.7])), zero_prefix=seed % 4 == 0))
    r = rng.integers(-2, 3, size=sp.shape).astype(float) if seed % 2 else rng.normal(size=sp.shape)
    rho = rng.dirichlet(np.ones(P))
    if P > 1 and seed % 3 == 0:
        rho[0] = 0.0
        rho /= rho.sum()
    return rng, sp, mu, r, rho


# ----------------------------------------------------------------------------- win rate
def test_reward_levels_against_brute_force():
    for seed in range(40):
        rng, sp, ref, r, _ = _random_case(seed)
        lv = reward_levels(r, ref)
        probs = np.exp(ref.logp)
        assert lv.starts[0] == 0 and lv.starts[-1] == lv.values.size
        for x in range(sp.P):
            vals = lv.values[lv.starts[x] : lv.starts[x + 1]]
            assert list(vals) == sorted(set(r[x].tolist()))  # distinct, increasing
            for i, v in enumerate(vals):
                want = sum(probs[x, y] for y in range(sp.T) if r[x, y] == v)
                assert lv.ref_mass[lv.starts[x] + i] == pytest.approx(want, rel=1e-14, abs=1e-300)
        np.testing.assert_array_equal(lv.values[lv.level], r.ravel())  # each completion's own level
        assert all(lv.starts[x] <= lv.level[x * sp.T + y] < lv.starts[x + 1] for x in range(sp.P) for y in range(sp.T))


def test_win_rate_with_levels_is_bitwise_the_per_call_grouping():
    for seed in range(120):
        rng, sp, ref, r, rho = _random_case(seed)
        lv = reward_levels(r, ref)
        for _ in range(3):  # several policies against one (r*, π_ref)
            pi = Policy(sp, random_logp(rng, sp, zero_frac=0.4))
            old = _old_win_rate(pi, ref, r, rho)
            assert win_rate(pi, r, ref, rho) == old
            assert win_rate(pi, r, ref, rho, levels=lv) == old
            assert old == pytest.approx(naive.win_rate(pi.logp, ref.logp, r, rho), abs=1e-13)


def test_win_rate_refuses_levels_of_another_reward_or_reference():
    rng, sp, ref, r, rho = _random_case(5)
    pi = Policy(sp, random_logp(rng, sp))
    lv = reward_levels(r, ref)
    with pytest.raises(ValueError, match="levels were not built"):
        win_rate(pi, r + 1.0, ref, rho, levels=lv)
    with pytest.raises(ValueError, match="levels were not built"):
        win_rate(pi, r, pi, rho, levels=lv)
    with pytest.raises(ValueError, match="levels were not built"):
        win_rate(pi, r, ref, rho, levels=(lv.values, lv.ref_mass))
    # the levels keep their own copies: changing the caller's array cannot make them stale
    r_mut = r.copy()
    lv2 = reward_levels(r_mut, ref)
    r_mut[0, 0] += 5.0
    with pytest.raises(ValueError, match="levels were not built"):
        win_rate(pi, r_mut, ref, rho, levels=lv2)
    assert win_rate(pi, r, ref, rho, levels=lv2) == _old_win_rate(pi, ref, r, rho)
    for a in (lv.values, lv.ref_mass, lv.starts, lv.level, lv.reward, lv.ref_logp):
        assert not a.flags.writeable
    assert isinstance(lv, RewardLevels)


def test_instance_levels_are_computed_once_and_give_the_sweep_the_same_win_rates():
    p = {"P": 3, "V": 2, "H": 3, "beta": 1.0, "K_R": 4, "scale": 0.5, "n_distractors": 40,
         "ref_concentration": 1.0, "sampler_concentration": 0.0}
    cache = RunCache()
    inst = make_instance("finite_gap", p, 0, 3, cache=cache)
    assert inst.reward_levels is inst.reward_levels
    again = make_instance("finite_gap", p, 0, 3, cache=cache)  # a memo hit: a fresh Instance, its own levels
    assert again.reward_levels is not inst.reward_levels
    for k in range(0, inst.policy_class.size, 7):
        pol = inst.policy_class.member(k)
        assert METRICS["win_rate"].fn(pol, inst) == _old_win_rate(pol, inst.ref, inst.reward_true,
                                                                        inst.prompt_weights)


# --------------------------------------------------------------------- pair sampling
@pytest.mark.parametrize("options", [{}, {"temperature": 0.3}, {"deterministic": True}])
def test_sample_preferences_draws_exactly_the_old_stream(options):
    for seed in range(150):
        rng, sp, mu, r, rho = _random_case(seed)
        n = int(rng.integers(0, 2500))
        for weights in (None, rho):
            new = sample_preferences(r, mu, n, seed, prompt_weights=weights, **options)
            old = _old_sample_preferences(r, mu, n, seed, prompt_weights=weights, **options)
            assert new.as_array().tobytes() == old.as_array().tobytes()


def test_search_matches_row_by_row_searchsorted_on_ties_and_edges():
    rng = np.random.default_rng(0)
    for T in (1, 2, 5, 64, 1000):
        P = 7
        probs = rng.dirichlet(np.ones(T), size=P)
        probs[rng.random((P, T)) < 0.3] = 0.0
        probs[:, 0] += 1e-3 * (probs.sum(axis=1) == 0)
        probs[2, T // 2 :] = 0.0  # trailing zero mass
        probs[2, 0] += 0.1
        probs /= probs.sum(axis=1, keepdims=True)
        cdf = _completion_cdf(probs)
        x = rng.integers(0, P, size=3000)
        u = rng.random(3000)
        u[:500] = cdf[x[:500], rng.integers(0, T, 500)]  # queries equal to a cdf entry (side="right")
        u[500:550] = 0.0
        u[550:600] = np.nextafter(1.0, 0.0)
        want = np.array([min(np.searchsorted(cdf[xi], ui, side="right"), T - 1) for xi, ui in zip(x, u)])
        np.testing.assert_array_equal(_search_cdf(cdf, x, u), want)
        np.testing.assert_array_equal(sample_completions(probs, x, u), want)
        np.testing.assert_array_equal(sample_completions(probs, x, u), _old_sample_completions(probs, x, u))
        valid = u < 1.0  # a uniform draw lies in [0, 1): never a zero-mass completion
        assert not (probs[x[valid], _search_cdf(cdf, x[valid], u[valid])] == 0).any()
    assert _search_cdf(cdf, np.empty(0, np.int64), np.empty(0)).shape == (0,)


# ------------------------------------------------------------------------ shard writes
def _unit_frame():
    spec = parse_spec({
        "experiment": {"name": "t", "generator": "finite_gap", "description": "d", "expected": "e"},
        "instance": {"P": 2, "V": 2, "H": 2},
        "grid": {"n_distractors": [8]},
        "data": {"sizes": [4, 16], "seeds": 1},
        "estimators": [{"name": "dpo", "label": "offline"}, {"name": "rm_rl", "label": "online"}],
        "metrics": {"names": ["suboptimality", "win_rate"]},
    })
    p = spec.settings()[0]
    return run_unit(spec, p, setting_id(p), 0)


def test_parquet_bytes_are_what_to_parquet_writes(tmp_path):
    df = _unit_frame()
    assert len(df) > 0
    for frame in (df, df.assign(extra=1.5)):
        frame.to_parquet(tmp_path / "want.parquet", index=False)
        assert parquet_bytes(frame) == (tmp_path / "want.parquet").read_bytes()
    df.attrs = {"note": "kept"}
    df.to_parquet(tmp_path / "attrs.parquet", index=False)
    assert parquet_bytes(df) == (tmp_path / "attrs.parquet").read_bytes()


def _without_units_key(data: bytes) -> bytes:
    """A shard's bytes re-serialised without its ``genver_units`` footer key (pyarrow's writer
    is deterministic: what ``to_parquet`` writes for the same table)."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    table = pq.read_table(pa.BufferReader(data))
    meta = {k: v for k, v in table.schema.metadata.items() if k != store_mod.UNITS_KEY}
    buf = pa.BufferOutputStream()
    pq.write_table(table.replace_schema_metadata(meta), buf, compression="snappy")
    return buf.getvalue().to_pybytes()


def test_batch_shard_is_to_parquet_of_the_concatenated_units_plus_the_unit_list(tmp_path):
    """A batch shard holds exactly what ``to_parquet`` writes for the units' tables one after
    another (sorted by unit), plus the unit list in the footer; a batch of one is a unit's table."""
    import json

    import pyarrow.parquet as pq
    store = ResultStore(tmp_path)
    store.prepare()
    df = _unit_frame()
    units = [("bbbbbbbbbb", 3, df.assign(seed=3)), ("aaaaaaaaaa", 7, df.assign(seed=7)),
             ("aaaaaaaaaa", 2, df.assign(seed=2, value=df["value"] * 2))]
    path = store.write_batch(units)
    want = pd.concat([units[2][2], units[1][2], units[0][2]], ignore_index=True)
    want.to_parquet(tmp_path / "want.parquet", index=False)
    assert path.name.startswith("batch-aaaaaaaaaa__seed00002-3-")
    assert _without_units_key(path.read_bytes()) == (tmp_path / "want.parquet").read_bytes()
    assert json.loads(pq.read_metadata(path).metadata[store_mod.UNITS_KEY]) == [
        ["aaaaaaaaaa", 2], ["aaaaaaaaaa", 7], ["bbbbbbbbbb", 3]]
    pd.testing.assert_frame_equal(pd.read_parquet(path), want)
    one = store.write_batch([("cccccccccc", 0, df)])
    df.to_parquet(tmp_path / "one.parquet", index=False)
    assert _without_units_key(one.read_bytes()) == (tmp_path / "one.parquet").read_bytes()
    assert store.done_units() == {("aaaaaaaaaa", 2), ("aaaaaaaaaa", 7), ("bbbbbbbbbb", 3), ("cccccccccc", 0)}
    assert ResultStore(tmp_path).done_units() == store.done_units()  # from the footers, not a cache
    with pytest.raises(ValueError, match="listed twice"):
        store.write_batch([("dddddddddd", 0, df), ("dddddddddd", 0, df)])


def test_shard_write_is_atomic_and_a_failed_write_leaves_nothing(tmp_path, monkeypatch):
    store = ResultStore(tmp_path)
    store.prepare()
    df = _unit_frame()
    path = store.write_batch([("0123456789", 0, df)])
    pd.testing.assert_frame_equal(pd.read_parquet(path), df)
    assert store.done_units() == {("0123456789", 0)}

    def broken(a, b):
        raise OSError("disk full")
    monkeypatch.setattr(store_mod.os, "replace", broken)  # the write fails after the temporary file
    with pytest.raises(OSError, match="disk full"):
        store.write_batch([("0123456789", 1, df), ("0123456789", 2, df)])
    assert store.done_units() == {("0123456789", 0)}
    assert not list(store.shards.glob(".*"))  # no temporary file left (genver.atomic names them .NAME.*.part)
