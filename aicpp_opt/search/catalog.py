"""The shape catalog: every role template (a *family*) the solver may deploy replicas of, with
the GPU blocks one replica takes. This is the only part of the search enumerated in Python;
counts, rates, the mix of families, the P/D ratio and AFD M and N (units of a ratio class)
are the solver's.

Families per workload:

- **agg / decode / prefill** (plain workers, attention GPUs = MoE GPUs): MoE TP x EP with EP
  dividing the experts and TP the expert FFN, attention TP dividing the GPUs and the heads;
  two-batch overlap (micro-batches 2) when there is EP traffic to hide; MTP drafts from the
  search space (decode roles); chunk budgets (agg); requests per forward and chunk (prefill).
  A prefill family names the pool of the decode roles it feeds: its KV goes over that link.
- **AFD units** (decode units fed by P/D prefill, or units that prefill in chunks): one FFN set
  (MoE TP x EP GPUs) fed by M attention GPUs. Two sets fed by two attention groups run
  independently in the op model, so a unit of s sets is s units: M and N of a deployment are
  units x (M, N) of a ratio class, chosen by the solver. K micro-batches 1..max, dispatch
  ``direct`` or ``allgather_reducescatter`` (``all_to_all`` is priced exactly as ``direct`` by
  the analytic model, so it is not a separate family; the replay tells them apart), and the
  placement: *colocated* (one block of M + N GPUs in one NVLink domain, A<->F on NVLink) or
  *split* (an M block and an N block, A<->F over the scale-out network or across pools).

Blocks must pack without straddling an NVLink domain: in a pool of one domain any size fits;
in a pool of several, a block is a power of two no larger than a domain (powers of two form a
divisibility chain, which makes the solver's packing constraints exact) or whole domains."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property
from itertools import product

from aicpp_opt.spec.enums import Dispatch, Mode, RoleKind
from aicpp_opt.spec.instance import Instance, Pool
from aicpp_opt.spec.model import ModelSpec
from aicpp_opt.spec.plan import Afd, PairGroup, Role, Shape
from aicpp_opt.spec.workload import Workload

ATTENTION_GPU_CHOICES = (1, 2, 4, 6, 8, 12, 16, 24, 32, 48, 64)
"""M values of an AFD unit (the attention side need not be a power of two in a pool of one
NVLink domain)."""

AGG_CHUNKS = (1024, 2048, 4096, 8192)
"""Chunked-prefill token budgets per iteration and attention rank."""

AFD_CHUNKS = (2048, 8192)
"""Chunk budgets of AFD units that prefill themselves (mode ``afd``)."""

PREFILL_CHUNKS = (8192, 16384)
PREFILL_BATCHES = (1, 2, 4)
"""Prefill forwards: requests per forward and the token budget per chunk."""

AFD_DISPATCH = (Dispatch.DIRECT, Dispatch.ALLGATHER_REDUCESCATTER)


@dataclass(frozen=True)
class Block:
    """GPUs one replica takes in one pool, kept inside one NVLink domain (or whole domains)."""

    pool: str
    gpus: int


@dataclass(frozen=True)
class Family:
    """A role template (one replica, batch and rate left to the capacity computation and the
    solver), the workload it serves, its blocks, and for prefill the pool it feeds."""

    workload: str
    role: Role
    blocks: tuple[Block, ...]
    feeds: str = ""

    @property
    def kind(self) -> RoleKind:
        return self.role.role

    @property
    def gpus(self) -> int:
        return sum(b.gpus for b in self.blocks)

    @cached_property
    def key(self) -> str:
        """A stable name (cache key and MILP index; computed once: it is asked for often)."""
        r, s = self.role, self.role.shape
        text = (
            f"{self.workload}|{r.role.value}|{r.pool}|tp{s.attn_tp}dp{s.attn_dp}"
            f"|moetp{s.moe_tp}ep{s.moe_ep}|k{r.micro_batches}|d{r.mtp}|c{r.chunk_tokens}|b{r.batch}"
        )
        if r.afd is not None:
            a = r.afd
            where = "colocated" if a.colocated else "split"
            text += f"|afd{a.attention_gpus}x{a.ffn_gpus}@{a.ffn_pool}|{a.dispatch.value}|{where}"
        return text + (f"|feeds {self.feeds}" if self.feeds else "")

    def gpus_in(self, pool: str) -> int:
        return sum(b.gpus for b in self.blocks if b.pool == pool)


def is_power_of_two(n: int) -> bool:
    return n > 0 and n & (n - 1) == 0


def block_fits(pool: Pool, gpus: int) -> bool:
    """A block of ``gpus`` packs into ``pool`` without straddling a domain (see module doc)."""
    if gpus > pool.gpus:
        return False
    if pool.num_domains == 1:
        return True
    d = pool.domain_size
    return (gpus <= d and is_power_of_two(gpus)) or gpus % d == 0


def _moe_groups(model: ModelSpec, instance: Instance, limit: int) -> Iterator[tuple[int, int]]:
    """(MoE TP, EP): EP a power of two dividing the experts, TP dividing the expert FFN."""
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
        if block_fits(pool, g):
            for attn_tp in _attn_tps(model, instance, g):
                yield Shape(attn_tp, g // attn_tp, moe_tp, ep)


def overlaps(shape: Shape) -> tuple[int, ...]:
    """Micro-batches of a plain worker: 1, and two-batch overlap when EP traffic is there to
    hide."""
    return (1, 2) if shape.moe_ep > 1 else (1,)


def mtp_drafts(model: ModelSpec, instance: Instance) -> tuple[int, ...]:
    """MTP draft tokens the search may choose (none without MTP layers)."""
    return tuple(d for d in instance.search.mtp_drafts if d == 0 or model.num_mtp_layers)


def _role(kind: RoleKind, pool: str, shape: Shape, workload: str, **kw) -> Role:
    return Role(
        role=kind, pool=pool, replicas=1, placement=(), shape=shape, workload=workload, **kw
    )


def _plain(model: ModelSpec, instance: Instance, wl: Workload, kind: RoleKind) -> Iterator[Family]:
    drafts = mtp_drafts(model, instance)
    for pool in instance.pools:
        for shape in plain_shapes(model, instance, pool):
            blocks = (Block(pool.name, shape.attention_gpus),)
            for k, draft in product(overlaps(shape), drafts):
                chunks = AGG_CHUNKS if kind == RoleKind.AGG else (0,)
                for chunk in chunks:
                    role = _role(
                        kind,
                        pool.name,
                        shape,
                        wl.name,
                        chunk_tokens=chunk,
                        micro_batches=k,
                        mtp=draft,
                    )
                    yield Family(wl.name, role, blocks)


def prefill_families(model: ModelSpec, instance: Instance, wl: Workload) -> Iterator[Family]:
    """Prefill roles per decode pool they feed; chunk budgets above the uncached prompt
    collapse into one."""
    new = max(1, int(wl.new_prompt_tokens))
    chunks = sorted({min(c, new) for c in PREFILL_CHUNKS})
    for pool, target in product(instance.pools, instance.pools):
        for shape in plain_shapes(model, instance, pool):
            blocks = (Block(pool.name, shape.attention_gpus),)
            for k, batch, chunk in product(overlaps(shape), PREFILL_BATCHES, chunks):
                role = _role(
                    RoleKind.PREFILL,
                    pool.name,
                    shape,
                    wl.name,
                    batch=batch,
                    chunk_tokens=chunk,
                    micro_batches=k,
                )
                yield Family(wl.name, role, blocks, feeds=target.name)


def _afd_placements(a: Pool, f: Pool, m: int, n: int) -> Iterator[tuple[bool, tuple[Block, ...]]]:
    """(colocated, blocks) ways to place one unit of M attention GPUs on ``a`` and N FFN GPUs
    on ``f``."""
    if a.name == f.name and block_fits(a, m + n) and m + n <= a.domain_size:
        yield True, (Block(a.name, m + n),)
    across = a.name != f.name
    if (
        (across or (a.num_domains > 1 and m + n <= a.gpus))
        and block_fits(a, m)
        and block_fits(f, n)
    ):
        yield False, (Block(a.name, m), Block(f.name, n))


def afd_families(
    model: ModelSpec,
    instance: Instance,
    wl: Workload,
    self_prefill: bool,
    placement: str | None = None,
) -> Iterator[Family]:
    """AFD units of one FFN set: decode units fed by P/D prefill, or (``self_prefill``) units
    that prefill in chunks too (one family per chunk budget); ``placement`` keeps only
    ``colocated`` or ``split`` units."""
    s = instance.search
    chunks = AFD_CHUNKS if self_prefill else (0,)
    kind = RoleKind.AGG if self_prefill else RoleKind.DECODE
    knobs = list(
        product(
            range(1, s.max_micro_batches + 1), AFD_DISPATCH, mtp_drafts(model, instance), chunks
        )
    )
    for a, f in product(instance.pools, instance.pools):
        for moe_tp, ep in _moe_groups(model, instance, f.gpus):
            n = moe_tp * ep
            for m in ATTENTION_GPU_CHOICES:
                for colocated, blocks in _afd_placements(a, f, m, n):
                    if placement and colocated != (placement == "colocated"):
                        continue
                    for attn_tp in _attn_tps(model, instance, m):
                        shape = Shape(attn_tp, m // attn_tp, moe_tp, ep)
                        pairing = (PairGroup(tuple(range(m)), tuple(range(n))),)
                        for k, dispatch, draft, chunk in knobs:
                            afd = Afd(m, n, f.name, dispatch, pairing, colocated)
                            role = _role(
                                kind,
                                a.name,
                                shape,
                                wl.name,
                                afd=afd,
                                micro_batches=k,
                                mtp=draft,
                                chunk_tokens=chunk,
                            )
                            yield Family(wl.name, role, blocks)


AFD_PLACEMENTS = ("colocated", "split")


def families(
    model: ModelSpec,
    instance: Instance,
    wl: Workload,
    modes: tuple[str, ...],
    afd_placement: str | None = None,
) -> list[Family]:
    """Every family of the allowed modes for one workload (prefill families when a P/D mode
    is allowed); ``afd_placement`` restricts AFD units to one placement (None: both)."""
    out: list[Family] = []
    if Mode.AGG in modes:
        out += _plain(model, instance, wl, RoleKind.AGG)
    if Mode.PD in modes:
        out += _plain(model, instance, wl, RoleKind.DECODE)
    if Mode.AFD in modes:
        out += afd_families(model, instance, wl, True, afd_placement)
    if Mode.AFD_PD in modes:
        out += afd_families(model, instance, wl, False, afd_placement)
    if Mode.PD in modes or Mode.AFD_PD in modes:
        out += prefill_families(model, instance, wl)
    return out
