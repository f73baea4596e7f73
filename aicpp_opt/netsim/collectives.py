"""Collective algorithms expanded into point-to-point flow steps.

Each function returns ``(src, dst, nbytes, deps)`` lists: step i sends ``nbytes[i]`` from
``src[i]`` to ``dst[i]`` once every step in ``deps[i]`` has been delivered. Steps without
deps start when the collective starts. ``size`` is the full buffer per rank (NCCL's message
size), so a ring all-reduce moves 2(n-1) chunks of size/n per rank.
"""

from __future__ import annotations

from aicpp_opt.errors import InputError

Steps = tuple[list[int], list[int], list[float], list[tuple[int, ...]]]


def expand(kind: str, members: tuple[int, ...], size: float, algorithm: str) -> Steps:
    """Flow steps of one collective; a single member moves nothing."""
    steps: Steps = ([], [], [], [])
    n = len(members)
    if n < 2 or size == 0:
        return steps
    if algorithm == "halving_doubling":
        if n & (n - 1):
            raise InputError(
                "replay.algorithm", f"halving_doubling needs a power-of-two group, got {n}"
            )
        if kind == "alltoall":
            raise InputError("replay.algorithm", "alltoall runs ring (pairwise) or direct")
    got: list[tuple[int, ...]] = [()] * n  # steps each member must have received first
    for phase in PHASES[kind]:
        got = _PHASES[(phase, algorithm)](steps, members, size, got)
    return steps


def ring_part(kind: str, members: tuple[int, ...], size: float, ranks: int) -> Steps:
    """The ring algorithm's steps of ``kind`` (not alltoall) over a ring of ``ranks`` ranks
    of which ``members`` are one part that the rest repeat alike (``netsim.patterns``): per
    phase, its ranks - 1 rounds of size / ranks, run round ``members``' own ring."""
    steps: Steps = ([], [], [], [])
    got: list[tuple[int, ...]] = [()] * len(members)
    for _ in PHASES[kind]:
        got = _ring(steps, members, size, got, ranks)
    return steps


PHASES = {
    "all_reduce": ("rs", "ag"),
    "reduce_scatter": ("rs",),
    "all_gather": ("ag",),
    "alltoall": ("a2a",),
}
"""The phases each collective runs: reduce-scatter, all-gather, all-to-all."""


def _add(steps: Steps, src: int, dst: int, nbytes: float, deps: tuple[int, ...]) -> int:
    steps[0].append(src)
    steps[1].append(dst)
    steps[2].append(nbytes)
    steps[3].append(deps)
    return len(steps[0]) - 1


def _ring(steps: Steps, members, size, got, ranks: int = 0):
    """ranks - 1 rounds (ranks: n, the members, unless given); in each, member i forwards
    size/ranks to i+1 after receiving from i-1."""
    n = len(members)
    ranks = ranks or n
    for _ in range(ranks - 1):
        sent = [
            _add(steps, members[i], members[(i + 1) % n], size / ranks, got[i]) for i in range(n)
        ]
        got = [(sent[(i - 1) % n],) for i in range(n)]
    return got


def _direct(steps: Steps, members, size, got):
    """Every member sends size/n to every other member at once."""
    n = len(members)
    into: list[list[int]] = [[] for _ in range(n)]
    for i in range(n):
        for j in range(n):
            if i != j:
                into[j].append(_add(steps, members[i], members[j], size / n, got[i]))
    return [tuple(x) for x in into]


def _pairwise(steps: Steps, members, size, got):
    """Ring alltoall: in round r member i sends its block for i+r, one round after another."""
    n = len(members)
    into: list[list[int]] = [[] for _ in range(n)]
    prev = got
    for r in range(1, n):
        sent = [_add(steps, members[i], members[(i + r) % n], size / n, prev[i]) for i in range(n)]
        for i in range(n):
            into[(i + r) % n].append(sent[i])
        prev = [(sent[i],) for i in range(n)]
    return [tuple(x) for x in into]


def _halving(steps: Steps, members, size, got):
    """Recursive halving reduce-scatter: partners at distance n/2, n/4, ..., halving the data."""
    return _recursive(steps, members, size, got, halving=True)


def _doubling(steps: Steps, members, size, got):
    """Recursive doubling all-gather: partners at distance 1, 2, ..., doubling the data."""
    return _recursive(steps, members, size, got, halving=False)


def _recursive(steps: Steps, members, size, got, halving: bool):
    n = len(members)
    for k in range(n.bit_length() - 1):
        dist = n >> (k + 1) if halving else 1 << k
        chunk = size / (2 << k) if halving else size / n * (1 << k)
        sent = [_add(steps, members[i], members[i ^ dist], chunk, got[i]) for i in range(n)]
        got = [(sent[i ^ dist],) for i in range(n)]
    return got


_PHASES = {
    ("rs", "ring"): _ring,
    ("ag", "ring"): _ring,
    ("rs", "direct"): _direct,
    ("ag", "direct"): _direct,
    ("rs", "halving_doubling"): _halving,
    ("ag", "halving_doubling"): _doubling,
    ("a2a", "ring"): _pairwise,
    ("a2a", "direct"): _direct,
}
