"""`pip install .` gives a working tool: the wheel carries cost_tables/, models/ and
instances/, and the installed copy solves a shipped instance by name from a folder outside the
checkout, reading only its own package data."""

from __future__ import annotations

import json
import subprocess
import sys

from aicpp_opt import PROJECT_ROOT

RUN = """
import sys
sys.path.insert(0, {site!r})
import aicpp_opt, aicpp_opt.paths as paths
assert aicpp_opt.__file__.startswith({site!r}), aicpp_opt.__file__
print("DATA", paths.data_dir("cost_tables"), paths.data_dir("models"), paths.data_dir("instances"))
from aicpp_opt.cli import main
main()
"""


def test_installed_wheel_solves_outside_the_checkout(tmp_path):
    wheels, site, elsewhere = tmp_path / "wheels", tmp_path / "site", tmp_path / "elsewhere"
    elsewhere.mkdir()
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run(
        [*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", wheels, PROJECT_ROOT],
        check=True,
        timeout=120,
        cwd=tmp_path,
    )
    (wheel,) = wheels.glob("aicpp_opt-*.whl")
    subprocess.run(
        [*pip, "install", "--no-deps", "--no-index", "--target", site, wheel],
        check=True,
        timeout=120,
    )
    args = ["solve", "small_h200_16", "--mode", "agg", "--no-replay", "--json", "plan.json"]
    code = RUN.format(site=str(site))
    out = subprocess.run(
        [sys.executable, "-c", code, *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=elsewhere,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    data_line = next(line for line in out.stdout.splitlines() if line.startswith("DATA"))
    for folder in data_line.split()[1:]:
        assert folder.startswith(str(site / "aicpp_opt" / "_data")), data_line
    plan = json.loads((elsewhere / "plan.json").read_text())
    assert plan["plan"]["mode"] == "agg" and plan["evaluated"]["throughput_tok_s"] > 0
    shipped = {p.name for p in (PROJECT_ROOT / "models").glob("*.json")}
    assert {p.name for p in (site / "aicpp_opt" / "_data" / "models").glob("*.json")} == shipped
