"""Property tests (hypothesis) over random small trees, references with zeros and
rewards with ties."""
import numpy as np
from conftest import assert_logp_equal, cond_to_dict, lse, random_logp
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.special import logsumexp

import naive
from genver.policy import Policy, sequence_logp_from_cond
from genver.softrl import J_beta, kl, soft_optimal
from genver.spaces import TreeSpace

SETTINGS = settings(max_examples=25, deadline=None)


@st.composite
def worlds(draw):
    P = draw(st.integers(1, 2))
    V = draw(st.integers(2, 3))
    H = draw(st.integers(1, 3))
    seed = draw(st.integers(0, 2**32 - 1))
    zeros = draw(st.booleans())
    ties = draw(st.booleans())
    beta = draw(st.floats(0.05, 20.0, allow_nan=False))
    sp = TreeSpace(P, V, H)
    rng = np.random.default_rng(seed)
    ref = Policy(sp, random_logp(rng, sp, zero_frac=0.3 if zeros else 0.0, zero_prefix=zeros))
    r = rng.integers(-2, 3, size=sp.shape).astype(float) if ties else rng.normal(size=sp.shape) * 2
    return sp, rng, ref, r, beta


def _pi_in_support(rng, ref_logp):
    logits = rng.normal(size=ref_logp.shape) * 2
    logits[~np.isfinite(ref_logp)] = -np.inf
    logits[rng.random(logits.shape) < 0.2] = -np.inf
    for x in range(logits.shape[0]):
        if not np.isfinite(logits[x]).any():
            logits[x] = ref_logp[x]
    return logits - lse(logits)[:, None]


@SETTINGS
@given(worlds())
def test_soft_optimal_matches_closed_form(world):
    sp, _, ref, r, beta = world
    so = soft_optimal(r, ref, beta)
    scale = 1 + np.abs(r).max() / beta
    assert_logp_equal(so.policy.logp, naive.soft_optimal_closed_form(r, ref.logp, beta), atol=1e-11 * scale)
    fin = np.isfinite(ref.logp)
    log_Z = logsumexp(np.where(fin, ref.logp + r / beta, -np.inf), axis=1)
    np.testing.assert_allclose(so.log_Z, log_Z, rtol=0, atol=1e-11 * scale)
    # every node's next-token distribution is normalised
    np.testing.assert_allclose(lse(so.policy.cond), 0.0, rtol=0, atol=1e-12)


@SETTINGS
@given(worlds())
def test_reverse_kl_identity(world):
    sp, rng, ref, r, beta = world
    so = soft_optimal(r, ref, beta)
    pi = Policy(sp, _pi_in_support(rng, ref.logp))
    lhs = J_beta(pi, r, ref, beta, per_prompt=True)
    np.testing.assert_allclose(lhs, naive.J_beta_per_prompt(pi.logp, r, ref.logp, beta), rtol=0,
                               atol=1e-10 * (1 + np.abs(r).max()))
    rhs = beta * so.log_Z - beta * kl(pi, so.policy, per_prompt=True)
    np.testing.assert_allclose(lhs, rhs, rtol=0, atol=1e-10 * (1 + np.abs(r).max() + beta))
    assert (lhs <= beta * so.log_Z + 1e-10 * (1 + np.abs(r).max() + beta)).all()


@SETTINGS
@given(worlds())
def test_telescoping_identity(world):
    sp, _, ref, r, beta = world
    so = soft_optimal(r, ref, beta)
    tel = naive.telescoped_local_reward(cond_to_dict(sp, so.policy.cond), cond_to_dict(sp, ref.cond), beta,
                                        sp.V, sp.H, sp.P)
    fin = np.isfinite(ref.logp)
    expect = r - so.V(0)
    np.testing.assert_allclose(tel[fin], expect[fin], rtol=0, atol=1e-10 * (1 + np.abs(r).max()))


@SETTINGS
@given(worlds())
def test_cond_from_cond_round_trip(world):
    sp, _, ref, _, _ = world
    cond = ref.cond
    np.testing.assert_allclose(lse(cond), 0.0, rtol=0, atol=1e-12)
    naive_cond = naive.token_conditionals(ref.logp, sp.V, sp.H)
    assert_logp_equal(cond, np.stack([np.stack([naive_cond[(x, s)] for h in range(sp.H)
                                                for s in naive._all_prefixes(sp.V, sp.H, h)])
                                      for x in range(sp.P)]), atol=1e-12)
    back = Policy.from_cond(sp, cond)
    assert_logp_equal(back.logp, ref.logp, atol=1e-12)
    assert_logp_equal(sequence_logp_from_cond(sp, cond), ref.logp, atol=1e-12)
    np.testing.assert_array_equal(back.cond, cond)
    assert_logp_equal(Policy(sp, back.logp.copy()).cond, cond, atol=1e-12)
