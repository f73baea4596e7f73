"""The optimiser's commands end to end on the small shipped instance, and their input errors:
one line naming the option, exit code 2."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from aicpp_opt import PROJECT_ROOT
from aicpp_opt.cli import main
from aicpp_opt.opt import milp
from aicpp_opt.perf.evaluate import evaluate_plan
from aicpp_opt.report.compare import only_feasible
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
    assert set(data) >= {"instance", "plan", "predicted", "evaluated", "solver", "replay"}
    assert data["instance"] == str(PROJECT_ROOT / SMALL)  # export reads the plan's instance here
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


def test_frontier_writes_csv_json_and_png(tmp_path):
    result = run(
        "frontier",
        SMALL,
        "--budgets",
        "8,16",
        "--modes",
        "agg,pd",
        "--tpots",
        "50",
        "--out",
        str(tmp_path),
    )
    assert result.exit_code == 0, result.output
    rows = json.loads((tmp_path / "frontier.json").read_text())
    budget_rows = [r for r in rows if r["kind"] == "budget"]
    assert {(r["mode"], r["budget"]) for r in budget_rows} == {
        (m, b) for m in ("agg", "pd") for b in (8, 16)
    }
    feasible = [r for r in budget_rows if r["feasible"]]
    assert feasible and all(r["gpus_used"] <= r["budget"] for r in feasible)
    by = {(r["mode"], r["budget"]): r for r in feasible}
    for mode in ("agg", "pd"):  # more GPUs never lowers the best throughput
        if (mode, 8) in by and (mode, 16) in by:
            assert by[(mode, 16)]["throughput_tok_s"] >= by[(mode, 8)]["throughput_tok_s"]
    assert (tmp_path / "frontier.csv").read_text().startswith("kind,mode,budget")
    assert (tmp_path / "frontier.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize(
    ("args", "field"),
    [
        (("--budgets", "8,x"), "--budgets"),
        (("--budgets", "0"), "--budgets"),
        (("--budgets", "8", "--modes", "afd2"), "--modes"),
        (("--budgets", "8", "--tpots", "-1"), "--tpots"),
    ],
)
def test_frontier_bad_input(args, field):
    result = CliRunner().invoke(main, ["frontier", SMALL, *args])
    assert result.exit_code == 2 and field in result.output


def test_compare_lists_every_workload_tier_and_mode(tmp_path):
    out = tmp_path / "compare.json"
    result = run("compare", SMALL, "--json", str(out))
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text())
    names = {r["workload"] for r in data["plans"]}
    assert names == {
        f"{w}-{t}" for w in ("chat", "coding") for t in ("relaxed", "interactive", "strict")
    }
    assert {r["mode"] for r in data["plans"]} == {"agg", "pd", "afd", "afd+pd"}
    for r in data["plans"]:
        assert r["feasible"] or r["reason"].startswith("no ")
    tier_tpot = {"relaxed": 50.0, "interactive": 20.0, "strict": 10.0}
    for r in data["plans"]:
        base, tier = r["workload"].rsplit("-", 1)
        tightest = data["tightest_tpot_ms"][base][r["mode"]]
        # a mode has a plan at a tier exactly when its tightest TPOT meets the tier's target
        assert r["feasible"] == (tightest is not None and tightest <= tier_tpot[tier]), r


@pytest.mark.parametrize(
    ("per_mode", "expected"),
    [
        (
            {"agg": 22.5, "pd": 21.3, "afd": 21.0, "afd+pd": 21.1},
            "only AFD (afd, afd+pd): TPOT in [21.0, 21.3) ms",
        ),
        (
            {"agg": 22.5, "pd": 21.3, "afd": 25.0, "afd+pd": 22.0},
            "only P/D (pd): TPOT in [21.3, 22.0) ms",
        ),
        ({"agg": None, "pd": None, "afd": None, "afd+pd": 30.0}, "only AFD: every TPOT >= 30.0 ms"),
        ({"agg": 20.0, "pd": 20.0, "afd": None, "afd+pd": None}, "-"),
        ({"agg": None, "pd": None, "afd": None, "afd+pd": None}, "none feasible"),
    ],
)
def test_only_feasible_windows(per_mode, expected):
    assert only_feasible(per_mode) == expected


@pytest.mark.parametrize(
    ("args", "reason"),
    [
        (("--budget", "4"), "fits the budget of 4 GPUs; the smallest needs 8 GPUs"),
        (
            ("--budget", "12", "--mode", "pd"),
            "smallest decode shape: 8 GPUs, smallest prefill role meeting TTFT: 8 GPUs",
        ),
    ],
)
def test_budget_infeasibility_names_the_sizes(args, reason):
    result = CliRunner().invoke(main, ["solve", "instances/h200_nvl72.json", "--no-replay", *args])
    assert result.exit_code == 3
    assert reason in result.output
