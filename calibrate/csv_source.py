"""`calibrate kernels --source DIR`: a user's own measurements in the long CSV format of
`calibrate/CSV_FORMAT.md` (one row per measurement: op, that op's axes, latency in ms) plus a
`system.json`, fitted and written exactly like the package's tables."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pandas as pd

from aicpp_opt.errors import InputError
from calibrate.ops import OPS
from calibrate.table import Measured, build_table
from calibrate.writer import dumps_plain, dumps_table, write_if_changed

CATEGORICAL = {"dtype", "kv_dtype", "gemm_dtype", "distribution", "mode"}
SYSTEM_FIELDS = ("memory_bytes", "hbm_bw", "gpus_per_node", "nvlink_bw", "scaleout_bw")
DEFAULT_BACKEND = "custom"


def _system(folder: Path, system: str) -> dict:
    path = folder / "system.json"
    try:
        raw = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise InputError("system.json", f"cannot read {path}: {err}") from err
    missing = [f for f in SYSTEM_FIELDS if not isinstance(raw.get(f), int | float)]
    if missing:
        raise InputError(f"system.json.{missing[0]}", f"missing or not a number in {path}")
    return {**{f: raw[f] for f in SYSTEM_FIELDS}, "system": system, "source": str(path.name)}


def _value(axis: str, text: str, where: str):
    if axis in CATEGORICAL:
        return text
    try:
        v = float(text)
    except ValueError:
        raise InputError(f"{where} {axis}", f"{text!r} is not a number") from None
    return int(v) if v.is_integer() else v


def parse_rows(path: Path) -> dict[str, list[dict]]:
    """Rows of one CSV grouped by op, axis values typed; any bad cell raises naming it."""
    by_op: dict[str, list[dict]] = {}
    with path.open(newline="") as f:
        for n, row in enumerate(csv.DictReader(f), start=2):
            where = f"{path.name}:{n}"
            op = (row.get("op") or "").strip()
            if op not in OPS:
                raise InputError(f"{where} op", f"unknown op {op!r}; valid: {', '.join(OPS)}")
            src = OPS[op]
            rec = {}
            for axis in (src.load_axis, *src.axes):
                text = (row.get(axis) or "").strip()
                if not text:
                    default = dict(src.defaults).get(axis)
                    if default is None:
                        raise InputError(f"{where} {axis}", f"empty; {op} needs {src.axes}")
                    rec[axis] = default
                else:
                    rec[axis] = _value(axis, text, where)
            latency = _value("latency_ms", (row.get("latency_ms") or "").strip(), where)
            if latency <= 0 or rec[src.load_axis] <= 0:
                raise InputError(f"{where} latency_ms", "latency and load must be positive")
            rec["latency_ms"] = float(latency)
            by_op.setdefault(op, []).append(rec)
    return by_op


def calibrate_csv(folder: Path, system: str, out_root: Path, backend: str | None) -> list[Path]:
    """Fit and write the tables of every op found in `folder/*.csv`."""
    if not folder.is_dir():
        raise InputError("--source", f"{folder} is not a folder (or use 'aiconfigurator')")
    files = sorted(folder.glob("*.csv"))
    if not files:
        raise InputError("--source", f"no *.csv files in {folder}")
    backend = backend or DEFAULT_BACKEND
    base = out_root / system
    written = [base / "system.json"]
    write_if_changed(written[0], dumps_plain(_system(folder, system)))
    rows: dict[str, list[dict]] = {}
    origin: dict[str, set[str]] = {}
    for path in files:
        for op, recs in parse_rows(path).items():
            rows.setdefault(op, []).extend(recs)
            origin.setdefault(op, set()).add(path.name)
    selection = {}
    for op, recs in sorted(rows.items()):
        src = OPS[op]
        m = Measured(
            op=op,
            backend=backend,
            load_axis=src.load_axis,
            axes=list(src.axes),
            frame=pd.DataFrame(recs),
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
        path = base / backend / f"{op}.json"
        write_if_changed(path, dumps_table(build_table(m, system)))
        written.append(path)
        selection[op] = {"backend": backend, "reason": m.selection, "file": m.provenance["file"]}
    written.append(base / "selection.json")
    write_if_changed(written[-1], dumps_plain(selection))
    return written
