"""Simulated collectives against aiconfigurator-core's measured NCCL tables (h200_sxm).

Topology: the 8-GPU NVLink switch of h200_sxm at the system spec's ``intra_node_bw``
(450 GB/s per direction) and the instance file's 250 ns per link. Two models:
  nominal: the simulator alone on that topology;
  calibrated: a LinkModel (bandwidth efficiency, per-collective overhead) fitted on the
  2- and 4-GPU tables (messages >= 1 MiB) and checked on the held-out 8-GPU table.
Prints the error per collective and message size, and the median error for 8 GPUs,
all_reduce and alltoall, messages >= 1 MiB (target <= 25%).

    python benchmarks/replay_vs_nccl.py
"""

from __future__ import annotations

import sys

import numpy as np
from aicpp_opt.replay.comm_sweep import LinkModel, collective_time, fit_link_model

from aicpp_opt.netsim.topology import Dim, Topology
from calibrate import nccl_reference

SYSTEM = "h200_sxm"
TARGET = 0.25


def main() -> int:
    from importlib import resources

    import yaml

    spec = yaml.safe_load(
        (resources.files("aiconfigurator_core") / "systems" / f"{SYSTEM}.yaml").read_text()
    )
    topo = Topology((Dim("switch", 8, float(spec["node"]["intra_node_bw"]), 250e-9),))
    measured = nccl_reference.load(SYSTEM)
    train = [m for m in measured if m[1] in (2, 4) and m[2] >= 1 << 20]
    models = {
        "nominal": LinkModel(),
        "calibrated": fit_link_model(topo, train, "2-4 GPU NCCL, >= 1 MiB"),
    }
    m = models["calibrated"]
    print(
        f"calibrated link model: efficiency {m.efficiency:.3f}, "
        f"overhead {m.overhead_s * 1e6:.2f} us"
    )
    test = [
        r for r in measured if r[1] == 8 and r[0] in ("all_reduce", "alltoall") and r[2] >= 1 << 20
    ]
    print(f"{'op':<12}{'bytes':>11}{'NCCL ms':>10}" + "".join(f"{k:>12}{'err':>8}" for k in models))
    errs = {k: [] for k in models}
    for op, n, nbytes, secs in test:
        line = f"{op:<12}{int(nbytes):>11}{secs * 1e3:10.4f}"
        for k, model in models.items():
            t = collective_time(topo, op, n, nbytes, model=model)
            errs[k].append(abs(t / secs - 1))
            line += f"{t * 1e3:12.4f}{t / secs - 1:8.1%}"
        print(line)
    for k, e in errs.items():
        print(f"median |error|, 8 GPUs, all_reduce + alltoall, >= 1 MiB, {k}: {np.median(e):.1%}")
    final = float(np.median(errs["calibrated"]))
    print(f"target <= {TARGET:.0%}: {'OK' if final <= TARGET else 'MISSED'} (calibrated, held out)")
    return 0 if final <= TARGET else 1


if __name__ == "__main__":
    sys.exit(main())
