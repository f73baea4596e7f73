"""Turning a long frame of measurements (one row per measurement: axes, load, latency in ms)
into a cost-table document: one fitted series per combination of the non-load axes."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from calibrate.fit import HOLDOUT_RULE, TARGET_REL_ERR, drops, error_summary, fit_series

SCHEMA = 1


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


def _plain(v):
    """numpy scalars -> Python scalars, integral floats -> int (stable JSON keys)."""
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, float) and v.is_integer():
        return int(v)
    return v


def _series(key: dict, group: pd.DataFrame, load_axis: str) -> tuple[dict, np.ndarray]:
    g = group.groupby(load_axis, sort=True)["latency_ms"].median()
    x = g.index.to_numpy(dtype=float)
    y = g.to_numpy(dtype=float)
    fit = fit_series(x, y, TARGET_REL_ERR)
    series = {
        "key": key,
        "x": [_plain(v) for v in x],
        "latency_ms": y.tolist(),
        "pwl_x": [_plain(v) for v in fit.pwl_x],
        "pwl_ms": fit.pwl_y.tolist(),
    }
    return series, fit.heldout_rel_err


def build_table(m: Measured, system: str) -> dict:
    """The cost-table document for one op (see docs/architecture.md, "Cost tables")."""
    frame = m.frame[np.isfinite(m.frame["latency_ms"]) & (m.frame["latency_ms"] > 0)]
    series: list[dict] = []
    errors: list[np.ndarray] = []
    falls = steps = 0
    dropped = 0
    for values, group in frame.groupby(m.axes, sort=True):
        if group[m.load_axis].nunique() < 2:
            dropped += 1
            continue
        key = {a: _plain(v) for a, v in zip(m.axes, values, strict=True)}
        s, err = _series(key, group, m.load_axis)
        series.append(s)
        errors.append(err)
        f, n = drops(np.asarray(s["latency_ms"]))
        falls, steps = falls + f, steps + n
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
        "fit": {"target_rel_err": TARGET_REL_ERR, "holdout": HOLDOUT_RULE},
        "error": {
            **error_summary(np.concatenate(errors) if errors else np.array([])),
            "measured_drop_frac": falls / steps if steps else 0.0,
        },
        "series": series,
    }
