"""The optimiser's commands end to end on the small shipped instance: the plan ``solve`` writes
re-evaluates to the throughput the MILP predicted, ``size`` answers the demand and its fleet,
fed back as a budget, serves it; bad input is one line naming the option (exit 2), an
infeasible problem says why (exit 3)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from aicpp_opt.cli import main
from aicpp_opt.evaluate.evaluation import evaluate_plan
from aicpp_opt.spec.instance import load_instance
from aicpp_opt.spec.plan import load_plan

SMALL = "instances/small_h200_16.json"


def run(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def test_solve_writes_a_plan_the_evaluator_accepts_at_the_predicted_throughput(tmp_path):
    out = tmp_path / "result.json"
    result = run("solve", SMALL, "--json", str(out))
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text())
    assert data["solver"]["optimal"] and data["solver"]["gap"] <= 1e-6
    assert data["timing"]["capacities"] >= 0 and data["timing"]["milp"] > 0
    assert data["rounds"] and data["rounds"][0]["holds"]
    plan_file = tmp_path / "plan.json"
    plan_file.write_text(json.dumps(data["plan"]))
    inst = load_instance(SMALL)
    ev = evaluate_plan(load_plan(plan_file, inst), inst)
    assert ev.feasible
    assert ev.output_tps == pytest.approx(data["predicted"]["throughput_tok_s"], rel=1e-6)
    assert run("evaluate", SMALL, str(plan_file)).exit_code == 0


def test_a_mix_serves_every_workload_in_its_share(tmp_path):
    out = tmp_path / "mix.json"
    result = run(
        "solve",
        SMALL,
        "--mix",
        "chat-relaxed=3,coding-interactive=1",
        "--no-replay",
        "--json",
        str(out),
    )
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text())
    served = {
        w["workload"]: w["throughput"]["arrival_rps"] for w in data["evaluation"]["workloads"]
    }
    assert served["chat-relaxed"] == pytest.approx(3 * served["coding-interactive"], rel=1e-6)
    assert data["evaluation"]["feasible"]


def test_size_finds_a_fleet_whose_budget_serves_the_demand(tmp_path):
    out = tmp_path / "size.json"
    result = run("size", SMALL, "--demand", "chat=20", "--no-replay", "--json", str(out))
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text())
    gpus = data["evaluated"]["gpus_used"]
    assert data["evaluation"]["workloads"][0]["throughput"]["arrival_rps"] >= 20 * (1 - 1e-9)
    assert data["evaluation"]["feasible"]
    again = tmp_path / "again.json"
    result = run("solve", SMALL, "--budget", str(gpus), "--no-replay", "--json", str(again))
    assert result.exit_code == 0, result.output
    served = json.loads(again.read_text())["evaluated"]["requests_per_s"]
    assert served >= 20 * (1 - 1e-9)
    fewer = run("solve", SMALL, "--budget", str(gpus - 1), "--no-replay", "--json", str(again))
    if fewer.exit_code == 0:
        assert json.loads(again.read_text())["evaluated"]["requests_per_s"] < 20


@pytest.mark.parametrize(
    ("args", "field"),
    [
        (("--budget", "0"), "--budget"),
        (("--mode", "hybrid"), "--mode"),
        (("--workload", "nope"), "--workload"),
        (("--objective", "latency"), "--objective"),
        (("--time-limit", "0"), "--time-limit"),
        (("--framework", "tgi"), "--framework"),
        (("--mix", "chat"), "--mix"),
        (("--mix", "chat=1", "--workload", "chat"), "--mix"),
        (("--routing", "zipf"), "--routing"),
    ],
)
def test_solve_bad_input_is_one_line_exit_2(args, field):
    result = CliRunner().invoke(main, ["solve", SMALL, "--no-replay", *args])
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and field in lines[0], result.output


@pytest.mark.parametrize(
    ("args", "field"),
    [(("--demand", "chat"), "--demand"), (("--demand", "chat=-1"), "--demand")],
)
def test_size_bad_input_is_one_line_exit_2(args, field):
    result = CliRunner().invoke(main, ["size", SMALL, "--no-replay", *args])
    assert result.exit_code == 2, result.output
    assert field in result.output.strip().splitlines()[0]


def test_per_dollar_needs_prices_and_finds_the_cheapest_tokens(tmp_path):
    doc = json.loads(Path(SMALL).read_text())
    del doc["cluster"]["pools"][0]["cost_per_gpu_hour"]
    path = tmp_path / "unpriced.json"
    path.write_text(json.dumps(doc))
    result = CliRunner().invoke(main, ["solve", str(path), "--objective", "per-dollar"])
    assert result.exit_code == 2 and "cost_per_gpu_hour" in result.output, result.output
    out = tmp_path / "priced.json"
    result = run("solve", SMALL, "--objective", "per-dollar", "--no-replay", "--json", str(out))
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text())
    price = json.loads(Path(SMALL).read_text())["cluster"]["pools"][0]
    per_hour = data["evaluated"]["gpus_used"] * price["cost_per_gpu_hour"]
    assert data["cost"]["usd_per_hour"] == pytest.approx(per_hour)
    tokens_per_hour = data["evaluated"]["throughput_tok_s"] * 3600
    assert data["cost"]["usd_per_million_tokens"] == pytest.approx(per_hour / tokens_per_hour * 1e6)


def test_an_unreachable_tpot_is_explained_with_the_fastest_shape(tmp_path):
    doc = json.loads(Path(SMALL).read_text())
    doc["workloads"] = [{"preset": "chat", "tpot_ms": 1, "ttft_ms": 2000}]
    path = tmp_path / "tight.json"
    path.write_text(json.dumps(doc))
    result = CliRunner().invoke(main, ["solve", str(path), "--no-replay"])
    assert result.exit_code == 3, result.output
    assert "TPOT 1 ms" in result.output and "at batch 1" in result.output


def test_a_budget_below_the_smallest_plan_names_its_size():
    result = CliRunner().invoke(main, ["solve", SMALL, "--budget", "1", "--no-replay"])
    assert result.exit_code == 3, result.output
    assert "budget of 1 GPUs" in result.output and "needs" in result.output


def test_a_demand_beyond_the_instance_is_explained():
    result = CliRunner().invoke(main, ["size", SMALL, "--demand", "chat=100000", "--no-replay"])
    assert result.exit_code == 3, result.output
    assert "does not fit" in result.output


def test_frontier_searches_the_instances_modes_by_default(tmp_path):
    """Without ``--modes`` the frontier covers the modes the instance lets ``solve`` search,
    no others."""
    data = json.loads(Path(SMALL).read_text())
    data["search"]["modes"] = ["pd"]
    instance = tmp_path / "pd_only.json"
    instance.write_text(json.dumps(data))
    result = run("frontier", str(instance), "--budgets", "8", "--out", str(tmp_path))
    assert result.exit_code == 0, result.output
    rows = json.loads((tmp_path / "frontier.json").read_text())
    assert {r["mode"] for r in rows if r["kind"] == "budget"} == {"pd"}


def test_frontier_throughput_never_falls_with_the_budget(tmp_path):
    result = run(
        "frontier", SMALL, "--budgets", "4,8,12,16", "--modes", "pd", "--out", str(tmp_path)
    )
    assert result.exit_code == 0, result.output
    rows = json.loads((tmp_path / "frontier.json").read_text())
    assert (tmp_path / "frontier.csv").exists() and (tmp_path / "frontier.png").exists()
    tps = [r.get("throughput_tok_s", 0.0) for r in rows if r["kind"] == "budget"]
    assert len(tps) == 4 and tps[-1] > 0
    assert all(b >= a * (1 - 1e-9) for a, b in zip(tps, tps[1:], strict=False))
