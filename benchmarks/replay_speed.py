"""Replay speed: one decode step of an AFD plan replayed on the built-in network simulator
from the op model (DeepSeek-V3.2, 61 layers, K=2 micro-batches, direct sends over the
pairing): the shipped ``nvl72_afd`` plan (72-GPU NVLink domain) and one unit of M=384 attention
and N=192 FFN GPUs (24 groups of 16 -> 8) on the 576 H200 GPUs of ``fleet_1152`` (8-GPU NVLink
nodes on InfiniBand, so A->F edges cross nodes). Targets: <= 2 s and <= 60 s. Prints the
median of several runs.

    python benchmarks/replay_speed.py [--runs 3]
"""

from __future__ import annotations

import statistics
import sys
import time
from dataclasses import replace

from aicpp_opt import PROJECT_ROOT
from aicpp_opt.replay.adapter import replay_plan
from aicpp_opt.spec.enums import Dispatch, Framework, RoleKind
from aicpp_opt.spec.instance import load_instance
from aicpp_opt.spec.plan import Afd, PairGroup, Placement, Plan, Role, Shape, load_plan


def fleet_unit() -> tuple:
    inst = load_instance("fleet_1152")
    groups = tuple(
        PairGroup(tuple(range(16 * i, 16 * i + 16)), tuple(range(8 * i, 8 * i + 8)))
        for i in range(24)
    )
    afd = Afd(384, 192, "h200", Dispatch.DIRECT, groups, colocated=False)
    placement = tuple(Placement("h200", d, 8) for d in range(72))
    decode = Role(
        RoleKind.DECODE,
        "h200",
        1,
        placement,
        Shape(1, 384, 1, 8),
        batch_per_gpu=32,
        afd=afd,
        micro_batches=2,
        id="decode",
        workload=inst.workloads[0].name,
    )
    prefill = Role(
        RoleKind.PREFILL,
        "gb200",
        1,
        (Placement("gb200", 0, 8),),
        Shape(1, 8, 1, 8),
        chunk_tokens=8192,
        id="prefill",
        workload=inst.workloads[0].name,
    )
    return inst, Plan((prefill, decode), Framework.SGLANG)


def nvl72_plan() -> tuple:
    inst = load_instance("h200_nvl72")
    return inst, load_plan(PROJECT_ROOT / "instances" / "plans" / "nvl72_afd.json", inst)


CASES = {
    "nvl72_afd (72 GPUs)": (nvl72_plan, 2.0),
    "fleet_1152 AFD unit (576 GPUs)": (fleet_unit, 60.0),
}


def main(runs: int = 3) -> int:
    ok = True
    for name, (make, target) in CASES.items():
        inst, plan = make()
        times, rep = [], None
        for _ in range(runs):
            t0 = time.perf_counter()
            rep = replay_plan(replace(plan), inst)
            times.append(time.perf_counter() - t0)
        med = statistics.median(times)
        ok &= med <= target
        print(
            f"{name:<32} {len(rep.result.graph.ops):>8} ops, step {rep.step_s * 1e3:.3f} ms "
            f"simulated; wall median {med:.2f} s over {runs} runs (target <= {target:g} s) "
            f"{'OK' if med <= target else 'MISSED'}"
        )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(int(sys.argv[sys.argv.index("--runs") + 1]) if "--runs" in sys.argv else 3))
