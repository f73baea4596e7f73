"""Communication source selection and routing load."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aicpp_opt.perf import build_context
from aicpp_opt.perf.comm import alpha_beta, collective, ep_exchange
from aicpp_opt.perf.routing import distinct_targets, selection_probabilities, skew_factor
from aicpp_opt.spec.instance import load_instance


def _ctx(name: str):
    inst = load_instance(name)
    return build_context(inst, inst.workloads[0]), inst.pools[0]


def test_measured_deepep_up_to_eight_nodes_alpha_beta_beyond():
    ctx, pool = _ctx("h200_hgx_9x8")
    for ep in (8, 16, 32, 64):
        for mode in ("low_latency", "normal"):
            cost = ep_exchange(ctx, pool, "dispatch", 64, ep, mode, 1.0)
            assert cost.source.startswith("h200_sxm/sglang/moe_dispatch") and f"ep={ep}," in (
                cost.source
            )
    wide = ep_exchange(ctx, pool, "dispatch", 64, 72, "low_latency", 1.0)
    assert wide.source.startswith("alpha-beta") and "50 GB/s" in wide.source
    assert collective(ctx, pool, "all_reduce", 1 << 20, 8, True).source.startswith("h200_sxm/")


def test_what_if_domain_has_no_measurement_beyond_a_node():
    ctx, pool = _ctx("h200_nvl72")
    assert collective(ctx, pool, "all_reduce", 1 << 20, 16, True).source.startswith("alpha-beta")
    ep16 = ep_exchange(ctx, pool, "combine", 64, 16, "low_latency", 1.0)
    assert ep16.source.startswith("alpha-beta")


@given(st.floats(1e3, 1e9), st.integers(2, 72))
def test_all_reduce_moves_twice_an_all_gather(nbytes, n):
    link = load_instance("h200_nvl72").pools[0].topology[0]
    ar, ag = alpha_beta("all_reduce", nbytes, n, link), alpha_beta("all_gather", nbytes, n, link)
    assert ar.seconds == pytest.approx(2 * ag.seconds)


@given(
    st.sampled_from(["balanced", "power_law_1.01", "power_law_1.2"]),
    st.sampled_from([128, 256]),
    st.sampled_from([4, 8]),
)
def test_selection_probabilities_are_capped_and_sum_to_top_k(dist, experts, top_k):
    probs = selection_probabilities(dist, experts, top_k)
    assert sum(probs) == pytest.approx(top_k) and max(probs) <= 1 + 1e-12


@given(st.integers(0, 8))
def test_skew_is_one_when_balanced_and_at_least_one_otherwise(ep_exp):
    ep = 2**ep_exp
    assert skew_factor("balanced", 256, 8, ep) == pytest.approx(1.0)
    assert skew_factor("power_law_1.01", 256, 8, ep) >= 1.0


@given(st.integers(1, 16), st.integers(1, 256))
def test_distinct_targets_between_one_and_min(top_k, groups):
    d = distinct_targets(top_k, groups)
    assert 1 - 1e-9 <= d <= min(top_k, groups) + 1e-9
