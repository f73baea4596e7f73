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


class AggRank:
    def __init__(self) -> None:
        self.batch = Batch()
        self.queue: deque[Request] = deque()

    @property
    def outstanding(self) -> int:
        return len(self.batch) + len(self.queue)

    def prefill_pieces(self, cap: int, budget: int) -> list[tuple[Request, int, int]]:
        """The prompt pieces this rank computes in the next iteration."""
        pieces = []
        seats = cap - len(self.batch)
        for req in self.queue:
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
        self.ranks = [AggRank() for _ in range(role.shape.attn_dp)]
        self.busy = False

    @property
    def outstanding(self) -> int:
        return sum(r.outstanding for r in self.ranks)

    def admit(self, req: Request, rank: int) -> None:
        self.ranks[rank].queue.append(req)
        if not self.busy:
            self._start()

    def _start(self) -> None:
        sim, role = self.sim, self.role
        pieces = [r.prefill_pieces(self.cap, role.chunk_tokens) for r in self.ranks]
        loads = [
            RankLoad(len(r.batch), tuple((s, e) for _, s, e in p))
            for r, p in zip(self.ranks, pieces, strict=True)
        ]
        if all(x.empty for x in loads):
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
        for rank, done in zip(self.ranks, pieces, strict=True):
            rank.batch.advance(sim, self.role, dt)
            joined = []
            for req, _, end in done:
                req.prefilled = end
                if end < req.isl:
                    continue
                rank.queue.remove(req)
                sim.first_token(req)
                if req.osl > 1:
                    joined.append(req)
                else:
                    sim.finish(req)
            rank.batch.join(joined)
        self._start()


class AggRole:
    """The replicas of one aggregated role."""

    def __init__(self, sim: Simulation, role: Role) -> None:
        self.sim, self.role = sim, role
        self.replicas = [AggReplica(sim, role, i) for i in range(role.replicas)]

    def admit(self, req: Request) -> None:
        router = self.sim.router
        replica = self.replicas[router.replica([r.outstanding for r in self.replicas])]
        rank = router.rank((self.role.id, replica.index), [r.outstanding for r in replica.ranks])
        replica.admit(req, rank)
