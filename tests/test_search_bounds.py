"""The bounds that let the capacity search skip families hold against the evaluator: above
each of an aggregated family's ever tighter bounds (``agg_tpot_bounds``, at its
memory-limited seats) the evaluator passes no rate, and they lie between the exact capacity
and the loose bound they tighten; and the search for the first batch over a target
(``first_over``) ends at a linear scan's answer in at most twice bisection's steps, every
step an integer over the target."""

from __future__ import annotations

import itertools
import math
from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aicpp_opt.evaluate.evaluation import evaluate_context
from aicpp_opt.search.capacity import (
    _Family,
    agg_tpot_bounds,
    decode_bound,
    decode_capacity,
    first_over,
)
from aicpp_opt.search.catalog import families
from aicpp_opt.search.problem import make_problem
from aicpp_opt.spec.enums import RoleKind
from aicpp_opt.spec.instance import load_instance
from aicpp_opt.spec.plan import Plan

SMALL = load_instance("small_h200_16")
SAMPLED = 10
"""Aggregated families checked per workload (spread over the catalog)."""


@pytest.mark.parametrize("workload", ["chat-relaxed", "coding-interactive"])
def test_no_rate_above_the_aggregated_bound_passes_the_evaluator(workload):
    prob = make_problem(SMALL, (SMALL.workload(workload),), modes=("agg",))
    ctx = prob.contexts[workload]
    limit = SMALL.search.max_batch_per_gpu
    fams = [f for f in families(ctx.model, SMALL, ctx.workload, ("agg",)) if f.kind == RoleKind.AGG]
    picked = fams[:: max(1, len(fams) // SAMPLED)]
    tightened = 0
    for fam in picked:
        f = _Family(ctx, fam, {})
        loose = decode_bound(f, limit)
        bounds = list(agg_tpot_bounds(f, limit))
        assert bounds[0] <= loose and bounds == sorted(bounds, reverse=True)
        tightened += bounds[-1] < loose
        seats = f.memory_batch(limit)
        if bounds[-1] <= 0 or seats < 1:
            continue
        assert decode_capacity(f, limit).rate <= bounds[-1]
        for bound in (bounds[-1], bounds[len(bounds) // 2]):
            role = replace(fam.role, batch_per_gpu=float(seats), rate=bound * 1.02)
            ev = evaluate_context(ctx, Plan(roles=(role,), framework=prob.framework))
            assert not ev.feasible, (fam.key, bound)
    assert tightened > 0  # the TPOT bound is below the loose one somewhere


@given(
    steps=st.lists(st.floats(0.0, 10.0), min_size=1, max_size=300),
    target=st.floats(-1.0, 400.0),
    infinite_from=st.integers(0, 310),
    lo=st.integers(0, 3),
)
def test_first_over_is_a_linear_scan(steps, target, infinite_from, lo):
    values = list(itertools.accumulate(steps))
    values = [v if i < infinite_from else math.inf for i, v in enumerate(values)]
    hi = len(values) - 1
    calls = []

    def value(i: int) -> float:
        calls.append(i)
        return values[i]

    over = [i for i in range(lo, hi + 1) if values[i] > target]
    answer = over[0] if over else hi + 1
    known = list(first_over(value, target, lo, hi))
    assert known[-1] == answer
    assert known == sorted(known, reverse=True)
    assert all(k == hi + 1 or values[k] > target for k in known)
    assert len(calls) <= 2 * math.ceil(math.log2(max(2, hi - lo + 1))) + 2
