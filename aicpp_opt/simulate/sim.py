"""The simulation: the event queue, the role schedulers, the request table, the random streams
and the per-role logs; the hand-offs between roles (prefill -> KV transfer -> decode) and the
token bookkeeping every scheduler shares."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np

from aicpp_opt.simulate.agg import AggRole
from aicpp_opt.simulate.decode import DecodeRole
from aicpp_opt.simulate.events import EventQueue
from aicpp_opt.simulate.flows import Router, Uniforms, decode_shares, entry_shares
from aicpp_opt.simulate.placement import link_domains, replica_domains
from aicpp_opt.simulate.prefill import PrefillRole
from aicpp_opt.simulate.pricing import Pricer
from aicpp_opt.simulate.requests import Arrival, Request
from aicpp_opt.simulate.stats import RoleLog
from aicpp_opt.spec.enums import RoleKind
from aicpp_opt.spec.plan import Plan, Role
from aicpp_opt.spec.workload import Workload


class Simulation:
    """One run over the roles of the simulated workloads. Requests arriving in
    [``measure_from``, ``measure_until``) are measured; the run ends when every measured one
    has finished (arrivals go on meanwhile, so the load stays steady), the sources are dry and
    the roles idle, or at ``stop_at``."""

    def __init__(
        self,
        plan: Plan,
        workloads: dict[str, Workload],
        pricer: Pricer,
        *,
        router: str,
        seed: int,
        measure_from: float,
        measure_until: float,
        stop_at: float,
    ) -> None:
        self.plan, self.workloads, self.pricer = plan, workloads, pricer
        self.queue = EventQueue()
        streams = np.random.SeedSequence(seed).spawn(3)
        self.uniform = Uniforms(np.random.default_rng(streams[0]))
        self.mtp_rng = np.random.default_rng(streams[1])
        self.router = Router(router, np.random.default_rng(streams[2]))
        self.measure_from, self.measure_until, self.stop_at = measure_from, measure_until, stop_at
        self.requests: list[Request] = []
        self.pending = 0
        """Measured requests not finished yet."""
        self.roles: dict[str, PrefillRole | DecodeRole | AggRole] = {}
        self.logs: dict[str, RoleLog] = {}
        self._domains = {}
        self._entries = {}
        self._targets = {}
        for role in plan.roles:
            if role.workload not in workloads:
                continue
            kind = {RoleKind.PREFILL: PrefillRole, RoleKind.DECODE: DecodeRole}
            self.roles[role.id] = kind.get(role.role, AggRole)(self, role)
            self.logs[role.id] = RoleLog()
            self._domains[role.id] = replica_domains(role)
            if role.role == RoleKind.PREFILL:
                self._targets[role.id] = decode_shares(plan, role)
        for name in workloads:
            self._entries[name] = entry_shares(plan, name)

    # ------------------------------------------------------------------ arrivals

    def feed(self, workload: str, source: Iterator[Arrival]) -> None:
        """Schedule the arrivals of ``source`` for ``workload``, one at a time."""
        first = next(source, None)
        if first is not None:
            self.queue.at(first.time, self._arrive, workload, first, source)

    def _arrive(self, workload: str, arrival: Arrival, source: Iterator[Arrival]) -> None:
        measured = self.measure_from <= arrival.time < self.measure_until
        req = Request(
            len(self.requests), workload, arrival.time, arrival.isl, arrival.osl,
            arrival.cached, measured,
        )  # fmt: skip
        self.requests.append(req)
        self.pending += measured
        role = self._entries[workload].pick(self.uniform())
        req.prefill_role = role.id
        if role.role == RoleKind.AGG:
            req.decode_role = role.id
        self.roles[role.id].admit(req)
        nxt = next(source, None)
        if nxt is not None and nxt.time < self.stop_at:
            self.queue.at(nxt.time, self._arrive, workload, nxt, source)

    # ------------------------------------------------------------------ hand-offs

    def decode_target(self, prefill: Role, req: Request) -> DecodeRole:
        """The decode role a prefilled request goes to (the plan's routes)."""
        role = self._targets[prefill.id].pick(self.uniform())
        req.decode_role = role.id
        return self.roles[role.id]

    def link_domains(self, a: Role, ia: int, b: Role, ib: int) -> int:
        return link_domains(self._domains[a.id][ia], self._domains[b.id][ib])

    def accepted(self, role: Role, n: int) -> np.ndarray:
        """Tokens each of ``n`` sequences emits in one step: 1 plus its accepted MTP drafts
        (draft i counts when drafts 1..i all are accepted, each with the workload's
        acceptance), drawn per sequence per step."""
        if not role.mtp:
            return np.ones(n, dtype=np.int64)
        a = self.workloads[role.workload].mtp_acceptance
        if a >= 1.0:
            return np.full(n, 1 + role.mtp, dtype=np.int64)
        hits = self.mtp_rng.geometric(1.0 - a, n) - 1
        return 1 + np.minimum(hits, role.mtp)

    @property
    def now(self) -> float:
        return self.queue.now

    def log(self, role: Role) -> RoleLog:
        return self.logs[role.id]

    def first_token(self, req: Request) -> None:
        req.first_token = self.queue.now
        self.logs[req.decode_role].first_tokens.append(self.queue.now)

    def finish(self, req: Request) -> None:
        req.finish = self.queue.now
        self.pending -= req.measured

    # ------------------------------------------------------------------ run

    def run(self, progress: Callable[[float], None] | None = None) -> float:
        """Run to the end (see the class notes); the time it ended."""
        q = self.queue
        while q.next_time is not None and q.next_time <= self.stop_at:
            q.step()
            if q.now >= self.measure_until and not self.pending:
                break
            if progress is not None and not q.handled % 4096:
                progress(q.now)
        return q.now
