"""The shipped experiment specs, by name.

Every ``sims/NAME.toml`` of the repository is installed as package data of ``genver.sims``, so
``genver run NAME`` (or :func:`resolve_spec`) finds it in an installed wheel as in a checkout.
A path to a TOML file is always accepted and takes precedence over a name.
"""
from __future__ import annotations

import importlib.resources
import pathlib
import sys

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

__all__ = ["shipped_specs", "resolve_spec", "spec_summaries"]


def shipped_specs() -> dict[str, pathlib.Path]:
    """``{name: path}`` of every shipped spec, sorted by name.

    Returns
    -------
    dict of str to pathlib.Path
        the spec's name (its file name without ``.toml``) and its installed path.

    Examples
    --------
    >>> specs = shipped_specs()
    >>> "gap_finite" in specs, specs["gap_finite"].name
    (True, 'gap_finite.toml')
    """
    root = importlib.resources.files("genver.sims")
    return {p.name[:-5]: pathlib.Path(str(p)) for p in sorted(root.iterdir(), key=lambda p: p.name)
            if p.name.endswith(".toml")}


def resolve_spec(spec: str | pathlib.Path) -> pathlib.Path:
    """The spec file ``spec`` names: an existing path as given, else the shipped spec of that
    name (with or without ``.toml``). Raises ``ValueError`` naming both readings and the shipped
    names when neither exists.

    Parameters
    ----------
    spec : str or pathlib.Path
        a path to a TOML file, or the name of a shipped spec (``"gap_finite"``).

    Returns
    -------
    pathlib.Path
        the spec file.

    Examples
    --------
    >>> resolve_spec("gap_finite.toml") == shipped_specs()["gap_finite"]
    True
    """
    path = pathlib.Path(spec)
    if path.exists():
        return path
    name = path.name[:-5] if path.name.endswith(".toml") else path.name
    specs = shipped_specs()
    if str(spec) in (name, f"{name}.toml") and name in specs:
        return specs[name]
    raise ValueError(f"no such spec file {str(spec)!r}, and no shipped spec of that name "
                     f"(shipped: {', '.join(specs)}; `genver specs` lists them)")


def spec_summaries() -> list[tuple[str, str]]:
    """``(name, question)`` of every shipped spec: its ``[experiment] question`` (the first
    sentence of its ``description`` when it has none).

    Returns
    -------
    list of tuple of (str, str)
        one pair per shipped spec, sorted by name (the list ``genver specs`` prints).
    """
    rows = []
    for name, path in shipped_specs().items():
        with open(path, "rb") as f:
            exp = tomllib.load(f).get("experiment", {})
        question = " ".join(str(exp.get("question", "")).split())
        if not question:
            text = " ".join(str(exp.get("description", "")).split())
            first = text.split(". ")[0].rstrip(".")
            question = first + "." if first else ""
        rows.append((name, question))
    return rows
