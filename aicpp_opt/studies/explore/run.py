"""Run studies: gather their points (a point two studies share is run once), run those the
resume log does not hold yet through the sweep's executor (local process pool or Ray), append
each point's rows to the log as it finishes, then assemble each study's table and statements
and write the tables (CSV and parquet) under the output folder.

The log (``points.jsonl``, one ``{"key", "rows"}`` line per finished point) makes a rerun into
the same folder run only what is missing; a point whose task crashed is run again."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import pandas as pd

from aicpp_opt.errors import InputError
from aicpp_opt.studies.executor import Executor, TaskResult, map_tasks
from aicpp_opt.studies.explore import (
    STUDY_NAMES,
    af_ratio,
    cost,
    dispatch,
    pareto,
    placement,
    slo_map,
    workload,
)
from aicpp_opt.studies.explore.points import Point, point_key, run_point
from aicpp_opt.studies.explore.setup import Setup
from aicpp_opt.studies.explore.study import StudyResult, assemble
from aicpp_opt.studies.sweep import ONE_CORE

STUDIES: dict[str, ModuleType] = {
    m.NAME: m for m in (pareto, slo_map, af_ratio, placement, dispatch, workload, cost)
}
"""The study modules by name, in ``STUDY_NAMES`` order."""
LOG = "points.jsonl"
CRASHED = "crashed"


def check_studies(names: Sequence[str]) -> list[str]:
    """The studies asked for, in their canonical order (none: all of them)."""
    for name in names:
        if name not in STUDY_NAMES:
            raise InputError("--study", f"unknown study {name!r}; use {', '.join(STUDY_NAMES)}")
    return [n for n in STUDY_NAMES if n in names] if names else list(STUDY_NAMES)


def read_log(path: Path) -> dict[str, list[dict[str, Any]]]:
    """Rows of the finished points by key (a line cut short by a killed run is skipped)."""
    out: dict[str, list[dict[str, Any]]] = {}
    if not path.exists():
        return out
    for line in path.read_text().splitlines():
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(entry, dict) and isinstance(entry.get("rows"), list):
            out[str(entry.get("key"))] = entry["rows"]
    return out


def spread(points: list[Point]) -> list[Point]:
    """Solving order: points that settle the same capacities (same model and workload lengths)
    spread apart, the first of each group first, so parallel workers settle different
    capacities at once and later points read theirs from the cache."""
    seen: Counter = Counter()
    ranked = []
    for i, p in enumerate(points):
        base = getattr(p, "base", p)
        wl = base.instance.workloads[0]
        group = (base.instance.model, wl.isl, wl.osl, wl.prefix_reuse)
        ranked.append((seen[group], i))
        seen[group] += 1
    return [points[i] for _, i in sorted(ranked)]


def run_explore(
    setup: Setup,
    names: Sequence[str],
    out_dir: Path,
    executor: Executor,
    say: Callable[[str], None],
    progress: bool = False,
) -> list[StudyResult]:
    """Run the studies ``names`` and write their tables; one result per study."""
    chosen = check_studies(names)
    studies = {n: STUDIES[n].cases(setup) for n in chosen}
    points = list(dict.fromkeys(c.point for cases in studies.values() for c in cases))
    out_dir.mkdir(parents=True, exist_ok=True)
    log_path = out_dir / LOG
    done = read_log(log_path)
    finished = {k: rows for k, rows in done.items() if not _crashed(rows)}
    todo = spread([p for p in points if point_key(p) not in finished])
    if len(points) > len(todo):
        say(f"{len(points) - len(todo)} of {len(points)} points already in {log_path}")
    if todo:
        say(f"running {len(todo)} point(s) on {executor.describe()}")
    with log_path.open("a") as log:

        def record(index: int, result: TaskResult) -> None:
            rows = result.value
            if result.error is not None:
                crash = {"status": CRASHED, "feasible": False, "reason": result.error}
                rows = [todo[index].labels() | crash]
            finished[point_key(todo[index])] = rows
            log.write(json.dumps({"key": point_key(todo[index]), "rows": rows}) + "\n")
            log.flush()

        map_tasks(run_point, todo, executor, record, progress, "exploring", ONE_CORE)
    rows = {p: finished[point_key(p)] for p in points}
    results = []
    for name, cases in studies.items():
        study = STUDIES[name]
        table = assemble(cases, rows, study.COLUMNS)
        result = StudyResult(name, study.TITLE, study.QUESTION, table)
        result.statements = study.statements(table, setup)
        write_table(table, out_dir / name)
        results.append(result)
    return results


def _crashed(rows: list[dict[str, Any]]) -> bool:
    return any(r.get("status") == CRASHED for r in rows)


def write_table(table: pd.DataFrame, stem: Path) -> None:
    """``stem.csv`` and ``stem.parquet``."""
    table.to_csv(stem.with_suffix(".csv"), index=False)
    table.to_parquet(stem.with_suffix(".parquet"), index=False)
