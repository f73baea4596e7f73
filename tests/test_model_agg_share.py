"""The share of an aggregated replica's iterations that carry prefill when prompts are longer
than the chunk budget (``model.steps.chunked_share``), against an iteration-level simulation
written here: lock-step ranks fed round-robin from Poisson arrivals, a rank prefilling one chunk
of its oldest prompt per iteration, an iteration long whenever any rank prefills. Within 8%:
the model starts a prompt on arrival, the simulation at the next iteration boundary, and a
rank's second prompt waits for its first there (4-7% more mixed iterations in these cases)."""

import random
from collections import deque

import pytest

from aicpp_opt.model.steps import chunked_share

RANKS = 8


def simulated_share(rate, chunks, t_dec, t_mix, iterations=400_000, seed=3):
    rng = random.Random(seed)
    queues = [deque() for _ in range(RANKS)]
    now, next_arrival, turn, mixed = 0.0, rng.expovariate(rate), 0, 0
    for _ in range(iterations):
        busy = [q for q in queues if q]
        for q in busy:
            q[0] -= 1
            if not q[0]:
                q.popleft()
        mixed += bool(busy)
        now += t_mix if busy else t_dec
        while next_arrival <= now:
            queues[turn % RANKS].append(chunks)
            turn += 1
            next_arrival += rng.expovariate(rate)
    return mixed / iterations


@pytest.mark.parametrize(
    "rate, chunks, t_dec, t_mix",
    [(0.33, 4, 0.03, 0.35), (0.2, 8, 0.025, 0.3), (0.5, 2, 0.04, 0.2)],
)
def test_chunked_share_matches_an_iteration_simulation(rate, chunks, t_dec, t_mix):
    assert chunked_share(rate, chunks, t_dec, t_mix) == pytest.approx(
        simulated_share(rate, chunks, t_dec, t_mix), rel=0.08
    )


def test_independent_ranks_would_overcount_the_mixed_share():
    """Counting each rank's prefill iterations as if they never coincided (the model for
    prompts within one budget) gives a clearly larger share for long prompts (16% here)."""
    rate, chunks, t_dec, t_mix = 0.33, 4, 0.03, 0.35
    got = simulated_share(rate, chunks, t_dec, t_mix)
    mean = (1 - got) * t_dec + got * t_mix
    per_rank = rate / RANKS * mean * chunks
    independent = 1 - (1 - per_rank) ** RANKS
    assert independent > 1.15 * got
