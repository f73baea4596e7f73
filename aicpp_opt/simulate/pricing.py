"""How long the simulated work takes: every forward from the op model (``model.forward`` and
its schedule) at the load actually formed, every KV transfer from the communication model. These
are the evaluator's inputs; none of its results (step totals, queues, percentiles) is read.

``Pricer`` is the interface the schedulers use, so tests can give them known times."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from aicpp_opt.model.context import Context
from aicpp_opt.model.forward import Load, Span, forward
from aicpp_opt.model.memory import kv_bytes_per_token, kv_layers
from aicpp_opt.model.schedule import step_seconds
from aicpp_opt.model.steps import decode_step_seconds
from aicpp_opt.spec.plan import Role


@dataclass(frozen=True)
class RankLoad:
    """One attention rank's part of a forward: decode sequences (one step each) and the prompt
    pieces [start, end) of the requests it prefills (one span per request)."""

    decode_seqs: int = 0
    spans: tuple[tuple[int, int], ...] = ()

    @property
    def empty(self) -> bool:
        return not self.decode_seqs and not self.spans


class Pricer(Protocol):
    def forward(self, role: Role, loads: Sequence[RankLoad]) -> float:
        """Seconds of one forward of a replica whose attention ranks carry ``loads``."""

    def decode(self, role: Role, seqs: int) -> float:
        """Seconds of one decode step of a replica of a decode role running ``seqs``."""

    def kv(self, prefill: Role, decode: Role, isl: int, domains: int) -> float:
        """Seconds to move one request's KV (``isl`` tokens) from a prefill rank's GPU to the
        decode side, inside one NVLink domain (1) or across (2)."""


class OpModelPricer:
    """The op model and communication model of the plan's contexts (one per workload).

    A replica's attention ranks run in lock step (every MoE layer joins them), so a forward
    lasts as long as its slowest rank's: the op model prices each distinct rank load (as if
    every rank carried it) and the longest wins. A rank's load is split evenly over the role's
    K micro-batches, as ``model.steps`` does; requests computing the same prompt piece form one
    span of that many requests (one batched attention call, as the tables measure it). Decode
    sequences are read at the workload's mean decode context. Times are memoised per (role,
    load)."""

    def __init__(self, contexts: dict[str, Context]) -> None:
        self.contexts = contexts
        self._memo: dict[tuple, float] = {}

    def _rank(self, role: Role, load: RankLoad) -> float:
        key = (role.id, load)
        hit = self._memo.get(key)
        if hit is None:
            ctx = self.contexts[role.workload]
            k = role.micro_batches
            op_load = Load(
                load.decode_seqs / k,
                ctx.workload.decode_context if load.decode_seqs else 0.0,
                1 + role.mtp,
                tuple(Span(n / k, float(s), float(e)) for (s, e), n in Counter(load.spans).items()),
            )
            hit = self._memo[key] = step_seconds(forward(ctx, role, op_load), ctx.pipeline)
        return hit

    def forward(self, role: Role, loads: Sequence[RankLoad]) -> float:
        return max((self._rank(role, x) for x in set(loads) if not x.empty), default=0.0)

    def decode(self, role: Role, seqs: int) -> float:
        key = (role.id, "decode", seqs)
        hit = self._memo.get(key)
        if hit is None:
            ctx = self.contexts[role.workload]
            per_gpu = seqs / role.shape.attention_gpus
            hit = self._memo[key] = decode_step_seconds(ctx, role, per_gpu)
        return hit

    def kv(self, prefill: Role, decode: Role, isl: int, domains: int) -> float:
        """The request's KV at its full prompt, every layer, the model's KV dtype; GQA KV is
        sharded over the prefill rank's TP GPUs (each sends its shard in parallel), MLA/DSA
        latent KV is replicated (one GPU sends it)."""
        key = ("kv", prefill.id, decode.id, isl, domains)
        hit = self._memo.get(key)
        if hit is None:
            ctx = self.contexts[prefill.workload]
            m = ctx.model
            streams = 1 if m.attention.kind in ("mla", "dsa") else prefill.shape.attn_tp
            nbytes = isl * kv_layers(m, 0) * kv_bytes_per_token(m) / streams
            comm = ctx.cross_comm(prefill.pool, decode.pool)
            hit = self._memo[key] = comm.p2p(nbytes, domains).seconds
        return hit
