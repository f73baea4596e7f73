"""The MILP's packing rows are exact: a multiset of blocks (powers of two below a domain, or
whole domains) satisfies them exactly when a brute-force search packs it into the pool's
domains without straddling one, and then the plan builder's placer packs it too."""

from __future__ import annotations

from functools import cache

from hypothesis import given, settings
from hypothesis import strategies as st

from aicpp_opt.search.build import _place_pool
from aicpp_opt.search.formulation import packing_rows
from aicpp_opt.spec.instance import Dimension, Pool


def pool_of(domain: int, domains: int) -> Pool:
    dims = (Dimension("switch", domain, 450e9, 0.0), Dimension("switch", domains, 50e9, 0.0))
    return Pool("p", "h200_sxm", domain * domains, dims)


def brute_force_packs(domain: int, domains: int, blocks: tuple[int, ...]) -> bool:
    """Depth-first: whole-domain blocks take free domains, the others go to any domain with
    room (memoised on the sorted free space)."""
    whole = sum(b // domain for b in blocks if b >= domain)
    if whole > domains:
        return False
    small = tuple(sorted((b for b in blocks if b < domain), reverse=True))

    @cache
    def fit(i: int, free: tuple[int, ...]) -> bool:
        if i == len(small):
            return True
        tried = set()
        for j, room in enumerate(free):
            if room >= small[i] and room not in tried:
                tried.add(room)
                nxt = tuple(sorted(free[:j] + (room - small[i],) + free[j + 1 :]))
                if fit(i + 1, nxt):
                    return True
        return False

    return fit(0, tuple([domain] * (domains - whole)))


def rows_hold(pool: Pool, blocks: tuple[int, ...]) -> bool:
    counts = {s: blocks.count(s) for s in set(blocks)}
    return all(
        sum(c * counts[s] for s, c in coef.items()) <= rhs
        for coef, rhs in packing_rows(pool, set(counts))
    )


@st.composite
def cases(draw):
    domain = draw(st.sampled_from((4, 8, 72)))
    domains = draw(st.integers(2, 4))
    sizes = [2**i for i in range(7) if 2**i < domain] + [domain * k for k in (1, 2)]
    blocks = draw(st.lists(st.sampled_from(sizes), max_size=9))
    return domain, domains, tuple(blocks)


@settings(max_examples=300, deadline=None)
@given(cases())
def test_packing_rows_hold_exactly_when_the_blocks_pack(case):
    domain, domains, blocks = case
    pool = pool_of(domain, domains)
    fits = brute_force_packs(domain, domains, blocks)
    assert rows_hold(pool, blocks) == fits
    if fits:
        placed = _place_pool(pool, [(str(i), b) for i, b in enumerate(blocks)])
        per_domain: dict[int, int] = {}
        for places in placed.values():
            for p in places:
                per_domain[p.domain] = per_domain.get(p.domain, 0) + p.gpus
        assert sum(per_domain.values()) == sum(blocks)
        assert all(g <= domain for g in per_domain.values())


def test_a_hand_worked_case_of_72_gpu_domains():
    """Two 72-GPU domains: two 64-GPU blocks leave 8 + 8, so a 16-GPU block does not fit
    although 144 - 128 = 16 GPUs are free; two 8-GPU blocks do."""
    pool = pool_of(72, 2)
    assert not rows_hold(pool, (64, 64, 16))
    assert rows_hold(pool, (64, 64, 8, 8))
    assert not brute_force_packs(72, 2, (64, 64, 16))
