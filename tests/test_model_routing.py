"""Routing: the EPLB residual skew against a Monte Carlo of top-k routing, the power-law generator
against its description, names and errors."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from aicpp_opt.errors import InputError
from aicpp_opt.model.routing import (
    distinct_targets,
    expected_max_normal,
    parse_routing,
    rank_shares,
)


def _monte_carlo_busiest(tokens: int, experts: int, top_k: int, ep: int, draws: int = 400):
    """Mean over batches of the busiest rank's expert picks over the mean, each token choosing
    top_k distinct experts uniformly, experts in ``ep`` equal contiguous blocks."""
    rng = np.random.default_rng(7)
    per = experts // ep
    out = []
    for _ in range(draws):
        picks = np.argsort(rng.random((tokens, experts)), axis=1)[:, :top_k]
        loads = np.bincount((picks // per).ravel(), minlength=ep)
        out.append(loads.max() / loads.mean())
    return float(np.mean(out))


@pytest.mark.parametrize(("tokens", "ep"), [(64, 8), (512, 16), (128, 64), (2048, 32)])
def test_eplb_skew_is_the_batch_fluctuation_of_top_k_routing(tokens, ep):
    got = parse_routing("eplb").skew(tokens, 256, 8, ep)
    assert got == pytest.approx(_monte_carlo_busiest(tokens, 256, 8, ep), rel=0.04)


def test_expected_maximum_of_normals():
    assert expected_max_normal(2) == pytest.approx(1 / np.sqrt(np.pi), rel=1e-6)
    rng = np.random.default_rng(3)
    assert expected_max_normal(64) == pytest.approx(
        rng.standard_normal((20000, 64)).max(axis=1).mean(), rel=0.01
    )


def test_power_law_skew_follows_its_generator():
    """aiconfigurator's generator: heavier tails (smaller exponents) skew more, more ranks skew
    more, and a power law skews more than EPLB's residual."""
    skew = {a: parse_routing(f"power_law_{a}").skew(4096, 256, 8, 32) for a in (1.01, 1.2, 2.0)}
    assert skew[1.01] > 1.0 and skew[2.0] > 1.0
    assert parse_routing("power_law_1.2").skew(4096, 256, 8, 64) > skew[1.2]
    assert skew[1.01] > parse_routing("eplb").skew(4096, 256, 8, 32)


@given(st.floats(1.0, 8.0), st.sampled_from([2, 8, 32, 256]))
def test_rank_shares_sum_to_one_busiest_first(skew, ep):
    shares = rank_shares(skew, ep)
    assert sum(shares) == pytest.approx(1.0)
    assert shares[0] == max(shares) == pytest.approx(min(skew, ep) / ep)


def test_balanced_has_no_skew_and_names_round_trip():
    assert parse_routing("balanced").skew(10, 256, 8, 64) == 1.0
    assert parse_routing("uniform").name == "balanced"
    assert parse_routing("power_law_1.2").kernel_distribution == "power_law_1.2"
    assert parse_routing("eplb").kernel_distribution == "balanced"


@pytest.mark.parametrize("bad", ["zipf", "power_law_", "power_law_0.9", "power_law_nan"])
def test_bad_routing_is_an_input_error(bad):
    with pytest.raises(InputError, match="routing"):
        parse_routing(bad)


@given(st.integers(1, 16), st.integers(1, 256))
def test_distinct_targets_between_one_and_min(top_k, groups):
    d = distinct_targets(top_k, groups)
    assert 1 - 1e-9 <= d <= min(top_k, groups) + 1e-9
