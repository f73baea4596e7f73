"""Aggregated roles (plain workers or AFD units that prefill themselves): chunked prefill mixed
into continuous-batching decode iterations, per replica of lock-step attention-DP ranks.

Each rank holds up to ``batch_per_gpu`` x attention TP requests (decoding or being prefilled)
and a first-come-first-served queue. An iteration of a replica starts when any rank has work;
on each rank it carries every decoding sequence plus up to ``chunk_tokens`` uncached prompt
tokens, shared in queue order by the prompt in progress and as many waiting ones as have a seat
(the last may be cut and continue in the next iteration). The iteration lasts as long as the
slowest rank's load, priced by the op model for exactly that load. A prompt finished in an
iteration emits its first token at the iteration's end and decodes from the next one."""

from __future__ import annotations

import math
from collections import deque
from typing import TYPE_CHECKING

from aicpp_opt.simulate.decode import Batch, seat_cap
from aicpp_opt.simulate.prefill import next_piece
from aicpp_opt.simulate.pricing import RankLoad
from aicpp_opt.simulate.requests import Request
from aicpp_opt.spec.plan import Role

if TYPE_CHECKING:
    from aicpp_opt.simulate.sim import Simulation


def prefill_pieces(
    queue: deque[Request], seats: int, budget: int
) -> list[tuple[Request, int, int]]:
    """The prompt pieces a rank computes in the next iteration: in queue order, while budget
    and seats last (a request being prefilled holds a seat)."""
    pieces = []
    for req in queue:
        if budget <= 0 or seats <= 0:
            break
        start, end = next_piece(req, budget)
        pieces.append((req, start, end))
        budget -= end - start
        seats -= 1
    return pieces


class AggReplica:
    def __init__(self, sim: Simulation, role: Role, index: int) -> None:
        self.sim, self.role, self.index = sim, role, index
        self.cap = seat_cap(role, per_rank=True)
        self.batch = Batch(role.shape.attn_dp)
        self.queues: list[deque[Request]] = [deque() for _ in range(role.shape.attn_dp)]
        self.busy = False

    def outstanding(self, rank: int | None = None) -> int:
        """Requests decoding or queued on ``rank`` (None: on the replica)."""
        if rank is None:
            return self.batch.n + sum(len(q) for q in self.queues)
        return self.batch.per_rank[rank] + len(self.queues[rank])

    def admit(self, req: Request, rank: int) -> None:
        self.queues[rank].append(req)
        if not self.busy:
            self._start()

    def _start(self) -> None:
        sim, role, decoding = self.sim, self.role, self.batch.per_rank
        pieces = [
            prefill_pieces(q, self.cap - n, role.chunk_tokens) if q else []
            for q, n in zip(self.queues, decoding, strict=True)
        ]
        loads = [
            RankLoad(n, tuple((s, e) for _, s, e in p))
            for n, p in zip(decoding, pieces, strict=True)
        ]
        if not self.batch.n and not any(pieces):
            self.busy = False
            return
        self.busy = True
        for p in pieces:
            for req, _, _ in p:
                if math.isnan(req.prefill_start):
                    req.prefill_start = sim.now
        dt = sim.pricer.forward(role, loads)
        sim.log(role).forward(dt, sum(len(p) for p in pieces))
        sim.queue.at(sim.now + dt, self._end, dt, pieces)

    def _end(self, dt: float, pieces: list[list[tuple[Request, int, int]]]) -> None:
        sim = self.sim
        self.batch.advance(sim, self.role, dt)
        for rank, done in enumerate(pieces):
            joined = []
            for req, _, end in done:
                req.prefilled = end
                if end < req.isl:
                    continue
                self.queues[rank].remove(req)
                sim.first_token(req)
                if req.osl > 1:
                    joined.append(req)
                else:
                    sim.finish(req)
            self.batch.join(joined, rank)
        self._start()


class AggRole:
    """The replicas of one aggregated role."""

    def __init__(self, sim: Simulation, role: Role) -> None:
        self.sim, self.role = sim, role
        self.replicas = [AggReplica(sim, role, i) for i in range(role.replicas)]

    def admit(self, req: Request) -> None:
        router, replicas = self.sim.router, self.replicas
        replica = replicas[
            router.replica(len(replicas), lambda: [r.outstanding() for r in replicas])
        ]
        ranks = range(self.role.shape.attn_dp)
        rank = router.rank(
            (self.role.id, replica.index),
            len(ranks),
            lambda: [replica.outstanding(i) for i in ranks],
        )
        replica.admit(req, rank)
