"""Plan expansion: the graphs' structure, the dependencies serving engines have, and the
AFD pipeline against its serial and overlapped bounds."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aicpp_opt.errors import InputError
from aicpp_opt.replay.expand import (
    AfdDecode,
    GroupCollective,
    InstanceDecode,
    PrefillInput,
    ReplayInput,
    decode_graph,
)
from aicpp_opt.replay.run import replay
from aicpp_opt.replay.topology import Dim, Topology

BW, LAT = 450e9, 250e-9
TOPO = Topology((Dim("switch", 8, BW, LAT),))


def afd(k=2, t_a=1e-4, t_f=1e-4, a2f=0.0, f2a=0.0, dispatch="direct", layers=4, dense=0):
    att, ffn = (0, 1, 2, 3), (4, 5)
    pairing = (((0, 1), (4,)), ((2, 3), (5,)))
    return AfdDecode(att, ffn, pairing, k, dense, layers, t_a, t_f, a2f, f2a, dispatch, 2e-4)


def test_afd_graph_covers_every_layer_micro_batch_and_edge():
    spec = afd(k=3, layers=5, dense=2)
    g = decode_graph(spec)
    computes = [o for o in g.ops if o.kind == "compute"]
    a2f = [o for o in g.ops if o.category == "a2f"]
    f2a = [o for o in g.ops if o.category == "f2a"]
    edges = sum(len(a) * len(f) for a, f in spec.pairing)
    assert len(a2f) == len(f2a) == edges * 3 * 5
    assert len(computes) == 3 * (7 * 4 + 5 * 2)
    assert {(o.layer, o.micro_batch) for o in a2f} == {
        (layer, m) for layer in range(2, 7) for m in range(3)
    }


def test_next_attention_waits_for_its_own_combine():
    g = decode_graph(afd(k=2, layers=2))
    ops = g.ops
    attn_l1 = [i for i, o in enumerate(ops) if o.label == "attn L1" and o.gpus == (0,)]
    for i in attn_l1:
        mb = ops[i].micro_batch
        assert {ops[d].category for d in ops[i].deps} == {"f2a"}
        assert all(ops[d].micro_batch == mb and ops[d].layer == 0 for d in ops[i].deps)


def test_single_micro_batch_on_one_pair_is_the_serial_sum():
    att, ffn = (0,), (1,)
    a2f, f2a, t_a, t_f, layers = 1e6, 2e6, 1e-4, 3e-4, 6
    spec = AfdDecode(att, ffn, ((att, ffn),), 1, 0, layers, t_a, t_f, a2f, f2a)
    got = replay(ReplayInput(TOPO, spec)).tpot_s
    per_layer = t_a + t_f + (a2f + f2a) / BW + 2 * 2 * LAT
    assert got == pytest.approx(layers * per_layer, rel=1e-9)


@given(st.integers(1, 3), st.floats(1e-5, 1e-3), st.floats(1e-5, 1e-3), st.floats(0, 5e7))
@settings(max_examples=25, deadline=None)
def test_afd_step_lies_between_overlapped_and_serial_bounds(k, t_a, t_f, nbytes):
    layers = 4
    spec = afd(k=k, t_a=t_a, t_f=t_f, a2f=nbytes, f2a=nbytes, layers=layers)
    got = replay(ReplayInput(TOPO, spec)).tpot_s
    lower = layers * max(k * t_a, k * t_f)
    xfer = 2 * (2 * nbytes / BW + 2 * LAT)  # a send plus the one-link-shared second send
    upper = layers * k * (t_a + t_f + 2 * xfer) + 1e-12
    assert lower * (1 - 1e-9) <= got <= upper


def test_ping_pong_hides_the_ffn_behind_the_other_micro_batch():
    t = 1e-4
    serial = replay(ReplayInput(TOPO, afd(k=1, t_a=t, t_f=t, layers=8))).tpot_s
    overlapped = replay(ReplayInput(TOPO, afd(k=2, t_a=t / 2, t_f=t / 2, layers=8))).tpot_s
    assert serial == pytest.approx(8 * (2 * t + 2 * 2 * LAT))  # empty sends still pay latency
    assert overlapped < 0.6 * serial


def test_all_to_all_waits_for_the_whole_exchange_and_allgather_runs_collectives():
    ops = decode_graph(afd(dispatch="all_to_all", layers=1)).ops
    ffn = [o for o in ops if o.category == "ffn"]
    assert all(len(o.deps) == 2 for o in ffn)  # every A->F edge into its FFN set
    ops = decode_graph(afd(dispatch="allgather_reducescatter", layers=1)).ops
    assert sum(o.category == "a2f" for o in ops) == 4 * 2  # one home FFN GPU per A GPU and mb
    assert not any(o.kind == "collective" for o in ops)  # one FFN GPU per group: nothing to gather
    att, ffn2 = (0, 1), (2, 3)
    spec = AfdDecode(
        att, ffn2, ((att, ffn2),), 1, 0, 1, 1e-5, 1e-5, 1e5, 1e5, "allgather_reducescatter"
    )
    kinds = [o.collective for o in decode_graph(spec).ops if o.kind == "collective"]
    assert kinds == ["all_gather", "reduce_scatter"]


def test_instance_decode_has_tp_and_ep_per_layer():
    spec = InstanceDecode(
        (0, 1, 2, 3),
        1,
        2,
        1e-4,
        1e-4,
        2e-4,
        tp=GroupCollective(((0, 1), (2, 3)), 1e6),
        ep_groups=((0, 1, 2, 3),),
        ep_dispatch_bytes=4e5,
        ep_combine_bytes=8e5,
        ep_shares=(0.4, 0.3, 0.2, 0.1),
    )
    ops = decode_graph(spec).ops
    cats = [o.category for o in ops if o.kind == "collective"]
    assert cats.count("tp") == 2 + 2 * 2 + 2  # dense: after attention and MLP; MoE: attention
    sends = {c: [o for o in ops if o.category == c] for c in ("ep_dispatch", "ep_combine")}
    assert len(sends["ep_dispatch"]) == len(sends["ep_combine"]) == 2 * 4 * 3
    # every GPU sends its share to member j: bytes into member 0 = 3 senders x 0.4 x 4e5
    into0 = sum(o.nbytes for o in sends["ep_dispatch"] if o.gpus[1] == 0 and o.layer == 1)
    assert into0 == pytest.approx(3 * 0.4 * 4e5)
    out_of0 = sum(o.nbytes for o in sends["ep_combine"] if o.gpus[0] == 0 and o.layer == 1)
    assert out_of0 == pytest.approx(3 * 0.4 * 8e5)
    res = replay(ReplayInput(TOPO, spec))
    assert res.tpot_s > 3 * 1e-4 + 1e-4 + 2 * 2e-4
    assert set(res.roles) == {"decode"}


def test_prefill_reports_compute_and_kv_transfer():
    pre = PrefillInput((0, 1), (4, 5), 2e-2, 4e8, requests=2)
    res = replay(ReplayInput(TOPO, afd(layers=1), pre))
    assert res.prefill_s == pytest.approx(2e-2)
    assert res.kv_transfer_s == pytest.approx(4e8 / BW + 2 * LAT)
    assert res.ttft_s == pytest.approx(res.prefill_s + res.kv_transfer_s)


def test_bad_afd_input_names_the_field():
    with pytest.raises(InputError, match="dispatch"):
        decode_graph(afd(dispatch="broadcast"))
    with pytest.raises(InputError, match="pairing"):
        decode_graph(AfdDecode((0, 1), (2,), (((0,), (2,)),), 1, 0, 1, 1e-5, 1e-5, 1.0, 1.0))
    with pytest.raises(InputError, match="micro_batches"):
        decode_graph(afd(k=0))
