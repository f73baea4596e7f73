"""The replay command end to end on a shipped plan, AstraSim error paths, the closed loop."""

import json

import click
import pytest
from click.testing import CliRunner

from aicpp_opt.cli import main
from calibrate.comm import calibrate_comm

AFD_PLAN = ["replay", "instances/h200_nvl72.json", "instances/plans/nvl72_afd.json"]


def test_replay_command_on_a_shipped_plan(tmp_path):
    png = tmp_path / "t.png"
    args = [*AFD_PLAN, "--timeline", str(png), "--trace-dir", str(tmp_path / "tr")]
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 0, res.output
    for word in (
        "attention",
        "ffn",
        "TPOT mean ms",
        "prefill ms",
        "throughput",
        "evaluator",
        "replayed",
    ):
        assert word in res.output
    assert png.read_bytes()[:4] == b"\x89PNG"
    # traces cover every GPU slot of the 72-GPU topology (idle ones get empty traces)
    assert len(list((tmp_path / "tr").glob("decode.*.et"))) == 72
    res = CliRunner().invoke(main, [*AFD_PLAN, "--json"])
    got = json.loads(res.output)
    assert got["gpus_used"] == 40 and "flow-level" in got["simulator"]
    assert got["tok_s_per_user"] == pytest.approx(1e3 / got["tpot_mean_ms"])


def test_bad_astra_path_exits_2_after_the_builtin_result(tmp_path):
    script = tmp_path / "astra"
    script.write_text("#!/bin/sh\necho nonsense\n")
    script.chmod(0o755)
    res = CliRunner().invoke(
        main, [*AFD_PLAN, "--astra-sim", str(script), "--trace-dir", str(tmp_path / "tr")]
    )
    assert res.exit_code == 2
    assert "TPOT mean ms" in res.output and "--astra-sim" in res.output
    res = CliRunner().invoke(main, [*AFD_PLAN, "--astra-sim", str(tmp_path / "x")])
    assert res.exit_code == 2 and "does not exist" in res.output


def test_bad_plan_is_one_line_exit_2(tmp_path):
    bad = tmp_path / "p.json"
    bad.write_text(json.dumps({"mode": "agg", "roles": []}))
    res = CliRunner().invoke(main, ["replay", "instances/h200_nvl72.json", str(bad)])
    assert res.exit_code == 2 and "roles" in res.output


def test_calibrate_comm_rejects_a_missing_instance_and_needs_a_target():
    group = click.Group(commands=[calibrate_comm])
    res = CliRunner().invoke(group, ["comm", "--instance", "/nope.json"])
    assert res.exit_code != 0 and "instance" in str(res.exception or res.output)
    res = CliRunner().invoke(group, ["comm"])
    assert res.exit_code != 0 and "--system" in str(res.exception or res.output)


# a fake AstraSim that reports every rank it has a trace for as finished at 1.234567 ms
FINISH_ALL = (
    'for f in decode.*.et; do r=${f#decode.}; echo "sys[${r%.et}] finished, 1234567 cycles"; done'
)


@pytest.mark.parametrize("body", [FINISH_ALL, "echo nonsense"])
def test_solve_reports_astrasims_step_or_its_error(tmp_path, monkeypatch, body):
    monkeypatch.chdir(tmp_path)  # AstraSim's inputs go to ./astra_trace
    fake = tmp_path / "astra"
    fake.write_text("#!/bin/sh\n" + body + "\n")
    fake.chmod(0o755)
    out = tmp_path / "out.json"
    args = ["solve", "small_h200_16", "--astra-sim", str(fake), "--json", str(out)]
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 0, res.output
    data = json.loads(out.read_text())
    astra, warnings = data["replay"]["astra_sim"], data["warnings"]
    if body == FINISH_ALL:
        assert astra["step_ms"] == pytest.approx(1.234567)
        assert astra["builtin_step_ms"] > 0 and (tmp_path / "astra_trace").is_dir()
        assert "AstraSim" in res.output and "1.23" in res.output  # its column
        assert f"AstraSim decode step of {astra['role']}: 1.23 ms" in res.output  # the round
        assert all(f"AstraSim note: {n}" in res.output for n in astra["notes"])
        assert not [w for w in warnings if "AstraSim" in w]
    else:
        assert "no 'sys" in astra["error"]
        assert "warning: AstraSim: --astra-sim: output has no" in res.output
        assert [w for w in warnings if "AstraSim" in w]


@pytest.mark.parametrize("replay", ["--replay", "--no-replay"])
def test_solve_mode_afd_on_the_small_instance(tmp_path, replay):
    # mode afd: AFD units that prefill themselves in chunks (it used to exit 2 in the replay)
    out = tmp_path / "out.json"
    args = ["solve", "instances/small_h200_16.json", "--mode", "afd", replay, "--json", str(out)]
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 0, res.output
    data = json.loads(out.read_text())
    roles = data["plan"]["roles"]
    assert roles and all(r["role"] == "agg" and r["afd"] for r in roles)
    if replay == "--no-replay":
        assert data["replay"] is None
        assert [r["checker"] for r in data["rounds"]] == ["simulation"]
        return
    assert data["rounds"][0]["checker"] == "replay" and data["replay"]["tpot_mean_ms"] > 0
    for r in data["replay"]["roles"]:  # both kinds of iteration replayed as the AFD unit
        assert r["mixed_step_ms"] > r["step_ms"] > 0


def test_replay_rows_compare_steps_at_the_batch_they_name():
    """nvl72_pd gives no rates: the evaluator fills its decode role at the balanced flow (about
    60 sequences per GPU), the replay runs the configured 64. The step row names both, and its
    evaluator column is the op model's step at the evaluator's batch, not at the configured one
    its breakdown shows."""
    from aicpp_opt.commands.replay import _rows
    from aicpp_opt.evaluate.evaluation import evaluate_plan
    from aicpp_opt.model.context import build_context
    from aicpp_opt.model.steps import decode_step
    from aicpp_opt.replay.adapter import replay_plan
    from aicpp_opt.spec.instance import load_instance
    from aicpp_opt.spec.plan import load_plan

    inst = load_instance("h200_nvl72")
    plan = load_plan("instances/plans/nvl72_pd.json", inst)
    decode = next(r for r in plan.roles if r.id == "decode")
    report, ev = replay_plan(plan, inst), evaluate_plan(plan, inst)
    filled = next(r for r in ev.roles if r.role == "decode").filled_batch
    label, at_eval, replayed = next(
        row for row in _rows(report, ev, {r.id: 1.0 for r in plan.roles}) if "step" in row[0]
    )
    assert label == f"decode step ms at {filled:.1f}|{decode.batch_per_gpu:.1f}/GPU"
    ctx = build_context(inst, inst.workload(decode.workload), framework=plan.framework)
    assert at_eval == pytest.approx(decode_step(ctx, decode, filled).total * 1e3, rel=1e-6)
    assert replayed == pytest.approx(report.role("decode").step_s * 1e3)
