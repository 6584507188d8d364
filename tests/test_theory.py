"""theory/ (genver.theory): every proposition's check passes in quick mode, its deliberately
broken variant is caught, and the runner's command line behaves (exit codes, --only, --json)."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from genver.theory import _common
from genver.theory.runner import format_table, main, run_checks, single_threaded

ROW_KEYS = {"check", "variant", "case", "discrepancy", "tolerance", "detail"}


@pytest.fixture(scope="module")
def quick_run():
    return run_checks(quick=True, random_state=0)


def test_registry_modules_are_well_formed():
    mods = _common.registry()
    assert list(mods) == list(_common.CHECK_IDS)
    for cid, mod in mods.items():
        assert mod.ID == cid
        assert isinstance(mod.STATEMENT, str) and mod.STATEMENT and "\n" not in mod.STATEMENT
        assert mod.TOLERANCE > 0
        assert "Proposition" in mod.__doc__ and "Broken variant" in mod.__doc__, cid


@pytest.mark.parametrize("cid", _common.CHECK_IDS)
def test_each_check_passes_and_catches_its_broken_variant(quick_run, cid):
    row = quick_run.set_index("id").loc[cid]
    assert row["cases"] >= 8
    assert row["max_discrepancy"] <= row["tolerance"], (cid, row["max_discrepancy"])
    assert row["broken_discrepancy"] > 10 * row["tolerance"], (cid, row["broken_discrepancy"])
    assert bool(row["passed"])


def test_rows_are_tidy(quick_run):
    rows = quick_run.attrs["rows"]
    assert ROW_KEYS <= set(rows.columns)
    assert set(rows["check"]) == set(_common.CHECK_IDS)
    assert set(rows["variant"]) == {"sound", "broken"}
    assert not rows["discrepancy"].isna().any()
    assert (rows["discrepancy"] >= 0).all()
    for cid, g in rows.groupby("check"):
        assert {"sound", "broken"} <= set(g["variant"]), cid
        assert g.loc[g.variant == "sound", "case"].is_unique
    # partial coverage is really exercised by the theorem checks
    thm = rows[(rows.check == "thm_2_2") & (rows.variant == "sound")]
    assert (thm["N"] < thm["P"] * thm["T"]).any() and (thm["coverage"] < 1).any()
    # the sample-complexity check reports the empirical quantile beside the bound
    fsc = rows[rows.check == "finite_sample_complexity"]
    assert {"bound", "quantile", "route"} <= set(fsc.columns)
    assert set(fsc["route"]) == {"offline", "online"}


def test_summary_columns_and_table(quick_run):
    assert list(quick_run.columns[:7]) == ["id", "statement", "cases", "max_discrepancy", "tolerance",
                                           "broken_discrepancy", "passed"]
    table = format_table(quick_run)
    for cid in _common.CHECK_IDS:
        assert cid in table
    assert "9/9 checks passed" in table


def test_checks_are_reproducible_and_accept_every_random_state():
    from genver.theory import reverse_kl, thm_2_2
    with single_threaded():
        a = pd.DataFrame(thm_2_2.check(quick=True, random_state=3))
        b = pd.DataFrame(thm_2_2.check(quick=True, random_state=3))
    pd.testing.assert_frame_equal(a, b)
    c = pd.DataFrame(reverse_kl.check(quick=True, random_state=np.random.SeedSequence(5)))
    d = pd.DataFrame(reverse_kl.check(quick=True, random_state=5))
    pd.testing.assert_frame_equal(c, d)
    e = reverse_kl.check(quick=True, random_state=np.random.default_rng(1))
    assert len(e) == len(c)
    with pytest.raises(ValueError, match="random_state"):
        reverse_kl.check(quick=True, random_state=-1)


def test_single_threaded_restores_numba_threads():
    import numba
    n0 = numba.get_num_threads()
    with single_threaded():
        assert numba.get_num_threads() == 1
    assert numba.get_num_threads() == n0


def test_summarise_rules():
    class Mod:
        ID, STATEMENT, TOLERANCE = "x", "x", 1e-3

    mk = _common.make_row
    ok = [mk("x", "sound", 0, 1e-4, 1e-3), mk("x", "broken", 0, 1.0, 1e-3)]
    assert _common.summarise(Mod, ok)["passed"]
    missed = [mk("x", "sound", 0, 1e-4, 1e-3), mk("x", "broken", 0, 1e-4, 1e-3)]
    assert not _common.summarise(Mod, missed)["passed"]  # broken variant not caught
    nan = [mk("x", "sound", 0, float("nan"), 1e-3), mk("x", "broken", 0, 1.0, 1e-3)]
    assert not _common.summarise(Mod, nan)["passed"]
    with pytest.raises(ValueError, match="variant"):
        mk("x", "other", 0, 0.0, 1e-3)


# -- the command line (wired as `genver check`) ---------------------------------------------
def test_main_quick_only_exit_0_and_progress(capsys):
    assert main(["--quick", "--only", "reverse_kl", "--only", "telescoping"]) == 0
    out, err = capsys.readouterr()
    assert "reverse_kl" in out and "telescoping" in out and "thm_2_2" not in out
    assert "[1/2] reverse_kl" in err and "[2/2] telescoping" in err


def test_main_json(capsys):
    assert main(["--quick", "--only", "bt_partition", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["quick"] is True and len(doc["checks"]) == 1
    rec = doc["checks"][0]
    assert rec["id"] == "bt_partition" and rec["passed"] is True
    assert rec["broken_discrepancy"] > rec["tolerance"] >= rec["max_discrepancy"]


def test_main_unknown_id_exit_2(capsys):
    assert main(["--quick", "--only", "no_such_check"]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and "no_such_check" in lines[0]


def test_main_failing_check_exit_1(monkeypatch, capsys):
    from genver.theory import reverse_kl
    monkeypatch.setattr(reverse_kl, "TOLERANCE", 1e-30)  # rounding now exceeds the tolerance
    assert main(["--quick", "--only", "reverse_kl"]) == 1
    assert "NO" in capsys.readouterr().out


def test_main_broken_variant_not_caught_exit_1(monkeypatch, capsys):
    from genver.theory import telescoping
    monkeypatch.setattr(telescoping, "TOLERANCE", 1e6)  # the broken variant now looks fine
    assert main(["--quick", "--only", "telescoping"]) == 1
    capsys.readouterr()


def test_genver_check_takes_seed_and_repeated_only(capsys):
    """`genver check` and `python -m genver.theory.runner` share one option definition: the CLI
    accepts ``--seed`` and keeps every ``--only`` (it once rejected the first and kept only the
    last ``--only``)."""
    from genver.cli import build_parser
    from genver.cli import main as cli_main
    args = build_parser().parse_args(["check", "--quick", "--seed", "3", "--only", "reverse_kl",
                                      "--only", "bt_partition"])
    assert args.seed == 3 and args.only == ["reverse_kl", "bt_partition"] and args.quick
    assert cli_main(["check", "--quick", "--seed", "1", "--only", "reverse_kl", "--only", "bt_partition",
                     "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["seed"] == 1 and [c["id"] for c in doc["checks"]] == ["reverse_kl", "bt_partition"]
    got = [c["broken_discrepancy"] for c in doc["checks"]]  # JSON keeps 10 significant digits
    np.testing.assert_allclose(got, run_checks(quick=True, only=["reverse_kl", "bt_partition"],
                                               random_state=1)["broken_discrepancy"], rtol=1e-8)
    seed0 = run_checks(quick=True, only=["reverse_kl", "bt_partition"], random_state=0)["broken_discrepancy"]
    assert not np.allclose(got, seed0, rtol=1e-8)  # the seed reached the checks
    assert cli_main(["check", "--quick", "--seed", "-1", "--only", "reverse_kl"]) == 2
    assert "--seed" in capsys.readouterr().err
