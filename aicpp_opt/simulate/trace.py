"""A user's request trace: a CSV with a header ``timestamp_s,input_tokens,output_tokens`` and an
optional ``prefix_id`` column, one request per row in time order. Every row is validated; a bad
one is a one-line error naming the file, row and column."""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path

from aicpp_opt.errors import InputError

REQUIRED = ("timestamp_s", "input_tokens", "output_tokens")
OPTIONAL = ("prefix_id",)


@dataclass(frozen=True)
class TraceRow:
    timestamp: float
    input_tokens: int
    output_tokens: int
    prefix_id: str | None = None


def _number(value: str, where: str) -> float:
    try:
        x = float(value)
    except ValueError:
        raise InputError(where, f"must be a number of seconds, got {value!r}") from None
    if not math.isfinite(x) or x < 0:
        raise InputError(where, f"must be a finite number >= 0, got {value!r}")
    return x


def _count(value: str, where: str) -> int:
    try:
        n = int(value)
    except ValueError:
        raise InputError(where, f"must be a whole number of tokens >= 1, got {value!r}") from None
    if n < 1:
        raise InputError(where, f"must be >= 1 token, got {n}")
    return n


def read_trace(path: str | Path) -> tuple[TraceRow, ...]:
    """The rows of a trace file (row numbers in messages are file lines; the header is 1)."""
    path = Path(path)
    try:
        handle = path.open(newline="")
    except OSError as err:
        raise InputError(str(path), f"cannot read the trace: {err.strerror}") from None
    with handle:
        reader = csv.reader(handle)
        header = [h.strip() for h in next(reader, [])]
        for col in REQUIRED:
            if col not in header:
                raise InputError(
                    f"{path}: header",
                    f"needs a {col!r} column; columns: {', '.join(REQUIRED)}"
                    f" and optionally {', '.join(OPTIONAL)}",
                )
        extra = [h for h in header if h not in REQUIRED + OPTIONAL]
        if extra:
            raise InputError(f"{path}: header", f"unknown column {extra[0]!r}")
        at = {h: i for i, h in enumerate(header)}
        rows: list[TraceRow] = []
        last = 0.0
        for line, raw in enumerate(reader, start=2):
            if not any(cell.strip() for cell in raw):
                continue
            if len(raw) != len(header):
                raise InputError(
                    f"{path}: row {line}", f"has {len(raw)} cells, the header {len(header)}"
                )
            cell = {h: raw[i].strip() for h, i in at.items()}
            t = _number(cell["timestamp_s"], f"{path}: row {line} column timestamp_s")
            if t < last:
                raise InputError(
                    f"{path}: row {line} column timestamp_s",
                    f"{t:g} is before the previous row's {last:g}; sort the trace by time",
                )
            last = t
            rows.append(
                TraceRow(
                    t,
                    _count(cell["input_tokens"], f"{path}: row {line} column input_tokens"),
                    _count(cell["output_tokens"], f"{path}: row {line} column output_tokens"),
                    cell.get("prefix_id") or None,
                )
            )
    if not rows:
        raise InputError(str(path), "the trace has no requests")
    return tuple(rows)
