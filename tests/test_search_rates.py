"""The rate searches of the capacity computation: ``crossing_rate`` ends within ``RATE_TOL``
below where its test stops holding (on functions whose crossing is known in closed form, flat
then steep as a queue's delays are, and where its two tests disagree), and a prefill family's
capacity passes the evaluator's TTFT percentile while a rate ``2 x RATE_TOL`` higher fails it."""

from __future__ import annotations

import math

from hypothesis import given
from hypothesis import strategies as st

from aicpp_opt.evaluate.evaluation import kv_transfer, prefill_slo, prefill_ttft
from aicpp_opt.search.capacity import (
    RATE_TOL,
    crossing_rate,
    kv_domains,
    prefill_capacity_of,
    prefill_service,
)
from aicpp_opt.search.catalog import prefill_families
from aicpp_opt.search.problem import make_problem
from aicpp_opt.spec.instance import load_instance


@given(
    cap=st.floats(1e-3, 1e4),
    root=st.floats(1e-4, 1.2),
    steep=st.floats(1.0, 400.0),
    lie=st.floats(0.0, 1.0),
)
def test_crossing_rate_ends_just_below_the_crossing(cap, root, steep, lie):
    """``excess`` is a queue-like share over a target less the tail: flat, then rising like
    1 / (1 - utilisation) through 0 at the crossing; ``holds`` agrees with it except, in some
    draws, over a band just below the crossing where it already fails (as rounding between two
    readings of one law could): the answer always holds, and sits within ``RATE_TOL`` of where
    ``holds`` stops."""
    crossing = min(root, 1.0) * cap
    band = lie * RATE_TOL * crossing * 20 if lie > 0.5 else 0.0

    def excess(r: float) -> float:
        u = min(r / cap, 1.0)
        rise = math.inf if u >= 1 else (u - crossing / cap) * steep / (1 - u)
        return min(1.0, max(-0.1, rise))

    def holds(r: float) -> bool:
        return r <= crossing - band

    got = crossing_rate(excess, holds, cap)
    edge = crossing - band
    if edge < cap * RATE_TOL:
        assert got == 0.0
    else:
        assert holds(got)
        assert got >= edge * (1 - RATE_TOL) or got == cap


SMALL = load_instance("small_h200_16")


def test_prefill_capacity_is_where_the_evaluators_percentile_stops_holding():
    prob = make_problem(SMALL, (SMALL.workload("chat-relaxed"),), modes=("pd",))
    ctx = prob.contexts["chat-relaxed"]
    fams = list(prefill_families(ctx.model, SMALL, ctx.workload))
    checked = 0
    for fam in fams[:: max(1, len(fams) // 6)]:
        forwards = prefill_service(ctx, fam)
        cap = prefill_capacity_of(ctx, fam, forwards, 0)
        if cap.rate <= 0 or cap.limit != "ttft":
            continue
        kv = kv_transfer(ctx, fam.role, fam.feeds, kv_domains(ctx, fam))
        pct, budget = prefill_slo(ctx, 0)

        def percentile(rate: float, fam=fam, forwards=forwards, kv=kv, pct=pct) -> float:
            return prefill_ttft(ctx, fam.role, forwards, rate, kv, pct).percentile

        assert percentile(cap.rate) <= budget < percentile(cap.rate * (1 + 2 * RATE_TOL))
        checked += 1
    assert checked >= 2
