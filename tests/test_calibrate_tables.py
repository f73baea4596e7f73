"""Cost tables built from the package's real rows: units, coverage, provenance and
byte-identical reruns."""

import json

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("aiconfigurator_core")

from calibrate.aic import find_package, versions  # noqa: E402
from calibrate.kernels import calibrate_system  # noqa: E402


@pytest.fixture(scope="module")
def pkg():
    return find_package()


@pytest.fixture(scope="module")
def built(tmp_path_factory, pkg):
    root = tmp_path_factory.mktemp("tables")
    calibrate_system(pkg, "h200_sxm", root)
    return root / "h200_sxm"


def _table(built, op):
    sel = json.loads((built / "selection.json").read_text())[op]
    return json.loads((built / sel["backend"] / f"{op}.json").read_text())


def test_deepseek_v32_tables_exist(built):
    for op in (
        "gemm",
        "dsa_generation",
        "dsa_context",
        "moe",
        "all_reduce",
        "all_gather",
        "reduce_scatter",
        "alltoall",
        "custom_all_reduce",
        "moe_dispatch",
        "moe_combine",
    ):
        doc = _table(built, op)
        assert doc["series"], op
        assert doc["error"]["n_heldout"] > 0, op
        assert doc["provenance"]["package"] == "aiconfigurator-core"


def test_nccl_message_sizes_become_bytes_and_ms_stay_ms(built, pkg):
    """all_reduce rows: fp16 element counts x 2 = bytes; latency copied in ms."""
    (path, *_) = versions(pkg, "h200_sxm", "comm", "nccl", "nccl_perf.parquet")
    raw = pd.read_parquet(path)
    raw = raw[(raw.op_name == "all_reduce") & (raw.nccl_dtype == "half") & (raw.num_gpus == 8)]
    raw = raw.sort_values("message_size")
    (series,) = [s for s in _table(built, "all_reduce")["series"] if s["key"]["num_gpus"] == 8]
    assert series["x"] == (raw.message_size * 2).tolist()
    assert np.allclose(series["latency_ms"], raw.latency, rtol=1e-5)


def test_moe_keeps_every_measured_ep_tp_and_distribution(built, pkg):
    (path, *_) = versions(pkg, "h200_sxm", "moe", "sglang", "moe_perf.parquet")
    raw = pd.read_parquet(path)
    raw = raw[(raw.hidden_size == 7168) & (raw.num_experts == 256) & (raw.moe_dtype == "fp8_block")]
    want = set(zip(raw.moe_tp_size, raw.moe_ep_size, raw.distribution, strict=True))
    doc = _table(built, "moe")
    got = {
        (s["key"]["tp"], s["key"]["ep"], s["key"]["distribution"])
        for s in doc["series"]
        if s["key"]["num_experts"] == 256 and s["key"]["dtype"] == "fp8_block"
    }
    assert got == want
    assert {"balanced", "power_law_1.01"} <= {d for _, _, d in got}


def test_dsa_tables_have_both_kv_dtypes(built):
    for op in ("dsa_generation", "dsa_context"):
        kv = {s["key"]["kv_dtype"] for s in _table(built, op)["series"]}
        assert kv == {"bfloat16", "fp8"}


@pytest.mark.parametrize("op", ["dsa_generation", "alltoall"])
def test_pwl_breakpoints_are_measured_points(built, op):
    """Breakpoints sit at measured loads; their values are the measured ones, or (tables whose
    fit keeps the isotonic projection) non-decreasing values within the series' range."""
    doc = _table(built, op)
    raw = doc["fit"]["training"].startswith("raw")
    assert doc["fit"]["training"] in doc["fit"]["alternatives"]
    for s in doc["series"]:
        lookup = dict(zip(s["x"], s["latency_ms"], strict=True))
        assert set(s["pwl_x"]) <= set(lookup)
        if raw:
            assert all(lookup[x] == y for x, y in zip(s["pwl_x"], s["pwl_ms"], strict=True))
        else:
            assert np.all(np.diff(s["pwl_ms"]) >= 0)
            assert (
                min(s["latency_ms"]) <= min(s["pwl_ms"]) <= max(s["pwl_ms"]) <= max(s["latency_ms"])
            )


def test_fit_keeps_the_training_with_the_lower_held_out_p95(built):
    for op in ("gemm", "moe", "all_reduce"):
        doc = _table(built, op)
        alts = doc["fit"]["alternatives"]
        assert doc["error"]["p95_rel_err"] == min(a["p95_rel_err"] for a in alts.values())


def test_rerun_is_byte_identical(built, pkg, tmp_path):
    calibrate_system(pkg, "h200_sxm", tmp_path)
    first = sorted(p.relative_to(built) for p in built.rglob("*.json"))
    second = sorted(
        p.relative_to(tmp_path / "h200_sxm") for p in (tmp_path / "h200_sxm").rglob("*.json")
    )
    assert first == second
    for rel in first:
        assert (built / rel).read_bytes() == (tmp_path / "h200_sxm" / rel).read_bytes()
