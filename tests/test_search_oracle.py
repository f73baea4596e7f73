"""The MILP is exact: on seeded small instances (one or two pools, one or two workloads with
traffic shares) its optimum equals the independent oracle's (``tests/oracle.py``: the evaluator
alone, every batch scanned, every split of the GPUs tried) within 0.1%, and its plan passes the
evaluator with the throughput the MILP predicted."""

from __future__ import annotations

import random

import pytest
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
