"""Sweep speed, one command: ``python benchmarks/sweep_speed.py [--runs N] [--spec SPEC]``.

Runs ``aicpp-opt sweep`` on SPEC (default ``instances/sweeps/small_h200_16.yaml``: 24 scenarios,
small_h200_16 x 3 workloads x 2 SLO tiers x 4 budgets, replay off) end to end, each time in a
fresh process, into an empty folder (nothing to resume) and with an empty capacity cache
(``AICPP_OPT_CACHE``), so every run does the whole work: ``--executor local --workers 1``,
``local --workers 2`` and ``ray --workers 2`` (a local Ray instance the command starts), N rounds
(default 1: a round took 4 to 7 minutes on 2 busy shared cores; ``--runs 3`` gives medians).
Prints:

- the median wall time of each and the speed-up of 2 workers over 1;
- the sum of the scenarios' own ``solve_seconds`` (with 1 worker, the wall time minus it is the
  fixed cost: process start, imports, pool or Ray start);
- the 1-minute load average before each run (other users' work: 2 workers cannot beat 1
  without a free core);
- whether every table is identical except ``solve_seconds``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

from aicpp_opt.studies.scenario import TIMING_COLUMNS

ROOT = Path(__file__).resolve().parent.parent
CONFIGS = {
    "local, 1 worker": ["--executor", "local", "--workers", "1"],
    "local, 2 workers": ["--executor", "local", "--workers", "2"],
    "ray, 2 workers": ["--executor", "ray", "--workers", "2"],
}


def timed_sweep(spec: Path, options: list[str], out: Path) -> tuple[float, pd.DataFrame]:
    """Wall seconds of one ``aicpp-opt sweep`` in a fresh process with an empty capacity cache
    of its own (every run does the whole work), and its table."""
    cache = out.with_suffix(".cache")
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "aicpp_opt.cli", "sweep", str(spec), *options, "--quiet"]
        + ["--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "AICPP_OPT_CACHE": str(cache)},
    )
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"aicpp-opt sweep {' '.join(options)} failed:\n{proc.stderr}{proc.stdout}")
    return seconds, pd.read_parquet(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--spec", type=Path, default=ROOT / "instances/sweeps/small_h200_16.yaml")
    a = parser.parse_args()

    times: dict[str, list[float]] = {name: [] for name in CONFIGS}
    work: dict[str, list[float]] = {name: [] for name in CONFIGS}
    load: dict[str, list[float]] = {name: [] for name in CONFIGS}
    tables: list[pd.DataFrame] = []
    with tempfile.TemporaryDirectory() as tmp:
        for run in range(a.runs):
            for i, (name, options) in enumerate(CONFIGS.items()):
                load[name].append(os.getloadavg()[0])
                seconds, table = timed_sweep(a.spec, options, Path(tmp, f"{run}-{i}.parquet"))
                times[name].append(seconds)
                work[name].append(float(table["solve_seconds"].sum()))
                tables.append(table.drop(columns=list(TIMING_COLUMNS)))
    n = len(tables[0])
    print(
        f"aicpp-opt sweep {a.spec.name}: {n} scenarios, medians of {a.runs} run(s), "
        f"{os.cpu_count()} CPUs"
    )
    for name in CONFIGS:
        print(
            f"  {name:<17} {statistics.median(times[name]):6.1f} s wall "
            f"(runs {', '.join(f'{t:.1f}' for t in times[name])}); "
            f"scenarios' own solve_seconds {statistics.median(work[name]):.1f} s; "
            f"load average before {statistics.median(load[name]):.1f}"
        )
    one = statistics.median(times["local, 1 worker"])
    for name in ("local, 2 workers", "ray, 2 workers"):
        speedup = one / statistics.median(times[name])
        print(f"speed-up of {name} over local, 1 worker: {speedup:.2f}x")
    same = all(t.equals(tables[0]) for t in tables[1:])
    print(f"tables identical except solve_seconds ({len(tables)} runs): {'yes' if same else 'NO'}")
    if not same:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
