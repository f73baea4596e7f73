"""The MILP is exact under its model: on seeded random small instances its objective equals
the exhaustive enumeration's (same discrete space, scored by the evaluator on the PWL
surrogates), and both plans re-evaluate feasible."""

from __future__ import annotations

import random

import pytest

from aicpp_opt.errors import InfeasibleError
from aicpp_opt.opt.enumerate import enumerate_once
from aicpp_opt.opt.options import Corrections
from aicpp_opt.opt.problem import make_problem
from aicpp_opt.opt.solve import solve, solve_once
from aicpp_opt.perf.evaluate import evaluate_context
from aicpp_opt.spec.instance import parse_instance

MODELS = ("deepseek-v3.2", "qwen3-30b-a3b", "qwen3-235b-a22b", "gpt-oss-120b")
PRESETS = ("chat", "coding", "agentic-coding")
MODES = ("agg", "pd", "afd", "afd+pd")


def random_instance(seed: int) -> dict:
    rng = random.Random(seed)
    gpus = rng.choice((8, 12, 16, 24))
    domain = rng.choice((8, gpus)) if gpus % 8 == 0 else gpus
    topology = [{"kind": "switch", "size": domain, "bw_GBps": 450, "latency_ns": 250}]
    if domain < gpus:
        topology.append(
            {"kind": "switch", "size": gpus // domain, "bw_GBps": 50, "latency_ns": 2000}
        )
    modes = [m for m in MODES if rng.random() < 0.7] or [rng.choice(MODES)]
    return {
        "name": f"random-{seed}",
        "cluster": {
            "pools": [{"name": "h200", "system": "h200_sxm", "gpus": gpus, "topology": topology}]
        },
        "model": rng.choice(MODELS),
        "workloads": [
            {
                "name": "w",
                "preset": rng.choice(PRESETS),
                "tpot_ms": rng.choice((40, 50, 70, 100)),
                "ttft_ms": rng.choice((1000, 2000, 4000)),
            }
        ],
        "search": {
            "modes": modes,
            "tp_values": [1, 2],
            "max_ep": 16,
            "max_micro_batches": 2,
            "max_batch_per_gpu": 64,
            "objective": rng.choice(("throughput", "throughput_per_gpu")),
        },
    }


def objective(ev, prob) -> float:
    tok = ev.flow.output_tps
    return tok if prob.objective == "throughput" else tok / ev.gpus


@pytest.mark.parametrize("seed", range(20))
def test_milp_equals_enumeration(seed):
    inst = parse_instance(random_instance(seed))
    prob = make_problem(inst, inst.workloads[0])
    try:
        milp_plan, stats = solve_once(prob, Corrections(), 60.0)
    except InfeasibleError:
        with pytest.raises(InfeasibleError):
            enumerate_once(prob, Corrections())
        return
    enum_plan, _ = enumerate_once(prob, Corrections())
    milp_ev = evaluate_context(prob.pwl, milp_plan, prefill_ctx=prob.measured)
    enum_ev = evaluate_context(prob.pwl, enum_plan, prefill_ctx=prob.measured)
    assert stats.optimal and stats.gap <= 1e-6
    assert milp_ev.feasible, [f.reason for f in milp_ev.flags if not f.ok]
    assert enum_ev.feasible, [f.reason for f in enum_ev.flags if not f.ok]
    assert objective(milp_ev, prob) == pytest.approx(objective(enum_ev, prob), rel=1e-3)


@pytest.mark.parametrize("seed", range(0, 20, 4))
def test_closed_loop_plan_is_feasible_on_measured_grids(seed):
    inst = parse_instance(random_instance(seed))
    prob = make_problem(inst, inst.workloads[0])
    try:
        out = solve(prob)
    except InfeasibleError:
        return
    assert out.evaluated.feasible, [f.reason for f in out.evaluated.flags if not f.ok]
    assert out.rounds[-1].holds
