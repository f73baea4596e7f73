"""The discrete search space: every worker shape the optimiser may choose, per role and mode.

Plain workers (aggregated, prefill, decode) run attention TP x DP and MoE TP x EP on the same
GPUs; EP divides the expert count, TP values come from the instance's search space, so GPU
counts are powers of two. AFD units pair M attention GPUs (TP x DP) with N FFN GPUs holding
``sets`` copies of the experts (each a MoE TP x EP group fed by M / sets attention GPUs), run K
micro-batches and one of the three dispatch strategies; both sides may sit on different pools."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from itertools import product

from aicpp_opt.spec.enums import Dispatch, RoleKind
from aicpp_opt.spec.instance import Instance, Pool
from aicpp_opt.spec.model import ModelSpec
from aicpp_opt.spec.plan import DISPATCH, Afd, PairGroup, Role, Shape

ATTENTION_GPU_CHOICES = (1, 2, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256)
"""M values an AFD unit may use (the attention side need not be a power of two)."""

AGG_CHUNKS = (1024, 2048, 4096, 8192)
"""Chunked-prefill token budgets per iteration and attention rank."""

AFD_CHUNKS = (2048, 8192)
"""Chunk budgets of AFD units that prefill themselves (mode ``afd``): two, since the AFD
space is already the largest."""

SELF_PREFILL = ("agg", "afd")
"""Modes whose workers prefill their own requests; the others take P/D prefill."""

PREFILL_CHUNKS = (8192, 16384)
PREFILL_BATCHES = (1, 2, 4)
"""Prefill forwards: requests per forward and the token budget per chunk."""


@dataclass(frozen=True)
class Candidate:
    """A role template (one replica, batch not yet chosen) and the GPUs it takes per pool."""

    mode: str
    role: Role
    gpus: tuple[tuple[str, int], ...]

    @property
    def gpu_map(self) -> dict[str, int]:
        return dict(self.gpus)

    @property
    def total_gpus(self) -> int:
        return sum(g for _, g in self.gpus)

    @property
    def self_prefill(self) -> bool:
        return self.mode in SELF_PREFILL


def _packs(pool: Pool, gpus: int) -> bool:
    """A block of ``gpus`` packs into the pool's domains without straddling one: any size in a
    single-domain pool; else it divides a domain or fills whole domains."""
    d = pool.domain_size
    if gpus > pool.gpus:
        return False
    return pool.num_domains == 1 or (d % gpus == 0 if gpus <= d else gpus % d == 0)


def _moe_groups(model: ModelSpec, instance: Instance, limit: int) -> Iterator[tuple[int, int]]:
    """(MoE TP, EP) with EP dividing the experts and TP the expert FFN, at most ``limit`` GPUs."""
    s = instance.search
    for tp in s.tp_values:
        if model.moe.expert_ffn % tp:
            continue
        ep = 1
        while ep <= min(s.max_ep, model.moe.num_experts):
            if model.moe.num_experts % ep == 0 and tp * ep <= limit:
                yield tp, ep
            ep *= 2


def _attn_tps(model: ModelSpec, instance: Instance, gpus: int) -> Iterator[int]:
    for tp in instance.search.tp_values:
        if gpus % tp == 0 and model.attention.num_heads % tp == 0:
            yield tp


def plain_shapes(model: ModelSpec, instance: Instance, pool: Pool) -> Iterator[Shape]:
    """Shapes of a plain worker on ``pool`` (attention GPUs = MoE GPUs)."""
    for moe_tp, ep in _moe_groups(model, instance, pool.gpus):
        g = moe_tp * ep
        if not _packs(pool, g):
            continue
        for attn_tp in _attn_tps(model, instance, g):
            yield Shape(attn_tp, g // attn_tp, moe_tp, ep)


def _role(kind: str, pool: str, shape: Shape, **kw) -> Role:
    return Role(
        role=RoleKind(kind), pool=pool, replicas=1, placement=(), shape=shape, id=kind, **kw
    )


def overlaps(shape: Shape) -> tuple[int, ...]:
    """Micro-batch counts of a plain worker: 1, and two-batch overlap when it has EP traffic to
    hide."""
    return (1, 2) if shape.moe_ep > 1 else (1,)


def mtp_drafts(model: ModelSpec, instance: Instance) -> tuple[int, ...]:
    """MTP draft tokens per decode step the search may choose (none without MTP layers)."""
    return tuple(d for d in instance.search.mtp_drafts if d == 0 or model.num_mtp_layers)


def agg_candidates(model: ModelSpec, instance: Instance) -> Iterator[Candidate]:
    for pool in instance.pools:
        for shape in plain_shapes(model, instance, pool):
            for k in overlaps(shape):
                for draft in mtp_drafts(model, instance):
                    for chunk in AGG_CHUNKS:
                        role = _role(
                            "agg", pool.name, shape, chunk_tokens=chunk, micro_batches=k, mtp=draft
                        )
                        yield Candidate("agg", role, ((pool.name, shape.attention_gpus),))


def decode_candidates(model: ModelSpec, instance: Instance) -> Iterator[Candidate]:
    for pool in instance.pools:
        for shape in plain_shapes(model, instance, pool):
            for k in overlaps(shape):
                for draft in mtp_drafts(model, instance):
                    role = _role("decode", pool.name, shape, micro_batches=k, mtp=draft)
                    yield Candidate("pd", role, ((pool.name, shape.attention_gpus),))


def prefill_candidates(model: ModelSpec, instance: Instance, new_tokens: float) -> Iterator[Role]:
    """Prefill roles; chunk budgets above the uncached prompt collapse into one."""
    chunks = sorted({min(c, max(1, int(new_tokens))) for c in PREFILL_CHUNKS})
    for pool in instance.pools:
        for shape in plain_shapes(model, instance, pool):
            for k in overlaps(shape):
                for batch in PREFILL_BATCHES:
                    for chunk in chunks:
                        yield _role(
                            "prefill",
                            pool.name,
                            shape,
                            batch=batch,
                            chunk_tokens=chunk,
                            micro_batches=k,
                        )


def pairing(m: int, n: int, sets: int) -> tuple[PairGroup, ...]:
    """Attention GPUs split into ``sets`` equal groups, group i sending to FFN set i."""
    per_a, per_f = m // sets, n // sets
    return tuple(
        PairGroup(
            tuple(range(i * per_a, (i + 1) * per_a)), tuple(range(i * per_f, (i + 1) * per_f))
        )
        for i in range(sets)
    )


def _afd_fits(a: Pool, f: Pool, m: int, n: int) -> bool:
    if a.name == f.name:
        return _packs(a, m + n) or (m + n > a.domain_size and m + n <= a.gpus)
    return m <= a.gpus and n <= f.gpus


def afd_candidates(
    model: ModelSpec, instance: Instance, mode: str = "afd+pd"
) -> Iterator[Candidate]:
    """AFD units: decode units fed by P/D prefill (``afd+pd``), or units that also prefill in
    chunks (``afd``, one candidate per chunk budget)."""
    s = instance.search
    chunks = AFD_CHUNKS if mode == "afd" else (0,)
    knobs = list(
        product(range(1, s.max_micro_batches + 1), DISPATCH, mtp_drafts(model, instance), chunks)
    )
    for a, f in product(instance.pools, instance.pools):
        for moe_tp, ep in _moe_groups(model, instance, f.gpus):
            for sets, m in product((1, 2), ATTENTION_GPU_CHOICES):
                n = sets * moe_tp * ep
                if m % sets or not _afd_fits(a, f, m, n):
                    continue
                gpus = {a.name: m}
                gpus[f.name] = gpus.get(f.name, 0) + n
                for attn_tp in _attn_tps(model, instance, m // sets):
                    shape = Shape(attn_tp, m // attn_tp, moe_tp, ep)
                    for k, dispatch, draft, chunk in knobs:
                        afd = Afd(m, n, f.name, Dispatch(dispatch), pairing(m, n, sets))
                        role = _role(
                            "agg" if chunk else "decode",
                            a.name,
                            shape,
                            afd=afd,
                            micro_batches=k,
                            mtp=draft,
                            chunk_tokens=chunk,
                        )
                        yield Candidate(mode, role, tuple(sorted(gpus.items())))


def candidates(mode: str, model: ModelSpec, instance: Instance) -> Iterator[Candidate]:
    """Every decode-capable worker shape of a serving mode."""
    if mode == "agg":
        return agg_candidates(model, instance)
    if mode == "pd":
        return decode_candidates(model, instance)
    return afd_candidates(model, instance, mode)
