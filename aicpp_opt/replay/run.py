"""Replay a plan on the built-in simulator and summarise it per role and per op category."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from aicpp_opt.replay.expand import AfdDecode, ReplayInput, decode_graph, prefill_graph
from aicpp_opt.replay.graph import Graph
from aicpp_opt.replay.simulate import SimResult, simulate

SIMULATOR = "built-in flow-level simulator (max-min fair links, per-hop latency)"


@dataclass(frozen=True)
class RoleTimes:
    """A role's GPUs in the decode step: when the last one finishes, and how busy they are."""

    gpus: int
    finish_s: float
    busy_s: float  # mean compute seconds per GPU in the step
    utilisation: float  # busy / step time


@dataclass(frozen=True)
class ReplayResult:
    """The replay's numbers: decode step (TPOT), prefill and KV transfer, per role and category."""

    tpot_s: float
    prefill_s: float | None
    kv_transfer_s: float | None
    roles: dict[str, RoleTimes]
    category_s: dict[str, float]  # mean duration of one op of each category
    graph: Graph = field(repr=False)
    sim: SimResult = field(repr=False)
    simulator: str = SIMULATOR

    @property
    def ttft_s(self) -> float | None:
        """Prefill compute plus KV transfer (no queueing: that is the evaluator's part)."""
        if self.prefill_s is None or self.kv_transfer_s is None:
            return None
        return self.prefill_s + self.kv_transfer_s


def role_gpus(inp: ReplayInput) -> dict[str, tuple[int, ...]]:
    """GPU ids of each decode-side role."""
    d = inp.decode
    if isinstance(d, AfdDecode):
        return {"attention": tuple(d.attention_gpus), "ffn": tuple(d.ffn_gpus)}
    return {d.role: tuple(d.gpus)}


def replay(inp: ReplayInput) -> ReplayResult:
    """Simulate one decode step and, when given, one prefill with its KV transfer."""
    graph = decode_graph(inp.decode)
    sim = simulate(graph, inp.topology)
    step = sim.makespan
    prefill_s = kv_s = None
    if inp.prefill is not None:
        pg, comp = prefill_graph(inp.prefill)
        psim = simulate(pg, inp.topology)
        prefill_s = float(psim.op_end[comp].max())
        kv_s = psim.makespan - prefill_s
    return ReplayResult(
        step, prefill_s, kv_s, _roles(inp, graph, sim), _categories(graph, sim), graph, sim
    )


def _roles(inp: ReplayInput, graph: Graph, sim: SimResult) -> dict[str, RoleTimes]:
    busy: dict[int, float] = {}
    for op in graph.ops:
        if op.kind == "compute":
            busy[op.gpus[0]] = busy.get(op.gpus[0], 0.0) + op.seconds
    out = {}
    for role, gpus in role_gpus(inp).items():
        mean_busy = float(np.mean([busy.get(g, 0.0) for g in gpus]))
        finish = max(sim.gpu_finish.get(g, 0.0) for g in gpus)
        util = mean_busy / sim.makespan if sim.makespan > 0 else 0.0
        out[role] = RoleTimes(len(gpus), finish, mean_busy, util)
    return out


def _categories(graph: Graph, sim: SimResult) -> dict[str, float]:
    """Mean duration per op category, from release to completion (includes contention)."""
    cats = np.array([op.category for op in graph.ops])
    dur = sim.op_end - sim.op_start
    return {str(c): float(dur[cats == c].mean()) for c in np.unique(cats)}
