"""CLI conveniences: shell completion generated from the parser, `genver specs`."""
from __future__ import annotations

import argparse

import pytest

from genver.cli import build_parser, main


def _subparsers(parser):
    (action,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return action.choices


def test_bash_completion_covers_every_command_and_option(capsys):
    assert main(["completion", "bash"]) == 0
    script = capsys.readouterr().out
    for name, sub in _subparsers(build_parser()).items():
        assert name in script
        for action in sub._actions:
            for opt in action.option_strings:
                assert opt in script, (name, opt)


def test_completion_rejects_unknown_shell(capsys):
    with pytest.raises(SystemExit) as e:
        main(["completion", "fish"])
    assert e.value.code == 2 and "invalid choice: 'fish'" in capsys.readouterr().err


def test_specs_lists_every_shipped_spec_with_its_question(capsys):
    from genver.experiments.catalog import shipped_specs
    assert main(["specs"]) == 0
    out = capsys.readouterr().out
    for name in shipped_specs():
        assert f"\n{name} " in "\n" + out
    assert main(["specs", "--paths"]) == 0
    rows = [line.split("\t") for line in capsys.readouterr().out.splitlines()]
    assert {r[0] for r in rows} == set(shipped_specs()) and all(r[1].endswith(f"{r[0]}.toml") for r in rows)
