"""Every ``--json`` output is strict JSON from the one serialiser: `evaluate --json` on every
shipped plan and on the plan `solve` returns (the queueing code's numpy bools once crashed it),
and the serialiser's conversions, checked against hand-written expectations."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from enum import StrEnum
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from aicpp_opt import PROJECT_ROOT
from aicpp_opt.cli import main
from aicpp_opt.jsonio import dumps_json

PLANS = sorted((PROJECT_ROOT / "instances" / "plans").glob("*.json"))
NVL72 = str(PROJECT_ROOT / "instances" / "h200_nvl72.json")
SMALL = str(PROJECT_ROOT / "instances" / "small_h200_16.json")


def strict(path: Path):
    """Parse as strict JSON: NaN / Infinity are not JSON."""

    def reject(token):
        raise ValueError(f"{token} in {path}")

    return json.loads(path.read_text(), parse_constant=reject)


@pytest.mark.parametrize("plan", PLANS, ids=[p.stem for p in PLANS])
def test_evaluate_json_on_every_shipped_plan(plan, tmp_path):
    out = tmp_path / "ev.json"
    result = CliRunner().invoke(main, ["evaluate", NVL72, str(plan), "--json", str(out)])
    data = strict(out)
    # exit 3 exactly when the written result says the plan breaks a check
    assert result.exit_code == (0 if data["feasible"] else 3), result.output
    assert data["feasible"] == all(f["ok"] for f in data["flags"])
    assert data["feasible"], f"shipped example {plan.name} breaks: {data['flags']}"


def test_evaluate_json_on_the_plan_solve_returns(tmp_path):
    solved = tmp_path / "solved.json"
    result = CliRunner().invoke(main, ["solve", SMALL, "--json", str(solved)])
    assert result.exit_code == 0, result.output
    outcome = strict(solved)
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps(outcome["plan"]))
    out = tmp_path / "ev.json"
    result = CliRunner().invoke(main, ["evaluate", SMALL, str(plan), "--json", str(out)])
    assert result.exit_code == 0, result.output
    data = strict(out)
    assert data["workloads"][0]["tpot_ms"]["p90"] == pytest.approx(
        outcome["evaluated"]["tpot_ms"], rel=1e-9
    )
    assert data["output_tps"] == pytest.approx(outcome["evaluated"]["throughput_tok_s"], rel=1e-9)
    assert data["feasible"] is True and all(f["ok"] is True for f in data["flags"])


class Colour(StrEnum):
    RED = "red"


def test_serialiser_makes_plain_strict_json():
    value = {
        "flag": np.bool_(True),
        "n": np.int64(7),
        "x": np.float32(0.5),
        "arr": np.array([1.5, 2.0]),
        "inf": math.inf,
        "nan": float("nan"),
        "enum": Colour.RED,
        "path": Path("/a/b"),
        "tuple": (1, 2),
        3: "int key",
    }
    assert json.loads(dumps_json(value)) == {
        "flag": True,
        "n": 7,
        "x": 0.5,
        "arr": [1.5, 2.0],
        "inf": None,
        "nan": None,
        "enum": "red",
        "path": "/a/b",
        "tuple": [1, 2],
        "3": "int key",
    }
    with pytest.raises(TypeError):
        dumps_json({"object": object()})


def test_a_bad_option_is_rejected_before_the_solver_loads():
    code = (
        "import sys; from aicpp_opt.cli import main; "
        f"code = main(['solve', {SMALL!r}, '--time-limit', '0'], standalone_mode=False); "
        "print(code, 'pyomo' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.split() == ["2", "False"], out.stdout + out.stderr
    assert out.stderr.strip().startswith("error: --time-limit:")


def test_simulate_json_is_strict_and_a_missed_slo_is_one_line_exit_3(tmp_path):
    """Overloaded (80 req/s on a decode side that serves about 40), the queue never drains:
    unfinished requests make the mean TPOT infinite, written as null."""
    plan = PROJECT_ROOT / "tests" / "bad_inputs" / "plan_breaks_tpot.json"
    out = tmp_path / "sim.json"
    args = ["simulate", SMALL, str(plan), "--duration", "30", "--rate", "80", "--json", str(out)]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 3, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("infeasible: SLO missed: chat-relaxed: TTFT")
    tpot = strict(out)["workloads"]["chat-relaxed"]["tpot_ms"]
    assert tpot["mean"] is None and tpot["p50"] > 0
