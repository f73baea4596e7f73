"""P/D prefill roles: replicas of lock-step attention-DP ranks, each rank with its own queue.

A request goes to one rank of one replica (the router). An idle replica starts a forward as
soon as any of its ranks has a request; each rank takes up to ``batch`` requests from the head
of its queue, each computing its next piece of at most ``chunk_tokens`` uncached prompt tokens
(a longer prompt stays at the head and continues in the next forward). The forward lasts as
long as its slowest rank's load. When a request's prompt is done (its first token sampled), its
KV leaves the rank's GPU for a decode replica: the rank's link carries one request's KV at a
time, in order, so a batch's KV queues on it."""

from __future__ import annotations

import math
from collections import deque
from itertools import islice
from typing import TYPE_CHECKING

from aicpp_opt.simulate.pricing import RankLoad
from aicpp_opt.simulate.requests import Request
from aicpp_opt.spec.plan import Role

if TYPE_CHECKING:
    from aicpp_opt.simulate.sim import Simulation


def next_piece(req: Request, budget: int) -> tuple[int, int]:
    """The prompt tokens [start, end) a request computes next within ``budget`` tokens."""
    return req.prefilled, min(req.isl, req.prefilled + budget)


class PrefillReplica:
    def __init__(self, sim: Simulation, role: Role, index: int) -> None:
        self.sim, self.role, self.index = sim, role, index
        self.queues: list[deque[Request]] = [deque() for _ in range(role.shape.attn_dp)]
        self.link_free = [0.0] * role.shape.attn_dp
        self.busy = False

    @property
    def outstanding(self) -> int:
        return sum(len(q) for q in self.queues)

    def admit(self, req: Request, rank: int) -> None:
        self.queues[rank].append(req)
        if not self.busy:
            self._start()

    def _start(self) -> None:
        sim, role = self.sim, self.role
        taken = [list(islice(q, role.batch)) for q in self.queues]
        if not any(taken):
            self.busy = False
            return
        pieces = []
        for reqs in taken:
            spans = tuple(next_piece(r, role.chunk_tokens) for r in reqs)
            for r in reqs:
                if math.isnan(r.prefill_start):
                    r.prefill_start = sim.now
            pieces.append(spans)
        self.busy = True
        dt = sim.pricer.forward(role, [RankLoad(0, spans) for spans in pieces])
        sim.log(role).forward(dt, sum(len(t) for t in taken))
        sim.queue.at(sim.now + dt, self._end, taken, pieces)

    def _end(self, taken: list[list[Request]], pieces: list[tuple[tuple[int, int], ...]]) -> None:
        for rank, (reqs, spans) in enumerate(zip(taken, pieces, strict=True)):
            queue = self.queues[rank]
            for _ in reqs:
                queue.popleft()
            left = []
            for req, (_, end) in zip(reqs, spans, strict=True):
                req.prefilled = end
                if end < req.isl:
                    left.append(req)
                else:
                    self._send(req, rank)
            queue.extendleft(reversed(left))
        self._start()

    def _send(self, req: Request, rank: int) -> None:
        """Move ``req``'s KV to a decode replica over this rank's link, after the KV already
        queued on it."""
        sim = self.sim
        target = sim.decode_target(self.role, req)
        replica = target.choose()
        domains = sim.link_domains(self.role, self.index, target.role, replica.index)
        seconds = sim.pricer.kv(self.role, target.role, req.isl, domains)
        start = max(sim.now, self.link_free[rank])
        self.link_free[rank] = done = start + seconds
        req.kv_done = done
        sim.queue.at(done, replica.receive, req)


class PrefillRole:
    """The replicas of one prefill role."""

    def __init__(self, sim: Simulation, role: Role) -> None:
        self.sim, self.role = sim, role
        self.replicas = [PrefillReplica(sim, role, i) for i in range(role.replicas)]

    def admit(self, req: Request) -> None:
        router, replicas = self.sim.router, self.replicas
        replica = replicas[router.replica(len(replicas), lambda: [r.outstanding for r in replicas])]
        queues = replica.queues
        rank = router.rank(
            (self.role.id, replica.index), len(queues), lambda: [len(q) for q in queues]
        )
        replica.admit(req, rank)
