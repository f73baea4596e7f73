"""Sizing round trip on every shipped instance: ``size --demand chat=C,coding=K`` (the
instance's first chat and coding workloads) gives the cheapest fleet; ``solve --budget`` that
many GPUs with the demand's mix must serve at least the demand. Prints one row per instance
and exits 1 on a miss.

    python benchmarks/size_roundtrip.py [--chat 20] [--coding 5] [instances/x.json ...]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from aicpp_opt import PROJECT_ROOT
from aicpp_opt.errors import InfeasibleError
from aicpp_opt.search.problem import make_problem
from aicpp_opt.search.solve import solve
from aicpp_opt.spec.instance import load_instance


def first(inst, preset: str) -> str | None:
    return next((w.name for w in inst.workloads if w.name.split("-")[0] == preset), None)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("instances", nargs="*")
    ap.add_argument("--chat", type=float, default=20.0)
    ap.add_argument("--coding", type=float, default=5.0)
    a = ap.parse_args(argv)
    paths = a.instances or sorted(str(p) for p in (PROJECT_ROOT / "instances").glob("*.json"))
    print(
        f"{'instance':<18}{'demand req/s':>22}{'size GPUs':>10}{'served req/s':>24}{'ok':>4}"
        f"{'s':>7}"
    )
    misses = 0
    for path in paths:
        inst = load_instance(path)
        names = {first(inst, "chat"): a.chat, first(inst, "coding"): a.coding}
        names.pop(None, None)
        start = time.perf_counter()
        try:
            sized = solve(make_problem(inst, demand=names), replay=None)
        except InfeasibleError as err:
            print(f"{Path(path).stem:<18} infeasible: {err}")
            continue
        gpus = sum(sized.solution.gpus.values())
        again = solve(make_problem(inst, budget=gpus, shares=names), replay=None)
        served = {w.workload.name: w.flow.arrival_rate for w in again.evaluated.workloads}
        ok = all(served[n] >= r * (1 - 1e-9) for n, r in names.items())
        misses += not ok
        demand = ", ".join(f"{r:g}" for r in names.values())
        got = ", ".join(f"{served[n]:.2f}" for n in names)
        print(
            f"{Path(path).stem:<18}{demand:>22}{gpus:>10}{got:>24}{'yes' if ok else 'NO':>4}"
            f"{time.perf_counter() - start:7.0f}"
        )
    return 1 if misses else 0


if __name__ == "__main__":
    sys.exit(main())
