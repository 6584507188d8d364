"""``genver fit``: one estimator on a user's own instance and pairs, evaluated exactly.

The instance and pairs are ``.npz`` files (format in :mod:`genver.io`). The estimator is fitted
over the chosen policy class Π / reward class R (defaults from the instance's keys), and the
fitted policy π̂ is evaluated exactly against the instance's true reward: suboptimality
J_β(π*) − J_β(π̂) = β·KL(π̂ ‖ π*), KL to π_ref, expected reward, win rate, and for a fitted
reward r̂ its expected Bradley–Terry log-likelihood under μ = π_ref. The command's parser is
:func:`add_fit_parser` (used by :func:`genver.cli.build_parser`).
"""
from __future__ import annotations

import argparse
import json
import math
import time
import warnings
from typing import TYPE_CHECKING, Any

import numpy as np

from .experiments.registry import ESTIMATORS as REGISTRY_ESTIMATORS

if TYPE_CHECKING:  # annotations only (genver.classes imports numba)
    from .classes import PolicyClass, RewardClass

#: the estimators ``genver fit`` offers (the registry's entries marked ``cli``)
ESTIMATORS = tuple(sorted(name for name, e in REGISTRY_ESTIMATORS.items() if e.cli))
POLICY_CLASSES = ("finite", "tabular", "soft-optimal")
REWARD_CLASSES = ("finite", "linear", "tabular")
#: ``genver fit`` evaluates the exact expected Bradley–Terry log-likelihood only up to this P·T².
FIT_MAX_PAIR_WORK = 2**28
_OBJECTIVES = {
    "dpo": "DPO log-likelihood of the pairs under r_π = β log π/π_ref (minus the ridge penalty, if any)",
    "ipo": "minus the IPO squared loss Σ (h_π − 1/(2τ))² (minus the ridge penalty, if any)",
    "reward_mle": "Bradley–Terry log-likelihood of the pairs under r̂ (minus the ridge penalty, if any)",
    "rm_rl": "Bradley–Terry log-likelihood of the pairs under r̂ (minus the ridge penalty, if any); "
             "rl_objective is J_β(π̂; r̂)",
}


def _choice(value, allowed, option):
    """Case-insensitive, '-' ≡ '_'; ValueError (one line, exit 2) when unknown."""
    if value is None:
        return None
    key = value.strip().lower().replace("_", "-")
    for a in allowed:
        if key == a.replace("_", "-"):
            return a
    raise ValueError(f"fit: {option}: unknown value {value!r} (choose from {', '.join(allowed)})")


def _resolve_classes(args, inst):
    """Pick the policy and reward classes (defaults from the file's keys); refuse combinations
    the estimators do not support. Returns (estimator, policy, reward, defaulted)."""
    est = _choice(args.estimator, ESTIMATORS, "--estimator")
    pc = _choice(args.policy_class, POLICY_CLASSES, "--policy-class")
    rc = _choice(args.reward_class, REWARD_CLASSES, "--reward-class")
    f = inst.path
    defaulted = {}
    if est != "ipo" and (args.tau is not None or args.average is not None):
        raise ValueError(f"fit: --tau/--average are options of --estimator ipo, not {est}")
    if args.average is not None:
        args.average = _choice(args.average, ("sequence", "token"), "--average")
    if args.l2 is not None and not (math.isfinite(args.l2) and args.l2 >= 0):
        raise ValueError(f"fit: --l2: must be finite and >= 0, got {args.l2}")
    if est == "reward_mle":
        if pc not in (None, "tabular"):
            raise ValueError(f"fit: reward_mle fits a reward only and reports π*_r̂ over the tabular class; "
                             f"--policy-class {pc} is not supported (use rm_rl)")
        pc = "tabular"
    elif pc is None:
        pc = "finite" if inst.policy_class is not None else "tabular"
        defaulted["policy_class"] = ("the instance has policy_class" if pc == "finite"
                                     else "the instance has no policy_class")
    uses_reward = est in ("reward_mle", "rm_rl") or pc == "soft-optimal"
    if rc is not None and not uses_reward:
        raise ValueError(f"fit: {est}: --reward-class is only used with --policy-class soft-optimal")
    if uses_reward and rc is None:
        if inst.reward_class is not None:
            rc, why = "finite", "the instance has reward_class"
        elif inst.reward_features is not None:
            rc, why = "linear", "the instance has reward_features (and no reward_class)"
        else:
            rc, why = "tabular", "the instance has neither reward_class nor reward_features"
        defaulted["reward_class"] = why
    if pc == "finite" and inst.policy_class is None:
        raise ValueError(f"{f}: policy_class: missing (needed by --policy-class finite)")
    if rc == "finite" and inst.reward_class is None:
        raise ValueError(f"{f}: reward_class: missing (needed by --reward-class finite)")
    if rc == "linear" and inst.reward_features is None:
        raise ValueError(f"{f}: reward_features: missing (needed by --reward-class linear)")
    if pc == "soft-optimal" and rc == "tabular":
        why = f" ({defaulted['reward_class']})" if "reward_class" in defaulted else ""
        raise ValueError(f"fit: --policy-class soft-optimal needs a finite or linear reward class, got tabular{why}; "
                         f"Π(R) of the tabular reward class is the tabular policy class")
    if est == "ipo" and pc == "soft-optimal" and rc == "linear":
        raise ValueError("fit: ipo supports the finite, tabular and soft-optimal (finite reward class) policy "
                         "classes, not soft-optimal of a linear reward class")
    needs_support = est in ("dpo", "ipo") or (pc == "soft-optimal" and rc == "linear")
    if needs_support and not inst.ref.full_support:
        x, y = np.argwhere(~np.isfinite(inst.ref.logp))[0]
        what = est if est in ("dpo", "ipo") else "the soft-optimal class of a linear reward class"
        raise ValueError(f"{f}: ref_logp: {what} needs a full-support reference "
                         f"(prompt {x}, completion {y} has probability 0)")
    return est, pc, (rc if uses_reward else None), defaulted


def _jsonable(v):
    if isinstance(v, dict):
        return {k: _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple, np.ndarray)):
        return [_jsonable(x) for x in (v.tolist() if isinstance(v, np.ndarray) else v)]
    if isinstance(v, (bool, np.bool_)):
        return bool(v)
    if isinstance(v, (int, np.integer)):
        return int(v)
    if isinstance(v, (float, np.floating)):
        v = float(v)
        return v if math.isfinite(v) else None  # strict JSON has no inf/NaN (see "notes")
    return v


def _class_info(obj: PolicyClass | RewardClass | None):
    if obj is None:
        return None
    return {"size": obj.size, "n_params": obj.n_params}


def fit_command(args) -> int:
    """``genver fit``: load the instance and pairs, fit, evaluate exactly, print; returns 0."""
    t0 = time.perf_counter()
    inst, data, notes = _load_inputs(args)
    est, pc, rc, defaulted = _resolve_classes(args, inst)
    sp = inst.space
    if not inst.token_level:
        notes.append(f"no V/H in the instance: each prompt is a bandit over its T = {sp.T} completions "
                     f"(TreeSpace(P={sp.P}, V={sp.T}, H=1))")
    Pi, R = _make_classes(inst, pc, rc)
    res, rl = _fit_one(args, est, data, Pi, R, inst)
    policy_index = res.policy_index
    reward_index = res.reward_index
    if pc == "soft-optimal" and rc == "finite" and est in ("dpo", "ipo"):
        reward_index = policy_index  # member k of Π(R) is π*_{r_k}
    metrics = _exact_metrics(res, inst, est, notes)
    convergence = _convergence(res, data, inst, rc, notes)
    if any(isinstance(v, float) and not math.isfinite(v) for v in metrics.values() if v is not None):
        notes.append("non-finite metrics (e.g. KL = inf where the policy puts mass on a completion the "
                     "reference gives probability 0) are reported as null in --json")
    out = {
        "estimator": est,
        "instance": inst.path,
        "pairs": args.pairs,
        "space": {"P": sp.P, "V": sp.V, "H": sp.H, "T": sp.T, "token_level": inst.token_level},
        "beta": inst.beta,
        "n_pairs": len(data),
        "policy_class": pc,
        "reward_class": rc,
        "defaults": defaulted,
        "class_sizes": {"policy": _class_info(Pi), "reward": _class_info(R)},
        "options": {"l2": res.extra.get("l2"),
                    "tau": (1.0 if args.tau is None else args.tau) if est == "ipo" else None,
                    "average": (args.average or "sequence") if est == "ipo" else None},
        "policy_index": policy_index,
        "reward_index": reward_index,
        "reward_weights": res.params if rc == "linear" else None,
        "objective": res.objective,
        "objective_description": _OBJECTIVES[est],
        "rl_objective": res.extra.get("rl_objective", rl.objective if rl is not None else None),
        "rl_residual_kl": res.extra.get("residual_kl", rl.residual_kl if rl is not None else None),
        "convergence": convergence,
        "wall_time_s": res.wall_time,
        "total_time_s": time.perf_counter() - t0,
        "metrics": metrics,
        "notes": notes,
    }
    if args.json:
        print(json.dumps(_jsonable(out), allow_nan=False))
    else:
        _print_fit(out, inst)
    return 0


def _load_inputs(args):
    """The instance, the pairs (``--self-pairs``: pairs y⁺ = y⁻ dropped, kept with a note, or
    refused) and the notes of the warnings loading them raised."""
    from .io import load_instance, load_pairs
    inst = load_instance(args.instance)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:  # pairs y⁺ = y⁻: dropped (default) or kept, with a note; or refused
            data = load_pairs(args.pairs, inst.space,
                              self_pairs="note" if args.self_pairs == "keep" else args.self_pairs)
        except ValueError as e:
            raise ValueError(f"{e} (--self-pairs error)" if args.self_pairs == "error" else str(e)) from None
    notes = [str(w.message) for w in caught if issubclass(w.category, UserWarning)]
    return inst, data, notes


def _make_classes(inst, pc: str, rc: str | None) -> tuple[Any, Any]:
    """The policy class Π and the reward class R (None when unused) named by ``pc`` / ``rc``."""
    from .classes import SoftOptimalPolicyClass, TabularPolicyClass, TabularRewardClass
    R = {"finite": inst.reward_class, "linear": inst.reward_features,
         "tabular": TabularRewardClass(inst.space), None: None}[rc]
    Pi: Any
    if pc == "finite":
        Pi = inst.policy_class
    elif pc == "tabular":
        Pi = TabularPolicyClass(inst.space)
    else:
        Pi = SoftOptimalPolicyClass(R, inst.ref, inst.beta)
    return Pi, R


def _fit_one(args, est: str, data, Pi, R, inst):
    """Run the estimator; returns its FitResult and, for reward_mle, the RL step over the
    tabular class (else None). An estimator's ValueError is prefixed with its name."""
    from .estimators import dpo, ipo, reward_mle, rm_rl
    ref, beta, rho = inst.ref, inst.beta, inst.prompt_weights
    rl = None
    try:
        if est == "dpo":
            res = dpo(data, Pi, ref, beta, l2=args.l2)
        elif est == "ipo":
            res = ipo(data, Pi, ref, beta, tau=1.0 if args.tau is None else args.tau,
                      average=args.average or "sequence", l2=args.l2)
        elif est == "reward_mle":
            res = reward_mle(data, R, l2=args.l2)
            t1 = time.perf_counter()
            rl = Pi.rl_argmax(res.reward, ref, beta, rho)
            res.policy, res.wall_time = rl.policy, res.wall_time + time.perf_counter() - t1
        else:
            res = rm_rl(data, R, Pi, ref, beta, l2=args.l2, prompt_weights=rho)
    except ValueError as e:
        raise ValueError(f"fit: {est}: {e}") from None
    return res, rl


def _exact_metrics(res, inst, est: str, notes: list) -> dict:
    """The fitted policy's exact metrics against ``reward_true`` (and, for a fitted reward, its
    expected Bradley–Terry log-likelihood); what is not computed is a ``None`` and a note."""
    from .metrics import evaluate, expected_bt_loglik, expected_reward, kl_to_optimal, kl_to_reference
    sp, ref, beta, rho = inst.space, inst.ref, inst.beta, inst.prompt_weights
    metrics: dict[str, Any]
    try:
        metrics = evaluate(res.policy, inst.reward_true, ref, beta, rho)
    except ValueError as e:  # the exact win rate is refused on huge instances; keep the rest
        metrics = {"suboptimality": beta * kl_to_optimal(res.policy, inst.reward_true, ref, beta, rho),
                   "kl_to_optimal": kl_to_optimal(res.policy, inst.reward_true, ref, beta, rho),
                   "kl_to_reference": kl_to_reference(res.policy, ref, rho),
                   "expected_reward": expected_reward(res.policy, inst.reward_true, rho),
                   "win_rate": None}
        notes.append(f"win_rate not computed: {e}")
    if est in ("reward_mle", "rm_rl"):
        if sp.P * sp.T * sp.T <= FIT_MAX_PAIR_WORK:
            metrics["expected_bt_loglik"] = expected_bt_loglik(res.reward, inst.reward_true, ref, rho)
            metrics["expected_bt_loglik_true_reward"] = expected_bt_loglik(inst.reward_true, inst.reward_true, ref, rho)
        else:
            metrics["expected_bt_loglik"] = metrics["expected_bt_loglik_true_reward"] = None
            notes.append(f"expected_bt_loglik not computed: P*T^2 = {sp.P * sp.T * sp.T} > {FIT_MAX_PAIR_WORK}")
    return metrics


def _convergence(res, data, inst, rc: str | None, notes: list) -> dict:
    """The fit's convergence record (converged, set-valued, maximisers, MLE existence), with a
    note for each way the reported fit is not the unique maximiser."""
    mle_exists = res.extra.get("mle_exists")
    converged = bool(res.converged) and mle_exists is not False
    set_valued = bool(res.set_valued)
    if rc == "linear" and not res.extra.get("l2") and mle_exists is not False:
        free = _unidentified_directions(data, inst.reward_features)
        if free:
            set_valued = True
            notes.append(f"set-valued: with no ridge penalty the pairs ({len(data)}) leave {free} direction(s) of "
                         f"the {inst.reward_features.n_params} reward weights free that change the reward's ranking "
                         f"of completions: every such weight vector is a maximiser; the reported weights are one "
                         f"of them (try --l2)")
    if mle_exists is False:
        notes.append("the MLE does not exist: the pairs are separable by the linear reward class, so the "
                     "likelihood grows without bound along a direction of the weights; the reported weights are "
                     "where the optimiser stopped and every metric is arbitrary (try --l2)")
    elif not res.converged:
        notes.append("the optimiser did not converge" + (
            " (with no ridge penalty the linear reward MLE lies at infinity when the pairs are separable: try --l2)"
            if rc == "linear" and not res.extra.get("l2") else ""))
    if res.set_valued:  # the finite classes' ties
        notes.append(f"the objective has {res.extra.get('n_maximisers', 'several')} maximisers with different "
                     "members; the lowest index is reported")
    return {"iterations": res.iterations, "grad_norm": res.grad_norm, "converged": converged,
            "set_valued": set_valued, "n_maximisers": res.extra.get("n_maximisers"), "mle_exists": mle_exists}


def _unidentified_directions(data, features) -> int:
    """How many directions ``v`` of the linear reward weights the pairs leave free — ``v`` with
    ``v·(φ(x,y⁺) − φ(x,y⁻)) = 0`` for every pair — that change the reward's ranking of some
    prompt's completions (``v·φ(x,·)`` not constant in ``y``; a per-prompt constant changes no
    Bradley–Terry probability and no policy). Rank tolerance: numpy's default for the SVD."""
    phi = features.phi  # (P, T, d)
    d = phi.shape[2]
    D = phi[data.x, data.y_pos] - phi[data.x, data.y_neg] if len(data) else np.zeros((0, d))
    _, s, vt = np.linalg.svd(np.vstack([D, np.zeros((1, d))]), full_matrices=True)
    tol = s.max(initial=0.0) * max(D.shape) * np.finfo(float).eps
    null = vt[int((s > tol).sum()):].T  # (d, k): directions no pair sees
    if null.shape[1] == 0:
        return 0
    spread = phi @ null  # (P, T, k): how each free direction moves each completion's reward
    centred = (spread - spread.mean(axis=1, keepdims=True)).reshape(-1, null.shape[1])
    return int(np.linalg.matrix_rank(centred, tol=1e-9 * max(1.0, float(np.abs(phi).max()))))


def _fit_value_text(v) -> str:
    """A value of the fit summary as ``genver fit`` prints it: None as a dash, booleans as yes / no,
    floats and arrays to 6 significant digits."""
    if v is None:
        return "—"
    if isinstance(v, (bool, np.bool_)):
        return "yes" if v else "no"
    if isinstance(v, (float, np.floating)):
        return f"{float(v):.6g}"
    if isinstance(v, np.ndarray):
        return "[" + ", ".join(f"{x:.6g}" for x in v) + "]"
    return str(v)


def _print_fit(o, inst) -> None:
    sp = o["space"]
    sizes = o["class_sizes"]

    def cls(kind):
        name, info = o[f"{kind}_class"], sizes[kind]
        if name is None:
            return "not used"
        size = f" (|class| = {info['size']})" if info["size"] is not None else (
            f" ({info['n_params']} parameters)" if info["n_params"] is not None else "")
        why = f"   [default: {o['defaults'][kind + '_class']}]" if kind + "_class" in o["defaults"] else ""
        return f"{name}{size}{why}"

    c = o["convergence"]
    rows = [
        ("instance", f"{o['instance']}: P={sp['P']}, T={sp['T']} "
                     + (f"(V={sp['V']}, H={sp['H']})" if sp["token_level"] else "(bandit: no V/H)")
                     + f", beta={_fit_value_text(o['beta'])}"),
        ("pairs", f"{o['pairs']}: {o['n_pairs']} pairs"),
        ("policy class", cls("policy")),
        ("reward class", cls("reward")),
    ]
    opts = ", ".join(f"{k}={_fit_value_text(v)}" for k, v in o["options"].items() if v is not None)
    if opts:
        rows.append(("options", opts))
    if o["policy_index"] is not None:
        rows.append(("policy_index", str(o["policy_index"])))
    if o["reward_index"] is not None:
        rows.append(("reward_index", str(o["reward_index"])))
    if o["reward_weights"] is not None:
        rows.append(("reward_weights", _fit_value_text(np.asarray(o["reward_weights"]))))
    rows.append(("objective", f"{_fit_value_text(o['objective'])}   ({o['objective_description']})"))
    if o["rl_objective"] is not None:
        rows.append(("rl_objective", f"{_fit_value_text(o['rl_objective'])}   "
                                     f"(residual KL(π̂ ‖ π*_r̂) = {_fit_value_text(o['rl_residual_kl'])})"))
    if c.get("mle_exists") is not None:
        rows.append(("mle_exists", _fit_value_text(c["mle_exists"])))
    rows.append(("convergence", f"converged={_fit_value_text(c['converged'])}, iterations={c['iterations']}, "
                                f"grad_norm={_fit_value_text(c['grad_norm'])}, "
                                f"set_valued={_fit_value_text(c['set_valued'])}"
                 + (f", maximisers={c['n_maximisers']}" if c["n_maximisers"] is not None else "")))
    rows.append(("wall time", f"{o['wall_time_s']:.3f} s fit, {o['total_time_s']:.3f} s total"))
    print(f"genver fit — estimator {o['estimator']}")
    for k, v in rows:
        print(f"  {k:<15} {v}")
    print("exact metrics against reward_true (μ = π_ref for the Bradley–Terry log-likelihoods)")
    for k, v in o["metrics"].items():
        print(f"  {k:<31} {_fit_value_text(v)}")
    for n in o["notes"]:
        print(f"note: {n}")


def add_fit_parser(sub) -> argparse.ArgumentParser:
    """Add ``genver fit`` to the subcommands ``sub``; returns its parser."""
    f = sub.add_parser(
        "fit", help="run one estimator on your own instance and pairs (.npz) and print exact metrics",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=(
            "Fit one estimator to the pairs of PAIRS.npz on the instance INSTANCE.npz and evaluate the\n"
            "fitted policy exactly against the instance's reward_true.\n\n"
            "INSTANCE.npz keys: ref_logp (P,T) normalised log π_ref; reward_true (P,T); beta (scalar > 0);\n"
            "optional prompt_weights (P,); V, H (together, T == V**H: token-level tree; without them each\n"
            "prompt is a bandit over its T completions, TreeSpace(P, V=T, H=1)); reward_class (K_R,P,T)\n"
            "reward tables; policy_class (K_Π,P,T) policy log-probs; reward_features (P,T,d) for the linear\n"
            "reward class. PAIRS.npz key: pairs (N,3) int rows (prompt, preferred, dispreferred).\n"
            "Write both with genver.io.save_instance / save_pairs. Malformed input: one error line, exit 2."),
        epilog=(
            "estimators and the classes they use::\n\n"
            "  dpo         offline MLE over the policy class (finite, tabular, soft-optimal)\n"
            "  ipo         IPO over the policy class (finite, tabular, soft-optimal of a finite R); --tau, --average\n"
            "  reward_mle  reward MLE over the reward class; reports π*_r̂ (tabular class) and the exact\n"
            "              expected Bradley–Terry log-likelihood of r̂ under μ = π_ref\n"
            "  rm_rl       online: reward MLE over the reward class, then exact RL over the policy class\n"
            "\ndefaults::\n\n"
            "  --policy-class finite if the instance has policy_class, else tabular;\n"
            "  --reward-class finite if it has reward_class, else linear if reward_features, else tabular\n"
            "  (the reward class is used by reward_mle, rm_rl and --policy-class soft-optimal).\n\n"
            "soft-optimal = Π(R) = {π*_r : r ∈ R} of the chosen (finite or linear) reward class; for a finite R\n"
            "member k of Π(R) is π*_{r_k}, so dpo/ipo report reward_index = policy_index.\n"
            "--l2: ridge weight (tabular classes: default 0.01, must be > 0; linear: default 0)."))
    f.add_argument("--instance", required=True, metavar="INSTANCE.npz", help="the instance file")
    f.add_argument("--pairs", required=True, metavar="PAIRS.npz", help="the preference pairs file")
    f.add_argument("--estimator", required=True, metavar="{" + ",".join(ESTIMATORS) + "}",
                   help="which estimator to run")
    f.add_argument("--policy-class", metavar="{" + ",".join(POLICY_CLASSES) + "}", default=None,
                   help="policy class Π (default: finite if the instance has policy_class, else tabular)")
    f.add_argument("--reward-class", metavar="{" + ",".join(REWARD_CLASSES) + "}", default=None,
                   help="reward class R (default: finite, else linear, else tabular, by the instance's keys)")
    f.add_argument("--l2", type=float, default=None, metavar="λ",
                   help="ridge penalty weight (default: the estimator's: 0.01 tabular, 0 linear)")
    f.add_argument("--tau", type=float, default=None, help="IPO target 1/(2τ) (ipo only; default 1)")
    f.add_argument("--average", default=None, metavar="{sequence,token}",
                   help="IPO log-probabilities summed (sequence, default) or averaged over the H tokens (ipo only)")
    f.add_argument("--self-pairs", choices=["keep", "drop", "error"], default="drop",
                   help="pairs with preferred == dispreferred (no preference: probability 1/2 under every reward, "
                        "so they change no fit): drop them (default; a note counts them), keep them (a note too: "
                        "each adds log 1/2 to the objective), or refuse the file")
    f.add_argument("--json", action="store_true", help="print exactly one JSON object on stdout")
    f.set_defaults(func=fit_command)
    return f
