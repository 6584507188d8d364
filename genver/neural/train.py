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
:func:`train_online_dpo`  ``rounds`` rounds; each samples ``K`` completions per prompt from the
                    current ``π_θ``, pairs them (top vs bottom by ``r̂``, or Bradley–Terry labels
                    drawn from ``r̂``), then takes ``steps/rounds`` DPO steps on those pairs
==================  ================================================================================

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
from .policy import NeuralPolicy, tokens_of

__all__ = ["TrainConfig", "TrainLog", "resolve_device", "dpo_loss", "train_sft", "train_dpo", "train_reward", "train_rl",
           "train_online_dpo"]


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

    def __post_init__(self):
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

    @property
    def tokens_per_second(self) -> float:
        return self.tokens / self.seconds if self.seconds > 0 else float("nan")


def _autocast(device: torch.device, cfg: TrainConfig):
    if device.type == "cuda" and cfg.autocast:
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


def _optimise(params, cfg: TrainConfig, loss_of_step, log: TrainLog, steps: int | None = None, opt=None):
    """AdamW steps with gradient clipping. Losses stay on the device until the end (no
    per-step synchronisation); a non-finite loss raises after the block."""
    opt = opt if opt is not None else torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    params = [p for g in opt.param_groups for p in g["params"]]
    t0 = time.perf_counter()
    losses = []
    done = len(log.losses)  # steps taken before this block (online DPO trains in several blocks)
    for i in range(cfg.steps if steps is None else steps):
        if cfg.schedule == "linear":  # lr · (1 − t/steps) at global step t
            for g in opt.param_groups:
                g["lr"] = cfg.lr * (1.0 - (done + i) / cfg.steps)
        opt.zero_grad(set_to_none=True)
        loss, tokens = loss_of_step()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
        opt.step()
        losses.append(loss.detach())
        log.tokens += tokens
    values = torch.stack(losses).float().cpu().tolist() if losses else []  # synchronises the device
    log.seconds += time.perf_counter() - t0
    log.losses.extend(values)
    bad = [i for i, v in enumerate(values) if not np.isfinite(v)]
    if bad:
        raise FloatingPointError(f"training loss became {values[bad[0]]} at step {bad[0]}; lower the learning rate")
    return opt


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
        if x.shape[0] <= cfg.batch_size:
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
    pairs = _Pairs(data, dev, cfg.batch_size, _generator(dev, seed))
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


def train_reward(model: nn.Module, data: PairCounts, cfg: TrainConfig, *, seed: int = 0) -> TrainLog:
    """Bradley–Terry reward model (module table)."""
    dev = next(model.parameters()).device
    pairs = _Pairs(data, dev, cfg.batch_size, _generator(dev, seed))
    log = TrainLog()
    fwd = _maybe_compile(model, cfg)

    def step():
        x, yp, yn, w = pairs.batch()
        with _autocast(dev, cfg):
            r = fwd(torch.cat([x, x]), torch.cat([yp, yn])).float()
        B = x.shape[0]
        return -(w * F.logsigmoid(r[:B] - r[B:])).sum(), 2 * B * (data.space.H + 1)

    _optimise(model.parameters(), cfg, step, log)
    return log


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


def train_online_dpo(policy: NeuralPolicy, reward: nn.Module, beta: float, cfg: TrainConfig, *, K: int = 8,
                     rounds: int = 20, labels: str = "top_bottom", prompt_weights=None, seed: int = 0) -> TrainLog:
    """Online DPO on on-policy pairs re-sampled each round: ``labels = "top_bottom"`` pairs the
    best against the worst of the ``K`` samples by ``reward`` (one pair per prompt draw);
    ``"bradley_terry"`` splits the ``K`` samples into ``K//2`` disjoint pairs, each labelled by a
    draw with ``P(y_1 ≻ y_2) = σ(r̂(y_1) − r̂(y_2))`` (population fixed point ``π*_{r̂}``)."""
    if labels not in ("top_bottom", "bradley_terry"):
        raise ValueError(f"labels must be top_bottom or bradley_terry, got {labels!r}")
    beta = check_beta(beta)
    K = check_positive_int(K, "K", 2)
    rounds = check_positive_int(rounds, "rounds")
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

        def step():
            with _autocast(dev, cfg):
                loss = dpo_loss(policy, xp, yp, yn, w, beta)
            return loss, 2 * xp.shape[0] * (sp.H + 1)

        opt = _optimise(policy.model.parameters(), cfg, step, log, steps=n_steps, opt=opt)
    return log
