"""The MILP is exact: on seeded small instances (one or two pools, one or two workloads with
traffic shares) its optimum equals the independent oracle's (``tests/oracle.py``: the evaluator
alone, every batch scanned, every split of the GPUs tried) within 0.1%, and its plan passes the
evaluator with the throughput the MILP predicted."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from oracle import oracle

from aicpp_opt.errors import InfeasibleError
from aicpp_opt.search.problem import make_problem
from aicpp_opt.search.solve import solve
from aicpp_opt.spec.instance import parse_instance

MODELS = ("qwen3-30b-a3b", "gpt-oss-120b", "qwen3-235b-a22b")
PRESETS = ("chat", "coding", "agentic-coding")
SYSTEMS = ("h200_sxm", "b200_sxm")


def random_instance(seed: int) -> tuple[dict, tuple[str, ...]]:
    rng = random.Random(seed)
    pools = []
    for i in range(rng.choice((1, 1, 2))):
        gpus = rng.choice((2, 4, 8))
        pools.append(
            {
                "name": f"p{i}",
                "system": rng.choice(SYSTEMS),
                "gpus": gpus,
                "topology": [{"kind": "switch", "size": gpus, "bw_GBps": 450, "latency_ns": 250}],
            }
        )
    n_wl = 1 if len(pools) == 2 else rng.choice((1, 2))
    workloads = [
        {
            "name": f"w{j}",
            "preset": rng.choice(PRESETS),
            "tpot_ms": rng.choice((15, 25, 40, 60)),
            "ttft_ms": rng.choice((300, 1000, 3000)),
        }
        for j in range(n_wl)
    ]
    modes = rng.choice((("agg",), ("pd",), ("agg", "pd")))
    doc = {
        "name": f"random-{seed}",
        "cluster": {"pools": pools},
        "model": rng.choice(MODELS),
        "workloads": workloads,
        "search": {
            "modes": list(modes),
            "tp_values": [1],
            "max_ep": 8,
            "max_micro_batches": 2,
            "max_batch_per_gpu": rng.choice((6, 10)),
        },
    }
    if n_wl == 2:
        doc["mix"] = {"w0": rng.choice((1, 2, 3)), "w1": 1}
    return doc, modes


@pytest.mark.parametrize("seed", range(30))
def test_milp_equals_the_independent_oracle(seed):
    doc, modes = random_instance(seed)
    inst = parse_instance(doc)
    shares = dict(inst.mix) or {inst.workloads[0].name: 1.0}
    workloads = tuple(inst.workload(n) for n in shares)
    best = oracle(inst, workloads, shares, modes)
    prob = make_problem(inst, workloads, modes, shares=shares)
    try:
        out = solve(prob)
    except InfeasibleError:
        assert best == 0.0, f"the oracle found {best:.1f} tok/s where the MILP found no plan"
        return
    assert out.solution.tokens_per_s == pytest.approx(best, rel=1e-3)
    assert out.evaluated.feasible, [f.reason for f in out.evaluated.flags if not f.ok]
    assert out.evaluated.output_tps == pytest.approx(out.solution.tokens_per_s, rel=1e-6)


@st.composite
def instances(draw):
    """Small instances drawn by hypothesis: one pool (one or two NVLink domains), one model,
    one or two workloads with shares, agg and/or P/D."""
    gpus = draw(st.sampled_from((2, 4, 8)))
    domains = draw(st.sampled_from((1, 2))) if gpus >= 4 else 1
    topology = [{"kind": "switch", "size": gpus // domains, "bw_GBps": 450, "latency_ns": 250}]
    if domains > 1:
        topology.append({"kind": "switch", "size": domains, "bw_GBps": 50, "latency_ns": 2000})
    n_wl = draw(st.integers(1, 2))
    doc = {
        "name": "drawn",
        "cluster": {
            "pools": [
                {
                    "name": "p",
                    "system": draw(st.sampled_from(SYSTEMS)),
                    "gpus": gpus,
                    "topology": topology,
                }
            ]
        },
        "model": draw(st.sampled_from(MODELS)),
        "workloads": [
            {
                "name": f"w{j}",
                "preset": draw(st.sampled_from(PRESETS)),
                "tpot_ms": draw(st.sampled_from((20, 40, 80))),
                "ttft_ms": draw(st.sampled_from((500, 2000))),
            }
            for j in range(n_wl)
        ],
        "search": {
            "modes": list(draw(st.sampled_from((("agg",), ("pd",), ("agg", "pd"))))),
            "tp_values": [1],
            "max_ep": 8,
            "max_micro_batches": 2,
            "max_batch_per_gpu": 8,
        },
    }
    if n_wl == 2:
        doc["mix"] = {"w0": draw(st.sampled_from((1, 3))), "w1": 1}
    return doc


@settings(max_examples=12, deadline=None)
@given(instances())
def test_every_plan_the_optimiser_returns_passes_the_evaluator(doc):
    inst = parse_instance(doc)
    shares = dict(inst.mix) or {inst.workloads[0].name: 1.0}
    workloads = tuple(inst.workload(n) for n in shares)
    try:
        out = solve(make_problem(inst, workloads, tuple(doc["search"]["modes"]), shares=shares))
    except InfeasibleError:
        return
    ev = out.evaluated
    assert ev.feasible, [f.reason for f in ev.flags if not f.ok]
    assert ev.output_tps == pytest.approx(out.solution.tokens_per_s, rel=1e-6)
    assert sum(r.gpus for r in out.plan.roles) <= sum(p.gpus for p in inst.pools)
