r"""Neural estimators as sweep cells: same data, same ``β``, same optimiser for both routes.

Each function has the sweep-estimator signature ``(instance, PairCounts, numpy Generator,
options) -> FitResult`` (the ``fit`` of :data:`genver.experiments.registry.ESTIMATORS`) and returns the trained
network's **exact** sequence distribution (:meth:`NeuralPolicy.exact`) as ``FitResult.policy``,
and, for the reward-model routes, the reward model enumerated over every ``(x, y)`` as
``FitResult.reward`` — so every tabular metric applies unchanged.

===================  ===========================================================================
``neural_dpo``       offline DPO of the transformer policy from ``π_ref`` (:func:`train_dpo`)
``neural_sft_preferred``  SFT on the preferred completions (:func:`train_sft`)
``neural_rm_rl``     reward model (``rm`` = ``global``: transformer + scalar head; ``linear``: the
                     instance's verifier features ``φ``; ``local``: ``β log π/π_ref`` of a
                     DPO-trained policy), then KL-regularised RL from ``π_ref``: REINFORCE-LOO
                     (``rl = "reinforce"``, :func:`train_rl`) or exact gradients of ``J_β``
                     over every completion (``rl = "exact"``, :func:`train_rl_exact`; enumerable
                     tasks only)
``neural_online_dpo``  the same reward model, then online DPO with ``K`` on-policy samples per
                     prompt, soft Bradley–Terry labels from ``r̂`` on all their pairs
                     (``labels = "soft"``, default), one Bradley–Terry draw per disjoint pair
                     (``"bradley_terry"``) or the paper's top vs bottom (``"top_bottom"``, which
                     collapses: :func:`train_online_dpo`)
===================  ===========================================================================

Options (all optional): ``d_model`` (64), ``n_layers`` (2), ``n_heads`` (4) of both the policy
and the global reward model; ``steps`` (300), ``lr`` (3e-3), ``batch_size`` (512),
``weight_decay`` (0), ``schedule`` (``constant`` | ``linear`` decay), ``compile`` (false),
``optimizer`` (``adamw`` | ``lbfgs``: full batch), ``stop`` (default true for ``lbfgs`` and for
``rl = "exact"``: a
:class:`StopRule` with ``stop_window`` (50), ``stop_tol`` (1e-7), ``gap_tol`` (1e-6)) — one
:class:`TrainConfig` for every trainer of the cell; ``rm`` (``global``), ``rm_steps`` /
``rl_steps`` (default ``steps``), ``rm_optimizer`` (default ``optimizer``), ``rm_l2`` (0: the
ridge ``½ l2 ‖w‖²`` of the tabular ``reward_mle``), ``rl`` (``reinforce``), ``K`` (8),
``rounds`` (20), ``labels`` (``soft``); ``polish_steps`` (``rl = "exact"`` only; default
:data:`EXACT_RL_POLISH_STEPS` under AdamW, 0 under L-BFGS): the float64 L-BFGS polish of
:func:`train_rl_exact` when AdamW ends short of ``gap_tol``.

Every fit records ``extra["opt_residual"]`` (the sweep metric ``opt_residual``,
:mod:`genver.neural.residual`): for the RL routes ``J_β(π*_{r̂}; r̂) − J_β(π̂; r̂)``, for DPO and
SFT their log-likelihood's gap per pair to its supremum over every policy on the same data —
so a row says how much of its error is optimisation rather than statistics.

Randomness: one seed in ``[0, 2**62)`` per network and per trainer, drawn from the cell's numpy
generator in a fixed order, so a cell is bitwise reproducible on the CPU (on CUDA, up to the
nondeterminism of its reduction kernels). Networks are initialised on the CPU (the same initial
weights on every device) and, on the CPU, run with one intra-op thread (option ``_threads``), so
the numbers do not depend on the thread count or on the number of sweep workers. These fits are
trained, not certified optima: ``converged`` is False, ``iterations`` the number of optimiser
steps, ``objective`` minus the last trainer's final loss; ``extra`` records the device, the
parameter count, tokens, seconds, why the last trainer stopped (``stopped``) and the residual.
"""
from __future__ import annotations

import contextlib
import time

import numpy as np
import torch

from ..classes import LinearRewardClass
from ..estimators.base import FitResult
from ..preferences import PairCounts
from .model import TinyTransformer, TransformerConfig
from .policy import NeuralPolicy
from .residual import dpo_residual, rl_residual, sft_residual
from .rewards import GlobalReward, LinearReward, LocalReward, reward_table
from .train import (
    ONLINE_DPO_LABELS,
    StopRule,
    TrainConfig,
    resolve_device,
    train_dpo,
    train_online_dpo,
    train_reward,
    train_rl,
    train_rl_exact,
    train_sft,
)

#: default ``polish_steps`` of ``neural_rm_rl`` with ``rl = "exact"`` and AdamW: the L-BFGS
#: evaluations after AdamW when it ends short of ``gap_tol`` (:func:`train_rl_exact`)
EXACT_RL_POLISH_STEPS = 1000

__all__ = ["NEURAL_ESTIMATORS", "neural_dpo", "neural_sft_preferred", "neural_rm_rl", "neural_online_dpo"]


@contextlib.contextmanager
def torch_threads(device: torch.device, o):
    """CPU cells run with ``o["_threads"]`` intra-op threads (default 1: thread-count-free numbers)."""
    if device.type != "cpu":
        yield
        return
    n = torch.get_num_threads()
    torch.set_num_threads(o.get("_threads", 1))
    try:
        yield
    finally:
        torch.set_num_threads(n)


def torch_seed(rng: np.random.Generator) -> int:
    """A torch seed drawn from the unit's numpy ``rng`` (shared with :mod:`genver.neural.long`)."""
    return int(rng.integers(0, 2**62))


def transformer_config(inst, o) -> TransformerConfig:
    """The transformer of ``inst``'s space with the options' ``d_model``, ``n_layers``, ``n_heads``."""
    sp = inst.space
    return TransformerConfig(sp.P, sp.V, sp.H, d_model=o.get("d_model", 64), n_layers=o.get("n_layers", 2),
                             n_heads=o.get("n_heads", 4))


def train_config(o, steps_key: str = "steps", optimizer_key: str = "optimizer") -> TrainConfig:
    """The trainer's :class:`TrainConfig` from the estimator options (``steps_key`` /
    ``optimizer_key``: the options naming this trainer's steps and optimiser)."""
    optimizer = o.get(optimizer_key, o.get("optimizer", "adamw"))
    stop = None
    if o.get("stop", optimizer == "lbfgs"):
        d = StopRule()
        stop = StopRule(window=o.get("stop_window", d.window), tol=o.get("stop_tol", d.tol),
                        gap_tol=o.get("gap_tol", d.gap_tol))
    return TrainConfig(steps=o.get(steps_key, o.get("steps", 300)), lr=o.get("lr", 3e-3),
                       batch_size=o.get("batch_size", 512), weight_decay=o.get("weight_decay", 0.0),
                       compile=o.get("compile", False), schedule=o.get("schedule", "constant"),
                       optimizer=optimizer, stop=stop)


def build_seeded(factory, seed: int, device):
    """``factory()`` under ``torch.manual_seed(seed)`` (the global torch RNG restored), on ``device``."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        module = factory()
    return module.to(device)


def _new_policy(inst, o, rng, device) -> NeuralPolicy:
    cfg = transformer_config(inst, o)
    return NeuralPolicy(build_seeded(lambda: TinyTransformer(cfg), torch_seed(rng), device), inst.ref)


def _result(name, policy: NeuralPolicy, logs, t0, device, reward=None, residual=None) -> FitResult:
    """The fit: the exact distribution of the network, ``reward`` the enumerated reward model,
    ``residual(π̂) -> float`` its optimisation residual (:mod:`genver.neural.residual`;
    ``extra["opt_residual"]``, read by the sweep metric ``opt_residual``)."""
    pol = policy.exact()
    steps = sum(len(lg.losses) for lg in logs)
    extra = {"device": str(device), "n_params": policy.model.n_params(), "tokens": sum(lg.tokens for lg in logs),
             "train_seconds": sum(lg.seconds for lg in logs), "estimate": "trained network",
             "stopped": logs[-1].stopped, "polish_evals": logs[-1].polish_evals}
    if residual is not None:
        extra["opt_residual"] = float(residual(pol))
    return FitResult(name, objective=-float(logs[-1].losses[-1]) if logs[-1].losses else float("nan"),
                     policy=pol, reward=reward, converged=False, iterations=steps,
                     wall_time=time.perf_counter() - t0, extra=extra)


def option_device(o) -> torch.device:
    """The device the options name (``_device``, default ``auto``)."""
    return resolve_device(o.get("_device", "auto"))


def neural_dpo(inst, data: PairCounts, rng, o) -> FitResult:
    """Offline DPO of the transformer policy from ``π_ref`` (:func:`~genver.neural.train.train_dpo`).

    Parameters
    ----------
    inst : genver.experiments.generators.Instance
        The world: space, ``π_ref``, β, ρ, the classes.
    data : PairCounts
        The cell's preference pairs.
    rng : numpy.random.Generator
        The cell's generator (the seeds of the networks and trainers, drawn in a fixed order).
    o : dict
        The estimator's options (module docstring).

    Returns
    -------
    FitResult
        The trained network's exact distribution, ``extra`` as in the module docstring.
    """
    t0, dev = time.perf_counter(), option_device(o)
    with torch_threads(dev, o):
        pol = _new_policy(inst, o, rng, dev)
        log = train_dpo(pol, data, inst.beta, train_config(o), seed=torch_seed(rng))
        return _result("neural_dpo", pol, [log], t0, dev,
                       residual=lambda p: dpo_residual(p, data, inst.ref, inst.beta))


def neural_sft_preferred(inst, data: PairCounts, rng, o) -> FitResult:
    """SFT of the transformer policy on the preferred completions (:func:`~genver.neural.train.train_sft`).

    Parameters
    ----------
    inst : genver.experiments.generators.Instance
        The world: space, ``π_ref``, β, ρ, the classes.
    data : PairCounts
        The cell's preference pairs.
    rng : numpy.random.Generator
        The cell's generator (the seeds of the networks and trainers, drawn in a fixed order).
    o : dict
        The estimator's options (module docstring).

    Returns
    -------
    FitResult
        The trained network's exact distribution, ``extra`` as in the module docstring.
    """
    t0, dev = time.perf_counter(), option_device(o)
    with torch_threads(dev, o):
        pol = _new_policy(inst, o, rng, dev)
        log = train_sft(pol, data.x, data.y_pos, data.count, train_config(o), seed=torch_seed(rng))
        return _result("neural_sft_preferred", pol, [log], t0, dev,
                       residual=lambda p: sft_residual(p, data.x, data.y_pos, data.count))


def _reward_model(inst, data, rng, o, dev):
    """(trained reward model, its training logs)."""
    kind = o.get("rm", "global")
    cfg = train_config(o, "rm_steps", "rm_optimizer")
    if kind == "global":
        arch = transformer_config(inst, o)
        rm = build_seeded(lambda: GlobalReward(arch), torch_seed(rng), dev)
        return rm, [train_reward(rm, data, cfg, seed=torch_seed(rng), l2=o.get("rm_l2", 0.0))]
    if kind == "linear":
        if not isinstance(inst.reward_class, LinearRewardClass):
            raise ValueError(f"rm = 'linear' needs a linear verifier class R (features φ); this instance's R is "
                             f"{type(inst.reward_class).__name__}")
        rm = build_seeded(lambda: LinearReward(inst.space, inst.reward_class.phi), torch_seed(rng), dev)
        return rm, [train_reward(rm, data, cfg, seed=torch_seed(rng), l2=o.get("rm_l2", 0.0))]
    if kind == "local":
        teacher = _new_policy(inst, o, rng, dev)
        log = train_dpo(teacher, data, inst.beta, cfg, seed=torch_seed(rng))
        return LocalReward(teacher, inst.beta), [log]
    raise ValueError(f"rm must be global, linear or local, got {kind!r}")


def neural_rm_rl(inst, data: PairCounts, rng, o) -> FitResult:
    """A reward model ``r̂`` (option ``rm``), then KL-regularised RL against it (option ``rl``:
    REINFORCE-LOO or exact gradients of ``J_β``).

    Parameters
    ----------
    inst : genver.experiments.generators.Instance
        The world: space, ``π_ref``, β, ρ, the classes.
    data : PairCounts
        The cell's preference pairs.
    rng : numpy.random.Generator
        The cell's generator (the seeds of the networks and trainers, drawn in a fixed order).
    o : dict
        The estimator's options (module docstring).

    Returns
    -------
    FitResult
        The trained network's exact distribution and the enumerated ``r̂`` as ``reward``, ``extra`` as
        in the module docstring.
    """
    if "polish_steps" in o and o.get("rl", "reinforce") != "exact":
        raise ValueError("polish_steps applies to rl = 'exact' only (REINFORCE samples: no exact objective to polish)")
    t0, dev = time.perf_counter(), option_device(o)
    with torch_threads(dev, o):
        rm, logs = _reward_model(inst, data, rng, o, dev)
        pol = _new_policy(inst, o, rng, dev)
        exact = o.get("rl", "reinforce") == "exact"
        cfg = train_config({"stop": True, **o} if exact else o, "rl_steps")  # exact RL stops by default
        rl_seed = torch_seed(rng)  # drawn for either trainer, so the networks' seeds do not depend on `rl`
        r_hat = reward_table(rm, inst.space, dev)
        if exact:
            polish = o.get("polish_steps", EXACT_RL_POLISH_STEPS if cfg.optimizer == "adamw" else 0)
            logs.append(train_rl_exact(pol, r_hat, inst.beta, cfg, prompt_weights=inst.prompt_weights,
                                       polish_steps=polish))
        else:
            logs.append(train_rl(pol, rm, inst.beta, cfg, K=o.get("K", 8), prompt_weights=inst.prompt_weights,
                                 seed=rl_seed))
        return _result("neural_rm_rl", pol, logs, t0, dev, reward=r_hat,
                       residual=lambda p: rl_residual(p, r_hat, inst.ref, inst.beta, inst.prompt_weights))


def neural_online_dpo(inst, data: PairCounts, rng, o) -> FitResult:
    """The same reward model ``r̂``, then online DPO on on-policy pairs labelled by it (options ``K``,
    ``rounds``, ``labels``).

    Parameters
    ----------
    inst : genver.experiments.generators.Instance
        The world: space, ``π_ref``, β, ρ, the classes.
    data : PairCounts
        The cell's preference pairs.
    rng : numpy.random.Generator
        The cell's generator (the seeds of the networks and trainers, drawn in a fixed order).
    o : dict
        The estimator's options (module docstring).

    Returns
    -------
    FitResult
        The trained network's exact distribution and the enumerated ``r̂`` as ``reward``, ``extra`` as
        in the module docstring.
    """
    t0, dev = time.perf_counter(), option_device(o)
    with torch_threads(dev, o):
        rm, logs = _reward_model(inst, data, rng, o, dev)
        pol = _new_policy(inst, o, rng, dev)
        logs.append(train_online_dpo(pol, rm, inst.beta, train_config(o, "rl_steps"), K=o.get("K", 8),
                                     rounds=o.get("rounds", 20), labels=o.get("labels", ONLINE_DPO_LABELS),
                                     prompt_weights=inst.prompt_weights, seed=torch_seed(rng)))
        r_hat = reward_table(rm, inst.space, dev)
        return _result("neural_online_dpo", pol, logs, t0, dev, reward=r_hat,
                       residual=lambda p: rl_residual(p, r_hat, inst.ref, inst.beta, inst.prompt_weights))


#: name -> fit function; the option schemas and routes are the entries of
#: :data:`genver.experiments.registry.ESTIMATORS` (importable without PyTorch)
NEURAL_ESTIMATORS = {"neural_dpo": neural_dpo, "neural_sft_preferred": neural_sft_preferred,
                     "neural_rm_rl": neural_rm_rl, "neural_online_dpo": neural_online_dpo}
