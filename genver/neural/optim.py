r"""The optimiser machinery of the neural trainers (:mod:`genver.neural.train`): one
:class:`TrainConfig`, one :class:`StopRule`, one :class:`TrainLog`, and the loops that minimise a
trainer's loss.

Optimisers (:class:`TrainConfig`): minibatch AdamW (``steps`` steps, :func:`optimise`), or
full-batch L-BFGS with a strong-Wolfe line search on the exact empirical loss
(``optimizer = "lbfgs"``, :func:`lbfgs`: ``steps`` evaluations at most; the sampling trainers
refuse it). A :class:`StopRule` ends training on an exactly computed loss: a plateau (AdamW
halves its learning rate first, L-BFGS restarts its history), a small gradient, or — where the
optimum is known, as for RL against a table ``r̂`` — a certified gap below ``gap_tol``.
:func:`lbfgs_polish` is the float64 L-BFGS polish of
:func:`~genver.neural.train.train_rl_exact` (the reason is in that function's docstring).

A trainer hands :func:`optimise` a closure ``loss_of_step() -> (loss, tokens)``: the scalar loss
of one step (differentiable) and the number of tokens its forward and backward passes processed.

Seeding: every trainer draws minibatches and samples from its own ``torch.Generator`` on the
model's device (:func:`torch_generator`), so CPU runs are bitwise reproducible (CUDA runs up to
the nondeterminism of its reduction kernels). On CUDA the forward passes run under bf16 autocast
(:func:`autocast_for`, ``TrainConfig.autocast``; off on CPU and under L-BFGS); with
``TrainConfig.compile`` the trained network runs through ``torch.compile`` (:func:`maybe_compile`).
"""
from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn as nn

from .._validation import check_positive_int
from .policy import NeuralPolicy

__all__ = ["TrainConfig", "TrainLog", "StopRule", "resolve_device", "autocast_for", "maybe_compile",
           "torch_generator", "batch_size_for", "optimise", "lbfgs", "lbfgs_polish", "require_adamw",
           "on_policy_prompts"]


def resolve_device(device: str = "auto") -> torch.device:
    """The torch device a ``device`` option names.

    Parameters
    ----------
    device : str
        ``auto`` → CUDA when available, else CPU; ``cpu``; ``cuda`` (refused when unavailable).

    Returns
    -------
    torch.device
        The device the trainers and evaluations run on.
    """
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
    :func:`~genver.neural.train.exact_objective`: no sampling noise, so a stall is real).

    Every ``window`` steps (AdamW) or objective evaluations (L-BFGS) the best loss of the block
    is compared with the best before it: an improvement below ``tol`` (absolute, in loss units)
    is a plateau. Under AdamW a plateau halves the learning rate (removing Adam's constant-step
    oscillation around the optimum), under L-BFGS it restarts the curvature history; the
    ``max_halvings``-th plateau stops. Training also stops when the gradient norm falls below ``gtol``, and —
    where the optimum of the objective is known (:func:`~genver.neural.train.train_rl_exact`: ``J_β(π*_{r̂}; r̂) =
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

    losses: list[float] = field(default_factory=list)
    tokens: int = 0
    seconds: float = 0.0
    #: why training ended: ``max_steps`` (the step budget) or, under a :class:`StopRule`, ``plateau`` | ``gradient``
    stopped: str = "max_steps"
    #: gradient norm (before clipping) at the last step, where the trainer records it
    final_grad_norm: float = float("nan")
    #: objective evaluations of :func:`~genver.neural.train.train_rl_exact`'s L-BFGS polish (0: none ran)
    polish_evals: int = 0

    @property
    def tokens_per_second(self) -> float:
        """Tokens processed per second of training (NaN before any time was logged)."""
        return self.tokens / self.seconds if self.seconds > 0 else float("nan")


def autocast_for(device: torch.device, cfg: TrainConfig) -> contextlib.AbstractContextManager:
    """The context a trainer's forward passes run in: bf16 autocast on CUDA under AdamW when
    ``cfg.autocast``, else no change (CPU, L-BFGS: float32 throughout).

    Parameters
    ----------
    device : torch.device
        The model's device.
    cfg : TrainConfig
        The optimiser settings (``autocast``, ``optimizer``).

    Returns
    -------
    contextlib.AbstractContextManager
        ``torch.autocast("cuda", dtype=torch.bfloat16)`` or a null context.
    """
    if device.type == "cuda" and cfg.autocast and cfg.optimizer == "adamw":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def maybe_compile(module: nn.Module, cfg: TrainConfig) -> Callable[..., torch.Tensor]:
    """``torch.compile(module, dynamic=True)`` when ``cfg.compile``, else ``module`` itself.

    Parameters
    ----------
    module : torch.nn.Module
        The network whose forward passes train.
    cfg : TrainConfig
        The optimiser settings (``compile``).

    Returns
    -------
    callable
        The module (or its compiled form) to call in the training loss (the same parameters
        either way).
    """
    return torch.compile(module, dynamic=True) if cfg.compile else module


def batch_size_for(cfg: TrainConfig, data) -> int:
    """``cfg.batch_size``, or every item for L-BFGS (full batch: the exact empirical loss).

    Parameters
    ----------
    cfg : TrainConfig
        The optimiser settings (``optimizer``, ``batch_size``).
    data : PairCounts or sequence
        The training items: pairs (``data.x`` counted) or any sized collection.

    Returns
    -------
    int
        The minibatch size of a step.
    """
    return cfg.batch_size if cfg.optimizer == "adamw" else len(data.x if hasattr(data, "x") else data)


def torch_generator(device, seed: int) -> torch.Generator:
    """A ``torch.Generator`` on ``device`` seeded with ``seed`` (the trainers' only randomness).

    Parameters
    ----------
    device : torch.device or str
        Where the generator draws (the model's device, or ``"cpu"``).
    seed : int
        Its seed.

    Returns
    -------
    torch.Generator
        The seeded generator.
    """
    return torch.Generator(device=device).manual_seed(int(seed))


def optimise(params, cfg: TrainConfig, loss_of_step, log: TrainLog, steps: int | None = None, opt=None,
              floor: float | None = None):
    """Minimise ``loss_of_step() -> (loss, tokens)``: AdamW steps with gradient clipping, or
    full-batch L-BFGS (``cfg.optimizer``); ``cfg.stop`` ends either early (:class:`StopRule`;
    ``floor``: the loss's known minimum, for its ``gap_tol``). AdamW without a stop rule keeps
    losses on the device until the end (no per-step synchronisation); a non-finite loss raises.

    Parameters
    ----------
    params : iterable of torch.nn.Parameter
        The trained parameters (ignored when ``opt`` is given: its parameter groups are used).
    cfg : TrainConfig
        Optimiser, learning rate and schedule, gradient clipping, stop rule.
    loss_of_step : callable
        ``loss_of_step() -> (loss, tokens)``: the differentiable scalar loss of one step and the
        tokens its passes processed.
    log : TrainLog
        Updated in place: losses (appended), tokens, seconds, ``stopped``, ``final_grad_norm``.
    steps : int or None
        AdamW steps of this block (default ``cfg.steps``; online DPO trains in several blocks,
        the linear schedule counting from the steps already in ``log``).
    opt : torch.optim.Optimizer or None
        An AdamW optimiser to continue (its moment estimates kept across blocks).
    floor : float or None
        The loss's known minimum (the stop rule's ``gap_tol`` applies to ``loss − floor``).

    Returns
    -------
    torch.optim.Optimizer
        The optimiser, to pass back as ``opt`` for the next block.
    """
    if cfg.optimizer == "lbfgs":
        return lbfgs(list(params), cfg, loss_of_step, log, floor)
    opt = opt if opt is not None else torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    params = [p for g in opt.param_groups for p in g["params"]]
    stop = cfg.stop
    t0 = time.perf_counter()
    losses: list[torch.Tensor] = []
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


def _check_finite(values, start: int) -> None:
    """Raise FloatingPointError at the first non-finite loss (``start``: the step of ``values[0]``)."""
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


def lbfgs(params, cfg: TrainConfig, loss_of_step, log: TrainLog, floor):
    """Full-batch L-BFGS (strong-Wolfe line search, history 50) in blocks of ``stop.window``
    evaluations, ``cfg.steps`` evaluations at most. A plateau (:class:`StopRule`) restarts L-BFGS
    with an empty history (a line search that stalls on stale curvature pairs, seen on
    ``neural_gap_horizon``, then moves again); the ``max_halvings``-th plateau stops.
    The loss at the returned parameters is evaluated once more and logged last.

    Parameters
    ----------
    params : list of torch.nn.Parameter
        The trained parameters.
    cfg : TrainConfig
        ``steps`` (objective evaluations at most) and ``stop``.
    loss_of_step : callable
        ``loss_of_step() -> (loss, tokens)`` on the full batch (an exact objective).
    log : TrainLog
        Updated in place: every evaluation's loss (line-search trials included), tokens,
        seconds, ``stopped``.
    floor : float or None
        The loss's known minimum, for the stop rule's ``gap_tol``.

    Returns
    -------
    torch.optim.LBFGS
        The optimiser of the last block.
    """
    stop = cfg.stop
    window = stop.window if stop is not None else cfg.steps

    def fresh():
        return torch.optim.LBFGS(params, lr=1.0, max_iter=window, history_size=50, line_search_fn="strong_wolfe",
                                 tolerance_grad=stop.gtol if stop is not None else 0.0, tolerance_change=0.0)

    opt = fresh()
    restarts = 0
    t0 = time.perf_counter()
    losses: list[float] = []

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


def lbfgs_polish(policy: NeuralPolicy, cfg: TrainConfig, evals: int, loss_of_step, log: TrainLog, floor):
    """The L-BFGS polish of :func:`~genver.neural.train.train_rl_exact` (its docstring): float64
    parameters for the line search, ``evals`` evaluations at most under ``cfg.stop``, float32 again
    after.

    Parameters
    ----------
    policy : NeuralPolicy
        The policy whose network is polished (cast to float64 and back to its own dtype).
    cfg : TrainConfig
        The AdamW run's settings; its ``stop`` rule governs the polish.
    evals : int
        Objective evaluations at most.
    loss_of_step : callable
        ``loss_of_step() -> (loss, tokens)``, the exact objective.
    log : TrainLog
        Updated in place: the polish's evaluations and the final loss (logged last),
        ``stopped`` (the polish's verdict), ``polish_evals``.
    floor : float
        The objective's known minimum, for ``gap_tol``.
    """
    polish = TrainConfig(steps=evals, optimizer="lbfgs", stop=cfg.stop, autocast=False)
    dtype = next(policy.model.parameters()).dtype
    n0 = len(log.losses)
    log.stopped = "max_steps"
    policy.model.double()
    try:
        lbfgs(list(policy.model.parameters()), polish, loss_of_step, log, floor)
    finally:
        policy.model.to(dtype)
    with torch.no_grad():  # the loss of the network as returned (its own dtype again), logged last
        loss, tokens = loss_of_step()
    log.losses.append(float(loss))
    log.tokens += tokens
    log.polish_evals = len(log.losses) - n0


def require_adamw(cfg: TrainConfig, who: str) -> None:
    """Refuse L-BFGS for a sampling trainer (its objective changes every step).

    Parameters
    ----------
    cfg : TrainConfig
        The trainer's settings.
    who : str
        The trainer's name, for the message.
    """
    if cfg.optimizer != "adamw":
        raise ValueError(f"{who} samples a new batch every step: TrainConfig.optimizer must be adamw, got "
                         f"{cfg.optimizer!r} (L-BFGS needs an exact objective: train_rl_exact)")


def on_policy_prompts(rho: torch.Tensor, K: int, cfg: TrainConfig, gen_cpu: torch.Generator, device):
    """Prompts for one on-policy step, ``m = max(1, batch_size // K)`` draws: when ``m ≥ P`` every
    prompt ``⌊m/P⌋`` times with weight ``ρ(x)/⌊m/P⌋`` (stratified), else ``m`` prompts drawn
    from ``ρ`` with weight ``1/m``.

    Parameters
    ----------
    rho : torch.Tensor, shape (P,)
        The prompt distribution ρ (float64, on the CPU).
    K : int
        Completions per prompt draw.
    cfg : TrainConfig
        Its ``batch_size`` (sequences per step, ``m·K``).
    gen_cpu : torch.Generator
        CPU generator of the draws.
    device : torch.device
        Where the returned tensors live.

    Returns
    -------
    x : torch.Tensor, shape (m,)
        Prompt indices.
    weight : torch.Tensor, shape (m,)
        The weight of each draw (summing to 1).
    """
    P = rho.shape[0]
    m = max(1, cfg.batch_size // K)
    if m >= P:
        reps = m // P
        x = torch.arange(P, device=device).repeat(reps)
        return x, (rho / reps).float().to(device).repeat(reps)
    x = torch.multinomial(rho, m, replacement=True, generator=gen_cpu).to(device)
    return x, torch.full((m,), 1.0 / m, device=device)
