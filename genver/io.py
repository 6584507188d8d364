r"""Reading and writing user instances and preference data (``.npz``), for ``genver fit``.

Instance file (``.npz``; every array float64 or integer unless said otherwise)
------------------------------------------------------------------------------
====================  ===========  =====================================================================
key                   shape        meaning
====================  ===========  =====================================================================
``ref_logp``          (P, T)       reference log-probs ``log π_ref(y|x)``; every row normalised
                                   (``logsumexp = 0`` within 1e-8); ``-inf`` marks probability 0
                                   (refused later by estimators that need full support: dpo, ipo)
``reward_true``       (P, T)       the true reward ``r*`` the metrics are computed against (finite)
``beta``              ()           KL weight ``β > 0`` (scalar)
``prompt_weights``    (P,)         optional prompt distribution ``ρ`` (default uniform)
``V``, ``H``          ()           optional, together: vocabulary size and horizon; ``T == V**H`` must
                                   hold and completions are token sequences indexed as in
                                   :mod:`genver.spaces` (first token most significant)
``reward_class``      (K_R, P, T)  optional finite reward class: ``K_R`` reward tables (finite)
``policy_class``      (K_Π, P, T)  optional finite policy class: ``K_Π`` policies' log-probs (rows
                                   normalised, ``-inf`` allowed)
``reward_features``   (P, T, d)    optional features ``φ`` of the linear reward class ``{w·φ}``
====================  ===========  =====================================================================

Without ``V`` and ``H`` the instance is a **bandit per prompt**: genver uses the one-step tree
``TreeSpace(P, V=T, H=1)`` (each completion is a single "token"; ``T ≥ 2``). Sequence-level
quantities — every estimator except token-averaged IPO, and every metric — do not depend on
the token structure, so this only matters for ``ipo --average token`` (divides by ``H``).

Unknown keys are refused (a misspelt optional key would otherwise silently change the default
classes ``genver fit`` picks).

Pairs file (``.npz``)
---------------------
``pairs`` (N, 3) integer: prompt ``x``, preferred completion ``y⁺``, dispreferred ``y⁻``
(completion indices in ``[0, T)``).

Errors
------
Every problem raises ``ValueError`` with one line ``"<file>: <key>: <what is wrong>"``; the
checks are the library's own (:meth:`TreeSpace.check_array`, :class:`Policy`,
:func:`check_prompt_weights`, the class constructors, :meth:`Preferences.from_array`), with
their messages prefixed by the file and key.

Writing: :func:`save_instance` and :func:`save_pairs` write atomically (:mod:`genver.atomic`):
the file appears whole or not at all, and a failed write leaves an existing file as it was.
"""
from __future__ import annotations

import os
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np

from ._validation import check_beta, check_prompt_weights
from .atomic import atomic_open
from .classes import FinitePolicyClass, FiniteRewardClass, LinearRewardClass
from .policy import Policy
from .preferences import Preferences
from .spaces import TreeSpace

__all__ = ["InstanceFile", "load_instance", "load_pairs", "save_instance", "save_pairs",
           "INSTANCE_KEYS", "PAIRS_KEYS"]

REQUIRED_KEYS = ("ref_logp", "reward_true", "beta")
OPTIONAL_KEYS = ("prompt_weights", "V", "H", "reward_class", "policy_class", "reward_features")
INSTANCE_KEYS = REQUIRED_KEYS + OPTIONAL_KEYS
PAIRS_KEYS = ("pairs",)


@dataclass(frozen=True)
class InstanceFile:
    """A validated instance file (a sweep's instances are
    :class:`genver.experiments.generators.Instance`). ``token_level`` is False for a bandit
    file (no ``V``/``H``), whose
    ``space`` is then ``TreeSpace(P, V=T, H=1)``. Optional classes are ``None`` when absent."""

    path: str
    space: TreeSpace
    ref: Policy
    reward_true: np.ndarray
    beta: float
    prompt_weights: np.ndarray | None
    token_level: bool
    reward_class: FiniteRewardClass | None = None
    policy_class: FinitePolicyClass | None = None
    reward_features: LinearRewardClass | None = None

    @property
    def rho(self) -> np.ndarray:
        """``ρ`` (uniform when the file has no ``prompt_weights``)."""
        return check_prompt_weights(self.prompt_weights, self.space.P)


def _one_line(msg: object) -> str:
    return " ".join(str(msg).split())


@contextmanager
def _context(fname: str, key: str | None, *aliases: str):
    """Re-raise ``ValueError`` as ``"<fname>: <key>: <message>"``; a leading ``key`` or alias
    (the name the library used for the argument) is dropped from the message."""
    try:
        yield
    except ValueError as e:
        msg = _one_line(e)
        if key is None:
            raise ValueError(f"{fname}: {msg}") from None
        for name in (key, *aliases):
            if msg.startswith(name + " ") or msg.startswith(name + ":"):
                msg = msg[len(name):].lstrip(" :")
                break
        raise ValueError(f"{fname}: {key}: {msg}") from None


def _read_npz(path, allowed: tuple[str, ...]) -> tuple[str, dict]:
    fname = os.fspath(path)
    try:
        z = np.load(fname, allow_pickle=False)
    except FileNotFoundError:
        raise ValueError(f"{fname}: cannot read: no such file") from None
    except IsADirectoryError:
        raise ValueError(f"{fname}: cannot read: is a directory") from None
    except ValueError:  # numpy: neither .npy nor .npz magic (text, pickle, garbage)
        raise ValueError(f"{fname}: cannot read: not a numpy .npz archive") from None
    except Exception as e:  # PermissionError and other OSError, BadZipFile, EOFError, ...
        raise ValueError(f"{fname}: cannot read: {type(e).__name__}: {_one_line(e)}") from None
    if not isinstance(z, np.lib.npyio.NpzFile):
        raise ValueError(f"{fname}: cannot read: a single .npy array, expected an .npz archive "
                         f"with keys {', '.join(allowed)}")
    with z:
        try:
            keys = list(z.files)
        except Exception as e:  # pragma: no cover
            raise ValueError(f"{fname}: cannot read: {type(e).__name__}: {_one_line(e)}") from None
        unknown = [k for k in keys if k not in allowed]
        if unknown:
            raise ValueError(f"{fname}: {unknown[0]}: unknown key (allowed keys: {', '.join(allowed)})")
        arrays = {}
        for k in keys:
            try:
                arrays[k] = z[k]
            except Exception as e:  # object arrays (need pickle), corrupt members, ...
                raise ValueError(f"{fname}: {k}: cannot read array ({type(e).__name__}: {_one_line(e)})") from None
    return fname, arrays


def _real_array(fname: str, key: str, a: np.ndarray, ndim: int) -> np.ndarray:
    """Dtype (real: integer or floating, not bool) and number of axes; shape details are left
    to the library's checks."""
    if a.dtype == np.bool_ or not (np.issubdtype(a.dtype, np.integer) or np.issubdtype(a.dtype, np.floating)):
        raise ValueError(f"{fname}: {key}: must be a real (float or integer) array, got dtype {a.dtype}")
    if a.ndim != ndim:
        raise ValueError(f"{fname}: {key}: must have {ndim} axes, got shape {a.shape}")
    return a


def _int_scalar(fname: str, key: str, a: np.ndarray) -> int:
    if a.ndim != 0:
        raise ValueError(f"{fname}: {key}: must be a scalar, got shape {a.shape}")
    if a.dtype == np.bool_ or not np.issubdtype(a.dtype, np.integer):
        raise ValueError(f"{fname}: {key}: must be an integer, got dtype {a.dtype}")
    return int(a)


def _validate_instance(fname: str, d: dict) -> InstanceFile:
    for k in REQUIRED_KEYS:
        if k not in d:
            raise ValueError(f"{fname}: {k}: missing required key (the file has: {', '.join(d) or 'no keys'})")

    # beta
    b = np.asarray(d["beta"])
    if b.ndim != 0:
        raise ValueError(f"{fname}: beta: must be a scalar, got shape {b.shape}")
    if b.dtype == np.bool_ or not (np.issubdtype(b.dtype, np.integer) or np.issubdtype(b.dtype, np.floating)):
        raise ValueError(f"{fname}: beta: must be a real number, got dtype {b.dtype}")
    with _context(fname, "beta"):
        beta = check_beta(b[()])

    # the space
    ref_logp = _real_array(fname, "ref_logp", np.asarray(d["ref_logp"]), 2)
    P, T = ref_logp.shape
    has_v, has_h = "V" in d, "H" in d
    if has_v != has_h:
        present, absent = ("V", "H") if has_v else ("H", "V")
        raise ValueError(f"{fname}: {absent}: missing ({present} is given; give both V and H, or neither for a bandit)")
    if has_v:
        V = _int_scalar(fname, "V", np.asarray(d["V"]))
        H = _int_scalar(fname, "H", np.asarray(d["H"]))
        with _context(fname, "V"):
            if V < 2:
                raise ValueError(f"must be >= 2, got {V}")
        with _context(fname, "H"):
            if H < 1:
                raise ValueError(f"must be >= 1, got {H}")
            if V**H != T:  # Python ints: exact
                raise ValueError(f"V**H = {V}**{H} = {V**H} does not match T = {T} "
                                 f"(ref_logp has shape {ref_logp.shape})")
        token_level = True
    else:
        if T < 2:
            raise ValueError(f"{fname}: ref_logp: a bandit instance (no V/H) needs T >= 2 completions, "
                             f"got shape {ref_logp.shape}")
        V, H, token_level = T, 1, False
    if P < 1:
        raise ValueError(f"{fname}: ref_logp: needs at least one prompt, got shape {ref_logp.shape}")
    with _context(fname, "ref_logp"):
        space = TreeSpace(P, V, H)
    with _context(fname, "ref_logp"):
        ref = Policy(space, ref_logp, name="ref_logp")

    reward_true = _real_array(fname, "reward_true", np.asarray(d["reward_true"]), 2)
    with _context(fname, "reward_true"):
        reward_true = space.check_array("reward_true", reward_true)

    rho = None
    if "prompt_weights" in d:
        rho = _real_array(fname, "prompt_weights", np.asarray(d["prompt_weights"]), 1)
        with _context(fname, "prompt_weights"):
            rho = check_prompt_weights(rho, P)

    reward_class = policy_class = features = None
    if "reward_class" in d:
        a = _real_array(fname, "reward_class", np.asarray(d["reward_class"]), 3)
        with _context(fname, "reward_class", "tables"):
            reward_class = FiniteRewardClass(space, a)
    if "policy_class" in d:
        a = _real_array(fname, "policy_class", np.asarray(d["policy_class"]), 3)
        with _context(fname, "policy_class", "logp"):
            policy_class = FinitePolicyClass(space, a)
    if "reward_features" in d:
        a = _real_array(fname, "reward_features", np.asarray(d["reward_features"]), 3)
        with _context(fname, "reward_features", "phi"):
            features = LinearRewardClass(space, a)
    return InstanceFile(path=fname, space=space, ref=ref, reward_true=reward_true, beta=beta,
                    prompt_weights=rho, token_level=token_level, reward_class=reward_class,
                    policy_class=policy_class, reward_features=features)


def load_instance(path) -> InstanceFile:
    """Read and validate an instance ``.npz`` (see the module docstring).

    Parameters
    ----------
    path : str or os.PathLike
        The instance file.

    Returns
    -------
    InstanceFile
        The validated instance (space, ``π_ref``, ``r*``, ``β``, ``ρ`` and the optional classes).

    Raises
    ------
    ValueError
        One line ``"<file>: <key>: ..."`` on any problem.
    """
    fname, d = _read_npz(path, INSTANCE_KEYS)
    return _validate_instance(fname, d)


def load_pairs(path, space: TreeSpace, self_pairs: str = "drop") -> Preferences:
    """Read and validate a pairs ``.npz`` (key ``pairs``, (N, 3) integers) for ``space``.

    Parameters
    ----------
    path : str or os.PathLike
        The pairs file.
    space : TreeSpace
        The instance's tree; prompts and completions are checked against it.
    self_pairs : {"drop", "keep", "error"}
        What to do with rows ``y⁺ = y⁻`` (see :meth:`Preferences.from_array`).

    Returns
    -------
    Preferences
        The pairs, in file order.
    """
    fname, d = _read_npz(path, PAIRS_KEYS)
    if "pairs" not in d:
        raise ValueError(f"{fname}: pairs: missing required key (the file has: {', '.join(d) or 'no keys'})")
    with _context(fname, "pairs"):
        return Preferences.from_array(space, d["pairs"], name="pairs", self_pairs=self_pairs)


def _as_array(v):
    if isinstance(v, Policy):
        return v.logp
    if isinstance(v, FiniteRewardClass):
        return v.tables
    if isinstance(v, FinitePolicyClass):
        return v.logp
    if isinstance(v, LinearRewardClass):
        return v.phi
    return np.asarray(v)


def save_instance(path, *, ref_logp, reward_true, beta, prompt_weights=None, V=None, H=None,
                  reward_class=None, policy_class=None, reward_features=None) -> InstanceFile:
    """Validate and write an instance ``.npz`` to exactly ``path``.

    ``ref_logp`` may be a :class:`Policy`, ``reward_class`` a :class:`FiniteRewardClass`,
    ``policy_class`` a :class:`FinitePolicyClass` and ``reward_features`` a
    :class:`LinearRewardClass`, or plain arrays. Omit ``V`` and ``H`` for a bandit instance.

    Parameters
    ----------
    path : str or os.PathLike
        Where to write (atomically; no ``.npz`` is appended).
    ref_logp : Policy or array_like
        ``log π_ref(y|x)``, shape ``(P, T)``.
    reward_true : array_like
        ``r*``, shape ``(P, T)``.
    beta : float
        The KL weight ``β > 0``.
    prompt_weights : array_like or None
        ``ρ``, shape ``(P,)``; ``None``: uniform (the key is omitted).
    V, H : int or None
        Vocabulary size and horizon (both or neither).
    reward_class : FiniteRewardClass, array_like or None
        Finite reward class, shape ``(K_R, P, T)``.
    policy_class : FinitePolicyClass, array_like or None
        Finite policy class (log-probs), shape ``(K_Π, P, T)``.
    reward_features : LinearRewardClass, array_like or None
        Features ``φ`` of the linear reward class, shape ``(P, T, d)``.

    Returns
    -------
    InstanceFile
        The validated instance, the one :func:`load_instance` will read back.
    """
    fname = os.fspath(path)
    d = {"ref_logp": _as_array(ref_logp), "reward_true": _as_array(reward_true), "beta": np.asarray(beta)}
    for k, v in (("prompt_weights", prompt_weights), ("V", V), ("H", H), ("reward_class", reward_class),
                 ("policy_class", policy_class), ("reward_features", reward_features)):
        if v is not None:
            d[k] = _as_array(v)
    inst = _validate_instance(fname, d)  # refuse to write an invalid file
    with atomic_open(fname) as f:  # a file object: numpy does not append ".npz"
        np.savez(f, **d)
    return inst


def save_pairs(path, pairs, space: TreeSpace | None = None) -> None:
    """Write a pairs ``.npz`` atomically.

    Parameters
    ----------
    path : str or os.PathLike
        Where to write.
    pairs : Preferences or array_like of int
        The pairs, or an ``(N, 3)`` integer array of ``(x, y⁺, y⁻)`` rows.
    space : TreeSpace or None
        When given (and ``pairs`` is an array), the rows are validated against it; self-pairs
        are saved as given (loading decides).
    """
    fname = os.fspath(path)
    if isinstance(pairs, Preferences):
        arr = pairs.as_array()
    else:
        arr = np.asarray(pairs)
        if space is not None:
            with _context(fname, "pairs"):
                Preferences.from_array(space, arr, name="pairs", self_pairs="keep")  # saved as given; loading decides
        elif arr.ndim != 2 or arr.shape[1] != 3 or not np.issubdtype(arr.dtype, np.integer):
            raise ValueError(f"{fname}: pairs: must be an (N, 3) integer array, "
                             f"got shape {arr.shape}, dtype {arr.dtype}")
    with atomic_open(fname) as f:
        np.savez(f, pairs=arr)
