"""``aicpp-opt explore``: every study run on a tiny instance (8 H200 as two 4-GPU NVLink
domains, Qwen3-30B-A3B, a small search space) through the local executor, checked against
properties that hold whatever the numbers (the best of all modes is at least each mode, a
forced ratio class is the plan's, segregated KV costs more than paired, ...), every statement
against the rows it cites; the report in a real headless browser; the command's bad inputs."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd
import pytest
from browser import find_browser, open_page
from click.testing import CliRunner

from aicpp_opt.cli import main
from aicpp_opt.errors import InputError
from aicpp_opt.report.explore_figures import plot_study
from aicpp_opt.report.explore_page import write_page
from aicpp_opt.spec.instance import load_instance
from aicpp_opt.studies.executor import Executor
from aicpp_opt.studies.explore import STUDY_NAMES
from aicpp_opt.studies.explore.af_ratio import ratio_classes
from aicpp_opt.studies.explore.dispatch import DispatchPoint
from aicpp_opt.studies.explore.points import Keep, SolvePoint
from aicpp_opt.studies.explore.run import STUDIES, read_log, run_explore
from aicpp_opt.studies.explore.setup import BEST, Grid, make_setup, study_instance

MODEL = "qwen3-30b-a3b"
TINY = {
    "name": "tiny_h200_8",
    "description": "test: 8 H200 as two 4-GPU NVLink domains joined by IB; $4.54/GPU-hour",
    "cluster": {
        "pools": [
            {
                "name": "h200",
                "system": "h200_sxm",
                "gpus": 8,
                "topology": [
                    {"kind": "switch", "size": 4, "bw_GBps": 450, "latency_ns": 250},
                    {"kind": "switch", "size": 2, "bw_GBps": 50, "latency_ns": 2000},
                ],
                "cost_per_gpu_hour": 4.54,
            }
        ]
    },
    "model": MODEL,
    "workloads": [{"preset": "chat", "slo": "relaxed"}],
    "search": {
        "modes": ["agg", "pd", "afd+pd"],
        "tp_values": [1],
        "max_ep": 2,
        "max_micro_batches": 2,
        "max_batch_per_gpu": 64,
        "mtp_drafts": [0],
    },
}
GRID = Grid(
    tpots_ms=(50,),
    ttfts_ms=(2000,),
    ffn_gpus=(2,),
    ratios=(1, 2),
    isls=(4096,),
    osls=(),
    prefix_reuses=(),
)
"""One point per axis beyond the base workload's (chat-relaxed: TTFT 2 s, TPOT 50 ms), so the
studies share most solves."""
CITED = re.compile(r"\(([a-z-]+) rows? ([\d, ]+)\)")


@pytest.fixture(scope="module")
def tiny_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("explore") / "tiny.json"
    path.write_text(json.dumps(TINY))
    return path


@pytest.fixture(scope="module")
def setup(tiny_file):
    return make_setup(load_instance(tiny_file), None, MODEL, GRID)


@pytest.fixture(scope="module")
def explored(setup, tiny_file, tmp_path_factory):
    """Every study, run once on two local workers; the report written."""
    out = tmp_path_factory.mktemp("report")
    results = run_explore(setup, [], out, Executor("local", 2), lambda line: None)
    figures = {r.name: plot_study(r, out / f"{r.name}.png") for r in results}
    write_page(results, figures, setup, out, "aicpp-opt explore tiny.json", tiny_file)
    return out, {r.name: r for r in results}


def test_registry_matches_the_names_the_command_takes():
    assert tuple(STUDIES) == STUDY_NAMES


def test_every_study_writes_its_table_figure_and_section(explored):
    out, results = explored
    assert list(results) == list(STUDY_NAMES)
    for name, result in results.items():
        assert not result.table.empty, name
        assert list(result.table["row"]) == list(range(1, len(result.table) + 1))
        assert "crashed" not in set(result.table["status"]), result.table["reason"].tolist()
        csv = pd.read_csv(out / f"{name}.csv")
        assert list(csv["row"]) == list(result.table["row"])
        assert len(pd.read_parquet(out / f"{name}.parquet")) == len(csv)
        assert (out / f"{name}.png").read_bytes().startswith(b"\x89PNG")
        assert result.statements, name
    page = (out / "index.html").read_text()
    for name in STUDY_NAMES:
        assert f'<section id="{name}">' in page
    assert "cost_tables/h200_sxm" in page and "models/qwen3-30b-a3b.json" in page
    assert "aicpp-opt explore tiny.json" in page


def test_statements_cite_rows_that_hold_their_numbers(explored):
    """Every '(study row N)' a statement cites exists in that study's table, and every
    tokens/s figure a statement prints is the throughput of one of the rows it cites."""
    _, results = explored
    for name, result in results.items():
        for line in result.statements:
            cited = [
                (study, int(n)) for study, nums in CITED.findall(line) for n in nums.split(",")
            ]
            for study, row in cited:
                assert study == name and row in set(result.table["row"]), line
            rows = result.table[result.table["row"].isin([r for _, r in cited])]
            for figure in re.findall(r"([\d,]+) tok/s(?! per)", line):
                value = float(figure.replace(",", ""))
                assert any(abs(value - t) <= 0.5 for t in rows["throughput_tok_s"]), line


def test_binding_columns_describe_the_serving_role(explored):
    """The busiest resource is one of the role's schedule, busy no longer than its step, and
    serving roles never run above their capacity."""
    table = explored[1]["pareto"].table
    ok = table[table["feasible"].astype(bool)]
    for _, r in ok.iterrows():
        resource, busy, step = re.fullmatch(
            r"(.+) busy ([\d.]+) of ([\d.]+) ms", r["binds"]
        ).groups()
        afd = r["plan_mode"].startswith("afd")
        assert resource in (
            ("attention GPUs", "A->F links", "FFN GPUs", "F->A links")
            if afd
            else ("GPU", "network")
        )
        assert 0 < float(busy) <= float(step) * 1.001
        assert 0 < r["decode_load"] <= 1 + 1e-6


def test_best_of_modes_is_at_least_every_mode(explored):
    """One MILP over every mode can choose any single mode's plan."""
    table = explored[1]["pareto"].table
    for _, rows in table.groupby("tpot_target_ms"):
        best = rows[rows["mode"] == BEST].iloc[0]
        singles = rows[(rows["mode"] != BEST) & rows["feasible"].astype(bool)]
        assert best["feasible"]
        assert best["throughput_tok_s"] >= singles["throughput_tok_s"].max() * (1 - 1e-6)


def test_slo_map_floors_bound_the_feasible_cells(explored):
    """A family with a plan at TPOT t reaches t at one sequence per GPU."""
    table = explored[1]["slo-map"].table
    floors = table[table["kind"] == "floor"].set_index("family")["floor_tpot_ms"]
    assert floors.notna().all()
    cells = table[(table["kind"] == "cell") & table["feasible"].astype(bool)]
    assert not cells.empty
    for _, r in cells.iterrows():
        assert floors[r["family"]] <= r["tpot_target_ms"]


def test_af_ratio_plans_use_the_forced_class(explored, setup):
    table = explored[1]["af-ratio"].table
    inst = study_instance(setup.instance, MODEL, setup.workload)
    assert set(zip(table["m"], table["n"], strict=True)) == set(ratio_classes(setup, MODEL, inst))
    ok = table[table["feasible"].astype(bool)]
    assert len(ok) >= 2
    assert (ok["afd_m"] == ok["m"]).all() and (ok["afd_n"] == ok["n"]).all()
    assert ok["throughput_tok_s"].nunique() == len(ok)


def test_placement_segregated_kv_costs_more_and_says_where(explored):
    table = explored[1]["placement"].table
    kv = table[(table["traffic"] == "KV") & table["placement"].notna()].set_index("placement")
    assert kv["realisable"].all()  # 1 + 1 GPUs fit a 4-GPU domain; the pool has 2 domains
    assert kv.loc["segregated", "link_ms"] > kv.loc["paired", "link_ms"] > 0
    assert kv.loc["segregated", "link_source"] != kv.loc["paired", "link_source"]
    for where, domains in (("paired", {0}), ("segregated", {0, 1})):
        plan = json.loads(kv.loc[where, "plan"])
        used = {p["domain"] for r in plan["roles"] for p in r["placement"]}
        assert used == domains


def test_cost_columns_are_the_prices_times_the_gpus(explored):
    table = explored[1]["cost"].table
    ok = table[table["feasible"].astype(bool)]
    assert set(ok["objective"]) == {"throughput", "per-dollar"}
    hourly = ok["gpus_used"] * 4.54
    assert (abs(ok["usd_per_hour"] - hourly) < 1e-9).all()
    per_mtok = ok["usd_per_hour"] / (ok["throughput_tok_s"] * 3600) * 1e6
    assert (abs(ok["usd_per_mtok"] - per_mtok) < 1e-9).all()


def test_dispatch_analytic_all_to_all_is_direct_and_allgather_differs(setup):
    """On a fixed 2:2 unit (two FFN GPUs, so the strategies can differ) the evaluator prices
    all_to_all as direct and allgather/reduce-scatter otherwise; the replay runs all three."""
    inst = study_instance(setup.instance, MODEL, setup.workload)
    base = SolvePoint(inst, ("afd+pd",), 8, keep=Keep(ratio=(2, 2)))
    rows = {r["dispatch_forced"]: r for r in DispatchPoint(base).run()}
    assert set(rows) == {"all_to_all", "direct", "allgather_reducescatter"}
    assert rows["all_to_all"]["link_ms"] == rows["direct"]["link_ms"] > 0
    assert rows["allgather_reducescatter"]["link_ms"] != rows["direct"]["link_ms"]
    assert all(r["afd_m"] == 2 and r["afd_n"] == 2 for r in rows.values())
    assert all(r["replay_step_ms"] > 0 for r in rows.values())


def test_resume_runs_only_what_is_missing(explored, setup):
    out, results = explored
    log = read_log(out / "points.jsonl")
    seen = []
    again = run_explore(setup, ["cost"], out, Executor("local", 1), seen.append)
    assert seen and "already in" in seen[0] and not any("running" in s for s in seen)
    assert (
        again[0].table.drop(columns="seconds").equals(results["cost"].table.drop(columns="seconds"))
    )
    assert read_log(out / "points.jsonl") == log


def test_report_renders_in_a_headless_browser(explored):
    browser = find_browser()
    if browser is None:
        pytest.skip(
            "NO BROWSER: chromium is not installed, so the report was NOT checked in a browser; "
            "apt-get install -y chromium (.ci/run does)"
        )
    out, results = explored
    report = open_page(browser, out / "index.html")
    assert report.messages == []
    assert len(report.images) == len(STUDY_NAMES)
    assert all(i["width"] > 0 for i in report.images), report.images
    assert all(t["rows"] > 1 and t["height"] > 0 for t in report.tables), report.tables
    for name, result in results.items():
        section = report.sections[name]
        assert len(section["images"]) == 1 and section["images"][0] > 0
        assert section["tables"] == [len(result.table) + 1]  # the header and every row


@pytest.mark.parametrize(
    ("args", "field"),
    [
        (["--study", "latency"], "--study"),
        (["--executor", "slurm"], "--executor"),
        (["--workers", "0"], "--workers"),
        (["--second-model", "gpt-5"], "--second-model"),
        (["--workload", "essay"], "--workload"),
    ],
)
def test_bad_options_are_one_line_exit_2(tiny_file, tmp_path, args, field):
    cmd = ["explore", str(tiny_file), "--out", str(tmp_path / "r"), *args]
    result = CliRunner().invoke(main, cmd)
    assert result.exit_code == 2, result.output
    assert result.output.strip().startswith(f"error: {field}")
    assert len(result.output.strip().splitlines()) == 1
    assert not (tmp_path / "r").exists()


def test_out_must_be_a_folder_and_instance_must_exist(tiny_file, tmp_path):
    afile = tmp_path / "file"
    afile.write_text("x")
    for cmd, field in (
        (["explore", str(tiny_file), "--out", str(afile)], "--out"),
        (["explore", str(tmp_path / "none.json"), "--out", str(tmp_path / "r")], "instance"),
    ):
        result = CliRunner().invoke(main, cmd)
        assert result.exit_code == 2, result.output
        assert result.output.strip().startswith(f"error: {field}"), result.output


def test_unknown_study_in_the_api_is_an_input_error(setup, tmp_path):
    with pytest.raises(InputError, match="--study"):
        run_explore(setup, ["latency"], tmp_path, Executor("local", 1), print)


def test_frontier_per_dollar_prices_every_plan(tmp_path):
    """``frontier --objective per-dollar`` (the cost study's other half) solves and prices each
    budget's plan from the pools' list prices."""
    cmd = ["frontier", "small_h200_16", "--budgets", "8,16", "--modes", "pd"]
    result = CliRunner().invoke(main, [*cmd, "--objective", "per-dollar", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    rows = [r for r in json.loads((tmp_path / "frontier.json").read_text()) if r["feasible"]]
    assert rows
    for r in rows:
        assert r["usd_per_hour"] == pytest.approx(r["gpus_used"] * 4.54)
        per_mtok = r["usd_per_hour"] / (r["throughput_tok_s"] * 3600) * 1e6
        assert r["usd_per_mtok"] == pytest.approx(per_mtok)
    assert "usd_per_mtok" in (tmp_path / "frontier.csv").read_text().splitlines()[0]
