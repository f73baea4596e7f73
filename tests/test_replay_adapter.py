"""The replay on real plans: GPUs from the placement, compute from the op model (not the
evaluation), bytes counted from the model's dimensions and the routing, the KV transfer, a
heterogeneous two-pool instance, and the fabric's routes."""

from dataclasses import replace

import numpy as np
import pytest
from forwards import afd_forward

from aicpp_opt.evaluate import evaluate
from aicpp_opt.model.context import build_context
from aicpp_opt.model.forward import forward
from aicpp_opt.model.memory import kv_bytes_per_token
from aicpp_opt.model.routing import parse_routing, rank_shares
from aicpp_opt.model.steps import decode_load
from aicpp_opt.netsim.fabric import Fabric
from aicpp_opt.netsim.graph import Graph
from aicpp_opt.netsim.simulate import simulate
from aicpp_opt.netsim.topology import Dim, Topology
from aicpp_opt.replay.adapter import gpu_ids, replay_plan
from aicpp_opt.replay.build import ReplicaGpus, forward_graph
from aicpp_opt.spec.instance import load_instance
from aicpp_opt.spec.model import load_model
from aicpp_opt.spec.plan import load_plan, parse_plan

MODEL = load_model("deepseek-v3.2")
NVL72 = load_instance("h200_nvl72")
HETERO = load_instance("hetero_h200_b200")
H = MODEL.hidden_size
FP8_TOKEN, BF16_TOKEN = H * (1 + 4 / 128), 2 * H


def shipped(name: str):
    plan = load_plan(f"instances/plans/nvl72_{name}.json", NVL72, MODEL.moe.num_experts)
    return plan, NVL72.workload(None)


def bytes_into(graph: Graph, category: str) -> dict[int, float]:
    into: dict[int, float] = {}
    for o in graph.ops:
        if o.category == category:
            into[o.gpus[1]] = into.get(o.gpus[1], 0.0) + o.nbytes
    return into


@pytest.fixture(scope="module")
def afd():
    plan, wl = shipped("afd")
    return plan, wl, replay_plan(plan, NVL72, wl)


def test_afd_plan_uses_its_gpus_layers_and_micro_batches(afd):
    plan, _, rep = afd
    # the prefill role (2 x 8 GPUs) comes first in domain 0, then the AFD unit
    assert gpu_ids(plan, NVL72)["decode"] == {"h200": list(range(16, 40))}
    g = rep.result.graph
    a2f = [o for o in g.ops if o.category == "a2f"]
    assert {(o.layer, o.micro_batch) for o in a2f} == {
        (layer, mb) for layer in range(3, 61) for mb in range(2)
    }
    assert {(o.gpus[0], o.gpus[1]) for o in a2f} == {
        (a, f) for a in range(16, 32) for f in range(32, 40)
    }


def test_afd_compute_comes_from_the_op_model_not_the_evaluation(afd):
    plan, wl, rep = afd
    role = plan.roles[1]
    ctx = build_context(NVL72, wl)
    fwd = forward(ctx, role, decode_load(ctx, role, role.batch_per_gpu))
    for side, gpu in (("attention", 16), ("ffn", 32)):
        want = sum(
            b.count * role.micro_batches * op.seconds
            for b in fwd.blocks
            for op in b.ops
            if op.transfer is None and op.side == side
        ) + role.micro_batches * sum(op.seconds for op in fwd.step_ops if op.side == side)
        got = sum(
            o.seconds for o in rep.result.graph.ops if o.kind == "compute" and o.gpus == (gpu,)
        )
        assert got == pytest.approx(want, rel=1e-9)


def test_afd_bytes_follow_the_model_dimensions_and_the_routing(afd):
    """Each attention GPU's micro-batch (96 sequences) goes once to each distinct FFN GPU of its
    tokens' experts (fp8 with scales out, bf16 back), spread over the 8 FFN GPUs in their
    routing shares, the busiest first."""
    plan, _, rep = afd
    role = plan.roles[1]
    g = rep.result.graph
    copies = 8 * (1 - (1 - 1 / 8) ** 8)  # distinct EP-8 ranks of a token's top-8 experts
    tokens = role.batch_per_gpu / role.micro_batches
    per_edge_layer = tokens * copies * 16 * 2 * 58  # 16 senders, 2 micro-batches, 58 MoE layers
    into = bytes_into(g, "a2f")
    assert sum(into.values()) == pytest.approx(per_edge_layer * FP8_TOKEN, rel=1e-9)
    assert sum(bytes_into(g, "f2a").values()) == pytest.approx(per_edge_layer * BF16_TOKEN)
    skew = parse_routing("eplb").skew(16 * tokens, 256, 8, 8)
    shares = np.array([into[f] for f in range(32, 40)]) / sum(into.values())
    assert shares == pytest.approx(rank_shares(skew, 8))


def test_pd_plan_ep_groups_bytes_and_kv():
    plan, wl = shipped("pd")
    rep = replay_plan(plan, NVL72, wl)
    g = rep.result.graph
    disp = [o for o in g.ops if o.category == "ep_dispatch"]
    assert len(disp) == 58 * 32 * 31
    assert {o.gpus[0] for o in disp} == set(range(32, 64))  # after 4 prefill replicas of 8
    # every GPU sends 64 tokens x 8 expert copies x fp8 bytes, its own experts' share stays home
    assert sum(o.nbytes for o in disp) == pytest.approx(58 * 32 * 64 * 8 * FP8_TOKEN * 31 / 32)
    kv = MODEL.num_layers * kv_bytes_per_token(MODEL) * wl.isl
    assert rep.kv_transfer_s > 0 and rep.prefill_s > 0
    ev = evaluate(plan, NVL72, wl)
    assert rep.prefill_s == pytest.approx(ev.ttft.prefill, rel=0.2)
    assert kv > 0


def test_agg_plan_replays_both_kinds_of_iteration():
    plan, wl = shipped("agg")
    rep = replay_plan(plan, NVL72, wl)
    assert rep.result.roles["gpu"].gpus == 8
    assert {o.layer for o in rep.result.graph.ops} == set(range(61)) | {-1}
    assert rep.mixed_step_s > rep.result.step_s
    d = rep.to_dict()
    assert d["gpus_used"] == 64 and d["tpot_mean_ms"] == pytest.approx(rep.tpot_s * 1e3)


@pytest.mark.parametrize("share", [0.5, 0.7])
def test_agg_role_replays_at_the_batch_its_rate_fills(share):
    """nvl72_agg serving coding-relaxed at half and 70% of the rate that fills its six seats
    per GPU: the replay's mean TPOT, from its own simulated iterations, is the evaluator's at
    the fill that rate reaches within 10% (at the seats it is about twice that at half)."""
    plan, _ = shipped("agg")
    coding = tuple(replace(r, workload="coding-relaxed", rate=None) for r in plan.roles)
    full = evaluate(replace(plan, roles=coding), NVL72).roles[0].capacity
    at = replace(plan, roles=tuple(replace(r, rate=share * full) for r in coding))
    role = evaluate(at, NVL72).roles[0]
    assert role.filled_batch < 0.6 * plan.roles[0].batch_per_gpu
    assert replay_plan(at, NVL72).role(role.role).tpot_s == pytest.approx(role.tpot.mean, rel=0.1)


HETERO_AFD = {
    "mode": "afd+pd",
    "roles": [
        {
            "role": "prefill",
            "pool": "b200",
            "replicas": 1,
            "placement": [{"pool": "b200", "domain": 1, "gpus": 8}],
            "shape": {"attn_tp": 1, "attn_dp": 8, "moe_tp": 1, "moe_ep": 8},
            "batch": 1,
            "chunk_tokens": 8192,
        },
        {
            "role": "decode",
            "pool": "h200",
            "replicas": 1,
            "placement": [
                {"pool": "h200", "domain": 0, "gpus": 8},
                {"pool": "b200", "domain": 0, "gpus": 8},
            ],
            "shape": {"attn_tp": 1, "attn_dp": 8, "moe_tp": 1, "moe_ep": 8},
            "batch_per_gpu": 32,
            "micro_batches": 2,
            "afd": {
                "attention_gpus": 8,
                "ffn_gpus": 8,
                "ffn_pool": "b200",
                "dispatch": "direct",
                "pairing": [{"attention": list(range(8)), "ffn": list(range(8))}],
            },
        },
    ],
}


def test_heterogeneous_afd_crosses_the_pools_over_scale_out(tmp_path):
    plan = parse_plan(HETERO_AFD, HETERO, MODEL.moe.num_experts)
    wl = HETERO.workload(None)
    assert gpu_ids(plan, HETERO)["decode"] == {"h200": list(range(8)), "b200": list(range(32, 40))}
    rep = replay_plan(plan, HETERO, wl, trace_dir=str(tmp_path))
    # the decode step spans both pools, AstraSim's network file holds one: reported with the
    # pools named, the built-in result stands
    assert "runs on GPUs of pools 1 and 2" in str(rep.astra) and rep.tpot_s > 0
    assert rep.to_dict()["astra_sim"] == {"error": str(rep.astra)}
    res = rep.result
    a2f = [i for i, o in enumerate(res.graph.ops) if o.category == "a2f"]
    # one lone A->F flow would take latency + bytes / 50 GB/s (the H200 NIC); 8 share it
    lone = 2e-6 + 2e-6 + res.graph.ops[a2f[0]].nbytes / 50e9
    assert min(res.sim.op_end[a2f] - res.sim.op_start[a2f]) >= lone * (1 - 1e-9)
    assert rep.prefill_s > 0 and rep.kv_transfer_s > 0


def test_fabric_routes_like_each_pool_inside_and_over_nics_between():
    a = Topology((Dim("switch", 4, 400e9, 1e-7), Dim("switch", 2, 40e9, 1e-6)))
    b = Topology((Dim("switch", 4, 800e9, 1e-7), Dim("switch", 2, 100e9, 3e-6)))
    fab = Fabric((a, b))
    src, dst = np.array([0, 1]), np.array([5, 2])
    inside, lat = fab.routes(src, dst)
    ref, ref_lat = a.routes(src, dst)
    assert np.array_equal(
        np.where(
            inside[:, : ref.shape[1]] == fab.num_links, a.num_links, inside[:, : ref.shape[1]]
        ),
        ref,
    )
    assert np.allclose(lat, ref_lat)
    g = Graph()
    for s in (0, 1, 2):  # three pool-a GPUs into one pool-b GPU: its 100 GB/s NIC is shared
        g.transfer(s, 8, 1e8, "x", "x")
    end = simulate(g, fab).op_end
    assert end == pytest.approx([1e-6 + 3e-6 + 1e8 / (100e9 / 3)] * 3)
    g = Graph()
    g.transfer(0, 8, 1e8, "x", "x")
    assert simulate(g, fab).makespan == pytest.approx(4e-6 + 1e8 / 40e9)


@pytest.mark.parametrize("shared", [False, True])
def test_allgather_reducescatter_runs_once_per_ffn_set_over_all_its_senders(shared):
    # two attention groups of 4, each with its own pair of FFN GPUs or both on one set of 4:
    # a shared set gathers the tokens of all 8 once (it ran once per attention group, 4 each)
    att, ffn = tuple(range(8)), tuple(range(8, 12))
    sets = (ffn, ffn) if shared else (ffn[:2], ffn[2:])
    gpus = ReplicaGpus(att, ffn, ((att[:4], sets[0]), (att[4:], sets[1])))
    fwd, shape = afd_forward(k=2, moe_layers=3, m=8, n=4, a2f=1e4, f2a=1e4)
    graph, _, _ = forward_graph(fwd, gpus, shape, "allgather_reducescatter")
    for kind in ("all_gather", "reduce_scatter"):
        ops = [o for o in graph.ops if o.collective == kind]
        assert sorted(o.gpus for o in ops) == sorted([*set(sets)] * (3 * 2))
        assert all(o.nbytes == pytest.approx(1e4 * (8 if shared else 4)) for o in ops)
    a2f = [o for o in graph.ops if o.kind == "transfer" and o.gpus[0] in att]
    assert len(a2f) == len(att) * 3 * 2  # each attention GPU sends to one FFN GPU of its set
