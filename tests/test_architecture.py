"""docs/architecture.md's recipe, followed literally: a toy estimator in one file plus its
registry entry, run through a spec at smoke size; and the dispatch rules the page states.

The toy estimator returns ``π_mix = (1 − mix)·π_ref + mix·uniform`` (it ignores the data), so
every metric row has a closed form computed here with numpy from the instance alone."""
from __future__ import annotations

import ast
import os
import pathlib
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from genver.classes import (
    FinitePolicyClass,
    FiniteRewardClass,
    LinearRewardClass,
    LogLinearPolicyClass,
    PolicyClass,
    RewardClass,
    SoftOptimalPolicyClass,
    TabularPolicyClass,
    TabularRewardClass,
)
from genver.estimators import dpo, reward_mle
from genver.experiments import registry
from genver.experiments.cells import make_instance
from genver.experiments.runner import run
from genver.experiments.spec import SpecError, load_spec, setting_id
from genver.experiments.store import ResultStore
from genver.policy import uniform_policy
from genver.preferences import PairCounts
from genver.spaces import TreeSpace

TOY = '''
"""A toy sweep estimator: the mixture of the reference and the uniform policy."""
import numpy as np

from genver.estimators import FitResult
from genver.policy import Policy


def fit(instance, counts, rng, options):
    mix = options.get("mix", 0.5)
    sp = instance.space
    probs = (1.0 - mix) * instance.ref.probs + mix / sp.T
    return FitResult("toy_mix", 0.0, policy=Policy.from_probs(sp, probs))
'''

SPEC = '''
[experiment]
name = "toy"
generator = "finite_gap"

[instance]
P = 3
V = 2
H = 3
K_R = 3

[grid]
n_distractors = [0, 4]

[data]
sizes = [8, 64]
seeds = 2

[[estimators]]
name = "toy_mix"
label = "toy"
mix = {mix}

[[estimators]]
name = "rm_rl"
label = "online"

[metrics]
names = ["kl_to_reference", "expected_reward"]

[smoke]
"data.seeds" = 2
'''


@pytest.fixture
def toy_registered(tmp_path, monkeypatch):
    """The page's two steps: the estimator in one file, then its registry entry."""
    (tmp_path / "toy_estimator.py").write_text(TOY)
    monkeypatch.syspath_prepend(str(tmp_path))
    registry.register_estimator("toy_mix", "toy_estimator:fit", {"mix": float}, route="offline")
    yield tmp_path
    del registry.ESTIMATORS["toy_mix"]  # the entry lives for this test only


def _mix_values(inst, mix):
    """kl_to_reference and expected_reward of π_mix, by numpy from the instance."""
    p_ref = np.exp(inst.ref.logp)
    p = (1.0 - mix) * p_ref + mix / inst.space.T
    rho = np.full(inst.space.P, 1.0 / inst.space.P) if inst.prompt_weights is None else inst.prompt_weights
    kl = (p * (np.log(p) - np.log(p_ref))).sum(axis=1) @ rho
    er = (p * inst.reward_true).sum(axis=1) @ rho
    return {"kl_to_reference": kl, "expected_reward": er}


def test_toy_estimator_runs_through_a_spec_at_smoke_size(toy_registered):
    path = toy_registered / "toy.toml"
    path.write_text(SPEC.format(mix=0.25))
    spec = load_spec(path, smoke=True)
    assert [e["route"] for e in spec.estimators] == ["offline", "online"]  # the entry's default route
    out = toy_registered / "out"
    run(path, out, smoke=True, progress=False)
    df = ResultStore(out).load()
    toy = df[df.estimator == "toy"]
    # one row per (setting, seed, n, metric)
    assert len(toy) == 2 * 2 * 2 * 2 and set(toy.route) == {"offline"}
    for (sid, seed), rows in toy.groupby(["setting_id", "seed"]):
        params = next(p for p in spec.settings() if setting_id(p) == sid)
        want = _mix_values(make_instance(spec.generator, params, spec.root_seed, int(seed)), 0.25)
        wrong = _mix_values(make_instance(spec.generator, params, spec.root_seed, int(seed)), 0.5)
        for m, v in want.items():
            got = rows[rows.metric == m].value.to_numpy()
            np.testing.assert_allclose(got, v, rtol=1e-12, atol=1e-15)
            assert not np.allclose(got, wrong[m], rtol=1e-6)  # a different mix is told apart
    assert (df.estimator == "online").sum() == len(toy)  # the built-in estimators still run beside it


def test_toy_estimator_options_are_validated_by_its_schema(toy_registered):
    path = toy_registered / "bad.toml"
    path.write_text(SPEC.format(mix=0.25).replace("mix = 0.25", "mixx = 0.25"))
    with pytest.raises(SpecError, match=r"estimators\.0.*mixx"):
        load_spec(path, smoke=True)
    with pytest.raises(ValueError, match="route must be offline, online or other"):
        registry.register_estimator("toy_bad", "toy_estimator:fit", route="sideways")


def test_registry_needs_neither_numba_nor_torch_to_validate():
    code = textwrap.dedent("""
        import sys
        import genver.experiments.registry as R
        assert "numba" not in sys.modules and "torch" not in sys.modules, sorted(sys.modules)
        assert R.ESTIMATORS["neural_dpo"].options["d_model"] is int
        assert R.metric_kind("bon_reward@4") == "reward" and R.metric_kind("bon_reward@0") is None
        print("ok")
    """)
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert res.returncode == 0 and res.stdout.strip() == "ok", res.stderr


def test_every_class_satisfies_its_protocol_and_reports_what_it_is():
    sp = TreeSpace(2, 2, 2)
    rng = np.random.default_rng(0)
    ref = uniform_policy(sp)
    R_fin = FiniteRewardClass(sp, rng.standard_normal((3, sp.P, sp.T)))
    R_lin = LinearRewardClass(sp, rng.standard_normal((sp.P, sp.T, 2)))
    psi = rng.standard_normal((sp.P, sp.n_internal, sp.V, 2))
    policies = [TabularPolicyClass(sp), FinitePolicyClass.soft_optimal_of(R_fin, ref, 1.0),
                LogLinearPolicyClass(sp, ref, psi), SoftOptimalPolicyClass(R_fin, ref, 1.0),
                SoftOptimalPolicyClass(R_lin, ref, 1.0)]
    for pc in policies:
        assert isinstance(pc, PolicyClass)
    for rc in (R_fin, R_lin, TabularRewardClass(sp)):
        assert isinstance(rc, RewardClass)
    tab, fin, loglin, so_fin, so_lin = policies
    assert tab.as_finite() is None and loglin.as_finite() is None and so_lin.as_finite() is None
    assert fin.as_finite() is fin
    np.testing.assert_array_equal(so_fin.as_finite().logp, fin.logp)  # Π(R) of a finite R is its member list
    assert R_fin.as_finite() is R_fin and R_lin.as_finite() is None
    # sizes: |R| = 3, P·(T − 1) tabular parameters, d = 2 features
    assert (R_fin.size, R_fin.n_params, tab.n_params, R_lin.n_params) == (3, None, sp.P * (sp.T - 1), 2)
    # a draw from a finite R is one of its members; from a linear R, w·φ for w ~ N(0, I)
    r = R_fin.draw(np.random.default_rng(5))
    assert any(np.array_equal(r, t) for t in R_fin.tables)
    w = np.random.default_rng(6).standard_normal(2)
    np.testing.assert_array_equal(R_lin.draw(np.random.default_rng(6)), R_lin.phi @ w)


def test_rl_argmax_many_equals_one_call_per_reward_for_every_class():
    sp = TreeSpace(2, 2, 2)
    rng = np.random.default_rng(1)
    ref = uniform_policy(sp)
    rewards = [rng.standard_normal(sp.shape) for _ in range(3)]
    R_fin = FiniteRewardClass(sp, rng.standard_normal((3, sp.P, sp.T)))
    for pc in (TabularPolicyClass(sp), FinitePolicyClass.soft_optimal_of(R_fin, ref, 1.0)):
        many = pc.rl_argmax_many(rewards, ref, 1.0)
        for r, m in zip(rewards, many):
            one = pc.rl_argmax(r, ref, 1.0)
            np.testing.assert_array_equal(m.policy.logp, one.policy.logp)
            assert m.objective == one.objective and m.index == one.index


def test_an_unregistered_class_is_refused_naming_the_estimator_and_the_class():
    sp = TreeSpace(1, 2, 1)
    c = PairCounts(sp, np.array([0]), np.array([0]), np.array([1]), np.array([1.0]))

    class Stranger:
        space = sp

    with pytest.raises(ValueError, match="dpo: unsupported policy class Stranger"):
        dpo(c, Stranger(), uniform_policy(sp), 1.0)
    with pytest.raises(ValueError, match="reward_mle: unsupported reward class Stranger"):
        reward_mle(c, Stranger())


def test_no_class_type_dispatch_in_the_estimators():
    """The page's rule, checked on the source: every isinstance in genver/estimators/ tests a
    data argument (Policy, Preferences, PairCounts, Demonstrations, TreeSpace, arrays), never a
    class family."""
    import re

    root = pathlib.Path(__file__).resolve().parent.parent / "genver" / "estimators"
    families = re.compile(r"isinstance\([^)]*(PolicyClass|RewardClass)")
    hits = [f"{p.name}:{i}" for p in sorted(root.glob("*.py"))
            for i, line in enumerate(p.read_text().splitlines(), 1) if families.search(line)]
    assert hits == []
    assert families.search("if isinstance(policy_class, TabularPolicyClass):")  # the check would catch one


# --------------------------------------------------------------------------- no cross-module private names
ROOT = pathlib.Path(__file__).resolve().parent.parent

#: the allowances of the rule, each with its reason
PRIVATE_IMPORT_ALLOWED = {
    # the numba kernels are one private package: its submodules share their private kernels
    # (``_x_ser`` / ``_x_par`` drivers, ``_exp_poly``, ...) and ``genver/_kernels/__init__.py`` is
    # their one front door; nothing outside the package imports a private kernel by name
    "the numba kernels package": lambda importer, source: (importer.startswith("genver._kernels")
                                                            and source.startswith("genver._kernels")),
}


def _genver_modules():
    """``(dotted name, is package, path)`` of every module of genver/ and of theory/ (installed
    as ``genver.theory``); links (a checkout's ``genver/theory`` pointing at ``theory/``) skipped."""
    out = []
    for top, prefix in ((ROOT / "genver", ("genver",)), (ROOT / "theory", ("genver", "theory"))):
        for folder, dirs, files in os.walk(top):
            dirs[:] = sorted(d for d in dirs if not os.path.islink(os.path.join(folder, d)) and d != "__pycache__")
            rel = pathlib.Path(folder).relative_to(top).parts
            for f in sorted(files):
                if f.endswith(".py"):
                    parts = prefix + rel + (() if f == "__init__.py" else (f[:-3],))
                    out.append((".".join(parts), f == "__init__.py", pathlib.Path(folder) / f))
    return out


def _is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _private_uses(modname: str, is_package: bool, source: str, modules: set[str]) -> list[str]:
    """Every ``from <genver module> import _name`` and ``<genver module or name>._name`` in
    ``source`` (the module ``modname``) where ``_name`` is another module's private name. Importing
    a private *module* (``from genver import _kernels``, ``from . import _solve``) is how a private
    module is used, and allowed; so are dunder names and :data:`PRIVATE_IMPORT_ALLOWED`."""
    tree = ast.parse(source)
    bound: dict[str, str] = {}  # local name -> the genver module it came from
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = modname.split(".") if is_package else modname.split(".")[:-1]
                base = base[: len(base) - node.level + 1]
                src = ".".join(base + ([node.module] if node.module else []))
            else:
                src = node.module or ""
            if src.split(".")[0] != "genver":
                continue
            for a in node.names:
                bound[a.asname or a.name] = src
                if not _is_private(a.name) or f"{src}.{a.name}" in modules:
                    continue
                if any(ok(modname, src) for ok in PRIVATE_IMPORT_ALLOWED.values()):
                    continue
                out.append(f"{modname}:{node.lineno}: from {src} import {a.name}")
        elif isinstance(node, ast.Import):
            for a in node.names:
                if a.name.split(".")[0] == "genver":
                    bound[a.asname or a.name.split(".")[0]] = a.name
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Attribute) and _is_private(node.attr)):
            continue
        root = node.value
        while isinstance(root, ast.Attribute):
            root = root.value
        if (isinstance(root, ast.Name) and root.id in bound
                and not any(ok(modname, bound[root.id]) for ok in PRIVATE_IMPORT_ALLOWED.values())):
            out.append(f"{modname}:{node.lineno}: {ast.unparse(node)}")
    return out


def test_no_module_uses_another_modules_private_names():
    mods = _genver_modules()
    names = {m for m, _, _ in mods}
    assert {"genver.stats._tables", "genver.theory.runner", "genver._kernels.backward"} <= names  # walk reaches all
    hits = [h for m, pkg, p in mods for h in _private_uses(m, pkg, p.read_text(), names)]
    assert hits == []


def test_the_private_name_check_catches_a_bad_import_and_allows_private_modules():
    names = {m for m, _, _ in _genver_modules()}
    bad = textwrap.dedent("""
        from ._tables import to_python, _hidden
        from genver.experiments.executors import run_batch, _worker_name
        from .. import _kernels, _solve
        from ..classes import finite_policies
        from .bootstrap import __all__
        x = finite_policies.FinitePolicyClass._trusted
        y = finite_policies._helper(_kernels.exp_poly)
    """)
    assert _private_uses("genver.stats.curves", False, bad, names) == [
        "genver.stats.curves:2: from genver.stats._tables import _hidden",
        "genver.stats.curves:3: from genver.experiments.executors import _worker_name",
        "genver.stats.curves:7: finite_policies.FinitePolicyClass._trusted",
        "genver.stats.curves:8: finite_policies._helper",
    ]
    # the kernels package may share its private kernels among its own modules, and only there
    kernels = "from .poly import _exp_poly\n"
    assert _private_uses("genver._kernels.backward", False, kernels, names) == []
    assert _private_uses("genver.softrl", False, "from ._kernels.poly import _exp_poly\n", names) == [
        "genver.softrl:1: from genver._kernels.poly import _exp_poly"]
