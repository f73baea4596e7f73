"""Piecewise-linear fit of a latency curve with held-out error, for the simulated comm tables.

Greedy: start from the first and last training points, add the worst-fitted training point
as a breakpoint until every training point is within ``target_rel_err``. Every
``holdout_every``-th interior point is kept out of training and scored afterwards.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class PwlFit:
    """Breakpoints and the relative errors on held-out points."""

    x: np.ndarray
    y: np.ndarray
    heldout_rel_err: np.ndarray

    def __call__(self, x) -> np.ndarray:
        return np.interp(x, self.x, self.y)


def fit_pwl(x, y, target_rel_err: float = 0.02, holdout_every: int = 3) -> PwlFit:
    """Fit breakpoints on measured points ``x`` (increasing) with values ``y`` > 0."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if len(x) < 2 or np.any(np.diff(x) <= 0) or np.any(y <= 0):
        raise ValueError("fit_pwl needs >= 2 increasing x and positive y")
    idx = np.arange(len(x))
    held = (idx > 0) & (idx < len(x) - 1) & (idx % holdout_every == 0) if holdout_every else idx < 0
    tx, ty = x[~held], y[~held]
    chosen = {0, len(tx) - 1}
    while True:
        bp = sorted(chosen)
        err = np.abs(np.interp(tx, tx[bp], ty[bp]) / ty - 1)
        worst = int(err.argmax())
        if err[worst] <= target_rel_err or worst in chosen:
            break
        chosen.add(worst)
    bp = sorted(chosen)
    held_err = np.abs(np.interp(x[held], tx[bp], ty[bp]) / y[held] - 1)
    return PwlFit(tx[bp], ty[bp], held_err)
