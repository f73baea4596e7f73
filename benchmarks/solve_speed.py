"""Optimiser speed, one command: ``python benchmarks/solve_speed.py [--runs N] [--skip-fleet]``.

Prints, as medians of N runs measured in this same process run (shared, noisy machines: read
the ratios):

1. ``aicpp-opt solve instances/h200_nvl72.json`` end to end (a fresh process: imports, tables,
   options, MILP, evaluator check and the built-in replay), all modes, proven optimum. Target:
   <= 5 s on a 2-core machine.
2. The same problem by ``--method enumerate`` (the exhaustive oracle): the MILP must be >= 50x
   faster, and both must find the same objective.
3. ``instances/fleet_1152.json`` (1,152 GPUs, 16 racks x 72, GB200 + H200) to within 0.5 % gap,
   end to end without replay. Target: <= 60 s.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def timed_cli(args: list[str]) -> tuple[float, dict]:
    """Wall seconds of one ``aicpp-opt`` run in a fresh process, and its --json result."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp, "result.json")
        start = time.perf_counter()
        proc = subprocess.run(
            [sys.executable, "-m", "aicpp_opt.cli", *args, "--json", str(out)],
            cwd=ROOT,
            capture_output=True,
            text=True,
        )
        seconds = time.perf_counter() - start
        if proc.returncode != 0:
            raise SystemExit(f"aicpp-opt {' '.join(args)} failed:\n{proc.stderr}{proc.stdout}")
        return seconds, json.loads(out.read_text())


def median_run(args: list[str], runs: int) -> tuple[float, list[float], dict]:
    times, result = [], {}
    for _ in range(runs):
        t, result = timed_cli(args)
        times.append(t)
    return statistics.median(times), times, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--skip-fleet", action="store_true")
    a = parser.parse_args()

    nvl72 = ["solve", "instances/h200_nvl72.json"]
    milp_s, milp_all, milp = median_run(nvl72, a.runs)
    print(f"solve h200_nvl72 (all modes, replay on): median {milp_s:.2f} s over {a.runs} runs")
    print(
        f"  runs: {', '.join(f'{t:.2f}' for t in milp_all)}; target <= 5 s: "
        f"{'met' if milp_s <= 5 else 'MISSED'}"
    )
    print(
        f"  solver: {milp['solver']['status']}, gap {milp['solver']['gap']:.1e}, "
        f"{milp['solver']['n_vars']} vars, {milp['solver']['n_constraints']} constraints"
    )

    enum_s, enum_all, enum = median_run([*nvl72, "--method", "enumerate", "--no-replay"], 1)
    ratio = enum_s / milp_s
    same = abs(milp["predicted"]["throughput_tok_s"] - enum["predicted"]["throughput_tok_s"])
    same /= enum["predicted"]["throughput_tok_s"]
    print(
        f"enumerate h200_nvl72 (no replay): {enum_s:.2f} s ({enum['solver']['n_vars']} "
        f"combinations); MILP is {ratio:.0f}x faster (target >= 50x: "
        f"{'met' if ratio >= 50 else 'MISSED'}); objectives differ by {same:.2e}"
    )

    if a.skip_fleet:
        return
    fleet = ["solve", "instances/fleet_1152.json", "--gap", "0.005", "--no-replay"]
    fleet_s, fleet_all, res = median_run(fleet, 1)
    print(
        f"solve fleet_1152 (1,152 GPUs, gap <= 0.5 %, no replay): {fleet_s:.1f} s, "
        f"proven gap {res['solver']['gap']:.2e}, {res['solver']['n_vars']} vars; "
        f"target <= 60 s: {'met' if fleet_s <= 60 else 'MISSED'}"
    )


if __name__ == "__main__":
    main()
