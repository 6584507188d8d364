"""Write one documentation page per shipped experiment spec (``sims/NAME.toml``) and an index:
the spec's question, construction (``description``), expected result, the swept grid, the data
sizes, the verdicts it checks (``[expect]``), the commands that run it, and its figure when the
repository has one (``docs/NAME*.png``). Called by ``docs/conf.py`` when a build starts; the
pages are generated, not edited by hand (``docs/experiments/`` is ignored by git)."""
from __future__ import annotations

import pathlib
import sys

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


def _spec_value_text(value) -> str:
    """A spec's TOML value as one line of a page's table (tables as ``k = v, ...``, arrays in brackets)."""
    if isinstance(value, dict):
        return ", ".join(f"{k} = {_spec_value_text(v)}" for k, v in value.items())
    if isinstance(value, list):
        return "[" + ", ".join(_spec_value_text(v) for v in value) + "]"
    return str(value)


def spec_page(name: str, spec: dict, figures: list[str]) -> str:
    exp = spec.get("experiment", {})
    lines = [f"# `{name}`", "", f"**Question.** {exp.get('question', '')}", "",
             f"**Construction.** {exp.get('description', '')}", "", f"**Expected.** {exp.get('expected', '')}", ""]
    lines += ["```bash", f"genver run {name} --out results/{name} --workers 2   # --smoke: the seconds-long version",
              f"genver report results/{name}", "```", ""]
    for title, table in (("Generator", {"generator": exp.get("generator", "")}), ("Instance", spec.get("instance")),
                         ("Grid (swept)", spec.get("grid")), ("Data", spec.get("data")),
                         ("Estimators", spec.get("estimators")), ("Verdicts checked (`[expect]`)", spec.get("expect")),
                         ("Smoke version (`--smoke`)", spec.get("smoke"))):
        if not table:
            continue
        lines += [f"## {title}", "", "| key | value |", "|---|---|"]
        if isinstance(table, list):
            table = {str(i): v for i, v in enumerate(table)}
        for k, v in table.items():
            lines.append(f"| `{k}` | {_spec_value_text(v).replace('|', '∣')} |")
        lines.append("")
    for fig in figures:
        lines += ["## Figure", "", f"![{name}](../{fig})", ""]
    return "\n".join(lines)


def write_spec_pages(sims: pathlib.Path, out: pathlib.Path, docs: pathlib.Path) -> list[pathlib.Path]:
    out.mkdir(parents=True, exist_ok=True)
    written, rows = [], []
    for path in sorted(sims.glob("*.toml")):
        with open(path, "rb") as f:
            spec = tomllib.load(f)
        name = path.stem
        figures = sorted(p.name for p in docs.glob(f"{name}*.png"))
        page = out / f"{name}.md"
        text = spec_page(name, spec, figures)
        if not page.exists() or page.read_text() != text:
            page.write_text(text)
        written.append(page)
        rows.append((name, spec.get("experiment", {}).get("question", "")))
    index = ["# Experiments", "", "One page per shipped spec (`genver specs` lists them; `genver run NAME` runs "
                                  "one).", "",
             "```{toctree}", ":hidden:", "", *[n for n, _ in rows], "```", "", "| spec | question |", "|---|---|",
             *[f"| [`{n}`]({n}.md) | {q} |" for n, q in rows], ""]
    (out / "index.md").write_text("\n".join(index))
    return written
