"""The PWL fitter: exact on piecewise-linear data, a known error on perturbed data, the error
target met on every training point, and the extrapolation policy."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aicpp_opt.costs.pwl_fit import (
    chord_ok,
    fewest_breakpoints,
    fit_series,
    holdout_mask,
    isotonic,
    pwl_eval,
)


@st.composite
def pwl_data(draw):
    """A random positive piecewise-linear function sampled on a random increasing grid, its
    kinks at training (not held-out) points, where measurements can reveal them."""
    n = draw(st.integers(5, 40))
    x = np.cumsum(draw(st.lists(st.floats(0.5, 50), min_size=n, max_size=n)))
    inner = [i for i in range(1, n - 1) if not holdout_mask(n)[i]]
    k = draw(st.integers(0, min(4, len(inner))))
    knots = np.sort(draw(st.permutations(inner))[:k])
    idx = np.array([0, *knots, n - 1], dtype=int)
    ky = np.array(draw(st.lists(st.floats(0.1, 100), min_size=len(idx), max_size=len(idx))))
    return x, np.interp(x, x[idx], ky), len(idx)


@settings(max_examples=60, deadline=None)
@given(pwl_data())
def test_exact_on_piecewise_linear_data(data):
    x, y, true_points = data
    fit = fit_series(x, y, target=1e-9)
    assert np.allclose(pwl_eval(fit.pwl_x, fit.pwl_y, x), y, rtol=1e-6)
    assert np.all(fit.heldout_rel_err < 1e-6)
    assert len(fit.pwl_x) <= true_points


@settings(max_examples=60, deadline=None)
@given(st.integers(4, 60), st.floats(0.0, 0.3), st.floats(0.01, 0.1))
def test_known_error_on_perturbed_held_out_points(n, delta, target):
    """A line whose held-out points are scaled by (1 + delta): the training points fit it
    exactly, so every held-out error is delta / (1 + delta)."""
    x = np.arange(1.0, n + 1) * 7
    y = 0.5 + 0.25 * x
    held = holdout_mask(n)
    y_noisy = np.where(held, y * (1 + delta), y)
    fit = fit_series(x, y_noisy, target)
    assert len(fit.pwl_x) == 2
    assert np.allclose(fit.heldout_rel_err, delta / (1 + delta))


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(0.01, 10), min_size=3, max_size=30), st.floats(0.005, 0.2))
def test_breakpoints_meet_target_on_training_points(ys, target):
    x = np.arange(1.0, len(ys) + 1) ** 1.5
    y = np.cumsum(ys)
    idx = fewest_breakpoints(x, y, target)
    assert idx[0] == 0 and idx[-1] == len(x) - 1
    rel = np.abs(pwl_eval(x[idx], y[idx], x) - y) / y
    assert rel.max() <= target * (1 + 1e-9)
    assert chord_ok(x, y, target)[0, 1]


def test_holdout_never_takes_an_end_point():
    for n in range(1, 50):
        mask = holdout_mask(n)
        assert not mask[0] and not mask[-1]
        assert mask.sum() == (len(range(2, n - 1, 3)) if n >= 4 else 0)


def test_extrapolation_extends_last_segment_and_clamps_below():
    px, py = np.array([1.0, 2.0, 4.0]), np.array([1.0, 1.0, 3.0])
    assert pwl_eval(px, py, 8.0) == 7.0
    assert pwl_eval(px, py, 0.5) == 1.0


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(0.01, 10), min_size=1, max_size=40))
def test_isotonic_is_non_decreasing_and_keeps_the_mean(ys):
    y = np.array(ys)
    p = isotonic(y)
    assert np.all(np.diff(p) >= -1e-12) and p.mean() == pytest.approx(y.mean())
    if np.all(np.diff(y) >= 0):
        assert np.allclose(p, y)


@settings(max_examples=40, deadline=None)
@given(st.integers(6, 40), st.floats(0.01, 0.2))
def test_monotone_fit_errors_are_against_the_raw_points(n, bump):
    x = np.arange(1.0, n + 1)
    y = x.copy()
    held = holdout_mask(n)
    y[held] *= 1 + bump
    fit = fit_series(x, y, monotone=True)
    assert np.allclose(fit.heldout_rel_err, bump / (1 + bump))


@pytest.mark.parametrize(
    "x, y",
    [([1.0, 1.0, 2.0], [1.0, 2.0, 3.0]), ([2.0, 1.0], [1.0, 2.0]), ([1.0, 2.0], [0.0, 1.0])],
)
def test_fit_rejects_unordered_loads_and_zero_latency(x, y):
    with pytest.raises(ValueError, match="strictly increasing"):
        fit_series(np.array(x), np.array(y))


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(0.01, 10), min_size=2, max_size=40), st.floats(0.0, 50))
def test_pwl_eval_matches_interp_inside_and_the_last_slope_above(ys, beyond):
    px = np.arange(1.0, len(ys) + 1)
    py = np.array(ys)
    inside = np.linspace(px[0], px[-1], 17)
    assert np.allclose(pwl_eval(px, py, inside), np.interp(inside, px, py))
    slope = (py[-1] - py[-2]) / (px[-1] - px[-2])
    assert pwl_eval(px, py, px[-1] + beyond) == pytest.approx(py[-1] + slope * beyond)
