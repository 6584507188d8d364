r"""Tasks beyond enumeration: the linear-verifier world at sizes no table can hold, for the
networks (``T = V**H`` completions per prompt, e.g. ``V = 16, H = 8``: ``T ≈ 4.3·10⁹``).

**World** (generator ``long_linear``, :class:`LongWorld`). ``P`` prompts (uniform ``ρ``),
a *position-wise* reference ``π_ref(a | x, a_1..a_{h−1}) = q_{x,h}(a)`` with
``q_{x,h} = softmax(ref_scale · N(0, I_V))`` (it ignores the prefix, so ``log π_ref(y|x) =
Σ_h log q_{x,h}(a_h)`` needs no table), and the verifier features of ``linear_gap``:
``φ(x, y) = [token counts (V), 1[#{h: a_h = 0} odd], 1[a_1 = a_H]]``, ``r* = w*·φ`` with
``w* ~ N(0, w_scale²)``. Pairs: ``x ~ ρ``, ``y_1, y_2 ~ π_ref`` i.i.d., Bradley–Terry labels
from ``r*`` (drawn in numpy from the unit's seed sequence).

**The optimum, exactly.** ``J_β(π*; r*) = β Σ_x ρ(x) log Z(x)``, ``Z(x) = E_{π_ref} e^{r*/β}``,
by dynamic programming over positions with the state (first token ``a_1``, parity of the
count of token 0): ``u_h(a) = q_{x,h}(a) e^{w_a/β}``; after position 1,
``S[a_1, b] = u_1(a_1)·1[b = 1[a_1 = 0]]``; each middle position
``S'[a_1, b] = Σ_a u_h(a) S[a_1, b ⊕ 1[a = 0]]``; the last position adds the parity and
first-last weights, ``Z = Σ_{a_1, b, a} S[a_1, b] u_H(a) e^{(w_par·(b ⊕ 1[a=0]) + w_fl·1[a = a_1])/β}``
(``O(H V²)``; ``H ≥ 2``).

**Evaluation: Monte-Carlo estimates, labelled as such.** A trained network ``π̂`` is sampled
``n_eval`` times (``x ~ ρ``, ``y ~ π̂``): ``Ĵ = mean(r*(x, y) − β log π̂(y|x)/π_ref(y|x))``
with its standard error, and ``suboptimality = J* − Ĵ`` (the same standard error: ``J*`` is
exact), ``expected_reward`` and ``kl_to_reference`` likewise. Each value is a row, and each
has a ``<metric>_se`` row beside it; the spec labels these estimators ``*_mc`` so tables,
reports and figures say they are estimates.

**Estimators** (same options as in enumerable specs): ``neural_dpo`` (offline DPO of the
network) and ``neural_rm_rl`` with ``rm = "linear"`` (the verifier ``w·φ`` computed on the fly,
:class:`FeatureReward`) then REINFORCE-LOO + KL (``rl = "exact"`` is refused: nothing here is
enumerable).
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from ..spaces import TreeSpace

__all__ = ["LongWorld", "long_linear", "LONG_SCHEMA", "LONG_METRICS"]

#: generator parameters: name -> (type, default)
LONG_SCHEMA = {"P": (int, 4), "V": (int, 16), "H": (int, 8), "beta": (float, 1.0), "w_scale": (float, 0.5),
               "ref_scale": (float, 1.0), "n_eval": (int, 65536)}
#: the metrics a sampled unit writes (each with a ``_se`` row)
LONG_METRICS = ("suboptimality", "expected_reward", "kl_to_reference")
_ESTIMATORS = ("neural_dpo", "neural_rm_rl")
#: ``TreeSpace.max_entries`` of sampled worlds: no (P, T) array is ever allocated, only index
#: arithmetic (``V**H < 2**62`` is still enforced)
NO_TABLES = 2**62


@dataclass
class LongWorld:
    """The sampled linear-verifier world (module docstring); numpy only (torch where sampled)."""

    space: TreeSpace
    beta: float
    ref_logq: np.ndarray  # (P, H, V): log q_{x,h}(a)
    w_star: np.ndarray  # (V + 2,)
    n_eval: int
    #: marks a world evaluated by sampling (the sweep delegates its units to :meth:`unit_columns`)
    sampled: bool = True

    @property
    def prompt_weights(self) -> np.ndarray:
        """The uniform prompt distribution ρ, (P,)."""
        return np.full(self.space.P, 1.0 / self.space.P)

    # -- features and rewards, for token arrays (B, H) of numpy or torch ---------------------
    def features(self, y, xp=np):
        """``φ(y)`` (B, V + 2) (the features do not depend on the prompt).

        Parameters
        ----------
        y : numpy.ndarray or torch.Tensor, shape (B, H)
            Token sequences.
        xp : module
            ``numpy`` (the default) or ``torch``: the array library of ``y``.

        Returns
        -------
        numpy.ndarray or torch.Tensor, shape (B, V + 2)
            Token counts, the parity of the count of token 0, ``1[a_1 = a_H]``.
        """
        V = self.space.V
        if xp is np:
            counts = np.stack([(y == v).sum(axis=1) for v in range(V)], axis=1).astype(np.float64)
            odd = (counts[:, 0] % 2)[:, None]
            fl = (y[:, 0] == y[:, -1]).astype(np.float64)[:, None]
            return np.concatenate([counts, odd, fl], axis=1)
        import torch
        t_counts = torch.nn.functional.one_hot(y, V).sum(dim=1).float()  # (B, V)
        t_odd = torch.remainder(t_counts[:, :1], 2.0)
        t_fl = (y[:, :1] == y[:, -1:]).float()
        return torch.cat([t_counts, t_odd, t_fl], dim=1)

    def reward(self, x, y):
        """``r*(x, y) = w*·φ(y)``: numpy float64 for numpy input, torch float64 for torch input.

        Parameters
        ----------
        x : numpy.ndarray or torch.Tensor, shape (B,)
            Prompt indices (unused: the features do not depend on the prompt).
        y : numpy.ndarray or torch.Tensor, shape (B, H)
            Token sequences.

        Returns
        -------
        numpy.ndarray or torch.Tensor, shape (B,)
            The rewards, float64.
        """
        if isinstance(y, np.ndarray):
            return self.features(y) @ self.w_star
        import torch
        return self.features(y, torch).double() @ torch.as_tensor(self.w_star, device=y.device)

    def ref_logp(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """``log π_ref(y|x) = Σ_h log q_{x,h}(a_h)`` (numpy).

        Parameters
        ----------
        x : numpy.ndarray, shape (B,)
            Prompt indices.
        y : numpy.ndarray, shape (B, H)
            Token sequences.

        Returns
        -------
        numpy.ndarray, shape (B,)
            The reference log-probabilities.
        """
        return self.ref_logq[x[:, None], np.arange(self.space.H)[None], y].sum(axis=1)

    def log_partition(self) -> np.ndarray:
        """``log Z(x) = log E_{π_ref} e^{r*/β}`` per prompt, exactly (module docstring).

        Returns
        -------
        numpy.ndarray, shape (P,)
            ``log Z(x)``.
        """
        sp, b = self.space, self.beta
        V, H = sp.V, sp.H
        wc, wp, wf = self.w_star[:V], self.w_star[V], self.w_star[V + 1]
        is0 = (np.arange(V) == 0).astype(int)
        out = np.empty(sp.P)
        for x in range(sp.P):
            logu = self.ref_logq[x] + wc[None, :] / b  # (H, V): log u_h(a)
            scale = logu.max(axis=1)
            u = np.exp(logu - scale[:, None])
            S = np.zeros((V, 2))
            S[np.arange(V), is0] = u[0]
            for h in range(1, H - 1):
                new = np.zeros((V, 2))
                for par in (0, 1):  # token 0 flips the parity, every other token keeps it
                    new[:, par] = S[:, par] * u[h][1:].sum() + S[:, 1 - par] * u[h][0]
                S = new
            total = 0.0
            for a in range(V):
                par_end = np.array([0, 1]) ^ is0[a]  # parity after the last token, for b = 0, 1
                weight = np.exp((wp * par_end[None, :] + wf * (np.arange(V) == a)[:, None]) / b)  # (a_1, b)
                total += u[H - 1, a] * float((S * weight).sum())
            out[x] = np.log(total) + scale.sum()
        return out

    def optimal_value(self) -> float:
        """``J_β(π*; r*) = β Σ_x ρ(x) log Z(x)``.

        Returns
        -------
        float
            The optimal value ``J*``, exactly.
        """
        return float(self.beta * self.log_partition() @ self.prompt_weights)

    # -- data --------------------------------------------------------------------------------
    def sample_ref(self, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """``y ~ π_ref(·|x)`` token by token (B, H), numpy.

        Parameters
        ----------
        x : numpy.ndarray, shape (B,)
            Prompt indices.
        rng : numpy.random.Generator
            The draws' generator.

        Returns
        -------
        numpy.ndarray, shape (B, H)
            Sampled tokens.
        """
        q = np.exp(self.ref_logq[x])  # (B, H, V)
        cdf = np.cumsum(q, axis=2)
        u = rng.random(q.shape[:2])[..., None]
        return np.minimum((u > cdf).sum(axis=2), self.space.V - 1)

    def preferences(self, n: int, rng: np.random.Generator):
        """``n`` Bradley–Terry pairs from ``π_ref`` labelled by ``r*``: a
        :class:`genver.preferences.Preferences` (completions as indices into ``V**H``).

        Parameters
        ----------
        n : int
            Number of pairs.
        rng : numpy.random.Generator
            The draws' generator (prompts, completions, labels).

        Returns
        -------
        genver.preferences.Preferences
            The labelled pairs.
        """
        from ..preferences import Preferences

        sp = self.space
        x = rng.integers(0, sp.P, n)
        y1, y2 = self.sample_ref(x, rng), self.sample_ref(x, rng)
        d = self.reward(x, y1) - self.reward(x, y2)
        first = rng.random(n) < 0.5 * (1.0 + np.tanh(0.5 * d))  # σ(d)
        i1, i2 = sp.encode(y1), sp.encode(y2)
        return Preferences(sp, x.astype(np.int64), np.where(first, i1, i2), np.where(first, i2, i1))

    def describe(self) -> dict:
        """Settings-table descriptors: ``log T`` and the verifier's parameter count.

        Returns
        -------
        dict
            ``log_T``, ``n_params_R`` and ``estimate = "monte_carlo"``.
        """
        return {"log_T": float(self.space.H * np.log(self.space.V)), "n_params_R": float(self.w_star.size),
                "estimate": "monte_carlo"}

    # -- one sweep unit ----------------------------------------------------------------------
    def unit_columns(self, spec, params: dict, sid: str, seed: int) -> dict:
        """The unit's rows (the columns of :func:`genver.experiments.cells.unit_columns`):
        every estimator at every size on nested heads of one pair stream, each evaluated by
        :meth:`evaluate` (a metric row and its ``_se`` row).

        Parameters
        ----------
        spec : genver.experiments.spec.Spec
            The experiment (estimators, sizes, knobs, root seed, device).
        params : dict
            The setting's generator parameters.
        sid : str
            The setting's id.
        seed : int
            The unit's data seed.

        Returns
        -------
        dict
            Column name -> list of values, one entry per row.
        """
        from ..experiments.cells import seed_sequence

        for est in spec.estimators:
            if est["name"] not in _ESTIMATORS:
                raise ValueError(f"generator long_linear is evaluated by sampling: estimators must be one of "
                                 f"{', '.join(_ESTIMATORS)}, got {est['name']!r}")
            if est["options"].get("rl", "reinforce") != "reinforce" or est["options"].get("rm", "linear") != "linear":
                raise ValueError(f"generator long_linear: {est['label']} needs rm = 'linear' and rl = 'reinforce' "
                                 "(nothing is enumerable here)")
        stream = self.preferences(max(spec.sizes), np.random.default_rng(seed_sequence(spec.root_seed, seed, 1)))
        knobs = {k: params[k] for k in spec.knobs}
        columns = ("n", "estimator", "route", "metric", "value", "converged", "wall_time")
        cols: dict[str, list] = {c: [] for c in columns}
        j_star = self.optimal_value()
        for n in spec.sizes:
            data = stream.head(n).counts()
            for k, est in enumerate(spec.estimators):
                rng = np.random.default_rng(seed_sequence(spec.root_seed, seed, 2, n, k))
                t0 = time.perf_counter()
                policy = fit_long(self, est["name"], data, rng, {**est["options"],
                                                                 "_device": getattr(spec, "device", "auto")})
                wall = time.perf_counter() - t0
                values = self.evaluate(policy, seed=int(rng.integers(0, 2**31)), j_star=j_star)
                for m in LONG_METRICS:
                    for name, v in ((m, values[m][0]), (m + "_se", values[m][1])):
                        for c, val in zip(cols.values(), (n, est["label"], est["route"], name, v, False, wall)):
                            c.append(val)
        N = len(cols["metric"])
        return {"experiment": [spec.name] * N, "setting_id": [sid] * N, **{k: [x] * N for k, x in knobs.items()},
                "seed": [seed] * N, **cols}

    def evaluate(self, policy, *, seed: int, j_star: float | None = None) -> dict:
        """Monte-Carlo estimates ``(mean, standard error)`` of the metrics (module docstring).

        Parameters
        ----------
        policy : PositionalNeuralPolicy
            The trained network ``π̂``.
        seed : int
            Seed of the evaluation draws.
        j_star : float or None
            The exact optimum ``J*`` (computed when None).

        Returns
        -------
        dict
            ``suboptimality``, ``expected_reward``, ``kl_to_reference`` as ``(mean, se)`` pairs and
            ``estimate = "monte_carlo"``.
        """
        from .policy import monte_carlo_estimate

        est = monte_carlo_estimate(policy, self.reward, self.n_eval, prompt_weights=self.prompt_weights, seed=seed,
                                   beta=self.beta)
        j_star = self.optimal_value() if j_star is None else j_star
        mean, se = est["J_beta"]
        return {"suboptimality": (j_star - mean, se), "expected_reward": est["expected_reward"],
                "kl_to_reference": est["kl_to_reference"], "estimate": "monte_carlo"}


def long_linear(p, rng) -> LongWorld:
    """The ``long_linear`` generator (module docstring): reference logits, then ``w*``.

    Parameters
    ----------
    p : dict
        The generator parameters (:data:`LONG_SCHEMA`).
    rng : numpy.random.Generator
        The setting's generator.

    Returns
    -------
    LongWorld
        The sampled world.
    """
    sp = TreeSpace(p["P"], p["V"], p["H"], max_entries=NO_TABLES)
    if sp.H < 2:
        raise ValueError(f"long_linear needs H >= 2 (first = last token feature), got H = {sp.H}")
    logits = p["ref_scale"] * rng.standard_normal((sp.P, sp.H, sp.V))
    ref_logq = logits - np.log(np.exp(logits).sum(axis=2, keepdims=True))
    w_star = p["w_scale"] * rng.standard_normal(sp.V + 2)
    if not (isinstance(p["n_eval"], int) and p["n_eval"] >= 2):
        raise ValueError(f"n_eval must be an integer >= 2, got {p['n_eval']!r}")
    return LongWorld(sp, float(p["beta"]), ref_logq, w_star, int(p["n_eval"]))


def fit_long(world: LongWorld, name: str, data, rng, o):
    """Train one neural estimator on ``data`` in the sampled world; returns the
    :class:`~genver.neural.policy.PositionalNeuralPolicy`."""
    # late: this module is imported without PyTorch (the registry and the spec validation read
    # LONG_SCHEMA and NO_TABLES); the neural estimators' helpers import torch
    from .estimators import build_seeded, option_device, torch_seed, torch_threads, train_config, transformer_config
    from .model import TinyTransformer
    from .policy import PositionalNeuralPolicy
    from .rewards import FeatureReward
    from .train import train_dpo, train_reward, train_rl

    dev = option_device(o)
    with torch_threads(dev, o):
        def new_policy():
            cfg = transformer_config(world, o)
            net = build_seeded(lambda: TinyTransformer(cfg), torch_seed(rng), dev)
            return PositionalNeuralPolicy(net, world.ref_logq)

        if name == "neural_dpo":
            pol = new_policy()
            train_dpo(pol, data, world.beta, train_config(o), seed=torch_seed(rng))
            return pol
        rm = build_seeded(lambda: FeatureReward(world), torch_seed(rng), dev)
        train_reward(rm, data, train_config(o, "rm_steps", "rm_optimizer"), seed=torch_seed(rng),
                     l2=o.get("rm_l2", 0.0))
        pol = new_policy()
        train_rl(pol, rm, world.beta, train_config(o, "rl_steps"), K=o.get("K", 8),
                 prompt_weights=world.prompt_weights, seed=torch_seed(rng))
        return pol
