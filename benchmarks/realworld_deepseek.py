"""Predicted vs published decode throughput of DeepSeek-V3 with wide expert parallelism, with the
solver's own defaults: SGLang tables (the default framework for DeepSeek), EPLB routing, and the
knobs the optimiser would choose here (MTP draft tokens 0 or 1, two-batch overlap on or off),
reported for each combination so the effect of each is visible.

Published:
- DeepSeek, "DeepSeek-V3/R1 Inference System Overview" (Open Source Week day 6, 1 Mar 2025):
  H800 decode nodes (EP144 / DP144 over 18 nodes, MTP on, dual micro-batch overlap) deliver
  ~14.8k output tokens/s per 8-GPU node (1,850 per GPU) at an average 20-22 output tokens/s per
  user. This is a 24-hour average over every request of the service, on a fleet scaled to the
  load (278 nodes at peak, 226.75 on average), not a fully loaded replica at a stated context.
- StepFun, "Step-3 is Large yet Affordable: Model-system Co-design for Cost-effective Decoding"
  (arXiv:2507.19427): DeepSeek-V3 on Hopper at 50 ms TPOT, 4K context, FP8, no MTP, 2,324
  tokens/s per GPU. Printed beside the same setup here: MTP off, KV length 4096, TPOT 50 ms.

Predicted: the closest plan this project can evaluate: h100_sxm tables (H100 SXM: same SMs, FP8
rate, HBM3 3.35 TB/s and 80 GB as the H800; the H800's NVLink is cut to 400 GB/s bidirectional,
which only matters for the in-node share of EP traffic), sixteen 8-GPU HGX nodes (NVLink 450
GB/s, 400 Gb/s InfiniBand = 50 GB/s per GPU), DeepSeek-V3 (MLA), decode DP128 / EP128 (EP must
divide the 256 experts; DeepSeek's EP144 adds 32 redundant experts), KV length ~4.6k (ISL 4096 +
OSL/2 with OSL 1024). The batch per GPU is the largest whose TPOT stays within the target (1/21 s,
the middle of 20-22 tok/s/user; 50 ms for the Step-3 setup) and whose memory fits. Two-batch
overlap is priced with SGLang's decode schedule (``model.schedule.sglang_decode_cycle``; the
DeepEP low-latency all-to-all of decode takes no SMs, as DeepSeek's profile notes say).

Run: python benchmarks/realworld_deepseek.py [--json OUT]
"""

from __future__ import annotations

import argparse
import itertools
import json
from pathlib import Path

from aicpp_opt.evaluate.evaluation import decode_memory
from aicpp_opt.model.context import build_context
from aicpp_opt.model.steps import accepted_tokens, decode_step
from aicpp_opt.spec.enums import RoleKind
from aicpp_opt.spec.instance import parse_instance
from aicpp_opt.spec.plan import Role, Shape
from aicpp_opt.spec.workload import parse_workload

PUBLISHED_TPS_PER_GPU = 14_800 / 8
STEP3_TPS_PER_GPU = 2_324
TARGET_TPOT = 1 / 21
STEP3_TPOT = 0.050
STEP3_WORKLOAD = {"name": "step3-setup", "isl": 4096, "osl": 1, "tpot_ms": 1e3 * STEP3_TPOT}
EP = 128
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


def role(k: int, mtp: int) -> Role:
    shape = Shape(attn_tp=1, attn_dp=EP, moe_tp=1, moe_ep=EP)
    return Role(RoleKind.DECODE, "h100", 1, (), shape, micro_batches=k, mtp=mtp, id="decode")


def tpot(ctx, r: Role, batch: float) -> float:
    return decode_step(ctx, r, batch).total / accepted_tokens(r.mtp, ctx.workload.mtp_acceptance)


def best_batch(ctx, r: Role) -> float:
    """Largest batch per GPU (to 0.1) with TPOT <= the workload's target and memory that
    fits."""

    def ok(b: float) -> bool:
        mem = decode_memory(ctx, Role(**{**r.__dict__, "batch_per_gpu": b}))
        return tpot(ctx, r, b) <= ctx.workload.slo.tpot and all(m.fits for m in mem.values())

    lo, hi = 1.0, 512.0
    if not ok(lo):
        return 0.0
    while hi - lo > 0.1:
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if ok(mid) else (lo, mid)
    return lo


def rows(ctx, mtps: tuple[int, ...]) -> list[tuple[int, int, float, float, float]]:
    """(micro-batches, MTP, batch per GPU, TPOT, tok/s per GPU) of each knob combination."""
    out = []
    for k, mtp in itertools.product((1, 2), mtps):
        r = role(k, mtp)
        batch = best_batch(ctx, r)
        t = tpot(ctx, r, batch)
        out.append((k, mtp, batch, t, batch / t))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", type=Path, default=None, help="write the default's numbers here")
    args = ap.parse_args(argv)
    inst = parse_instance(CLUSTER)
    wl = parse_workload(
        {"name": "deepseek-online", "isl": 4096, "osl": 1024, "tpot_ms": 1e3 * TARGET_TPOT}
    )
    ctx = build_context(inst, wl)
    print(
        f"published: DeepSeek H800 decode {PUBLISHED_TPS_PER_GPU:,.0f} tok/s/GPU at 20-22 "
        f"tok/s/user (MTP, dual micro-batch; a day's average); Step-3 report's DeepSeek-V3 "
        f"figure {STEP3_TPS_PER_GPU:,} tok/s/GPU at 50 ms TPOT, 4K context, no MTP"
    )
    print(f"framework {ctx.framework}, routing {ctx.routing.name}, EP {EP} on {inst.name}")
    print(f"DeepSeek's setting: TPOT <= {TARGET_TPOT * 1e3:.1f} ms, KV length ~4.6k")
    found = rows(ctx, (0, 1))
    for k, mtp, batch, t, tps in found:
        print(
            f"  micro-batches {k}, MTP {mtp}: batch {batch:.1f}/GPU, TPOT {t * 1e3:.1f} ms, "
            f"{tps:,.0f} tok/s/GPU -> {tps / PUBLISHED_TPS_PER_GPU:.2f} x published"
        )
    k, mtp, batch, t, tps = max(found, key=lambda row: row[-1])
    step = decode_step(ctx, role(k, mtp), batch)
    print(f"the optimiser's choice here: micro-batches {k}, MTP {mtp}; its step:")
    for name, total in _groups(step).items():
        print(f"    {name:<28} {total * 1e3:8.2f} ms")
    ratio = tps / PUBLISHED_TPS_PER_GPU
    print(f"predicted/published = {ratio:.2f} (target: within 0.8 .. 1.2)")
    step3_ctx = build_context(inst, parse_workload(STEP3_WORKLOAD))
    print(f"Step-3's setting: TPOT <= {STEP3_TPOT * 1e3:.0f} ms, KV length 4096, MTP off")
    step3 = rows(step3_ctx, (0,))
    for k3, _, batch3, t3, tps3 in step3:
        print(
            f"  micro-batches {k3}: batch {batch3:.1f}/GPU, TPOT {t3 * 1e3:.1f} ms, "
            f"{tps3:,.0f} tok/s/GPU -> {tps3 / STEP3_TPS_PER_GPU:.2f} x Step-3's figure"
        )
    step3_tps = max(row[-1] for row in step3)
    step3_ratio = step3_tps / STEP3_TPS_PER_GPU
    print(f"predicted/Step-3 = {step3_ratio:.2f} (the optimiser's choice without MTP)")
    if args.json is not None:
        out = {
            "predicted_tok_s_per_gpu": tps,
            "published_tok_s_per_gpu": PUBLISHED_TPS_PER_GPU,
            "ratio": ratio,
            "step3_tok_s_per_gpu": STEP3_TPS_PER_GPU,
            "step3_predicted_tok_s_per_gpu": step3_tps,
            "step3_ratio": step3_ratio,
            "micro_batches": k,
            "mtp": mtp,
            "batch_per_gpu": batch,
            "tpot_ms": t * 1e3,
            "framework": ctx.framework,
            "routing": ctx.routing.name,
        }
        args.json.write_text(json.dumps(out, indent=2) + "\n")
    return 0


def _groups(step) -> dict[str, float]:
    """Step time by stage (overlap credits on their own line)."""
    out: dict[str, float] = {}
    for op in step.ops:
        key = "overlap credit" if op.name.startswith("overlap credit") else op.stage.value
        out[key] = out.get(key, 0.0) + op.total
    return out


if __name__ == "__main__":
    raise SystemExit(main())
