"""Run-scoped memos: values a sweep computes more than once, kept for the length of one run.

A sweep's units share more than their code: the settings of one seed draw the same world, the
same reward class and — for knobs that act after the data are drawn, such as the number of
distractors — the same preference stream and nested classes (common random numbers, see
:mod:`genver.experiments.generators`), and the routes of one unit often pick the same class
member. The memos live where the values are computed (``genver.experiments.cells``: streams
and policy metrics; ``genver.experiments.generators``: instances and distractor pools;
``genver.estimators.mle``: values derived from a stream; ``genver.classes.policies``: RL parts
of a class lineage). Each maps a key that determines a value *exactly* (parameters, seeds and
the bytes of every array the value depends on) to that value, least-recently-used first out
beyond a byte budget. A hit returns what the computation would have returned, bit for bit, so
no number depends on whether, or in which order, units ran before.

``genver run`` calls :func:`clear_memos` when a run starts and when it ends: a run reuses only
what it computed itself, and a long-lived process (a notebook, a benchmark) does not keep
instances alive between runs.
"""
from __future__ import annotations

import functools
import threading
from collections import OrderedDict

__all__ = ["BoundedMemo", "clear_memos", "run_scoped"]

_REGISTRY: list["BoundedMemo"] = []


class BoundedMemo:
    """A thread-safe LRU map ``key -> value`` holding at most ``max_bytes`` (each entry's size
    is given when it is stored)."""

    def __init__(self, name: str, max_bytes: int):
        self.name, self.max_bytes = name, max_bytes
        self.entries: OrderedDict = OrderedDict()
        self.nbytes = 0
        self.lock = threading.Lock()
        _REGISTRY.append(self)

    def get(self, key, default=None):
        with self.lock:
            hit = self.entries.get(key)
            if hit is None:
                return default
            self.entries.move_to_end(key)
            return hit[0]

    def put(self, key, value, nbytes: int) -> None:
        """Store ``value`` (replacing the key's entry) unless it alone exceeds the budget; evict
        the least recently used entries beyond the budget."""
        if nbytes > self.max_bytes:
            return
        with self.lock:
            old = self.entries.pop(key, None)
            if old is not None:
                self.nbytes -= old[1]
            self.entries[key] = (value, nbytes)
            self.nbytes += nbytes
            while self.nbytes > self.max_bytes:
                self.nbytes -= self.entries.popitem(last=False)[1][1]

    def clear(self) -> None:
        with self.lock:
            self.entries.clear()
            self.nbytes = 0

    def __len__(self) -> int:
        return len(self.entries)


def clear_memos() -> None:
    """Empty every run-scoped memo of the package."""
    for memo in _REGISTRY:
        memo.clear()


def run_scoped(fn):
    """Decorator: every memo is empty when ``fn`` starts and again when it returns or raises."""
    @functools.wraps(fn)
    def scoped(*args, **kwargs):
        clear_memos()
        try:
            return fn(*args, **kwargs)
        finally:
            clear_memos()
    return scoped
