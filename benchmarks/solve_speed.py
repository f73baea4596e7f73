"""Optimiser speed, one command: ``python benchmarks/solve_speed.py [--runs N] [--skip-fleet]``.

Prints medians of N runs (shared, noisy machines: read the ratios), each beside the strongest
simple alternative on the same settled options, the closed-form single-family scan
(``aicpp_opt.search.scan``), timed in the same process:

1. ``aicpp-opt solve instances/h200_nvl72.json --no-simulate`` end to end in a fresh process
   (imports, tables, capacities, MILP, evaluator, built-in replay): with an empty capacity cache
   (cold, target <= 5 s on 2 idle cores) and with the cache the first run left (warm, <= 1.5 s).
   The request-level simulation check (default on in ``solve``; about 6 s of the h200_nvl72
   solve) is left out: the targets predate it, and ``solve`` prints its time separately.
2. ``instances/fleet_1152.json`` cold, no replay, no simulation (target <= 30 s).
3. ``frontier`` over 9 budgets against one warm solve (target <= 3x), with its default modes
   (the instance's ``search.modes``, the modes ``solve`` searches: agg, pd, afd+pd) and with all
   four (``--modes agg,pd,afd,afd+pd``: mode afd, AFD units that prefill themselves, adds
   15,120 families no solve of the instance settles): first with the cache one ``solve`` left
   (each mode alone needs the best family of each group among its own families, which the
   all-modes solve did not settle), then again with the cache the first frontier left.

Every target line says met or MISSED; the capacity phase's share of each run is printed so a
miss says where the time went.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def timed_cli(args: list[str], cache: str) -> tuple[float, dict]:
    """Wall seconds of one ``aicpp-opt`` run in a fresh process, and its --json result."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp, "result.json")
        json_args = ["--json", str(out)] if args[0] != "frontier" else ["--out", tmp]
        start = time.perf_counter()
        proc = subprocess.run(
            [sys.executable, "-m", "aicpp_opt.cli", *args, *json_args],
            cwd=ROOT,
            capture_output=True,
            text=True,
            env={**os.environ, "AICPP_OPT_CACHE": cache},
        )
        seconds = time.perf_counter() - start
        if proc.returncode != 0:
            raise SystemExit(f"aicpp-opt {' '.join(args)} failed:\n{proc.stderr}{proc.stdout}")
        result = json.loads(out.read_text()) if args[0] != "frontier" else {}
        return seconds, result


def scan_seconds(instance: str) -> tuple[float, float]:
    """(seconds, tokens/s) of the closed-form scan over the settled options (cache warm)."""
    from aicpp_opt.search.problem import make_problem
    from aicpp_opt.search.scan import scan
    from aicpp_opt.search.solve import Timing, options
    from aicpp_opt.spec.instance import load_instance

    inst = load_instance(instance)
    prob = make_problem(inst)
    opts = options(prob, frozenset(), Timing())
    start = time.perf_counter()
    best = scan(opts, inst, prob.budget, prob.workloads[0].osl)
    return time.perf_counter() - start, best.tokens_per_s


def verdict(ok: bool) -> str:
    return "met" if ok else "MISSED"


def solve_case(name: str, args: list[str], runs: int, cold_target: float, warm_target: float):
    cold, warm, result = [], [], {}
    for _ in range(runs):
        with tempfile.TemporaryDirectory() as cache:
            t, result = timed_cli(args, cache)
            cold.append(t)
            t, _ = timed_cli(args, cache)
            warm.append(t)
            os.environ["AICPP_OPT_CACHE"] = cache
            scan_s, scan_tps = scan_seconds(args[1])
            del os.environ["AICPP_OPT_CACHE"]
    c, w = statistics.median(cold), statistics.median(warm)
    tim, st = result["timing"], result["solver"]
    print(
        f"{name}: cold {c:.2f} s ({verdict(c <= cold_target)}: <= {cold_target:g} s), "
        f"warm {w:.2f} s ({verdict(w <= warm_target)}: <= {warm_target:g} s)"
    )
    print(
        f"  last cold run: capacities {tim['capacities']:.2f} s ({tim['families']} families, "
        f"{tim['exact']} exact), HiGHS {tim['milp']:.3f} s ({st['n_vars']} vars, "
        f"{st['n_integer']} integer), evaluator {tim['evaluate']:.2f} s, replay "
        f"{tim['replay']:.2f} s"
    )
    milp_tps = result["predicted"]["throughput_tok_s"]
    print(
        f"  closed-form single-family scan on the same options: {scan_s * 1e3:.1f} ms, "
        f"{scan_tps:,.0f} tok/s; MILP {milp_tps:,.0f} tok/s "
        f"({milp_tps / scan_tps - 1:+.1%} from mixing families)"
        if scan_tps
        else ""
    )
    return w


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--skip-fleet", action="store_true")
    a = parser.parse_args()
    nvl72 = ["solve", "instances/h200_nvl72.json", "--no-simulate"]
    warm = solve_case("solve h200_nvl72 (replay on)", nvl72, a.runs, 5.0, 1.5)
    from aicpp_opt.spec.instance import MODES

    budgets = "8,16,24,32,40,48,56,64,72"
    for modes, label in (("auto", "the instance's modes"), (",".join(MODES), "all four modes")):
        with tempfile.TemporaryDirectory() as cache:
            timed_cli(nvl72, cache)
            args = ["frontier", "instances/h200_nvl72.json", "--budgets", budgets, "--modes", modes]
            first, _ = timed_cli(args, cache)
            again, _ = timed_cli(args, cache)
        for when, t in (("after one solve", first), ("cache warm for every mode", again)):
            print(
                f"frontier h200_nvl72 over 9 budgets, {label} ({when}): {t:.2f} s = "
                f"{t / warm:.1f}x one warm solve ({verdict(t <= 3 * warm)}: <= 3x)"
            )
    if not a.skip_fleet:
        solve_case(
            "solve fleet_1152 (no replay)",
            ["solve", "instances/fleet_1152.json", "--no-replay", "--no-simulate"],
            1,
            30.0,
            30.0,
        )


if __name__ == "__main__":
    main()
