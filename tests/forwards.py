"""Hand-made forwards with known durations and bytes, for tests of what consumes the op model
(the replay's graph builder, the schedule, the trace writer)."""

from aicpp_opt.costs.curve import Latency
from aicpp_opt.model.ops import Block, Forward, LayerClass, Op, Side, Stage, Transfer, TransferKind
from aicpp_opt.spec.plan import Shape


def op(name, stage, side, seconds, transfer=None):
    return Op(name, stage, side, Latency(seconds, False, "hand-made"), transfer)


def afd_forward(
    k=2, moe_layers=4, dense_layers=0, m=4, n=2, t_a=1e-4, t_f=2e-4, a2f=1e4, f2a=2e4, head=0.0
):
    """An AFD unit of ``m`` attention GPUs (TP 1) and ``n`` FFN GPUs (EP n): attention ``t_a``,
    experts ``t_f`` per layer and micro-batch; each attention GPU sends ``a2f`` bytes (and gets
    ``f2a`` back) spread evenly over the FFN GPUs."""
    moe = (
        op("attention", Stage.ATTENTION, Side.ATTENTION, t_a),
        op("a2f", Stage.DISPATCH, Side.ATTENTION, 0.0, Transfer(TransferKind.A2F, m, a2f, n)),
        op("experts", Stage.EXPERTS, Side.FFN, t_f),
        op("f2a", Stage.COMBINE, Side.FFN, 0.0, Transfer(TransferKind.F2A, m, f2a, n)),
    )
    blocks = [Block(LayerClass.MOE, moe_layers, moe)]
    if dense_layers:
        dense = (op("dense", Stage.DENSE, Side.ATTENTION, t_a),)
        blocks.insert(0, Block(LayerClass.DENSE, dense_layers, dense))
    steps = (op("head", Stage.STEP, Side.ATTENTION, head),) if head else ()
    return Forward(tuple(blocks), steps, k, True), Shape(1, m, 1, n)


def plain_forward(
    k=1,
    moe_layers=2,
    gpus=4,
    t_attn=1e-4,
    t_exp=1e-4,
    dispatch=0.0,
    combine=0.0,
    t_prep=0.0,
    t_shared=0.0,
    decode=False,
):
    """A plain worker of ``gpus`` GPUs (attention DP, EP over all): attention (after a prepare
    stage of ``t_prep`` when given), shared expert (``t_shared``) and experts per layer and
    micro-batch, EP dispatch / combine of the given bytes per GPU (equal shares); ``decode``
    marks a decode forward (run with the engine's decode overlap)."""
    ops = [op("prepare", Stage.PREPARE, Side.GPU, t_prep)] if t_prep else []
    ops.append(op("attention", Stage.ATTENTION, Side.GPU, t_attn))
    if dispatch:
        t = Transfer(TransferKind.EP_DISPATCH, gpus, dispatch)
        ops.append(op("dispatch", Stage.DISPATCH, Side.GPU, 0.0, t))
    if t_shared:
        ops.append(op("shared", Stage.SHARED, Side.GPU, t_shared))
    ops.append(op("experts", Stage.EXPERTS, Side.GPU, t_exp))
    if combine:
        t = Transfer(TransferKind.EP_COMBINE, gpus, combine)
        ops.append(op("combine", Stage.COMBINE, Side.GPU, 0.0, t))
    block = Block(LayerClass.MOE, moe_layers, tuple(ops))
    return Forward((block,), (), k, False, decode=decode), Shape(1, gpus, 1, gpus)
