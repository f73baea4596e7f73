"""Simulated comm sweeps, PWL tables, the link-model fit and the NCCL reference reader."""

import json

import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from aicpp_opt.costs.pwl_fit import TARGET_REL_ERR, holdout_mask, pwl_eval
from aicpp_opt.costs.series_doc import fit_block
from aicpp_opt.replay import comm_sweep
from aicpp_opt.replay.cli import calibrate_comm
from aicpp_opt.replay.topology import Dim, Topology
from calibrate import nccl_reference

TOPO = Topology((Dim("switch", 8, 450e9, 250e-9),))


def test_link_model_fit_recovers_a_known_model_from_simulated_points():
    truth = comm_sweep.LinkModel(0.7, 5e-6)
    pts = [
        (op, n, float(b), comm_sweep.collective_time(TOPO, op, n, b, model=truth))
        for op in ("all_reduce", "alltoall")
        for n in (2, 4)
        for b in (1 << 20, 1 << 24, 1 << 28)
    ]
    got = comm_sweep.fit_link_model(TOPO, pts, "test")
    assert got.efficiency == pytest.approx(0.7, rel=1e-6)
    assert got.overhead_s == pytest.approx(5e-6, rel=1e-6)


def test_mxn_pattern_is_limited_by_the_receivers_ports():
    m, n, b = 4, 2, 1e8
    t = comm_sweep.mxn_time(TOPO, m, n, b)
    assert t == pytest.approx(m * b / 450e9 + 2 * 250e-9, rel=1e-9)


@given(st.integers(1, 3), st.floats(0.3, 1.0), st.floats(0.0, 20e-6))
@settings(max_examples=15, deadline=None)
def test_swept_tables_fit_every_training_point_within_the_target(log2_gpus, eff, overhead):
    table = comm_sweep.collective_table(
        "tiny", TOPO, "alltoall", comm_sweep.LinkModel(eff, overhead), gpu_counts=(2**log2_gpus,)
    )
    assert table["fit"] == fit_block()
    (s,) = table["series"]
    x, y = np.array(s["x"], float), np.array(s["latency_ms"])
    train = ~holdout_mask(len(x))
    rel = np.abs(pwl_eval(np.array(s["pwl_x"], float), np.array(s["pwl_ms"]), x) / y - 1)
    assert rel[train].max() <= TARGET_REL_ERR * (1 + 1e-9)
    assert s["pwl_x"][0] == s["x"][0] and s["pwl_x"][-1] == s["x"][-1]
    assert table["error"]["n_heldout"] == int((~train).sum())
    assert table["error"]["max_rel_err"] == pytest.approx(rel[~train].max())


def test_collective_table_follows_the_cost_table_format():
    table = comm_sweep.collective_table(
        "tiny",
        TOPO,
        "all_reduce",
        comm_sweep.LinkModel(),
        gpu_counts=(2, 4, 16),
        sizes=(1 << 10, 1 << 14, 1 << 18, 1 << 22, 1 << 26),
    )
    assert table["op"] == "all_reduce" and table["load_axis"] == "bytes"
    assert [s["key"] for s in table["series"]] == [{"num_gpus": 2}, {"num_gpus": 4}]
    for s in table["series"]:
        assert len(s["x"]) == len(s["latency_ms"]) and set(s["pwl_x"]) <= set(s["x"])
        assert np.all(np.diff(s["latency_ms"]) > 0)
    assert table["error"]["n_heldout"] == 2  # index 2 of 5 sizes, per series


def test_nccl_reference_counts_half_elements_as_two_bytes():
    rows = nccl_reference.load("h200_sxm")
    ops = {r[0] for r in rows}
    assert ops == {"all_reduce", "all_gather", "reduce_scatter", "alltoall"}
    assert {r[1] for r in rows} == {2, 4, 8}
    assert min(r[2] for r in rows) % 2 == 0
    # bytes = 2 x elements: the largest all-reduce cannot beat 8 GPUs' NVLink at 450 GB/s
    big = max((r for r in rows if r[0] == "all_reduce" and r[1] == 8), key=lambda r: r[2])
    assert 2 * 7 / 8 * big[2] / big[3] < 2 * 450e9


def test_calibrate_comm_writes_tables_and_reports_errors(tmp_path):
    inst = tmp_path / "inst.json"
    topo = [{"kind": "switch", "size": 8, "bw_GBps": 450, "latency_ns": 250}]
    inst.write_text(
        json.dumps(
            {
                "name": "t8",
                "model": "deepseek-v3.2",
                "cluster": {
                    "pools": [{"name": "p", "system": "h200_sxm", "gpus": 8, "topology": topo}]
                },
            }
        )
    )
    res = CliRunner().invoke(calibrate_comm, [str(inst), "--out", str(tmp_path / "ct")])
    assert res.exit_code == 0, res.output
    assert "efficiency" in res.output and "alltoall" in res.output
    names = sorted(p.name for p in (tmp_path / "ct").iterdir())
    assert names == [
        "afd_mxn.json",
        "all_gather.json",
        "all_reduce.json",
        "alltoall.json",
        "reduce_scatter.json",
    ]
    table = json.loads((tmp_path / "ct" / "afd_mxn.json").read_text())
    assert table["provenance"]["link_model"]["source"].startswith("fitted on h200_sxm")
