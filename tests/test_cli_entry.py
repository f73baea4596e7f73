"""The console entry (``aicpp-opt``, ``python -m aicpp_opt.cli``) ends the process without the
interpreter's teardown: everything ``main`` prints and writes still arrives, through pipes, and
the exit code is ``main``'s; under a profiler it exits the usual way, so the profile is
written."""

from __future__ import annotations

import json
import os
import pstats
import subprocess
import sys

from click.testing import CliRunner

from aicpp_opt import PROJECT_ROOT
from aicpp_opt.cli import main

SMALL = str(PROJECT_ROOT / "instances" / "small_h200_16.json")
PLAN = str(PROJECT_ROOT / "tests" / "bad_inputs" / "good_plan.json")


def entry(args: list[str], runner: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    env = {**os.environ, "COLUMNS": "100"}
    return subprocess.run(
        [sys.executable, *runner, "-m", "aicpp_opt.cli", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        cwd=PROJECT_ROOT,
    )


def test_entry_prints_and_writes_what_main_does(tmp_path):
    got = entry(["evaluate", SMALL, PLAN, "--json", str(tmp_path / "a.json")])
    same = CliRunner().invoke(
        main, ["evaluate", SMALL, PLAN, "--json", str(tmp_path / "b.json")], env={"COLUMNS": "100"}
    )
    assert got.returncode == same.exit_code == 0, got.stderr
    assert got.stdout.replace("a.json", "b.json") == same.stdout
    assert json.loads((tmp_path / "a.json").read_text()) == json.loads(
        (tmp_path / "b.json").read_text()
    )


def test_entry_keeps_the_exit_code_and_the_one_error_line():
    got = entry(["evaluate", SMALL, str(PROJECT_ROOT / "no_such_plan.json")])
    assert got.returncode == 2
    lines = [line for line in got.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: plan"), got.stderr


def test_entry_under_a_profiler_lets_it_write_its_profile(tmp_path):
    profile = tmp_path / "run.prof"
    got = entry(["evaluate", SMALL, PLAN], ("-m", "cProfile", "-o", str(profile)))
    assert got.returncode == 0, got.stderr
    assert "aicpp_opt" in str(pstats.Stats(str(profile)).stats)
