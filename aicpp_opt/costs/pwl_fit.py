"""Piecewise-linear fitting of one measured latency series along its load axis, and the PWL's
evaluation with the cost tables' extrapolation policy (one implementation for `calibrate
kernels`, `calibrate comm` and the runtime curves).

Breakpoints are a subset of the training points (so the surrogate passes through measured
values), chosen by dynamic programming to be the fewest that keep every training point within
the relative-error target. Held-out points (every `HOLDOUT_EVERY`-th interior point) never
become breakpoints; the error reported is the surrogate's error on them, always against the raw
measured values. Optionally the training values are first projected onto the nearest
non-decreasing sequence (latency does not fall as load grows with one kernel), which removes
measurement noise before breakpoints are chosen."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

TARGET_REL_ERR = 0.02
HOLDOUT_EVERY = 3
HOLDOUT_RULE = f"every {HOLDOUT_EVERY}rd interior point along the load axis (index % 3 == 2)"
MIN_POINTS_FOR_HOLDOUT = 4


@dataclass(frozen=True)
class SeriesFit:
    """PWL of one series: breakpoints and the relative errors at its held-out points."""

    pwl_x: np.ndarray
    pwl_y: np.ndarray
    heldout_rel_err: np.ndarray


def holdout_mask(n: int) -> np.ndarray:
    """True where a point of an n-point series is held out (never at either end)."""
    mask = np.zeros(n, dtype=bool)
    if n >= MIN_POINTS_FOR_HOLDOUT:
        mask[2 : n - 1 : HOLDOUT_EVERY] = True
    return mask


def chord_ok(x: np.ndarray, y: np.ndarray, target: float) -> np.ndarray:
    """ok[i, j]: the straight line from point i to point j stays within `target` relative error
    of every point strictly between them."""
    n = len(x)
    i, j, k = np.ix_(np.arange(n), np.arange(n), np.arange(n))
    dx = np.where(j > i, x[j] - x[i], 1.0)
    line = y[i] + (y[j] - y[i]) * (x[k] - x[i]) / dx
    inside = (k > i) & (k < j)
    bad = inside & (np.abs(line - y[k]) > target * np.abs(y[k]))
    return (j > i)[:, :, 0] & ~bad.any(axis=2)


def fewest_breakpoints(x: np.ndarray, y: np.ndarray, target: float) -> np.ndarray:
    """Indices of the fewest points (first and last included) whose PWL meets `target`."""
    n = len(x)
    if n <= 2:
        return np.arange(n)
    ok = chord_ok(x, y, target)
    cost = np.full(n, np.inf)
    prev = np.zeros(n, dtype=int)
    cost[0] = 0
    for j in range(1, n):
        cand = np.where(ok[:j, j], cost[:j] + 1, np.inf)
        prev[j] = int(np.argmin(cand))
        cost[j] = cand[prev[j]]
    path = [n - 1]
    while path[-1] != 0:
        path.append(prev[path[-1]])
    return np.array(path[::-1])


def pwl_eval(px: np.ndarray, py: np.ndarray, x: np.ndarray | float) -> np.ndarray:
    """PWL value at x: linear inside [px[0], px[-1]], last segment extended above, clamped
    below (the cost tables' extrapolation policy)."""
    x = np.asarray(x)
    y = np.interp(x, px, py)
    if len(px) >= 2:
        slope = (py[-1] - py[-2]) / (px[-1] - px[-2])
        y = np.where(x > px[-1], py[-1] + slope * (x - px[-1]), y)
    return y


def isotonic(y: np.ndarray) -> np.ndarray:
    """Least-squares non-decreasing projection of `y` (pool adjacent violators)."""
    means: list[float] = []
    counts: list[int] = []
    for v in y:
        means.append(float(v))
        counts.append(1)
        while len(means) > 1 and means[-2] > means[-1]:
            m, c = means.pop(), counts.pop()
            means[-1] = (means[-1] * counts[-1] + m * c) / (counts[-1] + c)
            counts[-1] += c
    return np.repeat(means, counts)


def fit_series(
    x: np.ndarray, y: np.ndarray, target: float = TARGET_REL_ERR, monotone: bool = False
) -> SeriesFit:
    """Fit one series (x strictly increasing, y non-zero): breakpoints from the training points
    (made non-decreasing first when `monotone`), error measured on the raw held-out ones."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if x.shape != y.shape or x.ndim != 1 or np.any(np.diff(x) <= 0) or np.any(y == 0):
        raise ValueError("fit_series needs 1-D x strictly increasing and non-zero y, same length")
    held = holdout_mask(len(x))
    tx, ty = x[~held], y[~held]
    if monotone:
        ty = isotonic(ty)
    idx = fewest_breakpoints(tx, ty, target)
    px, py = tx[idx], ty[idx]
    err = np.abs(pwl_eval(px, py, x[held]) - y[held]) / np.abs(y[held])
    return SeriesFit(px, py, err)


def error_summary(rel_errs: np.ndarray) -> dict[str, float | int]:
    """Median / p95 / max relative error and the number of held-out points."""
    if len(rel_errs) == 0:
        return {"median_rel_err": 0.0, "p95_rel_err": 0.0, "max_rel_err": 0.0, "n_heldout": 0}
    return {
        "median_rel_err": float(np.median(rel_errs)),
        "p95_rel_err": float(np.percentile(rel_errs, 95)),
        "max_rel_err": float(np.max(rel_errs)),
        "n_heldout": int(len(rel_errs)),
    }
