"""AstraSim runner error paths, with small fake executables written by the test."""

import time

import pytest

from aicpp_opt.netsim.graph import Graph
from aicpp_opt.netsim.simulate import simulate
from aicpp_opt.netsim.topology import Dim, Topology
from aicpp_opt.replay.astra import AstraSimError, parse_finish, resolve_binary, run, write_inputs

TOPO = Topology((Dim("switch", 2, 450e9, 250e-9),))


def fake(tmp_path, body: str, mode: int = 0o755):
    path = tmp_path / "astra"
    path.write_text("#!/bin/sh\n" + body + "\n")
    path.chmod(mode)
    return path


def inputs(tmp_path):
    g = Graph()
    g.transfer(0, 1, 1e6, "x", "comm")
    return g, write_inputs(g, TOPO, tmp_path / "trace", local_mem_bw=4.8e12)


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
    _, files = inputs(tmp_path)
    out = run(
        fake(tmp_path, 'echo "sys[0] finished, 2500 cycles"; echo "sys[1] finished, 3000 cycles"'),
        files,
    )
    assert out.finish_s == {0: pytest.approx(2.5e-6), 1: pytest.approx(3e-6)}


def test_failed_run_garbage_and_timeout_are_clear_errors_and_leave_builtin_intact(tmp_path):
    g, files = inputs(tmp_path)
    builtin = simulate(g, TOPO)
    before = builtin.makespan
    with pytest.raises(AstraSimError, match="exited with 3"):
        run(fake(tmp_path, "echo boom; exit 3"), files)
    with pytest.raises(AstraSimError, match="no 'sys"):
        run(fake(tmp_path, "echo garbage output"), files)
    t0 = time.monotonic()
    with pytest.raises(AstraSimError, match="did not finish within"):
        run(fake(tmp_path, "sleep 30"), files, timeout_s=0.5)
    assert time.monotonic() - t0 < 10
    assert builtin.makespan == before


def test_parse_finish_accepts_wall_time_lines():
    assert parse_finish("sys[3], Wall time: 1000\n") == {3: pytest.approx(1e-6)}
