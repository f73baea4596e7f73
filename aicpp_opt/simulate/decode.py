"""Decode roles (plain or AFD units fed by P/D prefill): continuous batching per replica.

A replica runs up to ``batch_per_gpu`` x its attention GPUs sequences. A request whose KV has
arrived joins at the next step boundary when a seat is free (else it queues, first come first
served); joining emits its first token (sampled by the prefill). Each step's duration is the op
model's decode step at the number of sequences in it; every sequence then emits 1 + the MTP
drafts it got accepted (the last step only what it still owes)."""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING

import numpy as np

from aicpp_opt.simulate.requests import Request
from aicpp_opt.spec.plan import Role

if TYPE_CHECKING:
    from aicpp_opt.simulate.sim import Simulation


def seat_cap(role: Role, per_rank: bool) -> int:
    """Sequences a replica (or one attention rank of it) runs at most; at least one."""
    seqs = role.batch_per_gpu * (role.shape.attn_tp if per_rank else role.shape.attention_gpus)
    return max(1, int(seqs + 1e-9))


class Batch:
    """Sequences in decode: request ids, output tokens still owed, whether each is measured and
    the attention-DP rank each runs on (counted per rank in ``per_rank``)."""

    def __init__(self, ranks: int = 1) -> None:
        self.ids = np.empty(0, dtype=np.int64)
        self.owed = np.empty(0, dtype=np.int64)
        self.measured = np.empty(0, dtype=bool)
        self.rank = np.empty(0, dtype=np.int64)
        self.per_rank = [0] * ranks
        self.n = 0
        self.n_measured = 0

    def join(self, reqs: list[Request], rank: int = 0) -> None:
        if not reqs:
            return
        measured = [r.measured for r in reqs]
        self.ids = np.concatenate([self.ids, [r.id for r in reqs]])
        self.owed = np.concatenate([self.owed, [r.osl - 1 for r in reqs]])
        self.measured = np.concatenate([self.measured, measured])
        self.rank = np.concatenate([self.rank, np.full(len(reqs), rank)])
        self.per_rank[rank] += len(reqs)
        self.n += len(reqs)
        self.n_measured += sum(measured)

    def advance(self, sim: Simulation, role: Role, dt: float) -> None:
        """One step of ``dt`` seconds has ended now: emit tokens, finish who is done."""
        if not self.n:
            return
        if role.mtp:
            emitted = np.minimum(sim.accepted(role, self.n), self.owed)
            self.owed -= emitted
            tokens = int(emitted.sum())
        else:
            self.owed -= 1
            tokens = self.n
        sim.log(role).step(sim.now, dt, tokens, self.n_measured, self.n)
        done = self.owed <= 0
        if not done.any():
            return
        for i in self.ids[done]:
            sim.finish(sim.requests[i])
        for rank, count in enumerate(np.bincount(self.rank[done], minlength=len(self.per_rank))):
            self.per_rank[rank] -= int(count)
        self.n_measured -= int(self.measured[done].sum())
        keep = ~done
        self.ids, self.owed = self.ids[keep], self.owed[keep]
        self.measured, self.rank = self.measured[keep], self.rank[keep]
        self.n = len(self.ids)


class DecodeReplica:
    def __init__(self, sim: Simulation, role: Role, index: int) -> None:
        self.sim, self.role, self.index = sim, role, index
        self.cap = seat_cap(role, per_rank=False)
        self.batch = Batch()
        self.waiting: deque[Request] = deque()
        self.incoming = 0
        self.busy = False

    @property
    def outstanding(self) -> int:
        """Sequences running, waiting for a seat, or with their KV on the way."""
        return self.batch.n + len(self.waiting) + self.incoming

    def receive(self, req: Request) -> None:
        """``req``'s KV has arrived."""
        self.incoming -= 1
        self.waiting.append(req)
        if not self.busy:
            self._start()

    def _start(self) -> None:
        sim = self.sim
        joined = []
        while self.waiting and self.batch.n + len(joined) < self.cap:
            req = self.waiting.popleft()
            sim.first_token(req)
            if req.osl > 1:
                joined.append(req)
            else:
                sim.finish(req)
        self.batch.join(joined)
        self.busy = bool(self.batch.n)
        if self.busy:
            dt = sim.pricer.decode(self.role, self.batch.n)
            sim.queue.at(sim.now + dt, self._end, dt)

    def _end(self, dt: float) -> None:
        self.batch.advance(self.sim, self.role, dt)
        self._start()


class DecodeRole:
    """The replicas of one decode role; the router spreads arriving KV over them."""

    def __init__(self, sim: Simulation, role: Role) -> None:
        self.sim, self.role = sim, role
        self.replicas = [DecodeReplica(sim, role, i) for i in range(role.replicas)]

    def choose(self) -> DecodeReplica:
        """The replica a request's KV is sent to."""
        replicas = self.replicas
        replica = replicas[
            self.sim.router.replica(len(replicas), lambda: [r.outstanding for r in replicas])
        ]
        replica.incoming += 1
        return replica
