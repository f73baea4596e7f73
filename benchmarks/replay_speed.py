"""Replay speed: one AFD decode step (61 layers: 3 dense + 58 MoE, K=2 micro-batches, direct
sends over the pairing) on 72 GPUs (M=48, N=24, one NVLink domain) and on 1,152 GPUs
(M=768, N=384, 8-GPU NVLink nodes on InfiniBand, so the A->F edges cross nodes).
Targets: <= 2 s and <= 60 s. Prints the median of several runs.

    python benchmarks/replay_speed.py [--runs 3]
"""

from __future__ import annotations

import statistics
import sys
import time

from aicpp_opt.replay.expand import AfdDecode, ReplayInput

from aicpp_opt.netsim.topology import Dim, Topology
from aicpp_opt.replay.run import replay

# The workload's shape only (durations and sizes do not change the event count much).
T_A, T_F, T_DENSE = 150e-6, 200e-6, 200e-6
HIDDEN_BYTES = 7168  # fp8 activations of a 7168-wide model, per token
TOKENS_PER_MB = 64


def unit(num_gpus: int, topo: Topology) -> ReplayInput:
    """M = 2/3 of the GPUs on attention, N = 1/3 on FFN, interleaved (A, A, F); pairing
    groups of 12 attention GPUs with 6 FFN GPUs."""
    att = tuple(g for g in range(num_gpus) if g % 3 != 2)
    ffn = tuple(g for g in range(num_gpus) if g % 3 == 2)
    pairing = tuple(
        (att[12 * i : 12 * i + 12], ffn[6 * i : 6 * i + 6]) for i in range(len(ffn) // 6)
    )
    edge = TOKENS_PER_MB * HIDDEN_BYTES * 8 / 6  # top-8 tokens spread over the group's 6 FFN GPUs
    spec = AfdDecode(att, ffn, pairing, 2, 3, 58, T_A, T_F, edge, 2 * edge, "direct", T_DENSE)
    return ReplayInput(topo, spec)


CASES = {
    72: (Topology((Dim("switch", 72, 450e9, 250e-9),)), 2.0),
    1152: (Topology((Dim("switch", 8, 450e9, 250e-9), Dim("switch", 144, 50e9, 2000e-9))), 60.0),
}


def main(runs: int = 3) -> int:
    ok = True
    for gpus, (topo, target) in CASES.items():
        inp = unit(gpus, topo)
        times, result = [], None
        for _ in range(runs if gpus == 72 else max(1, runs - 2)):
            t0 = time.perf_counter()
            result = replay(inp)
            times.append(time.perf_counter() - t0)
        med = statistics.median(times)
        ok &= med <= target
        print(
            f"{gpus:>5} GPUs: {len(result.graph.ops):>8} ops, {result.sim.rate_updates:>6} "
            f"fair-share updates, step {result.tpot_s * 1e3:.3f} ms simulated; "
            f"wall median {med:.2f} s over {len(times)} runs (target <= {target:g} s) "
            f"{'OK' if med <= target else 'MISSED'}"
        )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(int(sys.argv[sys.argv.index("--runs") + 1]) if "--runs" in sys.argv else 3))
