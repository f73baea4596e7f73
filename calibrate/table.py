"""Turning a long frame of measurements (one row per measurement: axes, load, latency in ms)
into a cost-table document: one fitted series per combination of the non-load axes."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from calibrate.fit import HOLDOUT_RULE, TARGET_REL_ERR, drops, error_summary, fit_series

TRAINING = {
    False: "raw measured values",
    True: "isotonic (non-decreasing) projection of the training values",
}
"""How the PWL's training values were prepared; each table keeps the one with the lower held-out
p95 (then median), ties to raw, and records both results."""

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


def _measured(group: pd.DataFrame, load_axis: str) -> tuple[np.ndarray, np.ndarray]:
    """The series' loads and latencies (median of repeated measurements at one load)."""
    g = group.groupby(load_axis, sort=True)["latency_ms"].median()
    return g.index.to_numpy(dtype=float), g.to_numpy(dtype=float)


def _series(key: dict, x: np.ndarray, y: np.ndarray, monotone: bool) -> tuple[dict, np.ndarray]:
    fit = fit_series(x, y, TARGET_REL_ERR, monotone)
    series = {
        "key": key,
        "x": [_plain(v) for v in x],
        "latency_ms": y.tolist(),
        "pwl_x": [_plain(v) for v in fit.pwl_x],
        "pwl_ms": fit.pwl_y.tolist(),
    }
    return series, fit.heldout_rel_err


def _fit_all(measured: list[tuple[dict, np.ndarray, np.ndarray]], monotone: bool):
    """Every series fitted one way: (series docs, error summary over all held-out points)."""
    fitted = [_series(k, x, y, monotone) for k, x, y in measured]
    errs = np.concatenate([e for _, e in fitted]) if fitted else np.array([])
    return [s for s, _ in fitted], error_summary(errs)


def build_table(m: Measured, system: str) -> dict:
    """The cost-table document for one op (see docs/architecture.md, "Cost tables")."""
    frame = m.frame[np.isfinite(m.frame["latency_ms"]) & (m.frame["latency_ms"] > 0)]
    measured: list[tuple[dict, np.ndarray, np.ndarray]] = []
    falls = steps = 0
    dropped = 0
    for values, group in frame.groupby(m.axes, sort=True):
        if group[m.load_axis].nunique() < 2:
            dropped += 1
            continue
        key = {a: _plain(v) for a, v in zip(m.axes, values, strict=True)}
        x, y = _measured(group, m.load_axis)
        measured.append((key, x, y))
        f, n = drops(y)
        falls, steps = falls + f, steps + n
    options = {mono: _fit_all(measured, mono) for mono in TRAINING}
    chosen = min(
        TRAINING,
        key=lambda mono: (
            options[mono][1]["p95_rel_err"],
            options[mono][1]["median_rel_err"],
            mono,
        ),
    )
    series, summary = options[chosen]
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
        "fit": {
            "target_rel_err": TARGET_REL_ERR,
            "holdout": HOLDOUT_RULE,
            "training": TRAINING[chosen],
            "alternatives": {
                TRAINING[mono]: {k: opt[1][k] for k in ("median_rel_err", "p95_rel_err")}
                for mono, opt in options.items()
            },
        },
        "error": {**summary, "measured_drop_frac": falls / steps if steps else 0.0},
        "series": series,
    }
