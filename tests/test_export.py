"""``aicpp-opt export``: flags checked against the frameworks' documented argument names,
derivations checked on hand-worked plans, refusals, the Dynamo manifest, the generated scripts
run under bash with stub programs, and the command line."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from aicpp_opt import PROJECT_ROOT
from aicpp_opt.cli import main
from aicpp_opt.errors import InputError
from aicpp_opt.report.export.build import build_export
from aicpp_opt.report.export.inputs import hf_id, read_export_input
from aicpp_opt.report.export.launch import Layout, layout
from aicpp_opt.report.export.render import files
from aicpp_opt.spec.model import load_model

PLANS = PROJECT_ROOT / "instances" / "plans"
NVL72 = "h200_nvl72"

# ------------------------------------------------------------- documented argument names
# A flag or value the exporter writes must appear here, copied from the page named beside
# it; an invented or misspelt flag fails test_every_written_flag_is_documented.

SGLANG_SERVER_ARGS = {
    # sgl-project/sglang docs/advanced_features/server_arguments.md @004813e1
    "--model-path", "--host", "--port", "--tp-size", "--dp-size", "--enable-dp-attention",
    "--ep-size", "--moe-a2a-backend", "--deepep-mode", "--chunked-prefill-size",
    "--max-prefill-tokens", "--prefill-max-requests", "--max-running-requests",
    "--cuda-graph-max-bs", "--enable-mixed-chunk", "--enable-two-batch-overlap",
    "--disaggregation-mode", "--disaggregation-transfer-backend",
    "--disaggregation-bootstrap-port", "--speculative-algorithm", "--speculative-num-steps",
    "--speculative-eagle-topk", "--speculative-num-draft-tokens", "--dist-init-addr",
    "--nnodes", "--node-rank", "--served-model-name", "--skip-tokenizer-init",
}  # fmt: skip
SGLANG_CHOICES = {
    # same page, "Options" column
    "--moe-a2a-backend": {"none", "deepep", "mooncake", "mori", "nixl", "ascend_fuseep"},
    "--deepep-mode": {"normal", "low_latency", "auto"},
    "--disaggregation-mode": {"null", "prefill", "decode"},
    "--disaggregation-transfer-backend": {"mooncake", "nixl", "ascend", "fake"},
    "--speculative-algorithm": {"EAGLE", "EAGLE3", "NEXTN", "STANDALONE", "NGRAM"},
}
SGLANG_ENV = {
    # sgl-project/sglang docs/references/environment_variables.md @00126648; CUDA's own
    "SGLANG_DEEPEP_NUM_MAX_DISPATCH_TOKENS_PER_RANK", "CUDA_VISIBLE_DEVICES",
}  # fmt: skip
SGLANG_ROUTER_ARGS = {
    # sgl-project/sglang docs/advanced_features/router.md @046ed665
    "--pd-disaggregation", "--prefill", "--decode", "--worker-urls", "--host", "--port",
}  # fmt: skip
VLLM_SERVE_ARGS = {
    # vllm-project/vllm vllm/engine/arg_utils.py @99d7eb5d
    "--model", "--tensor-parallel-size", "--data-parallel-size", "--data-parallel-size-local",
    "--data-parallel-start-rank", "--data-parallel-address", "--data-parallel-rpc-port",
    "--enable-expert-parallel", "--all2all-backend", "--enable-dbo", "--max-num-seqs",
    "--max-num-batched-tokens", "--enable-chunked-prefill", "--speculative-config",
    "--kv-transfer-config",
    # vllm/entrypoints/openai/cli_args.py @00522333 (FrontendArgs)
    "--host", "--port",
    # docs/serving/expert_parallel_deployment.md @01702569
    "--headless",
}  # fmt: skip
VLLM_CHOICES = {
    # vllm-project/vllm vllm/config/parallel.py @00193b82, All2AllBackend
    "--all2all-backend": {
        "naive", "pplx", "deepep_high_throughput", "deepep_low_latency", "deepep_v2",
        "mori_high_throughput", "mori_low_latency", "nixl_ep", "allgather_reducescatter",
        "flashinfer_all2allv", "flashinfer_nvlink_two_sided", "flashinfer_nvlink_one_sided",
    },
}  # fmt: skip
VLLM_SPEC_METHODS = {"deepseek_mtp", "mtp"}  # vllm/config/speculative.py @002e77c1
VLLM_ENV = {
    # vllm-project/vllm docs/features/nixl_connector_usage.md @026c83f9; CUDA's own
    "VLLM_NIXL_SIDE_CHANNEL_HOST", "VLLM_NIXL_SIDE_CHANNEL_PORT", "CUDA_VISIBLE_DEVICES",
}  # fmt: skip
VLLM_PROXY_ARGS = {
    # vllm-project/vllm docs/features/nixl_connector_usage.md @026c83f9 (toy_proxy_server.py)
    "--port", "--prefiller-hosts", "--prefiller-ports", "--decoder-hosts", "--decoder-ports",
}  # fmt: skip
DYNAMO_VLLM_ARGS = VLLM_SERVE_ARGS | {
    # ai-dynamo/dynamo examples/backends/vllm/deploy/v1beta1/disagg.yaml @14a3b0d9
    "--disaggregation-mode",
}
DYNAMO_SERVICE_FIELDS = {
    # ai-dynamo/dynamo docs/kubernetes/api-reference.md @0157f172, v1alpha1 service spec
    "componentType", "subComponentType", "replicas", "resources", "multinode", "envs",
    "envFromSecret", "extraPodSpec",
}  # fmt: skip


# ------------------------------------------------------------------------------ helpers


def plan_file(tmp_path: Path, data: dict, name: str = "plan.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(data))
    return path


def shipped(name: str) -> dict:
    return json.loads((PLANS / name).read_text())


def export(path: Path, fmt: str, instance: str = NVL72, backend: str | None = None):
    inp = read_export_input(path, instance, None)
    ex = build_export(inp, fmt, backend)
    return ex, files(inp, ex)


def case_commands(script: str) -> dict[str, list[str]]:
    """Each ``case`` entry of a launch script as shell words (bash's own splitting rules)."""
    out, key, body = {}, None, []
    for line in script.splitlines():
        start = re.match(r"^  (\d+/\d+)\)", line)
        if start:
            key, body = start[1], []
        elif key is not None and line.strip() == ";;":
            out[key] = shlex.split("\n".join(body).replace("\\\n", " "))
            key = None
        elif key is not None:
            body.append(line)
    return out


def router_words(script: str) -> list[str]:
    body = script.split("set -euo pipefail\n", 1)[1]
    return shlex.split(body.replace("\\\n", " "))


def parse(words: list[str]) -> tuple[dict[str, str], list[str], dict[str, list[list[str]]]]:
    """(environment, program words, flag -> list of its value lists) of ``exec ...`` words."""
    words = words[1:] if words[0] == "exec" else words
    env: dict[str, str] = {}
    if words[0] == "env":
        words = words[1:]
        while "=" in words[0] and not words[0].startswith("-"):
            name, value = words.pop(0).split("=", 1)
            env[name] = value
    first = next(i for i, w in enumerate(words) if w.startswith("--"))
    flags: dict[str, list[list[str]]] = {}
    current: list[str] = []
    for w in words[first:]:
        if w.startswith("--"):
            current = []
            flags.setdefault(w, []).append(current)
        else:
            current.append(w)
    return env, words[:first], flags


def value(flags: dict[str, list[list[str]]], name: str) -> str | None:
    """The single value of a flag given once (None for a switch)."""
    (values,) = flags[name]
    return values[0] if values else None


# ---------------------------------------------------------------------------- host layout


@pytest.mark.parametrize(
    ("gpus", "attn_tp", "host", "expected"),
    [
        (32, 1, 8, Layout(4, 8, 1)),  # wide EP decode: four full hosts
        (16, 8, 8, Layout(2, 8, 1)),  # one TP8 group per host
        (12, 1, 8, Layout(2, 6, 1)),  # not a multiple of a host: two hosts of six
        (8, 8, 8, Layout(1, 8, 1)),
        (4, 1, 8, Layout(1, 4, 2)),  # two replicas share a host
        (16, 16, 8, Layout(2, 8, 1)),  # a TP16 group spans two whole hosts
        (12, 4, 8, Layout(3, 4, 1)),  # 6 per host would split a TP4 group
    ],
)
def test_layout_hand_cases(gpus, attn_tp, host, expected):
    assert layout(gpus, attn_tp, host) == expected


def test_checkpoint_id_from_the_model_file():
    assert hf_id(load_model("deepseek-v3.2")) == "deepseek-ai/DeepSeek-V3.2"
    assert hf_id(load_model("qwen3-235b-a22b")) == "Qwen/Qwen3-235B-A22B"


# ---------------------------------------------------------------- hand-worked derivations


def test_sglang_pd_plan(tmp_path):
    """nvl72_pd: prefill 4 x (attn TP1 x DP8, EP8), batch 1, chunk 8192; decode 1 x (DP32,
    EP32) at 64 sequences per GPU, four 8-GPU hosts."""
    _, out = export(PLANS / "nvl72_pd.json", "sglang")
    prefill = case_commands(out["prefill.sh"])
    assert sorted(prefill) == ["0/0", "1/0", "2/0", "3/0"]
    _, program, f = parse(prefill["1/0"])
    assert program == ["python", "-m", "sglang.launch_server"]
    assert value(f, "--tp-size") == "8" and value(f, "--dp-size") == "8"
    assert value(f, "--ep-size") == "8" and "--enable-dp-attention" in f
    assert value(f, "--moe-a2a-backend") == "deepep" and value(f, "--deepep-mode") == "normal"
    assert value(f, "--chunked-prefill-size") == "65536"  # 1 x 8192 per rank x 8 ranks
    assert value(f, "--max-prefill-tokens") == "8192"
    assert value(f, "--prefill-max-requests") == "1"
    assert value(f, "--disaggregation-mode") == "prefill"
    assert value(f, "--disaggregation-bootstrap-port") == "8998"
    assert "--nnodes" not in f and "--max-running-requests" not in f
    decode = case_commands(out["decode.sh"])
    assert sorted(decode) == ["0/0", "0/1", "0/2", "0/3"]
    for node in range(4):
        env, _, f = parse(decode[f"0/{node}"])
        assert value(f, "--node-rank") == str(node) and value(f, "--nnodes") == "4"
        assert value(f, "--dist-init-addr") == "${DECODE_0_HOST:?}:5000"
        assert value(f, "--tp-size") == "32" and value(f, "--dp-size") == "32"
        assert value(f, "--ep-size") == "32" and value(f, "--deepep-mode") == "low_latency"
        assert value(f, "--max-running-requests") == "2048"  # 64 per rank x 32 ranks
        assert value(f, "--cuda-graph-max-bs") == "64"
        assert env == {}  # 64 tokens per rank fit DeepEP's default 128
    _, program, f = parse(router_words(out["router.sh"]))
    assert program == ["python", "-m", "sglang_router.launch_router"]
    assert "--pd-disaggregation" in f
    assert f["--prefill"] == [[f"http://${{PREFILL_{i}_HOST:?}}:30000", "8998"] for i in range(4)]
    assert f["--decode"] == [["http://${DECODE_0_HOST:?}:30000"]]


def test_vllm_pd_plan():
    _, out = export(PLANS / "nvl72_pd.json", "vllm")
    env, program, f = parse(case_commands(out["prefill.sh"])["0/0"])
    assert program == ["vllm", "serve", "${MODEL_PATH}"]
    assert value(f, "--tensor-parallel-size") == "1" and value(f, "--data-parallel-size") == "8"
    assert "--enable-expert-parallel" in f
    assert value(f, "--all2all-backend") == "deepep_high_throughput"
    assert value(f, "--max-num-seqs") == "1" and value(f, "--max-num-batched-tokens") == "8192"
    kv = json.loads(value(f, "--kv-transfer-config"))
    assert kv == {"kv_connector": "NixlConnector", "kv_role": "kv_both"}
    assert env["VLLM_NIXL_SIDE_CHANNEL_PORT"] == "5600"
    decode = case_commands(out["decode.sh"])
    _, _, head = parse(decode["0/0"])
    assert value(head, "--port") == "30000" and "--headless" not in head
    assert value(head, "--data-parallel-size-local") == "8"
    assert value(head, "--all2all-backend") == "deepep_low_latency"
    assert value(head, "--max-num-seqs") == "64"
    _, _, third = parse(decode["0/2"])
    assert value(third, "--data-parallel-start-rank") == "16" and "--headless" in third
    assert "--port" not in third
    assert value(third, "--data-parallel-address") == "${DECODE_0_HOST:?}"
    _, _, f = parse(router_words(out["router.sh"]))
    assert f["--prefiller-hosts"] == [[f"${{PREFILL_{i}_HOST:?}}" for i in range(4)]]
    assert f["--decoder-ports"] == [["30000"]]


def test_agg_plan_budgets_include_the_mixed_in_decode_batch():
    """nvl72_agg: 8 x (DP8, EP8), 6 sequences per GPU, 2048-token chunk per rank: SGLang and
    vLLM both take the decode batch from the step's token budget, so 2048 + 6 per rank."""
    _, out = export(PLANS / "nvl72_agg.json", "sglang")
    commands = case_commands(out["agg.sh"])
    assert len(commands) == 8
    _, _, f = parse(commands["7/0"])
    assert value(f, "--chunked-prefill-size") == str((2048 + 6) * 8)
    assert value(f, "--max-prefill-tokens") == "2054"
    assert value(f, "--max-running-requests") == "48" and "--enable-mixed-chunk" in f
    assert value(f, "--deepep-mode") == "auto" and "--disaggregation-mode" not in f
    _, _, r = parse(router_words(out["router.sh"]))
    assert r["--worker-urls"] == [[f"http://${{AGG_{i}_HOST:?}}:30000" for i in range(8)]]
    _, out = export(PLANS / "nvl72_agg.json", "vllm")
    _, _, f = parse(case_commands(out["agg.sh"])["0/0"])
    assert value(f, "--max-num-batched-tokens") == "2054" and value(f, "--max-num-seqs") == "6"
    assert "--kv-transfer-config" not in f and "router.sh" not in out
    assert "load balancer" in out["README.md"]


def mtp_plan() -> dict:
    """P/D whose decode is attn TP2 x DP8, EP16 at 40.5 sequences per GPU with 3 MTP drafts:
    ceil(40.5 x 2) = 81 sequences per rank, 81 x (1 + 3) = 324 dispatched tokens."""
    data = shipped("nvl72_pd.json")
    data["roles"][0]["replicas"] = 1
    data["roles"][0]["placement"][0]["gpus"] = 8
    data["roles"][1].update(
        shape={"attn_tp": 2, "attn_dp": 8, "moe_tp": 1, "moe_ep": 16},
        placement=[{"pool": "h200", "domain": 0, "gpus": 16}],
        batch_per_gpu=40.5,
        mtp=3,
    )
    return data


def test_mtp_sets_speculative_decoding_on_decode_and_prefill(tmp_path):
    path = plan_file(tmp_path, mtp_plan())
    _, out = export(path, "sglang")
    env, _, f = parse(case_commands(out["decode.sh"])["0/1"])
    assert value(f, "--tp-size") == "16" and value(f, "--dp-size") == "8"
    assert value(f, "--max-running-requests") == str(81 * 8)
    assert value(f, "--cuda-graph-max-bs") == "81"
    assert value(f, "--speculative-algorithm") == "EAGLE"
    assert value(f, "--speculative-num-steps") == "3"
    assert value(f, "--speculative-eagle-topk") == "1"
    assert value(f, "--speculative-num-draft-tokens") == "4"
    assert env["SGLANG_DEEPEP_NUM_MAX_DISPATCH_TOKENS_PER_RANK"] == "324"
    _, _, p = parse(case_commands(out["prefill.sh"])["0/0"])
    assert value(p, "--speculative-num-steps") == "3"  # prefill ships the draft's states
    _, out = export(path, "vllm")
    decode = case_commands(out["decode.sh"])
    _, _, f = parse(decode["0/1"])
    assert value(f, "--tensor-parallel-size") == "2"
    assert value(f, "--data-parallel-size-local") == "4"  # 8 GPUs per host / TP2
    assert value(f, "--data-parallel-start-rank") == "4"
    assert value(f, "--max-num-seqs") == "81"
    spec = json.loads(value(f, "--speculative-config"))
    assert spec == {"method": "deepseek_mtp", "num_speculative_tokens": 3}
    _, _, p = parse(case_commands(out["prefill.sh"])["0/0"])
    assert json.loads(value(p, "--speculative-config"))["method"] == "deepseek_mtp"


def test_two_micro_batches_turn_on_each_engines_overlap(tmp_path):
    data = shipped("nvl72_pd.json")
    data["roles"][1]["micro_batches"] = 2
    path = plan_file(tmp_path, data)
    _, out = export(path, "sglang")
    assert "--enable-two-batch-overlap" in parse(case_commands(out["decode.sh"])["0/0"])[2]
    assert "--enable-two-batch-overlap" not in parse(case_commands(out["prefill.sh"])["0/0"])[2]
    _, out = export(path, "vllm")
    assert "--enable-dbo" in parse(case_commands(out["decode.sh"])["0/0"])[2]


def test_replicas_smaller_than_a_host_share_it_on_their_own_gpus_and_ports(tmp_path):
    data = shipped("nvl72_agg.json")
    data["roles"][0].update(
        replicas=3,
        shape={"attn_tp": 1, "attn_dp": 4, "moe_tp": 1, "moe_ep": 4},
        placement=[{"pool": "h200", "domain": 0, "gpus": 12}],
    )
    _, out = export(plan_file(tmp_path, data), "sglang")
    commands = case_commands(out["agg.sh"])
    env1, _, f1 = parse(commands["1/0"])
    env2, _, f2 = parse(commands["2/0"])
    assert env1 == {"CUDA_VISIBLE_DEVICES": "4,5,6,7"} and value(f1, "--port") == "30001"
    assert env2 == {"CUDA_VISIBLE_DEVICES": "0,1,2,3"} and value(f2, "--port") == "30000"
    _, _, r = parse(router_words(out["router.sh"]))
    assert r["--worker-urls"] == [
        [
            "http://${AGG_0_HOST:?}:30000",
            "http://${AGG_0_HOST:?}:30001",
            "http://${AGG_1_HOST:?}:30000",
        ]
    ]


def test_hybrid_ep_runs_on_sglang_without_deepep_and_is_refused_by_vllm(tmp_path):
    data = shipped("nvl72_pd.json")
    data["roles"][1]["shape"] = {"attn_tp": 1, "attn_dp": 32, "moe_tp": 4, "moe_ep": 8}
    path = plan_file(tmp_path, data)
    ex, out = export(path, "sglang")
    _, _, f = parse(case_commands(out["decode.sh"])["0/0"])
    assert value(f, "--ep-size") == "8" and "--moe-a2a-backend" not in f
    assert any("hybrid" in n for n in ex.launches[1].args.notes)
    with pytest.raises(InputError) as err:
        export(path, "vllm")
    assert err.value.field == "roles[1].shape"


# ------------------------------------------------------------------------------ refusals


@pytest.mark.parametrize("fmt", ["sglang", "vllm", "dynamo"])
def test_afd_plan_is_refused_naming_the_afd_block(fmt):
    with pytest.raises(InputError) as err:
        export(PLANS / "nvl72_afd.json", fmt)
    assert err.value.field == "roles[1].afd"
    assert "attention-FFN split" in err.value.message and "--mode pd" in err.value.message


def _changed(tmp_path, **decode) -> Path:
    data = shipped("nvl72_pd.json")
    data["roles"][1].update(decode)
    return plan_file(tmp_path, data)


@pytest.mark.parametrize(
    ("change", "fmt", "field"),
    [
        ({"micro_batches": 3}, "sglang", "roles[1].micro_batches"),
        ({"micro_batches": 3}, "vllm", "roles[1].micro_batches"),
        (
            {"micro_batches": 2, "shape": {"attn_tp": 1, "attn_dp": 32, "moe_tp": 2, "moe_ep": 16}},
            "sglang",
            "roles[1].micro_batches",
        ),
        (
            {"shape": {"attn_tp": 16, "attn_dp": 2, "moe_tp": 1, "moe_ep": 32}},
            "vllm",
            "roles[1].shape.attn_tp",
        ),
    ],
)
def test_shapes_an_engine_cannot_run_are_refused(tmp_path, change, fmt, field):
    with pytest.raises(InputError) as err:
        export(_changed(tmp_path, **change), fmt)
    assert err.value.field == field


def test_a_tp_group_across_hosts_runs_on_sglang(tmp_path):
    path = _changed(tmp_path, shape={"attn_tp": 16, "attn_dp": 2, "moe_tp": 1, "moe_ep": 32})
    _, out = export(path, "sglang")
    _, _, f = parse(case_commands(out["decode.sh"])["0/3"])
    assert value(f, "--tp-size") == "32" and value(f, "--dp-size") == "2"


@pytest.mark.parametrize("fmt", ["sglang", "vllm", "dynamo"])
def test_mtp_on_a_model_without_mtp_layers_is_refused(tmp_path, fmt):
    inst = json.loads((PROJECT_ROOT / "instances" / "h200_nvl72.json").read_text())
    inst["model"] = "qwen3-235b-a22b"
    inst_path = plan_file(tmp_path, inst, "qwen.json")
    with pytest.raises(InputError) as err:
        export(_changed(tmp_path, mtp=1), fmt, instance=str(inst_path))
    assert err.value.field == "roles[1].mtp" and "no MTP layers" in err.value.message


def test_a_role_named_like_the_router_script_is_refused(tmp_path):
    inp = read_export_input(_changed(tmp_path, id="router"), NVL72, None)
    with pytest.raises(InputError) as err:
        files(inp, build_export(inp, "sglang"))
    assert err.value.field == "roles[1].id"


def test_unknown_format_and_misplaced_backend_are_refused():
    inp = read_export_input(PLANS / "nvl72_pd.json", NVL72, None)
    with pytest.raises(InputError) as err:
        build_export(inp, "trtllm")
    assert err.value.field == "--format"
    with pytest.raises(InputError) as err:
        build_export(inp, "sglang", "vllm")
    assert err.value.field == "--backend"


@pytest.mark.parametrize(("framework", "fmt", "says"), [
    ("vllm", "sglang", "priced for vllm"),
    (None, "vllm", "selection.json; pool h200: nccl, sglang, trtllm, vllm"),
])  # fmt: skip
def test_a_plan_priced_for_another_framework_is_warned_about(tmp_path, framework, fmt, says):
    data = shipped("nvl72_pd.json")
    if framework is not None:
        data["framework"] = framework
    ex, out = export(plan_file(tmp_path, data), fmt)
    assert len(ex.warnings) == 1 and says in ex.warnings[0]
    assert says in out["README.md"]
    data["framework"] = fmt
    assert export(plan_file(tmp_path, data), fmt)[0].warnings == ()


# ------------------------------------------------------------------------------- Dynamo


@pytest.mark.parametrize("backend", ["sglang", "vllm"])
def test_dynamo_manifest_has_one_service_per_role(tmp_path, backend):
    ex, out = export(plan_file(tmp_path, mtp_plan(), "mtp-pd.json"), "dynamo", backend=backend)
    doc = yaml.safe_load(out["deployment.yaml"])
    assert doc["apiVersion"] == "nvidia.com/v1alpha1" and doc["kind"] == "DynamoGraphDeployment"
    assert doc["metadata"]["name"] == "mtp-pd"
    spec = doc["spec"]
    assert spec["backendFramework"] == backend
    services = spec["services"]
    assert set(services) == {"Frontend", "prefill", "decode"}
    assert services["Frontend"]["componentType"] == "frontend"
    for name, (replicas, gpus, hosts) in {"prefill": (1, 8, 1), "decode": (1, 16, 2)}.items():
        svc = services[name]
        assert set(svc) <= DYNAMO_SERVICE_FIELDS
        assert svc["componentType"] == "worker" and svc["subComponentType"] == name
        assert svc["replicas"] == replicas
        nodes = svc.get("multinode", {"nodeCount": 1})["nodeCount"]
        assert nodes == hosts and int(svc["resources"]["limits"]["gpu"]) * nodes == gpus
        container = svc["extraPodSpec"]["mainContainer"]
        assert container["command"] == ["python3", "-m", f"dynamo.{backend}"]
        args = container["args"]
        # the operator adds the multi-host flags itself
        assert not {"--nnodes", "--node-rank", "--dist-init-addr"} & set(args)
        assert not {"--data-parallel-address", "--data-parallel-start-rank"} & set(args)
    decode_args = services["decode"]["extraPodSpec"]["mainContainer"]["args"]
    assert decode_args[decode_args.index("--disaggregation-mode") + 1] == "decode"
    if backend == "sglang":
        env = services["decode"]["envs"]
        assert env == [{"name": "SGLANG_DEEPEP_NUM_MAX_DISPATCH_TOKENS_PER_RANK", "value": "324"}]
    assert out.keys() == {"deployment.yaml", "README.md"}


def test_dynamo_backend_follows_the_plans_framework(tmp_path):
    data = shipped("nvl72_agg.json")
    data["framework"] = "vllm"
    _, out = export(plan_file(tmp_path, data), "dynamo")
    services = yaml.safe_load(out["deployment.yaml"])["spec"]["services"]
    assert services["agg"]["extraPodSpec"]["mainContainer"]["command"][-1] == "dynamo.vllm"
    assert "subComponentType" not in services["agg"] and services["agg"]["replicas"] == 8


# ----------------------------------------------------------- against the documented names


def written(out: dict[str, str], fmt: str):
    """(program, env, flags) of every command of an export."""
    if fmt == "dynamo":
        doc = yaml.safe_load(out["deployment.yaml"])
        for svc in doc["spec"]["services"].values():
            container = svc["extraPodSpec"]["mainContainer"]
            if "command" in container:
                env = {e["name"]: e["value"] for e in svc.get("envs", [])}
                _, _, flags = parse([*container["command"], *container["args"]])
                yield container["command"], env, flags
        return
    for name, text in out.items():
        if name == "router.sh":
            env, program, flags = parse(router_words(text))
            yield program, env, flags
        elif name.endswith(".sh"):
            for words in case_commands(text).values():
                env, program, flags = parse(words)
                yield program, env, flags


ALLOWED = {
    "sglang.launch_server": (SGLANG_SERVER_ARGS, SGLANG_CHOICES, SGLANG_ENV),
    "dynamo.sglang": (SGLANG_SERVER_ARGS, SGLANG_CHOICES, SGLANG_ENV),
    "sglang_router.launch_router": (SGLANG_ROUTER_ARGS, {}, set()),
    "serve": (VLLM_SERVE_ARGS, VLLM_CHOICES, VLLM_ENV),
    "dynamo.vllm": (DYNAMO_VLLM_ARGS, VLLM_CHOICES, VLLM_ENV),
}


@pytest.mark.parametrize("fmt", ["sglang", "vllm", "dynamo-sglang", "dynamo-vllm"])
def test_every_written_flag_is_documented(tmp_path, fmt):
    fmt, _, backend = fmt.partition("-")
    tbo = shipped("nvl72_pd.json")
    tbo["roles"][1]["micro_batches"] = 2
    plans = [PLANS / "nvl72_pd.json", PLANS / "nvl72_agg.json"]
    plans += [plan_file(tmp_path, mtp_plan(), "mtp.json"), plan_file(tmp_path, tbo, "tbo.json")]
    seen: set[str] = set()
    for path in plans:
        _, out = export(path, fmt, backend=backend or None)
        for program, env, flags in written(out, fmt):
            key = next((w for w in program if w in ALLOWED), None)
            if key is None:  # vLLM's NIXL proxy, run from a vLLM checkout
                assert program[-1].endswith("nixl_integration/toy_proxy_server.py")
                names, choices, env_names = VLLM_PROXY_ARGS, {}, set()
            else:
                names, choices, env_names = ALLOWED[key]
            assert set(flags) <= names, set(flags) - names
            assert set(env) <= env_names, set(env) - env_names
            for flag, values in flags.items():
                for words in values:
                    assert flag not in choices or words[0] in choices[flag], (flag, words)
            if "--speculative-config" in flags:
                method = json.loads(flags["--speculative-config"][0][0])["method"]
                assert method in VLLM_SPEC_METHODS
            seen |= set(flags)
    assert len(seen) > 10  # the check saw the commands, not an empty export


# ----------------------------------------------------------------- the scripts under bash


def run_script(tmp_path, script: Path, *args: str, **env: str):
    """Run a launch script with stub ``python`` and ``vllm`` on PATH that print their args."""
    stubs = tmp_path / "bin"
    stubs.mkdir(exist_ok=True)
    for prog in ("python", "vllm"):
        stub = stubs / prog
        stub.write_text(
            '#!/usr/bin/env bash\necho "$(basename "$0") $*"\n'
            'env | grep -E "^(CUDA|VLLM_NIXL)" | sort\n'
        )
        stub.chmod(0o755)
    full = {"PATH": f"{stubs}:{os.environ['PATH']}", **env}
    return subprocess.run(
        ["bash", str(script), *args], capture_output=True, text=True, env=full, check=False
    )


def test_scripts_run_the_command_of_the_replica_and_host_they_are_given(tmp_path):
    out_dir = tmp_path / "out"
    result = CliRunner().invoke(
        main,
        ["export", str(PLANS / "nvl72_pd.json"), "--format", "sglang", "--instance", NVL72,
         "--out", str(out_dir)],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    ran = run_script(tmp_path, out_dir / "decode.sh", "0", "2", DECODE_0_HOST="10.0.0.7")
    assert ran.returncode == 0, ran.stderr
    words = ran.stdout.split()
    assert words[:3] == ["python", "-m", "sglang.launch_server"]
    assert words[words.index("--node-rank") + 1] == "2"
    assert words[words.index("--dist-init-addr") + 1] == "10.0.0.7:5000"
    assert words[words.index("--model-path") + 1] == "deepseek-ai/DeepSeek-V3.2"
    custom = run_script(
        tmp_path, out_dir / "decode.sh", "0", "0", DECODE_0_HOST="h", MODEL_PATH="/ckpt"
    )
    assert "--model-path /ckpt" in custom.stdout
    missing = run_script(tmp_path, out_dir / "decode.sh", "0", "1")
    assert missing.returncode != 0 and "DECODE_0_HOST" in missing.stderr
    wrong = run_script(tmp_path, out_dir / "prefill.sh", "5", "0")
    assert wrong.returncode == 2 and "no replica/host 5/0" in wrong.stderr
    assert os.access(out_dir / "router.sh", os.X_OK)


def test_vllm_pd_scripts_need_this_hosts_address(tmp_path):
    out_dir = tmp_path / "out"
    CliRunner().invoke(
        main,
        ["export", str(PLANS / "nvl72_pd.json"), "--format", "vllm", "--instance", NVL72,
         "--out", str(out_dir)],
    )  # fmt: skip
    missing = run_script(tmp_path, out_dir / "prefill.sh", "1", "0")
    assert missing.returncode != 0 and "HOST_IP" in missing.stderr
    ran = run_script(tmp_path, out_dir / "prefill.sh", "1", "0", HOST_IP="10.0.1.2")
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.startswith("vllm serve deepseek-ai/DeepSeek-V3.2 --tensor-parallel-size 1")
    assert "VLLM_NIXL_SIDE_CHANNEL_HOST=10.0.1.2" in ran.stdout.splitlines()


# ------------------------------------------------------------------------- command line


def test_export_reads_the_instance_solve_recorded(tmp_path):
    record = {"instance": str(PROJECT_ROOT / "instances" / "h200_nvl72.json")}
    record["plan"] = shipped("nvl72_pd.json")
    path = plan_file(tmp_path, record, "solved.json")
    out_dir = tmp_path / "out"
    result = CliRunner().invoke(
        main, ["export", str(path), "--format", "dynamo", "--out", str(out_dir)]
    )
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out_dir.iterdir()) == ["README.md", "deployment.yaml"]
    assert "prefill: 4 x 8 GPUs" in result.output
    readme = (out_dir / "README.md").read_text()
    assert "| `--max-running-requests` | `2048` |" in readme


@pytest.mark.parametrize(
    ("args", "field"),
    [
        (("--format", "sglang"), "--instance"),
        (("--format", "trtllm", "--instance", NVL72), "--format"),
        (("--format", "vllm", "--instance", NVL72, "--backend", "sglang"), "--backend"),
    ],
)
def test_bad_export_input_is_one_line_exit_2(tmp_path, args, field):
    path = plan_file(tmp_path, shipped("nvl72_pd.json"))
    result = CliRunner().invoke(main, ["export", str(path), "--out", str(tmp_path / "o"), *args])
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and field in lines[0], result.output
