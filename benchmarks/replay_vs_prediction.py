"""Replay against prediction: for every shipped instance and workload, solve (MILP), replay
the chosen plan on the built-in simulator, and print the replayed TPOT over the MILP's
predicted TPOT (``outcome.predicted.tpot``, the PWL model the MILP optimised).

Two replays per plan: with the compute durations of the MILP's own evaluation (PWL
surrogates: isolates what the replay models differently, i.e. the network and the AFD
pipeline) and with those of the measured-grid evaluation (adds the PWL fit error).
Infeasible instance/workload pairs are listed at the end.

    python benchmarks/replay_vs_prediction.py [--tol 0.10] [instances/x.json ...]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from aicpp_opt import PROJECT_ROOT
from aicpp_opt.errors import InfeasibleError
from aicpp_opt.opt.problem import make_problem
from aicpp_opt.opt.solve import solve
from aicpp_opt.replay.adapter import replay_plan
from aicpp_opt.spec.instance import load_instance
from aicpp_opt.spec.plan import Role


def shape(role: Role) -> str:
    s = role.shape
    text = f"TP{s.attn_tp}xDP{s.attn_dp}/EP{s.moe_ep}"
    if role.afd is not None:
        a = role.afd
        text = f"M{a.attention_gpus}+N{a.ffn_gpus} K{role.micro_batches} {a.dispatch} " + text
    return f"{text} b{role.batch_per_gpu:.0f}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("instances", nargs="*")
    ap.add_argument("--tol", type=float, default=0.10)
    args = ap.parse_args(argv)
    paths = args.instances or sorted(str(p) for p in (PROJECT_ROOT / "instances").glob("*.json"))
    head = (
        f"{'instance':<18}{'workload':<24}{'mode':<7}{'decode shape':<40}"
        f"{'MILP ms':>8}{'eval ms':>8}{'replay ms':>10}{'ratio':>7}{'r(meas)':>8}"
        f"{'TTFT pred':>10}{'replay':>8}"
    )
    print(head)
    infeasible, worst, t0 = [], 0.0, time.perf_counter()
    for path in paths:
        inst = load_instance(path)
        for wl in inst.workloads:
            try:
                out = solve(make_problem(inst, wl))
            except InfeasibleError as err:
                infeasible.append(f"{Path(path).stem} / {wl.name}: {err}")
                continue
            plan, pred = out.plan, out.predicted
            on_pred = replay_plan(plan, inst, wl, pred)
            on_meas = replay_plan(plan, inst, wl, out.evaluated)
            ratio = on_pred.tpot_s / pred.tpot
            worst = max(worst, abs(ratio - 1))
            dec = plan.role("decode") or plan.role("agg")
            ttft = on_pred.ttft_s
            print(
                f"{Path(path).stem:<18}{wl.name:<24}{plan.mode:<7}{shape(dec):<40}"
                f"{pred.tpot * 1e3:8.2f}{out.evaluated.tpot * 1e3:8.2f}"
                f"{on_pred.tpot_s * 1e3:10.2f}{ratio:7.3f}{on_meas.tpot_s / pred.tpot:8.3f}"
                f"{pred.ttft.total * 1e3:10.1f}"
                f"{'-' if ttft is None else f'{ttft * 1e3:.1f}':>8}"
            )
    print(
        f"\nratio = replayed TPOT (compute from the MILP's PWL evaluation) / MILP TPOT; "
        f"r(meas) uses the measured-grid evaluation. Worst |ratio - 1| = {worst:.1%} "
        f"(tolerance {args.tol:.0%}); {time.perf_counter() - t0:.0f} s in all."
    )
    print("simulator: built-in flow-level (max-min fair links, per-hop latency)")
    if infeasible:
        print("\ninfeasible (skipped):")
        for line in infeasible:
            print(f"  {line}")
    return 0 if worst <= args.tol else 1


if __name__ == "__main__":
    sys.exit(main())
