"""Where requests go: a workload's arrival rate, its split over the roles that take new requests
(aggregated and prefill roles), each prefill role's split over the decode roles it feeds, and
which replica and attention-DP rank of a role gets a request (the router).

Rates come from the plan (each role's ``rate``) or from an override; the simulator never asks
the evaluator for a balanced rate. Where a role has no rate (an override scales the plan's
shares, or replaces them when there are none), shares follow request seats: decode sequences
for aggregated and decode roles, requests per forward for prefill roles."""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Callable, Sequence

import numpy as np

from aicpp_opt.errors import InputError
from aicpp_opt.spec.enums import RoleKind
from aicpp_opt.spec.plan import Plan, Role

ROUTERS = ("random", "jsq")
"""``random``: each request to a replica drawn evenly at random (the Poisson split the analytic
side assumes), then the replica's DP ranks in turn (SGLang's default round-robin DP balance).
``jsq``: the replica and rank with the fewest requests outstanding (join the shortest queue)."""


def seats(role: Role) -> float:
    """Requests a role holds at once: decode sequences, or prefill requests per forward."""
    if role.role == RoleKind.PREFILL:
        return role.replicas * role.shape.attn_dp * role.batch
    return role.replicas * role.shape.attention_gpus * role.batch_per_gpu


def serving(plan: Plan, workload: str) -> list[Role]:
    """The roles that emit a workload's output tokens (aggregated and decode roles)."""
    return [r for r in plan.roles if r.workload == workload and r.role != RoleKind.PREFILL]


def planned_rate(plan: Plan, workload: str) -> float:
    """Requests/s the plan serves ``workload`` at: the sum of its serving roles' rates."""
    total = 0.0
    for i, role in enumerate(plan.roles):
        if role.workload == workload and role.role != RoleKind.PREFILL:
            if role.rate is None:
                raise InputError(
                    f"roles[{i}].rate",
                    f"role {role.id!r} has no planned rate to simulate {workload!r} at; add "
                    "rates to the plan (solve writes them) or give --rate",
                )
            total += role.rate
    return total


def _weights(roles: Sequence[Role]) -> list[float]:
    """Planned rates when every role has one, else seats."""
    if all(r.rate is not None for r in roles):
        return [float(r.rate) for r in roles]
    return [seats(r) for r in roles]


def _normalised(pairs: list[tuple[Role, float]]) -> list[tuple[Role, float]]:
    total = sum(w for _, w in pairs)
    if total <= 0:
        return [(r, 1.0 / len(pairs)) for r, _ in pairs]
    return [(r, w / total) for r, w in pairs]


class Uniforms:
    """Uniform draws on [0, 1), taken from ``rng`` a block at a time (one numpy call per
    block rather than per draw)."""

    def __init__(self, rng: np.random.Generator, block: int = 4096) -> None:
        self.rng, self.block = rng, block
        self._buf: list[float] = []
        self._next = 0

    def __call__(self) -> float:
        if self._next == len(self._buf):
            self._buf, self._next = self.rng.random(self.block).tolist(), 0
        self._next += 1
        return self._buf[self._next - 1]


class Shares:
    """Roles and the share of requests each gets; ``pick`` draws one."""

    def __init__(self, pairs: list[tuple[Role, float]]) -> None:
        self.roles = [r for r, _ in pairs]
        self.shares = [s for _, s in pairs]
        self._upper = list(itertools.accumulate(self.shares))

    def pick(self, u: float) -> Role:
        """The role whose slice of [0, 1) holds ``u``."""
        if len(self.roles) == 1:
            return self.roles[0]
        i = bisect.bisect_right(self._upper, u * self._upper[-1])
        return self.roles[min(i, len(self.roles) - 1)]


def entry_shares(plan: Plan, workload: str) -> Shares:
    """The aggregated and prefill roles taking a workload's new requests, with their shares.
    The P/D part gets its decode roles' weight, split over its prefill roles by their own
    weights."""
    serve = serving(plan, workload)
    weights = dict(zip((r.id for r in serve), _weights(serve), strict=True))
    pairs = [(r, weights[r.id]) for r in serve if r.role == RoleKind.AGG]
    pd_weight = sum(weights[r.id] for r in serve if r.role == RoleKind.DECODE)
    prefill = plan.serving(workload, RoleKind.PREFILL)
    if prefill:
        split = _normalised(list(zip(prefill, _weights(prefill), strict=True)))
        pairs += [(r, pd_weight * s) for r, s in split]
    return Shares(_normalised(pairs))


def decode_shares(plan: Plan, prefill: Role) -> Shares:
    """The decode roles ``prefill``'s requests go to, with their shares: the plan's routes from
    it (by their rates when all have one), else every decode role of its workload; by the
    decode roles' weights otherwise."""
    named = [r for r in plan.routes if r.prefill == prefill.id]
    if named and all(r.rate is not None for r in named):
        return Shares(_normalised([(plan.role(r.decode), float(r.rate)) for r in named]))
    targets = (
        [plan.role(r.decode) for r in named]
        if named
        else plan.serving(prefill.workload, RoleKind.DECODE)
    )
    return Shares(_normalised(list(zip(targets, _weights(targets), strict=True))))


class Router:
    """Picks a replica of a role and a DP rank of the replica for each request (see
    ``ROUTERS``)."""

    def __init__(self, kind: str, rng: np.random.Generator) -> None:
        if kind not in ROUTERS:
            raise InputError("--router", f"unknown {kind!r}; use one of {', '.join(ROUTERS)}")
        self.kind = kind
        self.uniform = Uniforms(rng)
        self._turn: dict[object, int] = {}

    def replica(self, count: int, outstanding: Callable[[], Sequence[int]]) -> int:
        """One of ``count`` replicas; ``outstanding()`` gives their loads (read for jsq)."""
        if count == 1:
            return 0
        if self.kind == "random":
            return int(self.uniform() * count)
        return int(np.argmin(outstanding()))

    def rank(self, key: object, count: int, outstanding: Callable[[], Sequence[int]]) -> int:
        """One of ``count`` DP ranks of the replica ``key``."""
        if count == 1:
            return 0
        if self.kind == "random":
            turn = self._turn.get(key, 0)
            self._turn[key] = turn + 1
            return turn % count
        return int(np.argmin(outstanding()))
