"""The simulation as solve's check: it flags the shipped aggregated plan serving coding-relaxed
(issue 10's case: the simulated TPOT p90 breaks the 50 ms SLO), blames the role that breaks
it, and in the closed loop a blamed family comes back derated; ``solve --json`` carries the
simulated percentiles."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
from click.testing import CliRunner

from aicpp_opt import PROJECT_ROOT
from aicpp_opt.cli import main
from aicpp_opt.errors import OutOfTimeError
from aicpp_opt.evaluate.evaluation import evaluate_plan
from aicpp_opt.search.problem import make_problem
from aicpp_opt.search.solve import DERATE, solve
from aicpp_opt.simulate.check import MAX_REQUESTS, simulation_checker
from aicpp_opt.spec.instance import load_instance
from aicpp_opt.spec.plan import load_plan


def test_the_shipped_agg_plan_on_coding_relaxed_is_flagged_by_its_simulated_p90():
    inst = load_instance("h200_nvl72")
    plan = load_plan(PROJECT_ROOT / "instances" / "plans" / "nvl72_agg.json", inst)
    coding = replace(plan, roles=tuple(replace(r, workload="coding-relaxed") for r in plan.roles))
    flow = evaluate_plan(coding, inst).workloads[0].flow
    rate = 0.7 * min(flow.prefill_capacity, flow.decode_capacity)
    at_rate = replace(coding, roles=tuple(replace(r, rate=rate) for r in coding.roles))
    holds, failing, lines, res = simulation_checker(inst, duration_s=60.0)(at_rate, None)
    w = res.workloads["coding-relaxed"]
    assert w.slo_tpot > w.slo.tpot
    assert not holds and failing == ["agg"]
    assert lines[0].startswith("60 s of Poisson") and "TPOT p90" in lines[1]


def test_a_blamed_family_is_derated_and_the_plan_solved_again():
    """A check that blames the first serving role once: the next round serves that family at
    no more than DERATE of the capacity it had per replica."""
    inst = load_instance("small_h200_16")
    prob = make_problem(inst, (inst.workload("chat-relaxed"),))
    first = solve(prob)
    role = next(r for r in first.plan.roles if r.role.value != "prefill")
    per_replica = role.rate / role.replicas
    calls = []

    def blame_once(plan, evaluated):
        calls.append(plan)
        if len(calls) == 1:
            return False, [role.id], ["blamed"], None
        return True, [], ["holds"], None

    again = solve(prob, simulate=blame_once)
    assert [r.holds for r in again.rounds] == [False, True]
    assert again.rounds[0].remedy == "derated" and again.rounds[0].withdrawn
    same = [r for r in again.plan.roles if r.shape == role.shape and r.role == role.role]
    for r in same:
        assert r.rate / r.replicas <= DERATE * per_replica * (1 + 1e-9)


def test_time_running_out_before_the_next_round_returns_the_checked_plan(monkeypatch):
    """A check rejects the plan, then the limit runs out before the MILP runs again: the plan
    of the round that was checked comes back with a warning, not an exit without a plan."""
    import aicpp_opt.search.solve as solve_module

    inst = load_instance("small_h200_16")
    prob = make_problem(inst, (inst.workload("chat-relaxed"),))
    real, calls = solve_module.solve_once, []

    def once(*args, **kwargs):
        calls.append(1)
        if len(calls) > 1:
            raise OutOfTimeError("the time limit ran out")
        return real(*args, **kwargs)

    monkeypatch.setattr(solve_module, "solve_once", once)
    out = solve(prob, simulate=lambda plan, ev: (False, [plan.roles[-1].id], ["blamed"], None))
    assert len(calls) == 2 and out.plan.roles and not out.rounds[0].holds
    assert any("previous round's plan" in w for w in out.warnings)


def test_solve_json_carries_the_simulated_percentiles(tmp_path):
    out = tmp_path / "solve.json"
    args = ["solve", "instances/small_h200_16.json", "-w", "chat-relaxed", "--no-replay"]
    result = CliRunner().invoke(main, [*args, "--sim-duration", "60", "--json", str(out)])
    assert result.exit_code == 0, result.output
    sim = json.loads(out.read_text())["simulated"]
    w = sim["workloads"]["chat-relaxed"]
    for key in ("ttft_ms", "tpot_ms"):
        assert set(w[key]) >= {"mean", "p50", "p90", "p99"}
        assert w[key]["p50"] <= w[key]["p90"] <= w[key]["p99"]
    assert w["throughput_tok_s"] > 0 and 0 <= w["slo_attainment"] <= 1
    assert "simulation" in result.output


def test_a_fleet_serving_thousands_of_requests_per_second_gets_a_shorter_run():
    """The check caps its arrivals at MAX_REQUESTS: the run's duration is the cap over the
    planned rate when that is shorter than asked."""
    inst = load_instance("h200_nvl72")
    plan = load_plan(PROJECT_ROOT / "instances" / "plans" / "nvl72_agg.json", inst)
    rate = 2 * MAX_REQUESTS / 60.0
    busy = replace(plan, roles=tuple(replace(r, rate=rate / len(plan.roles)) for r in plan.roles))
    calls = []

    def fake(p, i, *, duration_s, seed, drain_s, progress):
        calls.append(duration_s)
        raise RuntimeError("stop")

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("aicpp_opt.simulate.run.simulate_plan", fake)
        with pytest.raises(RuntimeError):
            simulation_checker(inst, duration_s=60.0)(busy, None)
    assert calls == [pytest.approx(30.0)]


def test_a_run_shorter_than_a_request_drains_its_requests(monkeypatch):
    """A run cut to 3 s by the arrival cap, shorter than a chat request's 20 s life on nvl72_pd:
    its measured requests still finish (the drain lasts an SLO-keeping request's life) and
    the plan, at 70% of its capacity, holds; without the drain they would count as
    infinitely late."""
    inst = load_instance("h200_nvl72")
    plan = load_plan(PROJECT_ROOT / "instances" / "plans" / "nvl72_pd.json", inst)
    flow = evaluate_plan(plan, inst).workloads[0].flow
    rate = 0.7 * min(flow.prefill_capacity, flow.decode_capacity)
    at_rate = replace(plan, roles=tuple(replace(r, rate=rate) for r in plan.roles))
    monkeypatch.setattr("aicpp_opt.simulate.check.MAX_REQUESTS", 3 * rate)
    holds, failing, lines, res = simulation_checker(inst)(at_rate, None)
    assert lines[0].startswith("3 s of Poisson") and "not a steady state" in lines[1]
    assert res.workloads["chat-relaxed"].unfinished == 0
    assert holds and not failing


@pytest.mark.parametrize("value", ["0", "-5", "nan"])
def test_a_bad_simulation_duration_is_one_line(value):
    result = CliRunner().invoke(main, ["solve", "small_h200_16", "--sim-duration", value])
    assert result.exit_code == 2
    assert result.output.strip().splitlines() == [
        line for line in result.output.strip().splitlines() if "--sim-duration" in line
    ]
