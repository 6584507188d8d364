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
stops growing with ``N`` once all distinct pairs have been seen.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ._validation import as_generator, check_beta, check_positive_int, check_prompt_weights
from .policy import Policy
from .spaces import TreeSpace

__all__ = ["Preferences", "PairCounts", "sample_preferences", "SELF_PAIRS"]

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
    def from_array(cls, space: TreeSpace, pairs, name: str = "pairs", self_pairs: str = "note") -> "Preferences":
        """From an ``(N, 3)`` integer array of (prompt, preferred, dispreferred): pairs a user
        supplies.

        ``self_pairs``: what to do with rows ``y⁺ = y⁻``. Bradley–Terry gives such a "pair"
        probability ``σ(0) = ½`` under every reward, so it is no preference and changes no fit
        of any estimator: each adds the same constant to every member's objective (``log ½`` to
        the likelihoods, ``(1/(2τ))²`` to IPO's loss) and nothing to a gradient. Pairs drawn as
        ``y1, y2 ~ μ`` i.i.d. contain them routinely (the samplers' streams do, and the
        finite-class paths count them on purpose, see :mod:`genver.estimators.mle`); in other
        data they may be a bug upstream. ``"note"`` (default) keeps them and says so with a
        ``UserWarning`` that counts them (``genver fit`` prints it as a note): the objective is
        the one of the pairs as given; ``"drop"`` removes them, with the warning; ``"error"``
        refuses them (``ValueError`` naming the first row); ``"keep"`` keeps them silently (for
        sampled streams)."""
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
        return np.stack([self.x, self.y_pos, self.y_neg], axis=1)

    def head(self, n: int) -> "Preferences":
        """The first ``n`` pairs of the stream (nested sample sizes)."""
        n = check_positive_int(n, "n", minimum=0)
        if n > len(self):
            raise ValueError(f"n = {n} exceeds the {len(self)} pairs available")
        return Preferences(self.space, self.x[:n], self.y_pos[:n], self.y_neg[:n])

    def counts(self) -> PairCounts:
        """Sufficient statistics: unique triples with counts."""
        T = self.space.T
        key = (self.x * T + self.y_pos) * T + self.y_neg if T * T * self.space.P < 2**62 else None
        if key is not None:
            uniq, cnt = np.unique(key, return_counts=True)
            y_neg = uniq % T
            rest = uniq // T
            return PairCounts(self.space, rest // T, rest % T, y_neg, cnt.astype(np.float64))
        trip, cnt = np.unique(self.as_array(), axis=0, return_counts=True)
        return PairCounts(self.space, trip[:, 0], trip[:, 1], trip[:, 2], cnt.astype(np.float64))


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


def _sample_completions(mu_probs: np.ndarray, x: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Inverse-CDF draws ``y ~ μ(·|x)`` from uniforms ``u`` (see :func:`_search_cdf`)."""
    return _search_cdf(_completion_cdf(mu_probs), x, u)


def _search_cdf(cdf: np.ndarray, x: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Inverse-CDF draws from the cdf rows ``F``: ``y = #{y' : F[x, y'] ≤ u}`` (capped at
    ``T − 1``), i.e. ``np.searchsorted(F[x], u, side="right")`` row by row.

    All rows are searched at once: the keys ``x + i·F[x, y]`` as complex numbers, which numpy
    orders lexicographically (real part, then imaginary part), form one sorted array of
    ``P·T`` keys in which every key of prompt ``x`` lies after all keys of prompts ``< x``
    and before all of prompts ``> x``; the query ``x + i·u`` lands at ``x·T + y``. The real
    and imaginary parts are stored exactly (no arithmetic on ``F`` or ``u``), so every
    comparison is the one the row-by-row search makes and the draws are identical."""
    P, T = cdf.shape
    keys = np.empty((P, T), dtype=np.complex128)
    keys.real = np.arange(P)[:, None]
    keys.imag = cdf
    q = np.empty(x.shape, dtype=np.complex128)
    q.real = x
    q.imag = u
    y = np.searchsorted(keys.ravel(), q, side="right") - x * T
    return np.minimum(y, T - 1)


def sample_preferences(reward, sampler: Policy, n: int, random_state=None, *,
                       prompt_weights=None, temperature: float = 1.0,
                       deterministic: bool = False) -> Preferences:
    """Draw ``n`` Bradley–Terry pairs labelled by ``reward`` (= ``r*``), completions from
    ``sampler`` (= ``μ``)."""
    if not isinstance(sampler, Policy):
        raise ValueError(f"sampler must be a genver Policy, got {type(sampler).__name__}")
    sp = sampler.space
    r = sp.check_array("reward", reward)
    n = check_positive_int(n, "n", minimum=0)
    temperature = check_beta(temperature, "temperature")
    rho = check_prompt_weights(prompt_weights, sp.P)
    rng = as_generator(random_state)
    x = rng.choice(sp.P, size=n, p=rho).astype(np.int64)
    cdf = _completion_cdf(sampler.probs)
    y1 = _search_cdf(cdf, x, rng.random(n))
    y2 = _search_cdf(cdf, x, rng.random(n))
    u = rng.random(n)
    diff = r[x, y1] - r[x, y2]
    if deterministic:
        p1 = np.where(diff > 0, 1.0, np.where(diff < 0, 0.0, 0.5))
    else:
        z = diff / temperature
        e = np.exp(-np.abs(z))  # σ(z) = 1/(1 + e) for z ≥ 0, e/(1 + e) below: no overflow
        p1 = np.where(z >= 0, 1.0 / (1.0 + e), e / (1.0 + e))
    first = u < p1
    return Preferences(sp, x, np.where(first, y1, y2), np.where(first, y2, y1))
