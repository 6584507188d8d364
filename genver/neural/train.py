r"""Trainers for the neural routes, all with one optimiser (AdamW, :class:`TrainConfig`).

This module holds SFT, offline DPO, the reward model and online DPO; the RL trainers
(:func:`train_rl`, :func:`exact_objective`, :func:`train_rl_exact`) are defined in
:mod:`genver.neural.rl` and re-exported here, the optimiser loops in :mod:`genver.neural.optim`.

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

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from .._validation import check_beta, check_positive_int, check_prompt_weights
from ..preferences import PairCounts
from .optim import (
    StopRule,
    TrainConfig,
    TrainLog,
    autocast_for,
    batch_size_for,
    maybe_compile,
    on_policy_prompts,
    optimise,
    require_adamw,
    resolve_device,
    torch_generator,
)
from .policy import NeuralPolicy, tokens_of
from .rl import exact_objective, train_rl, train_rl_exact

__all__ = ["TrainConfig", "TrainLog", "StopRule", "resolve_device", "dpo_loss", "exact_objective", "train_sft",
           "train_dpo", "train_reward", "train_rl", "train_rl_exact", "train_online_dpo"]

#: weighted preference pairs on the device: prompts (B,), ``y⁺`` and ``y⁻`` tokens (B, H), weights (B,)
_Pairs4 = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]


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


def train_sft(policy: NeuralPolicy, x, y_idx, weights, cfg: TrainConfig, *, seed: int = 0) -> TrainLog:
    """Weighted maximum likelihood of completions ``y_idx`` for prompts ``x`` (module table).

    Parameters
    ----------
    policy : NeuralPolicy
        The policy trained in place.
    x : array_like of int, shape (B,)
        Prompt indices.
    y_idx : array_like of int, shape (B,)
        Completion indices (into the ``T`` completions of the space).
    weights : array_like of float, shape (B,)
        Demonstration weights ``c`` (normalised to sum 1; their sum must be positive).
    cfg : TrainConfig
        Optimiser settings.
    seed : int
        Seed of the minibatch draws.

    Returns
    -------
    TrainLog
        Loss per step, tokens, wall time.
    """
    sp, dev = policy.space, policy.device
    x = torch.as_tensor(np.asarray(x, dtype=np.int64), device=dev)
    y = tokens_of(sp, y_idx, dev)
    w = torch.as_tensor(np.asarray(weights, dtype=np.float64), dtype=torch.float32, device=dev)
    if x.shape[0] == 0 or float(w.sum()) <= 0:
        raise ValueError("train_sft: no demonstrations with positive weight")
    w = w / w.sum()
    gen = torch_generator(dev, seed)
    if cfg.compile:
        policy.compile()
    log = TrainLog()

    def step():
        if x.shape[0] <= batch_size_for(cfg, x):
            xb, yb, wb = x, y, w
        else:
            i = torch.multinomial(w, cfg.batch_size, replacement=True, generator=gen)
            xb, yb, wb = x[i], y[i], torch.full((cfg.batch_size,), 1.0 / cfg.batch_size, device=dev)
        with autocast_for(dev, cfg):
            lp = policy.seq_logp(xb, yb)
        return -(wb * lp).sum(), xb.shape[0] * (sp.H + 1)

    optimise(policy.model.parameters(), cfg, step, log)
    return log


def dpo_loss(policy: NeuralPolicy, x, y_pos, y_neg, w, beta: float) -> torch.Tensor:
    """``−Σ_i w_i log σ(β(Δ_θ(y⁺_i) − Δ_θ(y⁻_i)))``, ``Δ_θ = log π_θ − log π_ref``.

    Parameters
    ----------
    policy : NeuralPolicy
        The policy ``π_θ`` (with its reference ``π_ref``).
    x : torch.Tensor, shape (B,)
        Prompt indices.
    y_pos, y_neg : torch.Tensor, shape (B, H)
        Token sequences of the preferred and the rejected completions.
    w : torch.Tensor, shape (B,)
        Pair weights.
    beta : float
        The KL strength β.

    Returns
    -------
    torch.Tensor
        The differentiable scalar loss.
    """
    xx, yy = torch.cat([x, x]), torch.cat([y_pos, y_neg])
    d = policy.seq_logp(xx, yy) - policy.ref_seq_logp(xx, yy)
    B = x.shape[0]
    return -(w * F.logsigmoid(beta * (d[:B] - d[B:]))).sum()


def train_dpo(policy: NeuralPolicy, data: PairCounts, beta: float, cfg: TrainConfig, *, seed: int = 0) -> TrainLog:
    """Offline DPO on the weighted pairs (module table).

    Parameters
    ----------
    policy : NeuralPolicy
        The policy trained in place.
    data : PairCounts
        Preference triples ``(x, y⁺, y⁻)`` with counts ``c``.
    beta : float
        The KL strength β of the DPO loss.
    cfg : TrainConfig
        Optimiser settings.
    seed : int
        Seed of the minibatch draws.

    Returns
    -------
    TrainLog
        Loss per step, tokens, wall time.
    """
    beta = check_beta(beta)
    dev = policy.device
    pairs = _Pairs(data, dev, batch_size_for(cfg, data), torch_generator(dev, seed))
    if cfg.compile:
        policy.compile()
    log = TrainLog()

    def step():
        x, yp, yn, w = pairs.batch()
        with autocast_for(dev, cfg):
            loss = dpo_loss(policy, x, yp, yn, w, beta)
        return loss, 2 * x.shape[0] * (policy.space.H + 1)

    optimise(policy.model.parameters(), cfg, step, log)
    return log


def train_reward(model: nn.Module, data: PairCounts, cfg: TrainConfig, *, seed: int = 0, l2: float = 0.0) -> TrainLog:
    """Bradley–Terry reward model (module table); ``l2`` adds the ridge ``½ l2 ‖θ‖² / Σ c`` on
    every parameter — for :class:`~genver.neural.rewards.LinearReward` exactly the tabular
    ``reward_mle`` objective with the same ``l2`` (divided by ``Σ c``).

    Parameters
    ----------
    model : torch.nn.Module
        The reward model ``r̂`` (``model(x, tokens) -> (B,)``), trained in place.
    data : PairCounts
        Preference triples ``(x, y⁺, y⁻)`` with counts ``c``.
    cfg : TrainConfig
        Optimiser settings.
    seed : int
        Seed of the minibatch draws.
    l2 : float
        Ridge strength (finite, ``>= 0``).

    Returns
    -------
    TrainLog
        Loss per step, tokens, wall time.
    """
    if not (isinstance(l2, (int, float)) and np.isfinite(l2) and l2 >= 0):
        raise ValueError(f"l2 must be finite and >= 0, got {l2!r}")
    ridge = 0.5 * float(l2) / float(np.sum(data.count))
    dev = next(model.parameters()).device
    pairs = _Pairs(data, dev, batch_size_for(cfg, data), torch_generator(dev, seed))
    log = TrainLog()
    fwd = maybe_compile(model, cfg)

    def step():
        x, yp, yn, w = pairs.batch()
        with autocast_for(dev, cfg):
            r = fwd(torch.cat([x, x]), torch.cat([yp, yn])).float()
        B = x.shape[0]
        loss = -(w * F.logsigmoid(r[:B] - r[B:])).sum()
        if ridge:
            loss = loss + ridge * sum((p * p).sum() for p in model.parameters())
        return loss, 2 * B * (data.space.H + 1)

    optimise(model.parameters(), cfg, step, log)
    return log


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
    pairing collapsed (suboptimality 1.4–2.2, KL to ``π_ref`` ≈ 3).

    Parameters
    ----------
    policy : NeuralPolicy
        The policy trained in place.
    reward : torch.nn.Module
        The reward model ``r̂`` that labels the pairs, not trained.
    beta : float
        The KL strength β of the DPO loss.
    cfg : TrainConfig
        Optimiser settings (AdamW only; ``steps`` split over the rounds).
    K : int
        Completions sampled per prompt draw and round (``>= 2``).
    rounds : int
        Sampling rounds (at most ``cfg.steps``).
    labels : str
        ``"soft"``, ``"bradley_terry"`` or ``"top_bottom"`` (above).
    prompt_weights : array_like of float, shape (P,), or None
        The prompt distribution ρ (default uniform).
    seed : int
        Seed of the prompt draws, the samples and the Bradley–Terry labels.

    Returns
    -------
    TrainLog
        Loss per step (every round's block in order), tokens, wall time.
    """
    rounds = _check_online_dpo_options(labels, rounds, cfg)
    beta = check_beta(beta)
    K = check_positive_int(K, "K", 2)
    sp, dev = policy.space, policy.device
    rho = torch.as_tensor(check_prompt_weights(prompt_weights, sp.P), dtype=torch.float64)
    gen, gen_cpu = torch_generator(dev, seed), torch_generator("cpu", seed + 1)
    if cfg.compile:
        policy.compile()
    log = TrainLog()
    opt = None
    per_round = [cfg.steps // rounds + (r < cfg.steps % rounds) for r in range(rounds)]
    for n_steps in per_round:
        x, wx = on_policy_prompts(rho, K, cfg, gen_cpu, dev)
        xs = x.repeat_interleave(K)
        with torch.no_grad():
            y = policy.sample(xs, generator=gen)
            r = reward(xs, y).float().view(-1, K)
        log.tokens += xs.shape[0] * (sp.H + 1) * sp.H  # the H sampling passes of one round
        if labels == "soft":
            step = _soft_label_step(policy, xs, y, r, wx, beta, cfg)
        else:
            pairs = _labelled_pairs(labels, x, y.view(-1, K, sp.H), r, wx, gen)
            if pairs is None:
                continue
            step = _dpo_step(policy, *pairs, beta, cfg)
        opt = optimise(policy.model.parameters(), cfg, step, log, steps=n_steps, opt=opt)
    return log


def _check_online_dpo_options(labels: str, rounds: int, cfg: TrainConfig) -> int:
    """Refuse bad ``labels``, ``rounds`` or optimiser of :func:`train_online_dpo` (ValueError);
    returns ``rounds``."""
    if labels not in ("soft", "bradley_terry", "top_bottom"):
        raise ValueError(f"labels must be soft, bradley_terry or top_bottom, got {labels!r}")
    rounds = check_positive_int(rounds, "rounds")
    require_adamw(cfg, "train_online_dpo")
    if rounds > cfg.steps:
        raise ValueError(f"rounds = {rounds} exceeds steps = {cfg.steps}")
    return rounds


def _soft_label_step(policy: NeuralPolicy, xs, y, r, wx, beta: float, cfg: TrainConfig):
    """Online DPO's ``soft`` loss on one round's samples: every pair ``i < j`` of the ``K``
    samples per prompt draw (``xs``, ``y``: ``K`` consecutive rows per draw; ``r`` (m, K) their
    rewards ``r̂``; ``wx`` (m,) the draws' weights), target probability ``q = σ(r̂_i − r̂_j)``.
    Returns the ``loss_of_step`` closure of :func:`~genver.neural.optim.optimise`."""
    K = r.shape[1]
    iu, ju = torch.triu_indices(K, K, 1, device=policy.device)
    q = torch.sigmoid(r[:, iu] - r[:, ju])  # (m, K(K−1)/2)
    wq = (wx / iu.shape[0])[:, None]

    def soft_step():
        with autocast_for(policy.device, cfg):
            d = (policy.seq_logp(xs, y) - policy.ref_seq_logp(xs, y)).view(-1, K)
            m = beta * (d[:, iu] - d[:, ju])
            loss = -(wq * (q * F.logsigmoid(m) + (1.0 - q) * F.logsigmoid(-m))).sum()
        return loss, xs.shape[0] * (policy.space.H + 1)

    return soft_step


def _labelled_pairs(labels: str, x, yk, r, wx, gen: torch.Generator) -> _Pairs4 | None:
    """Online DPO's hard-labelled pairs of one round (``top_bottom`` or ``bradley_terry``, see
    :func:`train_online_dpo`) from prompt draws ``x`` (m,), samples ``yk`` (m, K, H), rewards
    ``r`` (m, K) and draw weights ``wx`` (m,). Returns ``(x, y⁺, y⁻, w)`` with ``w`` normalised
    to sum 1, or None when no pair is left (every draw's samples tied under ``top_bottom``)."""
    K, H, dev = yk.shape[1], yk.shape[2], x.device
    if labels == "top_bottom":
        rows = torch.arange(x.shape[0], device=dev)
        keep = r.max(dim=1).values > r.min(dim=1).values
        xp, yp, yn, w = x[keep], yk[rows, r.argmax(dim=1)][keep], yk[rows, r.argmin(dim=1)][keep], wx[keep]
    else:  # K//2 disjoint pairs (y_1, y_2), (y_3, y_4), … per prompt draw
        k2 = K // 2 * 2
        a, b = yk[:, 0:k2:2].reshape(-1, H), yk[:, 1:k2:2].reshape(-1, H)
        ra, rb = r[:, 0:k2:2].reshape(-1), r[:, 1:k2:2].reshape(-1)
        first = (torch.rand(ra.shape[0], generator=gen, device=dev) < torch.sigmoid(ra - rb))[:, None]
        xp = x.repeat_interleave(K // 2)
        yp, yn, w = torch.where(first, a, b), torch.where(first, b, a), wx.repeat_interleave(K // 2)
    if xp.shape[0] == 0:
        return None
    return xp, yp, yn, w / w.sum()


def _dpo_step(policy: NeuralPolicy, x, y_pos, y_neg, w, beta: float, cfg: TrainConfig):
    """The ``loss_of_step`` closure of :func:`~genver.neural.optim.optimise` for :func:`dpo_loss`
    on fixed pairs (one round of online DPO)."""

    def step():
        with autocast_for(policy.device, cfg):
            loss = dpo_loss(policy, x, y_pos, y_neg, w, beta)
        return loss, 2 * x.shape[0] * (policy.space.H + 1)

    return step
