"""The replay command path with a ReplayInput built directly, and the closed loop."""

import click
import pytest
from click.testing import CliRunner

import aicpp_opt.replay.cli as replay_cli
from aicpp_opt.cli import main
from aicpp_opt.replay.expand import AfdDecode, PrefillInput, ReplayInput
from aicpp_opt.replay.topology import Dim, Topology
from aicpp_opt.replay.verify import Prediction, Slo, closed_loop

TOPO = Topology((Dim("switch", 8, 450e9, 250e-9),))


def afd_input(t_f: float = 1e-4) -> ReplayInput:
    att, ffn = (0, 1, 2, 3), (4, 5)
    spec = AfdDecode(att, ffn, ((att, ffn),), 2, 1, 3, 1e-4, t_f, 2e5, 2e5, "direct", 1e-4)
    return ReplayInput(TOPO, spec, PrefillInput((6, 7), (0, 1), 0.05, 1e8), hbm_bw=4.8e12)


@pytest.fixture
def patched(monkeypatch):
    pred = Prediction(tpot_s=1.5e-3, ttft_s=0.2, throughput_tps=1000.0, ttft_queue_s=0.1)
    monkeypatch.setattr(replay_cli, "load_plan_input", lambda *a: (afd_input(), pred))


def test_replay_command_prints_roles_and_predicted_vs_replayed(patched, tmp_path):
    png = tmp_path / "t.png"
    res = CliRunner().invoke(
        main,
        [
            "replay",
            "inst",
            "plan.json",
            "--timeline",
            str(png),
            "--trace-dir",
            str(tmp_path / "tr"),
        ],
    )
    assert res.exit_code == 0, res.output
    for word in ("attention", "ffn", "TPOT ms", "TTFT ms", "throughput", "predicted", "replayed"):
        assert word in res.output
    assert png.read_bytes()[:4] == b"\x89PNG"
    assert len(list((tmp_path / "tr").glob("decode.*.et"))) == 8


def test_bad_astra_path_exits_2_after_the_builtin_result(patched, tmp_path):
    script = tmp_path / "astra"
    script.write_text("#!/bin/sh\necho nonsense\n")
    script.chmod(0o755)
    res = CliRunner().invoke(
        main,
        ["replay", "i", "p.json", "--astra-sim", str(script), "--trace-dir", str(tmp_path / "tr")],
    )
    assert res.exit_code == 2
    assert "TPOT ms" in res.output and "--astra-sim" in res.output
    res = CliRunner().invoke(main, ["replay", "i", "p.json", "--astra-sim", str(tmp_path / "x")])
    assert res.exit_code == 2 and "does not exist" in res.output


def test_closed_loop_resolves_until_the_replay_holds():
    seen: list[dict] = []

    def solve(corr):
        seen.append(corr)
        slow = corr["tpot"] == 1.0  # first plan: FFN slower than predicted
        inp = afd_input(t_f=4e-4 if slow else 1e-4)
        return ("plan", Prediction(tpot_s=1.0e-3, ttft_s=None, throughput_tps=1.0), inp)

    out = closed_loop(solve, Slo(tpot_s=1.5e-3), max_rounds=3)
    assert [r.holds for r in out.rounds] == [False, True]
    assert seen[1]["tpot"] == pytest.approx(out.rounds[0].comparison.replayed.tpot_s / 1.0e-3)


def test_closed_loop_is_bounded():
    def solve(corr):
        return ("plan", Prediction(1e-4, None, 1.0), afd_input(t_f=4e-4))

    assert len(closed_loop(solve, Slo(tpot_s=1e-4), max_rounds=2).rounds) == 2


def test_calibrate_comm_rejects_a_missing_instance():
    res = CliRunner().invoke(
        click.Group(commands=[replay_cli.calibrate_comm]), ["comm", "/nope.json"]
    )
    assert res.exit_code != 0 and "instance" in str(res.exception or res.output)
