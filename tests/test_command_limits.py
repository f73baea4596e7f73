"""The optimiser's commands under a time limit and with bad options: every outcome is a result or
one stderr line with its documented exit code (2 bad input, 3 infeasible, 4 time limit with no
plan, 1 internal error with a hint to rerun with --debug); --time-limit bounds the whole
command, and the HiGHS limit is what is left of it."""

from __future__ import annotations

import json
import re
import time

import pytest
from click.testing import CliRunner

from aicpp_opt import deadline
from aicpp_opt.cli import main
from aicpp_opt.errors import NOT_REACHED
from aicpp_opt.report.compare import only_feasible
from aicpp_opt.search.formulation import Solver, TimeLimitError

SMALL = "instances/small_h200_16.json"


def one_line(result) -> str:
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.output
    assert "Traceback" not in result.output
    return lines[0]


@pytest.mark.parametrize(
    ("args", "field"),
    [
        (("--time-limit", "nan"), "--time-limit"),
        (("--time-limit", "inf"), "--time-limit"),
        (("--astra-sim", "/bin/true", "--no-replay"), "--astra-sim"),
        (("--astra-sim", "/nonexistent/astra"), "--astra-sim"),
        (("--json", "/nonexistent/out.json"), "--json"),
        (("--mix", "chat=inf"), "--mix"),
        (("--mix", "chat=1,chat-relaxed=2"), "--mix"),
    ],
)
def test_solve_bad_option_is_one_line_exit_2(args, field):
    result = CliRunner().invoke(main, ["solve", SMALL, *args])
    assert result.exit_code == 2, result.output
    assert one_line(result).startswith(f"error: {field}:")


@pytest.mark.parametrize(
    ("args", "field"),
    [
        (("--budgets", "8,x"), "--budgets"),
        (("--budgets", "8,inf"), "--budgets"),
        (("--budgets", ",".join(["8"] * 65)), "--budgets"),
        (("--budgets", "8", "--modes", "afd2"), "--modes"),
        (("--budgets", "8", "--tpots", "-1"), "--tpots"),
        (("--budgets", "8", "--out", "/nonexistent/frontier"), "--out"),
        (("--budgets", "8", "--time-limit", "-1"), "--time-limit"),
    ],
)
def test_frontier_bad_option_is_one_line_exit_2(args, field):
    result = CliRunner().invoke(main, ["frontier", SMALL, *args])
    assert result.exit_code == 2, result.output
    assert one_line(result).startswith(f"error: {field}:")


def test_time_out_returns_the_best_plan_found_with_its_gap(monkeypatch):
    """HiGHS stopping at its time limit with an incumbent (simulated: the real solve's answer
    reported as time-limited, gap 3 %) yields that plan, its gap and a warning."""
    real = Solver._solve

    def timed_out(self, time_limit):
        real(self, time_limit)
        return "maxTimeLimit", False, 0.03

    monkeypatch.setattr(Solver, "_solve", timed_out)
    result = CliRunner().invoke(main, ["solve", SMALL, "--no-replay"])
    assert result.exit_code == 0, result.output
    assert "maxTimeLimit" in result.output and "gap 3.00%" in result.output
    assert "warning" in result.output


def test_time_out_without_any_plan_is_one_line_exit_4(monkeypatch):
    seen = []

    def nothing(self, time_limit):
        seen.append(time_limit)
        raise TimeLimitError(f"no plan found within the time limit of {time_limit:g} s")

    monkeypatch.setattr(Solver, "_solve", nothing)
    result = CliRunner().invoke(main, ["solve", SMALL, "--no-replay", "--time-limit", "30"])
    assert result.exit_code == 4, result.output
    assert one_line(result).startswith("error: --time-limit: no plan found within")
    assert 0 < seen[0] < 30  # the MILP gets what is left of the command's limit


def test_time_limit_bounds_the_whole_command():
    """fleet_1152 needs far more than 4 s (its capacities alone, settled by forked workers that
    check the deadline before every bound and exact capacity): the command ends near its limit
    either way, and without a plan says where the time went."""
    start = time.monotonic()
    result = CliRunner().invoke(main, ["solve", "instances/fleet_1152.json", "--time-limit", "4"])
    assert time.monotonic() - start < 4 + 5
    assert result.exit_code in (0, 4), result.output
    if result.exit_code == 4:
        line = one_line(result)
        assert "the time limit of 4 s ran out during" in line
        assert re.search(r"\(\d+\.\d s: [a-zA-Z ]+ \d+\.\d s", line), line


def test_deadline_names_where_the_time_went():
    d = deadline.Deadline(start=time.monotonic() - 5.0, seconds=3.0)
    d.enter("capacities")
    assert d.remaining() < 0
    assert d.summary().startswith("the time limit of 3 s ran out during capacities (5.0 s: ")
    assert "set-up 5.0 s" in d.summary()


def test_frontier_cut_short_writes_every_case_and_exits_4(tmp_path):
    args = ["--budgets", "8,16", "--modes", "pd", "--out", str(tmp_path), "--time-limit", "0.01"]
    result = CliRunner().invoke(main, ["frontier", SMALL, *args])
    assert result.exit_code == 4, result.output
    assert "2 of 2 cases were not solved" in one_line(result)
    rows = json.loads((tmp_path / "frontier.json").read_text())
    assert [(r["budget"], r["feasible"], r["reason"]) for r in rows] == [
        (8, None, NOT_REACHED),
        (16, None, NOT_REACHED),
    ]


@pytest.mark.parametrize(
    ("per_mode", "expected"),
    [
        (
            {"agg": 22.5, "pd": 21.3, "afd": 21.0, "afd+pd": 21.1},
            "only AFD (afd, afd+pd): TPOT in [21.0, 21.3) ms",
        ),
        ({"agg": None, "pd": None, "afd": None, "afd+pd": 30.0}, "only AFD: every TPOT >= 30.0 ms"),
        (
            {"agg": NOT_REACHED, "pd": None, "afd": None, "afd+pd": 30.0},
            "only AFD: every TPOT >= 30.0 ms",
        ),
        ({"agg": 20.0, "pd": 20.0, "afd": None, "afd+pd": None}, "-"),
        ({"agg": None, "pd": NOT_REACHED, "afd": None, "afd+pd": None}, "none feasible"),
    ],
)
def test_only_feasible_windows_skip_cases_not_solved(per_mode, expected):
    assert only_feasible(per_mode) == expected


def test_internal_error_is_one_line_and_debug_shows_the_traceback(monkeypatch):
    def broken(*args):
        raise ZeroDivisionError("simulated bug")

    monkeypatch.setattr("aicpp_opt.spec.instance.parse_instance", broken)
    result = CliRunner().invoke(main, ["evaluate", SMALL, "instances/plans/nvl72_agg.json"])
    assert result.exit_code == 1
    line = one_line(result)
    assert "ZeroDivisionError: simulated bug" in line and "rerun with --debug" in line
    debug = CliRunner().invoke(main, ["--debug", "evaluate", SMALL, "x.json"])
    assert debug.exit_code == 1 and "Traceback (most recent call last)" in debug.stderr
