"""The spec pieces the scale experiments rely on: ``[grid] zip`` (parameters swept together),
the memory estimate of a ``T = 2**20``, ``n = 10**7`` setting (the sparse tabular solver, not
a dense ``T × T`` block), and the shipped ``scale_*`` specs at smoke size."""
import pathlib

import pytest

from genver.experiments.memory import unit_bytes
from genver.experiments.spec import SpecError, load_spec, parse_spec, setting_id

SIMS = pathlib.Path(__file__).resolve().parents[1] / "sims"
BASE = {"experiment": {"name": "x", "generator": "linear_gap"}, "data": {"sizes": [8, 16], "seeds": 1},
        "instance": {"P": 1},
        "estimators": [{"name": "dpo", "label": "offline"}, {"name": "rm_rl", "label": "online"}]}


def test_zip_sweeps_its_lists_together_times_the_rest():
    spec = parse_spec({**BASE, "grid": {"beta": [0.5, 1.0], "zip": {"V": [2, 4, 16], "H": [4, 2, 1]}}})
    assert spec.knobs == ["beta", "V", "H"]
    got = [(p["beta"], p["V"], p["H"]) for p in spec.settings()]
    assert got == [(b, v, h) for b in (0.5, 1.0) for v, h in ((2, 4), (4, 2), (16, 1))]
    assert len({setting_id(p) for p in spec.settings()}) == 6
    # without zip the grid is the cartesian product, as before
    plain = parse_spec({**BASE, "grid": {"V": [2, 4], "H": [2, 3]}})
    assert plain.knobs == ["V", "H"] and len(plain.settings()) == 4


@pytest.mark.parametrize("zipped, needle", [
    ({"V": [2, 4], "H": [4]}, "one length"),
    ({"V": [2, 4], "Q": [4, 2]}, "zip.Q: unknown generator parameter"),
    ({"V": [2, "x"], "H": [4, 2]}, "zip.V: expected int"),
    ({"V": [], "H": []}, "zip.V: empty list"),
    ([2, 4], "[grid] zip: expected a table"),
    ({"beta": [1.0, 2.0], "H": [2, 3]}, "zip.beta: also a [grid] list"),
])
def test_zip_errors_name_the_key(zipped, needle):
    with pytest.raises(SpecError, match=None) as e:
        parse_spec({**BASE, "grid": {"beta": [1.0], "zip": zipped}})
    assert needle in str(e.value)


def test_a_trend_may_name_a_zipped_knob():
    spec = parse_spec({**BASE, "grid": {"zip": {"V": [2, 4], "H": [4, 2]}}, "expect": {"ratio": "decreasing in V"}})
    assert spec.expect["ratio"] == "decreasing in V"
    with pytest.raises(SpecError, match="'W' is not a swept knob"):
        parse_spec({**BASE, "grid": {"zip": {"V": [2, 4], "H": [4, 2]}}, "expect": {"ratio": "decreasing in W"}})


def test_memory_estimate_of_a_million_completions_and_ten_million_pairs_is_linear():
    spec = parse_spec({**BASE, "instance": {"P": 1, "V": 2, "H": 20}, "data": {"sizes": [10**7], "seeds": 1}})
    u = unit_bytes(spec, spec.settings()[0])
    # world tables (16 of 2**20 float64 = 128 MiB), feature arrays, pairs (22 words each): no T² term
    assert u["world"] == 8 * 16 * 2**20
    assert u["streams"] == 8 * 22 * 10**7
    assert sum(u.values()) < 3 * 2**30
    # a dense T × T block would be 8 TiB: the estimate must not contain it
    assert u["classes"] < 2**30


@pytest.mark.parametrize("name", ["scale_horizon", "scale_vocab"])
def test_scale_specs_parse_and_state_what_they_test(name):
    spec = load_spec(SIMS / f"{name}.toml")
    assert max(spec.sizes) == 10**7 and spec.expect.get("ratio")
    assert max(p["V"] ** p["H"] for p in spec.settings()) >= 2**16
    smoke = load_spec(SIMS / f"{name}.toml", smoke=True)
    assert max(smoke.sizes) <= 2**16 and smoke.seeds <= 2
