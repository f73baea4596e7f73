"""From a real plan and its evaluation to the replay's input, and one call that replays it.

Mapping choices (what the replay takes from where):

- **Network.** One ``Topology`` per pool from the instance's dimensions (bytes/s, seconds);
  several pools become a ``Fabric`` joined by each pool's scale-out NIC (see ``fabric``).
- **GPU ids.** Global: pool p starts after the previous pools' topology slots; domain d of
  a pool is the slot block ``d * domain_size ..``. Roles take GPUs in plan order, each
  placement entry the next free slots of its domain. A role's replicas take its GPUs in that
  order; the replay runs replica 0 of each role. An AFD replica: the first M of the role's
  GPUs in its pool are the attention GPUs, the next N in the FFN pool the FFN GPUs; pairing
  index i means the i-th of each.
- **Compute** (seconds per layer, per GPU, per micro-batch in AFD): the evaluation's op
  breakdown, ``sum(count * seconds)`` of the compute ops of a layer kind divided by the
  number of such layers (and by K in AFD). Communication ops (TP all-reduces, EP dispatch
  and combine, A->F and F->A) are left out: the replay moves their bytes over the network.
  The "AFD ping-pong overlap" op (the analytic pipeline credit) is left out: the replay's
  dependencies produce the overlap. Plain instances: attention-block ops (names with
  "attention" or "projection") run before the TP all-reduce and the dispatch, the rest of
  a MoE layer (router, shared and routed experts) between dispatch and combine (the router
  really runs before dispatch: same GPU time, a slightly later dispatch start). Aggregated
  mode replays the evaluator's mean iteration (decode-only and chunk-carrying iterations
  weighted by their share, which is read from the op counts).
- **Bytes** (from the model and the plan; never the evaluator's times): per attention rank
  ``tokens`` = decode sequences (+ the mean prefill chunk share in agg, or the whole
  uncached prompt of ``batch`` requests in prefill). TP all-reduce: tokens x hidden x
  activation bytes (ring). MoE-TP all-reduce: tokens per GPU x moe_tp x hidden x activation
  bytes. EP dispatch (combine): each GPU sends tokens per GPU x distinct target GPUs of its
  top-k x hidden x MoE (activation) dtype bytes, split over the EP members by their share of
  expert picks under the routing distribution (experts round-robin by popularity over EP
  ranks, as ``perf.routing``). AFD direct: attention GPU -> FFN GPU edge = micro-batch tokens
  x distinct EP targets x moe_tp x hidden x dtype / set size, weighted by the FFN GPU's EP
  share; all_to_all moves the same bytes as one exchange per FFN set;
  allgather_reducescatter sends the micro-batch's tokens once to a home FFN GPU. KV: ISL x
  layers x KV bytes per token per layer per request; ``batch x attn_dp`` requests of a
  prefill replica go from its GPUs to the decode (attention) GPUs of decode replica 0.
- **Aggregated TTFT**: one chunk-carrying iteration (its ops read back from the mean
  iteration's tagged ops) is replayed; TTFT = predicted queueing + chunks x that iteration.
- **Prefill** replays one forward of replica 0 carrying every uncached prompt token of its
  batch (all chunks as one: per-layer compute is the chunk forwards' sum), with its TP and
  EP traffic, then the KV transfer. TTFT = the predicted queueing (the replay has no arrival
  process) + replayed prefill + KV transfer.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field, replace
from pathlib import Path

from aicpp_opt.errors import InputError
from aicpp_opt.perf.breakdown import OpCost, StepBreakdown
from aicpp_opt.perf.comm import dtype_bytes
from aicpp_opt.perf.evaluate import Evaluation
from aicpp_opt.perf.routing import distinct_targets, selection_probabilities
from aicpp_opt.replay.expand import (
    AfdDecode,
    GroupCollective,
    InstanceDecode,
    PrefillInput,
    ReplayInput,
    decode_graph,
)
from aicpp_opt.replay.fabric import Fabric
from aicpp_opt.replay.run import ReplayResult, replay
from aicpp_opt.replay.simulate import simulate
from aicpp_opt.replay.topology import Dim, Topology
from aicpp_opt.replay.verify import Comparison, Prediction, compare
from aicpp_opt.spec.instance import Instance
from aicpp_opt.spec.model import ModelSpec, load_model
from aicpp_opt.spec.plan import Plan, Role, Shape
from aicpp_opt.spec.workload import Workload

DEFAULT_ROUTING = "power_law_1.01"  # the evaluator's default (perf.context.build_context)
COMM_OPS = frozenset(
    {
        "attention TP all-reduce",
        "dense TP all-reduce",
        "MoE TP all-reduce",
        "EP dispatch",
        "EP combine",
        "A->F dispatch",
        "F->A combine",
    }
)
MIXED_TAG = "[iterations with a prefill chunk]"


def network(instance: Instance) -> Topology | Fabric:
    """The replay network: the pool's topology, or a fabric of the pools."""
    topos = tuple(
        Topology(tuple(Dim(d.kind, d.size, d.bw, d.latency) for d in p.topology))
        for p in instance.pools
    )
    return topos[0] if len(topos) == 1 else Fabric(topos)


def gpu_ids(plan: Plan, instance: Instance) -> dict[str, dict[str, list[int]]]:
    """Global GPU ids of every role, per pool, in placement order (see the module notes)."""
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
        out[role.role] = dict(ids)
    return out


def _replica0(role: Role, ids: dict[str, list[int]]) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """(attention or instance GPUs, FFN GPUs) of a role's first replica."""
    if role.afd is None:
        return tuple(ids[role.pool][: role.gpus_per_replica]), ()
    a = role.afd
    att = ids[role.pool][: a.attention_gpus]
    pool_ffn = [g for g in ids.get(a.ffn_pool, []) if g not in set(att)]
    if len(att) < a.attention_gpus or len(pool_ffn) < a.ffn_gpus:
        raise InputError("placement", f"{role.role} role: the placement does not hold one AFD unit")
    return tuple(att), tuple(pool_ffn[: a.ffn_gpus])


def _base(name: str) -> str:
    return name.split(" [", 1)[0]


def _compute(
    ops: tuple[OpCost, ...], layer: str, side: str | None = None, attention: bool | None = None
) -> float:
    """Summed seconds of the compute ops of a layer kind (optionally one side, or only the
    attention-block ops / only the others)."""
    total = 0.0
    for op in ops:
        name = _base(op.name)
        if op.layer != layer or name in COMM_OPS or op.side in ("link", "pipeline"):
            continue
        if side is not None and op.side != side:
            continue
        if attention is not None and _is_attention(name) != attention:
            continue
        total += op.total
    return total


def _is_attention(name: str) -> bool:
    return "attention" in name or "projection" in name


def _groups(gpus: tuple[int, ...], size: int) -> tuple[tuple[int, ...], ...]:
    return tuple(gpus[i : i + size] for i in range(0, len(gpus), size))


def _tp(gpus: tuple[int, ...], size: int, nbytes: float) -> GroupCollective | None:
    return GroupCollective(_groups(gpus, size), nbytes) if size > 1 and nbytes > 0 else None


def ep_shares(model: ModelSpec, ep: int, routing: str) -> tuple[float, ...]:
    """Each EP rank's share of a token's expert picks (experts round-robin by popularity)."""
    probs = selection_probabilities(routing, model.moe.num_experts, model.moe.top_k)
    loads = [sum(probs[g::ep]) for g in range(ep)]
    return tuple(x / sum(loads) for x in loads)


def _instance(
    model: ModelSpec,
    step: StepBreakdown,
    gpus: tuple[int, ...],
    shape: Shape,
    tokens_rank: float,
    routing: str,
    role: str,
) -> InstanceDecode:
    """A plain instance (every GPU runs attention and experts) at ``tokens_rank`` tokens per
    attention rank."""
    nd, nm = model.num_dense_layers, model.num_moe_layers
    ops, h = step.ops, model.hidden_size
    act, moe_b = dtype_bytes(model.dtypes.activations), dtype_bytes(model.dtypes.moe)
    tokens_gpu = tokens_rank / shape.attn_tp
    attn = _compute(ops, "dense", attention=True) + _compute(ops, "moe", attention=True)
    ep, mtp = shape.moe_ep, shape.moe_tp
    ep_groups = tuple(tuple(gpus[t::mtp]) for t in range(mtp)) if ep > 1 else ()
    copies = tokens_gpu * distinct_targets(model.moe.top_k, ep) * h
    return InstanceDecode(
        gpus=gpus,
        dense_layers=nd,
        moe_layers=nm,
        attn_s=attn / (nd + nm),
        dense_ffn_s=_compute(ops, "dense", attention=False) / nd if nd else 0.0,
        moe_ffn_s=_compute(ops, "moe", attention=False) / nm if nm else 0.0,
        tp=_tp(gpus, shape.attn_tp, tokens_rank * h * act),
        ep_groups=ep_groups,
        ep_dispatch_bytes=copies * moe_b,
        ep_combine_bytes=copies * act,
        ep_shares=ep_shares(model, ep, routing) if ep > 1 else (),
        moe_tp=_tp(gpus, mtp, tokens_gpu * mtp * h * act),
        head_s=_compute(ops, "step"),
        role=role,
    )


def _afd(
    model: ModelSpec,
    step: StepBreakdown,
    role: Role,
    att: tuple[int, ...],
    ffn: tuple[int, ...],
    routing: str,
) -> AfdDecode:
    a, shape, ops = role.afd, role.shape, step.ops
    k, nd, nm, h = (
        role.micro_batches,
        model.num_dense_layers,
        model.num_moe_layers,
        model.hidden_size,
    )
    act, moe_b = dtype_bytes(model.dtypes.activations), dtype_bytes(model.dtypes.moe)
    mb = role.batch_per_gpu / k
    pairing = tuple(
        (tuple(att[i] for i in g.attention), tuple(ffn[j] for j in g.ffn)) for g in a.pairing
    )
    set_of = {f: fs for _, fs in pairing for f in fs}
    feeders: dict[tuple[int, ...], int] = defaultdict(int)
    for atts, fs in pairing:
        feeders[fs] += len(atts)
    m_set, n_set = max(feeders.values()), shape.moe_gpus
    shares = ep_shares(model, shape.moe_ep, routing)
    weights = tuple(shares[set_of[f].index(f) // shape.moe_tp] * shape.moe_ep for f in ffn)
    send = mb * distinct_targets(model.moe.top_k, shape.moe_ep) * shape.moe_tp * h
    if a.dispatch == "allgather_reducescatter":
        a2f, f2a, weights = mb * h * moe_b, mb * h * act, ()
    else:
        a2f, f2a = send * moe_b / n_set, send * act / n_set
    ffn_tp = [_tp(fs, shape.moe_tp, m_set * mb / shape.moe_ep * h * act) for fs in feeders]
    return AfdDecode(
        attention_gpus=att,
        ffn_gpus=ffn,
        pairing=pairing,
        micro_batches=k,
        dense_layers=nd,
        moe_layers=nm,
        t_a=_compute(ops, "moe", "attention") / (k * nm),
        t_f=_compute(ops, "moe", "ffn") / (k * nm),
        a2f_bytes=a2f,
        f2a_bytes=f2a,
        dispatch=a.dispatch,
        t_dense=_compute(ops, "dense", "attention") / (k * nd) if nd else 0.0,
        attn_tp=_tp(att, shape.attn_tp, mb * shape.attn_tp * h * act),
        ffn_tp=(
            GroupCollective(tuple(g for t in ffn_tp if t for g in t.groups), ffn_tp[0].nbytes)
            if ffn_tp[0]
            else None
        ),
        head_s=_compute(ops, "step", "attention") / k,
        ffn_weights=weights,
    )


def _chunk_share(step: StepBreakdown) -> float:
    """Share of aggregated iterations that carry a prefill chunk, from the step-op counts."""
    head = [op for op in step.ops if op.layer == "step"]
    mixed = sum(op.count for op in head if op.name.endswith(MIXED_TAG))
    return mixed / sum(op.count for op in head) if head else 0.0


def _agg_tokens(role: Role, workload: Workload, share: float) -> float:
    """Tokens per attention rank of an aggregated iteration: decode sequences plus ``share``
    of a prefill chunk."""
    chunk = min(float(role.chunk_tokens), workload.new_prompt_tokens)
    return role.batch_per_gpu * role.shape.attn_tp + share * chunk


def agg_chunk_iteration(
    plan: Plan,
    instance: Instance,
    workload: Workload,
    evaluation: Evaluation,
    routing: str = DEFAULT_ROUTING,
) -> tuple[InstanceDecode, int] | None:
    """An aggregated plan's chunk-carrying iteration (replica 0) and the number of such
    iterations a request's prefill takes; None for other modes or without chunks."""
    role = plan.role("agg")
    if role is None:
        return None
    step = next(r.step for r in evaluation.roles if r.role == "agg")
    share = _chunk_share(step)
    if share <= 0:
        return None
    ops = tuple(
        replace(op, count=op.count / share) for op in step.ops if op.name.endswith(MIXED_TAG)
    )
    mixed = StepBreakdown(ops)
    chunks = max(1, round(evaluation.ttft.prefill / mixed.total))
    gpus, _ = _replica0(role, gpu_ids(plan, instance)["agg"])
    tokens = _agg_tokens(role, workload, 1.0)
    model = load_model(instance.model)
    return _instance(model, mixed, gpus, role.shape, tokens, routing, "agg"), chunks


def replay_input(
    plan: Plan,
    instance: Instance,
    workload: Workload,
    evaluation: Evaluation,
    routing: str = DEFAULT_ROUTING,
) -> ReplayInput:
    """The simulator's input for replica 0 of every role of ``plan`` (see the module notes)."""
    model = load_model(instance.model)
    ids = gpu_ids(plan, instance)
    steps = {r.role: r.step for r in evaluation.roles}
    if set(steps) != {r.role for r in plan.roles}:
        raise InputError("evaluation", "must be the evaluation of this plan (roles differ)")
    main = plan.role("agg") or plan.role("decode")
    first, ffn = _replica0(main, ids[main.role])
    if main.afd is not None:
        decode = _afd(model, steps[main.role], main, first, ffn, routing)
    else:
        tokens = (
            _agg_tokens(main, workload, _chunk_share(steps["agg"]))
            if main.role == "agg"
            else main.batch_per_gpu * main.shape.attn_tp
        )
        decode = _instance(model, steps[main.role], first, main.shape, tokens, routing, main.role)
    prefill = None
    pre = plan.role("prefill")
    if pre is not None:
        gpus, _ = _replica0(pre, ids["prefill"])
        tokens = pre.batch * workload.new_prompt_tokens
        forward = _instance(model, steps["prefill"], gpus, pre.shape, tokens, routing, "prefill")
        kv = workload.isl * model.num_layers * model.kv_cache_bytes_per_token_per_layer
        prefill = PrefillInput(gpus, first, 0.0, kv, pre.batch * pre.shape.attn_dp, forward)
    return ReplayInput(network(instance), decode, prefill, _hbm_bw(instance))


def prediction(evaluation: Evaluation) -> Prediction:
    """The evaluator's (or the MILP's) numbers for ``verify.compare``."""
    t = evaluation.ttft
    return Prediction(evaluation.tpot, t.total, evaluation.flow.output_tps, t.queueing)


@dataclass
class ReplayReport:
    """Replayed TTFT, TPOT and throughput of a plan, per-role times, and what produced them.

    ``astra``: AstraSim's result, the text of its error, or None when it was not asked for."""

    tpot_s: float
    ttft_s: float | None
    throughput_tps: float
    gpus_used: int
    roles: dict[str, float]
    simulator: str
    comparison: Comparison
    result: ReplayResult = field(repr=False)
    astra: object = None
    timeline: Path | None = None

    def to_dict(self) -> dict:
        return {
            "ttft_ms": None if self.ttft_s is None else float(self.ttft_s) * 1e3,
            "tpot_ms": float(self.tpot_s) * 1e3,
            "throughput_tok_s": float(self.throughput_tps),
            "tok_s_per_gpu": float(self.throughput_tps) / self.gpus_used if self.gpus_used else 0.0,
            "tok_s_per_user": 1.0 / float(self.tpot_s) if self.tpot_s > 0 else 0.0,
            "gpus_used": self.gpus_used,
            "simulator": self.simulator,
        }


def replay_plan(
    plan: Plan,
    instance: Instance,
    workload: Workload,
    evaluation: Evaluation,
    *,
    astra_sim: str | None = None,
    trace_dir: str | None = None,
    timeline: str | None = None,
    astra_timeout: float | None = None,
) -> ReplayReport:
    """Replay ``plan`` on the built-in simulator; optionally draw its timeline, write Chakra
    traces and run AstraSim (whose errors are kept in ``astra``, never raised)."""
    inp = replay_input(plan, instance, workload, evaluation)
    result = replay(inp)
    cmp = compare(prediction(evaluation), result)
    roles = {name: t.finish_s for name, t in result.roles.items()}
    ttft = cmp.replayed.ttft_s
    if result.prefill_s is not None:
        roles["prefill"] = result.prefill_s
        roles["kv_transfer"] = result.kv_transfer_s
    chunked = agg_chunk_iteration(plan, instance, workload, evaluation)
    if chunked is not None:
        iteration = simulate(decode_graph(chunked[0]), inp.topology).makespan
        roles["chunk iteration"] = iteration
        ttft = evaluation.ttft.queueing + chunked[1] * iteration
    report = ReplayReport(
        result.tpot_s,
        ttft,
        cmp.replayed.throughput_tps,
        evaluation.gpus,
        roles,
        result.simulator,
        cmp,
        result,
    )
    if timeline:
        from aicpp_opt.replay.timeline import draw

        report.timeline = draw(result, Path(timeline), f"{plan.mode} decode step")
    if astra_sim or trace_dir:
        report.astra = _astra(inp, result, astra_sim, trace_dir, astra_timeout)
    return report


def _hbm_bw(instance: Instance) -> float:
    """HBM bandwidth of the first pool's system (AstraSim's local-mem-bw only)."""
    from aicpp_opt.costs import CostModel

    return float(CostModel.load(instance.pools[0].system).system.hbm_bw)


def _astra(inp: ReplayInput, result: ReplayResult, binary, trace_dir, timeout):
    """Write traces and, given a binary, run AstraSim; an error comes back as its text."""
    from aicpp_opt.replay import astra

    try:
        path = astra.resolve_binary(binary)
        out = Path(trace_dir) if trace_dir else Path.cwd() / "astra_trace"
        files = astra.write_inputs(result.graph, inp.topology, out, inp.hbm_bw)
        if path is None:
            return f"traces written to {out}; no AstraSim binary given"
        return astra.run(path, files, timeout or astra.DEFAULT_TIMEOUT_S)
    except (InputError, OSError) as err:
        return str(err)
