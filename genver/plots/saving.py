"""Writing figures: :func:`save_figure`, one file per format, each written atomically through
:func:`genver.atomic.atomic_open` (a reader never sees a half-written figure)."""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from matplotlib.figure import Figure

from ..atomic import atomic_open

__all__ = ["save_figure"]

#: metadata per vector format: genver as the creator and no creation date, so that the same
#: figure gives the same bytes whenever (and in whichever process) it is drawn
_METADATA = {"pdf": {"Creator": "genver", "CreationDate": None}, "svg": {"Creator": "genver", "Date": None}}


def save_figure(fig, path_stem, *, dpi: int = 150, formats: Sequence[str] = ("png", "pdf"),
                tight: bool = True) -> list[Path]:
    """Write ``{path_stem}.{fmt}`` for each of ``formats`` (default PNG at ``dpi`` and PDF),
    each atomically (:func:`genver.atomic.atomic_open`: rendered to a temporary file in the same
    folder, then moved over the target; no ``fsync``: a figure is redrawn from the results).
    PDF and SVG carry no creation date: the same figure gives the same bytes.
    Parent folders are created. Accepts a Figure or an Axes. A figure with a layout engine
    (constrained layout: every figure of :mod:`genver.plots`) is laid out once, without a draw
    of its own, the layout is frozen for every format, and it is saved at its own size (the layout already fits the
    content; no second "tight" pass). Other figures are saved with the content's bounding box
    unless ``tight=False``. Returns the written paths.

    Parameters
    ----------
    fig : matplotlib.figure.Figure or matplotlib.axes.Axes
        What to save.
    path_stem : str or pathlib.Path
        The target without extension (an extension among ``formats`` is dropped).
    dpi : int
        Resolution of raster formats.
    formats : sequence of str
        File formats, one file each.
    tight : bool
        Bounding box of the content (figures without a layout engine).

    Returns
    -------
    list of pathlib.Path
        The written files.
    """
    if hasattr(fig, "figure") and not isinstance(fig, Figure):
        fig = fig.figure
    stem = Path(path_stem)
    if stem.suffix.lower().lstrip(".") in formats:
        stem = stem.with_suffix("")
    stem.parent.mkdir(parents=True, exist_ok=True)
    engine = fig.get_layout_engine()
    if engine is not None:
        engine.execute(fig)  # laid out once, with no draw of its own (the first format's is the only one) ...
        fig.set_layout_engine("none")  # ... and the layout kept for every format
        tight = False
    out = []
    for fmt in formats:
        target = stem.parent / f"{stem.name}.{fmt}"
        with atomic_open(target, fsync=False) as fh:
            fig.savefig(fh, format=fmt, dpi=dpi, bbox_inches="tight" if tight else None, metadata=_METADATA.get(fmt))
        out.append(target)
    return out
