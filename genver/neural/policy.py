r"""The transformer as a policy over a ``TreeSpace``, and its exact evaluation by enumeration.

Token level: ``π_θ(a | x, s) = softmax(log π_ref(· | x, s) + g_θ(x, s))_a`` with ``g_θ`` the
transformer's next-token logits (:mod:`genver.neural.model`) and ``π_ref`` a tabular
:class:`genver.policy.Policy` (its conditionals are looked up, never learned). Sequence
level: ``log π_θ(y|x) = Σ_t log π_θ(a_{t+1} | x, s_t)``.

**Exact evaluation.** A policy on the prefix tree is determined by its conditionals at the
``n_internal = (T − 1)/(V − 1)`` internal nodes, and the transformer's logits at every prefix
of a depth-``(H−1)`` prefix ``p`` are read in one forward pass. Feeding all ``V**(H−1)``
depth-``(H−1)`` prefixes of every prompt therefore gives every conditional (node ``(h, j)``
is read from the prefix ``p = j·V**(H−1−h)``, whose first ``h`` tokens are ``j``). The
logits are cast to float64, added to ``log π_ref`` and normalised in float64, so the returned
:class:`~genver.policy.Policy` is the network's distribution up to the float32 rounding of
``g_θ`` itself, and every exact metric of the tabular case applies unchanged. Cost:
``P·V**(H−1)`` sequences of ``H`` tokens. Tasks with more than ``max_sequences`` such
sequences are refused; :func:`monte_carlo_estimate` then gives sampled estimates with standard
errors, labelled as such.
"""
from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F

from ..policy import Policy, logsumexp_rows
from ..spaces import TreeSpace
from .model import TinyTransformer

__all__ = ["NeuralPolicy", "PositionalNeuralPolicy", "MAX_ENUMERATION", "monte_carlo_estimate", "node_indices",
           "completion_index", "tokens_of"]

#: Largest ``P·V**(H−1)`` prefixes enumerated by :meth:`NeuralPolicy.exact`.
MAX_ENUMERATION = 2**22

#: the cached index tensors of :meth:`NeuralPolicy.logp_table` (prefix, position, node, token, ref conditionals)
_Paths = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]


def node_indices(space: TreeSpace, y: torch.Tensor) -> torch.Tensor:
    """Flat internal-node index of each prefix of ``y`` (B, t): (B, t+1), depth ``0..t``
    (``offset(h) + Σ_{i<h} a_i V**(h−1−i)``, the layout of :attr:`genver.policy.Policy.cond`).

    Parameters
    ----------
    space : TreeSpace
        The prefix tree.
    y : torch.Tensor, shape (B, t)
        Token prefixes, ``t ≤ H``.

    Returns
    -------
    torch.Tensor, shape (B, t+1)
        The node reached after ``0..t`` tokens.
    """
    B, t = y.shape
    V = space.V
    out = torch.empty((B, t + 1), dtype=torch.long, device=y.device)
    j = torch.zeros(B, dtype=torch.long, device=y.device)
    for h in range(t + 1):
        out[:, h] = space.offset(h) + j
        if h < t:
            j = j * V + y[:, h]
    return out


def completion_index(space: TreeSpace, y: torch.Tensor) -> torch.Tensor:
    """``idx(y) = Σ_h a_h V**(H−h)`` of complete token sequences (B, H) (first token most significant).

    Parameters
    ----------
    space : TreeSpace
        The prefix tree.
    y : torch.Tensor, shape (B, H)
        Complete token sequences.

    Returns
    -------
    torch.Tensor, shape (B,)
        Completion indices in ``[0, T)``.
    """
    powers = torch.tensor([space.V ** (space.H - 1 - h) for h in range(space.H)], dtype=torch.long, device=y.device)
    return (y * powers).sum(dim=1)


def tokens_of(space: TreeSpace, idx, device) -> torch.Tensor:
    """Token sequences (B, H) of completion indices, as a long tensor on ``device``.

    Parameters
    ----------
    space : TreeSpace
        The prefix tree.
    idx : array_like of int, shape (B,)
        Completion indices.
    device : torch.device or str
        Where the tensor lives.

    Returns
    -------
    torch.Tensor, shape (B, H)
        The tokens, ``torch.long``.
    """
    return torch.as_tensor(space.decode(np.asarray(idx, dtype=np.int64)), dtype=torch.long, device=device)


def _node_reads(space: TreeSpace):
    """Where :meth:`NeuralPolicy.exact` reads each internal node: node ``(h, j)`` (flat index
    ``offset(h) + j``) from prefix ``j·V**(H−1−h)`` of the depth-``(H−1)`` enumeration, at
    position ``h``. Returns (prefix index, position), each (n_internal,)."""
    V, H = space.V, space.H
    pre = np.concatenate([np.arange(V**h) * V ** (H - 1 - h) for h in range(H)])
    pos = np.concatenate([np.full(V**h, h) for h in range(H)])
    return pre, pos


def _path_nodes(space: TreeSpace):
    """The node at depth ``h`` on the path of each completion ``y`` and the token taken there:
    (H, T) node indices ``offset(h) + ⌊y / V**(H−h)⌋`` and (H, T) tokens ``a_{h+1}``."""
    V, H = space.V, space.H
    y = np.arange(space.T)
    nodes = np.stack([space.offset(h) + y // V ** (H - h) for h in range(H)])
    toks = np.stack([(y // V ** (H - 1 - h)) % V for h in range(H)])
    return nodes, toks


class NeuralPolicy:
    """``π_θ = softmax(log π_ref + g_θ)`` at every node (module docstring).

    Parameters
    ----------
    model : TinyTransformer
        The network (its ``cfg`` must match ``ref.space``).
    ref : genver.policy.Policy
        The reference ``π_ref`` (full support).
    """

    def __init__(self, model: TinyTransformer, ref: Policy):
        sp = ref.space
        c = model.cfg
        if (c.P, c.V, c.H) != (sp.P, sp.V, sp.H):
            raise ValueError(f"model is for (P, V, H) = {(c.P, c.V, c.H)} but ref lives on {sp!r}")
        ref.require_full_support("ref")
        self.model = model
        self._forward: Callable[..., torch.Tensor] = model  # torch.compile(model) after compile()
        self.ref = ref
        self.space = sp
        dev = next(model.parameters()).device
        self.ref_cond = torch.as_tensor(np.array(ref.cond), dtype=torch.float32, device=dev)  # (P, n_internal, V)
        self.ref_logp = torch.as_tensor(np.array(ref.logp), dtype=torch.float32, device=dev)  # (P, T)
        self._paths: _Paths | None = None  # index tensors of logp_table, built on first use

    @property
    def device(self) -> torch.device:
        """The device of the network and of the reference tables."""
        return self.ref_cond.device

    def compile(self) -> NeuralPolicy:
        """Route training and sampling through ``torch.compile(model, dynamic=True)`` (same
        parameters; :meth:`exact` keeps the eager model).

        Returns
        -------
        NeuralPolicy
            ``self``.
        """
        if self._forward is self.model:
            self._forward = torch.compile(self.model, dynamic=True)
        return self

    # -- log-probabilities -------------------------------------------------------------
    def token_logits(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """``log π_ref + g_θ`` at the ``H`` prefixes of complete ``y`` (B, H): (B, H, V).

        Parameters
        ----------
        x : torch.Tensor, shape (B,)
            Prompt indices.
        y : torch.Tensor, shape (B, H)
            Complete completions' tokens.

        Returns
        -------
        torch.Tensor, shape (B, H, V)
            Unnormalised log-probabilities of the next token at each prefix.
        """
        g = self._forward(x, y[:, :-1])
        return self.ref_cond[x[:, None], node_indices(self.space, y[:, :-1])] + g.float()

    def seq_logp(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """``log π_θ(y|x)`` (B,), differentiable in ``θ``.

        Parameters
        ----------
        x : torch.Tensor, shape (B,)
            Prompt indices.
        y : torch.Tensor, shape (B, H)
            Complete completions' tokens.

        Returns
        -------
        torch.Tensor, shape (B,)
            The sequence log-probabilities.
        """
        lp = F.log_softmax(self.token_logits(x, y), dim=-1)
        return lp.gather(2, y[:, :, None]).squeeze(2).sum(dim=1)

    def ref_seq_logp(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """``log π_ref(y|x)`` (B,) (a table lookup).

        Parameters
        ----------
        x : torch.Tensor, shape (B,)
            Prompt indices.
        y : torch.Tensor, shape (B, H)
            Complete completions' tokens.

        Returns
        -------
        torch.Tensor, shape (B,)
            The reference log-probabilities.
        """
        return self.ref_logp[x, completion_index(self.space, y)]

    @torch.no_grad()
    def sample(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """One completion per prompt in ``x`` (B,), token by token: (B, H) on the policy's device.

        Parameters
        ----------
        x : torch.Tensor, shape (B,)
            Prompt indices.
        generator : torch.Generator or None
            Generator of the draws (on the policy's device).

        Returns
        -------
        torch.Tensor, shape (B, H)
            Sampled tokens.
        """
        B = x.shape[0]
        y = torch.empty((B, 0), dtype=torch.long, device=x.device)
        j = torch.zeros(B, dtype=torch.long, device=x.device)
        for h in range(self.space.H):
            logits = self._forward(x, y)[:, -1, :].float() + self.ref_cond[x, self.space.offset(h) + j]
            a = torch.multinomial(F.softmax(logits, dim=-1), 1, generator=generator)  # (B, 1)
            y = torch.cat([y, a], dim=1)
            j = j * self.space.V + a[:, 0]
        return y

    # -- exact evaluation --------------------------------------------------------------
    @torch.no_grad()
    def exact(self, batch_size: int = 4096, max_sequences: int = MAX_ENUMERATION) -> Policy:
        """The network's exact sequence distribution as a tabular :class:`Policy` (module doc).

        Parameters
        ----------
        batch_size : int
            Prefix sequences per forward pass.
        max_sequences : int
            Refuse (ValueError) when ``P·V**(H−1)`` exceeds it.

        Returns
        -------
        genver.policy.Policy
            ``π_θ`` in float64, node conditionals renormalised.
        """
        sp = self.space
        P, V, H = sp.P, sp.V, sp.H
        n_pre = V ** (H - 1)
        if P * n_pre > max_sequences:
            raise ValueError(
                f"exact evaluation needs P·V**(H-1) = {P * n_pre} forward sequences, more than max_sequences = "
                f"{max_sequences}; use genver.neural.monte_carlo_estimate for a sampled estimate")
        was_training = self.model.training
        self.model.eval()
        flat_x, flat_p = self._prefix_batch()
        g = torch.empty((P, n_pre, H, V), dtype=torch.float64)
        out = g.view(P * n_pre, H, V)
        for s in range(0, P * n_pre, batch_size):
            b = slice(s, s + batch_size)
            out[b] = self.model(flat_x[b], flat_p[b]).double().cpu()
        self.model.train(was_training)
        pre, pos = _node_reads(sp)
        cond = g.numpy()[:, pre, pos, :]  # (P, n_internal, V): node k read from prefix pre[k] at position pos[k]
        cond += self.ref.cond
        cond -= logsumexp_rows(cond)[..., None]
        return Policy.from_cond(sp, cond)

    def _prefix_batch(self):
        """Every prompt with every depth-``(H−1)`` prefix: prompts (P·V**(H−1),), prefixes
        (P·V**(H−1), H−1), prompt-major."""
        sp = self.space
        n_pre = sp.V ** (sp.H - 1)
        prefixes = tokens_of(TreeSpace(1, sp.V, sp.H - 1), np.arange(n_pre), self.device) if sp.H > 1 else \
            torch.empty((1, 0), dtype=torch.long, device=self.device)
        return torch.arange(sp.P, device=self.device).repeat_interleave(n_pre), prefixes.repeat(sp.P, 1)

    def logp_table(self, max_sequences: int = MAX_ENUMERATION) -> torch.Tensor:
        """``log π_θ(y|x)`` for every prompt and completion, (P, T) float64 on the device,
        **differentiable** in ``θ``: one batched forward pass over the ``P·V**(H−1)``
        depth-``(H−1)`` prefixes (as :meth:`exact`, whose distribution it equals up to
        float64 rounding), node conditionals ``log_softmax(log π_ref + g_θ)`` in float64, and
        ``log π_θ(y|x) = Σ_h log π_θ(a_{h+1} | x, a_1..a_h)`` gathered along each path. This is
        what the exact-gradient trainer (:func:`genver.neural.train.train_rl_exact`)
        differentiates; one pass holds the activations of all ``P·V**(H−1)`` sequences.

        Parameters
        ----------
        max_sequences : int
            Refuse (ValueError) when ``P·V**(H−1)`` exceeds it.

        Returns
        -------
        torch.Tensor, shape (P, T)
            ``log π_θ(y|x)``, float64, differentiable.
        """
        sp = self.space
        n_seq = sp.P * sp.V ** (sp.H - 1)
        if n_seq > max_sequences:
            raise ValueError(f"logp_table needs P·V**(H-1) = {n_seq} forward sequences, more than max_sequences = "
                             f"{max_sequences}; this task is beyond enumeration (use train_rl's REINFORCE-LOO)")
        if self._paths is None:
            pre, pos = _node_reads(sp)
            nodes, toks = _path_nodes(sp)
            dev = self.device
            self._paths = (torch.as_tensor(pre, device=dev), torch.as_tensor(pos, device=dev),
                           torch.as_tensor(nodes, device=dev), torch.as_tensor(toks, device=dev),
                           torch.as_tensor(np.array(self.ref.cond), dtype=torch.float64, device=dev))
        pre, pos, nodes, toks, ref_cond = self._paths
        flat_x, flat_p = self._prefix_batch()
        g = self._forward(flat_x, flat_p).view(sp.P, -1, sp.H, sp.V)  # (P, V**(H−1), H, V)
        cond = F.log_softmax(ref_cond + g[:, pre, pos, :].double(), dim=-1)  # (P, n_internal, V)
        return cond[:, nodes, toks].sum(dim=1)  # (P, H, T) summed over depth → (P, T)


class PositionalNeuralPolicy(NeuralPolicy):
    """``π_θ = softmax(log q_{x,h} + g_θ)`` over a *position-wise* reference
    ``π_ref(a | x, a_1..a_h) = q_{x,h+1}(a)`` given as log-probabilities (P, H, V): no table over
    the tree, so tasks of any size (``V**H`` beyond every enumeration limit) can be trained and
    sampled; :meth:`exact` and :meth:`logp_table` are refused (use :func:`monte_carlo_estimate`)."""

    def __init__(self, model: TinyTransformer, ref_logq):
        c = model.cfg
        q = np.asarray(ref_logq, dtype=np.float64)
        if q.shape != (c.P, c.H, c.V):
            raise ValueError(f"ref_logq must have shape (P, H, V) = {(c.P, c.H, c.V)}, got {q.shape}")
        if not np.allclose(np.exp(q).sum(axis=2), 1.0, atol=1e-9):
            raise ValueError("ref_logq: each q_{x,h} must be a probability vector (log-probabilities)")
        self.model = model
        self._forward = model
        # no tabular π_ref on this class (that is its point): the methods that read it, exact and
        # logp_table, are refused below, an invariant the type of NeuralPolicy.ref cannot state
        self.ref = None  # type: ignore[assignment]
        self.space = TreeSpace(c.P, c.V, c.H, max_entries=2**62)  # index arithmetic only, never a (P, T) table
        dev = next(model.parameters()).device
        self.ref_q = torch.as_tensor(q, dtype=torch.float32, device=dev)  # (P, H, V)
        self._paths = None

    @property
    def device(self) -> torch.device:
        """The device of the network and of the position-wise reference."""
        return self.ref_q.device

    def token_logits(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """``log q_{x,h+1} + g_θ`` at the ``H`` prefixes of complete ``y``.

        Parameters
        ----------
        x : torch.Tensor, shape (B,)
            Prompt indices.
        y : torch.Tensor, shape (B, H)
            Complete completions' tokens.

        Returns
        -------
        torch.Tensor, shape (B, H, V)
            Unnormalised log-probabilities of the next token at each prefix.
        """
        return self.ref_q[x] + self._forward(x, y[:, :-1]).float()

    def ref_seq_logp(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """``log π_ref(y|x) = Σ_h log q_{x,h+1}(a_{h+1})``.

        Parameters
        ----------
        x : torch.Tensor, shape (B,)
            Prompt indices.
        y : torch.Tensor, shape (B, H)
            Complete completions' tokens.

        Returns
        -------
        torch.Tensor, shape (B,)
            The reference log-probabilities.
        """
        return self.ref_q[x].gather(2, y[:, :, None]).squeeze(2).sum(dim=1)

    @torch.no_grad()
    def sample(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """One completion per prompt in ``x``, token by token.

        Parameters
        ----------
        x : torch.Tensor, shape (B,)
            Prompt indices.
        generator : torch.Generator or None
            Generator of the draws (on the policy's device).

        Returns
        -------
        torch.Tensor, shape (B, H)
            Sampled tokens.
        """
        y = torch.empty((x.shape[0], 0), dtype=torch.long, device=x.device)
        for h in range(self.space.H):
            logits = self._forward(x, y)[:, -1, :].float() + self.ref_q[x, h]
            y = torch.cat([y, torch.multinomial(F.softmax(logits, dim=-1), 1, generator=generator)], dim=1)
        return y

    def exact(self, *a, **k):
        """Refused (ValueError): no exact evaluation beyond enumeration (also :meth:`logp_table`).

        Parameters
        ----------
        *a, **k
            Ignored.
        """
        raise ValueError("a positional-reference policy is for tasks beyond enumeration: no exact evaluation "
                         "(use genver.neural.monte_carlo_estimate)")

    logp_table = exact


def monte_carlo_estimate(policy: NeuralPolicy, reward, n_samples: int, *, prompt_weights=None, seed: int = 0,
                         batch_size: int = 4096, beta: float | None = None) -> dict:
    """Sampled estimates, for tasks too large to enumerate, of ``E_x E_{π_θ} r`` and
    ``E_x KL(π_θ ‖ π_ref) = E[log π_θ(y|x) − log π_ref(y|x)]``: ``n_samples`` draws of
    ``x ~ ρ``, ``y ~ π_θ(·|x)``; each value is ``(mean, standard error = sd/√n)``.
    ``reward(x, y)`` maps a prompt tensor (B,) and tokens (B, H) to rewards (B,). With ``beta``
    also ``J_β = E[r − β(log π_θ − log π_ref)]``, its standard error from the same draws (not
    from the other two: they are correlated). The output is marked
    ``"estimate": "monte_carlo"``: these are not exact values.

    Parameters
    ----------
    policy : NeuralPolicy
        The policy ``π_θ`` (sampled, never enumerated).
    reward : callable
        ``reward(x, y) -> (B,)`` on prompt tensors (B,) and tokens (B, H).
    n_samples : int
        Draws (``>= 2``).
    prompt_weights : array_like of float, shape (P,), or None
        The prompt distribution ρ (default uniform).
    seed : int
        Seed of the prompt draws (CPU) and, plus one, of the samples (device).
    batch_size : int
        Draws per batch.
    beta : float or None
        With a value, also estimate ``J_β``.

    Returns
    -------
    dict
        ``"estimate"``, ``"n_samples"`` and, per quantity (``expected_reward``,
        ``kl_to_reference``, ``J_beta``), a ``(mean, standard error)`` pair.
    """
    if isinstance(n_samples, bool) or not isinstance(n_samples, int) or n_samples < 2:
        raise ValueError(f"n_samples must be an integer >= 2, got {n_samples!r}")
    sp = policy.space
    rho = torch.full((sp.P,), 1.0 / sp.P) if prompt_weights is None else torch.as_tensor(prompt_weights,
                                                                                         dtype=torch.float64)
    g_cpu = torch.Generator().manual_seed(seed)
    g_dev = torch.Generator(device=policy.device).manual_seed(seed + 1)
    rs, kls = [], []
    with torch.no_grad():
        for s in range(0, n_samples, batch_size):
            b = min(batch_size, n_samples - s)
            x = torch.multinomial(rho, b, replacement=True, generator=g_cpu).to(policy.device)
            y = policy.sample(x, generator=g_dev)
            rs.append(torch.as_tensor(reward(x, y), dtype=torch.float64).cpu())
            kls.append((policy.seq_logp(x, y) - policy.ref_seq_logp(x, y)).double().cpu())
    out = {"estimate": "monte_carlo", "n_samples": n_samples}
    r, k = torch.cat(rs), torch.cat(kls)
    values = [("expected_reward", r), ("kl_to_reference", k)]
    if beta is not None:
        values.append(("J_beta", r - float(beta) * k))
    for name, v in values:
        out[name] = (float(v.mean()), float(v.std(unbiased=True)) / math.sqrt(n_samples))
    return out
