"""``genver fit`` end to end, on files the tests write, and its malformed-file errors.

Expected values come from plain numpy written here (brute-force argmax of the DPO / IPO /
Bradley–Terry likelihoods over finite members, closed-form soft-optimal policies and KLs),
except where the spec names a genver function as the reference (``genver.metrics.evaluate``
for the linear online route).
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from genver.cli import main
from genver.io import load_instance, load_pairs, save_instance, save_pairs
from genver.metrics import evaluate
from genver.policy import Policy
from genver.spaces import TreeSpace

BETA = 0.7


# -- plain-numpy helpers ----------------------------------------------------------------------
def lse(a, axis=-1):
    m = np.max(a, axis=axis, keepdims=True)
    return np.squeeze(np.log(np.exp(a - m).sum(axis=axis, keepdims=True)) + m, axis=axis)


def normalise(s):
    return s - lse(s)[..., None]


def log_sigmoid(z):
    return -np.logaddexp(0.0, -z)


def bt_loglik(table, pairs):
    """Σ_i log σ(r(x, y⁺) − r(x, y⁻)) of one (P, T) table."""
    x, yp, yn = pairs.T
    return log_sigmoid(table[x, yp] - table[x, yn]).sum()


def soft_opt_logp(ref_logp, r, beta):
    return normalise(ref_logp + r / beta)


def kl_rows(lp, lq):
    p = np.exp(lp)
    return (p * (lp - lq)).sum(-1)


def unique_argmax(v):
    k = int(np.argmax(v))
    second = np.max(np.delete(v, k)) if v.size > 1 else -np.inf
    assert v[k] - second > 1e-6, "test data has a near tie; pick another seed"
    return k


def make_instance(rng, P, T, *, K_R=3, n_distractors=5, d=2):
    ref_logp = normalise(rng.normal(size=(P, T)))
    tables = rng.normal(size=(K_R, P, T))
    reward_true = tables[0].copy()
    pi_R = soft_opt_logp(ref_logp[None], tables, BETA)
    distract = normalise(ref_logp[None] + rng.normal(size=(n_distractors, P, T)))
    policy_class = np.concatenate([distract[:2], pi_R, distract[2:]])  # Π(R) members not first
    features = rng.normal(size=(P, T, d))
    return dict(ref_logp=ref_logp, reward_true=reward_true, beta=np.float64(BETA),
                reward_class=tables, policy_class=policy_class, reward_features=features)


def make_pairs(rng, inst, n):
    P, T = inst["ref_logp"].shape
    x = rng.integers(P, size=n)
    p_ref = np.exp(inst["ref_logp"])
    y1 = np.array([rng.choice(T, p=p_ref[i]) for i in x])
    y2 = np.array([rng.choice(T, p=p_ref[i]) for i in x])
    while (same := y1 == y2).any():  # two different completions: genver fit drops self-pairs by default
        y2[same] = [rng.choice(T, p=p_ref[i]) for i in x[same]]
    r = inst["reward_true"]
    first = rng.random(n) < 1 / (1 + np.exp(-(r[x, y1] - r[x, y2])))
    return np.stack([x, np.where(first, y1, y2), np.where(first, y2, y1)], axis=1).astype(np.int64)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Token-level instance (P=2, V=2, H=2) and a bandit instance (P=2, T=3), with pairs."""
    d = tmp_path_factory.mktemp("fit")
    rng = np.random.default_rng(12345)
    tok = make_instance(rng, 2, 4)
    tok_pairs = make_pairs(rng, tok, 40)
    np.savez(d / "tok.npz", V=np.int64(2), H=np.int64(2), **tok)
    np.savez(d / "tok_pairs.npz", pairs=tok_pairs)
    ban = make_instance(rng, 2, 3)
    ban["prompt_weights"] = np.array([0.3, 0.7])
    ban_pairs = make_pairs(rng, ban, 25)
    np.savez(d / "ban.npz", **ban)
    np.savez(d / "ban_pairs.npz", pairs=ban_pairs)
    return {"dir": d, "tok": tok, "tok_pairs": tok_pairs, "ban": ban, "ban_pairs": ban_pairs}


def run_json(capsys, files, which, *extra):
    d = files["dir"]
    rc = main(["fit", "--instance", str(d / f"{which}.npz"), "--pairs", str(d / f"{which}_pairs.npz"),
               "--json", *extra])
    out, err = capsys.readouterr()
    assert rc == 0, err
    return json.loads(out)


def exact_metrics(inst, logp, rho=None):
    """suboptimality and KLs of a policy (P, T log-probs) in closed form."""
    P = logp.shape[0]
    rho = np.full(P, 1 / P) if rho is None else rho
    opt = soft_opt_logp(inst["ref_logp"], inst["reward_true"], BETA)
    k = kl_rows(logp, opt) @ rho
    return {"suboptimality": BETA * k, "kl_to_optimal": k,
            "kl_to_reference": kl_rows(logp, inst["ref_logp"]) @ rho,
            "expected_reward": (np.exp(logp) * inst["reward_true"]).sum(-1) @ rho}


def assert_metrics(reported, expected):
    for key, v in expected.items():
        assert reported[key] == pytest.approx(v, rel=1e-9, abs=1e-12), key
    assert reported["suboptimality"] >= 0
    assert 0 <= reported["win_rate"] <= 1


# -- end to end ---------------------------------------------------------------------------------
def test_dpo_finite_token_level_matches_brute_force(capsys, files):
    inst, pairs = files["tok"], files["tok_pairs"]
    Pi, lr = inst["policy_class"], inst["ref_logp"]
    x, yp, yn = pairs.T
    ll = np.array([log_sigmoid(BETA * ((lp - lr)[x, yp] - (lp - lr)[x, yn])).sum() for lp in Pi])
    k = unique_argmax(ll)
    o = run_json(capsys, files, "tok", "--estimator", "dpo")
    assert (o["policy_class"], o["reward_class"], o["defaults"].keys()) == ("finite", None, {"policy_class"})
    assert o["policy_index"] == k and o["reward_index"] is None and o["reward_weights"] is None
    assert o["objective"] == pytest.approx(ll[k], rel=1e-10)
    assert o["space"] == {"P": 2, "V": 2, "H": 2, "T": 4, "token_level": True}
    assert o["convergence"]["converged"] and not o["convergence"]["set_valued"]
    assert o["n_pairs"] == 40
    assert_metrics(o["metrics"], exact_metrics(inst, Pi[k]))


def test_ipo_finite_matches_brute_force(capsys, files):
    inst, pairs = files["tok"], files["tok_pairs"]
    Pi, lr = inst["policy_class"], inst["ref_logp"]
    x, yp, yn = pairs.T
    tau = 0.4
    for average, scale in (("sequence", 1.0), ("token", 0.5)):  # H = 2
        loss = np.array([((scale * ((lp - lr)[x, yp] - (lp - lr)[x, yn]) - 1 / (2 * tau)) ** 2).sum() for lp in Pi])
        k = unique_argmax(-loss)
        o = run_json(capsys, files, "tok", "--estimator", "ipo", "--tau", str(tau), "--average", average)
        assert o["policy_index"] == k and o["objective"] == pytest.approx(-loss[k], rel=1e-10)
        assert o["options"]["average"] == average and o["options"]["tau"] == tau
        assert_metrics(o["metrics"], exact_metrics(inst, Pi[k]))


def test_reward_mle_finite_and_expected_loglik(capsys, files):
    inst, pairs = files["tok"], files["tok_pairs"]
    ll = np.array([bt_loglik(t, pairs) for t in inst["reward_class"]])
    k = unique_argmax(ll)
    o = run_json(capsys, files, "tok", "--estimator", "reward_mle")
    assert (o["reward_class"], o["policy_class"]) == ("finite", "tabular")
    assert o["reward_index"] == k and o["policy_index"] is None
    assert o["objective"] == pytest.approx(ll[k], rel=1e-10)
    # exact expected BT log-likelihood under μ = π_ref with labels from r*
    mu, rs = np.exp(inst["ref_logp"]), inst["reward_true"]

    def e_ll(r):
        d, ds = r[:, :, None] - r[:, None, :], rs[:, :, None] - rs[:, None, :]
        s = 1 / (1 + np.exp(-ds))
        per = (mu[:, :, None] * mu[:, None, :] * (s * log_sigmoid(d) + (1 - s) * log_sigmoid(-d))).sum((1, 2))
        return per.mean()

    m = o["metrics"]
    assert m["expected_bt_loglik"] == pytest.approx(e_ll(inst["reward_class"][k]), rel=1e-10)
    assert m["expected_bt_loglik_true_reward"] == pytest.approx(e_ll(rs), rel=1e-10)
    assert m["expected_bt_loglik"] <= m["expected_bt_loglik_true_reward"] + 1e-12
    pol = soft_opt_logp(inst["ref_logp"], inst["reward_class"][k], BETA)  # π*_r̂ over the tabular class
    assert_metrics(m, exact_metrics(inst, pol))


@pytest.mark.parametrize("policy_class", ["soft-optimal", "tabular"])
def test_rm_rl_linear_matches_evaluate_of_soft_optimal_policy(capsys, files, policy_class):
    inst, pairs = files["tok"], files["tok_pairs"]
    l2 = 0.05
    o = run_json(capsys, files, "tok", "--estimator", "rm_rl", "--reward-class", "linear",
                 "--policy-class", policy_class, "--l2", str(l2))
    assert (o["reward_class"], o["policy_class"]) == ("linear", policy_class)
    assert o["policy_index"] is None and o["reward_index"] is None
    w = np.array(o["reward_weights"])
    phi = inst["reward_features"]
    # w is the penalised Bradley–Terry MLE: its gradient vanishes
    x, yp, yn = pairs.T
    D = phi[x, yp] - phi[x, yn]
    grad = D.T @ (1 / (1 + np.exp(D @ w))) - l2 * w
    assert np.abs(grad).max() < 1e-6
    assert o["objective"] == pytest.approx(bt_loglik(phi @ w, pairs) - 0.5 * l2 * w @ w, rel=1e-10)
    assert o["convergence"]["converged"]
    # metrics == genver.metrics.evaluate of π*_{w·φ} recomputed here
    sp = TreeSpace(2, 2, 2)
    ref = Policy(sp, inst["ref_logp"])
    pol = Policy(sp, soft_opt_logp(inst["ref_logp"], phi @ w, BETA))
    want = evaluate(pol, inst["reward_true"], ref, BETA)
    for key, v in want.items():
        assert o["metrics"][key] == pytest.approx(v, rel=1e-7, abs=1e-10), key
    assert o["metrics"]["suboptimality"] >= 0


def test_bandit_rm_rl_finite_with_prompt_weights(capsys, files):
    inst, pairs = files["ban"], files["ban_pairs"]
    rho = inst["prompt_weights"]
    k_r = unique_argmax(np.array([bt_loglik(t, pairs) for t in inst["reward_class"]]))
    r_hat, lr = inst["reward_class"][k_r], inst["ref_logp"]
    J = np.array([((np.exp(lp) * r_hat).sum(-1) - BETA * kl_rows(lp, lr)) @ rho for lp in inst["policy_class"]])
    k_p = unique_argmax(J)
    o = run_json(capsys, files, "ban", "--estimator", "rm_rl")
    assert o["space"] == {"P": 2, "V": 3, "H": 1, "T": 3, "token_level": False}
    assert any("bandit" in n for n in o["notes"])
    assert (o["policy_class"], o["reward_class"]) == ("finite", "finite")
    assert set(o["defaults"]) == {"policy_class", "reward_class"}
    assert (o["reward_index"], o["policy_index"]) == (k_r, k_p)
    assert o["rl_objective"] == pytest.approx(J[k_p], rel=1e-10)
    assert_metrics(o["metrics"], exact_metrics(inst, inst["policy_class"][k_p], rho))


def test_bandit_dpo_soft_optimal_finite_and_tabular(capsys, files):
    inst, pairs = files["ban"], files["ban_pairs"]
    x, yp, yn = pairs.T
    # Π(R) with a finite R: DPO's implicit reward of π*_{r_k} is r_k − β log Z, so the DPO
    # likelihood of member k is the Bradley–Terry likelihood of r_k
    k = unique_argmax(np.array([bt_loglik(t, pairs) for t in inst["reward_class"]]))
    o = run_json(capsys, files, "ban", "--estimator", "dpo", "--policy-class", "soft-optimal")
    assert (o["policy_index"], o["reward_index"], o["reward_class"]) == (k, k, "finite")
    assert_metrics(o["metrics"], exact_metrics(inst, soft_opt_logp(inst["ref_logp"], inst["reward_class"][k], BETA),
                                               inst["prompt_weights"]))
    o = run_json(capsys, files, "ban", "--estimator", "dpo", "--policy-class", "tabular", "--l2", "0.1")
    assert o["policy_index"] is None and o["options"]["l2"] == 0.1 and o["convergence"]["converged"]
    assert o["metrics"]["suboptimality"] >= 0 and o["convergence"]["grad_norm"] < 1e-5


def test_human_output_names_classes_and_defaults(capsys, files):
    d = files["dir"]
    rc = main(["fit", "--instance", str(d / "tok.npz"), "--pairs", str(d / "tok_pairs.npz"),
               "--estimator", "rm_rl"])
    out, err = capsys.readouterr()
    assert rc == 0 and err == ""
    assert "policy class    finite (|class| = 8)   [default: the instance has policy_class]" in out
    assert "reward class    finite (|class| = 3)   [default: the instance has reward_class]" in out
    for key in ("policy_index", "reward_index", "objective", "suboptimality", "win_rate", "wall time"):
        assert key in out


def test_console_script_json(files):
    exe = shutil.which("genver", path=os.path.dirname(sys.executable)) or shutil.which("genver")
    assert exe, "genver console script not installed"
    d = files["dir"]
    p = subprocess.run([exe, "fit", "--instance", str(d / "tok.npz"), "--pairs", str(d / "tok_pairs.npz"),
                        "--estimator", "dpo", "--json"], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    o = json.loads(p.stdout)  # exactly one JSON object on stdout
    inst, pairs = files["tok"], files["tok_pairs"]
    x, yp, yn = pairs.T
    lr = inst["ref_logp"]
    ll = [log_sigmoid(BETA * ((lp - lr)[x, yp] - (lp - lr)[x, yn])).sum() for lp in inst["policy_class"]]
    assert o["policy_index"] == int(np.argmax(ll))
    for key in ("estimator", "policy_class", "reward_class", "policy_index", "reward_index", "reward_weights",
                "objective", "convergence", "wall_time_s", "metrics"):
        assert key in o


def test_save_and_load_roundtrip(tmp_path, files):
    inst = files["tok"]
    saved = save_instance(tmp_path / "i", V=2, H=2, **inst)  # no ".npz" appended
    assert os.path.exists(tmp_path / "i")
    back = load_instance(tmp_path / "i")
    assert back.space == saved.space == TreeSpace(2, 2, 2)
    assert np.array_equal(back.ref.logp, inst["ref_logp"]) and back.beta == BETA
    assert back.policy_class.size == 8 and back.reward_class.size == 3 and back.reward_features.n_params == 2
    save_pairs(tmp_path / "p.npz", files["tok_pairs"], back.space)
    assert np.array_equal(load_pairs(tmp_path / "p.npz", back.space).as_array(), files["tok_pairs"])
    bad = dict(inst, ref_logp=inst["ref_logp"] + 0.1)
    with pytest.raises(ValueError, match=r"ref_logp: rows must be normalised"):
        save_instance(tmp_path / "bad.npz", **bad)
    assert not os.path.exists(tmp_path / "bad.npz")


# -- malformed input: one line on stderr naming the file and key, exit code 2 ---------------------
def _mutate(base, **changes):
    d = dict(base)
    for k, v in changes.items():
        if v is None:
            d.pop(k)
        else:
            d[k] = v
    return d


def _unnormalised(inst):
    r = inst["ref_logp"].copy()
    r[1] += 0.3
    return r


def _with(a, idx, value):
    a = np.array(a, dtype=float)
    a[idx] = value
    return a


INSTANCE_CASES = {
    # name: (function of the token-level instance dict -> changes, key expected in the message)
    "missing ref_logp": (lambda i: {"ref_logp": None}, "ref_logp: missing"),
    "missing reward_true": (lambda i: {"reward_true": None}, "reward_true: missing"),
    "missing beta": (lambda i: {"beta": None}, "beta: missing"),
    "ref_logp 1-d": (lambda i: {"ref_logp": i["ref_logp"].ravel()}, "ref_logp"),
    "ref_logp string dtype": (lambda i: {"ref_logp": i["ref_logp"].astype(str)}, "ref_logp"),
    "ref_logp bool dtype": (lambda i: {"ref_logp": i["ref_logp"] > 0}, "ref_logp"),
    "ref_logp unnormalised": (lambda i: {"ref_logp": _unnormalised(i)}, "ref_logp: rows must be normalised"),
    "ref_logp NaN": (lambda i: {"ref_logp": _with(i["ref_logp"], (0, 1), np.nan)}, "ref_logp: contains NaN"),
    "ref_logp +inf": (lambda i: {"ref_logp": _with(i["ref_logp"], (0, 1), np.inf)}, "ref_logp"),
    "reward_true NaN": (lambda i: {"reward_true": _with(i["reward_true"], (1, 0), np.nan)}, "reward_true"),
    "reward_true inf": (lambda i: {"reward_true": _with(i["reward_true"], (1, 0), -np.inf)}, "reward_true"),
    "reward_true shape": (lambda i: {"reward_true": i["reward_true"][:, :3]}, "reward_true: must have shape"),
    "beta zero": (lambda i: {"beta": np.float64(0.0)}, "beta"),
    "beta negative": (lambda i: {"beta": np.float64(-1.0)}, "beta"),
    "beta nan": (lambda i: {"beta": np.float64(np.nan)}, "beta"),
    "beta vector": (lambda i: {"beta": np.array([1.0, 2.0])}, "beta: must be a scalar"),
    "beta string": (lambda i: {"beta": np.array("one")}, "beta"),
    "V**H != T": (lambda i: {"H": np.int64(3)}, "H: V**H = 2**3 = 8 does not match T = 4"),
    "V without H": (lambda i: {"H": None}, "H: missing"),
    "V float": (lambda i: {"V": np.float64(2.0)}, "V: must be an integer"),
    "V too small": (lambda i: {"V": np.int64(1)}, "V"),
    "prompt_weights shape": (lambda i: {"prompt_weights": np.ones(3) / 3}, "prompt_weights"),
    "prompt_weights sum": (lambda i: {"prompt_weights": np.array([0.5, 0.6])}, "prompt_weights: must sum to 1"),
    "reward_class inf": (lambda i: {"reward_class": _with(i["reward_class"], (0, 0, 0), np.inf)}, "reward_class"),
    "reward_class 2-d": (lambda i: {"reward_class": i["reward_class"][0]}, "reward_class"),
    "policy_class unnormalised": (lambda i: {"policy_class": i["policy_class"] + 0.5}, "policy_class"),
    "policy_class shape": (lambda i: {"policy_class": i["policy_class"][:, :1]}, "policy_class"),
    "reward_features shape": (lambda i: {"reward_features": i["reward_features"][:, :2]}, "reward_features"),
    "reward_features NaN": (lambda i: {"reward_features": _with(i["reward_features"], (0, 0, 0), np.nan)},
                            "reward_features"),
    "unknown key": (lambda i: {"reward_feature": i["reward_features"]}, "reward_feature: unknown key"),
    "object array": (lambda i: {"reward_true": np.array([[1, "a"]], dtype=object)}, "reward_true: cannot read"),
}


def _run_err(capsys, argv):
    rc = main(argv)
    out, err = capsys.readouterr()
    assert rc == 2
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("genver: error: "), err
    assert "Traceback" not in err
    return lines[0]


@pytest.mark.parametrize("case", list(INSTANCE_CASES))
def test_malformed_instance(capsys, files, tmp_path, case):
    change, needle = INSTANCE_CASES[case]
    base = dict(files["tok"], V=np.int64(2), H=np.int64(2))
    path = tmp_path / "I.npz"
    np.savez(path, **_mutate(base, **change(base)))
    msg = _run_err(capsys, ["fit", "--instance", str(path), "--pairs", str(files["dir"] / "tok_pairs.npz"),
                            "--estimator", "dpo"])
    assert f"{path}: " in msg and needle in msg, msg


def test_unnormalised_message_format(capsys, files, tmp_path):
    base = dict(files["tok"], V=np.int64(2), H=np.int64(2))
    np.savez(tmp_path / "I.npz", **_mutate(base, ref_logp=_unnormalised(base)))
    msg = _run_err(capsys, ["fit", "--instance", str(tmp_path / "I.npz"),
                            "--pairs", str(files["dir"] / "tok_pairs.npz"), "--estimator", "dpo"])
    assert msg == (f"genver: error: {tmp_path / 'I.npz'}: ref_logp: rows must be normalised (logsumexp = 0); "
                   f"prompt 1 has logsumexp 0.3")


def _bad_pairs(files):
    p = files["tok_pairs"]
    return {
        "prompt out of range": ({"pairs": _iset(p, (0, 0), 2)}, "pairs[:, 0] (prompt) must lie in [0, 1]"),
        "completion out of range": ({"pairs": _iset(p, (3, 2), 4)}, "pairs[:, 1:] (completions) must lie in [0, 3]"),
        "negative": ({"pairs": _iset(p, (1, 1), -1)}, "pairs[:, 1:]"),
        "float dtype": ({"pairs": p.astype(float)}, "pairs: must be an integer array"),
        "wrong shape": ({"pairs": p[:, :2]}, "pairs: must have shape (N, 3)"),
        "missing key": ({"pair": p}, "pair: unknown key"),
        "no keys": ({}, "pairs: missing"),
    }


def _iset(a, idx, v):
    a = a.copy()
    a[idx] = v
    return a


@pytest.mark.parametrize("case", ["prompt out of range", "completion out of range", "negative", "float dtype",
                                  "wrong shape", "missing key", "no keys"])
def test_malformed_pairs(capsys, files, tmp_path, case):
    arrays, needle = _bad_pairs(files)[case]
    path = tmp_path / "D.npz"
    np.savez(path, **arrays)
    msg = _run_err(capsys, ["fit", "--instance", str(files["dir"] / "tok.npz"), "--pairs", str(path),
                            "--estimator", "dpo"])
    assert f"{path}: " in msg and needle in msg, msg


def test_unreadable_files(capsys, files, tmp_path):
    pairs = str(files["dir"] / "tok_pairs.npz")
    cases = {tmp_path / "nope.npz": "cannot read: no such file", tmp_path: "cannot read"}
    (tmp_path / "text.npz").write_text("not numpy\n")
    cases[tmp_path / "text.npz"] = "cannot read: not a numpy .npz archive"
    np.save(tmp_path / "arr.npy", files["tok"]["ref_logp"])
    cases[tmp_path / "arr.npy"] = "cannot read: a single .npy array"
    (tmp_path / "trunc.npz").write_bytes((files["dir"] / "tok.npz").read_bytes()[:200])
    cases[tmp_path / "trunc.npz"] = "cannot read"
    for path, needle in cases.items():
        msg = _run_err(capsys, ["fit", "--instance", str(path), "--pairs", pairs, "--estimator", "dpo"])
        assert f"{path}: " in msg and needle in msg, msg
    msg = _run_err(capsys, ["fit", "--instance", str(files["dir"] / "tok.npz"), "--pairs",
                            str(tmp_path / "none.npz"), "--estimator", "dpo"])
    assert "none.npz: cannot read" in msg


OPTION_CASES = {
    "unknown estimator": (["--estimator", "ppo"], "--estimator: unknown value 'ppo'"),
    "unknown policy class": (["--estimator", "dpo", "--policy-class", "loglinear"], "--policy-class: unknown value"),
    "unknown reward class": (["--estimator", "rm_rl", "--reward-class", "neural"], "--reward-class: unknown value"),
    "unknown average": (["--estimator", "ipo", "--average", "mean"], "--average: unknown value"),
    "reward_mle with policy class": (["--estimator", "reward_mle", "--policy-class", "finite"],
                                     "--policy-class finite"),
    "dpo with reward class": (["--estimator", "dpo", "--reward-class", "finite"], "--reward-class is only used"),
    "tau without ipo": (["--estimator", "dpo", "--tau", "1"], "--tau/--average"),
    "negative l2": (["--estimator", "dpo", "--l2", "-1"], "--l2"),
    "ipo soft-optimal linear": (["--estimator", "ipo", "--policy-class", "soft-optimal", "--reward-class", "linear"],
                                "ipo supports"),
    "zero l2 tabular": (["--estimator", "dpo", "--policy-class", "tabular", "--l2", "0"], "l2 must be"),
}


@pytest.mark.parametrize("case", list(OPTION_CASES))
def test_bad_estimator_class_combinations(capsys, files, case):
    extra, needle = OPTION_CASES[case]
    d = files["dir"]
    msg = _run_err(capsys, ["fit", "--instance", str(d / "tok.npz"), "--pairs", str(d / "tok_pairs.npz"), *extra])
    assert needle in msg, msg


def test_classes_missing_from_file(capsys, files, tmp_path):
    bare = {k: files["tok"][k] for k in ("ref_logp", "reward_true", "beta")}
    np.savez(tmp_path / "I.npz", **bare)
    base = ["fit", "--instance", str(tmp_path / "I.npz"), "--pairs", str(files["dir"] / "tok_pairs.npz")]
    for extra, needle in ((["--estimator", "dpo", "--policy-class", "finite"], "I.npz: policy_class: missing"),
                          (["--estimator", "rm_rl", "--reward-class", "finite"], "I.npz: reward_class: missing"),
                          (["--estimator", "rm_rl", "--reward-class", "linear"], "I.npz: reward_features: missing"),
                          (["--estimator", "dpo", "--policy-class", "soft-optimal"],
                           "neither reward_class nor reward_features")):
        assert needle in _run_err(capsys, base + extra)


def test_reference_without_full_support(capsys, files, tmp_path):
    inst = dict(files["ban"])
    lr = inst["ref_logp"].copy()
    lr[1, 2] = -np.inf
    inst["ref_logp"] = normalise(lr)
    inst.pop("policy_class")  # members would not be checked against it, but keep the case minimal
    np.savez(tmp_path / "I.npz", **inst)
    base = ["fit", "--instance", str(tmp_path / "I.npz"), "--pairs", str(files["dir"] / "ban_pairs.npz")]
    msg = _run_err(capsys, base + ["--estimator", "dpo"])
    assert "I.npz: ref_logp: dpo needs a full-support reference (prompt 1, completion 2" in msg
    # the online route with a finite R and tabular Π does not need full support
    assert main(base + ["--estimator", "rm_rl", "--json"]) == 0
    o = json.loads(capsys.readouterr().out)
    assert o["metrics"]["suboptimality"] >= 0


def test_bandit_needs_two_completions(capsys, files, tmp_path):
    np.savez(tmp_path / "I.npz", ref_logp=np.zeros((2, 1)), reward_true=np.zeros((2, 1)), beta=np.float64(1))
    np.savez(tmp_path / "D.npz", pairs=np.zeros((1, 3), dtype=np.int64))
    msg = _run_err(capsys, ["fit", "--instance", str(tmp_path / "I.npz"), "--pairs", str(tmp_path / "D.npz"),
                            "--estimator", "dpo"])
    assert "I.npz: ref_logp: a bandit instance (no V/H) needs T >= 2" in msg
