r"""Prefix-tree spaces: prompts × ``V**H`` completions.

A *world* has prompts ``x ∈ {0..P-1}``, a vocabulary of ``V`` tokens and a horizon ``H``.
A completion ``y = (a_1..a_H)`` is one of ``T = V**H`` token sequences; a trajectory is
``ξ = (x, y)``. Transitions are deterministic (append the token), so the token-level MDP
is a prefix tree whose depth-``h`` nodes are the ``V**h`` prefixes ``s_h = (a_1..a_h)``.

Indexing (used everywhere in genver)
------------------------------------
Completions are numbered lexicographically with the **first token most significant**::

    idx(y) = Σ_{h=1..H} a_h · V**(H-h)

so the ``V**(H-h)`` completions that share a depth-``h`` prefix form one contiguous block,
and the prefix of ``y`` at depth ``h`` has index ``idx(y) // V**(H-h)``. Per-prompt arrays
over completions therefore have shape ``(P, T)`` and reshape to ``(P, V**h, V**(H-h))`` to
group completions by prefix.

Internal nodes (prefixes of length ``0..H-1``) are stored in one flat array per prompt,
depth by depth: the node ``s`` of depth ``h`` with prefix index ``j`` has flat index
``offset(h) + j`` where ``offset(h) = (V**h − 1)/(V − 1)``; there are
``n_internal = (T − 1)/(V − 1)`` of them.

All sizes are computed with Python integers and checked before any array is allocated:
``V**H ≥ 2**62`` (where numba's int64 arithmetic would silently overflow) and ``P·T`` above
``max_entries`` (the memory budget for one ``(P, T)`` float64 array) raise ``ValueError``.
"""
from __future__ import annotations

import numpy as np

from ._validation import check_positive_int

__all__ = ["TreeSpace", "DEFAULT_MAX_ENTRIES", "INT64_LIMIT"]

#: Largest number of entries of one (P, T) array: 2**27 float64 = 1 GiB.
DEFAULT_MAX_ENTRIES = 2**27
#: Completion counts at or above this are refused (int64 headroom inside kernels).
INT64_LIMIT = 2**62


class TreeSpace:
    """The prefix tree of ``P`` prompts × ``V**H`` completions.

    Parameters
    ----------
    P, V, H : int
        Number of prompts (``P ≥ 1``), vocabulary size (``V ≥ 2``) and horizon (``H ≥ 1``).
    max_entries : int
        Refuse spaces whose ``P·V**H`` exceeds this (memory guard for one ``(P, T)`` array).

    Examples
    --------
    Two prompts, binary tokens, horizon 3: ``T = 8`` completions, ``n_internal = 7`` internal
    nodes per prompt; the first token is the most significant digit of a completion's index.

    >>> sp = TreeSpace(P=2, V=2, H=3)
    >>> sp
    TreeSpace(P=2, V=2, H=3, T=8)
    >>> sp.shape, sp.n_internal
    ((2, 8), 7)
    >>> int(sp.encode([1, 0, 1]))
    5
    >>> sp.decode(5).tolist()
    [1, 0, 1]
    >>> sp.block(1), sp.offset(2), int(sp.prefix_index(5, 1))
    (4, 3, 1)
    """

    def __init__(self, P: int, V: int, H: int, max_entries: int = DEFAULT_MAX_ENTRIES):
        self.P = check_positive_int(P, "P", 1)
        self.V = check_positive_int(V, "V", 2)
        self.H = check_positive_int(H, "H", 1)
        max_entries = check_positive_int(max_entries, "max_entries", 1)
        T = self.V**self.H  # Python int: exact, never wraps
        if T >= INT64_LIMIT:
            raise ValueError(
                f"V**H = {self.V}**{self.H} = {T} completions per prompt is too large "
                f"(limit {INT64_LIMIT} = 2**62, int64 overflow); reduce V or H"
            )
        if self.P * T > max_entries:
            raise ValueError(
                f"P*V**H = {self.P}*{self.V}**{self.H} = {self.P * T} entries exceeds "
                f"max_entries = {max_entries} ({max_entries * 8 / 2**30:.2f} GiB per float64 "
                f"array); reduce P, V or H, or raise max_entries"
            )
        self.T = T
        self.n_internal = (T - 1) // (self.V - 1)

    # -- sizes -------------------------------------------------------------------------
    @property
    def shape(self) -> tuple[int, int]:
        """Shape ``(P, T)`` of per-completion arrays."""
        return (self.P, self.T)

    def n_nodes(self, h: int) -> int:
        """Number of depth-``h`` prefixes, ``V**h`` (``0 ≤ h ≤ H``).

        Parameters
        ----------
        h : int
            The depth, ``0 ≤ h ≤ H``.

        Returns
        -------
        int
            ``V**h``.
        """
        self._check_depth(h, self.H)
        return self.V**h

    def block(self, h: int) -> int:
        """Completions sharing one depth-``h`` prefix, ``V**(H-h)``.

        Parameters
        ----------
        h : int
            The depth, ``0 ≤ h ≤ H``.

        Returns
        -------
        int
            ``V**(H-h)``.
        """
        self._check_depth(h, self.H)
        return self.V ** (self.H - h)

    def offset(self, h: int) -> int:
        """Flat index of the first depth-``h`` internal node, ``(V**h − 1)/(V − 1)``.

        Parameters
        ----------
        h : int
            The depth, ``0 ≤ h ≤ H − 1``.

        Returns
        -------
        int
            ``(V**h − 1)/(V − 1)``.
        """
        self._check_depth(h, self.H - 1)
        return (self.V**h - 1) // (self.V - 1)

    def _check_depth(self, h, hmax):
        h = check_positive_int(h, "h", 0)
        if h > hmax:
            raise ValueError(f"h must be in [0, {hmax}], got {h}")

    # -- encode / decode ---------------------------------------------------------------
    def encode(self, tokens) -> np.ndarray:
        """Completion index of token sequences.

        Parameters
        ----------
        tokens : array_like of int
            Token sequences, shape ``(..., H)``, tokens in ``[0, V)``.

        Returns
        -------
        np.ndarray
            ``idx(y) = Σ_h a_h V**(H-h)`` (int64), shape ``(...)``.
        """
        a = np.asarray(tokens)
        if a.ndim == 0 or a.shape[-1] != self.H:
            raise ValueError(f"tokens must have last axis of length H={self.H}, got shape {a.shape}")
        if not np.issubdtype(a.dtype, np.integer):
            raise ValueError(f"tokens must be integers, got dtype {a.dtype}")
        if a.size and (a.min() < 0 or a.max() >= self.V):
            raise ValueError(f"tokens must lie in [0, V-1] = [0, {self.V - 1}]")
        weights = self.V ** np.arange(self.H - 1, -1, -1, dtype=np.int64)
        return a.astype(np.int64) @ weights

    def decode(self, idx) -> np.ndarray:
        """Token sequences of completion indices.

        Parameters
        ----------
        idx : array_like of int
            Completion indices in ``[0, T)``, any shape ``(...)``.

        Returns
        -------
        np.ndarray
            The tokens ``(a_1..a_H)`` (int64), shape ``(..., H)``.
        """
        i = np.asarray(idx)
        if not np.issubdtype(i.dtype, np.integer):
            raise ValueError(f"idx must be integers, got dtype {i.dtype}")
        if i.size and (i.min() < 0 or i.max() >= self.T):
            raise ValueError(f"idx must lie in [0, T-1] = [0, {self.T - 1}]")
        i = i.astype(np.int64)
        powers = self.V ** np.arange(self.H - 1, -1, -1, dtype=np.int64)
        return (i[..., None] // powers) % self.V

    def prefix_index(self, idx, h: int) -> np.ndarray:
        """Index (among the ``V**h`` depth-``h`` prefixes) of the prefix of each completion.

        Parameters
        ----------
        idx : array_like of int
            Completion indices in ``[0, T)``.
        h : int
            The prefix depth, ``0 ≤ h ≤ H``.

        Returns
        -------
        np.ndarray
            ``idx // V**(H-h)`` (int64), the shape of ``idx``.
        """
        return np.asarray(idx, dtype=np.int64) // self.block(h)

    def all_tokens(self) -> np.ndarray:
        """All completions as a ``(T, H)`` token array, in index order.

        Returns
        -------
        np.ndarray
            ``decode(arange(T))``, shape ``(T, H)``.
        """
        return self.decode(np.arange(self.T, dtype=np.int64))

    # -- misc --------------------------------------------------------------------------
    def __eq__(self, other):
        return isinstance(other, TreeSpace) and (self.P, self.V, self.H) == (other.P, other.V, other.H)

    def __hash__(self):
        return hash((self.P, self.V, self.H))

    def __repr__(self):
        return f"TreeSpace(P={self.P}, V={self.V}, H={self.H}, T={self.T})"

    def check_array(self, name: str, arr, *, finite: bool = True, allow_neg_inf: bool = False) -> np.ndarray:
        """Validate a per-completion array: shape ``(P, T)``, float64, no NaN (and no ±inf
        unless allowed).

        Parameters
        ----------
        name : str
            The argument's name, used in the error messages.
        arr : array_like
            The array to check (real: float or integer dtype).
        finite : bool
            Refuse infinities (``False``: allow ``±inf``).
        allow_neg_inf : bool
            With ``finite``, still allow ``-inf`` (log-probabilities of zero mass).

        Returns
        -------
        np.ndarray
            A C-contiguous float64 copy-if-needed, shape ``(P, T)``.
        """
        a = np.asarray(arr)
        if a.shape != self.shape:
            raise ValueError(f"{name} must have shape (P, T) = {self.shape}, got {a.shape}")
        if not (np.issubdtype(a.dtype, np.floating) or np.issubdtype(a.dtype, np.integer)):
            raise ValueError(f"{name} must be a real array, got dtype {a.dtype}")
        a = np.ascontiguousarray(a, dtype=np.float64)
        if np.isnan(a).any():
            raise ValueError(f"{name} contains NaN")
        if finite:
            if allow_neg_inf:
                if np.isposinf(a).any():
                    raise ValueError(f"{name} contains +inf")
            elif not np.isfinite(a).all():
                raise ValueError(f"{name} contains inf")
        return a
