"""The optimiser's commands end to end on the small shipped instance, and their input errors:
one line naming the option, exit code 2."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from aicpp_opt.cli import main
from aicpp_opt.opt import milp
from aicpp_opt.perf.evaluate import evaluate_plan
from aicpp_opt.report.summary import HEADLINE_KEYS
from aicpp_opt.spec.instance import load_instance
from aicpp_opt.spec.plan import load_plan

SMALL = "instances/small_h200_16.json"


def run(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def test_solve_writes_a_plan_the_evaluator_accepts(tmp_path):
    out = tmp_path / "plan.json"
    result = run("solve", SMALL, "--no-replay", "--json", str(out))
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text())
    assert set(data) >= {"plan", "predicted", "evaluated", "solver", "replay"}
    for side in ("predicted", "evaluated"):
        assert set(data[side]) == set(HEADLINE_KEYS)
    assert set(data["solver"]) >= {"status", "gap", "seconds", "n_vars", "n_constraints"}
    assert data["solver"]["gap"] <= 1e-6
    plan_file = tmp_path / "only_plan.json"
    plan_file.write_text(json.dumps(data["plan"]))
    inst = load_instance(SMALL)
    ev = evaluate_plan(load_plan(plan_file, inst), inst)
    assert ev.flow.output_tps == pytest.approx(data["evaluated"]["throughput_tok_s"], rel=1e-6)
    assert ev.feasible
    evaluated = run("evaluate", SMALL, str(plan_file))
    assert evaluated.exit_code == 0, evaluated.output


@pytest.mark.parametrize(
    ("args", "field"),
    [
        (("--budget", "0"), "--budget"),
        (("--mode", "hybrid"), "--mode"),
        (("--workload", "coding-strict"), "--workload"),
        (("--objective", "latency"), "--objective"),
        (("--objective", "per-dollar"), "cost_per_gpu_hour"),
        (("--method", "sweep"), "--method"),
        (("--gap", "2"), "--gap"),
        (("--time-limit", "0"), "--time-limit"),
    ],
)
def test_solve_bad_input_is_one_line_exit_2(args, field):
    result = CliRunner().invoke(main, ["solve", SMALL, "--no-replay", *args])
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and field in lines[0], result.output


def test_infeasible_slo_is_explained_with_the_closest_numbers():
    result = CliRunner().invoke(main, ["solve", "instances/h200_nvl72.json", "-w", "chat-strict"])
    assert result.exit_code == 3
    assert "no plan reaches TPOT 10 ms; the fastest" in result.output
    assert "ms at batch 1 with" in result.output


def test_time_out_returns_the_best_plan_found_with_its_gap(monkeypatch):
    """HiGHS stopping at its time limit with an incumbent (simulated: the real solve's answer
    reported as time-limited, gap 3 %) yields that plan, its gap and a warning."""
    real = milp._solve_once

    def timed_out(m, time_limit, rel_gap):
        real(m, time_limit, rel_gap)
        return "maxTimeLimit", False, 0.03

    monkeypatch.setattr(milp, "_solve_once", timed_out)
    result = run("solve", SMALL, "--no-replay")
    assert result.exit_code == 0, result.output
    assert "maxTimeLimit" in result.output and "gap 3.00%" in result.output
    assert "warning" in result.output


def test_time_out_without_any_plan_is_a_one_line_error(monkeypatch):
    def nothing(m, time_limit, rel_gap):
        raise milp.TimeLimitError(f"no plan found within the time limit of {time_limit:g} s")

    monkeypatch.setattr(milp, "_solve_once", nothing)
    result = CliRunner().invoke(main, ["solve", SMALL, "--no-replay"])
    assert result.exit_code == 2
    assert "--time-limit" in result.output
