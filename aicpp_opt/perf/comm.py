"""Communication costs behind one interface: measured NCCL / DeepEP tables when the group
matches the measured setting, else an alpha-beta model on the instance's links (flagged).

"Matches the measured setting" means: the group sits inside one NVLink domain of the instance,
is no larger than the system's measured node (``gpus_per_node``) and the instance's NVLink
bandwidth equals the system's; or, for groups spanning domains, the instance's domain is the
system's node and its scale-out bandwidth is the system's (DeepEP is measured over 1, 2, 4 and
8 such nodes on h100_sxm / h200_sxm, so EP 8..64; one node elsewhere). Anything else (e.g. EP 64
inside a 72-GPU NVLink domain built from H200s, or EP 128 over 16 nodes) has no measurement and
uses alpha-beta.

Alpha-beta (B: bytes, n: group size, bw/alpha: per-GPU per-direction link of the instance):
all_reduce 2(n-1)/n B/bw + 2(n-1) alpha (ring); all_gather / reduce_scatter (n-1)/n B/bw +
(n-1) alpha (B: the gathered buffer); alltoall (n-1)/n B/bw + alpha (B: one rank's send buffer,
parallel sends through a switch); point-to-point B/bw + alpha."""

from __future__ import annotations

import math

from aicpp_opt.errors import InputError
from aicpp_opt.perf.breakdown import Cost
from aicpp_opt.perf.context import PerfContext
from aicpp_opt.perf.routing import distinct_targets
from aicpp_opt.spec.instance import Dimension, Pool
from aicpp_opt.spec.model import BYTES_PER_PARAM

COLLECTIVES = ("all_reduce", "all_gather", "reduce_scatter", "alltoall")


def dtype_bytes(dtype: str) -> float:
    """Bytes per element moved for a dtype name of the model file."""
    return BYTES_PER_PARAM.get(dtype, 2.0)


def _matches_measured(ctx: PerfContext, pool: Pool, group: int, within_domain: bool) -> bool:
    spec = ctx.system(pool.name)
    if within_domain:
        return group <= spec.gpus_per_node and math.isclose(pool.topology[0].bw, spec.nvlink_bw)
    return pool.domain_size == spec.gpus_per_node and math.isclose(
        pool.link(False).bw, spec.scaleout_bw
    )


def _link_label(link: Dimension) -> str:
    return f"{link.kind} {link.bw / 1e9:g} GB/s, {link.latency * 1e9:g} ns"


def alpha_beta(op: str, nbytes: float, group: int, link: Dimension) -> Cost:
    """The alpha-beta estimate of one collective or transfer on ``link``."""
    n = group
    if op == "all_reduce":
        sec = 2 * (n - 1) / n * nbytes / link.bw + 2 * (n - 1) * link.latency
    elif op in ("all_gather", "reduce_scatter"):
        sec = (n - 1) / n * nbytes / link.bw + (n - 1) * link.latency
    elif op == "alltoall":
        sec = (n - 1) / n * nbytes / link.bw + link.latency
    elif op == "p2p":
        sec = nbytes / link.bw + link.latency
    else:
        raise ValueError(f"no alpha-beta model for {op}")
    return Cost(sec, f"alpha-beta {op}: {_link_label(link)}")


def collective(
    ctx: PerfContext, pool: Pool, op: str, nbytes: float, group: int, within_domain: bool
) -> Cost:
    """A NCCL collective of ``nbytes`` over ``group`` GPUs of ``pool``."""
    if group <= 1 or nbytes <= 0:
        return Cost(0.0, "none: single GPU")
    if _matches_measured(ctx, pool, group, within_domain):
        try:
            return ctx.cost(pool.name, op, nbytes, num_gpus=group)
        except InputError:
            pass
    return alpha_beta(op, nbytes, group, pool.link(within_domain))


def ep_exchange(
    ctx: PerfContext,
    pool: Pool,
    phase: str,
    tokens_per_rank: float,
    ep: int,
    mode: str,
    skew: float,
) -> Cost:
    """DeepEP ``dispatch`` or ``combine`` of ``tokens_per_rank`` tokens over ``ep`` ranks.

    Alpha-beta fallback: each token goes to its distinct destination GPUs (top-k experts);
    dispatch moves the MoE dtype (fp8 for fp8 checkpoints), combine the activation dtype. The
    busiest receiver gets ``skew`` times the mean; in-domain and cross-domain shares move in
    parallel on their own links."""
    if ep <= 1 or tokens_per_rank <= 0:
        return Cost(0.0, "none: EP 1")
    within = ep <= pool.domain_size
    m = ctx.model
    if _matches_measured(ctx, pool, ep, within):
        try:
            return ctx.cost(
                pool.name,
                f"moe_{phase}",
                tokens_per_rank,
                hidden=m.hidden_size,
                topk=m.moe.top_k,
                num_experts=m.moe.num_experts,
                ep=ep,
                mode=mode,
            )
        except InputError:
            pass
    elem = dtype_bytes(m.dtypes.moe if phase == "dispatch" else m.dtypes.activations)
    sent = tokens_per_rank * distinct_targets(m.moe.top_k, ep) * m.hidden_size * elem * skew
    local = min(pool.domain_size, ep)
    remote_in = sent * (local - 1) / ep
    remote_out = sent * (ep - local) / ep
    inner, outer = pool.link(True), pool.link(False)
    sec = max(remote_in / inner.bw, remote_out / outer.bw if remote_out else 0.0)
    sec += outer.latency if remote_out else inner.latency
    return Cost(
        sec,
        f"alpha-beta moe_{phase}: {_link_label(inner)}"
        + (f" + {_link_label(outer)}" if remote_out else ""),
    )


def p2p(link: Dimension, nbytes: float, streams: int = 1) -> Cost:
    """A point-to-point transfer of ``nbytes`` split over ``streams`` GPU links."""
    return alpha_beta("p2p", nbytes / streams, 2, link)
