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
- **Decode.** One step of replica 0 at its operating point: the batch the plan's rate fills
  (Little's law over the op model's steps, the same operating point the evaluator prices; the
  configured batch when the plan gives no rate). For aggregated roles a decode-only and a
  prefill-carrying iteration, mixed in the steady state's proportion computed from the two
  replayed durations (``model.steps.steady_share``). Mean TPOT = step / accepted tokens per
  step (MTP); the replay has no arrivals, so no percentile.
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
from aicpp_opt.evaluate.evaluation import agg_filled_batch, operating_batch
from aicpp_opt.model.context import Context, build_context
from aicpp_opt.model.forward import Load, Span, forward
from aicpp_opt.model.memory import kv_bytes_per_token, kv_layers
from aicpp_opt.model.routing import DEFAULT_ROUTING, Routing
from aicpp_opt.model.steps import (
    accepted_tokens,
    agg_loads,
    decode_load,
    prefill_chunks,
    steady_share,
)
from aicpp_opt.netsim.fabric import Fabric
from aicpp_opt.netsim.graph import Graph
from aicpp_opt.netsim.simulate import SimResult, simulate
from aicpp_opt.netsim.topology import Dim, Topology
from aicpp_opt.replay.build import ReplicaGpus, forward_graph, unbuilt_seconds
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


FOLD_LAYERS = (6, 12, 24)  # layers built per block when folding, tried before the full graph


@dataclass(frozen=True)
class Replayed:
    """A replayed graph: the graph and its simulation, and the seconds its unbuilt (folded)
    layers add to every time after them."""

    graph: Graph
    sim: SimResult
    unbuilt_s: float = 0.0

    @property
    def makespan(self) -> float:
        return self.sim.makespan + self.unbuilt_s


def _replay(build, topo, fold: bool) -> tuple[Replayed, object]:
    """Simulate the graph ``build(layers)`` returns as (graph, folded blocks, extra): with
    ``fold``, folded at the first of ``FOLD_LAYERS`` whose built layers reach their steady
    state; in full otherwise."""
    for layers in FOLD_LAYERS if fold else ():
        g, repeats, extra = build(layers)
        sim = simulate(g, topo)
        unbuilt = unbuilt_seconds(sim, repeats)
        if unbuilt is not None:
            return Replayed(g, sim, unbuilt), extra
    g, _, extra = build(0)
    return Replayed(g, simulate(g, topo)), extra


def _run(ctx: Context, role: Role, load: Load, gpus: ReplicaGpus, topo, fold: bool) -> Replayed:
    fwd = forward(ctx, role, load)

    def build(layers: int):
        g, _, repeats = forward_graph(fwd, gpus, role.shape, _dispatch(role), fold=layers)
        return g, repeats, None

    return _replay(build, topo, fold)[0]


def _dispatch(role: Role) -> str:
    return role.afd.dispatch.value if role.afd is not None else ""


def _prefill(
    ctx: Context, role: Role, gpus: ReplicaGpus, decode_gpus: tuple[int, ...], topo, fold: bool
) -> tuple[float, float]:
    """(prefill end, KV end) of one replica's prefill forwards and KV transfer."""
    k = role.micro_batches
    fwds = [
        forward(ctx, role, Load(spans=(Span(role.batch / k, s, e),)))
        for s, e in prefill_chunks(ctx, role.chunk_tokens)
    ]
    m = ctx.model
    per_request = ctx.workload.isl * kv_layers(m, 0) * kv_bytes_per_token(m)
    ranks = gpus.attention[:: role.shape.attn_tp]

    def build(layers: int):
        g, after, repeats = Graph(), None, ()
        for fwd in fwds:
            g, after, folded = forward_graph(fwd, gpus, role.shape, "", g, after, fold=layers)
            repeats += folded
        for i, r in enumerate(ranks):
            dst = decode_gpus[i % len(decode_gpus)]
            g.transfer(r, dst, role.batch * per_request, "kv P->D", "kv_transfer", (after[r],))
        return g, repeats, [after[r] for r in ranks]

    rep, done = _replay(build, topo, fold)
    return float(max(rep.sim.op_end[d] for d in done)) + rep.unbuilt_s, rep.makespan


@dataclass(frozen=True)
class RoleReplay:
    """One role's replica 0 on the simulator: a serving role at its operating point
    (``batch_per_gpu``, ``operating_point``) with its step (decode step; aggregated: the
    steady state's mean iteration, with the prefill-carrying one in ``mixed_step_s``) and mean
    TPOT, or a prefill role's forwards and KV transfer; and the requests/s the role's replicas
    finish at those times (a serving role: at its operating point, so about its planned rate
    when the replayed step matches the op model's)."""

    role: str
    kind: RoleKind
    workload: str
    step_s: float
    tpot_s: float | None
    prefill_s: float | None
    kv_transfer_s: float | None
    mixed_step_s: float | None
    rate_capacity: float
    batch_per_gpu: float | None = None

    def to_dict(self) -> dict:
        ms = {
            k: None if v is None else v * 1e3
            for k, v in (
                ("step_ms", self.step_s),
                ("tpot_mean_ms", self.tpot_s),
                ("prefill_ms", self.prefill_s),
                ("kv_transfer_ms", self.kv_transfer_s),
                ("mixed_step_ms", self.mixed_step_s),
            )
        }
        return {
            "role": self.role,
            "kind": self.kind.value,
            "workload": self.workload,
            **ms,
            "batch_per_gpu": self.batch_per_gpu,
            "capacity_rps": self.rate_capacity,
        }


@dataclass
class ReplayReport:
    """Every role's replayed times, the fleet's throughput at those times (per workload the
    balanced flow), and what produced them. ``result`` is the first serving role's graph and
    simulation (timeline, AstraSim). ``astra``: AstraSim's result (``AstraResult``), the inputs
    written for it when no binary was given (``AstraInputs``), its error (``InputError``), or
    None when it was not asked for."""

    roles: tuple[RoleReplay, ...]
    throughput_tps: float
    gpus_used: int
    result: ReplayResult = field(repr=False)
    simulator: str = SIMULATOR
    astra: object = None
    timeline: Path | None = None

    def role(self, role_id: str) -> RoleReplay:
        return next(r for r in self.roles if r.role == role_id)

    @property
    def _serving(self) -> list[RoleReplay]:
        return [r for r in self.roles if r.kind != RoleKind.PREFILL]

    @property
    def tpot_s(self) -> float:
        """The slowest serving role's TPOT."""
        return max(r.tpot_s for r in self._serving)

    @property
    def step_s(self) -> float:
        """The first serving role's step (the one ``result`` holds)."""
        return self._serving[0].step_s

    @property
    def mixed_step_s(self) -> float | None:
        return self._serving[0].mixed_step_s

    @property
    def prefill_s(self) -> float | None:
        """The slowest prefill role's forwards (None without prefill roles)."""
        pre = [r.prefill_s for r in self.roles if r.prefill_s is not None]
        return max(pre) if pre else None

    @property
    def kv_transfer_s(self) -> float | None:
        kv = [r.kv_transfer_s for r in self.roles if r.kv_transfer_s is not None]
        return max(kv) if kv else None

    @property
    def ttft_s(self) -> float | None:
        """Prefill and KV transfer without queueing (the slowest prefill role)."""
        pre = [r for r in self.roles if r.prefill_s is not None]
        if not pre:
            return None
        return max(r.prefill_s + (r.kv_transfer_s or 0.0) for r in pre)

    def to_dict(self) -> dict:
        out = {
            "tpot_mean_ms": self.tpot_s * 1e3,
            "step_ms": self.step_s * 1e3,
            "prefill_ms": None if self.prefill_s is None else self.prefill_s * 1e3,
            "kv_transfer_ms": None if self.kv_transfer_s is None else self.kv_transfer_s * 1e3,
            "throughput_tok_s": self.throughput_tps,
            "tok_s_per_gpu": self.throughput_tps / self.gpus_used if self.gpus_used else 0.0,
            "tok_s_per_user": 1.0 / self.tpot_s if self.tpot_s > 0 else 0.0,
            "gpus_used": self.gpus_used,
            "simulator": self.simulator,
            "queueing": "not modelled by the network replay",
            "roles": [r.to_dict() for r in self.roles],
        }
        if self.mixed_step_s is not None:
            out["mixed_step_ms"] = self.mixed_step_s * 1e3
        out["astra_sim"] = self.astra_dict()
        return out

    def astra_dict(self) -> dict | None:
        """AstraSim's decode step (``step_ms``; None when only its inputs were written) of the
        first serving role's replica 0 (a decode-only iteration for an aggregated role) beside
        the built-in simulator's on the same graph, the binary, the trace folder and the notes
        on what AstraSim runs differently; ``{"error": text}`` when it failed; None when it was
        not asked for."""
        from aicpp_opt.replay.astra import AstraResult

        a = self.astra
        if a is None or isinstance(a, InputError):
            return None if a is None else {"error": str(a)}
        ran = isinstance(a, AstraResult)
        return {
            "role": self._serving[0].role,
            "step_ms": a.makespan_s * 1e3 if ran else None,
            "builtin_step_ms": self.result.sim.makespan * 1e3,
            "binary": str(a.binary) if ran else None,
            "trace_dir": str(a.trace_dir),
            "notes": list(a.notes),
        }


def operating_point(ctx: Context, role: Role) -> float:
    """Sequences per GPU a decode or aggregated role holds at its planned rate (Little's law
    over the op model's steps: ``evaluate.evaluation.operating_batch``, ``agg_filled_batch``);
    its configured batch when the plan gives no rate."""
    if role.rate is None:
        return role.batch_per_gpu
    if role.role == RoleKind.AGG:
        return agg_filled_batch(ctx, role, role.rate)
    return operating_batch(ctx, role, role.rate)


def _serving_role(
    ctx: Context, role: Role, gpus: ReplicaGpus, topo, fold: bool
) -> tuple[RoleReplay, Replayed]:
    """A decode or aggregated role's replica 0 at its operating point, and its replayed decode
    step."""
    wl = ctx.workload
    accepted = accepted_tokens(role.mtp, wl.mtp_acceptance)
    batch = operating_point(ctx, role)
    mixed_s = None
    if role.role == RoleKind.AGG:
        loads = agg_loads(ctx, role, batch)
        decode = _run(ctx, role, loads.decode, gpus, topo, fold)
        mixed_s = _run(ctx, role, loads.mixed, gpus, topo, fold).makespan
        share = steady_share(loads, role.shape.attn_dp, decode.makespan, mixed_s)
        step = (1 - share) * decode.makespan + share * mixed_s
        ranks = role.replicas * role.shape.attn_dp
        prefill_rate = ranks * role.chunk_tokens / (wl.new_prompt_tokens * mixed_s)
    else:
        decode = _run(ctx, role, decode_load(ctx, role, batch), gpus, topo, fold)
        step = decode.makespan
        prefill_rate = math.inf
    seqs = role.replicas * batch * role.shape.attention_gpus
    rate = min(seqs * accepted / (wl.osl * step), prefill_rate)
    rep = RoleReplay(
        role.id, role.role, role.workload, step, step / accepted, None, None, mixed_s, rate, batch
    )
    return rep, decode


def _kv_target(plan: Plan, pre: Role) -> Role:
    """The decode role a prefill role's replica 0 sends its KV to: its first route's."""
    named = [r.decode for r in plan.routes if r.prefill == pre.id]
    if named:
        return plan.role(named[0])
    return plan.serving(pre.workload, RoleKind.DECODE)[0]


def replay_plan(
    plan: Plan,
    instance: Instance,
    workload: Workload | None = None,
    *,
    routing: Routing = DEFAULT_ROUTING,
    astra_sim: str | None = None,
    trace_dir: str | None = None,
    timeline: str | None = None,
    astra_timeout: float | None = None,
    fold: bool = False,
) -> ReplayReport:
    """Replay every role of ``plan`` on the built-in simulator (``workload`` overrides the
    workload of a single-workload plan); optionally draw the first serving role's timeline,
    write its Chakra traces and run AstraSim (whose errors are kept in ``astra``, never
    raised). ``fold``: build each block of identical layers on a few of them (``FOLD_LAYERS``)
    and add the rest as periods (``replay.build``; a role whose built layers are not periodic is
    replayed in full); the first serving role is replayed in full whenever its graph is drawn
    or handed to AstraSim. Times are the same either way, to the period tolerance; ``result``
    then describes the built graph."""
    ctxs: dict[str, Context] = {}
    tables = None
    for name in plan.workloads:
        wl = workload if workload is not None else instance.workload(name)
        ctx = build_context(instance, wl, framework=plan.framework, routing=routing, tables=tables)
        ctxs[name], tables = ctx, ctx.costs
    topo = network(instance)
    ids = gpu_ids(plan, instance)
    replays: dict[str, RoleReplay] = {}
    first = None
    drawn = bool(astra_sim or trace_dir or timeline)
    for role in plan.roles:
        if role.role != RoleKind.PREFILL:
            gpus = replica0(role, ids[role.id])
            folded = fold and not (first is None and drawn)
            rep, decode = _serving_role(ctxs[role.workload], role, gpus, topo, folded)
            replays[role.id] = rep
            if first is None:
                first = (role, decode, gpus)
    for role in plan.roles:
        if role.role == RoleKind.PREFILL:
            target = _kv_target(plan, role)
            dec_gpus = replica0(target, ids[target.id]).attention
            ctx = ctxs[role.workload]
            prefill_s, end = _prefill(ctx, role, replica0(role, ids[role.id]), dec_gpus, topo, fold)
            rate = role.replicas * role.batch * role.shape.attn_dp / prefill_s
            replays[role.id] = RoleReplay(
                role.id,
                role.role,
                role.workload,
                prefill_s,
                None,
                prefill_s,
                end - prefill_s,
                None,
                rate,
            )
    tps = 0.0
    for name in plan.workloads:
        mine = [replays[r.id] for r in plan.roles if r.workload == name]
        agg = sum(r.rate_capacity for r in mine if r.kind == RoleKind.AGG)
        dec = sum(r.rate_capacity for r in mine if r.kind == RoleKind.DECODE)
        pre = sum(r.rate_capacity for r in mine if r.kind == RoleKind.PREFILL)
        tps += (agg + min(dec, pre)) * ctxs[name].workload.osl
    role, decode, gpus = first
    graph, sim = decode.graph, decode.sim
    result = ReplayResult(
        replays[role.id].step_s, role_times(graph, sim, gpus), categories(graph, sim), graph, sim
    )
    report = ReplayReport(
        tuple(replays[r.id] for r in plan.roles),
        tps,
        sum(r.gpus for r in plan.roles),
        result,
    )
    if timeline:
        from aicpp_opt.replay.timeline import draw

        report.timeline = draw(result, Path(timeline), f"{role.id} decode step")
    if astra_sim or trace_dir:
        report.astra = _astra(graph, topo, astra_sim, trace_dir, astra_timeout)
    return report


def _astra(graph: Graph, topo: Topology | Fabric, binary, trace_dir, timeout):
    """Write traces and, given a binary, run AstraSim: its result, the written inputs when
    there is no binary, or its error (kept, never raised: the built-in result stands)."""
    from aicpp_opt.replay import astra

    out = Path(trace_dir) if trace_dir else Path.cwd() / "astra_trace"
    try:
        path = astra.resolve_binary(binary)
        inputs = astra.write_inputs(graph, topo, out)
        if path is None:
            return inputs
        return astra.run(path, inputs, timeout or astra.DEFAULT_TIMEOUT_S)
    except InputError as err:
        return err
    except OSError as err:
        return InputError("--trace-dir", f"{out}: {err.strerror or err}")
