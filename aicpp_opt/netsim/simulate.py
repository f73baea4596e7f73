"""Discrete-event, flow-level, congestion-aware network simulator.

Flows share every link max-min fairly in each direction (links are directional, so the
two directions never compete); a flow's data is delivered its path latency (sum of per-link
latencies) after its last byte leaves, so a lone transfer takes latency + size / bandwidth
exactly. Per-GPU injection limits are the egress/ingress port links of the topology.
Compute runs on each GPU one operation at a time in program order of readiness.
Events that fall within ``TIME_TOL`` of each other are processed as one batch with one
vectorised fair-share computation.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable
from dataclasses import dataclass, replace

import numpy as np

from aicpp_opt.netsim.collectives import expand
from aicpp_opt.netsim.fabric import Fabric
from aicpp_opt.netsim.graph import Graph
from aicpp_opt.netsim.topology import Topology

TIME_TOL = 1e-12
COMPUTE, FLOW, JOIN = 0, 1, 2


@dataclass(frozen=True)
class SimResult:
    """Times (s) of one replay: every op's start and end, each GPU's finish, the makespan."""

    op_start: np.ndarray
    op_end: np.ndarray
    gpu_finish: dict[int, float]
    makespan: float
    rate_updates: int


@dataclass
class _Compiled:
    kind: np.ndarray
    gpu: np.ndarray  # compute GPU or flow source
    dst: np.ndarray
    amount: np.ndarray  # seconds (compute) or bytes (flow)
    succ_ptr: np.ndarray
    succ: np.ndarray
    indeg: np.ndarray
    op_entry: np.ndarray  # node whose release marks the op's start
    op_exit: np.ndarray  # node whose completion marks the op's end


def compile_graph(graph: Graph) -> _Compiled:
    """Lower ops to simulator nodes: compute, flows (collectives expanded) and joins."""
    kind: list[int] = []
    gpu: list[int] = []
    dst: list[int] = []
    amount: list[float] = []
    edges_from: list[int] = []
    edges_to: list[int] = []
    entry = np.empty(len(graph.ops), dtype=np.int64)
    exit_ = np.empty(len(graph.ops), dtype=np.int64)

    def node(k: int, g: int, d: int, a: float) -> int:
        kind.append(k)
        gpu.append(g)
        dst.append(d)
        amount.append(a)
        return len(kind) - 1

    for i, op in enumerate(graph.ops):
        if op.kind == "compute":
            first = last = node(COMPUTE, op.gpus[0], -1, op.seconds)
        elif op.kind == "transfer":
            first = last = node(FLOW, op.gpus[0], op.gpus[1], op.nbytes)
        else:
            first = node(JOIN, -1, -1, 0.0)
            src, dsts, sizes, deps = expand(op.collective, op.gpus, op.nbytes, op.algorithm)
            base = len(kind)
            for s, d, b in zip(src, dsts, sizes, strict=True):
                node(FLOW, s, d, b)
            last = node(JOIN, -1, -1, 0.0)
            for j, dj in enumerate(deps):
                for p in [base + p for p in dj] or [first]:
                    edges_from.append(p)
                    edges_to.append(base + j)
                edges_from.append(base + j)
                edges_to.append(last)
            if not src:
                edges_from.append(first)
                edges_to.append(last)
        for d in op.deps:
            edges_from.append(exit_[d])
            edges_to.append(first)
        entry[i], exit_[i] = first, last
    n = len(kind)
    efrom = np.asarray(edges_from, dtype=np.int64)
    eto = np.asarray(edges_to, dtype=np.int64)
    order = np.argsort(efrom, kind="stable")
    ptr = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(np.bincount(efrom, minlength=n), out=ptr[1:])
    return _Compiled(
        np.asarray(kind, dtype=np.int8),
        np.asarray(gpu, dtype=np.int64),
        np.asarray(dst, dtype=np.int64),
        np.asarray(amount, dtype=float),
        ptr,
        eto[order],
        np.bincount(eto, minlength=n),
        entry,
        exit_,
    )


def max_min_rates(links: np.ndarray, capacity: np.ndarray) -> np.ndarray:
    """Max-min fair rates of flows (rows of link ids) over links of the given capacity.

    Progressive filling: the link with the smallest fair share fixes the rate of every
    unfixed flow crossing it; its capacity is used up; repeat. Vectorised over flows.
    """
    nlinks = len(capacity)
    rate = np.zeros(len(links))
    left = capacity.astype(float)
    todo = np.arange(len(links))
    while len(todo):
        sub = links[todo]
        count = np.bincount(sub.ravel(), minlength=nlinks)
        with np.errstate(divide="ignore", invalid="ignore"):
            share = np.where(count > 0, left / count, np.inf)
        level = share.min()
        hit = (share <= level * (1 + 1e-9))[sub].any(axis=1)
        fixed = todo[hit]
        rate[fixed] = level
        left = np.maximum(left - level * np.bincount(links[fixed].ravel(), minlength=nlinks), 0)
        left[-1] = np.inf
        todo = todo[~hit]
    return rate


def simulate(graph: Graph, topo: Topology | Fabric) -> SimResult:
    """Run the graph on the topology; returns every op's start and end time."""
    return _run(_lowered(graph, topo), topo)


def makespans(graph: Graph, topo: Topology | Fabric, scales: Iterable[float]) -> list[float]:
    """The makespan of ``graph`` with every flow's bytes times each of ``scales`` (compute
    untouched): one lowering for many sizes of one pattern."""
    c = _lowered(graph, topo)
    flows = c.kind == FLOW
    return [
        _run(replace(c, amount=np.where(flows, c.amount * s, c.amount)), topo).makespan
        for s in scales
    ]


def _lowered(graph: Graph, topo: Topology | Fabric) -> _Compiled:
    c = compile_graph(graph)
    topo.check_gpus(np.concatenate([c.gpu[c.kind != JOIN], c.dst[c.kind == FLOW]]), "replay.graph")
    return c


def _run(c: _Compiled, topo: Topology | Fabric) -> SimResult:
    n = len(c.kind)
    flows = np.flatnonzero(c.kind == FLOW)
    path = np.zeros((n, 1), dtype=np.int64)
    lat = np.zeros(n)
    if len(flows):
        fl, flat = topo.routes(c.gpu[flows], c.dst[flows])
        path = np.full((n, fl.shape[1]), topo.num_links, dtype=np.int64)
        path[flows], lat[flows] = fl, flat
    cap = topo.capacity
    start = np.full(n, np.nan)
    end = np.full(n, np.nan)
    indeg = c.indeg.copy()
    heap: list[tuple[float, int]] = []  # (time, node): compute end or flow delivery
    queues: dict[int, list[int]] = {}
    busy: set[int] = set()
    new_flows: list[int] = []
    act = np.empty(0, dtype=np.int64)
    rem = np.empty(0)
    rate = np.empty(0)
    updates = 0
    kind, amount, gpu, succ, ptr = c.kind, c.amount, c.gpu, c.succ, c.succ_ptr

    def run_next(g: int, t: float) -> None:
        q = queues.get(g)
        if q:
            v = heapq.heappop(q)
            start[v] = t
            busy.add(g)
            heapq.heappush(heap, (t + amount[v], v))

    def finish(v: int, t: float) -> None:
        stack = [v]
        while stack:
            u = stack.pop()
            end[u] = t
            for w in succ[ptr[u] : ptr[u + 1]]:
                indeg[w] -= 1
                if indeg[w] == 0:
                    release(int(w), t, stack)

    def release(w: int, t: float, stack: list[int]) -> None:
        k = kind[w]
        if k == JOIN:
            start[w] = t
            stack.append(w)
        elif k == COMPUTE:
            g = int(gpu[w])
            heapq.heappush(queues.setdefault(g, []), w)
            if g not in busy:
                run_next(g, t)
        else:
            start[w] = t
            if amount[w] <= 0 or path[w, 0] == topo.num_links:
                heapq.heappush(heap, (t + lat[w], w))
            else:
                new_flows.append(w)

    t = 0.0
    roots = np.flatnonzero(indeg == 0)
    stack: list[int] = []
    for w in roots:
        release(int(w), t, stack)
    for u in stack:
        finish(u, t)
    changed = True
    while True:
        if new_flows:
            nf = np.asarray(new_flows, dtype=np.int64)
            new_flows.clear()
            act = np.concatenate([act, nf])
            rem = np.concatenate([rem, amount[nf]])
            changed = True
        if changed and len(act):
            rate = max_min_rates(path[act], cap)
            updates += 1
        changed = False
        t_flow = t + (rem / rate).min() if len(act) else np.inf
        t_next = min(t_flow, heap[0][0] if heap else np.inf)
        if t_next == np.inf:
            break
        if len(act):
            rem = rem - rate * (t_next - t)
        t = t_next
        if len(act):
            done = rem <= rate * TIME_TOL
            if done.any():
                for w in act[done]:
                    heapq.heappush(heap, (t + lat[w], int(w)))
                act, rem, rate = act[~done], rem[~done], rate[~done]
                changed = True
        while heap and heap[0][0] <= t + TIME_TOL:
            te, v = heapq.heappop(heap)
            if kind[v] == COMPUTE:
                g = int(gpu[v])
                busy.discard(g)
                run_next(g, te)
            finish(v, te)
    return _result(c, start, end, updates)


def _result(c: _Compiled, start: np.ndarray, end: np.ndarray, updates: int) -> SimResult:
    if np.isnan(end).any():
        raise RuntimeError("replay deadlock: some operations never became ready (cyclic deps)")
    op_start, op_end = start[c.op_entry], end[c.op_exit]
    flows = c.kind == FLOW
    gpus = np.concatenate([c.gpu[c.kind != JOIN], c.dst[flows]])
    ends = np.concatenate([end[c.kind != JOIN], end[flows]])
    last = np.zeros(int(gpus.max()) + 1 if len(gpus) else 0)
    np.maximum.at(last, gpus, ends)
    finish = {int(g): float(last[g]) for g in np.unique(gpus)}
    return SimResult(op_start, op_end, finish, float(end.max()) if len(end) else 0.0, updates)
