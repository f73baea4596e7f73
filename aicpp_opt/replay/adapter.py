"""From a plan to its replay on the network simulator, and one call that replays it.

What the replay takes from where (it shares inputs with the evaluator, never its outputs):

- **Network.** One ``Topology`` per pool from the instance's dimensions; several pools become a
  ``Fabric`` joined by each pool's scale-out NIC (``netsim.fabric``).
- **GPU ids.** Global: pool p starts after the previous pools' topology slots; domain d of a
  pool is the slot block ``d * domain_size ..``. Roles take GPUs in plan order, each placement
  entry the next free slots of its domain. The replay runs replica 0 of each role. An AFD
  replica: the first M of the role's GPUs in its pool are the attention GPUs, the next N in
  the FFN pool the FFN GPUs; pairing index i means the i-th of each.
- **Ops.** The op model (``aicpp_opt.model.forward``) of each forward, built here from the
  plan and the same cost tables; ``replay.build`` turns its ops into the graph: compute at the
  tables' durations, communication as bytes the simulator times.
- **Decode.** One step of replica 0 at the plan's batch (decode roles); for aggregated roles a
  decode-only and a prefill-carrying iteration, mixed in the steady state's proportion (the
  workload model of ``model.steps``). TPOT = step / accepted tokens per step (MTP).
- **Prefill.** Replica 0's forwards over its chunks, one after another, then its batch's KV
  from each attention rank's first GPU to the decode attention GPUs (round robin). The replay
  has no arrivals: queueing is the request-level simulator's business, not the network's.
- **Throughput.** The balanced flow at the replayed times: min(decode replicas' request rate at
  the replayed step, prefill replicas' rate at the replayed prefill) x OSL.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from aicpp_opt.errors import InputError
from aicpp_opt.model.context import Context, build_context
from aicpp_opt.model.forward import Load, Span, forward
from aicpp_opt.model.memory import kv_bytes_per_token, kv_layers
from aicpp_opt.model.routing import DEFAULT_ROUTING, Routing
from aicpp_opt.model.steps import accepted_tokens, agg_loads, decode_load, prefill_chunks
from aicpp_opt.netsim.fabric import Fabric
from aicpp_opt.netsim.graph import Graph
from aicpp_opt.netsim.simulate import simulate
from aicpp_opt.netsim.topology import Dim, Topology
from aicpp_opt.replay.build import ReplicaGpus, forward_graph
from aicpp_opt.replay.run import SIMULATOR, ReplayResult, categories, role_times
from aicpp_opt.spec.enums import RoleKind
from aicpp_opt.spec.instance import Instance
from aicpp_opt.spec.plan import Plan, Role
from aicpp_opt.spec.workload import Workload


def network(instance: Instance) -> Topology | Fabric:
    """The replay network: the pool's topology, or a fabric of the pools."""
    topos = tuple(
        Topology(tuple(Dim(d.kind, d.size, d.bw, d.latency) for d in p.topology))
        for p in instance.pools
    )
    return topos[0] if len(topos) == 1 else Fabric(topos)


def gpu_ids(plan: Plan, instance: Instance) -> dict[str, dict[str, list[int]]]:
    """Global GPU ids of every role (by id), per pool, in placement order."""
    base, offset = {}, 0
    for p in instance.pools:
        base[p.name] = offset
        offset += math.prod(d.size for d in p.topology)
    used: dict[tuple[str, int], int] = defaultdict(int)
    out: dict[str, dict[str, list[int]]] = {}
    for role in plan.roles:
        ids: dict[str, list[int]] = defaultdict(list)
        for pl in role.placement:
            start = base[pl.pool] + pl.domain * instance.pool(pl.pool).domain_size
            first = start + used[pl.pool, pl.domain]
            ids[pl.pool] += range(first, first + pl.gpus)
            used[pl.pool, pl.domain] += pl.gpus
        out[role.id] = dict(ids)
    return out


def replica0(role: Role, ids: dict[str, list[int]]) -> ReplicaGpus:
    """The GPUs of a role's first replica."""
    if role.afd is None:
        return ReplicaGpus(tuple(ids[role.pool][: role.gpus_per_replica]))
    a = role.afd
    att = ids[role.pool][: a.attention_gpus]
    ffn = [g for g in ids.get(a.ffn_pool, []) if g not in set(att)][: a.ffn_gpus]
    if len(att) < a.attention_gpus or len(ffn) < a.ffn_gpus:
        raise InputError("placement", f"{role.id}: the placement does not hold one AFD unit")
    pairing = tuple(
        (tuple(att[i] for i in g.attention), tuple(ffn[j] for j in g.ffn)) for g in a.pairing
    )
    return ReplicaGpus(tuple(att), tuple(ffn), pairing)


def _run(ctx: Context, role: Role, load: Load, gpus: ReplicaGpus, topo) -> tuple[Graph, object]:
    g, _ = forward_graph(forward(ctx, role, load), gpus, role.shape, _dispatch(role))
    return g, simulate(g, topo)


def _dispatch(role: Role) -> str:
    return role.afd.dispatch.value if role.afd is not None else ""


def _prefill(ctx: Context, role: Role, gpus: ReplicaGpus, decode_gpus: tuple[int, ...], topo):
    """(graph, simulation, prefill end, KV end) of one replica's prefill and KV transfer."""
    g, after = Graph(), None
    k = role.micro_batches
    for s, e in prefill_chunks(ctx, role.chunk_tokens):
        load = Load(spans=(Span(role.batch / k, s, e),))
        g, after = forward_graph(forward(ctx, role, load), gpus, role.shape, "", g, after)
    m = ctx.model
    per_request = ctx.workload.isl * kv_layers(m, 0) * kv_bytes_per_token(m)
    ranks = gpus.attention[:: role.shape.attn_tp]
    done = [after[r] for r in ranks]
    for i, r in enumerate(ranks):
        dst = decode_gpus[i % len(decode_gpus)]
        g.transfer(r, dst, role.batch * per_request, "kv P->D", "kv_transfer", (after[r],))
    sim = simulate(g, topo)
    return g, sim, float(max(sim.op_end[d] for d in done)), sim.makespan


@dataclass
class ReplayReport:
    """Replayed TPOT, prefill and KV transfer of a plan, its throughput at those times, per-role
    times, and what produced them. ``astra``: AstraSim's result, the text of its error, or None
    when it was not asked for."""

    tpot_s: float
    step_s: float
    prefill_s: float | None
    kv_transfer_s: float | None
    throughput_tps: float
    gpus_used: int
    result: ReplayResult = field(repr=False)
    mixed_step_s: float | None = None
    simulator: str = SIMULATOR
    astra: object = None
    timeline: Path | None = None

    @property
    def ttft_s(self) -> float | None:
        """Prefill and KV transfer without queueing."""
        if self.prefill_s is None:
            return None
        return self.prefill_s + (self.kv_transfer_s or 0.0)

    def to_dict(self) -> dict:
        out = {
            "tpot_ms": self.tpot_s * 1e3,
            "step_ms": self.step_s * 1e3,
            "prefill_ms": None if self.prefill_s is None else self.prefill_s * 1e3,
            "kv_transfer_ms": None if self.kv_transfer_s is None else self.kv_transfer_s * 1e3,
            "throughput_tok_s": self.throughput_tps,
            "tok_s_per_gpu": self.throughput_tps / self.gpus_used if self.gpus_used else 0.0,
            "tok_s_per_user": 1.0 / self.tpot_s if self.tpot_s > 0 else 0.0,
            "gpus_used": self.gpus_used,
            "simulator": self.simulator,
            "queueing": "not modelled by the network replay",
        }
        if self.mixed_step_s is not None:
            out["mixed_step_ms"] = self.mixed_step_s * 1e3
        return out


def replay_plan(
    plan: Plan,
    instance: Instance,
    workload: Workload,
    *,
    routing: Routing = DEFAULT_ROUTING,
    astra_sim: str | None = None,
    trace_dir: str | None = None,
    timeline: str | None = None,
    astra_timeout: float | None = None,
) -> ReplayReport:
    """Replay ``plan`` on the built-in simulator; optionally draw its timeline, write Chakra
    traces and run AstraSim (whose errors are kept in ``astra``, never raised)."""
    ctx = build_context(instance, workload, framework=plan.framework, routing=routing)
    topo = network(instance)
    ids = gpu_ids(plan, instance)
    main = next(r for r in plan.roles if r.role != RoleKind.PREFILL)
    gpus = replica0(main, ids[main.id])
    wl = workload
    accepted = accepted_tokens(main.mtp, wl.mtp_acceptance)
    mixed_s = None
    if main.role == RoleKind.AGG:
        loads = agg_loads(ctx, main, main.batch_per_gpu)
        graph, sim = _run(ctx, main, loads.decode, gpus, topo)
        _, mixed_sim = _run(ctx, main, loads.mixed, gpus, topo)
        mixed_s = mixed_sim.makespan
        step = (1 - loads.share) * sim.makespan + loads.share * mixed_s
        prefill_rate = (
            main.replicas
            * main.shape.attn_dp
            * main.chunk_tokens
            / (wl.new_prompt_tokens * mixed_s)
        )
    else:
        graph, sim = _run(ctx, main, decode_load(ctx, main, main.batch_per_gpu), gpus, topo)
        step = sim.makespan
        prefill_rate = math.inf
    seqs = main.replicas * main.batch_per_gpu * main.shape.attention_gpus
    decode_rate = seqs * accepted / (wl.osl * step)
    prefill_s = kv_s = None
    pre = next((r for r in plan.roles if r.role == RoleKind.PREFILL), None)
    if pre is not None:
        p_gpus = replica0(pre, ids[pre.id])
        _, _, prefill_s, end = _prefill(ctx, pre, p_gpus, gpus.attention, topo)
        kv_s = end - prefill_s
        prefill_rate = pre.replicas * pre.batch * pre.shape.attn_dp / prefill_s
    result = ReplayResult(step, role_times(graph, sim, gpus), categories(graph, sim), graph, sim)
    report = ReplayReport(
        step / accepted,
        step,
        prefill_s,
        kv_s,
        min(decode_rate, prefill_rate) * wl.osl,
        sum(r.gpus for r in plan.roles),
        result,
        mixed_s,
    )
    if timeline:
        from aicpp_opt.replay.timeline import draw

        report.timeline = draw(result, Path(timeline), f"{plan.mode} decode step")
    if astra_sim or trace_dir:
        report.astra = _astra(graph, topo, ctx, astra_sim, trace_dir, astra_timeout)
    return report


def _astra(graph: Graph, topo, ctx: Context, binary, trace_dir, timeout):
    """Write traces and, given a binary, run AstraSim; an error comes back as its text."""
    from aicpp_opt.replay import astra

    try:
        path = astra.resolve_binary(binary)
        out = Path(trace_dir) if trace_dir else Path.cwd() / "astra_trace"
        hbm = float(next(iter(ctx.costs.values())).system.hbm_bw)
        files = astra.write_inputs(graph, topo, out, hbm)
        if path is None:
            return f"traces written to {out}; no AstraSim binary given"
        return astra.run(path, files, timeout or astra.DEFAULT_TIMEOUT_S)
    except (InputError, OSError) as err:
        return str(err)
