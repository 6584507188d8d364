"""The ``genver`` command line.

``genver quickstart`` runs the bundled small version of the headline experiment
(``genver/experiments/quickstart.toml``: finite classes, ``Π = Π(R) ∪ D``, both routes solved
exactly), then writes its figures and report and prints the sample-efficiency ratios.
``genver run / plot / report`` do the same for any spec (see :mod:`genver.experiments`);
``genver repair`` rebuilds a results directory's lost manifest from its shards; ``genver check``
runs the propositions of ``theory/``.

Exit codes: 0 success; 1 a FAIL verdict (``report``); 2 bad input or a file that cannot be
read or written (one ``genver: error: ...`` line naming the key or path); 3 ``report`` /
``plot`` of an unfinished run without ``--partial``; 128 + the signal when ``run`` is stopped by
SIGINT (130), SIGHUP (129) or SIGTERM (143), after saving its finished units.

``genver fit`` runs one estimator on a user's own instance and pairs (``.npz`` files, format in
:mod:`genver.io`) and prints the fit and its exact metrics against the instance's true reward.
"""
from __future__ import annotations

import argparse
import io
import json
import math
import os
import sys
import textwrap
import time
from typing import TYPE_CHECKING

import numpy as np

from . import __version__
from .experiments.registry import ESTIMATORS as REGISTRY_ESTIMATORS

if TYPE_CHECKING:  # annotations only (genver.classes imports numba)
    from .classes import PolicyClass, RewardClass


def _quickstart(args) -> int:
    import importlib.resources

    from .experiments.report import make_report
    from .experiments.runner import run
    from .experiments.store import ResultStore

    t0 = time.perf_counter()
    spec = importlib.resources.files("genver.experiments") / "quickstart.toml"
    with importlib.resources.as_file(spec) as spec_path:
        print(f"genver quickstart: running the bundled gap_finite sweep ({spec_path.name}) into {args.out}/",
              file=sys.stderr)
        workers = args.workers or min(4, os.cpu_count() or 1)
        summary = run(spec_path, args.out, workers=workers, executor="threads",
                      resume=ResultStore(args.out).root.exists())
    path, table = make_report(args.out)
    import pandas as pd
    ratio = pd.read_csv(io.StringIO(_ratio_csv(args.out)))
    print(f"N_ε = pairs a route needs for mean exact suboptimality J(π*) − J(π̂) ≤ ε = {ratio['eps'].iloc[0]};\n"
          f"ratio = N_ε(offline)/N_ε(online), 95% bootstrap CI over {summary['units'] // len(ratio)} seeds:")
    print(ratio.drop(columns="eps").to_string(index=False))
    import textwrap
    v = table.iloc[0]
    print(textwrap.fill(f"verdict: {v['verdict']} — {v['detail']}", 100, subsequent_indent="  "))
    if v.get("in_words"):
        print(textwrap.fill(f"  = {v['in_words']}", 100, subsequent_indent="    "))
    print(f"report: {path}  figures: {path.parent / 'figures'}  ({time.perf_counter() - t0:.1f} s)")
    return 0


def _ratio_csv(root) -> str:
    from .experiments.tables import load_results, ratio_table
    man, df, settings = load_results(root)
    r = ratio_table(man, df, settings)
    cols = ["n_distractors", "predicted_ratio", "N_offline", "N_online", "ratio", "ratio_lo", "ratio_hi", "eps"]
    return r.sort_values("n_distractors")[cols].round(2).to_csv(index=False)


#: exit code of `genver report` / `plot` on incomplete results without --partial
EXIT_INCOMPLETE = 3


def _incomplete_line(root, hit=None) -> str | None:
    """Print and return the INCOMPLETE line of a results directory (``None`` when complete):
    from a report-cache ``hit`` when there is one (the results are as they were then: no shard
    is read, nothing heavy imported), else from the shards."""
    if hit is not None and "incomplete" in hit:
        line = hit["incomplete"]
    else:
        from .experiments.tables import completeness_line
        line = completeness_line(root)
    if line:
        print(line)
    return line


def _plot(args) -> int:
    from .experiments.figcache import plot_cache_name, read_report_cache
    name = plot_cache_name(args.style, args.pdf)
    hit = read_report_cache(args.dir, name)  # unchanged: no SciPy, matplotlib
    if hit is None:  # drawn now; make_figures records the completeness line with the figures
        from .experiments.report import make_figures
        files = [str(f) for f in make_figures(args.dir, style=args.style, pdf=args.pdf)]
        incomplete = _incomplete_line(args.dir, read_report_cache(args.dir, name))
    else:
        incomplete = _incomplete_line(args.dir, hit)
        files = [os.path.join(args.dir, f) for f in hit["files"]]
    for f in files:
        print(f)
    return EXIT_INCOMPLETE if incomplete and not args.partial else 0


def _report(args) -> int:
    from .experiments.figcache import read_report_cache
    if args.format not in ("md", "html"):
        raise ValueError(f"report: --format must be md or html, got {args.format!r}")
    hit = read_report_cache(args.dir, args.format)  # unchanged results: no SciPy, matplotlib
    incomplete = _incomplete_line(args.dir, hit)
    if hit is not None:
        text, path = hit["terminal"], os.path.join(args.dir, hit["path"])
        failed = any(str(v["verdict"]).startswith("FAIL") for v in hit["verdicts"])
    else:
        from .experiments.report import format_verdicts, make_report
        p, table = make_report(args.dir, fmt=args.format)
        text, path, failed = format_verdicts(table), str(p), bool(table["verdict"].str.startswith("FAIL").any())
    print(text)
    print(f"report: {path}" + ("  (results unchanged: nothing recomputed)" if hit is not None else ""))
    if incomplete and not args.partial:
        return EXIT_INCOMPLETE
    return 1 if failed else 0


#: the description of ``genver check``
CHECK_DESCRIPTION = "Executable, falsifiable checks of the paper's propositions (theory/)."


def add_check_arguments(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The options of ``genver check``: the one definition, used by the subcommand here and by
    ``genver.theory.runner.main``; returns ``p``. (The ids are checked when the checks run.)"""
    p.add_argument("--quick", action="store_true", help="fewer random instances (well under a minute)")
    p.add_argument("--only", action="append", metavar="ID",
                   help="run only this check (repeatable); ids: the modules of theory/, e.g. reverse_kl")
    p.add_argument("--seed", type=int, default=0, help="random_state passed to every check (default 0)")
    p.add_argument("--json", action="store_true", help="print the summary as JSON records instead of a table")
    return p


def _check(args) -> int:
    from .theory.runner import run_from_args
    return run_from_args(args)


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


def _fit(args) -> int:
    import warnings

    from .classes import SoftOptimalPolicyClass, TabularPolicyClass, TabularRewardClass
    from .estimators import dpo, ipo, reward_mle, rm_rl
    from .io import load_instance, load_pairs
    from .metrics import evaluate, expected_bt_loglik, expected_reward, kl_to_optimal, kl_to_reference

    t0 = time.perf_counter()
    inst = load_instance(args.instance)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:  # pairs y⁺ = y⁻: dropped (default) or kept, with a note; or refused
            data = load_pairs(args.pairs, inst.space,
                              self_pairs="note" if args.self_pairs == "keep" else args.self_pairs)
        except ValueError as e:
            raise ValueError(f"{e} (--self-pairs error)" if args.self_pairs == "error" else str(e)) from None
    est, pc, rc, defaulted = _resolve_classes(args, inst)
    sp, ref, beta, rho = inst.space, inst.ref, inst.beta, inst.prompt_weights
    notes = [str(w.message) for w in caught if issubclass(w.category, UserWarning)]
    if not inst.token_level:
        notes.append(f"no V/H in the instance: each prompt is a bandit over its T = {sp.T} completions "
                     f"(TreeSpace(P={sp.P}, V={sp.T}, H=1))")

    R = {"finite": inst.reward_class, "linear": inst.reward_features,
         "tabular": TabularRewardClass(sp), None: None}[rc]
    if pc == "finite":
        Pi = inst.policy_class
    elif pc == "tabular":
        Pi = TabularPolicyClass(sp)
    else:
        Pi = SoftOptimalPolicyClass(R, ref, beta)

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

    policy_index = res.policy_index
    reward_index = res.reward_index
    if pc == "soft-optimal" and rc == "finite" and est in ("dpo", "ipo"):
        reward_index = policy_index  # member k of Π(R) is π*_{r_k}
    reward_weights = res.params if rc == "linear" else None

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

    rl_objective = res.extra.get("rl_objective", rl.objective if rl is not None else None)
    rl_residual = res.extra.get("residual_kl", rl.residual_kl if rl is not None else None)
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
    convergence = {"iterations": res.iterations, "grad_norm": res.grad_norm, "converged": converged,
                   "set_valued": set_valued, "n_maximisers": res.extra.get("n_maximisers"), "mle_exists": mle_exists}
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
    if any(isinstance(v, float) and not math.isfinite(v) for v in metrics.values() if v is not None):
        notes.append("non-finite metrics (e.g. KL = inf where the policy puts mass on a completion the "
                     "reference gives probability 0) are reported as null in --json")
    out = {
        "estimator": est,
        "instance": inst.path,
        "pairs": args.pairs,
        "space": {"P": sp.P, "V": sp.V, "H": sp.H, "T": sp.T, "token_level": inst.token_level},
        "beta": beta,
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
        "reward_weights": reward_weights,
        "objective": res.objective,
        "objective_description": _OBJECTIVES[est],
        "rl_objective": rl_objective,
        "rl_residual_kl": rl_residual,
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


def _fmt(v) -> str:
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
                     + f", beta={_fmt(o['beta'])}"),
        ("pairs", f"{o['pairs']}: {o['n_pairs']} pairs"),
        ("policy class", cls("policy")),
        ("reward class", cls("reward")),
    ]
    opts = ", ".join(f"{k}={_fmt(v)}" for k, v in o["options"].items() if v is not None)
    if opts:
        rows.append(("options", opts))
    if o["policy_index"] is not None:
        rows.append(("policy_index", str(o["policy_index"])))
    if o["reward_index"] is not None:
        rows.append(("reward_index", str(o["reward_index"])))
    if o["reward_weights"] is not None:
        rows.append(("reward_weights", _fmt(np.asarray(o["reward_weights"]))))
    rows.append(("objective", f"{_fmt(o['objective'])}   ({o['objective_description']})"))
    if o["rl_objective"] is not None:
        rows.append(("rl_objective",
                     f"{_fmt(o['rl_objective'])}   (residual KL(π̂ ‖ π*_r̂) = {_fmt(o['rl_residual_kl'])})"))
    if c.get("mle_exists") is not None:
        rows.append(("mle_exists", _fmt(c["mle_exists"])))
    rows.append(("convergence", f"converged={_fmt(c['converged'])}, iterations={c['iterations']}, "
                                f"grad_norm={_fmt(c['grad_norm'])}, set_valued={_fmt(c['set_valued'])}"
                 + (f", maximisers={c['n_maximisers']}" if c["n_maximisers"] is not None else "")))
    rows.append(("wall time", f"{o['wall_time_s']:.3f} s fit, {o['total_time_s']:.3f} s total"))
    print(f"genver fit — estimator {o['estimator']}")
    for k, v in rows:
        print(f"  {k:<15} {v}")
    print("exact metrics against reward_true (μ = π_ref for the Bradley–Terry log-likelihoods)")
    for k, v in o["metrics"].items():
        print(f"  {k:<31} {_fmt(v)}")
    for n in o["notes"]:
        print(f"note: {n}")


def _flush_seconds_from_env() -> float | None:
    """``GENVER_FLUSH_SECONDS``: seconds of finished units `genver run` buffers per shard."""
    v = os.environ.get("GENVER_FLUSH_SECONDS", "").strip()
    if not v:
        return None
    try:
        return float(v)
    except ValueError:
        raise ValueError(f"GENVER_FLUSH_SECONDS must be a number of seconds, got {v!r}") from None


class _SignalsAsInterrupts:
    """While inside: SIGTERM and SIGHUP raise :class:`~genver.experiments.runner.Interrupted`
    as Ctrl-C raises KeyboardInterrupt, so the run saves its buffered units and ends its workers
    (the default action would kill this process alone, leaving the workers as orphans). A
    repeated SIGTERM / SIGHUP during that cleanup is ignored (a scheduler's SIGKILL still ends
    it). Restores the previous handlers on exit."""

    SIGNALS = ("SIGTERM", "SIGHUP")

    def __enter__(self):
        import signal

        from .experiments.runner import Interrupted
        self.before = {}

        def handler(signum, frame):
            for name in self.SIGNALS:
                signal.signal(getattr(signal, name), signal.SIG_IGN)
            raise Interrupted(f"stopped by {signal.Signals(signum).name} before any unit was saved", signum)

        for name in self.SIGNALS:
            if hasattr(signal, name):
                sig = getattr(signal, name)
                self.before[sig] = signal.signal(sig, handler)
        return self

    def __exit__(self, *exc):
        import signal
        for sig, h in self.before.items():
            signal.signal(sig, h)
        return False


def _run(args) -> int:
    import signal

    from .experiments.catalog import resolve_spec
    from .experiments.runner import run
    spec = resolve_spec(args.spec)
    try:
        with _SignalsAsInterrupts():
            summary = run(spec, args.out, workers=args.workers, resume=args.resume, smoke=args.smoke,
                          executor=args.executor, scheduler=args.scheduler, device=args.device,
                          flush_seconds=_flush_seconds_from_env(), allow_version_change=args.allow_version_change,
                          memory_limit=args.memory_limit)
    except KeyboardInterrupt as e:  # Ctrl-C: 130; SIGTERM: 143; SIGHUP: 129 (128 + the signal)
        print(f"genver: {e or 'interrupted before any unit was saved'}", file=sys.stderr)
        return 128 + int(getattr(e, "signum", signal.SIGINT))
    if summary["units_run"] == 0:
        print(f"nothing to do: all {summary['units']} units ({summary['cells']} cells) are already in {summary['out']}")
    else:
        print(f"{summary['cells']} cells ({summary['units_run']} of {summary['units']} units run now) "
              f"in {summary['seconds']:.1f} s -> {summary['out']}")
    return 0


def _specs(args) -> int:
    from .experiments.catalog import shipped_specs, spec_summaries
    rows = spec_summaries()
    if args.paths:
        paths = shipped_specs()
        for name, _ in rows:
            print(f"{name}\t{paths[name]}")
        return 0
    width = max(len(n) for n, _ in rows)
    for name, question in rows:
        print(textwrap.fill(question, 100, initial_indent=f"{name:<{width}}  ", subsequent_indent=" " * (width + 2)))
    return 0


def _completion(args) -> int:
    try:
        import shtab
    except ImportError:
        raise ValueError("genver completion needs the shtab package: pip install 'genver[completion]'") from None
    print(shtab.complete(build_parser(), shell=args.shell), end="")
    return 0


def _repair(args) -> int:
    from .experiments.runner import repair
    repair(args.dir)
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="genver", description=(
        "Exact prefix-tree simulations of the generation–verification gap: when does reward-model "
        "+ RL fine-tuning need fewer preference samples than direct likelihood (DPO)?"))
    p.add_argument("--version", action="version", version=f"genver {__version__}")
    p.add_argument("-v", "--verbose", action="count", default=0,
                   help="log library events to stderr (-v: what runs and why, e.g. the executor chosen, shards "
                        "removed on resume; -vv: debugging detail); the normal output is unchanged")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    q = sub.add_parser("quickstart", help="run the bundled small gap experiment, plot it and report")
    q.add_argument("--out", default="genver-quickstart", metavar="DIR",
                   help="results directory (default ./genver-quickstart; rerunning resumes it)")
    q.add_argument("--workers", type=int, default=0,
                   help="unit threads (genver run --executor threads; default: the machine's cores, at most 4)")
    q.set_defaults(func=_quickstart)
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
    f.set_defaults(func=_fit)
    r = sub.add_parser("run", help="run a sweep spec (TOML) into a results directory, resumably",
                       epilog="environment: GENVER_FLUSH_SECONDS (default 1): finished units are written "
                              "together, one shard, once this many seconds have passed since the last write "
                              "(and at the end, on Ctrl-C and on errors); a SIGKILL loses at most that much "
                              "finished work; 0 writes each unit as it finishes.")
    r.add_argument("spec", help="experiment spec: a TOML file (e.g. sims/gap_finite.toml) or the name of a "
                                "shipped spec (e.g. gap_finite; `genver specs` lists them)")
    r.add_argument("--out", required=True, metavar="DIR", help="results directory (new or, with --resume, the same)")
    r.add_argument("--workers", type=int, default=1,
                   help="worker processes of --executor local or dask-local, threads of --executor threads (default 1)")
    r.add_argument("--executor", choices=["local", "threads", "dask-local", "dask"], default="local",
                   help="where units run: local (this machine: in process, or a pool of --workers processes; "
                        "default), threads (--workers threads in this process, kernels serial and GIL-free: "
                        "fastest for quick finite-class sweeps), dask-local (a Dask LocalCluster of --workers "
                        "processes on 127.0.0.1), dask "
                        "(an existing Dask cluster at --scheduler; needs genver[dist])")
    r.add_argument("--scheduler", metavar="tcp://HOST:PORT", default=None,
                   help="the Dask scheduler's address, for --executor dask")
    r.add_argument("--resume", action="store_true",
                   help="continue a run in DIR, skipping finished units (with any executor)")
    r.add_argument("--smoke", action="store_true", help="run the spec's small [smoke] version")
    r.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto",
                   help="where neural estimators train (default auto: CUDA when available, else CPU)")
    r.add_argument("--allow-version-change", action="store_true",
                   help="with --resume: continue a run written by another genver/numpy/scipy/numba version or "
                        "git commit (refused otherwise; the manifest then lists every contributing version)")
    r.add_argument("--memory-limit", metavar="SIZE", default=None,
                   help="refuse the run when its memory estimate exceeds SIZE (e.g. 8G; 'off': no check; "
                        "default: GENVER_MEMORY_LIMIT, else the machine's available memory)")
    r.set_defaults(func=_run)
    sp = sub.add_parser("specs", help="list the shipped experiment specs (run one with `genver run NAME --out DIR`)")
    sp.add_argument("--paths", action="store_true", help="print NAME<TAB>PATH of each spec file instead")
    sp.set_defaults(func=_specs)
    co = sub.add_parser("completion", help="print a shell completion script (needs genver[completion])",
                        epilog="e.g. genver completion bash > ~/.local/share/bash-completion/completions/genver")
    co.add_argument("shell", choices=["bash", "zsh", "tcsh"], help="the shell to complete for")
    co.set_defaults(func=_completion)
    rr = sub.add_parser("repair", help="rebuild a lost manifest.json of a results directory from its shards")
    rr.add_argument("dir", help="results directory of `genver run`")
    rr.set_defaults(func=_repair)
    pl = sub.add_parser("plot", help="write the figures of a results directory (PNG; --pdf: PDF beside each; "
                                     "--style paper: vector PDF and SVG)",
                        epilog="a figure whose inputs (results, code, style) are unchanged is not redrawn: "
                               "the hash of its inputs is kept beside it, in NAME.sha256")
    pl.add_argument("dir", help="results directory of `genver run`")
    pl.add_argument("--style", choices=["screen", "paper"], default="screen",
                    help="screen (default): PNG under DIR/figures; paper: PDF and SVG at 3.3 in "
                         "(NAME_col) and 6.9 in (NAME_full) wide, fonts embedded, under DIR/figures/paper")
    pl.add_argument("--pdf", action="store_true",
                    help="screen style: also a PDF beside each PNG (`genver report` writes both)")
    pl.add_argument("--partial", action="store_true",
                    help=f"exit 0 on an unfinished run (missing units or unreadable shards; default: exit "
                         f"{EXIT_INCOMPLETE})")
    pl.set_defaults(func=_plot)
    rp = sub.add_parser("report", help="write DIR/report.md (or .html) and print the verdicts (exit 1 on a FAIL, "
                                       f"{EXIT_INCOMPLETE} on an unfinished run)")
    rp.add_argument("dir", help="results directory of `genver run`")
    rp.add_argument("--format", default="md", metavar="{md,html}",
                    help="md (default): DIR/report.md, figures linked; html: DIR/report.html, one "
                         "self-contained page (figures embedded), viewable offline")
    rp.add_argument("--partial", action="store_true",
                    help="report an unfinished run (missing units or unreadable shards) with the exit code of "
                         "its verdicts; it is marked INCOMPLETE either way")
    rp.set_defaults(func=_report)
    c = sub.add_parser("check", help="run the executable checks of the paper's propositions (theory/)",
                       description=CHECK_DESCRIPTION)
    add_check_arguments(c)
    c.set_defaults(func=_check)
    return p


def _configure_logging(verbosity: int) -> None:
    """Send the ``genver`` logger's records to stderr at INFO (``-v``) or DEBUG (``-vv``); with
    neither, only warnings, as Python's default would show them."""
    import logging
    logger = logging.getLogger("genver")
    for h in [h for h in logger.handlers if getattr(h, "_genver_cli", False)]:
        logger.removeHandler(h)
    handler = logging.StreamHandler(sys.stderr)
    handler._genver_cli = True
    handler.setFormatter(logging.Formatter("genver: %(levelname)s: %(name)s: %(message)s"))
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG if verbosity >= 2 else logging.INFO if verbosity == 1 else logging.WARNING)


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    _configure_logging(args.verbose)
    try:
        return args.func(args)
    except BrokenPipeError:  # `genver specs | head`: the reader left; say nothing, as cat would
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except ValueError as e:  # bad input: one clear line, exit code 2
        print(f"genver: error: {' '.join(str(e).split())}", file=sys.stderr)
        return 2
    except OSError as e:  # a file that cannot be read or written: one line naming it, exit code 2
        where = f"{e.filename}: " if e.filename else ""
        what = e.strerror or " ".join(str(e).split()) or type(e).__name__
        print(f"genver: error: {where}{what}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
