"""Model files: imported from the package's Hugging Face configs, sizes match the published
parameter counts, bad configs give one-line errors."""

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from aicpp_opt.cli import main
from aicpp_opt.costs import CostModel
from aicpp_opt.errors import InputError
from aicpp_opt.spec.hf_config import import_hf_config
from aicpp_opt.spec.model import available_models, load_model

aic = pytest.importorskip("aiconfigurator_core")
CONFIGS = Path(aic.__file__).parent / "model_configs"

PUBLISHED_B = {
    "deepseek-v3.2": 671,
    "deepseek-v3": 671,
    "deepseek-r1": 671,
    "kimi-k2": 1030,
    "qwen3-235b-a22b": 235,
    "qwen3-30b-a3b": 30.5,
    "gpt-oss-120b": 117,
}


@pytest.mark.parametrize(("name", "billions"), sorted(PUBLISHED_B.items()))
def test_total_params_match_published_size(name, billions):
    assert load_model(name).total_params / 1e9 == pytest.approx(billions, rel=0.01)


def test_checked_in_models_are_what_the_importer_writes():
    sources = {load_model(n).source: n for n in available_models()}
    for source, name in sources.items():
        fresh = import_hf_config(CONFIGS / source, name)
        assert fresh.to_json() == (Path("models") / f"{name}.json").read_text()


def test_deepseek_v32_shape():
    m = load_model("deepseek-v3.2")
    assert m.attention.kind == "dsa" and m.attention.index_topk == 2048
    assert (m.num_layers, m.num_dense_layers, m.moe.num_experts, m.moe.top_k) == (61, 3, 256, 8)
    assert m.dtypes.weights == "fp8_block" and m.dtypes.moe == "fp8_block"
    assert m.kv_cache_bytes_per_token_per_layer == (512 + 64) * 2 + 128 + 4


def test_gpt_oss_sliding_layers_and_mxfp4_experts():
    m = load_model("gpt-oss-120b")
    assert m.attention.sliding_window == 128
    assert m.attention.sliding_window_layers == list(range(0, 36, 2))
    assert m.dtypes.moe == "w4a16_mxfp4" and m.dtypes.weights == "bfloat16"


def test_unknown_model_lists_valid_names():
    with pytest.raises(InputError) as err:
        load_model("llama-9")
    assert "deepseek-v3.2" in str(err.value)


def test_missing_field_names_it(tmp_path):
    cfg = json.loads((CONFIGS / "Qwen--Qwen3-30B-A3B_config.json").read_text())
    del cfg["num_experts_per_tok"]
    path = tmp_path / "config.json"
    path.write_text(json.dumps(cfg))
    result = CliRunner().invoke(main, ["model", "import", str(path), "--out", str(tmp_path)])
    assert result.exit_code == 2
    assert "num_experts_per_tok: missing" in result.output


def test_cli_import_writes_file(tmp_path):
    result = CliRunner().invoke(
        main,
        [
            "model",
            "import",
            str(CONFIGS / "openai--gpt-oss-120b_config.json"),
            "--name",
            "x",
            "--out",
            str(tmp_path),
        ],
    )
    assert result.exit_code == 0, result.output
    assert load_model(tmp_path / "x.json").name == "x"


def test_nvfp4_checkpoint_maps_to_the_tables_nvfp4(tmp_path):
    """nvidia/DeepSeek-V3.2-NVFP4: quantisation lives in hf_quant_config.json beside the config
    (config.json itself has none). Routed experts become the tables' `nvfp4`, the attention the
    checkpoint excludes stays bfloat16, the FP8 KV cache is `fp8` at 1 byte per element."""
    src = CONFIGS / "nvidia--DeepSeek-V3.2-NVFP4_config.json"
    assert "quantization_config" not in json.loads(src.read_text())
    m = import_hf_config(src, "v32-fp4")
    assert (m.dtypes.moe, m.dtypes.weights, m.dtypes.kv_cache) == ("nvfp4", "bfloat16", "fp8")
    assert m.bytes_per_param["nvfp4"] == 4.5 / 8  # 4-bit values + one 8-bit scale per 16
    assert m.kv_cache_bytes_per_token_per_layer == (512 + 64) * 1 + 128 + 4
    assert m.total_params == load_model("deepseek-v3.2").total_params
    # the same files in a Hugging Face checkout's layout
    (tmp_path / "config.json").write_text(src.read_text())
    (tmp_path / "hf_quant_config.json").write_text(
        (CONFIGS / "nvidia--DeepSeek-V3.2-NVFP4_hf_quant_config.json").read_text()
    )
    assert import_hf_config(tmp_path / "config.json", "v32-fp4").dtypes == m.dtypes
    axes = {
        "hidden": m.hidden_size,
        "inter": m.moe.expert_ffn,
        "topk": m.moe.top_k,
        "num_experts": m.moe.num_experts,
        "tp": 1,
        "ep": 8,
        "distribution": "power_law_1.01",
        "dtype": m.dtypes.moe,
    }
    assert CostModel.load("gb200").curve("moe", **axes).x_range[1] > 0
    with pytest.raises(InputError, match="nvfp4"):
        CostModel.load("h200_sxm").curve("moe", **axes)
