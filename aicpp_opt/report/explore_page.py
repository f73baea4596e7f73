"""The ``explore`` report: one self-contained ``index.html`` (figures embedded as base64 PNG,
tables inline, no script, no external resource), so it opens from disk without a server or a
network. It says what produced it: the instance file, the model files and cost tables (with a
digest of each), the framework, the code's commit and the command line."""

from __future__ import annotations

import base64
import hashlib
import html
import json
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from aicpp_opt import PROJECT_ROOT
from aicpp_opt.costs.store import COST_TABLES_DIR
from aicpp_opt.spec.model import MODELS_DIR
from aicpp_opt.studies.explore.setup import Setup
from aicpp_opt.studies.explore.study import StudyResult

HIDDEN_COLUMNS = ("plan",)
"""Columns left out of the page's tables (the plan's JSON: in the CSV and parquet files)."""

STYLE = """
body { font-family: sans-serif; margin: 2em; max-width: 1400px; color: #222; }
table { border-collapse: collapse; font-size: 12px; }
th, td { border: 1px solid #ccc; padding: 2px 6px; text-align: right; white-space: nowrap; }
th { background: #f0f0f0; position: sticky; top: 0; }
.scroll { max-height: 420px; overflow: auto; margin: 1em 0; }
pre { background: #f7f7f7; padding: 1em; overflow: auto; max-height: 300px; font-size: 12px; }
img { max-width: 100%; border: 1px solid #eee; }
li { margin: 0.2em 0; }
"""


@dataclass(frozen=True)
class Source:
    """An input of the run: what it is, where it lives, its digest and what it says of itself."""

    label: str
    path: str
    sha256: str
    note: str = ""


def digest(paths: Sequence[Path], root: Path) -> str:
    """sha256 over the files' paths (relative to ``root``) and contents."""
    h = hashlib.sha256()
    for p in sorted(paths):
        h.update(str(p.relative_to(root)).encode())
        h.update(p.read_bytes())
    return h.hexdigest()


def sources(setup: Setup, instance_file: Path | None) -> list[Source]:
    """The instance file, every model file and every pool's cost tables."""
    out = []
    if instance_file is not None:
        sha = digest([instance_file], instance_file.parent)
        out.append(Source("instance", str(instance_file), sha))
    for model in setup.models:
        path = MODELS_DIR / f"{model}.json"
        out.append(Source(f"model {model}", _shown(path), digest([path], path.parent)))
    for system in dict.fromkeys(p.system for p in setup.instance.pools):
        folder = COST_TABLES_DIR / system
        files = [p for p in folder.rglob("*") if p.is_file()]
        spec = json.loads((folder / "system.json").read_text())
        out.append(
            Source(
                f"cost tables {system} ({len(files)} files)",
                _shown(folder),
                digest(files, folder),
                f"system.json source: {spec.get('source', 'not stated')}; system.json sha256 "
                f"{digest([folder / 'system.json'], folder)[:16]}",
            )
        )
    return out


def _shown(path: Path) -> str:
    try:
        return str(path.relative_to(PROJECT_ROOT))
    except ValueError:
        return str(path)


def code_version() -> str:
    """The checkout's commit (and whether it has local changes), or why it is unknown."""
    try:
        head = subprocess.run(
            ["git", "-C", str(PROJECT_ROOT), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(PROJECT_ROOT), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown (not a git checkout)"
    return head + (" with local changes" if dirty else "")


def _table_html(result: StudyResult) -> str:
    shown = result.table.drop(columns=[c for c in HIDDEN_COLUMNS if c in result.table])
    return shown.to_html(index=False, na_rep="", float_format=lambda v: f"{v:.4g}", border=0)


def _section(result: StudyResult, png: Path) -> str:
    image = base64.b64encode(png.read_bytes()).decode()
    items = "".join(f"<li>{html.escape(s)}</li>" for s in result.statements)
    name = html.escape(result.name)
    return f"""
<section id="{name}">
<h2>{name}: {html.escape(result.title)}</h2>
<p><em>{html.escape(result.question)}</em></p>
<ul>{items}</ul>
<img alt="{name} figure" src="data:image/png;base64,{image}">
<p>Table <code>{name}.csv</code> / <code>{name}.parquet</code> ({len(result.table)} rows; the
plan of each row as JSON in the files):</p>
<div class="scroll">{_table_html(result)}</div>
</section>"""


def write_page(
    results: Sequence[StudyResult],
    figures: dict[str, Path],
    setup: Setup,
    out_dir: Path,
    command: str,
    instance_file: Path | None,
    notes: Sequence[str] = (),
) -> Path:
    """Write ``out_dir/index.html`` and return its path."""
    inst = setup.instance
    rows = "".join(
        f"<tr><td>{html.escape(s.label)}</td><td><code>{html.escape(s.path)}</code></td>"
        f"<td><code>{s.sha256[:16]}</code></td><td>{html.escape(s.note)}</td></tr>"
        for s in sources(setup, instance_file)
    )
    frameworks = sorted(
        {str(f) for r in results if "framework" in r.table for f in r.table["framework"].dropna()}
    )
    facts = [
        ("command", command),
        ("code", code_version()),
        ("written", datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")),
        ("base workload", _workload_text(setup)),
        ("models", ", ".join(setup.models)),
        ("modes", ", ".join(setup.modes)),
        ("frameworks (tables pricing every op)", ", ".join(frameworks) or "none solved"),
        ("GPU budget", f"{setup.budget} (every GPU of the instance)"),
        *(("note", n) for n in notes),
    ]
    fact_rows = "".join(
        f"<tr><th>{html.escape(k)}</th><td style='text-align:left'>{html.escape(v)}</td></tr>"
        for k, v in facts
    )
    toc = "".join(
        f'<li><a href="#{html.escape(r.name)}">{html.escape(r.name)}</a>: '
        f"{html.escape(r.title)}</li>"
        for r in results
    )
    body = "".join(_section(r, figures[r.name]) for r in results)
    instance_json = html.escape(
        instance_file.read_text() if instance_file is not None else repr(inst)
    )
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>aicpp-opt explore: {html.escape(inst.name)}</title>
<style>{STYLE}</style></head>
<body>
<h1>aicpp-opt explore: {html.escape(inst.name)}</h1>
<p>{html.escape(inst.description)}</p>
<table>{fact_rows}</table>
<h3>Inputs</h3>
<table><tr><th>input</th><th>path</th><th>sha256 (16)</th><th>notes</th></tr>{rows}</table>
<details><summary>instance file</summary><pre>{instance_json}</pre></details>
<h3>Studies</h3><ol>{toc}</ol>
<p>Every number is the evaluator's on the measured grids (TTFT and TPOT at the workload's SLO
percentile) unless a column says replay; each statement names the rows it came from.</p>
{body}
</body></html>
"""
    path = out_dir / "index.html"
    path.write_text(page)
    return path


def _workload_text(setup: Setup) -> str:
    w = setup.workload
    s = w.slo
    return (
        f"{w.name}: ISL {w.isl:g}, OSL {w.osl:g}, prefix reuse {w.prefix_reuse:g}, TTFT "
        f"{s.ttft * 1e3:g} ms and TPOT {s.tpot * 1e3:g} ms at p{s.percentile:g}"
    )
