"""Atomic files: every file genver writes appears whole or not at all.

A file is written to a temporary file in the target's folder, flushed (and ``fsync``-ed unless
asked not to), given the permissions ``open`` would have given it (``0o666 & ~umask``:
``tempfile.mkstemp`` alone makes ``0o600``) and ``os.replace``-d over the target, so a reader —
or a run killed half-way — never sees a half-written file. The one helper used by the result
store, the figures, the reports and :mod:`genver.io`.
"""
from __future__ import annotations

import contextlib
import os
import pathlib
import tempfile
from collections.abc import Iterator
from typing import BinaryIO

__all__ = ["atomic_open", "atomic_write_bytes", "file_mode"]


def _umask() -> int:
    try:  # Linux: read it without changing it (os.umask would, for a moment, for every thread)
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    old = os.umask(0o022)
    os.umask(old)
    return old


def file_mode() -> int:
    """The mode a new file gets from ``open``: ``0o666 & ~umask``.

    Returns
    -------
    int
        The permission bits, e.g. ``0o644`` under the usual umask ``0o022``.
    """
    return 0o666 & ~_umask()


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, *, fsync: bool = True) -> Iterator[BinaryIO]:
    """``with atomic_open(path) as f: f.write(...)``: a binary file object whose contents
    replace ``path`` atomically when the block ends without an exception.

    The contents are flushed to disk first unless ``fsync=False``; on an exception the temporary
    file is removed and ``path`` is left as it was. OS errors name ``path``, not the temporary file.

    Parameters
    ----------
    path : str or os.PathLike
        The file to create or replace; its folder must exist.
    fsync : bool
        ``fsync`` the temporary file before the ``os.replace`` (durable across a crash).

    Yields
    ------
    BinaryIO
        The open temporary file, written in binary mode.
    """
    path = pathlib.Path(path)
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    except OSError as e:
        raise OSError(e.errno, e.strerror, str(path)) from None
    try:
        os.fchmod(fd, file_mode())
        with os.fdopen(fd, "wb") as f:
            yield f
            if fsync:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(e, OSError) and e.errno is not None:
            raise OSError(e.errno, e.strerror, str(path)) from None
        raise


def atomic_write_bytes(path: str | os.PathLike, data: bytes, *, fsync: bool = True) -> None:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_open`).

    Parameters
    ----------
    path : str or os.PathLike
        The file to create or replace.
    data : bytes
        Its whole new contents.
    fsync : bool
        ``fsync`` before the replace, as in :func:`atomic_open`.
    """
    with atomic_open(path, fsync=fsync) as f:
        f.write(data)
