"""Measured NCCL collective latencies from aiconfigurator-core, for calibration and
benchmarks only (never imported at solve time).

aiconfigurator's ``NCCL`` op passes ``message_size`` as an element count (tokens x hidden)
with the dtype given by ``nccl_dtype`` (``half`` = 2 bytes, ``int8`` = 1), the full buffer per
rank as in nccl-tests; ``latency`` is in ms. The table version is the system spec's
``misc.nccl_version``.
"""

from __future__ import annotations

from importlib import resources

from aicpp_opt.errors import InputError

DTYPE_BYTES = {"half": 2, "int8": 1}


def load(system: str, dtype: str = "half") -> list[tuple[str, int, float, float]]:
    """(op, num_gpus, bytes, seconds) rows, the median over repeated measurements."""
    import pandas as pd
    import yaml

    root = resources.files("aiconfigurator_core") / "systems"
    spec_path = root / f"{system}.yaml"
    if not spec_path.is_file():
        raise InputError("system", f"aiconfigurator-core has no system {system!r}")
    version = (yaml.safe_load(spec_path.read_text()).get("misc") or {}).get("nccl_version")
    path = root / "data" / system / "comm" / "nccl" / str(version) / "nccl_perf.parquet"
    if not version or not path.is_file():
        raise InputError("system", f"aiconfigurator-core has no NCCL table for {system!r}")
    df = pd.read_parquet(str(path))
    df = df[df.nccl_dtype == dtype]
    med = df.groupby(["op_name", "num_gpus", "message_size"]).latency.median()
    return [
        (op, int(n), float(ms) * DTYPE_BYTES[dtype], float(lat) * 1e-3)
        for (op, n, ms), lat in med.items()
    ]
