"""What a results directory records about the code that wrote it: package versions, the git
commit, and a shard's ``genver_provenance`` (see :mod:`genver.experiments.store`).

A resumed run refuses to mix results of other versions (:mod:`genver.experiments.runner`), and
:func:`genver.experiments.runner.repair` rebuilds a lost manifest from the shards' provenance.
"""
from __future__ import annotations

import json
import pathlib
import subprocess

__all__ = ["PROVENANCE_KEY", "package_versions", "git_commit", "read_provenance"]

#: the Parquet key-value metadata key of a shard's provenance: JSON versions, git_commit, spec, spec_hash,
#: smoke of the writer
PROVENANCE_KEY = b"genver_provenance"


def package_versions() -> dict:
    """The versions a results directory records (manifest and shards).

    Returns
    -------
    dict
        ``{package: version}`` of genver, Python, numpy, scipy, numba, pandas and pyarrow.
    """
    import platform

    import numba
    import numpy
    import pandas
    import pyarrow
    import scipy

    from .. import __version__
    return {"genver": __version__, "python": platform.python_version(), "numpy": numpy.__version__,
            "scipy": scipy.__version__, "numba": numba.__version__, "pandas": pandas.__version__,
            "pyarrow": pyarrow.__version__}


def git_commit() -> str | None:
    """The git commit of the genver checkout this code runs from.

    Returns
    -------
    str or None
        ``git rev-parse HEAD`` beside this file; None outside a git checkout (an installed wheel).
    """
    try:
        here = pathlib.Path(__file__).resolve().parent
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def read_provenance(path) -> dict | None:
    """The ``genver_provenance`` of a shard (see the module docstring).

    Parameters
    ----------
    path : str or path-like
        The shard's file.

    Returns
    -------
    dict or None
        Versions, git commit, spec, spec hash and ``--smoke`` flag of the run that wrote it;
        None when the file is unreadable or was written without.
    """
    import pyarrow.parquet as pq
    try:
        raw = (pq.read_metadata(path).metadata or {}).get(PROVENANCE_KEY)
        return None if raw is None else json.loads(raw)
    except Exception:  # noqa: BLE001 - unreadable counts as absent
        return None
