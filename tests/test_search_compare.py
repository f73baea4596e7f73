"""``compare`` end to end on a tiny instance: every workload tier and mode gets a row (a plan
or the reason it has none), and a plan's numbers are the evaluator's."""

from __future__ import annotations

import json

from click.testing import CliRunner

from aicpp_opt.cli import main

TINY = {
    "name": "tiny",
    "cluster": {
        "pools": [
            {
                "name": "h200",
                "system": "h200_sxm",
                "gpus": 4,
                "topology": [{"kind": "switch", "size": 4, "bw_GBps": 450, "latency_ns": 250}],
            }
        ]
    },
    "model": "qwen3-30b-a3b",
    "workloads": [{"preset": "chat", "slo": "relaxed"}],
    "search": {"tp_values": [1], "max_ep": 4, "max_micro_batches": 2, "max_batch_per_gpu": 8},
}


def test_compare_lists_every_tier_and_mode(tmp_path):
    path = tmp_path / "tiny.json"
    path.write_text(json.dumps(TINY))
    out = tmp_path / "compare.json"
    result = CliRunner().invoke(main, ["compare", str(path), "--json", str(out)])
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text())
    rows = {(r["workload"], r["mode"]) for r in data["plans"]}
    tiers = {"chat-relaxed", "chat-interactive", "chat-strict"}
    assert rows == {(t, m) for t in tiers for m in ("agg", "pd", "afd", "afd+pd")}
    for r in data["plans"]:
        assert r["feasible"] == ("plan" in r) and (r["feasible"] or r["reason"])
    assert any(r["feasible"] for r in data["plans"])
    assert set(data["tightest_tpot_ms"]) == {"chat"}
