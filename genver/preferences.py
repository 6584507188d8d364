r"""Bradley–Terry preference data and its sufficient statistics.

Pairs are drawn ``x ~ ρ``, ``y1, y2 ~ μ(·|x)`` i.i.d. from a sampling policy ``μ`` (the
reference unless set), and labelled with the Bradley–Terry model of the true reward ``r*``

    P(y1 ≻ y2 | x) = σ((r*(x,y1) − r*(x,y2)) / τ)

with label temperature ``τ`` (1 by default). ``deterministic=True`` gives noise-free labels
(``y1 ≻ y2`` iff ``r*(y1) > r*(y2)``, a fair coin on ties). Random numbers are drawn in a fixed
order from one ``numpy.random.Generator`` — prompts, first completions, second completions,
label uniforms — so the same seed gives the same data, and ``Preferences.head(n)`` of one
stream gives *nested* data sets for a grid of sample sizes.

Every estimator only needs the sufficient statistics: the multiset of ordered triples
``(x, y⁺, y⁻)``, stored as unique triples with counts (:class:`PairCounts`), so estimator cost
stops growing with ``N`` once all distinct pairs have been seen. A grid of nested sizes is
counted incrementally (:class:`NestedCounts`): each new segment of the stream is sorted once
and merged into the running unique triples, so counting costs ``O(n log n)`` for the drawing
and one linear merge (``O(distinct pairs)``) per size.

Memory at scale: one pair costs 24 bytes in the stream (three int64); drawing holds the stream,
one float64 array of uniforms at a time and blocks of :data:`_SEARCH_BLOCK` pairs for the
search and the labels (``benchmarks/bench_data_scale.py`` measures time and peak memory up to
``n = 10⁷`` at ``T = 2²⁰``).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import _kernels
from ._validation import as_generator, check_beta, check_positive_int, check_prompt_weights
from .policy import Policy
from .spaces import TreeSpace

__all__ = ["Preferences", "PairCounts", "NestedCounts", "merge_counts", "sample_preferences", "SELF_PAIRS",
           "pair_keys", "sample_completions"]

#: what :meth:`Preferences.from_array` may do with pairs ``y⁺ = y⁻`` (``genver fit --self-pairs``)
SELF_PAIRS = ("note", "drop", "error", "keep")


@dataclass(frozen=True)
class PairCounts:
    """Unique ordered triples ``(x, y⁺, y⁻)`` (sorted) with multiplicities ``count``."""

    space: TreeSpace
    x: np.ndarray
    y_pos: np.ndarray
    y_neg: np.ndarray
    count: np.ndarray  # float64 multiplicities

    @property
    def n_pairs(self) -> int:
        """Total number of pairs ``N`` (sum of counts)."""
        return int(self.count.sum())

    @property
    def pos_flat(self) -> np.ndarray:
        """Flat ``(x, y⁺)`` indices ``x·T + y⁺`` into a raveled ``(P, T)`` array."""
        return self.x * self.space.T + self.y_pos

    @property
    def neg_flat(self) -> np.ndarray:
        """Flat ``(x, y⁻)`` indices ``x·T + y⁻`` into a raveled ``(P, T)`` array."""
        return self.x * self.space.T + self.y_neg


@dataclass(frozen=True)
class Preferences:
    """``N`` labelled pairs: prompt ``x``, preferred ``y_pos``, dispreferred ``y_neg``."""

    space: TreeSpace
    x: np.ndarray
    y_pos: np.ndarray
    y_neg: np.ndarray

    def __len__(self) -> int:
        return int(self.x.shape[0])

    @classmethod
    def from_array(cls, space: TreeSpace, pairs, name: str = "pairs", self_pairs: str = "drop") -> Preferences:
        """From an ``(N, 3)`` integer array of (prompt, preferred, dispreferred): pairs a user
        supplies.

        ``self_pairs``: what to do with rows ``y⁺ = y⁻``. Bradley–Terry gives such a "pair"
        probability ``σ(0) = ½`` under every reward, so it is no preference and changes no fit
        of any estimator: each adds the same constant to every member's objective (``log ½`` to
        the likelihoods, ``(1/(2τ))²`` to IPO's loss) and nothing to a gradient. Pairs drawn as
        ``y1, y2 ~ μ`` i.i.d. contain them routinely (the samplers' streams do, and the
        finite-class paths count them on purpose, see :mod:`genver.estimators.mle`); in other
        data they may be a bug upstream. ``"drop"`` (default) removes them and says so with a
        ``UserWarning`` that counts them (``genver fit`` prints it as a note); ``"note"`` keeps
        them, with the warning (the objective is then the one of the pairs as given);
        ``"error"`` refuses them (``ValueError`` naming the first row); ``"keep"`` keeps them
        silently (for sampled streams).

        Parameters
        ----------
        space : TreeSpace
            The tree the pairs live on (prompts in ``[0, P)``, completions in ``[0, T)``).
        pairs : array_like of int
            Rows ``(x, y⁺, y⁻)``, shape ``(N, 3)``.
        name : str
            The argument's name, used in the error messages.
        self_pairs : {"drop", "note", "error", "keep"}
            What to do with rows ``y⁺ = y⁻`` (above; :data:`SELF_PAIRS`).

        Returns
        -------
        Preferences
            The pairs, in the given order (copies of the columns).
        """
        if self_pairs not in SELF_PAIRS:
            raise ValueError(f"self_pairs must be one of {', '.join(SELF_PAIRS)}, got {self_pairs!r}")
        a = np.asarray(pairs)
        if a.ndim != 2 or a.shape[1] != 3:
            raise ValueError(f"{name} must have shape (N, 3), got {a.shape}")
        if not np.issubdtype(a.dtype, np.integer):
            raise ValueError(f"{name} must be an integer array, got dtype {a.dtype}")
        a = a.astype(np.int64)
        if a.shape[0] and (a[:, 0].min() < 0 or a[:, 0].max() >= space.P):
            raise ValueError(f"{name}[:, 0] (prompt) must lie in [0, {space.P - 1}]")
        if a.shape[0] and (a[:, 1:].min() < 0 or a[:, 1:].max() >= space.T):
            raise ValueError(f"{name}[:, 1:] (completions) must lie in [0, {space.T - 1}]")
        same = a[:, 1] == a[:, 2]
        if self_pairs != "keep" and same.any():
            k = int(same.sum())
            first = int(np.flatnonzero(same)[0])
            if self_pairs == "error":
                raise ValueError(f"{name}[{first}] = {a[first].tolist()}: preferred == dispreferred "
                                 f"(and {k - 1} more such rows); a pair needs two different completions")
            import warnings
            what = "dropped" if self_pairs == "drop" else "kept (each adds the same constant to every objective)"
            warnings.warn(f"{name}: {k} of {a.shape[0]} pairs have preferred == dispreferred (first: row {first}), "
                          f"no preference under Bradley–Terry (probability 1/2 whatever the reward; they change no "
                          f"fit): {what}", UserWarning, stacklevel=2)
            if self_pairs == "drop":
                a = a[~same]
        return cls(space, a[:, 0].copy(), a[:, 1].copy(), a[:, 2].copy())

    def as_array(self) -> np.ndarray:
        """The pairs as rows ``(x, y⁺, y⁻)``.

        Returns
        -------
        np.ndarray
            Shape ``(N, 3)``, int64; :meth:`from_array` reads it back.
        """
        return np.stack([self.x, self.y_pos, self.y_neg], axis=1)

    def head(self, n: int) -> Preferences:
        """The first ``n`` pairs of the stream (nested sample sizes).

        Parameters
        ----------
        n : int
            How many pairs, ``0 ≤ n ≤ N``.

        Returns
        -------
        Preferences
            Views of the first ``n`` rows.
        """
        n = check_positive_int(n, "n", minimum=0)
        if n > len(self):
            raise ValueError(f"n = {n} exceeds the {len(self)} pairs available")
        return Preferences(self.space, self.x[:n], self.y_pos[:n], self.y_neg[:n])

    def counts(self) -> PairCounts:
        """Sufficient statistics: unique triples with counts.

        Returns
        -------
        PairCounts
            The sorted unique ``(x, y⁺, y⁻)`` with their multiplicities.
        """
        key = pair_keys(self)
        if key is not None:
            uniq, cnt = np.unique(key, return_counts=True)
            return _decode(self.space, uniq, cnt)
        trip, cnt = np.unique(self.as_array(), axis=0, return_counts=True)
        return PairCounts(self.space, trip[:, 0], trip[:, 1], trip[:, 2], cnt.astype(np.float64))


def pair_keys(data: Preferences, lo: int = 0, hi: int | None = None) -> np.ndarray | None:
    """The ordered keys ``(x·T + y⁺)·T + y⁻`` of pairs ``lo:hi`` (their order is the order of the
    triples), or None when ``P·T² ≥ 2**62`` (the key would overflow int64).

    Parameters
    ----------
    data : Preferences
        The pair stream.
    lo, hi : int or None
        The slice ``lo:hi`` of the stream (``hi = None``: to the end).

    Returns
    -------
    np.ndarray or None
        The keys (int64), shape ``(hi − lo,)``, or None when they would overflow.
    """
    T = data.space.T
    if T * T * data.space.P >= 2**62:
        return None
    sl = slice(lo, hi)
    key = data.x[sl] * T
    key += data.y_pos[sl]
    key *= T
    key += data.y_neg[sl]
    return key


def _decode(space: TreeSpace, uniq: np.ndarray, cnt: np.ndarray) -> PairCounts:
    T = space.T
    rest = uniq // T
    return PairCounts(space, rest // T, rest % T, uniq % T, cnt.astype(np.float64))


class NestedCounts:
    """:class:`PairCounts` of the growing prefixes ``data.head(n)`` of one stream, extended
    incrementally: ``at(n)`` counts only the pairs ``n_prev:n`` since the last call (their
    unique keys: one sort of the new segment) and merges them into the running sorted unique
    keys and counts (one linear merge that also decodes the triples, :func:`merge_counts`), so
    counting every size of a grid costs one sort of the stream in pieces plus one
    ``O(distinct pairs)`` merge per size — not a fresh ``np.unique`` of each prefix. ``at(n)``
    equals ``data.head(n).counts()`` exactly (the same sorted triples, the same integer counts).

    Sizes are meant to be asked for in increasing order; a smaller ``n`` (or a world whose keys
    would overflow, ``P·T² ≥ 2**62``) is counted afresh from the stream. With ``release=True``
    the stream is dropped once its last pair is counted (nothing later can need it). The
    arrays of a returned :class:`PairCounts` are never written again."""

    def __init__(self, data: Preferences, release: bool = False):
        if not isinstance(data, Preferences):
            raise ValueError(f"data must be Preferences (a pair stream), got {type(data).__name__}")
        self.space, self.length, self.release = data.space, len(data), release
        self._data: Preferences | None = data
        self.n = 0
        self._keys = np.empty(0, dtype=np.int64)
        self._last = _decode(self.space, self._keys, np.empty(0, dtype=np.int64))
        self._exact = pair_keys(data, 0, 0) is not None

    def at(self, n: int) -> PairCounts:
        """``data.head(n).counts()``, counted incrementally (see the class docstring).

        Parameters
        ----------
        n : int
            The prefix length, ``0 ≤ n ≤ N``.

        Returns
        -------
        PairCounts
            The sufficient statistics of the first ``n`` pairs (never written again).
        """
        n = check_positive_int(n, "n", minimum=0)
        if n > self.length:
            raise ValueError(f"n = {n} exceeds the {self.length} pairs available")
        if not self._exact or n < self.n:
            if self._data is None:
                raise ValueError(f"n = {n}: the stream was released after its last pair was counted")
            return self._data.head(n).counts()
        if n > self.n:
            # the stream is released only once n == length, so it is still here for any n > self.n
            assert self._data is not None
            keys = pair_keys(self._data, self.n, n)
            assert keys is not None  # self._exact: the keys fit in int64
            new, cnt = np.unique(keys, return_counts=True)
            self._keys, self._last = merge_counts(self.space, self._keys, self._last, new, cnt)
            self.n = n
            if self.release and n == self.length:
                self._data = None
        return self._last


def merge_counts(space: TreeSpace, keys: np.ndarray, counts: PairCounts, new: np.ndarray, new_cnt: np.ndarray):
    """``(keys', counts')``: the sorted unique keys ``keys`` of ``counts`` merged with the sorted
    unique keys ``new`` (integer counts ``new_cnt``), counts summed, the triples decoded — one
    linear walk (``_kernels.merge_pair_counts``), ``O(len(keys) + len(new))``.

    Parameters
    ----------
    space : TreeSpace
        The tree the pairs live on.
    keys : np.ndarray
        Sorted unique int64 keys (:func:`pair_keys`) of ``counts``.
    counts : PairCounts
        The running counts.
    new : np.ndarray
        Sorted unique int64 keys of the new pairs.
    new_cnt : np.ndarray
        Their integer counts, shape ``new.shape``.

    Returns
    -------
    tuple of (np.ndarray, PairCounts)
        The merged sorted unique keys and their :class:`PairCounts`.
    """
    m = keys.size + new.size - _kernels.sorted_common_count(keys, new)
    keys_out, cnt_out = np.empty(m, dtype=np.int64), np.empty(m, dtype=np.float64)
    x, pos, neg = (np.empty(m, dtype=np.int64) for _ in range(3))
    _kernels.merge_pair_counts(keys, counts.count, new, np.ascontiguousarray(new_cnt, dtype=np.int64), int(space.T),
                               keys_out, cnt_out, x, pos, neg)
    return keys_out, PairCounts(space, x, pos, neg, cnt_out)


def _completion_cdf(mu_probs: np.ndarray) -> np.ndarray:
    """Per prompt, the cumulative distribution of ``μ(·|x)`` over completions (rows of the
    ``(P, T)`` array ``F``, ``F[x, y] = Σ_{y' ≤ y} μ(y'|x) / Σ_{y'} μ(y'|x)``)."""
    P, T = mu_probs.shape
    cdf = np.cumsum(mu_probs, axis=1)
    cdf /= cdf[:, -1:]
    # from each row's last positive-mass completion on, the cdf is exactly 1, so a uniform
    # u < 1 never lands on a trailing zero-mass completion through rounding
    last = T - 1 - np.argmax(mu_probs[:, ::-1] > 0, axis=1)
    cdf[np.arange(T)[None, :] >= last[:, None]] = 1.0
    return cdf


def sample_completions(mu_probs: np.ndarray, x: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Inverse-CDF draws ``y ~ μ(·|x)`` from uniforms ``u`` (see :func:`_search_cdf`): completion
    ``y`` for prompt ``x[i]`` is the first with ``CDF_μ(y | x[i]) > u[i]``; the draws
    :func:`sample_preferences` makes, for the estimators that sample on-policy completions.

    Parameters
    ----------
    mu_probs : np.ndarray
        ``μ(y|x)``, shape ``(P, T)`` (rows need not be normalised; they are divided by their sums).
    x : np.ndarray
        Prompts of the draws (int64), shape ``(n,)``.
    u : np.ndarray
        Uniforms in ``[0, 1)``, shape ``(n,)``.

    Returns
    -------
    np.ndarray
        Completions (int64), shape ``(n,)``.
    """
    return _search_cdf(_completion_cdf(mu_probs), x, u)


#: pairs per block of :func:`_search_cdf` and of the labels (bounds the temporaries: 4 MiB each)
_SEARCH_BLOCK = 2**18


def _search_cdf(cdf: np.ndarray, x: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Inverse-CDF draws from the cdf rows ``F``: ``y = #{y' : F[x, y'] ≤ u}`` (capped at
    ``T − 1``), i.e. ``np.searchsorted(F[x], u, side="right")`` row by row.

    With one prompt the keys are the row itself. Otherwise all rows are searched at once: the
    keys ``x + i·F[x, y]`` as complex numbers, which numpy orders lexicographically (real
    part, then imaginary part), form one sorted array of ``P·T`` keys in which every key of
    prompt ``x`` lies after all keys of prompts ``< x`` and before all of prompts ``> x``; the
    query ``x + i·u`` lands at ``x·T + y``. The real and imaginary parts are stored exactly
    (no arithmetic on ``F`` or ``u``), so every comparison is the one the row-by-row search
    makes and the draws are identical. Queries go in blocks of :data:`_SEARCH_BLOCK`, each
    searched in sorted order (a sorted batch walks the keys in order instead of missing the
    cache at every step: 3–5× faster at ``T = 2²⁰``) and put back in place; each query's
    answer does not depend on the others, so the draws are the same."""
    P, T = cdf.shape
    if P == 1:
        keys = cdf[0]
    else:
        keys = np.empty((P, T), dtype=np.complex128)
        keys.real = np.arange(P)[:, None]
        keys.imag = cdf
        keys = keys.ravel()
    y = np.empty(x.shape, dtype=np.int64)
    for lo in range(0, x.size, _SEARCH_BLOCK):
        xb, q = x[lo:lo + _SEARCH_BLOCK], u[lo:lo + _SEARCH_BLOCK]
        if P > 1:
            q = np.empty(xb.shape, dtype=np.complex128)
            q.real = xb
            q.imag = u[lo:lo + _SEARCH_BLOCK]
        order = np.argsort(q)
        yb = np.empty(q.shape, dtype=np.int64)
        yb[order] = np.searchsorted(keys, q[order], side="right")
        y[lo:lo + _SEARCH_BLOCK] = yb if P == 1 else yb - xb * T
    return np.minimum(y, T - 1, out=y)


def sample_preferences(reward, sampler: Policy, n: int, random_state=None, *,
                       prompt_weights=None, temperature: float = 1.0,
                       deterministic: bool = False) -> Preferences:
    """Draw ``n`` Bradley–Terry pairs labelled by ``reward`` (= ``r*``), completions from
    ``sampler`` (= ``μ``).

    Parameters
    ----------
    reward : array_like
        The labelling reward ``r*``, shape ``(P, T)``.
    sampler : Policy
        The sampling policy ``μ`` (both completions of a pair drawn i.i.d. from it).
    n : int
        Number of pairs, ``≥ 0``.
    random_state : None, int, SeedSequence or Generator
        Seed; draws are made in the fixed order of the module docstring.
    prompt_weights : array_like or None
        ``ρ``, shape ``(P,)``, the prompt distribution; ``None``: uniform.
    temperature : float
        Label temperature ``τ > 0``: ``P(y1 ≻ y2) = σ((r*(y1) − r*(y2))/τ)``.
    deterministic : bool
        Noise-free labels (the higher reward wins; a fair coin on ties).

    Returns
    -------
    Preferences
        The ``n`` labelled pairs, in draw order (``head(m)`` gives nested data sets).
    """
    if not isinstance(sampler, Policy):
        raise ValueError(f"sampler must be a genver Policy, got {type(sampler).__name__}")
    sp = sampler.space
    r = sp.check_array("reward", reward)
    n = check_positive_int(n, "n", minimum=0)
    temperature = check_beta(temperature, "temperature")
    rho = check_prompt_weights(prompt_weights, sp.P)
    rng = as_generator(random_state)
    x = rng.choice(sp.P, size=n, p=rho).astype(np.int64, copy=False)
    cdf = _completion_cdf(sampler.probs)
    y1 = _search_cdf(cdf, x, rng.random(n))
    y2 = _search_cdf(cdf, x, rng.random(n))
    u = rng.random(n)
    # label block by block (elementwise, so the same bits as on the whole arrays) and swap in
    # place where the second completion wins: y1 becomes y⁺ and y2 becomes y⁻
    for lo in range(0, n, _SEARCH_BLOCK):
        sl = slice(lo, lo + _SEARCH_BLOCK)
        xb, a, b = x[sl], y1[sl], y2[sl]
        diff = r[xb, a] - r[xb, b]
        if deterministic:
            p1 = np.where(diff > 0, 1.0, np.where(diff < 0, 0.0, 0.5))
        else:
            z = diff / temperature
            e = np.exp(-np.abs(z))  # σ(z) = 1/(1 + e) for z ≥ 0, e/(1 + e) below: no overflow
            p1 = np.where(z >= 0, 1.0 / (1.0 + e), e / (1.0 + e))
        second = ~(u[sl] < p1)
        a[second], b[second] = b[second], a[second]
    del u
    return Preferences(sp, x, y1, y2)
