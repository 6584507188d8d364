r"""Reward models for the neural routes; each maps ``(x, y)`` to a scalar ``r̂(x, y)``.

======================  ==========================================================================
:class:`GlobalReward`   the same transformer backbone with a scalar head read after the last
                        token: ``r_θ(x, y) = w·h_H(x, y) + b`` (a sequence-level verifier with as
                        many parameters as the policy)
:class:`LinearReward`   ``r_w(x, y) = w·φ(x, y)`` on fixed trajectory features ``φ`` (P, T, d) —
                        the instance's verifier class ``R`` as a trainable module
:class:`LocalReward`    ``r(x, y) = β (log π(y|x) − log π_ref(y|x))`` of a (DPO-trained) neural
                        policy: the policy's own implicit reward (frozen)
======================  ==========================================================================

Every model is an ``nn.Module`` whose ``forward(x, y)`` takes prompts (B,) and complete
token sequences (B, H) and returns (B,). :func:`reward_table` enumerates ``r̂`` over every
``(x, y)`` into a float64 (P, T) array, so reward metrics (held-out Bradley–Terry
log-likelihood, best-of-N) are exact.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn

from ..spaces import TreeSpace
from .model import TinyTransformer, TransformerConfig
from .policy import NeuralPolicy, completion_index, tokens_of

__all__ = ["GlobalReward", "LinearReward", "FeatureReward", "LocalReward", "reward_table"]


class GlobalReward(nn.Module):
    """Transformer backbone + scalar head on the full sequence."""

    def __init__(self, cfg: TransformerConfig):
        super().__init__()
        self.net = TinyTransformer(cfg)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """``r̂(x, y)`` of prompts and complete token sequences (the scalar head).

        Parameters
        ----------
        x : torch.Tensor, shape (B,)
            Prompt indices.
        y : torch.Tensor, shape (B, H)
            Complete completions' tokens.

        Returns
        -------
        torch.Tensor, shape (B,)
            The rewards.
        """
        return self.net.value(x, y).float()


class LinearReward(nn.Module):
    """``w·φ(x, y)``, ``φ`` a fixed (P, T, d) feature table, ``w`` initialised at 0."""

    def __init__(self, space: TreeSpace, phi: np.ndarray):
        super().__init__()
        phi = np.asarray(phi, dtype=np.float64)
        if phi.ndim != 3 or phi.shape[:2] != space.shape:
            raise ValueError(f"phi must have shape (P, T, d) with (P, T) = {space.shape}, got {phi.shape}")
        self.space = space
        self.phi: torch.Tensor
        self.register_buffer("phi", torch.tensor(phi, dtype=torch.float32))
        self.w = nn.Parameter(torch.zeros(phi.shape[2]))

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """``r̂(x, y)`` of prompts and complete token sequences (``w·φ(x, y)`` read from the table).

        Parameters
        ----------
        x : torch.Tensor, shape (B,)
            Prompt indices.
        y : torch.Tensor, shape (B, H)
            Complete completions' tokens.

        Returns
        -------
        torch.Tensor, shape (B,)
            The rewards.
        """
        return self.phi[x, completion_index(self.space, y)] @ self.w


class FeatureReward(nn.Module):
    """``w·φ(x, y)`` with ``φ`` computed from the tokens by ``world.features(y, torch)`` (no
    table: tasks beyond enumeration, :mod:`genver.neural.long`), ``w`` initialised at 0."""

    def __init__(self, world):
        super().__init__()
        self.world = world
        self.w = nn.Parameter(torch.zeros(world.w_star.size))

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """``r̂(x, y)`` of prompts and complete token sequences (``w·φ(y)``, features from the tokens).

        Parameters
        ----------
        x : torch.Tensor, shape (B,)
            Prompt indices.
        y : torch.Tensor, shape (B, H)
            Complete completions' tokens.

        Returns
        -------
        torch.Tensor, shape (B,)
            The rewards.
        """
        return self.world.features(y, torch) @ self.w


class LocalReward(nn.Module):
    """``β log π/π_ref`` of a neural policy (its parameters are not trained through this)."""

    def __init__(self, policy: NeuralPolicy, beta: float):
        super().__init__()
        self.policy = policy
        self.beta = float(beta)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """``r̂(x, y)`` of prompts and complete token sequences (``β log π_θ/π_ref``, no gradient).

        Parameters
        ----------
        x : torch.Tensor, shape (B,)
            Prompt indices.
        y : torch.Tensor, shape (B, H)
            Complete completions' tokens.

        Returns
        -------
        torch.Tensor, shape (B,)
            The rewards.
        """
        with torch.no_grad():
            return self.beta * (self.policy.seq_logp(x, y) - self.policy.ref_seq_logp(x, y))


@torch.no_grad()
def reward_table(model: nn.Module, space: TreeSpace, device, batch_size: int = 8192) -> np.ndarray:
    """``r̂(x, y)`` for every prompt and completion: float64 (P, T), by enumeration.

    Parameters
    ----------
    model : torch.nn.Module
        The reward model (``model(x, tokens) -> (B,)``; evaluated in eval mode, its mode restored).
    space : TreeSpace
        The prefix tree.
    device : torch.device or str
        Where the model lives.
    batch_size : int
        Sequences per forward pass.

    Returns
    -------
    numpy.ndarray, shape (P, T)
        The reward table ``r̂``, float64.
    """
    was = model.training
    model.eval()
    out = np.empty(space.P * space.T)
    idx = np.arange(space.P * space.T, dtype=np.int64)
    for s in range(0, idx.size, batch_size):
        i = idx[s : s + batch_size]
        x = torch.as_tensor(i // space.T, device=device)
        out[s : s + batch_size] = model(x, tokens_of(space, i % space.T, device)).double().cpu().numpy()
    model.train(was)
    return out.reshape(space.shape)
