"""The package as a user installs it: the wheel's contents and metadata, and a run of a shipped
spec by name from a fresh virtual environment outside the checkout.

The wheel is built from this checkout (``pip wheel --no-deps --no-build-isolation``, setuptools
from the ``test`` extra) and installed with ``--no-deps`` into a new virtual environment; that
environment sees the test environment's third-party packages through a ``.pth`` line (so no
download is needed), but not its editable genver: a ``.pth`` line adds a folder to ``sys.path``
without running the ``.pth`` hooks inside it, and it is checked that ``genver`` is imported from
the new environment.
"""
from __future__ import annotations

import email.parser
import os
import pathlib
import site
import subprocess
import sys
import venv
import zipfile

import pandas as pd
import pytest

import genver
from genver.experiments.catalog import resolve_spec, shipped_specs, spec_summaries

ROOT = pathlib.Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> pathlib.Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(out), str(ROOT)], check=True, cwd=out)
    (whl,) = out.glob("genver-*.whl")
    return whl


def test_wheel_ships_licence_specs_main_and_one_version(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    specs = sorted(n for n in names if n.startswith("genver/sims/") and n.endswith(".toml"))
    assert [pathlib.Path(n).stem for n in specs] == sorted(p.stem for p in (ROOT / "sims").glob("*.toml"))
    assert "genver/__main__.py" in names and "genver/experiments/quickstart.toml" in names
    # every module of the checkout's packages is in the wheel (a package missing from pyproject's
    # list would ship without its modules)
    want = {str(f.relative_to(ROOT)) for f in (ROOT / "genver").rglob("*.py") if "__pycache__" not in f.parts}
    want |= {"genver/theory/" + f.name for f in (ROOT / "theory").glob("*.py")}
    assert want <= set(names), sorted(want - set(names))
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)
    meta_name = next(n for n in names if n.endswith(".dist-info/METADATA"))
    meta = email.parser.Parser().parsestr(zipfile.ZipFile(wheel).read(meta_name).decode())
    assert meta["Version"] == genver.__version__
    assert meta["License-Expression"] == "MIT"
    assert meta["License-File"] == "LICENSE"
    # the version is written once: CITATION.cff must agree with it
    cff = (ROOT / "CITATION.cff").read_text()
    assert f'version: "{genver.__version__}"' in cff


def test_run_shipped_spec_by_name_from_fresh_venv(wheel, tmp_path):
    # without the caller's PYTHONPATH: a checkout on it would count as genver already installed
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=False)
    py = env_dir / "bin" / "python"
    new_site = pathlib.Path(subprocess.run([str(py), "-c", "import site; print(site.getsitepackages()[0])"],
                                           check=True, capture_output=True, text=True, env=env).stdout.strip())
    (new_site / "_test_env_deps.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    subprocess.run([sys.executable, "-m", "pip", "--python", str(py), "install", "--no-deps", "-q", str(wheel)],
                   check=True, env=env)
    work = tmp_path / "elsewhere"
    work.mkdir()
    where = subprocess.run([str(py), "-c", "import genver, genver.sims; print(genver.__file__)"],
                           check=True, capture_output=True, text=True, cwd=work, env=env).stdout.strip()
    assert pathlib.Path(where).is_relative_to(env_dir), where  # not the checkout's editable genver
    listed = subprocess.run([str(py), "-m", "genver", "specs"], check=True, capture_output=True, text=True,
                            cwd=work, env=env).stdout
    assert "gap_finite" in listed and "scale_horizon" in listed
    run = subprocess.run([str(env_dir / "bin" / "genver"), "run", "gap_finite", "--smoke", "--out", "res"],
                         capture_output=True, text=True, cwd=work, env=env)
    assert run.returncode == 0, run.stderr
    from genver.experiments.report import load_results
    from genver.experiments.runner import run as run_here
    run_here(ROOT / "sims" / "gap_finite.toml", tmp_path / "here", smoke=True, progress=False)
    keys = ["setting_id", "seed", "estimator", "metric", "n"]
    a = load_results(work / "res")[1].sort_values(keys).reset_index(drop=True)
    b = load_results(tmp_path / "here")[1].sort_values(keys).reset_index(drop=True)
    pd.testing.assert_frame_equal(a[keys + ["value"]], b[keys + ["value"]])


def test_spec_names_resolve_and_bad_names_are_named(tmp_path):
    specs = shipped_specs()
    assert set(specs) == {p.stem for p in (ROOT / "sims").glob("*.toml")}
    assert resolve_spec("gap_finite") == specs["gap_finite"] == resolve_spec("gap_finite.toml")
    own = tmp_path / "gap_finite.toml"
    own.write_text("x")
    assert resolve_spec(own) == own  # a path wins over a name
    with pytest.raises(ValueError, match=r"no such spec file 'gap_finit'.*gap_finite"):
        resolve_spec("gap_finit")
    questions = dict(spec_summaries())
    assert all(q.endswith("?") for q in questions.values()), questions


def test_python_m_genver():
    out = subprocess.run([sys.executable, "-m", "genver", "--version"], check=True, capture_output=True, text=True)
    assert out.stdout.strip() == f"genver {genver.__version__}"
