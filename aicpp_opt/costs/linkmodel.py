"""What a flow-level network model lacks about real communication libraries, calibrated per
system against its measured tables. Per family (each NCCL collective; DeepEP dispatch and
combine per mode) and link class (``intra``: inside one NVLink domain; ``inter``: across
domains), three numbers: a fixed software overhead ``alpha`` (seconds per occurrence), a latency
``hop`` per sequential step of the pattern (seconds per link traversal on its critical path) and
the fraction ``efficiency`` of the link bandwidth the library achieves, so that

    measured ~ alpha + hop x hops + (simulated transfer time at nominal bandwidth) / efficiency.

``hops`` and the transfer time come from the simulator on the system's own measured setting
(``gpus_per_node`` GPUs per NVLink domain at ``nvlink_bw``, domains joined at ``scaleout_bw``):
hops from a run with unit link latencies and no bytes, the transfer time from a run with the
bytes and zero latencies. The fit is non-negative least squares in relative error; its residuals
are kept (``median``/``p95``/``max`` relative error over the family's measured points). Written
by ``aicpp-opt calibrate comm --system S`` to ``cost_tables/<system>/link_model.json``."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np
from scipy.optimize import nnls

from aicpp_opt.costs.store import SystemSpec, Table
from aicpp_opt.errors import InputError, brief, key_name
from aicpp_opt.jsonio import dumps_json, read_json, write_text_atomic
from aicpp_opt.netsim import patterns
from aicpp_opt.netsim.patterns import Geometry, Pattern
from aicpp_opt.netsim.topology import Dim, Topology

FILE = "link_model.json"
NCCL_FAMILIES = ("all_reduce", "all_gather", "reduce_scatter", "alltoall")
TABLES = (*NCCL_FAMILIES, "moe_dispatch", "moe_combine")
"""The measured tables a system's link model is fitted to."""
DEEPEP_MODES = ("low_latency", "normal")
FP8_SCALE_GROUP = 128
"""DeepEP's fp8 dispatch sends one fp32 scale per 128 channels with each token."""


@dataclass(frozen=True)
class LinkFit:
    """One family's calibration: overhead (s), bandwidth efficiency, fit error, and what it was
    fitted to."""

    alpha: float
    hop: float
    efficiency: float
    median_rel_err: float
    p95_rel_err: float
    max_rel_err: float
    points: int
    source: str

    def describe(self) -> str:
        return (
            f"alpha {self.alpha * 1e6:.1f} us, hop {self.hop * 1e6:.2f} us, "
            f"efficiency {self.efficiency:.2f} "
            f"(fit to {self.source}: median {self.median_rel_err:.0%}, "
            f"p95 {self.p95_rel_err:.0%} over {self.points} points)"
        )


NOMINAL = LinkFit(0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0, "nothing: nominal links, no overhead")
"""What a system without measured communication tables gets (flagged wherever it prices)."""


LINK_CLASSES = ("intra", "inter")


def family(name: str, domains: int) -> str:
    """The calibration family of pattern ``name`` (an NCCL op or ``deepep_<phase>_<mode>``)
    over ``domains`` scale-up domains."""
    return f"{name}/{LINK_CLASSES[domains > 1]}"


def deepep_name(phase: str, mode: str) -> str:
    return f"deepep_{phase}_{mode}"


def with_latency(topo: Topology, latency: float) -> Topology:
    return Topology(tuple(Dim(d.kind, d.size, d.bw, latency) for d in topo.dims))


def system_topology(spec: SystemSpec, gpus: int) -> Topology:
    """The system's measured setting for ``gpus`` GPUs: nodes of ``gpus_per_node`` on NVLink,
    joined by the scale-out network (zero latencies)."""
    node = Dim("switch", spec.gpus_per_node, spec.nvlink_bw, 0.0)
    nodes = max(1, -(-gpus // spec.gpus_per_node))
    return Topology((node, Dim("switch", nodes, spec.scaleout_bw, 0.0)))


TINY = 1e-9
"""Bytes small enough to time a pattern's latency alone (a collective of zero bytes is no
collective at all)."""


def hops(geom: Geometry, topo: Topology) -> float:
    """Link traversals on the pattern's critical path: its time on unit-latency links with next
    to no bytes."""
    return round(patterns.seconds(geom, with_latency(topo, 1.0), TINY))


def hops_and_transfer(geom: Geometry, topo: Topology, nbytes: float) -> tuple[float, float]:
    """(link traversals on the pattern's critical path, its transfer time at zero latency)."""
    return hops(geom, topo), patterns.seconds(geom, with_latency(topo, 0.0), nbytes)


def token_bytes(hidden: int, phase: str) -> float:
    """Bytes one token copy carries in DeepEP: fp8 with its scales on dispatch, bf16 back."""
    if phase == "dispatch":
        return hidden + hidden / FP8_SCALE_GROUP * 4
    return 2.0 * hidden


def exchange_bytes(tokens: float, copies: float, hidden: int, phase: str, ep: int) -> float:
    """Bytes one EP rank sends to the others for ``tokens`` tokens of ``copies`` copies each
    (the share for its own experts stays local)."""
    return tokens * copies * token_bytes(hidden, phase) * (ep - 1) / ep


def deepep_copies(topk: int, ep: int, mode: str) -> float:
    """Token copies DeepEP sends per token: one per selected expert in low-latency mode, one per
    distinct destination rank in normal mode (expected, experts spread uniformly)."""
    if mode == "low_latency":
        return float(topk)
    return ep * (1.0 - (1.0 - 1.0 / ep) ** topk)


Point = tuple[float, float, float]
"""(hops, transfer seconds at nominal bandwidth, measured seconds) of one measured point."""


def _fit(points: list[Point], source: str) -> LinkFit:
    """Non-negative least squares of measured ~ alpha + hop x hops + transfer / efficiency, in
    relative error."""
    hops, sim, meas = (np.array(c) for c in zip(*points, strict=True))
    a = np.column_stack([1 / meas, hops / meas, sim / meas])
    (alpha, hop, inv_eff), _ = nnls(a, np.ones_like(meas))
    inv_eff = max(inv_eff, 1e-3)
    err = np.abs(alpha + hop * hops + sim * inv_eff - meas) / meas
    return LinkFit(
        float(alpha),
        float(hop),
        float(1 / inv_eff),
        float(np.median(err)),
        float(np.percentile(err, 95)),
        float(np.max(err)),
        len(points),
        source,
    )


def _fit_classes(points: dict[str, list[Point]], name: str, source: str) -> dict[str, LinkFit]:
    return {
        f"{name}/{cls}": _fit(pts, f"{source}, {cls}-domain rows")
        for cls, pts in points.items()
        if pts
    }


def fit_nccl(spec: SystemSpec, table: Table, op: str) -> dict[str, LinkFit]:
    """Calibrate one NCCL collective on its measured table (every group size and message)."""
    points: dict[str, list[Point]] = {cls: [] for cls in LINK_CLASSES}
    pattern = Pattern(op)
    for key, curve in zip(table.keys, table.curves, strict=True):
        n = int(key["num_gpus"])
        domains = max(1, -(-n // spec.gpus_per_node))
        geom = Geometry(pattern, n, domains=domains)
        topo = system_topology(spec, n)
        for x, t in zip(curve.x, curve.seconds, strict=True):
            points[LINK_CLASSES[domains > 1]].append((*hops_and_transfer(geom, topo, x), t))
    return _fit_classes(points, op, f"{spec.name} {table.backend}/{op}")


def fit_deepep(spec: SystemSpec, table: Table, phase: str, mode: str) -> dict[str, LinkFit]:
    """Calibrate DeepEP ``phase`` in ``mode`` on its measured table (every EP and shape)."""
    points: dict[str, list[Point]] = {cls: [] for cls in LINK_CLASSES}
    for key, curve in zip(table.keys, table.curves, strict=True):
        if key["mode"] != mode:
            continue
        ep = int(key["ep"])
        domains = max(1, -(-ep // spec.gpus_per_node))
        geom = Geometry(Pattern.EXCHANGE, ep, domains=domains)
        topo = system_topology(spec, ep)
        copies = deepep_copies(int(key["topk"]), ep, mode)
        for x, t in zip(curve.x, curve.seconds, strict=True):
            nbytes = exchange_bytes(float(x), copies, int(key["hidden"]), phase, ep)
            points[LINK_CLASSES[domains > 1]].append((*hops_and_transfer(geom, topo, nbytes), t))
    name = deepep_name(phase, mode)
    return _fit_classes(points, name, f"{spec.name} {table.backend}/moe_{phase} {mode}")


def calibrate(spec: SystemSpec, tables: dict[str, Table]) -> dict[str, LinkFit]:
    """Every family and link class the given measured tables (op -> table) allow."""
    out: dict[str, LinkFit] = {}
    for op in NCCL_FAMILIES:
        if op in tables:
            out |= fit_nccl(spec, tables[op], op)
    for phase in ("dispatch", "combine"):
        table = tables.get(f"moe_{phase}")
        if table is None:
            continue
        for mode in DEEPEP_MODES:
            if any(k["mode"] == mode for k in table.keys):
                out |= fit_deepep(spec, table, phase, mode)
    return out


def write(path: Path, fits: dict[str, LinkFit]) -> None:
    doc = {"schema": 1, "families": {k: asdict(v) for k, v in sorted(fits.items())}}
    write_text_atomic(path, dumps_json(doc, sort_keys=True))


FIT_RANGES = {
    "alpha": (0.0, 1.0),
    "hop": (0.0, 1.0),
    "efficiency": (1e-6, 10.0),
    "median_rel_err": (0.0, math.inf),
    "p95_rel_err": (0.0, math.inf),
    "max_rel_err": (0.0, math.inf),
    "points": (0, math.inf),
}
"""Allowed values of a calibrated family's numbers (seconds; a share of the link bandwidth)."""


def _checked(raw: object, where: str) -> LinkFit:
    names = [f.name for f in fields(LinkFit)]
    if not isinstance(raw, dict) or sorted(raw) != sorted(names):
        raise InputError(where, f"must be an object with {', '.join(names)}; rerun calibrate comm")
    for key, (lo, hi) in FIT_RANGES.items():
        v = raw[key]
        number = isinstance(v, int) if key == "points" else isinstance(v, int | float)
        if isinstance(v, bool) or not number or not math.isfinite(v) or not lo <= v <= hi:
            raise InputError(f"{where}.{key}", f"must be a number in [{lo}, {hi}], got {brief(v)}")
    if not isinstance(raw["source"], str):
        raise InputError(f"{where}.source", "must be a string")
    return LinkFit(**raw)


def read(path: Path) -> dict[str, LinkFit]:
    """The calibrated families of a system (none when it was never calibrated), read and
    checked like every cost table."""
    if not path.is_file():
        return {}
    where = f"{key_name(path.parent.name)}/{path.name}"
    doc = read_json(path, where)
    families = doc.get("families") if isinstance(doc, dict) else None
    if not isinstance(families, dict):
        raise InputError(f"{where}.families", "must be an object; rerun calibrate comm")
    return {k: _checked(v, f"{where}.families.{key_name(k)}") for k, v in families.items()}
