"""``aicpp-opt sweep``: spec validation, the cross product and its ids, the executor (errors
become rows), resume, and the same table from local 1, local 2 and Ray 2 workers."""

from __future__ import annotations

import importlib.util
import json
import math
import os
import subprocess
import sys

import pandas as pd
import pytest
from click.testing import CliRunner

from aicpp_opt import PROJECT_ROOT
from aicpp_opt.cli import main
from aicpp_opt.errors import InputError
from aicpp_opt.report.sweep import bar_labels
from aicpp_opt.search.problem import make_problem
from aicpp_opt.spec.instance import load_instance
from aicpp_opt.studies.executor import Executor, map_tasks
from aicpp_opt.studies.scenario import TIMING_COLUMNS, solve_scenario
from aicpp_opt.studies.sweep import read_log, run_sweep, spread
from aicpp_opt.studies.sweep_spec import expand, load_spec, parse_spec

SMALL = "small_h200_16"

# ------------------------------------------------------------------ spec validation


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        ([SMALL], "SPEC"),
        ({"budgets": [8]}, "instances"),
        ({"instances": [SMALL], "budget": [8]}, "budget"),
        ({"instances": [SMALL], "frameworks": ["sglang", "tgi"]}, "frameworks[1]"),
        ({"instances": ["no_such_instance"]}, "instances[0]"),
        ({"instances": [SMALL, SMALL]}, "instances[1]"),
        ({"instances": [SMALL], "workloads": ["chat", "essay"]}, "workloads[1]"),
        ({"instances": [SMALL], "slo_tiers": ["fast"]}, "slo_tiers[0]"),
        ({"instances": [SMALL], "budgets": [8, 0]}, "budgets[1]"),
        ({"instances": [SMALL], "budgets": [8, "8"]}, "budgets[1]"),
        ({"instances": [SMALL], "budgets": [8, 8]}, "budgets[1]"),
        ({"instances": [SMALL], "budgets": []}, "budgets"),
        ({"instances": [SMALL], "models": ["gpt-5"]}, "models[0]"),
        ({"instances": [SMALL], "modes": ["afd", "disagg"]}, "modes[1]"),
        ({"instances": [SMALL], "objectives": ["latency"]}, "objectives[0]"),
        ({"instances": [SMALL], "replay": "yes"}, "replay"),
        ({"instances": [SMALL], "time_limit": 0}, "time_limit"),
    ],
)
def test_bad_spec_names_the_key_in_one_line(spec, field):
    with pytest.raises(InputError) as info:
        expand(parse_spec(spec))
    assert info.value.field == field
    assert "\n" not in str(info.value)


def test_bad_yaml_and_missing_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("instances: [small_h200_16\nbudgets: 8\n")
    with pytest.raises(InputError, match=r"^SPEC: .*not valid YAML \(line \d+\)"):
        load_spec(bad)
    with pytest.raises(InputError, match="^SPEC: file not found"):
        load_spec(tmp_path / "missing.yaml")


def test_cli_bad_spec_is_one_line_exit_2(tmp_path):
    spec = tmp_path / "s.yaml"
    spec.write_text("instances: [small_h200_16]\nframeworks: [tgi]\n")
    result = CliRunner().invoke(main, ["sweep", str(spec), "--out", str(tmp_path / "r.parquet")])
    assert result.exit_code == 2
    assert result.output.strip().startswith("error: frameworks[0]: unknown value 'tgi'")
    assert len(result.output.strip().splitlines()) == 1


def test_executor_options_are_checked(monkeypatch):
    with pytest.raises(InputError, match="^--executor: unknown 'dask'"):
        Executor("dask")
    with pytest.raises(InputError, match="^--address: .*add --executor ray"):
        Executor("local", address="auto")
    with pytest.raises(InputError, match="^--workers: must be at least 1"):
        Executor("local", workers=0)
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(
        InputError, match=r'^--executor: ray is not installed; pip install -e "\.\[ray\]"'
    ):
        Executor("ray")


def test_ray_address_that_nothing_answers_on_fails_at_once():
    with pytest.raises(InputError, match=r"^--address: nothing answers at 127\.0\.0\.1:1 "):
        map_tasks(math.sqrt, [1.0], Executor("ray", address="127.0.0.1:1"))
    with pytest.raises(InputError, match="^--address: 'head-node': use auto, host:port"):
        map_tasks(math.sqrt, [1.0], Executor("ray", address="head-node"))


# ------------------------------------------------------------------ cross product and ids


def test_cross_product_counts_defaults_and_tiers():
    spec = {
        "instances": [SMALL],
        "workloads": ["chat", "coding"],
        "slo_tiers": ["own", "strict"],
        "budgets": [8, 16],
        "modes": ["agg", "pd"],
    }
    scenarios = expand(parse_spec(spec)).scenarios
    assert len(scenarios) == 2 * 2 * 2 * 2
    assert len({s.id for s in scenarios}) == 16
    # presets at their own SLO are relaxed (2 s / 50 ms); strict is 0.5 s / 10 ms (issue 3)
    own = next(s for s in scenarios if s.workload.name == "coding" and s.slo_tier == "own")
    strict = next(s for s in scenarios if s.workload.name == "coding" and s.slo_tier == "strict")
    assert (own.workload.slo.ttft, own.workload.slo.tpot) == (2.0, 0.050)
    assert (strict.workload.slo.ttft, strict.workload.slo.tpot) == (0.5, 0.010)
    assert strict.workload.isl == 8192 and strict.workload.osl == 1024
    # defaults: the instance's own workloads, all 16 GPUs, its model and objective, auto mode,
    # and the framework `solve` prices the model with (make_problem's own choice)
    defaults = expand(parse_spec({"instances": [SMALL]})).scenarios
    assert [s.workload.name for s in defaults] == ["chat-relaxed", "coding-interactive"]
    inst = load_instance(SMALL)
    solve_default = make_problem(inst, (inst.workloads[0],)).framework
    assert {(s.budget, s.model, s.framework, s.mode, s.objective) for s in defaults} == {
        (16, "deepseek-v3.2", solve_default, "auto", "throughput")
    }
    assert defaults[1].workload.slo.tpot == 0.020
    both = expand(parse_spec({"instances": [SMALL], "frameworks": ["vllm", "trtllm"]})).scenarios
    assert [s.framework for s in both] == ["vllm", "trtllm"] * 2


def test_budgets_above_the_instance_are_capped_and_kept_once():
    exp = expand(parse_spec({"instances": [SMALL], "workloads": ["chat"], "budgets": [8, 32, 64]}))
    assert [s.budget for s in exp.scenarios] == [8, 16]
    assert any("32 exceeds small_h200_16's 16 GPUs" in n for n in exp.notes)
    assert any("1 scenario(s) repeat another" in n for n in exp.notes)


def test_ids_are_readable_and_stable_across_processes():
    spec = {"instances": [SMALL], "workloads": ["chat"], "budgets": [8], "modes": ["agg"]}
    (s,) = expand(parse_spec(spec)).scenarios
    assert s.id.startswith(f"small_h200_16/chat/own/0008gpu/deepseek-v3.2/{s.framework}/agg/")
    code = (
        "from aicpp_opt.studies.sweep_spec import expand, parse_spec; "
        f"print(expand(parse_spec({spec!r})).scenarios[0].id)"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    other = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env
    )
    assert other.stdout.strip() == s.id
    longer = expand(parse_spec({**spec, "time_limit": 30})).scenarios[0]
    assert longer.id.split("#")[0] == s.id.split("#")[0] and longer.id != s.id


def test_scenarios_sharing_capacities_are_spread_apart():
    spec = {"instances": [SMALL], "workloads": ["chat", "coding"], "budgets": [8, 12, 16]}
    order = spread(list(expand(parse_spec(spec)).scenarios))
    assert [(s.workload.name, s.budget) for s in order] == [
        ("chat", 8),
        ("coding", 8),
        ("chat", 12),
        ("coding", 12),
        ("chat", 16),
        ("coding", 16),
    ]


# ------------------------------------------------------------------ executor and failing rows


def test_exceptions_become_errors_in_task_order():
    results = map_tasks(math.sqrt, [4.0, -1.0, 9.0], Executor("local", workers=2))
    assert [r.value for r in results] == [2.0, None, 3.0]
    assert [r.error for r in results] == [None, "ValueError: math domain error", None]


def test_tasks_see_the_environment_they_are_given():
    name = "AICPP_OPT_SWEEP_TEST"
    results = map_tasks(os.getenv, [name], Executor("local", workers=1), env={name: "1"})
    assert [r.value for r in results] == ["1"] and os.getenv(name) is None


def test_a_worker_that_dies_is_an_error_not_a_crash():
    (result,) = map_tasks(os._exit, [3], Executor("local", workers=1))
    assert result.value is None and "BrokenProcessPool" in result.error


def test_rejected_scenario_is_a_row(tmp_path):
    unpriced = json.loads((PROJECT_ROOT / "instances" / f"{SMALL}.json").read_text())
    for pool in unpriced["cluster"]["pools"]:
        pool.pop("cost_per_gpu_hour", None)
    path = tmp_path / "unpriced.json"
    path.write_text(json.dumps(unpriced))
    spec = {"instances": [str(path)], "workloads": ["chat"], "objectives": ["per-dollar"]}
    (s,) = expand(parse_spec(spec)).scenarios
    row = solve_scenario(s)
    assert (row["status"], row["feasible"]) == ("bad-input", False)
    assert row["reason"].startswith("cluster.pools[h200].cost_per_gpu_hour: is required")


def test_bar_labels_show_only_the_axes_that_vary():
    table = pd.DataFrame(
        {
            "slo_tier": ["own", "strict"],
            "budget": [8, 8],
            "model": ["m", "m"],
            "mode": ["agg", "pd"],
            "objective": ["throughput"] * 2,
        }
    )
    assert bar_labels(table) == ["own · agg", "strict · pd"]
    assert bar_labels(table.iloc[:1]) == ["8 GPUs"]


# ------------------------------------------------------------------ runs: local 1, local 2, ray 2

RUN_SPEC = {
    "instances": [SMALL],
    "workloads": ["coding"],
    "slo_tiers": ["relaxed", "interactive"],
    "budgets": [1, 8, 16],
    "modes": ["pd"],
}
"""Six fast scenarios, with and without a plan: DeepSeek-V3.2's weights (~700 GB) cannot fit on
one 141 GB H200, so a budget of 1 GPU has none."""


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The same scenarios on local 1 (then again, to resume), local 2 via the CLI, and Ray 2
    (from scratch)."""
    out = tmp_path_factory.mktemp("sweep")
    scenarios = expand(parse_spec(RUN_SPEC)).scenarios
    said: list[str] = []
    first = run_sweep(scenarios, out / "one.parquet", Executor("local", 1), said.append)
    again = run_sweep(scenarios, out / "one.parquet", Executor("local", 1), said.append)
    spec = out / "spec.yaml"
    spec.write_text(json.dumps(RUN_SPEC))  # JSON is YAML
    cli = CliRunner().invoke(
        main, ["sweep", str(spec), "--workers", "2", "--out", str(out / "two.parquet"), "--quiet"]
    )
    assert cli.exit_code == 0, cli.output
    # Ray's workers start after this: an empty capacity cache of their own makes them compute
    # every capacity rather than read what the local runs cached
    ray_cache = tmp_path_factory.mktemp("ray-cache")
    with pytest.MonkeyPatch.context() as env:
        env.setenv("AICPP_OPT_CACHE", str(ray_cache))
        ray = run_sweep(scenarios, out / "ray.csv", Executor("ray", 2), said.append)
    assert any(ray_cache.iterdir())
    return {
        "dir": out,
        "first": first,
        "again": again,
        "said": said,
        "cli": cli.output,
        "two": pd.read_parquet(out / "two.parquet"),
        "ray": ray,
    }


def _same(a: pd.DataFrame, b: pd.DataFrame) -> None:
    pd.testing.assert_frame_equal(
        a.drop(columns=list(TIMING_COLUMNS)), b.drop(columns=list(TIMING_COLUMNS))
    )


def test_local_2_and_ray_2_give_the_table_of_local_1(runs):
    one = runs["first"].table
    assert len(one) == 6 and list(one["id"]) == sorted(one["id"])
    _same(one, runs["two"])
    _same(one, runs["ray"].table)


def test_rows_say_feasible_or_why_not(runs):
    table = runs["first"].table
    assert set(table["status"]) == {"ok", "infeasible"}
    one_gpu = table[table["budget"] == 1]
    assert len(one_gpu) == 2 and set(one_gpu["status"]) == {"infeasible"}
    none = table[~table["feasible"]]
    assert all(r and "\n" not in r for r in none["reason"])
    assert none["throughput_tok_s"].isna().all() and none["plan"].isna().all()
    ok = table[table["feasible"]]
    assert (ok["gpus_used"] <= ok["budget"]).all()
    assert (ok["tpot_ms"] <= ok["slo_tpot_ms"]).all() and (ok["ttft_ms"] <= ok["slo_ttft_ms"]).all()
    plans = [json.loads(p) for p in ok["plan"]]
    assert [p["mode"] for p in plans] == list(ok["plan_mode"]) == ["pd"] * len(ok)
    assert [p["framework"] for p in plans] == list(ok["framework"])
    # the plan's own numbers: throughput = per GPU x GPUs, and requests/s x OSL (1024 for coding)
    assert ok["throughput_tok_s"].to_numpy() == pytest.approx(
        (ok["tok_s_per_gpu"] * ok["gpus_used"]).to_numpy(dtype=float)
    )
    assert ok["throughput_tok_s"].to_numpy() == pytest.approx(
        (ok["requests_per_s"] * 1024).to_numpy(), rel=1e-6
    )


def test_resume_solves_nothing_twice(runs):
    first, again = runs["first"], runs["again"]
    assert (first.solved, first.skipped) == (6, 0)
    assert (again.solved, again.skipped) == (0, 6)
    assert "6 of 6 scenarios already in" in " ".join(runs["said"])
    # unchanged solve_seconds: the rows came from the log, not from a second solve
    pd.testing.assert_frame_equal(first.table, again.table)


def test_resume_retries_crashed_and_skips_cut_lines(runs, tmp_path):
    table = runs["first"].table
    rows = [json.loads(r.to_json()) for _, r in table.iterrows()]
    rows[0] |= {"status": "crashed", "feasible": False, "reason": "BrokenProcessPool: lost"}
    log = tmp_path / "r.jsonl"
    log.write_text("".join(json.dumps(r) + "\n" for r in rows) + '{"id": "cut sho')
    logged, unreadable = read_log(log)
    assert len(logged) == 6 and unreadable == 1
    scenarios = expand(parse_spec(RUN_SPEC)).scenarios
    run = run_sweep(scenarios, tmp_path / "r.parquet", Executor("local", 1), lambda line: None)
    assert (run.solved, run.skipped) == (1, 5)
    _same(run.table, table)


def test_cli_writes_table_figure_and_summary(runs):
    out = runs["dir"]
    assert (out / "two.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert pd.read_csv(out / "ray.csv")["id"].tolist() == runs["first"].table["id"].tolist()
    assert (out / "ray.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "6 scenarios" in runs["cli"] and "6 solved in this run" in runs["cli"]
