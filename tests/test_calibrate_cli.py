"""`aicpp-opt calibrate` commands: report records, and one-line errors with exit code 2."""

import json

import pytest
from click.testing import CliRunner

from aicpp_opt.cli import main

REQUIRED = {"system", "backend", "op", "median_rel_err", "p95_rel_err", "max_rel_err", "n_heldout"}


def test_report_json_has_one_record_per_table():
    result = CliRunner().invoke(main, ["calibrate", "report", "--system", "h200_sxm", "--json"])
    assert result.exit_code == 0, result.output
    recs = json.loads(result.output)
    assert {r["op"] for r in recs} >= {"gemm", "moe", "dsa_generation", "all_reduce"}
    assert all(set(r) >= REQUIRED for r in recs)


def test_report_table_lists_ops():
    result = CliRunner().invoke(main, ["calibrate", "report", "--system", "h200_sxm"])
    assert result.exit_code == 0
    assert "dsa_generation" in result.output


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["calibrate", "report", "--system", "nope"], "no cost tables for 'nope'; valid:"),
        (["calibrate", "kernels", "--system", "nope"], "unknown system 'nope'; valid:"),
        (
            ["calibrate", "kernels", "--system", "h200_sxm", "--backend", "tgi"],
            "unknown backend 'tgi'; valid:",
        ),
    ],
)
def test_bad_input_exits_2_with_one_line(args, needle, tmp_path):
    if args[1] == "kernels":
        pytest.importorskip("aiconfigurator_core")
        args = [*args, "--out", str(tmp_path)]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2
    assert needle in result.output
    assert len(result.output.strip().splitlines()) == 1
