"""The fitted part of a cost-table document (docs/architecture.md, "Cost tables"): every
measured series with its PWL breakpoints, the error summary over all held-out points and the
`fit` block naming the rule; shared by `calibrate kernels` and `calibrate comm`."""

from __future__ import annotations

import numpy as np

from aicpp_opt.costs.pwl_fit import HOLDOUT_RULE, TARGET_REL_ERR, error_summary, fit_series

SCHEMA = 1
"""Version of the cost-table document format."""

MeasuredSeries = tuple[dict, np.ndarray, np.ndarray]
"""(key: the other axes' values, load values, latencies in ms), load strictly increasing."""


def plain(v):
    """numpy scalars -> Python scalars, integral floats -> int (stable JSON keys)."""
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, float) and v.is_integer():
        return int(v)
    return v


def fitted_series(
    measured: list[MeasuredSeries], monotone: bool = False
) -> tuple[list[dict], dict[str, float | int]]:
    """Every series fitted one way: (series entries, error summary over all held-out points)."""
    docs, errs = [], []
    for key, x, y_ms in measured:
        fit = fit_series(x, y_ms, TARGET_REL_ERR, monotone)
        docs.append(
            {
                "key": key,
                "x": [plain(v) for v in x],
                "latency_ms": np.asarray(y_ms, dtype=float).tolist(),
                "pwl_x": [plain(v) for v in fit.pwl_x],
                "pwl_ms": fit.pwl_y.tolist(),
            }
        )
        errs.append(fit.heldout_rel_err)
    return docs, error_summary(np.concatenate(errs) if errs else np.array([]))


def fit_block(**extra) -> dict:
    """The table's `fit` field: the training target and hold-out rule, plus `extra` notes."""
    return {"target_rel_err": TARGET_REL_ERR, "holdout": HOLDOUT_RULE, **extra}
