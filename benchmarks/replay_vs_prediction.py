"""Replay against prediction: for every shipped instance and workload, solve (the MILP over the
evaluator's capacities, without the replay in the loop), replay the chosen plan on the built-in
network simulator, and print per serving role the replayed step over the evaluator's step (the
number the MILP's capacities were computed from). The replay derives its own communication
durations from the topology; compute durations come from the same measured tables, so the
ratio isolates what the network and the overlap schedule change.

    python benchmarks/replay_vs_prediction.py [--tol 0.10] [instances/x.json ...]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

from aicpp_opt import PROJECT_ROOT
from aicpp_opt.errors import InfeasibleError
from aicpp_opt.replay.adapter import replay_plan
from aicpp_opt.search.problem import make_problem
from aicpp_opt.search.solve import solve
from aicpp_opt.spec.enums import RoleKind
from aicpp_opt.spec.instance import load_instance


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("instances", nargs="*")
    ap.add_argument("--tol", type=float, default=0.10)
    args = ap.parse_args(argv)
    paths = args.instances or sorted(str(p) for p in (PROJECT_ROOT / "instances").glob("*.json"))
    head = f"{'instance':<18}{'workload':<22}{'role':<12}{'eval ms':>9}{'replay ms':>10}"
    print(f"{head}{'ratio':>7}")
    infeasible, ratios, t0 = [], [], time.perf_counter()
    for path in paths:
        inst = load_instance(path)
        for wl in inst.workloads:
            try:
                out = solve(make_problem(inst, (wl,)))
            except InfeasibleError as err:
                infeasible.append(f"{Path(path).stem} / {wl.name}: {err}")
                continue
            rep = replay_plan(out.plan, inst)
            for role in out.evaluated.roles:
                if role.kind == RoleKind.PREFILL:
                    continue
                replayed = rep.role(role.role).step_s
                ratio = replayed / role.step.total
                ratios.append(ratio)
                print(
                    f"{Path(path).stem:<18}{wl.name:<22}{role.role:<12}"
                    f"{role.step.total * 1e3:9.2f}{replayed * 1e3:10.2f}{ratio:7.3f}"
                )
    worst = max((abs(r - 1) for r in ratios), default=0.0)
    median = statistics.median(ratios) if ratios else float("nan")
    print(
        f"\nratio = replayed step / evaluator step: median {median:.3f}, worst |ratio - 1| "
        f"{worst:.1%} (tolerance {args.tol:.0%}); {time.perf_counter() - t0:.0f} s in all."
    )
    print("simulator: built-in flow-level (max-min fair links, per-hop latency)")
    if infeasible:
        print("\ninfeasible (skipped):")
        for line in infeasible:
            print(f"  {line}")
    return 0 if worst <= args.tol else 1


if __name__ == "__main__":
    sys.exit(main())
