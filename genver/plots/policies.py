"""Policies drawn over the completions of one prompt, so that equal policies lie on top of each
other (:func:`plot_policies`)."""
from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from .style import MARKERS, estimator_styles, font_size, new_axes

__all__ = ["plot_policies"]


def _probability_tables(policies: Mapping):
    """``(labels, label -> (P, T) probabilities, the first Policy's space or None)``; ValueError
    for no policy, a bad shape or differing shapes."""
    if not len(policies):
        raise ValueError("policies: give at least one policy")
    labels = list(policies)
    probs, space = {}, None
    for lab in labels:
        p = policies[lab]
        if hasattr(p, "probs") and hasattr(p, "space"):
            space = space or p.space
            p = p.probs
        p = np.asarray(p, dtype=float)
        if p.ndim == 1:
            p = p[None, :]
        if p.ndim != 2:
            raise ValueError(f"policies[{lab!r}]: expected a Policy or a (P, T) array, got shape {p.shape}")
        probs[lab] = p
    shapes = {p.shape for p in probs.values()}
    if len(shapes) != 1:
        raise ValueError(f"policies have different shapes (P, T): {sorted(shapes)}")
    return labels, probs, space


def plot_policies(
    policies: Mapping,
    ax=None,
    *,
    prompt: int = 0,
    styles: Mapping | None = None,
    title: str | None = None,
):
    """Probabilities ``π(y|x)`` of every completion ``y`` of one prompt ``x``, one series per
    policy (``policies``: label -> a genver ``Policy`` or a ``(P, T)`` array of probabilities),
    drawn so that equal policies lie exactly on top of each other: the first as a wide
    translucent band, each later one as open markers on a thin line.

    Completions are labelled by their tokens ``a_1…a_H`` (first token first) when a ``Policy``
    gives the tree, ``T ≤ 32`` and ``V ≤ 10``, by index otherwise. The title states the largest
    ``|π(y|x) − π_1(y|x)|`` (``π_1`` the first policy) of each later policy over *all* prompts
    and completions (so "on top of each other" is a number, not an impression).

    Parameters
    ----------
    policies : mapping
        label -> a genver ``Policy`` or a ``(P, T)`` array of probabilities (a 1-D array: one
        prompt), all of one shape.
    ax : matplotlib.axes.Axes or None
        Where to draw (default :func:`new_axes`).
    prompt : int
        The prompt ``x`` drawn.
    styles : mapping or None
        label -> ``dict(color, marker)`` (default :func:`estimator_styles` of the labels).
    title : str or None
        Panel title; None: the largest differences (above).

    Returns
    -------
    matplotlib.axes.Axes
        The panel.
    """
    if ax is None:
        ax = new_axes()
    labels, probs, space = _probability_tables(policies)
    P_, T = next(iter(probs.values())).shape
    if not 0 <= int(prompt) < P_:
        raise ValueError(f"prompt must lie in [0, {P_ - 1}], got {prompt}")
    x = int(prompt)
    styles = dict(styles) if styles is not None else estimator_styles(labels)
    pos = np.arange(T)
    first = labels[0]
    diffs = []
    for i, lab in enumerate(labels):
        st = styles.get(lab) or {"color": f"C{i}", "marker": MARKERS[i % len(MARKERS)]}
        y = probs[lab][x]
        if i == 0:
            ax.plot(pos, y, color=st["color"], lw=7, alpha=0.35, solid_capstyle="round", label=str(lab))
        else:
            ax.plot(pos, y, color=st["color"], lw=1.0, marker=st["marker"], ms=6, mfc="none", mew=1.5,
                    label=str(lab))
            diffs.append(f"{lab} {np.max(np.abs(probs[lab] - probs[first])):.2g}")
    if space is not None and space.T == T and T <= 32 and space.V <= 10:
        toks = space.decode(np.arange(T))
        ax.set_xticks(pos, ["".join(map(str, t)) for t in np.atleast_2d(toks)], rotation=90, fontsize=7)
        ax.set_xlabel(r"completion $y = (a_1 \ldots a_H)$")
    else:
        ax.set_xlabel(r"completion $y$ (index)")
    ax.set_ylabel(r"$\pi(y \mid x)$" + f", prompt $x = {x}$")
    ax.set_ylim(bottom=0)
    if title is None:
        title = (r"$\max_{x,y}\,|\pi(y \mid x) - \pi_1(y \mid x)|$ ($\pi_1$: " + f"{first}): "
                 + ", ".join(diffs)) if diffs else ""
    if title:
        ax.set_title(title, fontsize=font_size("title"))
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=font_size("legend"), frameon=False)
    return ax


