"""Reading `cost_tables/<system>/`: the system spec, the per-op backend selection and the
tables themselves (lazily, once per op), and slicing a 1-D curve for an operating point by
interpolating between neighbouring measured series."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from aicpp_opt.costs.curve import Curve, blend
from aicpp_opt.errors import InputError, brief, key_name
from aicpp_opt.jsonio import read_json
from aicpp_opt.paths import data_dir, inside, safe_name, table_roots

COST_TABLES_DIR = data_dir("cost_tables")
"""The shipped cost tables (the last root of the search path)."""
MS = 1e-3


@dataclass(frozen=True)
class SystemSpec:
    """Capacities of one GPU and its links (bytes, bytes/s per GPU per direction), and the memory
    a serving runtime keeps for itself: ``runtime_reserve_bytes`` (framework, CUDA context,
    graphs) and ``nccl_mem_bytes`` (NCCL buffers by communicator size); ``reserve_source`` says
    where those came from (None when the system gives none). Memory-bound kernels (norms,
    residual adds, embedding) are priced at ``mem_bw_scaling`` x ``hbm_bw`` plus ``mem_latency``
    seconds per kernel (``mem_source``; zero when the system gives none)."""

    name: str
    memory_bytes: int
    hbm_bw: float
    gpus_per_node: int
    nvlink_bw: float
    scaleout_bw: float
    runtime_reserve_bytes: int | None = None
    nccl_mem_bytes: dict[int, int] = field(default_factory=dict)
    reserve_source: str | None = None
    mem_bw_scaling: float = 0.0
    mem_latency: float = 0.0
    mem_source: str = ""

    def nccl_bytes(self, group: int) -> int:
        """NCCL buffer bytes for a communicator of ``group`` GPUs: the entry of the smallest
        listed size at or above it, else of the largest listed size (0 when none listed)."""
        sizes = sorted(self.nccl_mem_bytes)
        if group <= 1 or not sizes:
            return 0
        fit = [s for s in sizes if s >= group]
        return self.nccl_mem_bytes[fit[0] if fit else sizes[-1]]


@dataclass
class Table:
    """One `cost_tables/<system>/<backend>/<op>.json`, series as numpy arrays in seconds."""

    path: Path
    op: str
    backend: str
    load_axis: str
    axes: list[str]
    defaults: dict
    covers: str
    error: dict
    keys: list[dict]
    curves: list[Curve]
    _cache: dict = field(default_factory=dict)

    @classmethod
    def read(cls, path: Path) -> Table:
        """The table in ``path``, read and checked once per process while the file is
        unchanged (every context of a solve, frontier or compare shares it)."""
        try:
            stat = path.stat()
        except OSError:
            return cls._read(path)
        return _read_once(path.resolve(), stat.st_mtime_ns, stat.st_size)

    @classmethod
    def _read(cls, path: Path) -> Table:
        doc = check_table(read_json(path, "cost table"), brief(path))
        name = f"{doc['system']}/{doc['backend']}/{doc['op']}"
        curves = [
            Curve(
                doc["op"],
                doc["load_axis"],
                np.asarray(s["x"], dtype=float),
                np.asarray(s["latency_ms"], dtype=float) * MS,
                np.asarray(s["pwl_x"], dtype=float),
                np.asarray(s["pwl_ms"], dtype=float) * MS,
                name,
            )
            for s in doc["series"]
        ]
        return cls(
            path,
            doc["op"],
            doc["backend"],
            doc["load_axis"],
            doc["axes"],
            doc.get("defaults", {}),
            doc["covers"],
            doc["error"],
            [s["key"] for s in doc["series"]],
            curves,
        )

    def curve(self, axes: dict) -> Curve:
        """The curve at `axes` (every non-load axis, defaults filled in), cached."""
        unknown = sorted(set(axes) - set(self.axes))
        if unknown:
            raise InputError(self.op, f"unknown axis {unknown[0]!r}; axes: {', '.join(self.axes)}")
        query = {**self.defaults, **axes}
        missing = [a for a in self.axes if a not in query]
        if missing:
            raise InputError(self.op, f"missing axis {missing[0]!r}; give all of {self.axes}")
        cache_key = tuple(query[a] for a in self.axes)
        if cache_key not in self._cache:
            parts = _weights(self, list(range(len(self.keys))), self.axes, query)
            desc = ", ".join(f"{a}={query[a]}" for a in self.axes)
            source = f"{self.path.parent.parent.name}/{self.backend}/{self.op} [{desc}]"
            if len(parts) > 1:
                source += f" interpolated over {len(parts)} measured series"
            comps = [(w, self.curves[i]) for i, w in parts]
            lo = max(c.x[0] for _, c in comps)
            hi = min(c.x[-1] for _, c in comps)
            if lo > hi:
                raise InputError(self.op, f"neighbouring series at {desc} share no load range")
            self._cache[cache_key] = blend(self.op, self.load_axis, comps, source)
        return self._cache[cache_key]


def _is_number(v) -> bool:
    return isinstance(v, int | float | np.integer | np.floating) and not isinstance(v, bool)


def _finite_numbers(values: list) -> bool:
    """Every value a finite JSON number (``bool`` is not one); vectorised, since the shipped
    tables hold hundreds of thousands of values and are checked on every load."""
    return set(map(type, values)) <= {int, float} and bool(
        np.isfinite(np.asarray(values, dtype=float)).all()
    )


def _fraction(lo: float, hi: float, v: float) -> float:
    """Position of v between lo and hi: linear in log(value) when all are positive."""
    if lo > 0:
        return (math.log(v) - math.log(lo)) / (math.log(hi) - math.log(lo))
    return (v - lo) / (hi - lo)


def _weights(t: Table, idx: list[int], axes: list[str], query: dict) -> list[tuple[int, float]]:
    """Series indices and weights that make the curve at `query`: exact matches on categorical
    axes, the two neighbouring measured values on numeric ones (multilinear in log value)."""
    if not axes:
        if len(idx) != 1:
            raise InputError(t.op, f"{len(idx)} series share one key in {t.path}")
        return [(idx[0], 1.0)]
    axis, rest = axes[0], axes[1:]
    v = query[axis]
    values = sorted({t.keys[i][axis] for i in idx}, key=lambda x: (str(type(x)), x))
    if v in values or not _is_number(v):
        if v not in values:
            raise InputError(f"{t.op}.{axis}", f"{v!r} not measured; valid: {values}")
        return _weights(t, [i for i in idx if t.keys[i][axis] == v], rest, query)
    nums = [x for x in values if _is_number(x)]
    if not nums or not nums[0] < v < nums[-1]:
        lo, hi = (nums[0], nums[-1]) if nums else (None, None)
        raise InputError(f"{t.op}.{axis}", f"{v} outside the measured range [{lo}, {hi}]")
    lo = max(x for x in nums if x < v)
    hi = min(x for x in nums if x > v)
    f = _fraction(lo, hi, v)
    out: list[tuple[int, float]] = []
    for bound, w in ((lo, 1.0 - f), (hi, f)):
        sub = [i for i in idx if t.keys[i][axis] == bound]
        out += [(i, w * ww) for i, ww in _weights(t, sub, rest, query)]
    return out


def find_root(system: str) -> Path:
    """The first cost-table root (``aicpp_opt.paths.table_roots``) that has ``system``."""
    roots = table_roots()
    for root in roots:
        if (inside(root, system, field="system") / "system.json").is_file():
            return root
    raise InputError(
        "system",
        f"no cost tables for {brief(system)}; valid: {', '.join(available_systems()) or 'none'} "
        f"(searched {', '.join(str(r) for r in roots)}; add yours with --tables DIR)",
    )


def available_systems(root: Path | None = None) -> list[str]:
    """Systems with a ``system.json`` in ``root`` (default: every root of the search path)."""
    roots = [root] if root is not None else table_roots()
    return sorted(
        {p.name for r in roots if r.is_dir() for p in r.iterdir() if (p / "system.json").is_file()}
    )


SYSTEM_NUMBERS = {
    "memory_bytes": (int, 1, 2**50, "GPU memory capacity in bytes"),
    "hbm_bw": (float, 1.0, 1e15, "HBM bandwidth in bytes/s"),
    "gpus_per_node": (int, 1, 4096, "GPUs per node (the measured NVLink group)"),
    "nvlink_bw": (float, 1.0, 1e15, "NVLink bytes/s per GPU per direction"),
    "scaleout_bw": (float, 1.0, 1e15, "scale-out bytes/s per GPU per direction"),
    "runtime_reserve_bytes": (
        int,
        0,
        2**50,
        "bytes a serving runtime keeps per GPU (framework, CUDA context, graphs)",
    ),
}
"""Required numbers of a ``system.json``: type, least and largest value, what it is."""
SYSTEM_OPTIONAL = {
    "mem_bw_scaling": (float, 0.0, 10.0, "share of hbm_bw memory-bound kernels reach"),
    "mem_latency_s": (float, 0.0, 1.0, "fixed seconds per memory-bound kernel"),
}
"""Optional numbers of a ``system.json`` (the memory-bound kernel model; 0 when absent)."""
SYSTEM_TEXT = ("system", "units", "source", "reserve_source", "mem_source")
"""Optional descriptive fields of a ``system.json``."""


def _system_number(raw: dict, key: str, where: str) -> float:
    kind, lo, hi, what = {**SYSTEM_NUMBERS, **SYSTEM_OPTIONAL}[key]
    if key not in raw:
        if key in SYSTEM_OPTIONAL:
            return 0.0
        raise InputError(f"{where}.{key}", f"is required: {what}")
    v = raw[key]
    ok_type = isinstance(v, int) if kind is int else isinstance(v, int | float)
    if isinstance(v, bool) or not ok_type or not math.isfinite(v) or not lo <= v <= hi:
        kind_name = "an integer" if kind is int else "a number"
        raise InputError(
            f"{where}.{key}", f"must be {kind_name} in [{lo}, {hi}] ({what}), got {brief(v)}"
        )
    return kind(v)


def _nccl_mem(value: Any, where: str) -> dict[int, int]:
    field = f"{where}.nccl_mem_bytes"
    if not isinstance(value, dict) or not value:
        raise InputError(
            field,
            "is required: NCCL buffer bytes per GPU by communicator size, e.g. "
            '{"2": 358612992, "8": 411041792}',
        )
    out = {}
    for k, v in value.items():
        if not (k.isdigit() and 0 < int(k) <= 4096):
            raise InputError(field, f"key {brief(k)} is not a GPU count 1..4096")
        if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= 2**40:
            raise InputError(f"{field}.{k}", f"must be bytes (an integer >= 0), got {brief(v)}")
        out[int(k)] = v
    return out


def parse_system(raw: Any, name: str, where: str = "system.json") -> SystemSpec:
    """A validated ``system.json``: every number present, finite and in range, the reserves
    included (no system is priced without its runtime memory)."""
    if not isinstance(raw, dict):
        raise InputError(where, "must be a JSON object")
    allowed = {*SYSTEM_NUMBERS, *SYSTEM_OPTIONAL, "nccl_mem_bytes", *SYSTEM_TEXT}
    unknown = sorted(set(raw) - allowed)
    if unknown:
        raise InputError(
            f"{where}.{key_name(unknown[0])}",
            f"unknown field; allowed: {', '.join(sorted(allowed))}",
        )
    for key in SYSTEM_TEXT:
        if key in raw and not isinstance(raw[key], str):
            raise InputError(f"{where}.{key}", f"must be a string, got {brief(raw[key])}")
    n = {key: _system_number(raw, key, where) for key in (*SYSTEM_NUMBERS, *SYSTEM_OPTIONAL)}
    if n["runtime_reserve_bytes"] >= n["memory_bytes"]:
        raise InputError(
            f"{where}.runtime_reserve_bytes",
            f"{n['runtime_reserve_bytes']} leaves no memory of {n['memory_bytes']} bytes",
        )
    return SystemSpec(
        name,
        n["memory_bytes"],
        n["hbm_bw"],
        n["gpus_per_node"],
        n["nvlink_bw"],
        n["scaleout_bw"],
        n["runtime_reserve_bytes"],
        _nccl_mem(raw.get("nccl_mem_bytes"), where),
        raw.get("reserve_source") or raw.get("source") or where,
        n["mem_bw_scaling"],
        n["mem_latency_s"],
        raw.get("mem_source", ""),
    )


def _selection(raw: Any, where: str) -> dict:
    """op -> {"backend": name or None, "reason": ..., "file": ...}, names checked."""
    if not isinstance(raw, dict) or not all(isinstance(v, dict) for v in raw.values()):
        raise InputError(where, 'must map each op to {"backend": ..., "reason": ...}')
    for op, entry in raw.items():
        safe_name(op, f"{where}.{key_name(op)}")
        if entry.get("backend") is not None:
            safe_name(entry["backend"], f"{where}.{op}.backend")
        available = entry.get("available", [])
        if not isinstance(available, list):
            raise InputError(f"{where}.{op}.available", "must be a list of backends")
        for i, name in enumerate(available):
            safe_name(name, f"{where}.{op}.available[{i}]")
        if not isinstance(entry.get("reason", ""), str):
            raise InputError(f"{where}.{op}.reason", "must be a string")
    return raw


def read_system(root: Path | None, system: str) -> tuple[SystemSpec, dict]:
    """System spec and op -> backend selection of one system folder (``root`` None: the first
    root of the search path that has it)."""
    root = find_root(system) if root is None else root
    base = inside(root, system, field="system")
    if not (base / "system.json").is_file():
        valid = ", ".join(available_systems(root)) if root.is_dir() else "none"
        raise InputError("system", f"no cost tables for {brief(system)}; valid: {valid}")
    where = f"{system}/system.json"
    spec = parse_system(read_json(base / "system.json", where), system, where)
    sel_path = base / "selection.json"
    where = f"{system}/selection.json"
    selection = _selection(read_json(sel_path, where), where) if sel_path.is_file() else {}
    return spec, selection


TABLE_KEYS = ("system", "backend", "op", "load_axis", "axes", "covers", "error", "series")


def check_table(doc: Any, where: str) -> dict:
    """A cost-table document whose fields the runtime reads are present and sane: every series
    has its other axes' values, a strictly increasing load grid and finite positive latencies
    (measured and PWL) of matching lengths."""
    if not isinstance(doc, dict):
        raise InputError("cost table", f"{where} must be a JSON object")
    missing = [k for k in TABLE_KEYS if k not in doc]
    if missing:
        raise InputError("cost table", f"{where} lacks {missing[0]!r}; regenerate it")
    axes = doc["axes"]
    if not isinstance(axes, list) or not all(isinstance(a, str) for a in axes):
        raise InputError("cost table", f"{where}: 'axes' must be a list of names")
    error = doc["error"]
    numbers = ("median_rel_err", "p95_rel_err", "max_rel_err", "n_heldout", "measured_drop_frac")
    if not isinstance(error, dict) or not all(_is_number(error.get(k)) for k in numbers):
        raise InputError("cost table", f"{where}: 'error' must hold {', '.join(numbers)}")
    if not isinstance(doc["series"], list) or not doc["series"]:
        raise InputError("cost table", f"{where}: 'series' must be a non-empty list")
    for i, s in enumerate(doc["series"]):
        _check_series(s, axes, f"{where} series[{i}]")
    return doc


def _check_series(s: Any, axes: list[str], where: str) -> None:
    if not isinstance(s, dict) or not isinstance(s.get("key"), dict):
        raise InputError("cost table", f"{where} must be an object with a 'key' object")
    if sorted(s["key"]) != sorted(axes):
        raise InputError("cost table", f"{where}: key axes {sorted(s['key'])} are not {axes}")
    for xs, ys in (("x", "latency_ms"), ("pwl_x", "pwl_ms")):
        x, y = s.get(xs), s.get(ys)
        ok = isinstance(x, list) and isinstance(y, list) and len(x) == len(y) >= 1
        ok = ok and _finite_numbers(x) and _finite_numbers(y)
        if not ok or (np.diff(x) <= 0).any() or min(y) <= 0:
            raise InputError(
                "cost table",
                f"{where}: {xs!r} must increase strictly and {ys!r} be positive numbers, "
                "as many as loads",
            )


@lru_cache(maxsize=512)
def _read_once(path: Path, mtime_ns: int, size: int) -> Table:
    """``Table._read`` memoised on the file's identity and version."""
    return Table._read(path)
