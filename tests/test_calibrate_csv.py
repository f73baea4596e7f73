"""The user CSV source: real package rows written as CSV give the same table as the package
path; malformed input gives one line naming the file, row and column, exit code 2."""

import json
import shutil

import pandas as pd
import pytest
from click.testing import CliRunner

from aicpp_opt.cli import main

pytest.importorskip("aiconfigurator_core")

from calibrate.aic import find_package, versions  # noqa: E402
from calibrate.kernels import calibrate_system  # noqa: E402

SYSTEM_JSON = {
    "memory_bytes": 151397597184,
    "hbm_bw": 4.8e12,
    "gpus_per_node": 8,
    "nvlink_bw": 4.5e11,
    "scaleout_bw": 5e10,
    "runtime_reserve_bytes": 3758096384,
    "nccl_mem_bytes": {"2": 358612992, "8": 411041792},
}


@pytest.fixture
def folder(tmp_path):
    """NCCL all_reduce rows of h200_sxm (fp16 elements -> bytes) as a user CSV."""
    pkg = find_package()
    (path, *_) = versions(pkg, "h200_sxm", "comm", "nccl", "nccl_perf.parquet")
    raw = pd.read_parquet(path)
    raw = raw[(raw.op_name == "all_reduce") & (raw.nccl_dtype == "half")]
    src = tmp_path / "src"
    src.mkdir()
    pd.DataFrame(
        {
            "op": "all_reduce",
            "bytes": raw.message_size * 2,
            "num_gpus": raw.num_gpus,
            "latency_ms": raw.latency,
        }
    ).to_csv(src / "nccl.csv", index=False)
    (src / "system.json").write_text(json.dumps(SYSTEM_JSON))
    return src


def _run(*args):
    return CliRunner().invoke(main, ["calibrate", "kernels", *map(str, args)])


def test_csv_rows_give_the_package_table(folder, tmp_path):
    result = _run(
        "--system", "h200_sxm", "--source", folder, "--backend", "nccl", "--out", tmp_path / "csv"
    )
    assert result.exit_code == 0, result.output
    calibrate_system(find_package(), "h200_sxm", tmp_path / "pkg", backend="nccl")
    mine = json.loads((tmp_path / "csv/h200_sxm/nccl/all_reduce.json").read_text())
    theirs = json.loads((tmp_path / "pkg/h200_sxm/nccl/all_reduce.json").read_text())
    assert mine["series"] == theirs["series"]
    assert mine["error"] == theirs["error"]
    assert mine["provenance"]["package"] == "user CSV"


@pytest.mark.parametrize(
    ("row", "needle"),
    [
        ("all_reduce,x,8,0.01", "bad.csv:2 bytes: 'x' is not a number"),
        ("all_reduce,1024,,0.01", "bad.csv:2 num_gpus: empty"),
        ("allreduce,1024,8,0.01", "bad.csv:2 op: unknown op 'allreduce'; valid:"),
        ("all_reduce,1024,8,-1", "bad.csv:2 latency_ms: '-1' is not a positive latency"),
    ],
)
def test_malformed_row_is_named(folder, tmp_path, row, needle):
    (folder / "bad.csv").write_text("op,bytes,num_gpus,latency_ms\n" + row + "\n")
    result = _run("--system", "x", "--source", folder, "--out", tmp_path)
    assert result.exit_code == 2
    assert needle in result.output and len(result.output.strip().splitlines()) == 1


def test_system_json_field_is_named(folder, tmp_path):
    (folder / "system.json").write_text(json.dumps({**SYSTEM_JSON, "hbm_bw": "fast"}))
    result = _run("--system", "x", "--source", folder, "--out", tmp_path)
    assert result.exit_code == 2 and "system.json.hbm_bw" in result.output


def test_missing_folder_is_named(tmp_path):
    result = _run("--system", "x", "--source", tmp_path / "nope", "--out", tmp_path)
    assert result.exit_code == 2 and "is not a folder" in result.output


def test_empty_folder_is_named(folder, tmp_path):
    for p in folder.glob("*.csv"):
        p.unlink()
    result = _run("--system", "x", "--source", folder, "--out", tmp_path)
    assert result.exit_code == 2 and "no *.csv files" in result.output
    shutil.rmtree(folder)
