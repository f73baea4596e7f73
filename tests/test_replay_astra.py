"""AstraSim inputs read back the way AstraSim (commit c459ab6) reads them, and the runner's
error paths with small fake executables written by the test."""

import json
import math
import time
from pathlib import Path

import pytest
import yaml

from aicpp_opt.netsim.fabric import Fabric
from aicpp_opt.netsim.graph import Graph
from aicpp_opt.netsim.simulate import simulate
from aicpp_opt.netsim.topology import Dim, Topology
from aicpp_opt.replay.astra import (
    AstraSimError,
    one_comm_at_a_time,
    parse_finish,
    resolve_binary,
    run,
    write_inputs,
)

TOPO = Topology((Dim("switch", 2, 450e9, 250e-9),))
# a fake AstraSim that reports every rank it has a trace for as finished at 2.5 us
FINISH_ALL = (
    'for f in decode.*.et; do r=${f#decode.}; echo "sys[${r%.et}] finished, 2500 cycles"; done'
)


def fake(tmp_path, body: str, mode: int = 0o755):
    path = tmp_path / "astra"
    path.write_text("#!/bin/sh\n" + body + "\n")
    path.chmod(mode)
    return path


def inputs(tmp_path):
    g = Graph()
    g.transfer(0, 1, 1e6, "x", "comm")
    return g, write_inputs(g, TOPO, tmp_path / "trace")


def network(files) -> dict:
    return yaml.safe_load(files["network"].read_text())


def system(files) -> dict:
    return json.loads(files["system"].read_text())


def test_missing_or_not_executable_binary_is_an_input_error(tmp_path, monkeypatch):
    with pytest.raises(AstraSimError, match="does not exist"):
        resolve_binary(str(tmp_path / "nope"))
    with pytest.raises(AstraSimError, match="not executable"):
        resolve_binary(str(fake(tmp_path, "true", mode=0o644)))
    monkeypatch.delenv("AICPP_ASTRA_SIM", raising=False)
    assert resolve_binary(None) is None
    monkeypatch.setenv("AICPP_ASTRA_SIM", str(fake(tmp_path, "true")))
    assert resolve_binary(None) == tmp_path / "astra"


def test_successful_run_is_parsed(tmp_path):
    _, written = inputs(tmp_path)
    out = run(
        fake(tmp_path, 'echo "sys[0] finished, 2500 cycles"; echo "sys[1] finished, 3000 cycles"'),
        written,
    )
    assert out.finish_s == {0: pytest.approx(2.5e-6), 1: pytest.approx(3e-6)}
    assert out.makespan_s == pytest.approx(3e-6)


def test_failed_run_garbage_and_timeout_are_clear_errors_and_leave_builtin_intact(tmp_path):
    g, written = inputs(tmp_path)
    builtin = simulate(g, TOPO)
    before = builtin.makespan
    with pytest.raises(AstraSimError, match="exited with 3"):
        run(fake(tmp_path, "echo boom; exit 3"), written)
    with pytest.raises(AstraSimError, match="no 'sys"):
        run(fake(tmp_path, "echo garbage output"), written)
    t0 = time.monotonic()
    with pytest.raises(AstraSimError, match="did not finish within"):
        run(fake(tmp_path, "sleep 30"), written, timeout_s=0.5)
    assert time.monotonic() - t0 < 10
    assert builtin.makespan == before


def test_parse_finish_accepts_wall_time_lines():
    assert parse_finish("sys[3], Wall time: 1000\n") == {3: pytest.approx(1e-6)}


def test_a_rank_with_work_that_never_finishes_is_an_error_not_a_zero(tmp_path):
    # AstraSim exits 0 when its event queue runs dry, also with ranks stuck on a dependency
    g = Graph()
    g.transfer(0, 2, 1e6, "x", "comm")  # ranks 0 and 2 have work, rank 1 has none
    written = write_inputs(g, Topology((Dim("switch", 3, 450e9, 250e-9),)), tmp_path / "t")
    stuck = 'echo "sys[0] finished, 900 cycles"; echo "sys[1] finished, 0 cycles"'
    with pytest.raises(AstraSimError, match="1 of 2 ranks with work never finished.*rank 2"):
        run(fake(tmp_path, stuck), written)
    done = run(fake(tmp_path, stuck + '; echo "sys[2] finished, 1200 cycles"'), written)
    assert done.makespan_s == pytest.approx(1.2e-6)


def test_relative_trace_dir_and_binary_are_made_absolute(tmp_path, monkeypatch):
    # AstraSim runs inside the trace folder: every path it gets must resolve from there
    monkeypatch.chdir(tmp_path)
    check = 'for a in "$@"; do p=${a#*=}; [ -e "$p" ] || [ -e "$p.0.et" ] || exit 7; done; '
    fake(tmp_path, check + FINISH_ALL)
    g = Graph()
    g.transfer(0, 1, 1e6, "x", "comm")
    written = write_inputs(g, TOPO, Path("trace"))
    binary = resolve_binary("astra")
    assert binary.is_absolute() and written.trace_dir.is_absolute()
    assert run(binary, written).makespan_s == pytest.approx(2.5e-6)


def test_size_one_dimensions_are_left_out_and_every_gpu_keeps_its_coordinates(tmp_path):
    # AstraSim refuses a dimension of one NPU; h200_nvl72 and gb200_nvl72 end in one
    topo = Topology(
        (Dim("switch", 4, 450e9, 250e-9), Dim("switch", 1, 50e9, 2e-6), Dim("ring", 3, 50e9, 1e-6))
    )
    g = Graph()
    g.transfer(0, 11, 1e6, "x", "comm")
    net = network(write_inputs(g, topo, tmp_path).files)
    assert net["npus_count"] == [4, 3] and net["topology"] == ["Switch", "Ring"]
    sizes = net["npus_count"]
    for gpu in range(topo.num_gpus):
        # AstraSim's address (MultiDimTopology::translate_address: first dimension innermost)
        astra = [gpu // math.prod(sizes[:d]) % sizes[d] for d in range(len(sizes))]
        ours = [(gpu // s) % d.size for s, d in zip((1, 4, 4), topo.dims, strict=True)]
        assert astra == [ours[0], ours[2]]
    with pytest.raises(AstraSimError, match="one GPU"):
        write_inputs(Graph(), Topology((Dim("switch", 1, 450e9, 250e-9),)), tmp_path / "one")


def test_bandwidth_is_written_in_astrasims_gigabytes_and_latency_in_ns(tmp_path):
    # AstraSim's bw_GBps_to_Bpns multiplies by 2^30 / 1e9: its GB/s is 2^30 B/s
    topo = Topology((Dim("switch", 8, 450e9, 250e-9), Dim("fully_connected", 3, 100e9, 2e-6)))
    net = network(write_inputs(Graph(), topo, tmp_path).files)
    assert [bw * 2**30 for bw in net["bandwidth"]] == pytest.approx([450e9, 50e9])
    assert net["latency"] == pytest.approx([250, 2000])


def test_endpoint_delay_is_nonzero_and_reductions_cost_nothing(tmp_path):
    g = Graph()
    g.collective("all_reduce", range(8), 64 << 20, "ring", "ar", "tp")
    sysj = system(write_inputs(g, Topology((Dim("switch", 8, 450e9, 250e-9),)), tmp_path).files)
    # 0 aborts AstraSim on a collective over every NPU (its event queue asserts)
    assert sysj["endpoint-delay"] >= 1
    # AstraSim's PacketBundle adds three passes of bytes / local-mem-bw (floored to ns) after
    # each reduce step of a ring all-reduce (8 MiB here): none of it exposed, as in NCCL
    step = (64 << 20) / 8
    assert 3 * math.floor(step / (sysj["local-mem-bw"] * 1e9) * 1e9) == 0


def test_chosen_algorithms_reach_astrasim_or_are_stated(tmp_path):
    topo = Topology((Dim("switch", 4, 450e9, 250e-9),))
    g = Graph()
    g.collective("all_reduce", range(4), 1e6, "halving_doubling", "ar", "tp")
    g.collective("all_reduce", range(4), 1e6, "halving_doubling", "ar", "tp")
    g.collective("all_reduce", range(4), 1e6, "ring", "ar", "tp")
    g.collective("alltoall", range(4), 1e6, "ring", "a2a", "ep")
    g.collective("reduce_scatter", (0, 1), 1e6, "direct", "rs", "ep")
    g.collective("alltoall", (2, 3), 1e6, "ring", "a2a", "ep")
    written = write_inputs(g, topo, tmp_path)
    sysj = system(written.files)
    assert sysj["all-reduce-implementation"] == ["halvingDoubling"]  # the most common
    assert sysj["all-to-all-implementation"] == ["direct1"]  # pairwise: one peer at a time
    notes = " | ".join(written.notes)
    assert "1 all_reduce over all 4 GPUs chose ring" in notes
    assert "1 reduce_scatter over a subgroup chose direct" in notes
    assert "1 alltoall over a subgroup: AstraSim relays blocks around a ring" in notes


def test_multi_pool_decode_inside_one_pool_is_written_for_that_pool(tmp_path):
    a = Topology((Dim("switch", 4, 450e9, 250e-9), Dim("switch", 2, 50e9, 2e-6)))
    b = Topology((Dim("switch", 4, 900e9, 250e-9),))
    g = Graph()
    g.collective("all_reduce", (9, 10), 1e6, "ring", "ar", "tp")
    g.transfer(8, 11, 1e6, "x", "comm")
    written = write_inputs(g, Fabric((a, b)), tmp_path)
    assert network(written.files)["npus_count"] == [4]  # pool b alone
    assert sorted(p.name for p in tmp_path.glob("decode.*.et")) == [
        f"decode.{r}.et" for r in range(4)
    ]
    assert json.loads(written.files["comm_group"].read_text()) == {"1": [1, 2]}
    assert written.ranks == {0, 1, 2, 3} and "pool 2 of 2" in written.notes[0]
    out = run(fake(tmp_path, FINISH_ALL), written)
    assert set(out.finish_s) == {8, 9, 10, 11}  # back in the replay's GPU ids
    g.transfer(0, 8, 1e6, "x", "comm")
    with pytest.raises(AstraSimError, match=r"pools 1 and 2 \(instance order\)"):
        write_inputs(g, Fabric((a, b)), tmp_path / "both")


def test_transfers_across_several_dimensions_are_stated(tmp_path):
    # AstraSim's MultiDimTopology::send takes the first dimension in which the ends differ
    topo = Topology(
        (
            Dim("switch", 4, 450e9, 250e-9),
            Dim("switch", 1, 50e9, 2e-6),
            Dim("switch", 3, 50e9, 2e-6),
        )
    )
    g = Graph()
    g.transfer(0, 4, 1e6, "x", "comm")  # node 0 -> node 1, same local index: one dimension
    g.transfer(0, 5, 1e6, "x", "comm")  # different node and local index: two
    g.transfer(1, 2, 1e6, "x", "comm")  # inside a node
    notes = write_inputs(g, topo, tmp_path).notes
    assert notes == (
        "1 of 3 transfers join GPUs that differ in several dimensions: AstraSim sends each "
        "over the first dimension they differ in only (at its bandwidth and latency), the "
        "replay through every dimension (the slowest one binds)",
    )
    assert not write_inputs(g, Topology((Dim("switch", 12, 450e9, 250e-9),)), tmp_path).notes


def test_one_comm_at_a_time_chains_each_gpus_sends_and_collectives():
    # AstraSim's HardwareResource: one send or collective in flight per rank, receives aside
    g = Graph()
    a = g.transfer(0, 1, 64 << 10, "x", "comm")
    b = g.transfer(0, 2, 64 << 10, "x", "comm")
    c = g.transfer(1, 2, 64 << 10, "x", "comm")  # GPU 1 receives a: it may send meanwhile
    d = g.collective("all_reduce", (0, 1), 1 << 20, "ring", "ar", "tp")
    e = g.compute(0, 1e-6, "k", "attention")  # compute is the GPU's other resource
    ops = one_comm_at_a_time(g).ops
    assert [ops[i].deps for i in (a, b, c, d, e)] == [(), (a,), (), (b, c), ()]
    # a GPU's sends one after another: the built-in on the chained graph pays each latency
    topo = Topology((Dim("switch", 3, 450e9, 250e-9),))
    fan = Graph()
    for dst in (1, 2):
        fan.transfer(0, dst, 64 << 10, "x", "comm")
    one = simulate(fan, topo).makespan
    assert simulate(one_comm_at_a_time(fan), topo).makespan == pytest.approx(
        2 * (5e-7 + (64 << 10) / 450e9)
    )
    assert one == pytest.approx(5e-7 + 2 * (64 << 10) / 450e9)
