"""The law of a sum of independent delays (``model.delays``): its percentile against the M/M/1
closed form and against Monte Carlo draws of the same parts, and over a mixture of paths."""

import math

import numpy as np
import pytest

from aicpp_opt.model.delays import Delay, Wait, percentile

DRAWS = 400_000


def _draws(delay: Delay, rng: np.random.Generator) -> np.ndarray:
    """Monte Carlo draws of ``delay``, part by part."""
    out = np.full(DRAWS, delay.fixed)
    if delay.sample:
        out += rng.choice(np.array(delay.sample), DRAWS)
    out += rng.uniform(0.0, delay.spread, DRAWS)
    for w in delay.waits:
        waits = rng.random(DRAWS) < w.share
        out += waits * rng.exponential(w.mean / w.share, DRAWS)
    return out


def test_mm1_wait_percentile_is_the_closed_form():
    """M/M/1 at rho 0.5, mean service 1: P(W > t) = 0.5 exp(-0.5 t), mean wait 1: the p90 is
    ln(5) / 0.5."""
    assert percentile([(1.0, Delay(waits=(Wait(0.5, 1.0),)))], 90) == pytest.approx(
        math.log(5) / 0.5, rel=1e-5
    )
    assert percentile([(1.0, Delay(0.2, waits=(Wait(0.05, 1.0),)))], 90) == pytest.approx(0.2)


@pytest.mark.parametrize(
    "delay",
    [
        Delay(0.1, (), 0.3, (Wait(0.4, 0.5),)),
        Delay(0.0, (0.1, 0.2, 0.25, 0.9), 0.05, (Wait(0.3, 0.2), Wait(0.6, 0.9))),
        Delay(0.05, (0.3, 0.31), 0.0, (Wait(0.5, 0.4), Wait(0.5, 0.4))),
        Delay(0.0, (), 0.2, ()),
    ],
)
def test_percentiles_match_monte_carlo(delay):
    rng = np.random.default_rng(7)
    draws = _draws(delay, rng)
    for pct in (50, 90, 99):
        assert percentile([(1.0, delay)], pct) == pytest.approx(
            np.percentile(draws, pct), rel=0.02, abs=2e-3
        )
    assert delay.mean == pytest.approx(draws.mean(), rel=0.01)


def test_mixture_of_paths_matches_monte_carlo():
    """Requests split 3:1 over two paths: the percentile of all of them."""
    rng = np.random.default_rng(11)
    fast, slow = Delay(0.1, (), 0.1, (Wait(0.2, 0.05),)), Delay(0.6, (), 0.0, (Wait(0.5, 1.0),))
    draws = np.concatenate([_draws(fast, rng)[: 3 * DRAWS // 4], _draws(slow, rng)[: DRAWS // 4]])
    got = percentile([(3.0, fast), (1.0, slow)], 90)
    assert got == pytest.approx(np.percentile(draws, 90), rel=0.02)


def test_an_infinite_path_is_infinite_only_when_it_carries_the_tail():
    stuck = Delay(waits=(Wait(1.0, math.inf),))
    fine = Delay(0.1)
    assert math.isinf(percentile([(1.0, fine), (1.0, stuck)], 90))
    assert percentile([(99.0, fine), (1.0, stuck)], 90) == pytest.approx(0.1)
