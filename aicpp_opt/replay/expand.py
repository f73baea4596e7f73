"""Expand a serving plan (in the neutral ``ReplayInput`` form) into op graphs: one decode
step over every layer and micro-batch, and one prefill with its P->D KV-cache transfer.

Dependencies are the ones a serving engine has: layers in order; in AFD, micro-batch k's
attention of layer l+1 waits for its own F->A combine of layer l, while each GPU runs its
kernels one at a time in ping-pong order (mb0 L, mb1 L, mb0 L+1, ...), so one micro-batch's
transfers and FFN overlap the other micro-batch's attention.
"""

from __future__ import annotations

from dataclasses import dataclass

from aicpp_opt.errors import InputError
from aicpp_opt.replay.fabric import Fabric
from aicpp_opt.replay.graph import ALGORITHMS, COLLECTIVES, Graph
from aicpp_opt.replay.topology import Topology

DISPATCH = ("direct", "all_to_all", "allgather_reducescatter")


@dataclass(frozen=True)
class GroupCollective:
    """A collective run by each group after a compute phase (e.g. TP all-reduce per layer)."""

    groups: tuple[tuple[int, ...], ...]
    nbytes: float  # buffer per rank (NCCL message size, bytes)
    kind: str = "all_reduce"
    algorithm: str = "ring"

    def validate(self, field: str) -> None:
        if self.kind not in COLLECTIVES or self.algorithm not in ALGORITHMS:
            raise InputError(field, f"kind in {COLLECTIVES}, algorithm in {ALGORITHMS}")
        if self.nbytes < 0:
            raise InputError(field, "nbytes must be >= 0")


@dataclass(frozen=True)
class InstanceDecode:
    """An aggregated, P/D decode or prefill instance: every GPU runs attention and its share
    of the MoE experts.

    Seconds are per layer on each GPU: ``attn_s`` (every layer), ``dense_ffn_s`` (dense
    layers), ``moe_ffn_s`` (MoE layers: router, shared and routed experts). ``tp`` (attention
    TP groups) runs after attention and after a dense MLP; ``moe_tp`` after the routed experts.
    MoE dispatch and combine are direct sends inside each EP group (as DeepEP does): GPU i
    sends ``ep_dispatch_bytes * ep_shares[j]`` to member j of its group and gets back
    ``ep_combine_bytes * ep_shares[j]`` from it (``ep_shares``: each member's share of a
    token's expert copies, summing to 1; empty = equal shares; a GPU's share for itself stays
    local).
    """

    gpus: tuple[int, ...]
    dense_layers: int
    moe_layers: int
    attn_s: float
    dense_ffn_s: float
    moe_ffn_s: float
    tp: GroupCollective | None = None
    ep_groups: tuple[tuple[int, ...], ...] = ()
    ep_dispatch_bytes: float = 0.0
    ep_combine_bytes: float = 0.0
    ep_shares: tuple[float, ...] = ()
    moe_tp: GroupCollective | None = None
    head_s: float = 0.0
    role: str = "decode"


@dataclass(frozen=True)
class AfdDecode:
    """An AFD unit: attention GPUs and FFN GPUs, K micro-batches ping-ponging.

    ``pairing`` lists groups (attention GPU ids, FFN GPU ids). ``t_a``/``t_f`` are seconds per
    MoE layer per micro-batch on each attention/FFN GPU; ``t_dense`` per dense layer per
    micro-batch on each attention GPU (dense layers stay on the attention side).
    ``a2f_bytes``/``f2a_bytes`` are the mean bytes per edge per micro-batch per layer; an
    edge into FFN GPU ``ffn_gpus[i]`` carries ``ffn_weights[i]`` times the mean (its experts'
    share of the routing; empty = all 1). ``attn_tp`` also runs twice per dense layer (after
    attention and after the dense MLP), as a TP group does. Dispatch:
    ``direct`` sends over the pairing edges and each FFN GPU starts on its own inputs;
    ``all_to_all`` is one exchange per FFN set, from every attention GPU paired with the set
    to every GPU of it (each FFN GPU waits for its set's whole exchange, as a collective
    does); ``allgather_reducescatter`` sends each attention GPU's
    tokens to one FFN GPU of its group, all-gathers them over the group's FFN GPUs, and
    reduce-scatters after the experts before sending back.
    """

    attention_gpus: tuple[int, ...]
    ffn_gpus: tuple[int, ...]
    pairing: tuple[tuple[tuple[int, ...], tuple[int, ...]], ...]
    micro_batches: int
    dense_layers: int
    moe_layers: int
    t_a: float
    t_f: float
    a2f_bytes: float
    f2a_bytes: float
    dispatch: str = "direct"
    t_dense: float = 0.0
    attn_tp: GroupCollective | None = None
    ffn_tp: GroupCollective | None = None
    head_s: float = 0.0
    ffn_weights: tuple[float, ...] = ()


@dataclass(frozen=True)
class PrefillInput:
    """One prefill batch on ``gpus`` and the KV cache it ships to the decode GPUs.

    The batch is one compute op of ``compute_s`` per GPU, or, when ``forward`` is given, that
    instance's layer-by-layer graph (compute, TP and EP traffic; ``compute_s`` must be 0).
    The KV of the batch is sharded evenly over the prefill GPUs; prefill GPU i sends its
    shard to decode GPU ``decode_gpus[i % len(decode_gpus)]`` once its own work ends.
    """

    gpus: tuple[int, ...]
    decode_gpus: tuple[int, ...]
    compute_s: float
    kv_bytes_per_request: float
    requests: int = 1
    forward: InstanceDecode | None = None


@dataclass(frozen=True)
class ReplayInput:
    """Everything the replay needs: the network (one pool's ``Topology`` or a multi-pool
    ``Fabric``), the decode side, an optional prefill.

    ``hbm_bw`` (bytes/s, from the system spec) only fills AstraSim's ``local-mem-bw``.
    """

    topology: Topology | Fabric
    decode: InstanceDecode | AfdDecode
    prefill: PrefillInput | None = None
    hbm_bw: float = 0.0


def decode_graph(spec: InstanceDecode | AfdDecode) -> Graph:
    """The op graph of one decode step."""
    if isinstance(spec, AfdDecode):
        return _afd_graph(spec)
    return _instance_graph(spec)


def prefill_graph(spec: PrefillInput) -> tuple[Graph, list[int]]:
    """The op graph of one prefill batch; returns it with the ids of each prefill GPU's last
    op before its KV send."""
    _nonneg("replay.prefill", spec.compute_s, spec.kv_bytes_per_request, spec.requests)
    if not spec.gpus or not spec.decode_gpus:
        raise InputError("replay.prefill", "needs prefill GPUs and decode GPUs")
    if spec.forward is None:
        g = Graph()
        done = {p: g.compute(p, spec.compute_s, "prefill", "prefill") for p in spec.gpus}
    else:
        if spec.compute_s or set(spec.forward.gpus) != set(spec.gpus):
            raise InputError(
                "replay.prefill.forward", "runs on the prefill GPUs and replaces compute_s (0)"
            )
        g, done = _instance_ops(spec.forward)
    shard = spec.kv_bytes_per_request * spec.requests / len(spec.gpus)
    for i, p in enumerate(spec.gpus):
        dst = spec.decode_gpus[i % len(spec.decode_gpus)]
        g.transfer(p, dst, shard, "kv P->D", "kv_transfer", (done[p],))
    return g, [done[p] for p in spec.gpus]


def _nonneg(field: str, *values: float) -> None:
    if any(v < 0 for v in values):
        raise InputError(field, "seconds, bytes and counts must be >= 0")


def _group_collectives(
    g: Graph, spec: GroupCollective | None, last: dict[int, int], label: str, category: str, **where
) -> None:
    """Run the collective over each group after its members' last ops; update ``last``."""
    if spec is None:
        return
    for members in spec.groups:
        deps = [last[m] for m in members]
        op = g.collective(
            spec.kind, members, spec.nbytes, spec.algorithm, label, category, deps, **where
        )
        for m in members:
            last[m] = op


def _instance_graph(s: InstanceDecode) -> Graph:
    return _instance_ops(s)[0]


def _instance_ops(s: InstanceDecode) -> tuple[Graph, dict[int, int]]:
    """The instance's layer-by-layer graph and each GPU's last op."""
    _nonneg(
        "replay.decode",
        s.attn_s,
        s.dense_ffn_s,
        s.moe_ffn_s,
        s.head_s,
        s.ep_dispatch_bytes,
        s.ep_combine_bytes,
        s.dense_layers,
        s.moe_layers,
        *s.ep_shares,
    )
    groups = [*(s.tp.groups if s.tp else ()), *(s.moe_tp.groups if s.moe_tp else ()), *s.ep_groups]
    if not set().union(*map(set, groups)) <= set(s.gpus):
        raise InputError("replay.decode", "TP and EP groups must be made of the instance's GPUs")
    if s.ep_shares and any(len(m) != len(s.ep_shares) for m in s.ep_groups):
        raise InputError("replay.decode.ep_shares", "needs one share per EP group member")
    for tp in (s.tp, s.moe_tp):
        if tp is not None:
            tp.validate("replay.decode.tp")
    g = Graph()
    last: dict[int, int] = {}

    def step(gpu_s: float, label: str, category: str, layer: int) -> None:
        for p in s.gpus:
            dep = (last[p],) if p in last else ()
            last[p] = g.compute(p, gpu_s, label, category, dep, layer=layer)

    for layer in range(s.dense_layers + s.moe_layers):
        moe = layer >= s.dense_layers
        step(s.attn_s, f"attn L{layer}", "attention", layer)
        _group_collectives(g, s.tp, last, f"tp L{layer}", "tp", layer=layer)
        if moe:
            _ep_exchange(g, s, last, layer, combine=False)
        step(s.moe_ffn_s if moe else s.dense_ffn_s, f"ffn L{layer}", "ffn", layer)
        if moe:
            _group_collectives(g, s.moe_tp, last, f"moe tp L{layer}", "tp", layer=layer)
            _ep_exchange(g, s, last, layer, combine=True)
        else:
            _group_collectives(g, s.tp, last, f"tp L{layer}", "tp", layer=layer)
    if s.head_s:
        step(s.head_s, "head", "other", -1)
    return g, last


def _ep_exchange(g: Graph, s: InstanceDecode, last: dict[int, int], layer: int, combine: bool):
    """MoE dispatch (or combine): direct sends between the members of each EP group; each
    member's next op waits for everything sent to it (a receiver's view of DeepEP)."""
    label, category = ("combine", "ep_combine") if combine else ("dispatch", "ep_dispatch")
    total = s.ep_combine_bytes if combine else s.ep_dispatch_bytes
    for members in s.ep_groups:
        n = len(members)
        shares = s.ep_shares or (1.0 / n,) * n
        sent = {m: [last[m]] for m in members}
        for a in members:
            for j, b in enumerate(members):
                if a == b:
                    continue
                # combine returns to a the results of its tokens computed on b
                src, dst, share = (b, a, shares[j]) if combine else (a, b, shares[j])
                deps = (last[src],)
                op = g.transfer(
                    src, dst, total * share, f"{label} L{layer}", category, deps, layer=layer
                )
                sent[dst].append(op)
        for m in members:
            last[m] = g.compute(m, 0.0, f"{label} done L{layer}", "sync", sent[m], layer=layer)


def _validate_afd(s: AfdDecode) -> None:
    _nonneg(
        "replay.afd",
        s.t_a,
        s.t_f,
        s.t_dense,
        s.a2f_bytes,
        s.f2a_bytes,
        s.head_s,
        s.dense_layers,
        s.moe_layers,
    )
    if s.micro_batches < 1:
        raise InputError("replay.afd.micro_batches", "must be >= 1")
    if s.dispatch not in DISPATCH:
        raise InputError("replay.afd.dispatch", f"{s.dispatch!r}; use one of {DISPATCH}")
    att, ffn = set(s.attention_gpus), set(s.ffn_gpus)
    if att & ffn:
        raise InputError("replay.afd", "attention and FFN GPUs must be disjoint")
    paired_a = [a for grp, _ in s.pairing for a in grp]
    paired_f = {f for _, grp in s.pairing for f in grp}
    if sorted(paired_a) != sorted(att) or not paired_f <= ffn or not all(f for _, f in s.pairing):
        raise InputError(
            "replay.afd.pairing",
            "each attention GPU must sit in exactly one group, with >= 1 FFN GPU",
        )
    for tp in (s.attn_tp, s.ffn_tp):
        if tp is not None:
            tp.validate("replay.afd.tp")
    if s.ffn_weights and (
        len(s.ffn_weights) != len(s.ffn_gpus) or any(w < 0 for w in s.ffn_weights)
    ):
        raise InputError("replay.afd.ffn_weights", "needs one weight >= 0 per FFN GPU")


def _afd_graph(s: AfdDecode) -> Graph:
    _validate_afd(s)
    g = Graph()
    ready: dict[tuple[int, int], list[int]] = {}  # (attention GPU, mb) -> deps of next layer
    for layer in range(s.dense_layers + s.moe_layers):
        for mb in range(s.micro_batches):
            where = {"micro_batch": mb, "layer": layer}
            if layer < s.dense_layers:
                last = {
                    a: g.compute(
                        a,
                        s.t_dense,
                        f"dense L{layer}",
                        "attention",
                        ready.get((a, mb), ()),
                        **where,
                    )
                    for a in s.attention_gpus
                }
                for _ in range(2):
                    _group_collectives(g, s.attn_tp, last, f"attn tp L{layer}", "tp", **where)
                for a in s.attention_gpus:
                    ready[a, mb] = [last[a]]
                continue
            last = {
                a: g.compute(
                    a, s.t_a, f"attn L{layer}", "attention", ready.get((a, mb), ()), **where
                )
                for a in s.attention_gpus
            }
            _group_collectives(g, s.attn_tp, last, f"attn tp L{layer}", "tp", **where)
            back = _moe_exchange(g, s, last, where)
            for a in s.attention_gpus:
                ready[a, mb] = back[a]
    if s.head_s:
        for mb in range(s.micro_batches):
            for a in s.attention_gpus:
                g.compute(a, s.head_s, "head", "other", ready.get((a, mb), ()), micro_batch=mb)
    return g


def _moe_exchange(g: Graph, s: AfdDecode, last: dict[int, int], where: dict) -> dict:
    """A->F dispatch, FFN, F->A combine of one layer and micro-batch; returns, per attention
    GPU, the ops its next attention must wait for."""
    layer = where["layer"]
    if s.dispatch == "all_to_all":
        feeders: dict[tuple[int, ...], list[int]] = {}
        for a, f in s.pairing:
            feeders.setdefault(tuple(f), []).extend(a)
        groups = [(tuple(a), f) for f, a in feeders.items()]
    else:
        groups = [(tuple(a), tuple(f)) for a, f in s.pairing]
    weight = dict(zip(s.ffn_gpus, s.ffn_weights or (1.0,) * len(s.ffn_gpus), strict=True))
    back: dict[int, list[int]] = {a: [] for a in s.attention_gpus}
    inbound: dict[int, list[int]] = {}
    exchange: dict[tuple[int, ...], list[int]] = {}
    for atts, ffns in groups:
        for i, a in enumerate(atts):
            targets = ffns if s.dispatch != "allgather_reducescatter" else (ffns[i % len(ffns)],)
            for f in targets:
                nbytes = s.a2f_bytes * weight[f]
                op = g.transfer(a, f, nbytes, f"A{a}->F{f} L{layer}", "a2f", (last[a],), **where)
                inbound.setdefault(f, []).append(op)
                exchange.setdefault(ffns, []).append(op)
    ffn_last: dict[int, int] = {}
    for atts, ffns in groups:
        deps = {
            f: exchange[ffns] if s.dispatch == "all_to_all" else inbound.get(f, []) for f in ffns
        }
        if s.dispatch == "allgather_reducescatter" and len(ffns) > 1:
            ag = g.collective(
                "all_gather",
                ffns,
                s.a2f_bytes * len(atts),
                "ring",
                f"ffn allgather L{layer}",
                "ffn_collective",
                [o for f in ffns for o in inbound.get(f, [])],
                **where,
            )
            deps = {f: [ag] for f in ffns}
        for f in ffns:
            if f not in ffn_last:
                ffn_last[f] = g.compute(f, s.t_f, f"ffn L{layer}", "ffn", deps[f], **where)
        _group_collectives(g, s.ffn_tp, ffn_last, f"ffn tp L{layer}", "tp", **where)
        if s.dispatch == "allgather_reducescatter" and len(ffns) > 1:
            rs = g.collective(
                "reduce_scatter",
                ffns,
                s.a2f_bytes * len(atts),
                "ring",
                f"ffn reducescatter L{layer}",
                "ffn_collective",
                [ffn_last[f] for f in ffns],
                **where,
            )
            for f in ffns:
                ffn_last[f] = rs
    for atts, ffns in groups:
        for i, a in enumerate(atts):
            sources = ffns if s.dispatch != "allgather_reducescatter" else (ffns[i % len(ffns)],)
            for f in sources:
                back[a].append(
                    g.transfer(
                        f,
                        a,
                        s.f2a_bytes * weight[f],
                        f"F{f}->A{a} L{layer}",
                        "f2a",
                        (ffn_last[f],),
                        **where,
                    )
                )
    return back
