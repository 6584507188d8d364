r"""Trainers for the neural routes, all with one optimiser (AdamW, :class:`TrainConfig`).

Data are :class:`genver.preferences.PairCounts` (unique triples ``(x, y⁺, y⁻)`` with counts
``c``). A step uses the whole weighted set when it has at most ``batch_size`` triples (the exact
empirical loss), else ``batch_size`` triples drawn with probability ``∝ c`` (an unbiased
minibatch of the same loss). Losses, with ``Δ_θ(y) = log π_θ(y|x) − log π_ref(y|x)``:

==================  ================================================================================
:func:`train_sft`   ``−Σ c log π_θ(y|x) / Σ c`` (supervised fine-tuning on given completions)
:func:`train_dpo`   ``−Σ c log σ(β(Δ_θ(y⁺) − Δ_θ(y⁻))) / Σ c`` (offline DPO)
:func:`train_reward`  ``−Σ c log σ(r̂(y⁺) − r̂(y⁻)) / Σ c`` (Bradley–Terry reward model)
:func:`train_rl`    REINFORCE leave-one-out with a KL penalty (online RL against ``r̂``): per step,
                    ``K`` completions ``y_i ~ π_θ(·|x)`` for each prompt, sampled on the device;
                    ``R_i = r̂(x, y_i) − β Δ_θ(y_i)`` (no gradient), ``A_i = R_i − mean_{j≠i} R_j``,
                    loss ``−Σ_x ρ(x) (1/K) Σ_i A_i log π_θ(y_i|x)`` — an unbiased gradient of
                    ``J_β(π_θ; r̂) = E_x[E_{π_θ} r̂ − β KL(π_θ ‖ π_ref)]``
:func:`train_rl_exact`  exact-gradient RL for enumerable tasks: loss ``−J_β(π_θ; r̂)`` computed over
                    every completion from one forward pass of all ``P·V**(H−1)`` prefixes
                    (:func:`exact_objective`), or the reverse-KL projection ``E_x KL(π_θ ‖ π*_{r̂})``
                    (the same minimisers); no sampling variance; optionally polished by float64
                    L-BFGS where AdamW ends short of the gap tolerance (``polish_steps``)
:func:`train_online_dpo`  ``rounds`` rounds; each samples ``K`` completions per prompt from the
                    current ``π_θ``, labels their pairs from ``r̂`` (soft Bradley–Terry, the
                    default; one Bradley–Terry draw; or top vs bottom), then takes
                    ``steps/rounds`` DPO steps on those pairs
==================  ================================================================================

Optimisers (:class:`TrainConfig`): minibatch AdamW (``steps`` steps), or full-batch L-BFGS with a
strong-Wolfe line search on the exact empirical loss (``optimizer = "lbfgs"``: ``steps``
evaluations at most; the sampling trainers refuse it). A :class:`StopRule` ends training on an
exactly computed loss: a plateau (AdamW halves its learning rate first, L-BFGS restarts its
history), a small gradient, or — where the optimum is known, as for RL against a table ``r̂`` —
a certified gap below ``gap_tol``.

Seeding: every trainer takes ``seed`` and draws minibatches and samples from its own
``torch.Generator`` on the model's device, so CPU runs are bitwise reproducible (CUDA runs up to
the nondeterminism of its reduction kernels). On CUDA the forward passes run under bf16
autocast (``TrainConfig.autocast``; off on CPU); with ``TrainConfig.compile`` the trained network
runs through ``torch.compile`` (off by default). Evaluation (:meth:`NeuralPolicy.exact`) is
always float32 → float64, never autocast.
"""
from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from .._validation import check_beta, check_positive_int, check_prompt_weights
from ..preferences import PairCounts
from ..softrl import J_beta, soft_optimal
from .policy import NeuralPolicy, tokens_of

__all__ = ["TrainConfig", "TrainLog", "StopRule", "resolve_device", "dpo_loss", "exact_objective", "train_sft",
           "train_dpo", "train_reward", "train_rl", "train_rl_exact", "train_online_dpo"]


def resolve_device(device: str = "auto") -> torch.device:
    """``auto`` → CUDA when available, else CPU; ``cpu``; ``cuda`` (refused when unavailable)."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cpu":
        return torch.device("cpu")
    if device == "cuda":
        if not torch.cuda.is_available():
            raise ValueError("device = 'cuda' but no CUDA device is available (torch.cuda.is_available() is False); "
                             "use --device auto or cpu")
        return torch.device("cuda")
    raise ValueError(f"device must be auto, cpu or cuda, got {device!r}")


@dataclass(frozen=True)
class StopRule:
    """When to stop training on an objective that is computed exactly (full-batch losses and
    :func:`exact_objective`: no sampling noise, so a stall is real).

    Every ``window`` steps (AdamW) or objective evaluations (L-BFGS) the best loss of the block
    is compared with the best before it: an improvement below ``tol`` (absolute, in loss units)
    is a plateau. Under AdamW a plateau halves the learning rate (removing Adam's constant-step
    oscillation around the optimum), under L-BFGS it restarts the curvature history; the
    ``max_halvings``-th plateau stops. Training also stops when the gradient norm falls below ``gtol``, and —
    where the optimum of the objective is known (:func:`train_rl_exact`: ``J_β(π*_{r̂}; r̂) =
    β E_x log Z_{r̂}(x)``) — when the certified gap to it is below ``gap_tol``.
    :attr:`TrainLog.stopped` says which rule fired (``plateau`` | ``gradient`` | ``gap``, or
    ``max_steps`` when the budget ran out first)."""

    window: int = 50
    tol: float = 1e-7
    max_halvings: int = 5
    gtol: float = 1e-7
    gap_tol: float = 1e-6

    def __post_init__(self):
        check_positive_int(self.window, "window")
        check_positive_int(self.max_halvings, "max_halvings")
        for k in ("tol", "gtol", "gap_tol"):
            v = getattr(self, k)
            if not (isinstance(v, (int, float)) and np.isfinite(v) and v >= 0):
                raise ValueError(f"StopRule.{k} must be finite and >= 0, got {v!r}")


@dataclass(frozen=True)
class TrainConfig:
    """Optimiser settings shared by every trainer (the same for both routes)."""

    steps: int = 300
    lr: float = 3e-3
    batch_size: int = 512
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    #: learning rate ``lr`` throughout (``constant``) or ``lr·(1 − t/steps)`` at step ``t`` (``linear``:
    #: the decay removes the stochastic-gradient noise floor of REINFORCE and minibatch training)
    schedule: str = "constant"
    autocast: bool = True  # bf16 autocast on CUDA (ignored on CPU)
    #: torch.compile the trained network (any device; off by default: on this project's 2-core CPU
    #: compiling takes ~15 s per model, more than a whole small cell; on a GPU measure it with
    #: ``benchmarks/bench_neural.py --compile``)
    compile: bool = False
    #: ``adamw`` (minibatch AdamW, ``steps`` optimiser steps) or ``lbfgs``: full-batch L-BFGS with a
    #: strong-Wolfe line search on the exact empirical objective, ``steps`` = objective evaluations
    #: at most, stopped by ``stop`` (no learning rate to tune: the line search picks every step;
    #: float32 forward passes, never autocast; refused by the sampling trainers)
    optimizer: str = "adamw"
    #: stopping rule on an exactly computed objective (:class:`StopRule`); ``None``: the full budget
    stop: StopRule | None = None

    def __post_init__(self):
        if self.optimizer not in ("adamw", "lbfgs"):
            raise ValueError(f"TrainConfig.optimizer must be adamw or lbfgs, got {self.optimizer!r}")
        if self.stop is not None and not isinstance(self.stop, StopRule):
            raise ValueError(f"TrainConfig.stop must be a StopRule or None, got {self.stop!r}")
        check_positive_int(self.steps, "steps")
        check_positive_int(self.batch_size, "batch_size")
        for k in ("lr", "grad_clip"):
            v = getattr(self, k)
            if not (isinstance(v, (int, float)) and np.isfinite(v) and v > 0):
                raise ValueError(f"TrainConfig.{k} must be finite and > 0, got {v!r}")
        if self.schedule not in ("constant", "linear"):
            raise ValueError(f"TrainConfig.schedule must be constant or linear, got {self.schedule!r}")
        if not (isinstance(self.weight_decay, (int, float)) and self.weight_decay >= 0):
            raise ValueError(f"TrainConfig.weight_decay must be >= 0, got {self.weight_decay!r}")


@dataclass
class TrainLog:
    """What a trainer did: the loss per step, tokens processed (forward and backward passes
    of the trained model, ``H + 1`` per sequence) and wall time."""

    losses: list = field(default_factory=list)
    tokens: int = 0
    seconds: float = 0.0
    #: why training ended: ``max_steps`` (the step budget) or, under a :class:`StopRule`, ``plateau`` | ``gradient``
    stopped: str = "max_steps"
    #: gradient norm (before clipping) at the last step, where the trainer records it
    final_grad_norm: float = float("nan")
    #: objective evaluations of :func:`train_rl_exact`'s L-BFGS polish (0: none ran)
    polish_evals: int = 0

    @property
    def tokens_per_second(self) -> float:
        return self.tokens / self.seconds if self.seconds > 0 else float("nan")


def _autocast(device: torch.device, cfg: TrainConfig):
    if device.type == "cuda" and cfg.autocast and cfg.optimizer == "adamw":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def _maybe_compile(module: nn.Module, cfg: TrainConfig):
    return torch.compile(module, dynamic=True) if cfg.compile else module


class _Pairs:
    """Weighted triples on the device, served whole or as ``∝ count`` minibatches."""

    def __init__(self, data: PairCounts, device, batch_size: int, generator: torch.Generator):
        sp = data.space
        self.n = int(data.x.shape[0])
        if self.n == 0:
            raise ValueError("data: no preference pairs")
        self.x = torch.as_tensor(data.x, device=device)
        self.yp = tokens_of(sp, data.y_pos, device)
        self.yn = tokens_of(sp, data.y_neg, device)
        w = torch.as_tensor(data.count, dtype=torch.float32, device=device)
        self.w = w / w.sum()
        self.batch_size, self.generator = batch_size, generator

    def batch(self):
        if self.n <= self.batch_size:
            return self.x, self.yp, self.yn, self.w
        i = torch.multinomial(self.w, self.batch_size, replacement=True, generator=self.generator)
        return self.x[i], self.yp[i], self.yn[i], torch.full((self.batch_size,), 1.0 / self.batch_size,
                                                                device=self.w.device)


def _optimise(params, cfg: TrainConfig, loss_of_step, log: TrainLog, steps: int | None = None, opt=None,
              floor: float | None = None):
    """Minimise ``loss_of_step() -> (loss, tokens)``: AdamW steps with gradient clipping, or
    full-batch L-BFGS (``cfg.optimizer``); ``cfg.stop`` ends either early (:class:`StopRule`;
    ``floor``: the loss's known minimum, for its ``gap_tol``). AdamW without a stop rule keeps
    losses on the device until the end (no per-step synchronisation); a non-finite loss raises."""
    if cfg.optimizer == "lbfgs":
        return _lbfgs(list(params), cfg, loss_of_step, log, floor)
    opt = opt if opt is not None else torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    params = [p for g in opt.param_groups for p in g["params"]]
    stop = cfg.stop
    t0 = time.perf_counter()
    losses = []
    done = len(log.losses)  # steps taken before this block (online DPO trains in several blocks)
    scale, best_before, checked = 1.0, float("inf"), 0
    for i in range(cfg.steps if steps is None else steps):
        factor = 1.0 - (done + i) / cfg.steps if cfg.schedule == "linear" else 1.0  # lr · (1 − t/steps)
        for g in opt.param_groups:
            g["lr"] = cfg.lr * factor * scale
        opt.zero_grad(set_to_none=True)
        loss, tokens = loss_of_step()
        loss.backward()
        gnorm = torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
        opt.step()
        losses.append(loss.detach())
        log.tokens += tokens
        if stop is not None and (i + 1) % stop.window == 0:  # one synchronisation per window
            block = torch.stack(losses[checked:]).double().cpu().numpy()
            _check_finite(block, checked)
            checked = len(losses)
            verdict = _stop_verdict(stop, best_before, float(block.min()), float(gnorm), floor)
            best_before = min(best_before, float(block.min()))
            if verdict == "plateau" and scale > 0.5 ** (stop.max_halvings - 1):
                scale /= 2.0  # reduce on plateau
            elif verdict is not None:
                log.stopped = verdict
                break
    values = torch.stack(losses).double().cpu().tolist() if losses else []  # synchronises the device
    log.seconds += time.perf_counter() - t0
    log.losses.extend(values)
    if losses:
        log.final_grad_norm = float(gnorm)
    _check_finite(values, 0)
    return opt


def _check_finite(values, start: int):
    bad = [i for i, v in enumerate(values) if not np.isfinite(v)]
    if bad:
        raise FloatingPointError(f"training loss became {values[bad[0]]} at step {start + bad[0]}; "
                                 "lower the learning rate")


def _stop_verdict(stop: StopRule, best_before: float, best_block: float, gnorm: float, floor) -> str | None:
    """Which rule of ``stop`` fires after a block (None: continue)."""
    if floor is not None and best_block - floor <= stop.gap_tol:
        return "gap"
    if gnorm <= stop.gtol:
        return "gradient"
    if best_before - best_block < stop.tol:
        return "plateau"
    return None


def _lbfgs(params, cfg: TrainConfig, loss_of_step, log: TrainLog, floor):
    """Full-batch L-BFGS (strong-Wolfe line search, history 50) in blocks of ``stop.window``
    evaluations, ``cfg.steps`` evaluations at most. A plateau (:class:`StopRule`) restarts L-BFGS
with an empty history (a line search that stalls on stale curvature pairs, seen on
``neural_gap_horizon``, then moves again); the ``max_halvings``-th plateau stops.
    The loss at the returned parameters is evaluated once more and logged last."""
    stop = cfg.stop
    window = stop.window if stop is not None else cfg.steps

    def fresh():
        return torch.optim.LBFGS(params, lr=1.0, max_iter=window, history_size=50, line_search_fn="strong_wolfe",
                                 tolerance_grad=stop.gtol if stop is not None else 0.0, tolerance_change=0.0)

    opt = fresh()
    restarts = 0
    t0 = time.perf_counter()
    losses = []

    def closure():
        opt.zero_grad(set_to_none=True)
        loss, tokens = loss_of_step()
        v = float(loss.detach())
        if not np.isfinite(v):
            raise FloatingPointError(f"training loss became {v} at evaluation {len(losses)}")
        loss.backward()
        losses.append(v)
        log.tokens += tokens
        return loss

    best_before = float("inf")
    while len(losses) < cfg.steps:
        n0 = len(losses)
        budget = min(window, cfg.steps - n0)
        opt.param_groups[0]["max_iter"] = opt.param_groups[0]["max_eval"] = budget
        opt.step(closure)
        if stop is None:
            continue
        gnorm = float(torch.sqrt(sum((p.grad.double() ** 2).sum() for p in params if p.grad is not None)))
        best = min(losses[n0:])
        verdict = _stop_verdict(stop, best_before, best, gnorm, floor)
        best_before = min(best_before, best)
        if verdict == "plateau" and restarts < stop.max_halvings - 1:
            opt, restarts = fresh(), restarts + 1  # a stalled line search: forget the curvature pairs
        elif verdict is not None:
            log.stopped = verdict
            break
    loss, tokens = loss_of_step()  # the loss at the parameters L-BFGS returns (its last trial may be rejected)
    log.tokens += tokens
    losses.append(float(loss.detach()))
    opt.zero_grad(set_to_none=True)
    log.final_grad_norm = float("nan")
    log.seconds += time.perf_counter() - t0
    log.losses.extend(losses)
    return opt


def _batch_size(cfg: TrainConfig, data) -> int:
    """``cfg.batch_size``, or every item for L-BFGS (full batch: the exact empirical loss)."""
    return cfg.batch_size if cfg.optimizer == "adamw" else len(data.x if hasattr(data, "x") else data)


def _generator(device, seed: int) -> torch.Generator:
    return torch.Generator(device=device).manual_seed(int(seed))


def train_sft(policy: NeuralPolicy, x, y_idx, weights, cfg: TrainConfig, *, seed: int = 0) -> TrainLog:
    """Weighted maximum likelihood of completions ``y_idx`` for prompts ``x`` (module table)."""
    sp, dev = policy.space, policy.device
    x = torch.as_tensor(np.asarray(x, dtype=np.int64), device=dev)
    y = tokens_of(sp, y_idx, dev)
    w = torch.as_tensor(np.asarray(weights, dtype=np.float64), dtype=torch.float32, device=dev)
    if x.shape[0] == 0 or float(w.sum()) <= 0:
        raise ValueError("train_sft: no demonstrations with positive weight")
    w = w / w.sum()
    gen = _generator(dev, seed)
    if cfg.compile:
        policy.compile()
    log = TrainLog()

    def step():
        if x.shape[0] <= _batch_size(cfg, x):
            xb, yb, wb = x, y, w
        else:
            i = torch.multinomial(w, cfg.batch_size, replacement=True, generator=gen)
            xb, yb, wb = x[i], y[i], torch.full((cfg.batch_size,), 1.0 / cfg.batch_size, device=dev)
        with _autocast(dev, cfg):
            lp = policy.seq_logp(xb, yb)
        return -(wb * lp).sum(), xb.shape[0] * (sp.H + 1)

    _optimise(policy.model.parameters(), cfg, step, log)
    return log


def dpo_loss(policy: NeuralPolicy, x, y_pos, y_neg, w, beta: float) -> torch.Tensor:
    """``−Σ_i w_i log σ(β(Δ_θ(y⁺_i) − Δ_θ(y⁻_i)))``, ``Δ_θ = log π_θ − log π_ref``, for prompts ``x`` (B,),
    token sequences ``y_pos``, ``y_neg`` (B, H) and weights ``w`` (B,)."""
    xx, yy = torch.cat([x, x]), torch.cat([y_pos, y_neg])
    d = policy.seq_logp(xx, yy) - policy.ref_seq_logp(xx, yy)
    B = x.shape[0]
    return -(w * F.logsigmoid(beta * (d[:B] - d[B:]))).sum()


def train_dpo(policy: NeuralPolicy, data: PairCounts, beta: float, cfg: TrainConfig, *, seed: int = 0) -> TrainLog:
    """Offline DPO on the weighted pairs (module table)."""
    beta = check_beta(beta)
    dev = policy.device
    pairs = _Pairs(data, dev, _batch_size(cfg, data), _generator(dev, seed))
    if cfg.compile:
        policy.compile()
    log = TrainLog()

    def step():
        x, yp, yn, w = pairs.batch()
        with _autocast(dev, cfg):
            loss = dpo_loss(policy, x, yp, yn, w, beta)
        return loss, 2 * x.shape[0] * (policy.space.H + 1)

    _optimise(policy.model.parameters(), cfg, step, log)
    return log


def train_reward(model: nn.Module, data: PairCounts, cfg: TrainConfig, *, seed: int = 0, l2: float = 0.0) -> TrainLog:
    """Bradley–Terry reward model (module table); ``l2`` adds the ridge ``½ l2 ‖θ‖² / Σ c`` on
    every parameter — for :class:`~genver.neural.rewards.LinearReward` exactly the tabular
    ``reward_mle`` objective with the same ``l2`` (divided by ``Σ c``)."""
    if not (isinstance(l2, (int, float)) and np.isfinite(l2) and l2 >= 0):
        raise ValueError(f"l2 must be finite and >= 0, got {l2!r}")
    ridge = 0.5 * float(l2) / float(np.sum(data.count))
    dev = next(model.parameters()).device
    pairs = _Pairs(data, dev, _batch_size(cfg, data), _generator(dev, seed))
    log = TrainLog()
    fwd = _maybe_compile(model, cfg)

    def step():
        x, yp, yn, w = pairs.batch()
        with _autocast(dev, cfg):
            r = fwd(torch.cat([x, x]), torch.cat([yp, yn])).float()
        B = x.shape[0]
        loss = -(w * F.logsigmoid(r[:B] - r[B:])).sum()
        if ridge:
            loss = loss + ridge * sum((p * p).sum() for p in model.parameters())
        return loss, 2 * B * (data.space.H + 1)

    _optimise(model.parameters(), cfg, step, log)
    return log


def _require_sampling_optimiser(cfg: TrainConfig, who: str):
    if cfg.optimizer != "adamw":
        raise ValueError(f"{who} samples a new batch every step: TrainConfig.optimizer must be adamw, got "
                         f"{cfg.optimizer!r} (L-BFGS needs an exact objective: train_rl_exact)")


def _prompt_batch(rho: torch.Tensor, K: int, cfg: TrainConfig, gen_cpu: torch.Generator, device):
    """Prompts for one on-policy step, ``m = max(1, batch_size // K)`` draws: when ``m ≥ P`` every
    prompt ``⌊m/P⌋`` times with weight ``ρ(x)/⌊m/P⌋`` (stratified), else ``m`` prompts drawn
    from ``ρ`` with weight ``1/m``. Returns (x, weight of each draw), weights summing to 1."""
    P = rho.shape[0]
    m = max(1, cfg.batch_size // K)
    if m >= P:
        reps = m // P
        x = torch.arange(P, device=device).repeat(reps)
        return x, (rho / reps).float().to(device).repeat(reps)
    x = torch.multinomial(rho, m, replacement=True, generator=gen_cpu).to(device)
    return x, torch.full((m,), 1.0 / m, device=device)


def train_rl(policy: NeuralPolicy, reward: nn.Module, beta: float, cfg: TrainConfig, *, K: int = 8,
             prompt_weights=None, seed: int = 0) -> TrainLog:
    """KL-regularised REINFORCE with the leave-one-out baseline against ``reward`` (module table)."""
    beta = check_beta(beta)
    K = check_positive_int(K, "K", 2)
    _require_sampling_optimiser(cfg, "train_rl")
    sp, dev = policy.space, policy.device
    rho = torch.as_tensor(check_prompt_weights(prompt_weights, sp.P), dtype=torch.float64)
    gen, gen_cpu = _generator(dev, seed), _generator("cpu", seed + 1)
    if cfg.compile:
        policy.compile()
    log = TrainLog()

    def step():
        x, wx = _prompt_batch(rho, K, cfg, gen_cpu, dev)
        xs = x.repeat_interleave(K)  # (m K,): K samples per prompt, grouped
        y = policy.sample(xs, generator=gen)
        with _autocast(dev, cfg):
            lp = policy.seq_logp(xs, y)  # one pass: the score term and (detached) the KL penalty
        with torch.no_grad():
            R = reward(xs, y).float() - beta * (lp.detach() - policy.ref_seq_logp(xs, y))
            R = R.view(-1, K)
            A = (R - (R.sum(dim=1, keepdim=True) - R) / (K - 1)).view(-1)  # R_i − mean_{j≠i} R_j
        loss = -(wx.repeat_interleave(K) * A * lp).sum() / K
        return loss, xs.shape[0] * (sp.H + 1) * (sp.H + 1)  # H sampling passes + one training pass

    _optimise(policy.model.parameters(), cfg, step, log)
    return log


def exact_objective(policy: NeuralPolicy, reward, beta: float, prompt_weights=None, *,
                    target_logp=None) -> torch.Tensor:
    """``J_β(π_θ; r̂) = Σ_x ρ(x) Σ_y π_θ(y|x) [r̂(x,y) − β log π_θ(y|x)/π_ref(y|x)]``, exactly,
    as a differentiable float64 scalar (one pass of :meth:`NeuralPolicy.logp_table`);
    ``reward`` is the (P, T) table ``r̂``. With ``target_logp`` (a (P, T) log-probability table
    ``log π*``) it returns instead ``E_x KL(π_θ ‖ π*)`` — for ``π* = π*_{r̂}`` the two differ by
    a constant and a factor: ``J_β(π_θ; r̂) = β E_x log Z_{r̂}(x) − β E_x KL(π_θ ‖ π*_{r̂})``
    (the reverse-KL identity), so maximising one minimises the other."""
    sp, dev = policy.space, policy.device
    rho = _table(check_prompt_weights(prompt_weights, sp.P), dev)
    logp = policy.logp_table()
    p = logp.exp()
    if target_logp is not None:
        return (rho * (p * (logp - _table(target_logp, dev))).sum(dim=1)).sum()
    r = reward if isinstance(reward, torch.Tensor) else _table(sp.check_array("reward", reward), dev)
    ref_logp = _table(policy.ref.logp, dev)
    return (rho * (p * (r - beta * (logp - ref_logp))).sum(dim=1)).sum()


def _table(a, device) -> torch.Tensor:
    """A float64 tensor on ``device`` (tensors pass through; numpy arrays are copied)."""
    if isinstance(a, torch.Tensor):
        return a.to(device=device, dtype=torch.float64)
    return torch.tensor(np.asarray(a, dtype=np.float64), device=device)


def train_rl_exact(policy: NeuralPolicy, reward, beta: float, cfg: TrainConfig, *, prompt_weights=None,
                   target: str = "reward", polish_steps: int = 0) -> TrainLog:
    """Exact-gradient KL-regularised RL for enumerable tasks: minimise ``−J_β(π_θ; r̂)``
    computed exactly (:func:`exact_objective`: no sampling variance, no random numbers), with
    ``reward`` the (P, T) table ``r̂`` (e.g. :func:`genver.neural.rewards.reward_table` of a
    trained reward model), by ``cfg.optimizer`` (AdamW or full-batch L-BFGS) under ``cfg.stop``.
    ``target = "reverse_kl"`` minimises ``E_x KL(π_θ ‖ π*_{r̂})`` instead — the reverse-KL
    projection of the tabular soft-optimal policy onto the network class; by the identity in
    :func:`exact_objective` it has the same minimisers. Both losses have a known minimum over
    every policy (``−β E_x log Z_{r̂}(x)``, resp. 0), so ``TrainLog.losses[-1]`` minus it is the
    certified optimisation residual ``J_β(π*_{r̂}; r̂) − J_β(π_θ; r̂)`` (times ``1/β`` for the
    KL), and the stop rule's ``gap_tol`` applies. ``TrainLog.losses`` holds the exact loss of
    every step (every evaluation, line-search trials included, for L-BFGS).

    ``polish_steps > 0`` (with ``cfg.optimizer = "adamw"`` and a stop rule): when AdamW ends
    with a gap above ``gap_tol`` at its last parameters (the stop rule judges each block by its best
    loss, and AdamW may step away from it), a quasi-Newton polish follows — full-batch L-BFGS with a
    strong-Wolfe line search on the same exact objective, in float64 (the network is cast to
    float64 for it and back to float32 after), at most ``polish_steps`` evaluations under the
    same :class:`StopRule` (plateaus restart its curvature history). Why: the objective is
    deterministic and every evaluation exact, the setting where curvature pays; from some
    starts AdamW stalls on a plateau of ``J_β`` that halving its learning rate does not leave
    (``neural_gap_horizon``, ``H = 6``: residuals 0.0022 and 0.0053 after 780 and 1,300 steps),
    and the polish takes those residuals to ~10⁻⁴ or below. Its float64 evaluations are logged after
    AdamW's; :attr:`TrainLog.polish_evals` counts them and ``stopped`` is the polish's verdict."""
    beta = check_beta(beta)
    if target not in ("reward", "reverse_kl"):
        raise ValueError(f"target must be reward or reverse_kl, got {target!r}")
    if not (isinstance(polish_steps, int) and not isinstance(polish_steps, bool) and polish_steps >= 0):
        raise ValueError(f"polish_steps must be an int >= 0, got {polish_steps!r}")
    if polish_steps and (cfg.optimizer != "adamw" or cfg.stop is None):
        raise ValueError("polish_steps > 0 polishes an AdamW run that stops by a StopRule: it needs "
                         f"TrainConfig.optimizer = 'adamw' and stop set (got optimizer = {cfg.optimizer!r}, "
                         f"stop = {cfg.stop!r})")
    sp = policy.space
    r = sp.check_array("reward", reward)
    rho = check_prompt_weights(prompt_weights, sp.P)
    opt_pol = soft_optimal(r, policy.ref, beta)
    if target == "reverse_kl":
        tgt, floor = _table(opt_pol.policy.logp, policy.device), 0.0
    else:
        tgt, floor = None, -float(J_beta(opt_pol.policy, r, policy.ref, beta, rho))
    r_t = _table(r, policy.device)
    if cfg.compile:
        policy.compile()
    log = TrainLog()
    n_seq = sp.P * sp.V ** (sp.H - 1)

    def step():
        with _autocast(policy.device, cfg):
            obj = exact_objective(policy, r_t, beta, rho, target_logp=tgt)
        return (obj if target == "reverse_kl" else -obj), n_seq * sp.H

    _optimise(policy.model.parameters(), cfg, step, log, floor=floor)
    if polish_steps:
        with torch.no_grad():  # AdamW's stop rule sees each block's best loss, not its last parameters'
            gap = float(step()[0]) - floor
        if gap > cfg.stop.gap_tol:
            _polish(policy, cfg, polish_steps, step, log, floor)
    return log


def _polish(policy: NeuralPolicy, cfg: TrainConfig, evals: int, loss_of_step, log: TrainLog, floor):
    """The L-BFGS polish of :func:`train_rl_exact` (its docstring): float64 parameters for the
    line search, ``evals`` evaluations at most under ``cfg.stop``, float32 again after."""
    polish = TrainConfig(steps=evals, optimizer="lbfgs", stop=cfg.stop, autocast=False)
    dtype = next(policy.model.parameters()).dtype
    n0 = len(log.losses)
    log.stopped = "max_steps"
    policy.model.double()
    try:
        _lbfgs(list(policy.model.parameters()), polish, loss_of_step, log, floor)
    finally:
        policy.model.to(dtype)
    with torch.no_grad():  # the loss of the network as returned (its own dtype again), logged last
        loss, tokens = loss_of_step()
    log.losses.append(float(loss))
    log.tokens += tokens
    log.polish_evals = len(log.losses) - n0


#: default pairing of :func:`train_online_dpo` (reason in its docstring)
ONLINE_DPO_LABELS = "soft"


def train_online_dpo(policy: NeuralPolicy, reward: nn.Module, beta: float, cfg: TrainConfig, *, K: int = 8,
                     rounds: int = 20, labels: str = ONLINE_DPO_LABELS, prompt_weights=None,
                     seed: int = 0) -> TrainLog:
    """Online DPO on on-policy pairs re-sampled each round: ``K`` completions per prompt draw
    from the current ``π_θ``, scored by ``reward``, then ``steps/rounds`` DPO steps on them.

    ``labels``:

    * ``"soft"`` (the default): every pair ``i < j`` of the ``K`` samples, with the
      Bradley–Terry probability ``q = σ(r̂(y_i) − r̂(y_j))`` as a soft label, loss
      ``−[q log σ(m) + (1 − q) log σ(−m)]``, ``m = β(Δ_θ(y_i) − Δ_θ(y_j))``;
    * ``"bradley_terry"``: ``K//2`` disjoint pairs, each labelled by one draw with
      ``P(y_1 ≻ y_2) = σ(r̂(y_1) − r̂(y_2))`` (the same expected loss, plus label noise);
    * ``"top_bottom"`` (the paper's pipeline): the best against the worst of the ``K`` samples
      by ``r̂``, one pair per prompt draw.

    Why ``soft`` is the default: for Bradley–Terry labels the expected loss of a pair is
    minimised exactly where the implicit reward matches ``r̂``, ``β(Δ_θ(y_i) − Δ_θ(y_j)) =
    r̂(y_i) − r̂(y_j)``, so on any full-support sampler the fixed point is ``π_θ = π*_{r̂}`` —
    the RL optimum, with its KL to ``π_ref``; soft labels give that expected loss without the
    label noise and use all ``K(K−1)/2`` pairs of the samples. Top-vs-bottom labels are
    deterministic (the top always wins), so the logistic loss has no finite minimiser: each
    round pushes the margin further and nothing pulls ``π_θ`` back toward ``π_ref`` (the
    deterministic-preference failure of DPO, Azar et al. 2023); on the shipped neural specs that
    pairing collapsed (suboptimality 1.4–2.2, KL to ``π_ref`` ≈ 3)."""
    if labels not in ("soft", "bradley_terry", "top_bottom"):
        raise ValueError(f"labels must be soft, bradley_terry or top_bottom, got {labels!r}")
    beta = check_beta(beta)
    K = check_positive_int(K, "K", 2)
    rounds = check_positive_int(rounds, "rounds")
    _require_sampling_optimiser(cfg, "train_online_dpo")
    if rounds > cfg.steps:
        raise ValueError(f"rounds = {rounds} exceeds steps = {cfg.steps}")
    sp, dev = policy.space, policy.device
    rho = torch.as_tensor(check_prompt_weights(prompt_weights, sp.P), dtype=torch.float64)
    gen, gen_cpu = _generator(dev, seed), _generator("cpu", seed + 1)
    if cfg.compile:
        policy.compile()
    log = TrainLog()
    opt = None
    per_round = [cfg.steps // rounds + (r < cfg.steps % rounds) for r in range(rounds)]
    for n_steps in per_round:
        x, wx = _prompt_batch(rho, K, cfg, gen_cpu, dev)
        xs = x.repeat_interleave(K)
        with torch.no_grad():
            y = policy.sample(xs, generator=gen)
            r = reward(xs, y).float().view(-1, K)
        yk = y.view(-1, K, sp.H)
        if labels == "soft":  # every pair i < j of the K samples, target probability σ(r̂_i − r̂_j)
            iu, ju = torch.triu_indices(K, K, 1, device=dev)
            q = torch.sigmoid(r[:, iu] - r[:, ju])  # (m, K(K−1)/2)
            wq = (wx / iu.shape[0])[:, None]
            log.tokens += xs.shape[0] * (sp.H + 1) * sp.H

            def soft_step(xs=xs, y=y, iu=iu, ju=ju, wq=wq, q=q):
                with _autocast(dev, cfg):
                    d = (policy.seq_logp(xs, y) - policy.ref_seq_logp(xs, y)).view(-1, K)
                    m = beta * (d[:, iu] - d[:, ju])
                    loss = -(wq * (q * F.logsigmoid(m) + (1.0 - q) * F.logsigmoid(-m))).sum()
                return loss, xs.shape[0] * (sp.H + 1)

            opt = _optimise(policy.model.parameters(), cfg, soft_step, log, steps=n_steps, opt=opt)
            continue
        if labels == "top_bottom":
            rows = torch.arange(x.shape[0], device=dev)
            keep = r.max(dim=1).values > r.min(dim=1).values
            xp, yp, yn, w = x[keep], yk[rows, r.argmax(dim=1)][keep], yk[rows, r.argmin(dim=1)][keep], wx[keep]
        else:  # K//2 disjoint pairs (y_1, y_2), (y_3, y_4), … per prompt draw
            k2 = K // 2 * 2
            a, b = yk[:, 0:k2:2].reshape(-1, sp.H), yk[:, 1:k2:2].reshape(-1, sp.H)
            ra, rb = r[:, 0:k2:2].reshape(-1), r[:, 1:k2:2].reshape(-1)
            first = (torch.rand(ra.shape[0], generator=gen, device=dev) < torch.sigmoid(ra - rb))[:, None]
            xp = x.repeat_interleave(K // 2)
            yp, yn, w = torch.where(first, a, b), torch.where(first, b, a), wx.repeat_interleave(K // 2)
        log.tokens += xs.shape[0] * (sp.H + 1) * sp.H
        if xp.shape[0] == 0:
            continue
        w = w / w.sum()

        def step(xp=xp, yp=yp, yn=yn, w=w):
            with _autocast(dev, cfg):
                loss = dpo_loss(policy, xp, yp, yn, w, beta)
            return loss, 2 * xp.shape[0] * (sp.H + 1)

        opt = _optimise(policy.model.parameters(), cfg, step, log, steps=n_steps, opt=opt)
    return log
