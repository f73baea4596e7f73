"""What every study is: cases (labels on a point), a table with one row per case (or per row
its point returns) numbered from 1, and the statements drawn from that table, each naming the
rows its numbers came from."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd


@dataclass(frozen=True)
class Case:
    """One point of a study and the labels that place it on the study's axes."""

    labels: Mapping[str, Any]
    point: Any


@dataclass
class StudyResult:
    """A study's table (column ``row`` numbers its rows from 1), the statements drawn from it,
    and what the study asks."""

    name: str
    title: str
    question: str
    table: pd.DataFrame
    statements: list[str] = field(default_factory=list)


def assemble(
    cases: Sequence[Case], rows: Mapping[Any, list[dict[str, Any]]], columns: Sequence[str]
) -> pd.DataFrame:
    """The study table: each case's labels before each row its point returned, numbered; every
    column of ``columns`` is there (empty where no row has it: every point failed)."""
    out = []
    for case in cases:
        for row in rows[case.point]:
            out.append({**case.labels, **row})
    table = pd.DataFrame(out)
    for column in columns:
        if column not in table:
            table[column] = None
    table.insert(0, "row", range(1, len(table) + 1))
    return table


def cite(rows: Sequence[int] | pd.Series, study: str) -> str:
    """``(pareto rows 3, 7)``: where a statement's numbers come from."""
    numbers = [int(r) for r in rows]
    label = "row" if len(numbers) == 1 else "rows"
    return f"({study} {label} {', '.join(str(r) for r in numbers)})"


def feasible(table: pd.DataFrame) -> pd.DataFrame:
    """The rows with a plan that holds."""
    if "feasible" not in table:
        return table.iloc[0:0]
    return table[table["feasible"].fillna(False).astype(bool)]


def best_row(table: pd.DataFrame, column: str = "throughput_tok_s") -> pd.Series | None:
    """The feasible row with the largest ``column`` (None: no feasible row)."""
    ok = feasible(table)
    if ok.empty:
        return None
    return ok.loc[ok[column].astype(float).idxmax()]


def binding(row: pd.Series) -> str:
    """What limits a row's plan: its serving role's busiest resource and how loaded the
    serving roles are (below 100 %: prefill or TTFT limits the flow, not decode)."""
    load = row.get("decode_load")
    text = f"busiest: {row['binds']}"
    return text + (f"; decode at {load:.0%} of capacity" if pd.notna(load) else "")
