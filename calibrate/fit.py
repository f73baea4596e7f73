"""Fitting one kernel table's series for `calibrate kernels`: every series is fitted
(`aicpp_opt.costs.pwl_fit`) on the raw training values and on their isotonic projection, and
the variant with the lower held-out error is kept; plus the measured-noise indicator."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from aicpp_opt.costs.series_doc import MeasuredSeries, fitted_series

TRAINING = {
    False: "raw measured values",
    True: "isotonic (non-decreasing) projection of the training values",
}
"""How the PWL's training values were prepared; each table keeps the one with the lower held-out
p95 (then median), ties to raw, and records both results."""

DROP_TOLERANCE = 0.02


@dataclass(frozen=True)
class TableFit:
    """The kept variant's series and error summary, its name, and both variants' errors."""

    series: list[dict]
    summary: dict[str, float | int]
    training: str
    alternatives: dict[str, dict[str, float]]


def fit_table(measured: list[MeasuredSeries]) -> TableFit:
    """Fit every series both ways and keep the variant with the lower held-out p95, then
    median (ties to raw)."""
    options = {mono: fitted_series(measured, mono) for mono in TRAINING}
    chosen = min(
        TRAINING,
        key=lambda mono: (
            options[mono][1]["p95_rel_err"],
            options[mono][1]["median_rel_err"],
            mono,
        ),
    )
    series, summary = options[chosen]
    alternatives = {
        TRAINING[mono]: {k: s[k] for k in ("median_rel_err", "p95_rel_err")}
        for mono, (_, s) in options.items()
    }
    return TableFit(series, summary, TRAINING[chosen], alternatives)


def drops(y: np.ndarray) -> tuple[int, int]:
    """(steps where measured latency falls by more than DROP_TOLERANCE as load grows, steps):
    a noise indicator, since more load should never take less time with one kernel."""
    return int(np.sum(y[1:] < (1 - DROP_TOLERANCE) * y[:-1])), max(len(y) - 1, 0)
