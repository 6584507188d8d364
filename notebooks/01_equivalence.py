# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 01 — Theorem 2.2, seen: with isomorphic classes the two routes are one
#
# Two ways to turn Bradley–Terry preference pairs $(x_i, y_i^+, y_i^-)$ into a policy:
#
# * **offline (DPO):** $\hat\pi_{\text{off}} \in \arg\max_{\pi\in\Pi} \sum_i \log\sigma\big(r_\pi(x_i,y_i^+) - r_\pi(x_i,y_i^-)\big)$
#   with the policy's own ("local") reward $r_\pi = \beta\log\pi/\pi_{\text{ref}}$;
# * **online (RM + RL):** $\hat r \in \arg\max_{r\in\mathcal R} \sum_i \log\sigma\big(r(x_i,y_i^+) - r(x_i,y_i^-)\big)$,
#   then $\hat\pi_{\text{on}} \in \arg\max_{\pi\in\Pi} J_\beta(\pi;\hat r)$.
#
# **Theorem 2.2** (Swamy et al.): if the reward class is the policy class's induced reward class,
# $\mathcal R = \mathcal R(\Pi) = \{r_\pi : \pi\in\Pi\}$ (*isomorphic* classes, compared modulo per-prompt
# constants), the two routes have the same optima — for **any** number of pairs $n$ and **any**
# sampler $\mu$ (coverage). Stage 1 then maximises exactly DPO's objective, so $\hat r = r_{\hat\pi_{\text{off}}}$,
# and the soft-optimal policy of $r_{\hat\pi_{\text{off}}}$ is $\hat\pi_{\text{off}}$ itself.
#
# This notebook fits both routes exactly (genver solves each to its global optimum, so a
# difference can only be statistical, never an optimiser artefact), draws the two policies on top
# of each other, then breaks the isomorphism and watches them separate. All numbers are exact
# (enumeration of the tree), not estimates; only the data are random.

# %%
# %matplotlib inline
import os
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from genver import plots, stats
from genver.classes import LinearRewardClass, TabularPolicyClass, TabularRewardClass
from genver.estimators import dpo, rm_rl
from genver.experiments.report import load_results
from genver.experiments.runner import run
from genver.features import trajectory_features
from genver.metrics import evaluate
from genver.policy import Policy, random_policy
from genver.preferences import sample_preferences
from genver.softrl import soft_optimal
from genver.spaces import TreeSpace

# Sweep results: read from GENVER_NB_RESULTS (default: the repository's git-ignored results/), run
# when missing at GENVER_NB_SIZE = "smoke" (default: each spec's [smoke] table, seconds on a CPU)
# or "full" (the spec as shipped, like `genver run sims/NAME.toml --out results/NAME`).
ROOT = Path.cwd().resolve().parent if Path.cwd().name == "notebooks" else Path.cwd().resolve()
SIZE = os.environ.get("GENVER_NB_SIZE", "smoke")
assert SIZE in ("smoke", "full"), f"GENVER_NB_SIZE must be smoke or full, got {SIZE!r}"
RESULTS = Path(os.environ.get("GENVER_NB_RESULTS", ROOT / "results"))
FIGURES = Path(os.environ.get("GENVER_NB_FIGURES", RESULTS / "figures"))
WORKERS = int(os.environ.get("GENVER_NB_WORKERS", "1"))
print(f"size: {SIZE}; results under {RESULTS}; figures under {FIGURES}")
if SIZE == "smoke":
    print("smoke size: few seeds and a coarse n grid (seconds); GENVER_NB_SIZE=full runs the specs as shipped")

# %% [markdown]
# ## 1. A small prefix tree and a non-additive true reward
#
# $P = 2$ prompts, vocabulary $V = 2$, horizon $H = 3$: $T = V^H = 8$ completions per prompt. The
# reference policy $\pi_{\text{ref}}$ is a random token-level policy; the true reward
# $r^\star = w^\star\cdot\varphi$ uses trajectory features $\varphi$ (token counts, parity of token 0,
# "first token = last token") that do not factorise over tokens. $\beta = 1$.

# %%
sp = TreeSpace(P=2, V=2, H=3)
beta = 1.0
ref = random_policy(sp, random_state=0)
phi = trajectory_features(sp, ["token_counts", "parity", "first_last_match"])
R_lin = LinearRewardClass(sp, phi)
r_star = R_lin.reward(np.random.default_rng(1).normal(size=R_lin.n_params))
pi_star = soft_optimal(r_star, ref, beta).policy  # π*_{r*}, by exact backward induction

# Two samplers μ: full coverage (μ = π_ref) and a narrow one that only ever shows completions
# whose first token is 0 — the other half of the tree is never compared by any pair.
narrow = np.where(sp.decode(np.arange(sp.T))[:, 0] == 0, ref.probs, 0.0)
samplers = {"μ = π_ref (full coverage)": ref,
            "μ narrow (first token 0 only)": Policy.from_probs(sp, narrow / narrow.sum(1, keepdims=True))}
# the same names in the figures' math style (mathtext, as genver.plots writes every label)
sampler_titles = {"μ = π_ref (full coverage)": r"$\mu = \pi_{\mathrm{ref}}$ (full coverage)",
                  "μ narrow (first token 0 only)": r"$\mu$ narrow (first token 0 only)"}
sizes = [8, 64, 512]
print(f"{sp}: T = {sp.T}; linear verifier with d = {R_lin.n_params} features")

# %% [markdown]
# ## 2. Isomorphic classes: every tabular policy and every reward table
#
# $\Pi$ = all token-level policies (tabular, $P(V^H-1)$ free parameters) and $\mathcal R$ = all
# reward tables: $\mathcal R(\Pi) = \mathcal R$ modulo per-prompt constants. With few pairs the
# likelihood's maximiser can lie at infinity and uncovered completions are unidentified, so both
# routes use the same ridge $\lambda = 0.01$ on the reward scale (genver's default), which picks
# one optimum from the set in both routes alike. For each $n$ and each sampler: fit both routes on
# the **same** pairs and draw $\hat\pi_{\text{off}}(y\mid x)$ and $\hat\pi_{\text{on}}(y\mid x)$ over the
# $T$ completions of prompt $x = 0$.

# %%
fig, axes = plt.subplots(len(samplers), len(sizes), figsize=(12, 6.4), layout="constrained")
gaps = []
for i, (mu_name, mu) in enumerate(samplers.items()):
    for j, n in enumerate(sizes):
        data = sample_preferences(r_star, mu, n, random_state=3)
        off = dpo(data, TabularPolicyClass(sp), ref, beta)
        on = rm_rl(data, TabularRewardClass(sp), TabularPolicyClass(sp), ref, beta)
        plots.plot_policies({"offline": off.policy, "online": on.policy}, ax=axes[i][j], title="")
        axes[i][j].set_title(f"{sampler_titles[mu_name]}, {plots.knob_label('n', n)}", fontsize=plots.font_size("title"))
        gaps.append({"sampler": mu_name, "n": n,
                     "max |π_off − π_on|": np.abs(off.policy.probs - on.policy.probs).max(),
                     "suboptimality offline": evaluate(off.policy, r_star, ref, beta)["suboptimality"],
                     "suboptimality online": evaluate(on.policy, r_star, ref, beta)["suboptimality"]})
fig.suptitle(r"isomorphic classes (tabular $\Pi$, tabular $\mathcal{R}$): offline DPO and RM+RL return the same policy")
plots.save_figure(fig, FIGURES / "01_equivalence", formats=("png",), dpi=80)
pd.DataFrame(gaps)

# %% [markdown]
# The two routes agree to rounding (about $10^{-16}$) at every $n$ and under both samplers — the
# narrow sampler included, where half of the completions never appear in a pair. That is
# Theorem 2.2: with isomorphic classes the online route has nothing to add; its suboptimality
# $J_\beta(\pi^\star) - J_\beta(\hat\pi)$ is the offline route's.
#
# ## 3. Breaking the isomorphism: a simple verifier class
#
# Keep the same generator class $\Pi$ (tabular) but let the verifier class be the $d = 4$ linear
# rewards $\mathcal R = \{w\cdot\varphi\}$, which contains $r^\star$. Now $\mathcal R \subsetneq \mathcal R(\Pi)$:
# RL against $\hat r\in\mathcal R$ can only return policies in $\Pi(\mathcal R) = \{\pi^\star_r : r\in\mathcal R\}$,
# a 4-parameter family, while DPO searches all $P(V^H - 1) = 14$ parameters (Theorem 3.1: same
# likelihood, much smaller class). The policies separate, and the online one sits closer to
# $\pi^\star = \pi^\star_{r^\star}$, drawn as the reference band.

# %%
fig, axes = plt.subplots(1, len(sizes), figsize=(12, 3.6), layout="constrained")
rows = []
for j, n in enumerate(sizes):
    data = sample_preferences(r_star, ref, n, random_state=3)
    off = dpo(data, TabularPolicyClass(sp), ref, beta)
    on = rm_rl(data, R_lin, TabularPolicyClass(sp), ref, beta)
    plots.plot_policies({r"$\pi^\star$ (true optimum)": pi_star, "offline": off.policy, "online": on.policy},
                        ax=axes[j], title="")
    axes[j].set_title(r"linear $\mathcal{R}$ ($d = 4$), tabular $\Pi$, $\mu = \pi_{\mathrm{ref}}$, " + plots.knob_label("n", n),
                      fontsize=plots.font_size("title"))
    rows.append({"n": n, "max |π_off − π_on|": np.abs(off.policy.probs - on.policy.probs).max(),
                 "suboptimality offline": evaluate(off.policy, r_star, ref, beta)["suboptimality"],
                 "suboptimality online": evaluate(on.policy, r_star, ref, beta)["suboptimality"]})
fig.suptitle(r"$\mathcal{R} \subsetneq \mathcal{R}(\Pi)$: the routes separate, and RM+RL is nearer $\pi^\star$")
pd.DataFrame(rows)

# %% [markdown]
# One data set per $n$ is an anecdote; the sweeps below average over seeds.
#
# ## 4. The same in sweeps run by `genver run`
#
# Two shipped specs, read from their results directories (run here at the chosen size when
# missing):
#
# * `sims/gap_finite.toml` — finite classes: $\mathcal R$ = $K_R$ reward tables, $\Pi = \Pi(\mathcal R)\cup D$ with
#   $|D|$ random distractor policies. At $|D| = 0$ the classes are isomorphic; distractors break it.
# * `sims/additive_target.toml` — the "hidden reference" (ROUGE-L analogue): $r^\star(x,y) = -\text{Hamming}(y, t_x)$,
#   additive rewards and the position-token log-linear policy class: isomorphic at every $H$.
#
# Mean exact suboptimality over seeds vs $n$, with 95% stratified-bootstrap bands (over seeds;
# smoke runs have few seeds, so the bands are wide).

# %%
res = {}
for name in ["gap_finite", "additive_target"]:
    out = RESULTS / name if SIZE == "full" else RESULTS / "smoke" / name
    run(ROOT / "sims" / f"{name}.toml", out, smoke=SIZE == "smoke", resume=True, progress=False, workers=WORKERS)
    res[name] = load_results(out)  # (manifest, tidy table, settings)

man, df, settings = res["gap_finite"]
agg = stats.aggregate(df, "suboptimality", knobs=man["knobs"], n_boot=1000, random_state=0)
plots.sample_complexity_grid(agg, setting_ids=settings.sort_values("n_distractors")["setting_id"],
                             suptitle=r"gap_finite: $|D| = 0$ (isomorphic) vs $|D| > 0$ (distractors)")

# %%
man, df, settings = res["additive_target"]
agg = stats.aggregate(df, "suboptimality", knobs=man["knobs"], n_boot=1000, random_state=0)
plots.sample_complexity_grid(agg, setting_ids=settings.sort_values("H")["setting_id"],
                             suptitle=r"additive_target: isomorphic at every $H$")

# %% [markdown]
# Per cell (setting, seed, $n$): the largest difference between the two routes' exact
# suboptimalities. It is exactly 0 for the finite isomorphic classes (both routes pick the same
# member by enumeration), at the solver's tolerance for the log-linear class (L-BFGS), and large
# once distractors are added.

# %%
table = []
for name, (man, df, settings) in res.items():
    wide = df[df["metric"] == "suboptimality"].pivot_table(
        index=["setting_id", *man["knobs"], "seed", "n"], columns="estimator", values="value")
    diff = (wide["offline"] - wide["online"]).abs().groupby(level=man["knobs"]).max()
    table += [{"spec": name, "setting": f"{man['knobs'][0]} = {k}", "max |subopt_off − subopt_on|": v}
              for k, v in diff.items()]
pd.DataFrame(table)

# %% [markdown]
# **Verdict.** With isomorphic classes the two routes coincide — the same policy for every $n$,
# every sampler and every seed (to rounding) — as Theorem 2.2 states; with a verifier class
# smaller than the generator's induced class they separate and the online route is ahead. How far
# ahead, and as a function of which knob, is notebook `02_gap_curves`.
