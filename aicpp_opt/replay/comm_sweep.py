"""Simulator sweeps of collectives and M x N A->F patterns over message sizes, on an
instance's topology, and their PWL tables (``cost_tables/<instance>/sim/<op>.json``).

A ``LinkModel`` adds what a flow-level network model lacks about NCCL: the fraction of the
link bandwidth a collective achieves and a fixed per-collective overhead. It is fitted on
measured NCCL tables (``calibrate.nccl_reference``) at some GPU counts and checked on the others.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from dataclasses import dataclass

import numpy as np

from aicpp_opt.costs.series_doc import SCHEMA, MeasuredSeries, fit_block, fitted_series
from aicpp_opt.replay.graph import Graph
from aicpp_opt.replay.simulate import simulate
from aicpp_opt.replay.topology import Topology

OPS = ("all_reduce", "all_gather", "reduce_scatter", "alltoall")
NCCL_ALGORITHM = {
    "all_reduce": "ring",
    "all_gather": "ring",
    "reduce_scatter": "ring",
    "alltoall": "direct",
}
SIZES = tuple(2**k for k in range(10, 30))  # 1 KiB .. 512 MiB, NCCL's grid in bytes
MXN_SHAPES = ((1, 1), (2, 1), (4, 2), (8, 4), (16, 8), (32, 16), (48, 24))
MXN_SIZES = tuple(2**k for k in range(10, 25))


@dataclass(frozen=True)
class LinkModel:
    """Achieved fraction of link bandwidth and fixed overhead (s) per collective."""

    efficiency: float = 1.0
    overhead_s: float = 0.0
    source: str = "nominal topology, no overhead"

    def topology(self, topo: Topology) -> Topology:
        dims = tuple(dataclasses.replace(d, bw=d.bw * self.efficiency) for d in topo.dims)
        return dataclasses.replace(topo, dims=dims)


def collective_time(
    topo: Topology,
    op: str,
    n: int,
    nbytes: float,
    algorithm: str | None = None,
    model: LinkModel = LinkModel(),
) -> float:
    """Seconds of one collective over GPUs 0..n-1 (innermost dimension first) of ``nbytes``."""
    g = Graph()
    g.collective(op, range(n), nbytes, algorithm or NCCL_ALGORITHM[op], op, "comm")
    return model.overhead_s + simulate(g, model.topology(topo)).makespan


def mxn_time(
    topo: Topology, m: int, n: int, nbytes: float, model: LinkModel = LinkModel()
) -> float:
    """Seconds for M attention GPUs (0..m-1) to each send ``nbytes`` to N FFN GPUs (m..m+n-1)."""
    g = Graph()
    for a in range(m):
        for f in range(m, m + n):
            g.transfer(a, f, nbytes, "a2f", "a2f")
    return model.overhead_s + simulate(g, model.topology(topo)).makespan


def split_latency_bandwidth(topo: Topology, op: str, n: int, nbytes: float) -> tuple[float, float]:
    """(latency part, bandwidth part) of an uncontended collective's simulated time, from two
    runs at bandwidth B and 2B: t(B) = L + X, t(2B) = L + X/2."""
    t1 = collective_time(topo, op, n, nbytes)
    t2 = collective_time(topo, op, n, nbytes, model=LinkModel(efficiency=2.0))
    x = 2 * (t1 - t2)
    return t1 - x, x


def fit_link_model(
    topo: Topology, measured: list[tuple[str, int, float, float]], label: str
) -> LinkModel:
    """Least-squares fit (in relative error) of efficiency and overhead to measured
    (op, gpus, bytes, seconds) points: measured ~ overhead + L + X / efficiency."""
    rows, rhs = [], []
    for op, n, nbytes, seconds in measured:
        lat, bw = split_latency_bandwidth(topo, op, n, nbytes)
        rows.append([1 / seconds, bw / seconds])
        rhs.append((seconds - lat) / seconds)
    (overhead, inv_eff), *_ = np.linalg.lstsq(np.array(rows), np.array(rhs), rcond=None)
    return LinkModel(float(1 / inv_eff), float(overhead), label)


def fits_in(topo: Topology, gpus: int) -> bool:
    return gpus <= topo.num_gpus


def collective_table(
    instance: str, topo: Topology, op: str, model: LinkModel, gpu_counts=(2, 4, 8), sizes=SIZES
) -> dict:
    """The cost-table JSON of one collective swept over sizes for each GPU count."""
    series = [
        _measured(
            {"num_gpus": n}, sizes, [collective_time(topo, op, n, s, model=model) for s in sizes]
        )
        for n in gpu_counts
        if fits_in(topo, n)
    ]
    covers = (
        f"{op} ({NCCL_ALGORITHM[op]}) over GPUs 0..n-1, simulated; message = full buffer per rank"
    )
    return _table(instance, topo, op, ["num_gpus"], covers, model, series)


def mxn_table(
    instance: str, topo: Topology, model: LinkModel, shapes=MXN_SHAPES, sizes=MXN_SIZES
) -> dict:
    """The cost-table JSON of the M x N A->F send pattern, bytes per edge on the load axis."""
    series = [
        _measured({"m": m, "n": n}, sizes, [mxn_time(topo, m, n, s, model) for s in sizes])
        for m, n in shapes
        if fits_in(topo, m + n)
    ]
    covers = "every one of M attention GPUs sends the load (bytes) to every one of N FFN GPUs"
    return _table(instance, topo, "afd_mxn", ["m", "n"], covers, model, series)


def _measured(key: dict, sizes, seconds) -> MeasuredSeries:
    """One simulated series in the cost tables' units (bytes, ms)."""
    return key, np.asarray(sizes, dtype=float), np.asarray(seconds, dtype=float) * 1e3


def _table(
    instance: str,
    topo: Topology,
    op: str,
    axes: list[str],
    covers: str,
    model: LinkModel,
    measured: list[MeasuredSeries],
) -> dict:
    series, summary = fitted_series(measured)
    topo_json = [
        {"kind": d.kind, "size": d.size, "bw_GBps": d.bw / 1e9, "latency_ns": d.latency * 1e9}
        for d in topo.dims
    ]
    return {
        "schema": SCHEMA,
        "system": instance,
        "backend": "sim",
        "op": op,
        "load_axis": "bytes",
        "axes": axes,
        "covers": covers,
        "provenance": {
            "package": "aicpp-opt",
            "simulator": "aicpp_opt.replay (flow-level)",
            "topology": topo_json,
            "date": dt.date.today().isoformat(),
            "link_model": dataclasses.asdict(model),
        },
        "selection": "network-simulator sweep on the instance's topology",
        "fit": fit_block(),
        "error": summary,
        "series": series,
    }
