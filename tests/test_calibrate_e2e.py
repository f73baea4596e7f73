"""A user with new hardware, end to end: measurements written as CSVs (here the h200_sxm
tables' own measured points, those of the framework both solves run, so the numbers are real)
-> `calibrate kernels --source` into a folder outside the checkout -> an instance naming the
new system -> `--tables DIR solve`. The plan and its evaluated numbers must equal those of the
same instance on h200_sxm, the reserves and the memory-op model must be carried, and without
NCCL/DeepEP measurements the ops priced by the link model are named in a warning."""

from __future__ import annotations

import csv
import json
import subprocess

import pytest
from click.testing import CliRunner

from aicpp_opt.cli import main
from aicpp_opt.costs import CostModel
from aicpp_opt.costs.store import COST_TABLES_DIR
from aicpp_opt.paths import use_tables
from aicpp_opt.spec.model import load_model
from calibrate.ops import OPS

MODEL = load_model("qwen3-30b-a3b")
SHIPPED = COST_TABLES_DIR / "h200_sxm"
TP = 2
A = MODEL.attention
HEADS = {"num_heads": {A.num_heads // TP}, "num_kv_heads": {A.num_kv_heads // TP}, "window": {0}}
SHAPE = {"hidden": {MODEL.hidden_size}, "num_experts": {MODEL.moe.num_experts}}
KEEP = {
    "gemm": {"dtype": {MODEL.dtypes.weights}},
    "attention_generation": HEADS,
    "attention_context": HEADS,
    "moe": SHAPE,
    "all_reduce": {},
    "custom_all_reduce": {},
    "moe_dispatch": SHAPE,
    "moe_combine": SHAPE,
}
"""The ops the instance below needs, and the series of the shipped tables kept for them."""
COMM = ("all_reduce", "custom_all_reduce", "moe_dispatch", "moe_combine")
FRAMEWORK = "sglang"


def write_measurements(folder, ops) -> int:
    """The kept series' measured points as one long CSV per op, and h200_sxm's system.json."""
    folder.mkdir()
    shipped = CostModel.load("h200_sxm", framework=FRAMEWORK)
    rows = 0
    for op in ops:
        src = OPS[op]
        doc = json.loads(shipped.table(op).path.read_text())
        columns = ["op", src.load_axis, *src.axes, "latency_ms"]
        with (folder / f"{op}.csv").open("w", newline="") as f:
            w = csv.writer(f)
            w.writerow(columns)
            for s in doc["series"]:
                if all(s["key"][a] in v for a, v in KEEP[op].items()):
                    for x, ms in zip(s["x"], s["latency_ms"], strict=True):
                        w.writerow([op, x, *(s["key"][a] for a in src.axes), ms])
                        rows += 1
    (folder / "system.json").write_text((SHIPPED / "system.json").read_text())
    return rows


def instance(system: str) -> dict:
    return {
        "name": f"eight_{system}",
        "cluster": {
            "pools": [
                {
                    "name": "lab",
                    "system": system,
                    "gpus": 8,
                    "topology": [{"kind": "switch", "size": 8, "bw_GBps": 450, "latency_ns": 250}],
                }
            ]
        },
        "model": MODEL.name,
        "workloads": [{"preset": "chat", "slo": "relaxed"}],
        "search": {"modes": ["agg"], "tp_values": [TP], "max_ep": 8, "max_batch_per_gpu": 128},
    }


def solve(tmp_path, system: str, tables=None) -> tuple[dict, str]:
    path = tmp_path / f"{system}.json"
    path.write_text(json.dumps(instance(system)))
    out = tmp_path / f"{system}_plan.json"
    args = ["--tables", str(tables)] if tables else []
    solve_args = ["--framework", FRAMEWORK, "--no-replay", "--json", str(out)]
    result = CliRunner().invoke(main, [*args, "solve", str(path), *solve_args])
    assert result.exit_code == 0, result.output
    return json.loads(out.read_text()), result.output


def calibrate(src, out) -> None:
    result = CliRunner().invoke(
        main,
        ["calibrate", "kernels", "--system", "lab_h200", "--source", str(src), "--out", str(out)],
    )
    assert result.exit_code == 0, result.output


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    return solve(tmp_path_factory.mktemp("ref"), "h200_sxm")[0]


def test_new_system_from_csv_solves_like_the_system_it_measured(tmp_path, reference):
    assert write_measurements(tmp_path / "src", KEEP) > 1000
    tables = tmp_path / "tables"
    calibrate(tmp_path / "src", tables)
    try:
        use_tables(tables)
        lab = CostModel.load("lab_h200").system
    finally:
        use_tables(None)
    h200 = CostModel.load("h200_sxm").system
    assert lab.runtime_reserve_bytes == h200.runtime_reserve_bytes > 0
    assert lab.nccl_mem_bytes == h200.nccl_mem_bytes
    assert (
        (lab.mem_bw_scaling, lab.mem_latency) == (h200.mem_bw_scaling, h200.mem_latency) != (0, 0)
    )
    mine, output = solve(tmp_path, "lab_h200", tables)
    assert mine["plan"] == reference["plan"]
    for key, value in reference["evaluated"].items():
        assert mine["evaluated"][key] == pytest.approx(value, rel=1e-9), key
    assert mine["warnings"] == reference["warnings"]
    assert "attention TP all-reduce" not in output  # measured by NCCL: no warning
    status = subprocess.run(["git", "status", "--porcelain"], capture_output=True, text=True)
    assert "lab_h200" not in status.stdout  # nothing written into the checkout


def test_missing_comm_measurements_are_named(tmp_path, reference):
    write_measurements(tmp_path / "src", [op for op in KEEP if op not in COMM])
    calibrate(tmp_path / "src", tmp_path / "tables")
    data, output = solve(tmp_path, "lab_h200", tmp_path / "tables")
    warning = next(w for w in data["warnings"] if w.startswith("priced without measurements"))
    assert "attention TP all-reduce" in warning and "MoE TP all-reduce" in warning
    assert not any("attention TP all-reduce" in w for w in reference["warnings"])
    assert "priced without measurements" in output
