"""One description of a forward pass: typed ops grouped into blocks of identical layers.

An ``Op`` is one kernel or one transfer of one layer for one micro-batch: its stage in the
layer's pipeline (attention block, shared expert, dispatch, routed experts, combine, dense MLP,
or once-per-forward work), the side that runs it (a plain worker's GPUs, or an AFD unit's
attention / FFN side), its price (``Latency``: seconds, source, extrapolated, fallback) and, for
communication, what it moves (``Transfer``). A ``Forward`` lists its blocks (``count`` identical
layers each) and its once-per-forward ops. Every schedule (plain, two-batch overlap, AFD
pipeline, prefill, chunked prefill), the memory model and the replay read these objects; none
reads an op's display name."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from functools import lru_cache

from aicpp_opt.costs.curve import Latency


class Side(StrEnum):
    """Who runs an op: a plain worker's GPUs (attention and experts on the same GPUs), or one
    side of an AFD unit. A transfer belongs to the side that sends it."""

    GPU = "gpu"
    ATTENTION = "attention"
    FFN = "ffn"


class Stage(StrEnum):
    """An op's place in its layer: MoE layers run PREPARE (the norms and the projections before
    the attention kernel), ATTENTION (the kernel, the output projection, its TP collective and
    the router), SHARED (the shared expert), DISPATCH, EXPERTS (routed experts and the MoE-TP
    collective), COMBINE; dense layers PREPARE, ATTENTION then DENSE; STEP ops run once per
    forward per micro-batch (embedding, final norm, LM head). SGLang's two-batch overlap yields
    between PREPARE and ATTENTION, so the schedule needs the two apart."""

    PREPARE = "prepare"
    ATTENTION = "attention"
    SHARED = "shared"
    DISPATCH = "dispatch"
    EXPERTS = "experts"
    COMBINE = "combine"
    DENSE = "dense"
    STEP = "step"


MOE_STAGES = (
    Stage.PREPARE,
    Stage.ATTENTION,
    Stage.SHARED,
    Stage.DISPATCH,
    Stage.EXPERTS,
    Stage.COMBINE,
)
DENSE_STAGES = (Stage.PREPARE, Stage.ATTENTION, Stage.DENSE)


class LayerClass(StrEnum):
    DENSE = "dense"
    MOE = "moe"
    STEP = "step"


class TransferKind(StrEnum):
    """What a communication op does: a collective over a group (NCCL message size), an EP
    dispatch / combine over the EP group, or an AFD exchange between the two sides."""

    ALL_REDUCE = "all_reduce"
    ALL_GATHER = "all_gather"
    REDUCE_SCATTER = "reduce_scatter"
    EP_DISPATCH = "ep_dispatch"
    EP_COMBINE = "ep_combine"
    A2F = "a2f"
    F2A = "f2a"


@dataclass(frozen=True)
class Transfer:
    """What a communication op moves. Collectives: ``nbytes`` is NCCL's message size over
    ``group`` GPUs. Exchanges: ``nbytes`` is what one sender sends in all (mean, before routing
    skew) to the other members of its ``group`` (EP) or to ``receivers`` GPUs (AFD, ``group``
    senders per FFN set); ``shares`` is each receiver's share (busiest first), from the
    routing."""

    kind: TransferKind
    group: int
    nbytes: float
    receivers: int = 0
    shares: tuple[float, ...] = ()


@dataclass(frozen=True)
class Op:
    name: str
    stage: Stage
    side: Side
    cost: Latency
    transfer: Transfer | None = None

    @property
    def seconds(self) -> float:
        return self.cost.seconds


@lru_cache(maxsize=65536)
def stage_seconds(ops: tuple[Op, ...]) -> dict[Stage, float]:
    """Seconds per stage of one layer's ops (cached: the optimiser times the same layers at
    many pairings)."""
    out: dict[Stage, float] = {}
    for op in ops:
        out[op.stage] = out.get(op.stage, 0.0) + op.cost.seconds
    return out


@dataclass(frozen=True)
class Block:
    """``count`` identical layers of one class; ``ops`` are one layer's, one micro-batch's."""

    layer: LayerClass
    count: int
    ops: tuple[Op, ...]
    label: str = ""

    def stage_seconds(self) -> dict[Stage, float]:
        return stage_seconds(self.ops)


@dataclass(frozen=True)
class Forward:
    """One forward pass of a worker role split into ``micro_batches`` equal micro-batches:
    its blocks of layers and its once-per-forward ops (per micro-batch). ``afd`` marks an AFD
    unit (attention and FFN sides are separate GPUs); ``decode`` a forward of decode tokens
    only (an engine runs it with its decode overlap strategy)."""

    blocks: tuple[Block, ...]
    step_ops: tuple[Op, ...]
    micro_batches: int
    afd: bool
    notes: tuple[str, ...] = field(default=())
    decode: bool = False

    @property
    def decode_overlap(self) -> bool:
        """A plain worker's decode forward in two micro-batches: the engine runs it with its
        decode two-batch overlap (SGLang's stage order; the schedule times it, the replay
        builds it)."""
        return self.decode and not self.afd and self.micro_batches == 2
