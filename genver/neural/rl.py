r"""The RL trainers of the online route, against a reward model ``r̂`` (re-exported by
:mod:`genver.neural.train`, whose module table states every trainer's loss).

* :func:`train_rl`: REINFORCE leave-one-out with a KL penalty. Per step, ``K`` completions
  ``y_i ~ π_θ(·|x)`` for each prompt draw, sampled on the device; ``R_i = r̂(x, y_i) − β Δ_θ(y_i)``
  (no gradient), ``A_i = R_i − mean_{j≠i} R_j``, loss ``−Σ_x ρ(x) (1/K) Σ_i A_i log π_θ(y_i|x)`` —
  an unbiased gradient of ``J_β(π_θ; r̂) = E_x[E_{π_θ} r̂ − β KL(π_θ ‖ π_ref)]``, with
  ``Δ_θ(y) = log π_θ(y|x) − log π_ref(y|x)``.
* :func:`exact_objective`: ``J_β(π_θ; r̂)`` (or the reverse KL ``E_x KL(π_θ ‖ π*)``) exactly, over
  every completion, from one forward pass of all ``P·V**(H−1)`` prefixes.
* :func:`train_rl_exact`: exact-gradient RL for enumerable tasks on that objective (no sampling
  variance), with a certified residual against the known optimum ``β E_x log Z_{r̂}(x)`` and the
  optional float64 L-BFGS polish (:func:`genver.neural.optim.lbfgs_polish`).
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn

from .._validation import check_beta, check_positive_int, check_prompt_weights
from ..softrl import J_beta, soft_optimal
from .optim import (
    TrainConfig,
    TrainLog,
    autocast_for,
    lbfgs_polish,
    on_policy_prompts,
    optimise,
    require_adamw,
    torch_generator,
)
from .policy import NeuralPolicy

__all__ = ["train_rl", "exact_objective", "train_rl_exact"]


def train_rl(policy: NeuralPolicy, reward: nn.Module, beta: float, cfg: TrainConfig, *, K: int = 8,
             prompt_weights=None, seed: int = 0) -> TrainLog:
    """KL-regularised REINFORCE with the leave-one-out baseline against ``reward`` (module table).

    Parameters
    ----------
    policy : NeuralPolicy
        The policy trained in place.
    reward : torch.nn.Module
        The reward model ``r̂`` (``reward(x, tokens) -> (B,)``), not trained.
    beta : float
        The KL strength β.
    cfg : TrainConfig
        Optimiser settings (AdamW only: every step samples afresh).
    K : int
        Completions sampled per prompt draw (``>= 2``, for the leave-one-out baseline).
    prompt_weights : array_like of float, shape (P,), or None
        The prompt distribution ρ (default uniform).
    seed : int
        Seed of the prompt draws and the samples.

    Returns
    -------
    TrainLog
        Loss per step, tokens, wall time.
    """
    beta = check_beta(beta)
    K = check_positive_int(K, "K", 2)
    require_adamw(cfg, "train_rl")
    sp, dev = policy.space, policy.device
    rho = torch.as_tensor(check_prompt_weights(prompt_weights, sp.P), dtype=torch.float64)
    gen, gen_cpu = torch_generator(dev, seed), torch_generator("cpu", seed + 1)
    if cfg.compile:
        policy.compile()
    log = TrainLog()

    def step():
        x, wx = on_policy_prompts(rho, K, cfg, gen_cpu, dev)
        xs = x.repeat_interleave(K)  # (m K,): K samples per prompt, grouped
        y = policy.sample(xs, generator=gen)
        with autocast_for(dev, cfg):
            lp = policy.seq_logp(xs, y)  # one pass: the score term and (detached) the KL penalty
        with torch.no_grad():
            R = reward(xs, y).float() - beta * (lp.detach() - policy.ref_seq_logp(xs, y))
            R = R.view(-1, K)
            A = (R - (R.sum(dim=1, keepdim=True) - R) / (K - 1)).view(-1)  # R_i − mean_{j≠i} R_j
        loss = -(wx.repeat_interleave(K) * A * lp).sum() / K
        return loss, xs.shape[0] * (sp.H + 1) * (sp.H + 1)  # H sampling passes + one training pass

    optimise(policy.model.parameters(), cfg, step, log)
    return log


def exact_objective(policy: NeuralPolicy, reward, beta: float, prompt_weights=None, *,
                    target_logp=None) -> torch.Tensor:
    """``J_β(π_θ; r̂) = Σ_x ρ(x) Σ_y π_θ(y|x) [r̂(x,y) − β log π_θ(y|x)/π_ref(y|x)]``, exactly,
    as a differentiable float64 scalar (one pass of :meth:`NeuralPolicy.logp_table`);
    ``reward`` is the (P, T) table ``r̂``. With ``target_logp`` (a (P, T) log-probability table
    ``log π*``) it returns instead ``E_x KL(π_θ ‖ π*)`` — for ``π* = π*_{r̂}`` the two differ by
    a constant and a factor: ``J_β(π_θ; r̂) = β E_x log Z_{r̂}(x) − β E_x KL(π_θ ‖ π*_{r̂})``
    (the reverse-KL identity), so maximising one minimises the other.

    Parameters
    ----------
    policy : NeuralPolicy
        The policy ``π_θ`` (enumerable: :meth:`NeuralPolicy.logp_table`).
    reward : array_like or torch.Tensor, shape (P, T)
        The reward table ``r̂`` (ignored when ``target_logp`` is given).
    beta : float
        The KL strength β.
    prompt_weights : array_like of float, shape (P,), or None
        The prompt distribution ρ (default uniform).
    target_logp : array_like or torch.Tensor, shape (P, T), or None
        A log-probability table ``log π*``: return ``E_x KL(π_θ ‖ π*)`` instead.

    Returns
    -------
    torch.Tensor
        The differentiable float64 scalar ``J_β(π_θ; r̂)`` (or the KL).
    """
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
    """A float64 tensor on ``device`` (tensors are converted; numpy arrays are copied)."""
    if isinstance(a, torch.Tensor):
        return a.to(device=device, dtype=torch.float64)
    return torch.tensor(np.asarray(a, dtype=np.float64), device=device)


def _check_rl_exact_options(target, polish_steps, cfg: TrainConfig) -> None:
    """Refuse a bad ``target`` or ``polish_steps`` of :func:`train_rl_exact` (ValueError)."""
    if target not in ("reward", "reverse_kl"):
        raise ValueError(f"target must be reward or reverse_kl, got {target!r}")
    if not (isinstance(polish_steps, int) and not isinstance(polish_steps, bool) and polish_steps >= 0):
        raise ValueError(f"polish_steps must be an int >= 0, got {polish_steps!r}")
    if polish_steps and (cfg.optimizer != "adamw" or cfg.stop is None):
        raise ValueError("polish_steps > 0 polishes an AdamW run that stops by a StopRule: it needs "
                         f"TrainConfig.optimizer = 'adamw' and stop set (got optimizer = {cfg.optimizer!r}, "
                         f"stop = {cfg.stop!r})")


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
    AdamW's; :attr:`TrainLog.polish_evals` counts them and ``stopped`` is the polish's verdict.

    Parameters
    ----------
    policy : NeuralPolicy
        The policy trained in place (enumerable).
    reward : array_like, shape (P, T)
        The reward table ``r̂``.
    beta : float
        The KL strength β.
    cfg : TrainConfig
        Optimiser settings and stop rule.
    prompt_weights : array_like of float, shape (P,), or None
        The prompt distribution ρ (default uniform).
    target : str
        ``"reward"`` (minimise ``−J_β``) or ``"reverse_kl"`` (minimise ``E_x KL(π_θ ‖ π*_{r̂})``).
    polish_steps : int
        Evaluations of the float64 L-BFGS polish at most (0: none).

    Returns
    -------
    TrainLog
        The exact loss of every step or evaluation, tokens, wall time, ``stopped``, ``polish_evals``.
    """
    beta = check_beta(beta)
    _check_rl_exact_options(target, polish_steps, cfg)
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
        with autocast_for(policy.device, cfg):
            obj = exact_objective(policy, r_t, beta, rho, target_logp=tgt)
        return (obj if target == "reverse_kl" else -obj), n_seq * sp.H

    optimise(policy.model.parameters(), cfg, step, log, floor=floor)
    if polish_steps and cfg.stop is not None:  # (a polish always has a stop rule: checked above)
        with torch.no_grad():  # AdamW's stop rule sees each block's best loss, not its last parameters'
            gap = float(step()[0]) - floor
        if gap > cfg.stop.gap_tol:
            lbfgs_polish(policy, cfg, polish_steps, step, log, floor)
    return log
