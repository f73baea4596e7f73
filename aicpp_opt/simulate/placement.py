"""Which NVLink domains each replica of a role sits in: replicas take the role's placement in
order (replica 0 the first GPUs of the first entry, and so on)."""

from __future__ import annotations

from aicpp_opt.spec.plan import Role

Domains = frozenset[tuple[str, int]]


def replica_domains(role: Role) -> list[Domains]:
    """The (pool, domain) pairs of each replica's GPUs."""
    per = role.gpus_per_replica
    slots = [(p.pool, p.domain) for p in role.placement for _ in range(p.gpus)]
    return [frozenset(slots[i * per : (i + 1) * per]) for i in range(role.replicas)]


def link_domains(a: Domains, b: Domains) -> int:
    """1 when two replicas share one NVLink domain (their traffic stays on NVLink), else 2."""
    return 1 if len(a | b) == 1 else 2
