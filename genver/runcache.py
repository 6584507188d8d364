"""Run state: the memos of one run (:class:`RunCache`) and the one rule for their keys
(:func:`cache_key`).

A sweep's units share more than their code: the settings of one seed draw the same world, the
same reward class and — for knobs that act after the data are drawn, such as the number of
distractors — the same preference stream and nested classes (common random numbers, see
:mod:`genver.experiments.generators`), and the routes of one unit often pick the same class
member. A :class:`RunCache` holds those shared values for the length of one run: the runner (or
an executor's batch of units) creates one and passes it down, as the ``cache=`` argument, to the
functions that can reuse work. A library function called without a cache computes everything
afresh and keeps nothing: outside a run genver holds no memory between calls.

Each memo of a cache is named (``"pair_streams"``, ``"instances"``, …) and bounded in bytes,
least-recently-used first out. A key determines its value *exactly*: :func:`cache_key` digests
the parameters, seeds, generator states and the bytes of every array the value depends on, so a
hit returns what the computation would have returned, bit for bit, and no number depends on
whether, or in which order, units ran before.
"""
from __future__ import annotations

import hashlib
import json
import struct
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import numpy as np

__all__ = ["RunCache", "cache_key", "nbytes_of", "DEFAULT_BUDGETS"]

T = TypeVar("T")

#: bytes each named memo may hold; a name not listed gets ``DEFAULT_BUDGET``
DEFAULT_BUDGETS: dict[str, int] = {
    "instances": 24 * 2**20,  # the 16,384-distractor finite_gap instance with its RL parts is ~17 MB
    "pair_streams": 16 * 2**20,
    "policy_metrics": 16 * 2**20,
    "distractor_pools": 32 * 2**20,
    "stream_derived": 32 * 2**20,
    "lineage_rl_parts": 48 * 2**20,
}
DEFAULT_BUDGET = 32 * 2**20


def _encode(part: Any, out: list[bytes]) -> None:
    """Append a canonical, type-tagged encoding of ``part`` to ``out`` (recursive). The exact
    built-in types go through :data:`_EXACT` (one dictionary lookup); subclasses and numpy
    scalars through the ``isinstance`` chain, to the same encoding."""
    enc = _EXACT.get(type(part))
    if enc is not None:
        enc(part, out)
    elif part is None or isinstance(part, bool):
        _encode_none_bool(part, out)
    elif isinstance(part, (int, np.integer)):
        _encode_int(part, out)
    elif isinstance(part, (float, np.floating)):
        _encode_float(part, out)
    elif isinstance(part, str):
        _encode_str(part, out)
    elif isinstance(part, (bytes, bytearray, memoryview)):
        _encode_bytes(bytes(part), out)
    elif isinstance(part, np.ndarray):
        _encode_array(part, out)
    elif isinstance(part, np.random.Generator):
        _encode(("Generator", json.dumps(part.bit_generator.state, sort_keys=True, default=int)), out)
    elif isinstance(part, Mapping):
        _encode_mapping(part, out)
    elif isinstance(part, (tuple, list)):
        _encode_sequence(part, out)
    elif hasattr(part, "cache_token"):
        _encode(("token", type(part).__qualname__, part.cache_token()), out)
    else:
        raise TypeError(f"cache_key: cannot key a {type(part).__name__} (give it a cache_token() method)")


def _encode_none_bool(part, out: list[bytes]) -> None:
    out.append(b"N" if part is None else (b"T" if part else b"F"))


def _encode_int(part, out: list[bytes]) -> None:
    s = str(int(part)).encode()
    out.append(b"i%d:" % len(s) + s)


def _encode_float(part, out: list[bytes]) -> None:
    out.append(b"f" + struct.pack("<d", float(part)))  # exact: -0.0, nan payloads, inf differ


def _encode_str(part: str, out: list[bytes]) -> None:
    s = part.encode()
    out.append(b"s%d:" % len(s) + s)


def _encode_bytes(part: bytes, out: list[bytes]) -> None:
    out.append(b"b%d:" % len(part) + part)


def _encode_mapping(part: Mapping, out: list[bytes]) -> None:
    items = sorted(part.items(), key=lambda kv: repr(kv[0]))
    out.append(b"d%d:" % len(items))
    for k, v in items:
        _encode(k, out)
        _encode(v, out)


def _encode_sequence(part, out: list[bytes]) -> None:
    out.append(b"t%d:" % len(part))
    for v in part:
        _encode(v, out)


def _encode_array(part: np.ndarray, out: list[bytes]) -> None:
    a = np.ascontiguousarray(part)
    if a.dtype == object:
        raise TypeError("cache_key: object arrays have no canonical bytes")
    head = f"a{a.dtype.str}{a.shape}".encode()
    out.append(b"%d:" % len(head) + head)
    out.append(hashlib.blake2b(a.data, digest_size=32).digest())  # C-contiguous: the bytes of tobytes(), uncopied


#: encoder of each exact built-in type (the common parts: digests, arrays, strings, numbers,
#: parameter dicts, tuples); anything else takes the ``isinstance`` chain of :func:`_encode`
_EXACT: dict[type, Callable[[Any, list[bytes]], None]] = {
    bytes: _encode_bytes, np.ndarray: _encode_array, str: _encode_str, int: _encode_int,
    float: _encode_float, bool: _encode_none_bool, type(None): _encode_none_bool, dict: _encode_mapping,
    tuple: _encode_sequence, list: _encode_sequence,
}


def cache_key(*parts: Any) -> bytes:
    """A 32-byte digest that determines ``parts`` exactly: ``None``, booleans, integers,
    floats (by their bits), strings, bytes, numpy arrays (dtype, shape and contents), numpy
    generators (their bit-generator state), mappings (in sorted key order), tuples / lists, and
    objects with a ``cache_token()`` method, nested freely. Two keys are equal iff their parts
    are (up to BLAKE2b collisions).

    Parameters
    ----------
    *parts : Any
        The values the cached computation depends on.

    Returns
    -------
    bytes
        The BLAKE2b digest (32 bytes) of their canonical, type-tagged encoding.

    Raises
    ------
    TypeError
        For a part of a type without a canonical encoding (object arrays, arbitrary objects).
    """
    out: list[bytes] = []
    _encode(parts, out)
    return hashlib.blake2b(b"".join(out), digest_size=32).digest()


def nbytes_of(value: Any) -> int:
    """The bytes a cached value holds: its arrays' sizes (recursively through tuples, lists and
    dicts) plus a small constant per object.

    Parameters
    ----------
    value : Any
        The value to be cached.

    Returns
    -------
    int
        Its size estimate in bytes.
    """
    if isinstance(value, np.ndarray):
        return value.nbytes
    if isinstance(value, (tuple, list)):
        return 64 + sum(nbytes_of(v) for v in value)
    if isinstance(value, dict):
        return 64 + sum(nbytes_of(v) for v in value.values())
    return 64


class _Memo:
    """A thread-safe LRU map ``key -> value`` holding at most ``max_bytes``."""

    def __init__(self, max_bytes: int):
        self.max_bytes = max_bytes
        self.entries: OrderedDict = OrderedDict()
        self.nbytes = 0

    def get(self, key):
        hit = self.entries.get(key)
        if hit is None:
            return None
        self.entries.move_to_end(key)
        return hit

    def put(self, key, value, nbytes: int) -> None:
        if nbytes > self.max_bytes:
            return  # a value larger than the whole budget is not kept
        old = self.entries.pop(key, None)
        if old is not None:
            self.nbytes -= old[1]
        self.entries[key] = (value, nbytes)
        self.nbytes += nbytes
        while self.nbytes > self.max_bytes:
            self.nbytes -= self.entries.popitem(last=False)[1][1]


class RunCache:
    """The memos of one run: named LRU maps with byte budgets (``budgets``, defaults
    :data:`DEFAULT_BUDGETS`). Thread-safe; ``make`` runs outside the lock, so two threads may
    both compute a missing value (they compute the same one)."""

    def __init__(self, budgets: Mapping[str, int] | None = None):
        self._budgets = {**DEFAULT_BUDGETS, **(budgets or {})}
        self._memos: dict[str, _Memo] = {}
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def _memo(self, name: str) -> _Memo:
        memo = self._memos.get(name)
        if memo is None:
            memo = self._memos[name] = _Memo(self._budgets.get(name, DEFAULT_BUDGET))
        return memo

    def get(self, name: str, key: bytes, default: Any = None) -> Any:
        """The value stored under ``key`` in memo ``name``, or ``default``.

        Parameters
        ----------
        name : str
            The memo (e.g. ``"pair_streams"``).
        key : bytes
            A :func:`cache_key`.
        default : Any
            Returned on a miss.

        Returns
        -------
        Any
            The cached value, or ``default``.
        """
        with self._lock:
            hit = self._memo(name).get(key)
            if hit is None:
                self.misses += 1
                return default
            self.hits += 1
            return hit[0]

    def put(self, name: str, key: bytes, value: Any, nbytes: int | None = None) -> None:
        """Store ``value`` unless it alone exceeds the memo's budget; evict least recently used
        entries beyond the budget.

        Parameters
        ----------
        name : str
            The memo.
        key : bytes
            A :func:`cache_key`.
        value : Any
            The value to keep.
        nbytes : int or None
            Its size in bytes; ``None``: :func:`nbytes_of`.
        """
        size = nbytes_of(value) if nbytes is None else int(nbytes)
        with self._lock:
            self._memo(name).put(key, value, size)

    def get_or_make(self, name: str, key: bytes, make: Callable[[], T], nbytes: int | None = None) -> T:
        """``make()``, memoised under ``key`` in memo ``name``.

        Parameters
        ----------
        name : str
            The memo.
        key : bytes
            A :func:`cache_key` that determines ``make()``'s value exactly.
        make : Callable[[], T]
            Computes the value on a miss (outside the lock).
        nbytes : int or None
            The value's size in bytes; ``None``: :func:`nbytes_of`.

        Returns
        -------
        T
            The cached or freshly made value.
        """
        sentinel = object()
        value = self.get(name, key, sentinel)
        if value is sentinel:
            value = make()
            self.put(name, key, value, nbytes)
        return value

    def nbytes(self, name: str | None = None) -> int:
        """Bytes held by memo ``name`` (all memos when None).

        Parameters
        ----------
        name : str or None
            The memo; ``None``: all of them.

        Returns
        -------
        int
            The bytes held.
        """
        with self._lock:
            memos = self._memos.values() if name is None else [self._memo(name)]
            return sum(m.nbytes for m in memos)

    def __len__(self) -> int:
        with self._lock:
            return sum(len(m.entries) for m in self._memos.values())

    def clear(self) -> None:
        """Drop every value."""
        with self._lock:
            self._memos.clear()
