"""`calibrate kernels --source DIR`: a user's own measurements in the long CSV format of
`calibrate/CSV_FORMAT.md` (one row per measurement: op, that op's axes, latency in ms) plus a
`system.json`, fitted and written exactly like the package's tables.

Everything is read and checked before anything is fitted or written: a bad cell, a row with
extra cells, a file without rows, a series with a single load value or a `system.json` without
its memory reserves stops the run with one line naming the file, row and column."""

from __future__ import annotations

import csv
import io
import math
import re
from collections.abc import Iterator
from pathlib import Path

import pandas as pd

from aicpp_opt.costs.store import parse_system
from aicpp_opt.errors import InputError, brief, key_name
from aicpp_opt.jsonio import decode_utf8, read_bytes, read_json
from aicpp_opt.paths import inside
from calibrate.ops import CATEGORICAL, OPS, OpSource
from calibrate.table import Measured, build_table
from calibrate.writer import dumps_plain, dumps_table, write_all

DEFAULT_BACKEND = "custom"
MAX_AXIS_VALUE = 2**53
"""Largest numeric axis value (exact in a float; far above any byte count or token count)."""
MAX_LATENCY_MS = 3.6e6
"""Longest latency accepted: one hour."""
COLUMNS = {"op", "latency_ms"} | {a for s in OPS.values() for a in (s.load_axis, *s.axes)}


def read_system_json(folder: Path, system: str) -> dict:
    """The folder's `system.json`, validated like the runtime reads it (reserves required),
    as the document written to `cost_tables/<system>/system.json`."""
    path = folder / "system.json"
    raw = read_json(path, "system.json")
    spec = parse_system(raw, system, "system.json")
    return {
        "system": system,
        "memory_bytes": spec.memory_bytes,
        "hbm_bw": spec.hbm_bw,
        "gpus_per_node": spec.gpus_per_node,
        "nvlink_bw": spec.nvlink_bw,
        "scaleout_bw": spec.scaleout_bw,
        "runtime_reserve_bytes": spec.runtime_reserve_bytes,
        "nccl_mem_bytes": {str(k): v for k, v in sorted(spec.nccl_mem_bytes.items())},
        "units": "bytes, bytes/s (1e9 = GB/s) per GPU per direction",
        "source": f"user measurements ({path.name})",
        "reserve_source": raw.get("reserve_source") or f"user {path.name}",
        "mem_bw_scaling": spec.mem_bw_scaling,
        "mem_latency_s": spec.mem_latency,
        "mem_source": spec.mem_source or f"user {path.name}",
    }


def _number(axis: str, text: str, where: str, positive: bool) -> int:
    """A non-negative whole number (positive on the load axis)."""
    try:
        v = float(text)
    except ValueError:
        raise InputError(f"{where} {axis}", f"{brief(text)} is not a number") from None
    if not math.isfinite(v) or not v.is_integer() or not 0 <= v <= MAX_AXIS_VALUE:
        raise InputError(f"{where} {axis}", f"{brief(text)} is not a whole number >= 0")
    if positive and v == 0:
        raise InputError(f"{where} {axis}", "the load must be positive")
    return int(v)


def _category(axis: str, text: str, where: str) -> str:
    allowed = CATEGORICAL[axis]
    if isinstance(allowed, re.Pattern):
        if not allowed.fullmatch(text):
            raise InputError(
                f"{where} {axis}", f"{brief(text)} is not of the form {allowed.pattern}"
            )
    elif text not in allowed:
        raise InputError(f"{where} {axis}", f"unknown {brief(text)}; valid: {', '.join(allowed)}")
    return text


def _latency(text: str, where: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise InputError(f"{where} latency_ms", f"{brief(text)} is not a number") from None
    if not math.isfinite(v) or not 0 < v <= MAX_LATENCY_MS:
        raise InputError(
            f"{where} latency_ms", f"{brief(text)} is not a positive latency in ms (<= 1 hour)"
        )
    return v


def _record(row: dict[str, str], src: OpSource, where: str) -> dict:
    """One measurement of ``src``: its axes typed and checked, defaults filled in."""
    used = {src.load_axis, *src.axes, "op", "latency_ms"}
    stray = sorted(c for c, v in row.items() if c not in used and v.strip())
    if stray:
        raise InputError(f"{where} {stray[0]}", f"{src.op} does not use it; leave it empty")
    rec: dict = {}
    for axis in (src.load_axis, *src.axes):
        text = row.get(axis, "").strip()
        if not text:
            default = dict(src.defaults).get(axis)
            if default is None:
                raise InputError(f"{where} {axis}", f"empty; {src.op} needs {', '.join(src.axes)}")
            rec[axis] = default
        elif axis in CATEGORICAL:
            rec[axis] = _category(axis, text, where)
        else:
            rec[axis] = _number(axis, text, where, axis == src.load_axis)
    rec["latency_ms"] = _latency(row.get("latency_ms", "").strip(), where)
    return rec


def _rows(path: Path) -> Iterator[tuple[int, dict[str, str]]]:
    """(line number, cells by column) of every row, header and cell counts checked."""
    data = read_bytes(path, path.name)
    text = decode_utf8(data, path.name, "the file").removeprefix("\ufeff")
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = [c.strip() for c in next(reader, [])]
        if not header or header == [""]:
            raise InputError(path.name, "is empty; it needs a header row and measurements")
        unknown = [c for c in header if c not in COLUMNS]
        if unknown:
            raise InputError(
                f"{path.name}:1 {key_name(unknown[0])}",
                "unknown column; see calibrate/CSV_FORMAT.md",
            )
        for needed in ("op", "latency_ms"):
            if needed not in header:
                raise InputError(f"{path.name}:1", f"has no {needed!r} column")
        if len(set(header)) != len(header):
            raise InputError(f"{path.name}:1", f"a column appears twice: {header}")
        count = 0
        for cells in reader:
            line = reader.line_num
            if not any(c.strip() for c in cells):
                continue
            if len(cells) != len(header):
                raise InputError(
                    f"{path.name}:{line}", f"has {len(cells)} cells, the header has {len(header)}"
                )
            count += 1
            yield line, dict(zip(header, cells, strict=True))
    except csv.Error as err:
        raise InputError(f"{path.name}:{reader.line_num}", f"unreadable CSV: {err}") from None
    if count == 0:
        raise InputError(path.name, "has a header but no measurement rows")


def parse_rows(path: Path) -> dict[str, list[tuple[str, dict]]]:
    """Rows of one CSV grouped by op as (where, record); any bad cell raises naming it."""
    by_op: dict[str, list[tuple[str, dict]]] = {}
    for line, row in _rows(path):
        where = f"{path.name}:{line}"
        op = row["op"].strip()
        if op not in OPS:
            raise InputError(f"{where} op", f"unknown op {brief(op)}; valid: {', '.join(OPS)}")
        by_op.setdefault(op, []).append((where, _record(row, OPS[op], where)))
    return by_op


def _check_series(src: OpSource, rows: list[tuple[str, dict]]) -> None:
    """Every series (one combination of the other axes) needs two load values to be fitted."""
    loads: dict[tuple, set] = {}
    first: dict[tuple, str] = {}
    for where, rec in rows:
        key = tuple(rec[a] for a in src.axes)
        loads.setdefault(key, set()).add(rec[src.load_axis])
        first.setdefault(key, where)
    for key, xs in loads.items():
        if len(xs) < 2:
            desc = ", ".join(f"{a}={v}" for a, v in zip(src.axes, key, strict=True))
            raise InputError(
                first[key],
                f"the only {src.load_axis} measured for {src.op} at {desc}; a series needs two "
                "or more load values",
            )


def csv_files(folder: Path) -> list[Path]:
    """The measurement files of a `--source` folder, in name order."""
    if not folder.is_dir():
        raise InputError("--source", f"{brief(folder)} is not a folder (or use 'aiconfigurator')")
    files = sorted(folder.glob("*.csv"))
    if not files:
        raise InputError("--source", f"no *.csv files in {brief(folder)}")
    return files


def measured_tables(files: list[Path], system: str, backend: str) -> dict[str, dict]:
    """Every op's fitted table document from the CSV files, by op."""
    rows: dict[str, list[tuple[str, dict]]] = {}
    origin: dict[str, set[str]] = {}
    for path in files:
        for op, recs in parse_rows(path).items():
            rows.setdefault(op, []).extend(recs)
            origin.setdefault(op, set()).add(path.name)
    tables = {}
    for op, recs in sorted(rows.items()):
        src = OPS[op]
        _check_series(src, recs)
        m = Measured(
            op=op,
            backend=backend,
            load_axis=src.load_axis,
            axes=list(src.axes),
            frame=pd.DataFrame([r for _, r in recs]),
            covers=f"User measurements, measuring what the package's table does: {src.covers}",
            provenance={
                "package": "user CSV",
                "version": "",
                "file": ", ".join(sorted(origin[op])),
                "filter": "all rows",
            },
            selection="user measurements (--source DIR)",
            defaults=dict(src.defaults),
        )
        tables[op] = build_table(m, system)
    return tables


def calibrate_csv(folder: Path, system: str, out_root: Path, backend: str | None) -> list[Path]:
    """Fit every op found in `folder/*.csv` and write its table, the system spec and the
    selection under `out_root/system/`, all checked and fitted before the first write."""
    backend = backend or DEFAULT_BACKEND
    base = inside(out_root, system, field="--system")
    inside(base, backend, field="--backend")
    files = csv_files(folder)
    spec = read_system_json(folder, system)
    tables = measured_tables(files, system, backend)
    out = {base / "system.json": dumps_plain(spec)}
    selection = {}
    for op, doc in tables.items():
        out[base / backend / f"{op}.json"] = dumps_table(doc)
        selection[op] = {
            "backend": backend,
            "reason": doc["selection"],
            "file": doc["provenance"]["file"],
        }
    out[base / "selection.json"] = dumps_plain(selection)
    write_all(out)
    return list(out)
