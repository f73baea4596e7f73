"""Run a sweep: solve the scenarios not already finished, append each row to the resume log as
it arrives, then write the whole table (sorted by scenario id) and its summary figure.

Files beside ``--out`` (``results.parquet`` or ``results.csv``): ``results.jsonl``, the resume
log (one JSON row per finished scenario; a rerun skips every id in it except crashed ones), and
``results.png``."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from aicpp_opt.errors import InputError
from aicpp_opt.report.sweep import plot_sweep
from aicpp_opt.studies.executor import Executor, TaskResult, map_tasks
from aicpp_opt.studies.scenario import COLUMNS, Scenario, failed_row, full_row, solve_scenario

TABLE_FORMATS = (".parquet", ".csv")
RETRIED = "crashed"
"""The status a rerun solves again: the others are answers, a crash is not."""
ONE_CORE = {"AICPP_OPT_WORKERS": "1"}
"""The environment of a sweep's workers: they already fill the cores, so the optimiser settles
capacities in the worker itself (``search.capacity.workers``) instead of forking more (a Ray
worker, which runs threads, must not fork)."""


@dataclass(frozen=True)
class SweepRun:
    """The table (one row per scenario, sorted by id) and what this run did."""

    table: pd.DataFrame
    solved: int
    skipped: int
    paths: tuple[Path, ...]


def output_paths(out: Path) -> tuple[Path, Path, Path]:
    """The table, the resume log and the figure."""
    if out.suffix not in TABLE_FORMATS:
        raise InputError("--out", f"must end in {' or '.join(TABLE_FORMATS)}, got {out.name!r}")
    return out, out.with_suffix(".jsonl"), out.with_suffix(".png")


def read_log(path: Path) -> tuple[dict[str, dict[str, Any]], int]:
    """Rows of the resume log by scenario id (a later row wins), and how many lines could not
    be read (a line cut short when a run was killed)."""
    rows: dict[str, dict[str, Any]] = {}
    unreadable = 0
    if not path.exists():
        return rows, 0
    for line in path.read_text().splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            unreadable += 1
            continue
        if not isinstance(row, dict) or not isinstance(row.get("id"), str):
            unreadable += 1
            continue
        rows[row["id"]] = full_row(row)
    return rows, unreadable


def run_sweep(
    scenarios: Sequence[Scenario],
    out: Path,
    executor: Executor,
    say: Callable[[str], None],
    progress: bool = False,
) -> SweepRun:
    """Solve what the log does not hold yet on ``executor``, then write the table and figure."""
    table_path, log_path, png_path = output_paths(out)
    logged, unreadable = read_log(log_path)
    if unreadable:
        say(f"{log_path}: {unreadable} unreadable line(s) ignored")
    finished = {i: row for i, row in logged.items() if row["status"] != RETRIED}
    wanted = {s.id for s in scenarios}
    stale = sum(1 for i in logged if i not in wanted)
    if stale:
        say(f"{log_path}: {stale} row(s) of scenarios not in this spec: left out of the table")
    todo = spread([s for s in scenarios if s.id not in finished])
    skipped = len(scenarios) - len(todo)
    if skipped:
        say(f"{skipped} of {len(scenarios)} scenarios already in {log_path}: not solved again")
    if todo:
        say(f"solving {len(todo)} scenario(s) on {executor.describe()}")
    table_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("a") as log:

        def record(index: int, result: TaskResult) -> None:
            row = result.value
            if result.error is not None:
                row = failed_row(todo[index], RETRIED, result.error, None)
            log.write(json.dumps(row) + "\n")
            log.flush()
            finished[row["id"]] = row

        map_tasks(solve_scenario, todo, executor, record, progress, "solving", ONE_CORE)
    table = sweep_table([finished[s.id] for s in scenarios])
    write_table(table, table_path)
    plot_sweep(table, png_path)
    return SweepRun(table, len(todo), skipped, (table_path, log_path, png_path))


def spread(scenarios: list[Scenario]) -> list[Scenario]:
    """The scenarios in solving order: those that share settled capacities (same instance,
    workload, model, framework and mode; they differ only in budget or objective) spread
    apart, first of each group first, so parallel workers start on different capacities and
    the later members read theirs from the capacity cache instead of settling them again."""
    seen: Counter = Counter()
    ranked = []
    for i, s in enumerate(scenarios):
        group = (s.instance, s.workload, s.framework, s.mode)
        ranked.append((seen[group], i))
        seen[group] += 1
    return [scenarios[i] for _, i in sorted(ranked)]


def sweep_table(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """Rows as a table in column order, sorted by scenario id; GPU counts as integers that may
    be missing (no plan)."""
    table = pd.DataFrame(rows, columns=list(COLUMNS)).sort_values("id", kind="stable")
    return table.reset_index(drop=True).astype({"gpus_used": "Int64", "budget": "int64"})


def write_table(table: pd.DataFrame, path: Path) -> None:
    if path.suffix == ".csv":
        table.to_csv(path, index=False)
    else:
        table.to_parquet(path, index=False)
