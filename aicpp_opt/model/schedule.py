"""How long a forward takes: one schedule function for every mode.

A layer of one micro-batch runs its stages one after another (SGLang's DeepEP path computes the
shared expert before dispatch; an AFD unit sends to the FFN side after attention): its round
trip is the sum of its stage times. With K micro-batches ping-ponging through a layer, each
stage runs on a resource; stages on the same resource serialise, different resources overlap:

- plain worker (two-batch overlap at K = 2): the attention prepare and kernel, shared expert,
  routed experts and dense MLPs on the GPU; EP dispatch and combine on the network;
- AFD unit: attention, shared expert and dense layers on the attention GPUs; A->F on the
  attention-to-FFN direction of the links; routed experts on the FFN GPUs; F->A on the other
  direction.

``pipelined`` (default): an AFD unit's per-layer cycle is max(K x the busiest resource's load,
one micro-batch's round trip): the K micro-batches circulate as jobs of a closed cyclic network
with deterministic service, every resource serving one stage, and this is its cycle. A plain
worker's GPU serves several stages in an order the engine fixes, so its two-batch overlap is
timed by that order (``sglang_decode_cycle``: SGLang's decode strategy, DeepSeek's published
one) for decode forwards, whatever the framework (vLLM's dual-batch overlap and TRT-LLM's
orders are not modelled apart); prefill and mixed forwards keep the cyclic-network bound, a
lower bound there (the replay, which does not assume it, shows the gap). ``serial``: K round trips,
no overlap (the upper bound). With K = 1 both are the round trip.

The step is the sum over blocks of layers x cycle, plus K x the once-per-forward ops. Its
breakdown lists every op x (layers x K) and, per block, the overlap credit (cycle - serial),
so the step equals the sum of its listed lines."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

from aicpp_opt.costs.curve import Latency
from aicpp_opt.model.ops import Block, Forward, LayerClass, Side, Stage

PIPELINES = ("pipelined", "serial")

PLAIN_RESOURCES = {
    Stage.PREPARE: "GPU",
    Stage.ATTENTION: "GPU",
    Stage.SHARED: "GPU",
    Stage.DISPATCH: "network",
    Stage.EXPERTS: "GPU",
    Stage.COMBINE: "network",
    Stage.DENSE: "GPU",
    Stage.STEP: "GPU",
}
AFD_RESOURCES = {
    Stage.PREPARE: "attention GPUs",
    Stage.ATTENTION: "attention GPUs",
    Stage.SHARED: "attention GPUs",
    Stage.DISPATCH: "A->F links",
    Stage.EXPERTS: "FFN GPUs",
    Stage.COMBINE: "F->A links",
    Stage.DENSE: "attention GPUs",
    Stage.STEP: "attention GPUs",
}


@dataclass(frozen=True)
class Cycle:
    """One layer of a block with K micro-batches: the cycle, the serial sum it replaces, one
    micro-batch's round trip, each resource's load, and what binds."""

    seconds: float
    serial: float
    round_trip: float
    loads: dict[str, float]
    binds: str


def cycle(
    stages: dict[Stage, float],
    resources: dict[Stage, str],
    k: int,
    pipeline: str,
    decode_overlap: bool = False,
) -> Cycle:
    """The per-layer cycle of ``k`` micro-batches whose stages take ``stages`` seconds each;
    ``decode_overlap``: a plain worker's decode two-batch overlap (``sglang_decode_cycle``)."""
    trip = sum(stages.values())
    loads: dict[str, float] = {}
    for stage, seconds in stages.items():
        loads[resources[stage]] = loads.get(resources[stage], 0.0) + seconds
    serial = k * trip
    if pipeline == "serial" or k == 1 or not loads:
        return Cycle(serial, serial, trip, loads, "serial" if k > 1 else "one micro-batch")
    if decode_overlap and k == 2:
        seconds, binds = sglang_decode_cycle(stages)
        return Cycle(seconds, serial, trip, loads, binds)
    busiest = max(loads, key=loads.get)
    if k * loads[busiest] >= trip:
        return Cycle(k * loads[busiest], serial, trip, loads, f"{busiest} (K x its load)")
    return Cycle(trip, serial, trip, loads, "one micro-batch's round trip")


def sglang_decode_cycle(stages: dict[Stage, float]) -> tuple[float, str]:
    """One layer of SGLang's decode two-batch overlap (``_compute_moe_deepseek_blog_decode``,
    the schedule DeepSeek published with its decode profile): each micro-batch's layer is five
    stages on one GPU stream (prepare | attention kernel and router | issue dispatch, shared
    expert | wait for dispatch, routed experts, issue combine | wait for combine), the second
    micro-batch two stages behind the first, the two alternating stage by stage. A dispatch
    therefore has its own shared expert and the other micro-batch's prepare to hide behind, a
    combine the other's attention kernel; what they do not hide, the GPU waits, once per
    micro-batch: cycle = 2 x GPU work + 2 x (dispatch wait + combine wait)."""
    get = stages.get
    gpu = sum(v for st, v in stages.items() if PLAIN_RESOURCES[st] == "GPU")
    wait_dispatch = max(
        0.0, get(Stage.DISPATCH, 0.0) - get(Stage.SHARED, 0.0) - get(Stage.PREPARE, 0.0)
    )
    wait_combine = max(0.0, get(Stage.COMBINE, 0.0) - get(Stage.ATTENTION, 0.0))
    binds = (
        f"SGLang decode overlap: GPU work {2 * gpu * 1e6:.1f} us, waits per micro-batch for "
        f"dispatch {wait_dispatch * 1e6:.1f} us, combine {wait_combine * 1e6:.1f} us"
    )
    return 2 * (gpu + wait_dispatch + wait_combine), binds


@dataclass(frozen=True)
class OpCost:
    """One line of a step's breakdown: an op (or an overlap credit) x its count per step."""

    name: str
    layer: LayerClass
    stage: Stage
    side: Side
    count: float
    cost: Latency

    @property
    def seconds(self) -> float:
        return self.cost.seconds

    @property
    def total(self) -> float:
        return self.count * self.cost.seconds

    def to_dict(self) -> dict:
        return {
            "op": self.name,
            "layer": self.layer.value,
            "stage": self.stage.value,
            "side": self.side.value,
            "count": self.count,
            "ms_each": self.cost.seconds * 1e3,
            "ms_total": self.total * 1e3,
            "source": self.cost.source,
            "extrapolated": self.cost.extrapolated,
            "fallback": self.cost.fallback,
        }


@dataclass(frozen=True)
class Step:
    """A forward's time as its breakdown (``total`` is exactly the sum of ``ops``), the cycle
    of each block, and notes saying which model produced the number."""

    ops: tuple[OpCost, ...]
    cycles: tuple[tuple[str, Cycle], ...] = ()
    notes: tuple[str, ...] = field(default=())

    @cached_property
    def total(self) -> float:
        return sum(op.total for op in self.ops)

    @property
    def overlap_credit(self) -> float:
        return sum(op.total for op in self.ops if op.name.startswith("overlap credit"))

    @property
    def extrapolated(self) -> bool:
        return any(op.cost.extrapolated for op in self.ops)

    def to_dict(self) -> dict:
        return {
            "total_ms": self.total * 1e3,
            "overlap_credit_ms": self.overlap_credit * 1e3,
            "ops": [op.to_dict() for op in self.ops],
            "cycles": [
                {
                    "block": name,
                    "cycle_us": c.seconds * 1e6,
                    "serial_us": c.serial * 1e6,
                    "round_trip_us": c.round_trip * 1e6,
                    "binds": c.binds,
                    "loads_us": {r: v * 1e6 for r, v in c.loads.items()},
                }
                for name, c in self.cycles
            ],
            "notes": list(self.notes),
        }


def step_seconds(fwd: Forward, pipeline: str = "pipelined") -> float:
    """``schedule(fwd, pipeline).total`` without the breakdown: the same cycles (the optimiser
    asks for the time of tens of thousands of forwards and needs no lines)."""
    k = fwd.micro_batches
    resources = AFD_RESOURCES if fwd.afd else PLAIN_RESOURCES
    staged = fwd.decode_overlap
    total = k * sum(op.cost.seconds for op in fwd.step_ops)
    for block in fwd.blocks:
        total += block.count * cycle(block.stage_seconds(), resources, k, pipeline, staged).seconds
    return total


def _block_name(block: Block) -> str:
    return block.label or block.layer.value


def schedule(fwd: Forward, pipeline: str = "pipelined") -> Step:
    """The step time of ``fwd`` (see the module notes)."""
    k = fwd.micro_batches
    resources = AFD_RESOURCES if fwd.afd else PLAIN_RESOURCES
    lines: list[OpCost] = []
    cycles = []
    staged = fwd.decode_overlap
    for block in fwd.blocks:
        name = _block_name(block)
        c = cycle(block.stage_seconds(), resources, k, pipeline, staged)
        cycles.append((name, c))
        n = block.count * k
        lines += [OpCost(op.name, block.layer, op.stage, op.side, n, op.cost) for op in block.ops]
        if c.seconds != c.serial:
            credit = Latency(
                (c.seconds - c.serial) / k,
                False,
                f"pipeline model {pipeline}, K={k}: per-layer cycle {c.seconds * 1e6:.1f} us "
                f"bound by {c.binds}, serial {c.serial * 1e6:.1f} us",
            )
            lines.append(
                OpCost(f"overlap credit ({name})", block.layer, Stage.STEP, Side.GPU, n, credit)
            )
    lines += [
        OpCost(op.name, LayerClass.STEP, op.stage, op.side, k, op.cost) for op in fwd.step_ops
    ]
    note = f"pipeline model: {pipeline}, K={k}" + (" (AFD unit)" if fwd.afd else "")
    return Step(tuple(lines), tuple(cycles), (note, *fwd.notes))
