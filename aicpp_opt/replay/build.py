"""From the op model to the simulator's operation graph: one replica's forward on its real GPUs,
every layer and micro-batch, every op of ``aicpp_opt.model`` (never a display name).

- Compute ops become one kernel per GPU of their side, with the op model's duration (the
  measured tables: the same input the evaluator reads, none of its outputs).
- Communication ops become what they move, timed by the simulator: TP all-reduces as ring
  collectives over consecutive GPUs of the side; EP dispatch / combine as direct sends inside
  each EP group (``gpus[t::moe_tp]``), each receiver's bytes in its routing share (the busiest
  rank first); AFD exchanges as sends over the pairing (``direct``: each FFN GPU starts on its
  own inputs; ``all_to_all``: it waits for its whole set's exchange;
  ``allgather_reducescatter``: each attention GPU sends to one FFN GPU, then an all-gather,
  and a reduce-scatter before the way back, once per FFN set over the tokens of every
  attention GPU feeding it, as the op model prices them).
- Dependencies are an engine's: layers in order; a micro-batch's layer waits for its own
  previous layer; each GPU runs its kernels one at a time in program order (micro-batch 0 of a
  layer, then 1, ...), so one micro-batch's communication overlaps another's compute. A plain
  worker's decode forward with two micro-batches runs instead as SGLang runs it: one stream
  per GPU in its decode overlap order (``_sglang_decode_layers``). The overlap is whatever the
  network and the order give: the schedule model's cycle is not assumed.
- Folding (``fold`` > 0): a block of identical layers may be built on its first ``fold`` (or
  ``fold`` + 1) layers only. The simulation is deterministic and every layer of a block is the
  same graph, so once the layers repeat, every op's start and end moving by the same time from
  a layer to the one a period later, every later layer does too, up to the block's last, which
  meets what follows the block. The unbuilt layers then add that time per period, inserted
  before the last built layer (``unbuilt_seconds``). Two micro-batches can settle into a
  two-layer period, so the unbuilt layers are an even number. When the built layers do not
  repeat, the caller replays in full.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from aicpp_opt.model.ops import Block, Forward, LayerClass, Op, Side, Stage, TransferKind
from aicpp_opt.netsim.graph import Graph
from aicpp_opt.netsim.simulate import SimResult
from aicpp_opt.spec.plan import Shape

PERIOD_TOL = 1e-6  # relative spread of the layer-to-layer shifts accepted as one period

CATEGORY = {
    Stage.PREPARE: "attention",
    Stage.ATTENTION: "attention",
    Stage.SHARED: "attention",
    Stage.DENSE: "attention",
    Stage.EXPERTS: "ffn",
    Stage.STEP: "other",
}
COMM_CATEGORY = {
    TransferKind.ALL_REDUCE: "tp",
    TransferKind.ALL_GATHER: "tp",
    TransferKind.REDUCE_SCATTER: "tp",
    TransferKind.EP_DISPATCH: "ep_dispatch",
    TransferKind.EP_COMBINE: "ep_combine",
    TransferKind.A2F: "a2f",
    TransferKind.F2A: "f2a",
}


@dataclass(frozen=True)
class ReplicaGpus:
    """Global GPU ids of one replica: its attention GPUs (a plain worker's GPUs), its FFN GPUs
    (AFD) and the AFD pairing as (attention ids, FFN ids) groups."""

    attention: tuple[int, ...]
    ffn: tuple[int, ...] = ()
    pairing: tuple[tuple[tuple[int, ...], tuple[int, ...]], ...] = ()

    def side(self, side: Side) -> tuple[int, ...]:
        return self.ffn if side == Side.FFN else self.attention


@dataclass(frozen=True)
class Repeat:
    """A block of ``count`` identical layers of which the graph holds the first few: the op ids
    of each built layer (contiguous, in the same order layer after layer)."""

    count: int
    layers: tuple[range, ...]


def unbuilt_seconds(sim: SimResult, repeats: tuple[Repeat, ...]) -> float | None:
    """Seconds the unbuilt layers of folded blocks add: per block, its missing layers x its
    period, when the layers before its last built one repeat with a period of one or two layers
    (every op's start and end moves by the same time from a layer to the one a period later,
    within ``PERIOD_TOL``, over two periods: the block is in its steady state and what follows
    it has not reached back that far); None when a block does not."""
    total = 0.0
    for rep in repeats:
        missing = rep.count - len(rep.layers)
        for q in (1, 2):
            shift = _shift(sim, rep.layers[-2 - 2 * q : -1], q)
            if shift is not None and missing % q == 0:
                total += missing // q * shift
                break
        else:
            return None
    return total


def _shift(sim: SimResult, layers: tuple[range, ...], q: int) -> float | None:
    """The time by which every op of ``layers`` (2q + 1 of them) recurs q layers later, or
    None when there is no such single time."""
    if len(layers) < 2 * q + 1:
        return None
    spans = [slice(r.start, r.stop) for r in layers]
    shifts = np.concatenate(
        [t[spans[i + q]] - t[spans[i]] for i in range(q + 1) for t in (sim.op_start, sim.op_end)]
    )
    shift = float(shifts.mean())
    if shift <= 0 or shifts.max() - shifts.min() > PERIOD_TOL * shift:
        return None
    return shift


class _Builder:
    """Appends one replica's ops to a graph, tracking each (GPU, micro-batch)'s last op."""

    def __init__(self, g: Graph, gpus: ReplicaGpus, shape: Shape, dispatch: str, stream: bool):
        self.g, self.gpus, self.shape, self.dispatch = g, gpus, shape, dispatch
        self.last: dict[tuple[int, int], int] = {}
        self.stream: dict[int, int] | None = {} if stream else None
        self.pending: dict[tuple[Op, int], dict[int, list[int]]] = {}

    def deps(self, gpu: int, mb: int) -> tuple[int, ...]:
        return (self.last[gpu, mb],) if (gpu, mb) in self.last else ()

    def _compute(self, gpu: int, seconds: float, label: str, cat: str, deps, where) -> int:
        """A kernel; with one stream per GPU, after the GPU's previous kernel too."""
        if self.stream is not None and gpu in self.stream:
            deps = (*deps, self.stream[gpu])
        cid = self.g.compute(gpu, seconds, label, cat, deps, **where)
        if self.stream is not None:
            self.stream[gpu] = cid
        return cid

    def add(self, op: Op, mb: int, layer: int) -> None:
        where = {"micro_batch": mb, "layer": layer}
        if op.transfer is None:
            cat = CATEGORY[op.stage]
            for gpu in self.gpus.side(op.side):
                self.last[gpu, mb] = self._compute(
                    gpu, op.seconds, op.name, cat, self.deps(gpu, mb), where
                )
            return
        kind = op.transfer.kind
        if kind == TransferKind.ALL_REDUCE:
            self._all_reduce(op, mb, where)
        elif kind in (TransferKind.EP_DISPATCH, TransferKind.EP_COMBINE):
            self.issue(op, mb, layer)
            self.wait(op, mb, layer)
        else:
            self._afd(op, mb, where, back=kind == TransferKind.F2A)

    def _all_reduce(self, op: Op, mb: int, where: dict) -> None:
        members = self.gpus.side(op.side)
        size = op.transfer.group
        for i in range(0, len(members), size):
            group = members[i : i + size]
            deps = [d for m in group for d in self.deps(m, mb)]
            cid = self.g.collective(
                "all_reduce", group, op.transfer.nbytes, "ring", op.name, "tp", deps, **where
            )
            for m in group:
                self.last[m, mb] = cid

    def _send(self, src: int, dst: int, nbytes: float, op: Op, mb: int, where: dict) -> int:
        cat = COMM_CATEGORY[op.transfer.kind]
        return self.g.transfer(src, dst, nbytes, op.name, cat, self.deps(src, mb), **where)

    def _sync(self, gpu: int, mb: int, inbound: list[int], label: str, where: dict) -> None:
        deps = [*self.deps(gpu, mb), *inbound]
        self.last[gpu, mb] = self._compute(gpu, 0.0, f"{label} done", "sync", deps, where)

    def issue(self, op: Op, mb: int, layer: int) -> None:
        """Send an EP dispatch or combine: every member's shares to the others, each after the
        sender's last op of this micro-batch (``wait`` then makes each receiver wait for its
        inbound sends)."""
        where = {"micro_batch": mb, "layer": layer}
        t = op.transfer
        combine = t.kind == TransferKind.EP_COMBINE
        gpus = self.gpus.attention
        tp = self.shape.moe_tp
        inbound: dict[int, list[int]] = {}
        for members in (gpus[i::tp] for i in range(tp)):
            n = len(members)
            shares = t.shares or (1.0 / n,) * n
            for m in members:
                inbound[m] = []
            for i, a in enumerate(members):
                others = 1.0 - shares[i]
                for j, b in enumerate(members):
                    if a == b:
                        continue
                    nbytes = t.nbytes * shares[j] / others
                    src, dst = (b, a) if combine else (a, b)
                    inbound[dst].append(self._send(src, dst, nbytes, op, mb, where))
        self.pending[op, mb] = inbound

    def wait(self, op: Op, mb: int, layer: int) -> None:
        """Each receiver of an issued EP dispatch or combine waits for its inbound sends."""
        where = {"micro_batch": mb, "layer": layer}
        for m, inbound in self.pending.pop((op, mb)).items():
            self._sync(m, mb, inbound, op.name, where)

    def _afd(self, op: Op, mb: int, where: dict, back: bool) -> None:
        t = op.transfer
        groups = list(self.gpus.pairing)
        if self.dispatch in ("all_to_all", "allgather_reducescatter"):
            merged: dict[tuple[int, ...], list[int]] = {}
            for atts, ffns in groups:
                merged.setdefault(ffns, []).extend(atts)
            groups = [(tuple(a), f) for f, a in merged.items()]
        inbound: dict[int, list[int]] = {}
        for atts, ffns in groups:
            shares = t.shares or (1.0 / len(ffns),) * len(ffns)
            gather = self.dispatch == "allgather_reducescatter" and len(ffns) > 1
            if back and gather:
                self._ffn_collective("reduce_scatter", ffns, t.nbytes * len(atts), op, mb, where)
            sent: list[int] = []
            for i, a in enumerate(atts):
                if gather:
                    targets: tuple = ((ffns[i % len(ffns)], 1.0),)
                else:
                    targets = tuple(zip(ffns, shares, strict=True))
                for f, share in targets:
                    src, dst = (f, a) if back else (a, f)
                    tid = self._send(src, dst, t.nbytes * share, op, mb, where)
                    inbound.setdefault(dst, []).append(tid)
                    sent.append(tid)
            if back:
                continue
            if gather:
                self._ffn_collective("all_gather", ffns, t.nbytes * len(atts), op, mb, where, sent)
            elif self.dispatch == "all_to_all":
                for f in ffns:
                    inbound[f] = sent
        for gpu, ops in inbound.items():
            self._sync(gpu, mb, ops, op.name, where)

    def _ffn_collective(self, kind, ffns, nbytes, op, mb, where, extra=()) -> None:
        deps = [d for f in ffns for d in self.deps(f, mb)] + list(extra)
        cid = self.g.collective(
            kind, ffns, nbytes, "ring", op.name, "ffn_collective", deps, **where
        )
        for f in ffns:
            self.last[f, mb] = cid


def forward_graph(
    fwd: Forward,
    gpus: ReplicaGpus,
    shape: Shape,
    dispatch: str = "",
    graph: Graph | None = None,
    after: dict[int, int] | None = None,
    fold: int = 0,
) -> tuple[Graph, dict[int, int], tuple[Repeat, ...]]:
    """Append one replica's forward to ``graph`` (a new one by default), every op waiting for
    ``after[gpu]`` when given, each block on at most ``fold`` of its layers when ``fold`` > 0;
    returns the graph, each GPU's last op and the folded blocks."""
    g = graph if graph is not None else Graph()
    k = fwd.micro_batches
    staged = fwd.decode_overlap
    b = _Builder(g, gpus, shape, dispatch, stream=staged)
    if after:
        for gpu, op in after.items():
            for mb in range(k):
                b.last[gpu, mb] = op
    layer = 0
    repeats = []
    for block in fwd.blocks:
        built = block.count
        if 0 < fold < block.count:
            built = fold + (block.count - fold) % 2
        if staged and block.layer == LayerClass.MOE:
            layers = _sglang_decode_layers(b, block, built, layer)
        else:
            layers = []
            for i in range(built):
                first = len(g.ops)
                for mb in range(k):
                    for op in block.ops:
                        b.add(op, mb, layer + i)
                layers.append(range(first, len(g.ops)))
        if built < block.count:
            repeats.append(Repeat(block.count, tuple(layers)))
        layer += block.count
    for mb in range(k):
        for op in fwd.step_ops:
            b.add(op, mb, -1)
    ends: dict[int, int] = {}
    for gpu in dict.fromkeys((*gpus.attention, *gpus.ffn)):
        deps = [b.last[gpu, mb] for mb in range(k) if (gpu, mb) in b.last]
        ends[gpu] = g.compute(gpu, 0.0, "forward done", "sync", deps)
    return g, ends, tuple(repeats)


def _sglang_decode_layers(b: _Builder, block: Block, built: int, first_layer: int) -> list[range]:
    """``built`` layers of a plain worker's decode block in SGLang's two-batch overlap order
    (``model.schedule.sglang_decode_cycle`` has the strategy): each micro-batch's layer as five
    stages on one GPU stream (prepare | attention kernel and router | issue dispatch, shared
    expert | wait for dispatch, routed experts, issue combine | wait for combine, once-per-step
    ops of an MTP block), micro-batch 0 two stages ahead, then the two alternating stage by
    stage, micro-batch 0 first. Returns the op ids of each layer's stretch of the alternation
    (micro-batch 1's five stages of the layer and micro-batch 0's between them): one op
    structure per layer but the last, whatever the timing."""

    by_stage = {st: [op for op in block.ops if op.stage == st] for st in Stage}

    def stages(mb: int, layer: int) -> list:
        def do(action, *sts):
            return [lambda op=op: action(op, mb, layer) for st in sts for op in by_stage[st]]

        return [
            do(b.add, Stage.PREPARE),
            do(b.add, Stage.ATTENTION),
            do(b.issue, Stage.DISPATCH) + do(b.add, Stage.SHARED),
            do(b.wait, Stage.DISPATCH)
            + do(b.add, Stage.EXPERTS, Stage.DENSE)
            + do(b.issue, Stage.COMBINE),
            do(b.wait, Stage.COMBINE) + do(b.add, Stage.STEP),
        ]

    per_layer = 5
    program = {
        mb: [st for i in range(built) for st in stages(mb, first_layer + i)] for mb in (0, 1)
    }
    for stage in program[0][:2]:
        for action in stage:
            action()
    ranges = []
    for i in range(built):
        start = len(b.g.ops)
        for j in range(per_layer * i, per_layer * (i + 1)):
            for mb, at in ((0, j + 2), (1, j)):
                if at < len(program[mb]):
                    for action in program[mb][at]:
                        action()
        ranges.append(range(start, len(b.g.ops)))
    return ranges
