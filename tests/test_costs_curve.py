"""Runtime curves from checked-in tables: interpolation across grid axes against the
measured series, the extrapolation policy, and the error paths."""

import json
import math
import sys

import numpy as np
import pytest

from aicpp_opt.costs import CostModel
from aicpp_opt.costs.store import COST_TABLES_DIR
from aicpp_opt.errors import InputError

SYSTEM = "h200_sxm"


@pytest.fixture(scope="module")
def cm():
    return CostModel.load(SYSTEM)


def _series(cm, op, **key):
    doc = json.loads(cm.table(op).path.read_text())
    (s,) = [s for s in doc["series"] if all(s["key"][k] == v for k, v in key.items())]
    return np.array(s["x"], float), np.array(s["latency_ms"]) * 1e-3


def test_measured_point_is_returned_exactly(cm):
    x, y = _series(
        cm, "dsa_generation", num_heads=16, kv_dtype="fp8", context=4096, gemm_dtype="fp8_block"
    )
    c = cm.curve("dsa_generation", num_heads=16, kv_dtype="fp8", context=4096)
    for xi, yi in zip(x, y, strict=True):
        lat = c.eval(xi)
        assert lat.seconds == pytest.approx(yi) and not lat.extrapolated
    assert c.x_range == (x[0], x[-1])


def test_interpolation_between_context_series_is_linear_in_log(cm):
    lo = _series(
        cm, "dsa_generation", num_heads=16, kv_dtype="fp8", context=4096, gemm_dtype="fp8_block"
    )
    hi = _series(
        cm, "dsa_generation", num_heads=16, kv_dtype="fp8", context=8192, gemm_dtype="fp8_block"
    )
    ctx = 5000
    f = (math.log(ctx) - math.log(4096)) / (math.log(8192) - math.log(4096))
    c = cm.curve("dsa_generation", num_heads=16, kv_dtype="fp8", context=ctx)
    for b in (1, 64, 1024):
        want = (1 - f) * np.interp(b, *lo) + f * np.interp(b, *hi)
        assert c.eval(b).seconds == pytest.approx(want)
    assert "interpolated over 2" in c.source


def test_interpolation_across_two_numeric_axes(cm):
    """gemm at n, k between grid values: bilinear in log n, log k over four measured series."""
    n, k = 3000, 6000
    fn = (math.log(n) - math.log(2560)) / (math.log(3072) - math.log(2560))
    fk = (math.log(k) - math.log(5120)) / (math.log(6144) - math.log(5120))
    c = cm.curve("gemm", n=n, k=k, dtype="fp8_block")
    m = 512
    want = 0.0
    for nv, wn in ((2560, 1 - fn), (3072, fn)):
        for kv, wk in ((5120, 1 - fk), (6144, fk)):
            want += wn * wk * np.interp(m, *_series(cm, "gemm", n=nv, k=kv, dtype="fp8_block"))
    assert c.eval(m).seconds == pytest.approx(want)
    assert c.pwl(m) == pytest.approx(want, rel=0.3)


def test_pwl_breakpoints_match_pwl_eval(cm):
    c = cm.curve(
        "moe",
        hidden=7168,
        inter=2048,
        topk=8,
        num_experts=256,
        tp=1,
        ep=8,
        distribution="power_law_1.01",
        dtype="fp8_block",
    )
    bx, by = c.breakpoints
    assert np.allclose([c.pwl(x) for x in bx], by)
    assert np.all(np.diff(bx) > 0)


def test_extrapolation_is_flagged_and_follows_policy(cm):
    c = cm.curve("all_reduce", num_gpus=8)
    lo, hi = c.x_range
    below, first = c.eval(lo / 2), c.eval(lo)
    assert below.extrapolated and below.seconds == first.seconds
    x, y = c.x, c.seconds
    slope = (y[-1] - y[-2]) / (x[-1] - x[-2])
    above = c.eval(2 * hi)
    assert above.extrapolated and above.seconds == pytest.approx(y[-1] + slope * hi)


@pytest.mark.parametrize(
    ("op", "axes", "needle"),
    [
        ("nope", {}, "unknown op 'nope'; valid:"),
        (
            "dsa_generation",
            {"num_heads": 256, "kv_dtype": "fp8", "context": 8},
            "num_heads: 256 outside the measured range [1, 128]",
        ),
        (
            "dsa_generation",
            {"num_heads": 16, "kv_dtype": "fp4", "context": 8},
            "kv_dtype: 'fp4' not measured; valid: ['bfloat16', 'fp8']",
        ),
        ("gemm", {"n": 1024}, "missing axis 'k'"),
        ("gemm", {"n": 1024, "k": 1024, "dtype": "fp8_block", "tp": 2}, "unknown axis 'tp'"),
    ],
)
def test_bad_queries_name_the_problem(cm, op, axes, needle):
    with pytest.raises(InputError) as err:
        cm.curve(op, **axes)
    assert needle in str(err.value)


def test_unknown_system_lists_valid_ones():
    with pytest.raises(InputError) as err:
        CostModel.load("a100_pcie")
    assert "valid:" in str(err.value) and SYSTEM in str(err.value)


def test_missing_table_file_is_named(tmp_path):
    (tmp_path / SYSTEM).mkdir()
    for name in ("system.json", "selection.json"):
        (tmp_path / SYSTEM / name).write_text((COST_TABLES_DIR / SYSTEM / name).read_text())
    cm = CostModel.load(SYSTEM, root=tmp_path)
    with pytest.raises(InputError, match="missing table"):
        cm.curve("all_reduce", num_gpus=8)


def test_runtime_imports_no_calibration_stack():
    import subprocess

    code = (
        "import sys; from aicpp_opt.costs import CostModel; "
        "CostModel.load('h200_sxm').curve('all_reduce', num_gpus=8).eval(1e6); "
        "print(any(m in sys.modules for m in ('aiconfigurator_core', 'pandas', 'pyarrow')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_system_spec_from_yaml_units(cm):
    assert cm.system.memory_bytes > 100e9
    assert cm.system.gpus_per_node == 8
    assert cm.system.nvlink_bw == 450e9
