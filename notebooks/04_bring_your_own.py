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
# # 04 — Bring your own reward table and pairs
#
# genver's sweeps generate their own worlds; this notebook starts from **yours**: a reference
# policy $\pi_{\text{ref}}$, a true reward $r^\star$ written out as a table over your completions (for
# instance the scores of a trusted verifier on every completion of a small task), a verifier class
# you believe in, and preference pairs $(x, y^+, y^-)$ from your annotators. It fits both routes
# exactly — first with the `genver fit` command line, then with the Python API — and evaluates each
# fitted policy exactly against $r^\star$.
#
# **File format** (`genver.io`, `genver fit --help`): an instance `.npz` with
#
# | key | shape | meaning |
# |---|---|---|
# | `ref_logp` | $(P, T)$ | $\log\pi_{\text{ref}}(y\mid x)$, each row normalised |
# | `reward_true` | $(P, T)$ | $r^\star(x, y)$, the reward the metrics are computed against |
# | `beta` | scalar | KL weight $\beta > 0$ |
# | `V`, `H` | scalars, optional | token-level tree with $T = V^H$ (first token most significant); without them each prompt is a bandit over $T$ completions |
# | `reward_features` | $(P, T, d)$, optional | features $\varphi$ of the linear verifier class $\{w\cdot\varphi\}$ |
# | `reward_class`, `policy_class`, `prompt_weights` | optional | finite classes, prompt distribution $\rho$ |
#
# and a pairs `.npz` with one key, `pairs`: an $(N, 3)$ integer array of rows (prompt, preferred,
# dispreferred). `genver.io.save_instance` / `save_pairs` validate and write both.

# %%
# %matplotlib inline
import json
import os
import subprocess
import sys
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from genver import plots, stats
from genver.classes import TabularPolicyClass
from genver.estimators import dpo, rm_rl
from genver.io import load_instance, load_pairs, save_instance, save_pairs
from genver.metrics import evaluate
from genver.softrl import soft_optimal

# Files go under GENVER_NB_RESULTS (default: the repository's git-ignored results/).
ROOT = Path.cwd().resolve().parent if Path.cwd().name == "notebooks" else Path.cwd().resolve()
RESULTS = Path(os.environ.get("GENVER_NB_RESULTS", ROOT / "results"))
FIGURES = Path(os.environ.get("GENVER_NB_FIGURES", RESULTS / "figures"))
WORK = RESULTS / "bring_your_own"
WORK.mkdir(parents=True, exist_ok=True)
# the `genver` command of this kernel's environment (or the same CLI through its module)
GENVER = ([str(Path(sys.executable).with_name("genver"))] if Path(sys.executable).with_name("genver").exists()
          else [sys.executable, "-m", "genver.cli"])
print(f"files under {WORK}; CLI: {' '.join(GENVER)}")

# %% [markdown]
# ## 1. Your arrays
#
# A stand-in for your task: $P = 3$ prompts, completions of $H = 3$ binary tokens ($V = 2$, $T = 8$).
# The reward table $r^\star$ scores a completion by how many `1` tokens it has, a bonus when the
# last token repeats the first, and a bonus for matching the prompt's reference answer — a
# verifier's view of the whole sequence, not a sum over tokens. You believe your verifier is
# linear in exactly these three features, and you give genver them. The pairs are drawn here with
# numpy from the Bradley–Terry model of $r^\star$ on samples of $\pi_{\text{ref}}$; yours would come from annotators.

# %%
P, V, H = 3, 2, 3
T = V**H
tokens = (np.arange(T)[:, None] // V ** np.arange(H - 1, -1, -1)) % V  # row y: tokens a_1..a_H of completion y
count_ones = tokens.sum(1).astype(float)
first_is_last = (tokens[:, 0] == tokens[:, -1]).astype(float)

reference_answer = np.array([5, 2, 7])                                 # one completion per prompt
matches_reference = (np.arange(T)[None, :] == reference_answer[:, None]).astype(float)  # (P, T)
features = np.stack([np.broadcast_to(count_ones, (P, T)), np.broadcast_to(first_is_last, (P, T)),
                     matches_reference], axis=2)                        # (P, T, d = 3): your φ
w_true = np.array([0.8, 1.5, 2.0])
reward_true = features @ w_true                                         # (P, T): your r* = w·φ
rng = np.random.default_rng(7)
ref_probs = rng.dirichlet(np.full(T, 2.0), size=P)                      # (P, T): your π_ref

# 400 labelled pairs: prompt, two completions from π_ref, Bradley–Terry label under r*
x = rng.integers(P, size=400)
y1 = np.array([rng.choice(T, p=ref_probs[i]) for i in x])
y2 = np.array([rng.choice(T, p=ref_probs[i]) for i in x])
first_wins = rng.random(400) < 1 / (1 + np.exp(-(reward_true[x, y1] - reward_true[x, y2])))
pairs = np.stack([x, np.where(first_wins, y1, y2), np.where(first_wins, y2, y1)], axis=1)
pd.DataFrame(pairs[:5], columns=["prompt", "preferred", "dispreferred"])

# %%
save_instance(WORK / "instance.npz", ref_logp=np.log(ref_probs), reward_true=reward_true, beta=1.0,
              V=V, H=H, reward_features=features)
save_pairs(WORK / "pairs.npz", pairs)
sorted(p.name for p in WORK.iterdir())

# %% [markdown]
# ## 2. `genver fit` on the command line
#
# The offline route: DPO over every token-level policy (`--policy-class tabular`). In a terminal:
#
# ```bash
# genver fit --instance instance.npz --pairs pairs.npz --estimator dpo --l2 0.01
# ```

# %%
fit = [*GENVER, "fit", "--instance", str(WORK / "instance.npz"), "--pairs", str(WORK / "pairs.npz"), "--l2", "0.01"]
print(subprocess.run([*fit, "--estimator", "dpo"], capture_output=True, text=True, check=True).stdout)

# %% [markdown]
# The online route: reward MLE over your linear verifier class (`--reward-class linear`, picked
# by default because the instance has `reward_features`), then exact RL over the same tabular
# policy class. Both routes use the same ridge $\lambda = 0.01$.

# %%
print(subprocess.run([*fit, "--estimator", "rm_rl"], capture_output=True, text=True, check=True).stdout)

# %% [markdown]
# `--json` prints one JSON object, convenient for scripts: the two routes side by side.

# %%
cli = {est: json.loads(subprocess.run([*fit, "--estimator", est, "--json"], capture_output=True, text=True,
                                      check=True).stdout)
       for est in ("dpo", "rm_rl")}
pd.DataFrame({est: o["metrics"] for est, o in cli.items()})

# %% [markdown]
# ## 3. The same through the Python API
#
# `load_instance` / `load_pairs` return validated objects: the tree, $\pi_{\text{ref}}$ as a `Policy`, the
# linear verifier class, and the pairs. The estimators are the ones `genver fit` runs.

# %%
inst = load_instance(WORK / "instance.npz")
# the pairs were drawn y1, y2 ~ π_ref i.i.d., so some have y⁺ = y⁻: keep them as genver's own
# streams do (they change no fit; load_pairs drops them, with a note, by default)
data = load_pairs(WORK / "pairs.npz", inst.space, self_pairs="keep")
Pi = TabularPolicyClass(inst.space)
off = dpo(data, Pi, inst.ref, inst.beta, l2=0.01)
on = rm_rl(data, inst.reward_features, Pi, inst.ref, inst.beta, l2=0.01)
pi_star = soft_optimal(inst.reward_true, inst.ref, inst.beta).policy
api = pd.DataFrame({"dpo": evaluate(off.policy, inst.reward_true, inst.ref, inst.beta),
                    "rm_rl": evaluate(on.policy, inst.reward_true, inst.ref, inst.beta)})
print("fitted verifier weights ŵ:", on.params.round(3), " true w:", w_true)
print("largest |API − CLI| over the shared metrics:",
      max(abs(api.loc[m, e] - cli[e]["metrics"][m]) for e in api for m in api.index))
api

# %%
fig, axes = plt.subplots(1, P, figsize=(13, 3.8), layout="constrained")
for xi in range(P):
    plots.plot_policies({"π* (your r*)": pi_star, "offline (dpo)": off.policy, "online (rm_rl)": on.policy},
                        ax=axes[xi], prompt=xi, title=f"prompt x = {xi}")
fig.suptitle(f"your instance, n = {len(data)} pairs: fitted policies against π*")
plots.save_figure(fig, FIGURES / "04_bring_your_own", formats=("png",), dpi=80);

# %% [markdown]
# Here $r^\star$ lies in your verifier class, so the online route searches only the policies
# $\Pi(\mathcal R)$ that are soft-optimal for *some* linear verifier ($d = 3$ parameters) while DPO searches
# all $P(V^H - 1) = 21$: with the same pairs it lands nearer $\pi^\star$. If your verifier class missed
# $r^\star$, the online route would plateau at the misspecification error instead — try dropping
# a feature from `features` and rerunning.
#
# ## 4. A sample-size curve on your own pairs
#
# Refit both routes on the first $n$ of your pairs (nested prefixes of **one** data set, so there
# is no spread over seeds to show) and draw the exact suboptimality $J_\beta(\pi^\star) - J_\beta(\hat\pi)$ with
# genver's plotting code. With several independent data sets, give each a `seed` and the bands
# appear.

# %%
rows = []
for n in [10, 25, 50, 100, 200, 400]:
    head = data.head(n)
    for est, route, res in [("offline", "offline", dpo(head, Pi, inst.ref, inst.beta, l2=0.01)),
                            ("online", "online", rm_rl(head, inst.reward_features, Pi, inst.ref, inst.beta, l2=0.01))]:
        rows.append({"seed": 0, "n": n, "estimator": est, "route": route, "metric": "suboptimality",
                     "value": evaluate(res.policy, inst.reward_true, inst.ref, inst.beta)["suboptimality"]})
tidy = pd.DataFrame(rows)
plots.plot_sample_complexity(stats.aggregate(tidy, "suboptimality", random_state=0),
                             title="your pairs: suboptimality vs n (one data set)");

# %% [markdown]
# **Next steps.** Put your own verifier's features in `reward_features` (or an explicit list of
# candidate reward tables in `reward_class`), try `--policy-class soft-optimal` for the online
# route's own small class $\Pi(\mathcal R)$, and `--estimator ipo` or `reward_mle` for the relatives.
# For a sweep over many seeds and sizes, write a spec like those in `sims/` and use `genver run`.
