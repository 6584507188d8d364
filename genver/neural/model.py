r"""A small decoder-only transformer over the prefix-tree tasks.

Input sequence for a trajectory ``ξ = (x, y)``, ``y = (a_1..a_H)``: the prompt token ``x`` then
the completion tokens, ``[x, a_1, …, a_H]`` (length ``H + 1``). Prompt and completion tokens
have separate embedding rows (``P + V`` in all), so every tabular ``TreeSpace(P, V, H)`` is
also a neural task. Position ``t`` (``0 ≤ t < H``) reads ``(x, a_1..a_t)`` — the depth-``t``
prefix — and predicts ``a_{t+1}``.

The network has two heads on the final hidden states ``h_t ∈ ℝ^d``:

* ``lm_head``: ``ℝ^d → ℝ^V``, next-token logits ``g_θ(x, s_t)``. A policy adds them to the
  reference's token log-probabilities (:mod:`genver.neural.policy`):
  ``π_θ(a | x, s) = softmax(log π_ref(· | x, s) + g_θ(x, s))_a``. The head is zero-initialised,
  so the initial weights *are* ``π_ref`` — exactly, for any tabular reference.
* ``value_head``: ``ℝ^d → ℝ``, a scalar read at the last position ``t = H``: the global reward
  model ``r_θ(x, y)`` on the full sequence.

Blocks are pre-LayerNorm: ``u ← u + Attn(LN(u))``, ``u ← u + MLP(LN(u))`` with causal
multi-head self-attention (``F.scaled_dot_product_attention(is_causal=True)``: position ``t``
attends to ``0..t`` only) and a GELU MLP of width ``mlp_ratio·d``.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = ["TransformerConfig", "TinyTransformer"]


@dataclass(frozen=True)
class TransformerConfig:
    """Architecture of :class:`TinyTransformer` (``P``, ``V``, ``H`` come from the task)."""

    P: int
    V: int
    H: int
    d_model: int = 64
    n_layers: int = 2
    n_heads: int = 4
    mlp_ratio: int = 4
    dropout: float = 0.0

    def __post_init__(self):
        for k in ("P", "V", "H", "d_model", "n_layers", "n_heads", "mlp_ratio"):
            v = getattr(self, k)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"TransformerConfig.{k} must be a positive integer, got {v!r}")
        if self.d_model % self.n_heads:
            raise ValueError(f"TransformerConfig: d_model = {self.d_model} must be divisible by "
                             f"n_heads = {self.n_heads}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"TransformerConfig.dropout must lie in [0, 1), got {self.dropout!r}")

    @property
    def seq_len(self) -> int:
        """Positions of a full sequence ``[x, a_1, …, a_H]``: ``H + 1``."""
        return self.H + 1

    def as_dict(self) -> dict:
        """The configuration as a plain dict.

        Returns
        -------
        dict
            Field name -> value (``dataclasses.asdict``).
        """
        return asdict(self)


class _Block(nn.Module):
    def __init__(self, cfg: TransformerConfig):
        super().__init__()
        d = cfg.d_model
        self.n_heads = cfg.n_heads
        self.ln1 = nn.LayerNorm(d)
        self.qkv = nn.Linear(d, 3 * d)
        self.proj = nn.Linear(d, d)
        self.ln2 = nn.LayerNorm(d)
        self.mlp = nn.Sequential(nn.Linear(d, cfg.mlp_ratio * d), nn.GELU(), nn.Linear(cfg.mlp_ratio * d, d))
        self.dropout = cfg.dropout

    def forward(self, u: torch.Tensor) -> torch.Tensor:  # u: (B, L, d)
        B, L, d = u.shape
        q, k, v = self.qkv(self.ln1(u)).split(d, dim=2)  # each (B, L, d)
        heads = lambda t: t.view(B, L, self.n_heads, d // self.n_heads).transpose(1, 2)  # noqa: E731 (B, nh, L, dh)
        a = F.scaled_dot_product_attention(heads(q), heads(k), heads(v), is_causal=True,
                                           dropout_p=self.dropout if self.training else 0.0)  # (B, nh, L, dh)
        u = u + self.proj(a.transpose(1, 2).reshape(B, L, d))
        return u + self.mlp(self.ln2(u))


class TinyTransformer(nn.Module):
    """Decoder-only transformer with a next-token head and a sequence-value head (module doc)."""

    def __init__(self, cfg: TransformerConfig):
        super().__init__()
        self.cfg = cfg
        d = cfg.d_model
        self.tok = nn.Embedding(cfg.P + cfg.V, d)  # rows 0..P-1: prompts; P..P+V-1: tokens
        self.pos = nn.Embedding(cfg.seq_len, d)
        self.blocks = nn.ModuleList(_Block(cfg) for _ in range(cfg.n_layers))
        self.ln_f = nn.LayerNorm(d)
        self.lm_head = nn.Linear(d, cfg.V)
        self.value_head = nn.Linear(d, 1)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Embedding):
                nn.init.normal_(m.weight, std=0.02)
        nn.init.zeros_(self.lm_head.weight)  # g_θ ≡ 0 at initialisation: π_θ0 = π_ref exactly

    def n_params(self) -> int:
        """Number of trainable scalars.

        Returns
        -------
        int
            The total ``numel`` of the parameters.
        """
        return sum(p.numel() for p in self.parameters())

    def hidden(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Final hidden states for prompts ``x`` (B,) and completion tokens ``y`` (B, L−1),
        ``0 ≤ L−1 ≤ H``: shape (B, L, d).

        Parameters
        ----------
        x : torch.Tensor, shape (B,)
            Prompt indices.
        y : torch.Tensor, shape (B, L−1)
            Completion tokens (a prefix or a complete completion).

        Returns
        -------
        torch.Tensor, shape (B, L, d)
            The hidden states after the final layer norm.
        """
        ids = torch.cat([x[:, None], y + self.cfg.P], dim=1)  # (B, L)
        L = ids.shape[1]
        u = self.tok(ids) + self.pos.weight[:L][None]  # (B, L, d)
        for blk in self.blocks:
            u = blk(u)
        return self.ln_f(u)

    def forward(self, x: torch.Tensor, prefix: torch.Tensor) -> torch.Tensor:
        """Next-token logits ``g_θ(x, s_t)`` after each position of ``[x, prefix]``:
        (B, t+1, V) for ``prefix`` (B, t), ``t ≤ H − 1``. For a complete ``y`` (B, H) pass
        ``y[:, :-1]``: row ``t`` then scores ``a_{t+1}``.

        Parameters
        ----------
        x : torch.Tensor, shape (B,)
            Prompt indices.
        prefix : torch.Tensor, shape (B, t)
            Completion tokens so far.

        Returns
        -------
        torch.Tensor, shape (B, t+1, V)
            The logits ``g_θ``.
        """
        return self.lm_head(self.hidden(x, prefix))

    def value(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Scalar head at the last position: ``r_θ(x, y)``, shape (B,), for complete ``y`` (B, H).

        Parameters
        ----------
        x : torch.Tensor, shape (B,)
            Prompt indices.
        y : torch.Tensor, shape (B, H)
            Complete completions' tokens.

        Returns
        -------
        torch.Tensor, shape (B,)
            The values ``r_θ(x, y)``.
        """
        return self.value_head(self.hidden(x, y)[:, -1, :]).squeeze(-1)
