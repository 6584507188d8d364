"""Every public function and method of ``genver.*`` has a numpydoc docstring (issue 18).

Public means: listed in the module's ``__all__`` (or, without one, a name without a leading
underscore) and defined in that module; for a public class, its public methods (not inherited,
not dunder). Private modules (any dotted part starting with ``_``) and the data package
``genver.sims`` are not API. A docstring must exist; a callable with parameters (other than
``self`` / ``cls``) has a ``Parameters`` section naming each of them (``*args`` / ``**kwargs``
by their bare names, or as ``**name``); a callable that returns a value (a ``return`` with a
value, or a return annotation other than ``None``) has a ``Returns`` (or ``Yields``) section.
A property needs a docstring only. The check is made on the source (``ast``) so that it catches
a function whose docstring forgets a parameter the signature added later.
"""
from __future__ import annotations

import ast
import importlib
import inspect
import pkgutil
import re
import textwrap

import pytest

import genver
import genver.theory

SECTION = re.compile(r"^(Parameters|Returns|Yields|Other Parameters)\n-{3,}\n", re.M)


def _public_modules() -> list[str]:
    names = ["genver"]
    for pkg in (genver, genver.theory):
        for m in pkgutil.walk_packages(pkg.__path__, pkg.__name__ + "."):
            parts = m.name.split(".")[1:]
            if any(p.startswith("_") for p in parts) or m.name.startswith("genver.sims"):
                continue
            names.append(m.name)
    return sorted(set(names) | {"genver.theory"})


def _sections(doc: str) -> dict[str, str]:
    doc = textwrap.dedent(doc)
    # numpydoc: a section is a title line followed by a line of dashes
    heads = list(SECTION.finditer(doc))
    out = {}
    for i, h in enumerate(heads):
        end = heads[i + 1].start() if i + 1 < len(heads) else len(doc)
        out[h.group(1)] = doc[h.end():end]
    return out


def _documented_names(body: str) -> set[str]:
    names = set()
    for line in body.splitlines():
        if line and not line[0].isspace():
            for part in line.split(":")[0].split(","):
                names.add(part.strip().lstrip("*"))
    return names


def _returns_value(fn: ast.FunctionDef | ast.AsyncFunctionDef) -> bool:
    if fn.returns is not None:
        ann = ast.unparse(fn.returns)
        if ann in ("None", "'None'", '"None"', "NoReturn"):
            return False
        return True

    class Finder(ast.NodeVisitor):
        found = False

        def visit_Return(self, node):
            if node.value is not None and not (isinstance(node.value, ast.Constant) and node.value.value is None):
                self.found = True

        def visit_Yield(self, node):
            self.found = True

        visit_YieldFrom = visit_Yield

        def visit_FunctionDef(self, node):  # nested functions return for themselves
            pass

        visit_AsyncFunctionDef = visit_FunctionDef
        visit_Lambda = visit_FunctionDef

    f = Finder()
    for stmt in fn.body:
        f.visit(stmt)
    return f.found


def _problems(qualname: str, fn: ast.FunctionDef | ast.AsyncFunctionDef, is_method: bool) -> list[str]:
    decorators = {ast.unparse(d) for d in fn.decorator_list}
    doc = ast.get_docstring(fn)
    if not doc:
        return [f"{qualname}: no docstring"]
    if any(d.endswith("property") or d.endswith(".setter") for d in decorators):
        return []
    out = []
    sec = _sections(doc)
    args = fn.args
    params = [a.arg for a in args.posonlyargs + args.args + args.kwonlyargs]
    if is_method and params and params[0] in ("self", "cls") and "staticmethod" not in decorators:
        params = params[1:]
    params += [a.arg for a in (args.vararg, args.kwarg) if a is not None]
    if params:
        given = _documented_names(sec.get("Parameters", "") + sec.get("Other Parameters", ""))
        missing = [p for p in params if p not in given]
        if "Parameters" not in sec:
            out.append(f"{qualname}: no Parameters section")
        elif missing:
            out.append(f"{qualname}: Parameters does not name {missing}")
    if _returns_value(fn) and "Returns" not in sec and "Yields" not in sec:
        out.append(f"{qualname}: no Returns section")
    return out


def _public_callables(modname: str):
    mod = importlib.import_module(modname)
    try:
        tree = ast.parse(inspect.getsource(mod))
    except (OSError, TypeError):
        return
    exported = getattr(mod, "__all__", None)
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            public = node.name in exported if exported is not None else not node.name.startswith("_")
            if not public:
                continue
            if isinstance(node, ast.ClassDef):
                if not ast.get_docstring(node):
                    yield f"{modname}.{node.name}", None, False
                for sub in node.body:
                    if isinstance(sub, (ast.FunctionDef, ast.AsyncFunctionDef)) and not sub.name.startswith("_"):
                        yield f"{modname}.{node.name}.{sub.name}", sub, True
            else:
                yield f"{modname}.{node.name}", node, False


MODULES = _public_modules()


def test_the_public_modules_are_found():
    # the walk reaches every layer (a broken walk would pass every check below vacuously)
    for name in ("genver.policy", "genver.softrl", "genver.estimators.mle", "genver.experiments.runner",
                 "genver.stats.bootstrap", "genver.plots.curves", "genver.theory.thm_2_2"):
        assert name in MODULES
    assert not any(part.startswith("_") for m in MODULES for part in m.split(".")[1:])


@pytest.mark.parametrize("modname", MODULES)
def test_public_callables_have_numpydoc_docstrings(modname):
    problems = []
    for qualname, node, is_method in _public_callables(modname):
        problems += [f"{qualname}: no class docstring"] if node is None else _problems(qualname, node, is_method)
    assert not problems, "\n".join(problems)


def test_the_checker_catches_a_missing_parameter_and_a_missing_returns():
    src = textwrap.dedent('''
        def f(a, b):
            """Sum.

            Parameters
            ----------
            a : int
                first.
            """
            return a + b
    ''')
    fn = ast.parse(src).body[0]
    problems = _problems("f", fn, False)
    assert problems == ["f: Parameters does not name ['b']", "f: no Returns section"]
    good = textwrap.dedent('''
        def f(a, b):
            """Sum.

            Parameters
            ----------
            a, b : int
                the terms.

            Returns
            -------
            int
                the sum.
            """
            return a + b
    ''')
    assert _problems("f", ast.parse(good).body[0], False) == []
