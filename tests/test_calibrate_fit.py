"""`calibrate kernels`' choice between raw and isotonic training values, and the measured-noise
indicator."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from aicpp_opt.costs.series_doc import fitted_series
from calibrate.fit import TRAINING, drops, fit_table


@st.composite
def noisy_tables(draw):
    """A few noisy increasing series, as calibrate measures them (ms)."""
    out = []
    for i in range(draw(st.integers(1, 4))):
        n = draw(st.integers(2, 30))
        x = np.cumsum(draw(st.lists(st.floats(0.5, 8), min_size=n, max_size=n)))
        noise = np.array(draw(st.lists(st.floats(-0.2, 0.2), min_size=n, max_size=n)))
        out.append(({"i": i}, x, (0.1 + 0.05 * x) * (1 + noise)))
    return out


@settings(max_examples=40, deadline=None)
@given(noisy_tables())
def test_kept_variant_has_the_lowest_held_out_p95_and_is_recorded(measured):
    fitted = fit_table(measured)
    both = {TRAINING[mono]: fitted_series(measured, mono) for mono in TRAINING}
    best = min(s["p95_rel_err"] for _, s in both.values())
    assert fitted.summary["p95_rel_err"] == best
    assert (fitted.series, fitted.summary) == both[fitted.training]
    assert set(fitted.alternatives) == set(TRAINING.values())
    for name, (_, s) in both.items():
        assert fitted.alternatives[name]["p95_rel_err"] == s["p95_rel_err"]


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.floats(0.5, 0.97), min_size=0, max_size=40),
    st.lists(st.floats(0.985, 3.0), min_size=0, max_size=40),
)
def test_drops_count_only_falls_beyond_the_tolerance(falls, others):
    """Steps to below 98% of the previous latency count; smaller falls and rises do not."""
    assert drops(np.cumprod([1.0, *falls])) == (len(falls), len(falls))
    assert drops(np.cumprod([1.0, *others])) == (0, len(others))
