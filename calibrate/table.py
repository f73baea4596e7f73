"""Turning a long frame of measurements (one row per measurement: axes, load, latency in ms)
into a cost-table document: one fitted series per combination of the non-load axes."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from aicpp_opt.costs.series_doc import SCHEMA, MeasuredSeries, fit_block, plain
from calibrate.fit import drops, fit_table


@dataclass
class Measured:
    """Measurements of one op on one system from one backend, in contract units."""

    op: str
    backend: str
    load_axis: str
    axes: list[str]
    frame: pd.DataFrame
    covers: str
    provenance: dict
    selection: str = ""
    defaults: dict = field(default_factory=dict)
    """Axis values a query may omit."""


def _measured(group: pd.DataFrame, load_axis: str) -> tuple[np.ndarray, np.ndarray]:
    """The series' loads and latencies (median of repeated measurements at one load)."""
    g = group.groupby(load_axis, sort=True)["latency_ms"].median()
    return g.index.to_numpy(dtype=float), g.to_numpy(dtype=float)


def build_table(m: Measured, system: str) -> dict:
    """The cost-table document for one op (see docs/architecture.md, "Cost tables")."""
    frame = m.frame[np.isfinite(m.frame["latency_ms"]) & (m.frame["latency_ms"] > 0)]
    measured: list[MeasuredSeries] = []
    falls = steps = 0
    dropped = 0
    for values, group in frame.groupby(m.axes, sort=True):
        if group[m.load_axis].nunique() < 2:
            dropped += 1
            continue
        key = {a: plain(v) for a, v in zip(m.axes, values, strict=True)}
        x, y = _measured(group, m.load_axis)
        measured.append((key, x, y))
        f, n = drops(y)
        falls, steps = falls + f, steps + n
    fitted = fit_table(measured)
    provenance = dict(m.provenance, rows=int(len(frame)), series_dropped_single_point=dropped)
    return {
        "schema": SCHEMA,
        "system": system,
        "backend": m.backend,
        "op": m.op,
        "load_axis": m.load_axis,
        "axes": m.axes,
        "covers": m.covers,
        "provenance": provenance,
        "selection": m.selection,
        "defaults": m.defaults,
        "fit": fit_block(training=fitted.training, alternatives=fitted.alternatives),
        "error": {**fitted.summary, "measured_drop_frac": falls / steps if steps else 0.0},
        "series": fitted.series,
    }
