"""Predicted vs measured decode throughput of DeepSeek-V3/R1 with wide expert parallelism.

Measured (public):
- DeepSeek, "DeepSeek-V3/R1 Inference System Overview" (Open Source Week day 6, 1 Mar 2025):
  H800 decode nodes (EP144 / DP144 over 18 nodes, MTP on) deliver ~14.8k output tokens/s per
  8-GPU node (1,850 per GPU) at an average 20-22 output tokens/s per user (45-50 ms/token).
- LMSYS, "Deploying DeepSeek with PD Disaggregation and Large-scale Expert Parallelism on 96
  H100 GPUs" (5 May 2025): 22.3k output tokens/s per node for 2,000-token inputs (decode DP72 /
  EP72 on 9 nodes); at ~100 ms ITL, so it is not a 50 ms point and is shown for context only.

Predicted: the closest plan this project can evaluate: h100_sxm tables (H100 SXM: same SMs,
FP8 rate, HBM3 3.35 TB/s and 80 GB as the H800; the H800's NVLink is cut to 400 GB/s
bidirectional, which only matters for the in-node share of EP traffic), sixteen 8-GPU HGX nodes
(NVLink 450 GB/s, 400 Gb/s InfiniBand = 50 GB/s per GPU), DeepSeek-V3 (MLA), decode DP128 /
EP128 (EP must divide the 256 experts; DeepSeek's EP144 adds 32 redundant experts), KV length
~4.6k (ISL 4096 + OSL/2 with OSL 1024). The batch per GPU is the largest whose TPOT stays within
1/21 s (the middle of 20-22 tok/s/user). Printed for balanced routing (EPLB-like) and for the
power-law 1.01 skew of the measured tables, at EP 128 (DeepEP beyond the measured EP 64, so
dispatch/combine are alpha-beta) and at EP 64 (the largest EP with measured multi-node DeepEP),
with the tables each piece came from (wide-EP DeepEP + DeepGEMM experts where measured).

Run: python benchmarks/realworld_deepseek.py
"""

from __future__ import annotations

import itertools

from aicpp_opt.perf import build_context, decode_step, memory_per_gpu
from aicpp_opt.spec.instance import parse_instance
from aicpp_opt.spec.model import load_model
from aicpp_opt.spec.plan import Shape
from aicpp_opt.spec.workload import parse_workload

MEASURED_TPS_PER_GPU = 14_800 / 8
TARGET_TPOT = 1 / 21
SHAPES = {ep: Shape(attn_tp=1, attn_dp=ep, moe_tp=1, moe_ep=ep) for ep in (128, 64)}
CLUSTER = {
    "name": "h100_hgx_16x8",
    "cluster": {
        "pools": [
            {
                "name": "h100",
                "system": "h100_sxm",
                "gpus": 128,
                "topology": [
                    {"kind": "switch", "size": 8, "bw_GBps": 450, "latency_ns": 250},
                    {"kind": "switch", "size": 16, "bw_GBps": 50, "latency_ns": 2000},
                ],
            }
        ]
    },
    "model": "deepseek-v3",
}


def best_batch(ctx, shape: Shape) -> tuple[int, float]:
    """Largest batch per GPU with TPOT <= target (step time is monotone in batch)."""
    lo, hi = 1, 512
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if decode_step(ctx, "h100", shape, mid).total <= TARGET_TPOT:
            lo = mid
        else:
            hi = mid - 1
    return lo, decode_step(ctx, "h100", shape, lo).total


def sources(step, *words: str) -> str:
    """Distinct sources of the MoE-layer ops whose names contain one of ``words``."""
    found = {op.cost.source.split(" [")[0] for op in step.ops if any(w in op.name for w in words)}
    return ", ".join(sorted(found))


def main() -> None:
    inst = parse_instance(CLUSTER)
    wl = parse_workload(
        {"name": "deepseek-online", "isl": 4096, "osl": 1024, "tpot_ms": 1e3 * TARGET_TPOT}
    )
    model = load_model("deepseek-v3")
    print(
        f"measured: DeepSeek H800 decode {MEASURED_TPS_PER_GPU:,.0f} tok/s/GPU at 20-22 tok/s/user"
    )
    for (ep, shape), routing in itertools.product(SHAPES.items(), ("balanced", "power_law_1.01")):
        ctx = build_context(inst, wl, model=model, routing=routing)
        batch, tpot = best_batch(ctx, shape)
        step = decode_step(ctx, "h100", shape, batch)
        tps = batch / tpot
        mem = memory_per_gpu(
            ctx, "h100", shape, seqs_per_gpu=batch, context=wl.decode_context, tokens_per_gpu=batch
        )
        comm = sum(op.total for op in step.ops if "dispatch" in op.name or "combine" in op.name)
        moe = sum(op.total for op in step.ops if op.name.startswith("routed"))
        attn = sum(op.total for op in step.ops if "attention" in op.name)
        print(
            f"predicted (EP {ep}, {routing}): batch {batch}/GPU, TPOT {tpot * 1e3:.1f} ms, "
            f"{tps:,.0f} tok/s/GPU [attention {attn * 1e3:.1f} ms, experts {moe * 1e3:.1f} ms, "
            f"EP dispatch+combine {comm * 1e3:.1f} ms; memory {mem.total / 1e9:.0f} of "
            f"{mem.capacity / 1e9:.0f} GB]"
            f" -> predicted/measured = {tps / MEASURED_TPS_PER_GPU:.2f}\n"
            f"    experts: {sources(step, 'routed')}; "
            f"EP comm: {sources(step, 'dispatch', 'combine')}"
        )


if __name__ == "__main__":
    main()
