"""The neural module on CPU: a tiny transformer, exact enumeration, trainers, sweep integration.

Expected values come from independent computations: brute-force forward passes on full
sequences, sampling frequencies, genver's tabular DPO objective, and the exact metrics.
"""
from __future__ import annotations

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")  # the [neural] extra; part of the [test] extra

from genver import metrics as M  # noqa: E402
from genver.estimators.mle import dpo_tabular_objective  # noqa: E402
from genver.experiments.cells import make_instance  # noqa: E402
from genver.experiments.registry import (
    ESTIMATORS,  # noqa: E402
    GENERATORS,  # noqa: E402
)
from genver.experiments.runner import run  # noqa: E402
from genver.experiments.spec import SpecError, load_spec  # noqa: E402
from genver.neural import (  # noqa: E402
    GlobalReward,
    LinearReward,
    LocalReward,
    NeuralPolicy,
    TinyTransformer,
    TrainConfig,
    TransformerConfig,
    dpo_loss,
    monte_carlo_estimate,
    resolve_device,
    reward_table,
    train_dpo,
    train_reward,
    train_sft,
)
from genver.neural.policy import tokens_of  # noqa: E402
from genver.policy import random_policy  # noqa: E402
from genver.preferences import sample_preferences  # noqa: E402
from genver.spaces import TreeSpace  # noqa: E402

SIMS = __import__("pathlib").Path(__file__).resolve().parents[1] / "sims"


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """Tiny models: one intra-op thread is fastest and immune to a busy machine."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _model(sp, seed=0, d=16, heads=2, randomise_head=True):
    torch.manual_seed(seed)
    m = TinyTransformer(TransformerConfig(sp.P, sp.V, sp.H, d_model=d, n_layers=2, n_heads=heads))
    if randomise_head:  # a non-trivial policy (the head starts at zero: π_θ0 = π_ref)
        torch.nn.init.normal_(m.lm_head.weight, std=2.0)
    return m


def _instance(name, **over):
    p = {k: d for k, (_, d) in GENERATORS[name].params.items() if d is not None}
    p.update(over)
    return make_instance(name, p, 0, 0)


# -- model ----------------------------------------------------------------------------------
def test_shapes_and_causal_mask():
    sp = TreeSpace(3, 4, 5)
    m = _model(sp).eval()
    x = torch.tensor([0, 2])
    y = torch.tensor([[1, 2, 3, 0], [3, 3, 0, 1]])
    g = m(x, y)
    assert g.shape == (2, 5, 4)  # one row per position 0..4, V logits
    assert m(x, y[:, :0]).shape == (2, 1, 4)
    assert m.value(x, torch.tensor([[1, 2, 3, 0, 1], [0, 0, 0, 0, 0]])).shape == (2,)
    for j in range(4):  # changing token a_{j+1} (input position j+1) leaves positions 0..j alone
        y2 = y.clone()
        y2[:, j] = (y2[:, j] + 1) % 4
        g2 = m(x, y2)
        assert torch.equal(g2[:, : j + 1], g[:, : j + 1])
        assert not torch.allclose(g2[:, j + 1 :], g[:, j + 1 :])
    with pytest.raises(ValueError, match="d_model"):
        TransformerConfig(1, 2, 2, d_model=10, n_heads=3)
    with pytest.raises(ValueError, match="n_layers"):
        TransformerConfig(1, 2, 2, n_layers=0)


def test_initial_policy_is_the_reference_exactly():
    sp = TreeSpace(2, 3, 3)
    ref = random_policy(sp, 1)
    pol = NeuralPolicy(_model(sp, randomise_head=False), ref)
    assert np.max(np.abs(pol.exact().logp - ref.logp)) < 1e-12


# -- exact evaluation -----------------------------------------------------------------------
def test_exact_enumeration_matches_full_forward_passes_and_sums_to_one():
    sp = TreeSpace(2, 3, 3)
    ref = random_policy(sp, 2)
    pol = NeuralPolicy(_model(sp, 3), ref)
    ex = pol.exact(batch_size=5)  # several batches
    assert np.allclose(np.exp(ex.logp).sum(axis=1), 1.0, atol=1e-12)
    x = torch.arange(sp.P).repeat_interleave(sp.T)
    y = tokens_of(sp, np.tile(np.arange(sp.T), sp.P), "cpu")
    with torch.no_grad():
        direct = pol.seq_logp(x, y).double().numpy().reshape(sp.shape)  # float32 per sequence
    assert np.max(np.abs(direct - ex.logp)) < 2e-5
    assert np.max(np.abs(ex.logp - ref.logp)) > 0.5  # the network is far from π_ref
    with pytest.raises(ValueError, match="max_sequences"):
        pol.exact(max_sequences=10)


def test_sampling_frequencies_match_the_exact_distribution():
    sp = TreeSpace(2, 2, 3)
    pol = NeuralPolicy(_model(sp, 4), random_policy(sp, 5))
    p = np.exp(pol.exact().logp)
    n = 40_000
    gen = torch.Generator().manual_seed(0)
    for x in range(sp.P):
        y = pol.sample(torch.full((n,), x), generator=gen)
        idx = (y * torch.tensor([4, 2, 1])).sum(1).numpy()
        freq = np.bincount(idx, minlength=sp.T) / n
        se = np.sqrt(p[x] * (1 - p[x]) / n)
        assert np.all(np.abs(freq - p[x]) <= 4.5 * se + 1e-12), (freq, p[x])


def test_monte_carlo_estimate_agrees_with_exact_within_its_standard_error():
    sp = TreeSpace(2, 3, 2)
    ref = random_policy(sp, 6)
    pol = NeuralPolicy(_model(sp, 7), ref)
    r = np.random.default_rng(8).standard_normal(sp.shape)
    rt = torch.tensor(r)
    est = monte_carlo_estimate(pol, lambda x, y: rt[x, (y * torch.tensor([3, 1])).sum(1)], 20_000, seed=1)
    ex = pol.exact()
    assert est["estimate"] == "monte_carlo"
    for key, exact in (("expected_reward", M.expected_reward(ex, r)), ("kl_to_reference", M.kl_to_reference(ex, ref))):
        mean, se = est[key]
        assert 0 < se < 0.05
        assert abs(mean - exact) < 4.5 * se, (key, mean, exact, se)
    with pytest.raises(ValueError, match="n_samples"):
        monte_carlo_estimate(pol, lambda x, y: x, 1)


# -- losses and trainers --------------------------------------------------------------------
def test_dpo_loss_equals_the_tabular_dpo_objective():
    sp = TreeSpace(2, 3, 2)
    ref = random_policy(sp, 9)
    pol = NeuralPolicy(_model(sp, 10), ref)
    r = np.random.default_rng(11).standard_normal(sp.shape)
    c = sample_preferences(r, ref, 300, np.random.default_rng(12)).counts()
    beta = 0.7
    logp = pol.exact().logp
    obj, _, logp_z = dpo_tabular_objective(c, ref, beta, 0.0)(logp - ref.logp)  # π_z = π_θ
    assert np.max(np.abs(logp_z - logp)) < 1e-12
    w = torch.tensor(c.count / c.count.sum(), dtype=torch.float32)
    with torch.no_grad():
        loss = dpo_loss(pol, torch.tensor(c.x), tokens_of(sp, c.y_pos, "cpu"), tokens_of(sp, c.y_neg, "cpu"), w, beta)
    assert abs(float(loss) - (-obj / c.count.sum())) < 1e-5
    assert abs(obj) > 1.0  # not a trivial value


def test_sft_loss_decreases_and_learns_the_target():
    sp = TreeSpace(1, 3, 3)
    pol = NeuralPolicy(_model(sp, 13, randomise_head=False), random_policy(sp, 14))
    target = 17
    log = train_sft(pol, [0], [target], [1.0], TrainConfig(steps=80, lr=1e-2), seed=0)
    assert log.losses[-1] < 0.1 * log.losses[0]
    assert np.exp(pol.exact().logp[0, target]) > 0.9
    assert log.tokens == 80 * (sp.H + 1)


def test_reward_models_fit_bradley_terry_data():
    inst = _instance("additive_target", P=2, V=3, H=2)
    c = sample_preferences(inst.reward_true, inst.sampler, 2000, np.random.default_rng(0)).counts()
    cfg = TrainConfig(steps=150, lr=1e-2)
    torch.manual_seed(0)
    for rm in (LinearReward(inst.space, inst.reward_class.phi), GlobalReward(TransformerConfig(2, 3, 2, d_model=16,
                                                                                                 n_heads=2))):
        log = train_reward(rm, c, cfg, seed=1)
        assert log.losses[-1] < log.losses[0]
        r = reward_table(rm, inst.space, "cpu")
        # the fitted reward ranks completions like r* (up to per-prompt constants)
        for x in range(inst.space.P):
            assert np.corrcoef(r[x], inst.reward_true[x])[0, 1] > 0.9
    pol = NeuralPolicy(_model(inst.space, 2), inst.ref)
    local = reward_table(LocalReward(pol, 0.5), inst.space, "cpu")
    assert np.max(np.abs(local - 0.5 * (pol.exact().logp - inst.ref.logp))) < 2e-5


@pytest.mark.parametrize("name,opts", [("neural_dpo", {}), ("neural_rm_rl", {"rm": "linear"}),
                                       ("neural_online_dpo", {"rm": "linear", "labels": "bradley_terry"})])
def test_neural_routes_improve_over_the_reference_on_additive_target(name, opts):
    inst = _instance("additive_target", P=2, V=3, H=3)
    c = sample_preferences(inst.reward_true, inst.sampler, 1024, np.random.default_rng(1)).counts()
    o = {"steps": 120, "lr": 1e-2, "d_model": 16, "n_heads": 2, **opts}
    res = ESTIMATORS[name].fit(inst, c, np.random.default_rng(3), o)
    ref_gap = M.suboptimality(inst.ref, inst.reward_true, inst.ref, inst.beta)
    gap = M.suboptimality(res.policy, inst.reward_true, inst.ref, inst.beta)
    assert gap < 0.6 * ref_gap, (gap, ref_gap)
    assert res.converged is False and res.iterations >= 120 and res.extra["device"] == "cpu"
    if name != "neural_dpo":
        assert res.reward.shape == inst.space.shape


def test_a_cell_is_reproducible_and_independent_of_the_thread_count():
    inst = _instance("additive_target", P=2, V=3, H=2)
    c = sample_preferences(inst.reward_true, inst.sampler, 200, np.random.default_rng(1)).counts()
    o = {"steps": 30, "d_model": 16, "n_heads": 2, "rm": "global"}
    fit = ESTIMATORS["neural_rm_rl"].fit
    n0 = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        a = fit(inst, c, np.random.default_rng(5), o)
        torch.set_num_threads(2)
        b = fit(inst, c, np.random.default_rng(5), o)
    finally:
        torch.set_num_threads(n0)
    assert np.array_equal(a.policy.logp, b.policy.logp) and np.array_equal(a.reward, b.reward)
    d = fit(inst, c, np.random.default_rng(6), o)
    assert not np.array_equal(a.policy.logp, d.policy.logp)


def test_bad_neural_options_are_refused():
    inst = _instance("finite_gap", P=1, V=2, H=2, K_R=4, n_distractors=0)
    c = sample_preferences(inst.reward_true, inst.sampler, 50, np.random.default_rng(0)).counts()
    with pytest.raises(ValueError, match="rm = 'linear' needs a linear verifier"):
        ESTIMATORS["neural_rm_rl"].fit(inst, c, np.random.default_rng(0), {"rm": "linear", "steps": 2})
    with pytest.raises(ValueError, match="steps"):
        TrainConfig(steps=0)
    with pytest.raises(ValueError, match="lr"):
        TrainConfig(lr=-1.0)
    with pytest.raises(ValueError, match="schedule"):
        TrainConfig(schedule="cosine")


def test_linear_schedule_decays_the_learning_rate_to_lr_over_steps():
    sp = TreeSpace(1, 2, 2)
    pol = NeuralPolicy(_model(sp, 1, randomise_head=False), random_policy(sp, 2))
    seen = []
    orig = torch.optim.AdamW.step

    def spy(self, *a, **k):
        seen.append(self.param_groups[0]["lr"])
        return orig(self, *a, **k)

    torch.optim.AdamW.step = spy
    try:
        train_sft(pol, [0], [3], [1.0], TrainConfig(steps=4, lr=0.1, schedule="linear"), seed=0)
        train_sft(pol, [0], [3], [1.0], TrainConfig(steps=2, lr=0.1), seed=0)
    finally:
        torch.optim.AdamW.step = orig
    assert np.allclose(seen, [0.1, 0.075, 0.05, 0.025, 0.1, 0.1])


# -- devices --------------------------------------------------------------------------------
def test_device_auto_falls_back_to_cpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto").type == "cpu"
    assert resolve_device("cpu").type == "cpu"
    with pytest.raises(ValueError, match="no CUDA device"):
        resolve_device("cuda")
    with pytest.raises(ValueError, match="auto, cpu or cuda"):
        resolve_device("tpu")


def test_run_refuses_cuda_without_a_device_before_writing(monkeypatch, tmp_path):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ValueError, match="no CUDA device"):
        run(SIMS / "neural_gap_horizon.toml", tmp_path / "out", smoke=True, device="cuda", progress=False)
    assert not (tmp_path / "out").exists()


# -- sweeps ---------------------------------------------------------------------------------
def test_neural_spec_smoke_run_and_report(tmp_path):
    from genver.experiments.report import make_report
    from genver.experiments.store import ResultStore

    out = tmp_path / "ngh"
    run(SIMS / "neural_gap_horizon.toml", out, smoke=True, device="auto", progress=False)
    df = ResultStore(out).load()
    assert set(df["estimator"]) == {"offline", "online", "neural_offline", "neural_online"}
    assert set(df.loc[df["estimator"].str.startswith("neural"), "route"]) == {"offline", "online"}
    assert np.isfinite(df["value"]).all()
    assert ResultStore(out).read_manifest()["device_last_run"] == "cpu"
    path, table = make_report(out)
    text = path.read_text()
    assert "N_ε(neural_offline)/N_ε(neural_online)" in text
    assert (out / "figures" / "ratio_compare.png").exists()


def test_spec_compare_and_smoke_estimator_overrides_are_validated(tmp_path):
    spec = load_spec(SIMS / "neural_additive_target.toml", smoke=True)
    assert spec.estimators[2]["options"]["steps"] == 60
    text = (SIMS / "neural_additive_target.toml").read_text()
    bad = tmp_path / "bad.toml"
    bad.write_text(text.replace('compare = [["neural_offline", "neural_online"]]',
                                'compare = [["neural_offline", "nope"]]'))
    with pytest.raises(SpecError, match=r"compare\[0\]: unknown estimator label 'nope'"):
        load_spec(bad)
    bad.write_text(text.replace('"estimators.2.steps" = 60', '"estimators.9.steps" = 60'))
    with pytest.raises(SpecError, match="no estimator number 9"):
        load_spec(bad, smoke=True)
    bad.write_text(text.replace("rm = \"linear\"", "rm = \"linearr\""))
    with pytest.raises(SpecError, match="rm"):
        load_spec(bad)


def test_tokens_per_step_bookkeeping_is_exact():
    inst = _instance("additive_target", P=2, V=3, H=2)
    c = sample_preferences(inst.reward_true, inst.sampler, 100, np.random.default_rng(1)).counts()
    pol = NeuralPolicy(_model(inst.space, 1, randomise_head=False), inst.ref)
    log = train_dpo(pol, c, 1.0, TrainConfig(steps=3, batch_size=8), seed=0)
    assert log.tokens == 3 * 2 * 8 * (inst.space.H + 1)  # minibatches of 8 pairs (more unique triples than 8)
    assert len(c.x) > 8 and math.isfinite(log.tokens_per_second)


def test_compiled_training_matches_eager_training():
    """TrainConfig.compile routes the same network through torch.compile: same losses."""
    inst = _instance("additive_target", P=2, V=3, H=2)
    c = sample_preferences(inst.reward_true, inst.sampler, 100, np.random.default_rng(1)).counts()
    logs = []
    for comp in (False, True):
        pol = NeuralPolicy(_model(inst.space, 3), inst.ref)
        logs.append(train_dpo(pol, c, 1.0, TrainConfig(steps=4, compile=comp), seed=0).losses)
        assert (pol._forward is pol.model) is (not comp)
    assert np.allclose(logs[0], logs[1], rtol=1e-4, atol=1e-6)
