"""A run's manifest (``DIR/manifest.json``, :mod:`genver.experiments.store`): written when a run
starts, and checked when one resumes.

A resumed run must have the spec (and ``--smoke`` flag) that started it — otherwise it is refused,
naming the first key that differs — and the versions of :data:`PROVENANCE_PACKAGES` and the git
commit of a run that wrote it: a resume with other code is refused unless
``allow_version_change``, and the manifest's ``contributors`` then lists every (versions,
commit) that wrote a shard. Every shard also records its writer's provenance
(:mod:`genver.experiments.provenance`), from which :func:`genver.experiments.runner.repair`
rebuilds a lost manifest.
"""
from __future__ import annotations

import logging

from .lock import now_iso
from .provenance import git_commit, package_versions

__all__ = ["PROVENANCE_PACKAGES"]

#: the run's logger: a refused resume is logged as ``genver run``'s own record, as before this module
log = logging.getLogger("genver.experiments.runner")

#: a resumed run refuses to mix results of other versions of these packages (or another commit)
PROVENANCE_PACKAGES = ("genver", "numpy", "scipy", "numba")


def _first_difference(old: dict, new: dict, old_smoke, new_smoke) -> str:
    """``"key a.b: was X, now Y"`` for the first differing key (depth first, keys sorted) of
    the stored and the given spec, ``--smoke`` first."""
    if bool(old_smoke) != bool(new_smoke):
        return f"--smoke: was {'on' if old_smoke else 'off'}, now {'on' if new_smoke else 'off'}"

    def walk(a, b, path):
        if isinstance(a, dict) and isinstance(b, dict):
            for k in sorted(set(a) | set(b), key=str):
                key = f"{path}.{k}" if path else str(k)
                if k not in a:
                    return f"key {key}: was absent, now {b[k]!r}"
                if k not in b:
                    return f"key {key}: was {a[k]!r}, now absent"
                found = walk(a[k], b[k], key)
                if found:
                    return found
            return None
        return None if a == b else f"key {path}: was {a!r}, now {b!r}"

    return walk(old, new, "") or "the spec hash differs (no key differs: the spec format changed)"


def provenance_of(versions: dict, commit) -> dict:
    """One contributor of a run as the manifest lists it: the :data:`PROVENANCE_PACKAGES` versions and the commit."""
    return {"versions": {k: versions.get(k) for k in PROVENANCE_PACKAGES}, "git_commit": commit}


def _contributors(man: dict) -> list:
    """Every (versions, commit) that wrote to the run (older manifests: the first run's)."""
    if man.get("contributors"):
        return man["contributors"]
    return [provenance_of(man.get("versions", {}), man.get("git_commit"))]


def _describe_provenance(p: dict) -> str:
    """A contributor in words: ``genver 0.1.0, numpy …, commit abc123``."""
    v = p["versions"]
    return ", ".join(f"{k} {v.get(k)}" for k in PROVENANCE_PACKAGES) + f", commit {p.get('git_commit') or 'unknown'}"


def _check_versions(store, man: dict, current: dict, allow: bool) -> bool:
    """Refuse to resume with other versions or another commit unless ``allow``; returns
    whether ``current`` is new to the run (then it is added to the manifest's contributors)."""
    known = _contributors(man)
    if current in known:
        return False
    if not allow:
        last = known[-1]
        diff = [k for k in PROVENANCE_PACKAGES if last["versions"].get(k) != current["versions"].get(k)]
        if last.get("git_commit") != current.get("git_commit"):
            diff.append("git commit")
        log.info("%s: resume refused: %s changed since the run was written", store.root, ", ".join(diff))
        raise ValueError(f"{store.root}: was written with {_describe_provenance(last)}; this is "
                         f"{_describe_provenance(current)} ({', '.join(diff)} changed): resuming would mix results "
                         f"of different code; use a new --out, or pass --allow-version-change (the manifest then "
                         f"lists every version that contributed)")
    return True


def start_manifest(store, spec, spec_path, *, resume, exists, smoke, allow_version_change, n_units, err) -> None:
    """Write a new run's manifest, or check a resumed run's spec and versions (adding this
    genver as a contributor when allowed); set the provenance every shard will carry."""
    versions, commit = package_versions(), git_commit()
    current = provenance_of(versions, commit)
    if resume and exists:
        man = store.read_manifest()
        if man.get("spec_hash") != spec.hash():
            diff = _first_difference(man.get("spec", {}), spec.raw["spec"], man.get("smoke"), smoke)
            log.info("%s: resume refused: the spec differs (%s)", store.root, diff)
            raise ValueError(f"{store.root}: was started with a different spec (or --smoke setting); refusing to mix "
                             f"results: {diff}")
        if _check_versions(store, man, current, allow_version_change):
            man["contributors"] = _contributors(man) + [current]
            print(f"genver: {store.root}: continuing with {_describe_provenance(current)} "
                  f"(--allow-version-change; the manifest lists every contributor)", file=err)
            store.write_manifest(man)
    else:
        man = {"spec": spec.raw["spec"], "spec_path": str(spec_path), "spec_hash": spec.hash(), "smoke": smoke,
               "experiment": spec.name, "knobs": spec.knobs, "expected": spec.expected, "expect": spec.expect,
               "versions": versions, "git_commit": commit, "contributors": [current], "started": now_iso(),
               "finished": None, "units_total": n_units}
        store.write_manifest(man)
    store.provenance = {"versions": versions, "git_commit": commit, "spec": spec.raw["spec"], "smoke": smoke,
                        "spec_hash": spec.hash(), "spec_path": str(spec_path)}
