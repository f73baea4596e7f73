"""``aicpp-opt solve INSTANCE --mode afd --workload W`` on every shipped instance and workload,
with the replay check (or ``--no-replay``), end to end through the command: the plan's AFD
units, the evaluator's TPOT at the SLO percentile and the replayed TPOT. A solve that exits
other than 0 (solved) or 3 (infeasible, listed with its reason) fails the run (exit 1).

The unit suite runs ``small_h200_16`` (tests/test_replay_cli.py); this is the full matrix,
tens of seconds to minutes per pair.

    python benchmarks/afd_mode_matrix.py [--no-replay] [instances/x.json ...]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from click.testing import CliRunner

from aicpp_opt import PROJECT_ROOT
from aicpp_opt.cli import main as cli
from aicpp_opt.spec.instance import load_instance


def units(plan: dict) -> str:
    """Each AFD role as ``id: replicas x (M+N) K=k dispatch``."""
    out = []
    for r in plan["roles"]:
        a = r.get("afd")
        if a:
            shape = f"{r['replicas']} x ({a['attention_gpus']}+{a['ffn_gpus']})"
            out.append(f"{r['id']}: {shape} K={r['micro_batches']} {a['dispatch']}")
    return "; ".join(out) or "no AFD role"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("instances", nargs="*")
    ap.add_argument("--no-replay", action="store_true", help="solve without the replay check")
    args = ap.parse_args(argv)
    paths = args.instances or sorted(str(p) for p in (PROJECT_ROOT / "instances").glob("*.json"))
    replay = ["--no-replay"] if args.no_replay else []
    print(f"{'instance':<18}{'workload':<22}{'TPOT ms':>9}{'replay':>8}{'s':>6}  AFD units")
    failed, infeasible = [], []
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "out.json"
        for path in paths:
            for wl in load_instance(path).workloads:
                name = f"{Path(path).stem} / {wl.name}"
                t0 = time.perf_counter()
                cmd = ["solve", path, "--mode", "afd", "--workload", wl.name, *replay]
                res = CliRunner().invoke(cli, [*cmd, "--json", str(out)])
                if res.exit_code == 3:
                    infeasible.append(f"{name}: {res.output.strip().splitlines()[-1]}")
                    continue
                if res.exit_code != 0:
                    failed.append(f"{name} (exit {res.exit_code}): {res.output.strip()[-2000:]}")
                    continue
                data = json.loads(out.read_text())
                rep = (data["replay"] or {}).get("tpot_mean_ms")
                print(
                    f"{Path(path).stem:<18}{wl.name:<22}{data['evaluated']['tpot_ms']:9.2f}"
                    f"{'-' if rep is None else f'{rep:.2f}':>8}{time.perf_counter() - t0:6.0f}"
                    f"  {units(data['plan'])}"
                )
    for line in infeasible:
        print(f"infeasible: {line}")
    for line in failed:
        print(f"FAILED: {line}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
