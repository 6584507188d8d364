"""The ``genver`` command line.

``genver quickstart`` runs the bundled small version of the headline experiment
(``genver/experiments/quickstart.toml``: finite classes, ``Π = Π(R) ∪ D``, both routes solved
exactly), then writes its figures and report and prints the sample-efficiency ratios.
``genver run / plot / report`` do the same for any spec (see :mod:`genver.experiments`);
``genver repair`` rebuilds a results directory's lost manifest from its shards; ``genver check``
runs the propositions of ``theory/``.

Exit codes: 0 success; 1 a FAIL verdict (``report``); 2 bad input or a file that cannot be
read or written (one ``genver: error: ...`` line naming the key or path); 3 ``report`` /
``plot`` of an unfinished run without ``--partial``; 128 + the signal when ``run`` is stopped by
SIGINT (130), SIGHUP (129) or SIGTERM (143), after saving its finished units.

``genver fit`` runs one estimator on a user's own instance and pairs (``.npz`` files, format in
:mod:`genver.io`) and prints the fit and its exact metrics against the instance's true reward.

The commands live beside this module: ``fit`` in ``genver/_cli_fit.py``, ``run`` and
``quickstart`` in ``genver/_cli_run.py`` (each with the function that adds its parser); the
results commands (``plot``, ``report``, ``repair``), ``specs``, ``completion``, ``check``, the
parser (:func:`build_parser`, which the CLI reference of the docs is generated from) and
:func:`main` live here. ``-v`` / ``-vv`` send the ``genver`` logger's records to stderr
(:func:`configure_logging`); warnings of genver (:class:`~genver.experiments.diagnostics.GenverWarning`)
print as one ``genver: warning: ...`` line each.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
import textwrap
import warnings

from . import __version__
from ._cli_fit import add_fit_parser
from ._cli_run import add_quickstart_parser, add_run_parser

__all__ = ["main", "build_parser", "add_check_arguments", "configure_logging", "CHECK_DESCRIPTION",
           "EXIT_INCOMPLETE"]

#: exit code of `genver report` / `plot` on incomplete results without --partial
EXIT_INCOMPLETE = 3


def _incomplete_line(root, hit=None) -> str | None:
    """Print and return the INCOMPLETE line of a results directory (``None`` when complete):
    from a report-cache ``hit`` when there is one (the results are as they were then: no shard
    is read, nothing heavy imported), else from the shards."""
    if hit is not None and "incomplete" in hit:
        line = hit["incomplete"]
    else:
        from .experiments.tables import completeness_line
        line = completeness_line(root)
    if line:
        print(line)
    return line


def _plot(args) -> int:
    from .experiments.figcache import plot_cache_name, read_report_cache
    name = plot_cache_name(args.style, args.pdf)
    hit = read_report_cache(args.dir, name)  # unchanged: no SciPy, matplotlib
    if hit is None:  # drawn now; make_figures records the completeness line with the figures
        from .experiments.report import make_figures
        files = [str(f) for f in make_figures(args.dir, style=args.style, pdf=args.pdf)]
        incomplete = _incomplete_line(args.dir, read_report_cache(args.dir, name))
    else:
        incomplete = _incomplete_line(args.dir, hit)
        files = [os.path.join(args.dir, f) for f in hit["files"]]
    for f in files:
        print(f)
    return EXIT_INCOMPLETE if incomplete and not args.partial else 0


def _report(args) -> int:
    from .experiments.figcache import read_report_cache
    if args.format not in ("md", "html"):
        raise ValueError(f"report: --format must be md or html, got {args.format!r}")
    hit = read_report_cache(args.dir, args.format)  # unchanged results: no SciPy, matplotlib
    incomplete = _incomplete_line(args.dir, hit)
    if hit is not None:
        text, path = hit["terminal"], os.path.join(args.dir, hit["path"])
        failed = any(str(v["verdict"]).startswith("FAIL") for v in hit["verdicts"])
    else:
        from .experiments.report import format_verdicts, make_report
        p, table = make_report(args.dir, fmt=args.format)
        text, path, failed = format_verdicts(table), str(p), bool(table["verdict"].str.startswith("FAIL").any())
    print(text)
    print(f"report: {path}" + ("  (results unchanged: nothing recomputed)" if hit is not None else ""))
    if incomplete and not args.partial:
        return EXIT_INCOMPLETE
    return 1 if failed else 0


#: the description of ``genver check``
CHECK_DESCRIPTION = "Executable, falsifiable checks of the paper's propositions (theory/)."


def add_check_arguments(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add the options of ``genver check`` to ``p``: the one definition, used by the subcommand
    here and by ``genver.theory.runner.main`` (the ids are checked when the checks run).

    Parameters
    ----------
    p : argparse.ArgumentParser
        The parser to add ``--quick``, ``--only`` (repeatable), ``--seed`` and ``--json`` to.

    Returns
    -------
    argparse.ArgumentParser
        ``p``.
    """
    p.add_argument("--quick", action="store_true", help="fewer random instances (well under a minute)")
    p.add_argument("--only", action="append", metavar="ID",
                   help="run only this check (repeatable); ids: the modules of theory/, e.g. reverse_kl")
    p.add_argument("--seed", type=int, default=0, help="random_state passed to every check (default 0)")
    p.add_argument("--json", action="store_true", help="print the summary as JSON records instead of a table")
    return p


def _check(args) -> int:
    import importlib  # genver.theory is mapped from theory/ (no type information of its own)
    return importlib.import_module("genver.theory.runner").run_from_args(args)


def _specs(args) -> int:
    from .experiments.catalog import shipped_specs, spec_summaries
    rows = spec_summaries()
    if args.paths:
        paths = shipped_specs()
        for name, _ in rows:
            print(f"{name}\t{paths[name]}")
        return 0
    width = max(len(n) for n, _ in rows)
    for name, question in rows:
        print(textwrap.fill(question, 100, initial_indent=f"{name:<{width}}  ", subsequent_indent=" " * (width + 2)))
    return 0


def _completion(args) -> int:
    try:
        import shtab
    except ImportError:
        raise ValueError("genver completion needs the shtab package: pip install 'genver[completion]'") from None
    print(shtab.complete(build_parser(), shell=args.shell), end="")
    return 0


def _repair(args) -> int:
    from .experiments.runner import repair
    repair(args.dir)
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The ``genver`` argument parser: every subcommand and option (the CLI reference of the
    docs is generated from it).

    Returns
    -------
    argparse.ArgumentParser
        The parser; each subcommand sets ``func``, the function that runs it.
    """
    p = argparse.ArgumentParser(prog="genver", description=(
        "Exact prefix-tree simulations of the generation–verification gap: when does reward-model "
        "+ RL fine-tuning need fewer preference samples than direct likelihood (DPO)?"))
    p.add_argument("--version", action="version", version=f"genver {__version__}")
    p.add_argument("-v", "--verbose", action="count", default=0,
                   help="log library events to stderr (-v: what runs and why, e.g. the executor chosen, shards "
                        "removed on resume; -vv: debugging detail); the normal output is unchanged")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    add_quickstart_parser(sub)
    add_fit_parser(sub)
    add_run_parser(sub)
    _add_catalog_parsers(sub)
    _add_results_parsers(sub)
    c = sub.add_parser("check", help="run the executable checks of the paper's propositions (theory/)",
                       description=CHECK_DESCRIPTION)
    add_check_arguments(c)
    c.set_defaults(func=_check)
    return p


def _add_catalog_parsers(sub) -> None:
    """``genver specs`` and ``genver completion``."""
    sp = sub.add_parser("specs", help="list the shipped experiment specs (run one with `genver run NAME --out DIR`)")
    sp.add_argument("--paths", action="store_true", help="print NAME<TAB>PATH of each spec file instead")
    sp.set_defaults(func=_specs)
    co = sub.add_parser("completion", help="print a shell completion script (needs genver[completion])",
                        epilog="e.g. genver completion bash > ~/.local/share/bash-completion/completions/genver")
    co.add_argument("shell", choices=["bash", "zsh", "tcsh"], help="the shell to complete for")
    co.set_defaults(func=_completion)


def _add_results_parsers(sub) -> None:
    """``genver repair``, ``plot`` and ``report``: commands on a results directory."""
    rr = sub.add_parser("repair", help="rebuild a lost manifest.json of a results directory from its shards")
    rr.add_argument("dir", help="results directory of `genver run`")
    rr.set_defaults(func=_repair)
    pl = sub.add_parser("plot", help="write the figures of a results directory (PNG; --pdf: PDF beside each; "
                                     "--style paper: vector PDF and SVG)",
                        epilog="a figure whose inputs (results, code, style) are unchanged is not redrawn: "
                               "the hash of its inputs is kept beside it, in NAME.sha256")
    pl.add_argument("dir", help="results directory of `genver run`")
    pl.add_argument("--style", choices=["screen", "paper"], default="screen",
                    help="screen (default): PNG under DIR/figures; paper: PDF and SVG at 3.3 in "
                         "(NAME_col) and 6.9 in (NAME_full) wide, fonts embedded, under DIR/figures/paper")
    pl.add_argument("--pdf", action="store_true",
                    help="screen style: also a PDF beside each PNG (`genver report` writes both)")
    pl.add_argument("--partial", action="store_true",
                    help=f"exit 0 on an unfinished run (missing units or unreadable shards; default: exit "
                         f"{EXIT_INCOMPLETE})")
    pl.set_defaults(func=_plot)
    rp = sub.add_parser("report", help="write DIR/report.md (or .html) and print the verdicts (exit 1 on a FAIL, "
                                       f"{EXIT_INCOMPLETE} on an unfinished run)")
    rp.add_argument("dir", help="results directory of `genver run`")
    rp.add_argument("--format", default="md", metavar="{md,html}",
                    help="md (default): DIR/report.md, figures linked; html: DIR/report.html, one "
                         "self-contained page (figures embedded), viewable offline")
    rp.add_argument("--partial", action="store_true",
                    help="report an unfinished run (missing units or unreadable shards) with the exit code of "
                         "its verdicts; it is marked INCOMPLETE either way")
    rp.set_defaults(func=_report)


def configure_logging(verbosity: int) -> None:
    """Send the ``genver`` logger's records to stderr, one ``genver: LEVEL: logger: message``
    line each, and print genver's warnings as ``genver: warning: message``.

    Parameters
    ----------
    verbosity : int
        0: only warnings (as Python's default would show them); 1 (``-v``): INFO, what runs and
        why; 2 or more (``-vv``): DEBUG.
    """
    logger = logging.getLogger("genver")
    for h in [h for h in logger.handlers if getattr(h, "_genver_cli", False)]:
        logger.removeHandler(h)
    handler = logging.StreamHandler(sys.stderr)
    setattr(handler, "_genver_cli", True)  # noqa: B010 - a marker attribute the class does not declare
    handler.setFormatter(logging.Formatter("genver: %(levelname)s: %(name)s: %(message)s"))
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG if verbosity >= 2 else logging.INFO if verbosity == 1 else logging.WARNING)


def _show_warning(message, category, filename, lineno, file=None, line=None, _default=warnings.showwarning) -> None:
    """``warnings.showwarning`` of the CLI: genver's own warnings as one ``genver: warning:`` line
    (no source line: the user did not write that code), any other as Python shows it."""
    from .experiments.diagnostics import GenverWarning
    if issubclass(category, GenverWarning):
        print(f"genver: warning: {' '.join(str(message).split())}", file=sys.stderr if file is None else file)
    else:
        _default(message, category, filename, lineno, file, line)


def main(argv=None) -> int:
    """Run the ``genver`` command line (the ``genver`` console script; ``python -m genver``).

    Parameters
    ----------
    argv : list of str, optional
        The arguments after ``genver`` (default: ``sys.argv[1:]``).

    Returns
    -------
    int
        The exit code: 0 success; 1 a FAIL verdict (``report``); 2 bad input or an unreadable or
        unwritable file (one ``genver: error: ...`` line on stderr; with ``run --json`` also an
        ``error`` event on stdout); 3 an unfinished run (``report`` / ``plot`` without
        ``--partial``); 128 + the signal that stopped ``run``; 141 a closed pipe.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    configure_logging(args.verbose)
    with warnings.catch_warnings():
        warnings.showwarning = _show_warning
        try:
            return args.func(args)
        except BrokenPipeError:  # `genver specs | head`: the reader left; say nothing, as cat would
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return 141
        except ValueError as e:  # bad input: one clear line, exit code 2
            return _error(args, " ".join(str(e).split()))
        except OSError as e:  # a file that cannot be read or written: one line naming it, exit code 2
            where = f"{e.filename}: " if e.filename else ""
            what = e.strerror or " ".join(str(e).split()) or type(e).__name__
            return _error(args, f"{where}{what}")


def _error(args, message: str) -> int:
    """Print ``genver: error: message`` on stderr (and the ``error`` event of ``run --json``); 2."""
    print(f"genver: error: {message}", file=sys.stderr)
    events = getattr(args, "events", None)
    if events is not None:
        events({"event": "error", "message": message, "exit": 2})
    return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
