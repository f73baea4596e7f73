"""Reading `cost_tables/<system>/`: the system spec, the per-op backend selection and the
tables themselves (lazily, once per op), and slicing a 1-D curve for an operating point by
interpolating between neighbouring measured series."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from aicpp_opt import PROJECT_ROOT
from aicpp_opt.costs.curve import Curve, blend
from aicpp_opt.errors import InputError

COST_TABLES_DIR = PROJECT_ROOT / "cost_tables"
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
        doc = json.loads(path.read_text())
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


def available_systems(root: Path = COST_TABLES_DIR) -> list[str]:
    return sorted(p.name for p in root.iterdir() if (p / "system.json").is_file())


def read_system(root: Path, system: str) -> tuple[SystemSpec, dict]:
    """System spec and op -> backend selection of one system folder."""
    base = root / system
    if not (base / "system.json").is_file():
        valid = ", ".join(available_systems(root)) if root.is_dir() else "none"
        raise InputError("system", f"no cost tables for {system!r}; valid: {valid}")
    raw = json.loads((base / "system.json").read_text())
    spec = SystemSpec(
        system,
        int(raw["memory_bytes"]),
        float(raw["hbm_bw"]),
        int(raw["gpus_per_node"]),
        float(raw["nvlink_bw"]),
        float(raw["scaleout_bw"]),
        raw.get("runtime_reserve_bytes"),
        {int(k): int(v) for k, v in raw.get("nccl_mem_bytes", {}).items()},
        raw.get("reserve_source"),
        float(raw.get("mem_bw_scaling", 0.0)),
        float(raw.get("mem_latency_s", 0.0)),
        str(raw.get("mem_source", "")),
    )
    sel_path = base / "selection.json"
    selection = json.loads(sel_path.read_text()) if sel_path.is_file() else {}
    return spec, selection
