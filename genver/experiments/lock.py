"""The lock of a results directory: one writer at a time.

A run holds an exclusive ``fcntl.flock`` on ``DIR/.genver.lock`` (which names
its PID, host and start time) from before it reads the directory until it ends, however it
ends: the kernel releases the lock when the process dies, even by SIGKILL. A second run (also
``--resume``, also ``genver repair``) gets one error naming the holder. The lock is *stale*, and
taken over, when the lock can be taken (the holder is gone) and the file names this host, or
names another host and was last touched (the holder touches it at every shard it writes) more
than :data:`STALE_LOCK_S` ago; a fresh lock file of another host is respected even where
``flock`` is granted, since ``flock`` need not work across the hosts of a network filesystem.
Where ``flock`` is not supported at all, the file alone decides: this host and a live PID, or
another host and a fresh file, hold it.
"""
from __future__ import annotations

import errno
import json
import os
import pathlib
import socket
import time

from ..atomic import file_mode

__all__ = ["RunLock", "LockedError", "LOCK_NAME", "STALE_LOCK_S", "now_iso"]

#: the results directory's lock file (see the module docstring)
LOCK_NAME = ".genver.lock"
#: a lock file of another host untouched for this long is stale (its holder touches it at every shard)
STALE_LOCK_S = 3600.0


class LockedError(ValueError):
    """Another genver run holds the results directory."""


def now_iso() -> str:
    """The local time, ISO 8601 with the UTC offset (as the manifest and the lock file record it).

    Returns
    -------
    str
        E.g. ``2026-12-03T14:27:30+0000``.
    """
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


class RunLock:
    """The exclusive lock of one results directory (see the module docstring): ``acquire()``
    raises :class:`LockedError` naming the holder's PID and host; ``touch()`` marks the holder
    as alive; ``release()`` (also on ``with`` exit) empties the file and unlocks it. The file
    itself stays: removing it would let a run that opened it before the removal and one that
    creates a new file both hold "the" lock."""

    def __init__(self, root):
        self.root = pathlib.Path(root)
        self.path = self.root / LOCK_NAME
        self.fd = None

    def __enter__(self):
        self.acquire()
        return self

    def __exit__(self, *exc):
        self.release()
        return False

    def holder(self) -> dict | None:
        """The holder the lock file names.

        Returns
        -------
        dict or None
            ``{"pid", "host", "started"}``; None when the file is empty, missing or unreadable.
        """
        try:
            text = self.path.read_text()
            return json.loads(text) if text.strip() else None
        except (OSError, ValueError):
            return None

    def _refuse(self, holder: dict | None):
        who = (f"pid {holder.get('pid')} on host {holder.get('host')}, started {holder.get('started')}"
               if holder else "a process that has not yet written its name")
        raise LockedError(f"{self.root}: another genver run is writing here ({who}; lock file {self.path}); "
                          f"wait for it to finish or use another --out")

    def acquire(self) -> None:
        """Take the lock (a stale one is taken over, see the module docstring) and write this
        process's PID, host and start time into the file; :class:`LockedError` naming the holder
        when another run holds it."""
        import fcntl
        host = socket.gethostname()
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, file_mode())
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                flock = True
            except BlockingIOError:
                self._refuse(self.holder())
            except OSError as e:
                if e.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL):
                    raise
                flock = False  # no flock here (some network filesystems): the file alone decides
            h = self.holder()
            if h and h.get("pid") != os.getpid():
                if h.get("host") == host:
                    if not flock and _pid_alive(int(h.get("pid", -1))):
                        self._refuse(h)
                elif time.time() - os.fstat(fd).st_mtime < STALE_LOCK_S:
                    self._refuse(h)
            os.ftruncate(fd, 0)
            os.pwrite(fd, json.dumps({"pid": os.getpid(), "host": host, "started": now_iso()}).encode(), 0)
        except BaseException:
            os.close(fd)
            raise
        self.fd = fd

    def touch(self) -> None:
        """Mark the holder as alive (the file's modification time: stale-lock detection across hosts)."""
        if self.fd is not None:
            try:
                os.utime(self.fd)
            except OSError:
                pass

    def release(self) -> None:
        """Empty the lock file and unlock it (the file stays); a no-op when not held."""
        if self.fd is None:
            return
        import fcntl
        try:
            os.ftruncate(self.fd, 0)
            fcntl.flock(self.fd, fcntl.LOCK_UN)
        except OSError:
            pass
        finally:
            os.close(self.fd)
            self.fd = None
