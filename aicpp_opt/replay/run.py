"""What one replayed decode step shows: its time, each role's GPUs' finish and busy time, and
the mean duration of each category of op (contention included)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from aicpp_opt.netsim.graph import Graph
from aicpp_opt.netsim.simulate import SimResult
from aicpp_opt.replay.build import ReplicaGpus

SIMULATOR = "built-in flow-level simulator (max-min fair links, per-hop latency)"


@dataclass(frozen=True)
class RoleTimes:
    """A side's GPUs in the decode step: when the last one finishes, and how busy they are."""

    gpus: int
    finish_s: float
    busy_s: float  # mean compute seconds per GPU in the step
    utilisation: float  # busy / step time


@dataclass(frozen=True)
class ReplayResult:
    """The replayed decode step: its makespan, per side and per category."""

    step_s: float
    roles: dict[str, RoleTimes]
    category_s: dict[str, float]
    graph: Graph = field(repr=False)
    sim: SimResult = field(repr=False)


def role_times(graph: Graph, sim: SimResult, gpus: ReplicaGpus) -> dict[str, RoleTimes]:
    """Finish, busy time and utilisation of the replica's attention and FFN GPUs."""
    busy: dict[int, float] = {}
    for op in graph.ops:
        if op.kind == "compute":
            busy[op.gpus[0]] = busy.get(op.gpus[0], 0.0) + op.seconds
    sides = {"attention" if gpus.ffn else "gpu": gpus.attention}
    if gpus.ffn:
        sides["ffn"] = gpus.ffn
    out = {}
    for role, ids in sides.items():
        mean_busy = float(np.mean([busy.get(g, 0.0) for g in ids]))
        finish = max(sim.gpu_finish.get(g, 0.0) for g in ids)
        util = mean_busy / sim.makespan if sim.makespan > 0 else 0.0
        out[role] = RoleTimes(len(ids), finish, mean_busy, util)
    return out


def categories(graph: Graph, sim: SimResult) -> dict[str, float]:
    """Mean duration per op category, from release to completion (includes contention)."""
    cats = np.array([op.category for op in graph.ops])
    dur = sim.op_end - sim.op_start
    return {str(c): float(dur[cats == c].mean()) for c in np.unique(cats)}
