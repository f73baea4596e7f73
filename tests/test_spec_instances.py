"""Shipped instances, workload presets, SLO tiers and plan parsing."""

from pathlib import Path

import pytest

from aicpp_opt import PROJECT_ROOT
from aicpp_opt.spec.instance import load_instance
from aicpp_opt.spec.plan import load_plan
from aicpp_opt.spec.workload import PRESETS, SLO_TIERS, parse_workload

INSTANCES = sorted(p.stem for p in (PROJECT_ROOT / "instances").glob("*.json"))
CORPUS = Path(__file__).parent / "bad_inputs"


@pytest.mark.parametrize("name", INSTANCES)
def test_shipped_instances_load(name):
    inst = load_instance(name)
    assert inst.workloads and inst.pools
    assert all(p.gpus <= p.domain_size * p.num_domains for p in inst.pools)


def test_default_instance_is_one_72_gpu_nvlink_domain():
    inst = load_instance("h200_nvl72")
    (pool,) = inst.pools
    assert (pool.system, pool.gpus, pool.domain_size, pool.topology[0].bw) == (
        "h200_sxm",
        72,
        72,
        450e9,
    )
    assert pool.link(False).bw == 50e9
    assert {w.name for w in inst.workloads} >= {
        "chat-relaxed",
        "coding-strict",
        "agentic-coding-relaxed",
    }


def test_hgx_instance_has_nine_domains():
    pool = load_instance("h200_hgx_9x8").pools[0]
    assert (pool.domain_size, pool.num_domains) == (8, 9)


def test_presets_and_tiers():
    agentic = parse_workload({"preset": "agentic-coding", "slo": "strict"})
    assert agentic.prefix_reuse >= 0.75 and agentic.isl == PRESETS["agentic-coding"]["isl"]
    assert agentic.slo == SLO_TIERS["strict"]
    assert agentic.new_prompt_tokens == pytest.approx(agentic.isl * (1 - agentic.prefix_reuse))


def test_instance_overrides_slo():
    wl = parse_workload({"preset": "chat", "slo": "interactive", "tpot_ms": 30})
    assert wl.slo.tpot == pytest.approx(0.030) and wl.slo.ttft == SLO_TIERS["interactive"].ttft


def test_good_plans_parse():
    inst = load_instance("small_h200_16")
    plan = load_plan(CORPUS / "good_afd_plan.json", inst, num_experts=256)
    decode = plan.role("decode")
    assert decode.gpus_per_replica == 8 and decode.micro_batches == 2
    for name in ("nvl72_pd", "nvl72_afd", "nvl72_agg"):
        load_plan(
            PROJECT_ROOT / "instances" / "plans" / f"{name}.json", load_instance("h200_nvl72"), 256
        )
