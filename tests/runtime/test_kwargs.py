"""build_from_pretrained_kwargs: every argument from the plan, nothing guessed; the removed load_in_8bit keyword never."""
from __future__ import annotations

import dataclasses
import inspect

import pytest
import torch
import transformers

from vplan.planner.errors import PlanFileError
from vplan.planner.plan.contract import Quantization
from vplan.runtime.transformers.load import build_from_pretrained_kwargs

from .conftest import layer_map, make_plan


@pytest.fixture
def gpu_plan(tiny_models):
    dm = layer_map(4, ["0", "0", "1", "cpu"], head="0")
    dm["lm_head"] = "1"
    q = Quantization("bitsandbytes", {"load_in_8bit": True, "llm_int8_enable_fp32_cpu_offload": True})
    return make_plan(tiny_models["llama"], dm, dtype="bfloat16", precision="int8", quantization=q, gpus=2,
                     gpu_type="A100-40GB", source="hub", model_id="org/tiny", revision="a" * 40)


def test_gpu_int8_plan(gpu_plan, monkeypatch):
    monkeypatch.delenv("VPLAN_OFFLOAD_FOLDER", raising=False)
    kw = build_from_pretrained_kwargs(gpu_plan)
    assert kw["dtype"] is torch.bfloat16
    assert kw["revision"] == "a" * 40
    assert kw["device_map"]["model.layers.0"] == 0 and kw["device_map"]["lm_head"] == 1 and kw["device_map"]["model.layers.3"] == "cpu"
    assert "max_memory" not in kw  # transformers ignores it with an explicit device map: never passed
    qc = kw["quantization_config"]
    assert isinstance(qc, transformers.BitsAndBytesConfig) and qc.load_in_8bit and qc.llm_int8_enable_fp32_cpu_offload
    assert "load_in_8bit" not in kw and "load_in_4bit" not in kw and "torch_dtype" not in kw
    assert "offload_folder" not in kw  # nothing on disk
    assert kw["trust_remote_code"] is False and kw["attn_implementation"] == "sdpa"
    # every key is an argument this transformers' from_pretrained reads: a parameter of its signature or a keyword
    # it takes out of **kwargs by name (a misspelt or removed key, like load_in_8bit in transformers 5, fails)
    f = transformers.PreTrainedModel.from_pretrained
    params, src = set(inspect.signature(f).parameters), inspect.getsource(f)
    unread = [k for k in kw if k not in params and f'"{k}"' not in src]
    assert not unread, unread


def test_disk_offload_folder_and_env_override(tiny_models, monkeypatch, tmp_path):
    plan = make_plan(tiny_models["llama"], layer_map(4, ["cpu", "disk", "disk", "cpu"]), offload_folder="/scratch/planned")
    monkeypatch.delenv("VPLAN_OFFLOAD_FOLDER", raising=False)
    assert build_from_pretrained_kwargs(plan, local=True)["offload_folder"] == "/scratch/planned"
    monkeypatch.setenv("VPLAN_OFFLOAD_FOLDER", str(tmp_path))
    kw = build_from_pretrained_kwargs(plan, local=True)
    assert kw["offload_folder"] == str(tmp_path)
    assert "revision" not in kw and kw["dtype"] is torch.float32
    assert kw["device_map"]["model.layers.1"] == "disk"


@pytest.mark.parametrize("method,config,cls,attr", [
    ("mxfp4", {"dequantize": True}, "Mxfp4Config", ("dequantize", True)),
    ("fp8", {"weight_block_size": [128, 128]}, "FineGrainedFP8Config", ("weight_block_size", (128, 128))),
    ("bitsandbytes", {"load_in_4bit": True, "bnb_4bit_quant_type": "nf4"}, "BitsAndBytesConfig", ("bnb_4bit_quant_type", "nf4")),
    # int8-nodecomp: LLM.int8 without outlier decomposition
    ("bitsandbytes", {"load_in_8bit": True, "llm_int8_threshold": 0.0}, "BitsAndBytesConfig", ("llm_int8_threshold", 0.0)),
])
def test_quantization_configs(tiny_models, method, config, cls, attr):
    plan = make_plan(tiny_models["llama"], layer_map(4, ["cpu"] * 4), quantization=Quantization(method, config))
    qc = build_from_pretrained_kwargs(plan, local=True)["quantization_config"]
    assert type(qc).__name__ == cls
    value = getattr(qc, attr[0])
    assert (tuple(value) if isinstance(value, list) else value) == attr[1]


def test_prequantized_checkpoint_uses_its_own_config(tiny_models):
    plan = make_plan(tiny_models["llama"], layer_map(4, ["cpu"] * 4), quantization=Quantization("gptq", {}))
    assert "quantization_config" not in build_from_pretrained_kwargs(plan, local=True)
    plan = make_plan(tiny_models["llama"], layer_map(4, ["cpu"] * 4), quantization=None)
    assert "quantization_config" not in build_from_pretrained_kwargs(plan, local=True)


@pytest.mark.parametrize("change,text", [
    ({"quantization": Quantization("warp9", {})}, "quantization method 'warp9'"),
    ({"quantization": Quantization("bitsandbytes", {"load_in_9bit": True})}, "bitsandbytes quantization config is invalid"),
    ({"dtype": "float13"}, "dtype 'float13'"),
    ({"device_map": {"": "cuda:0"}}, "device 'cuda:0'"),
])
def test_bad_plans_are_plan_file_errors(tiny_models, change, text):
    plan = dataclasses.replace(make_plan(tiny_models["llama"], layer_map(4, ["cpu"] * 4)), **change)
    with pytest.raises(PlanFileError, match=text):
        build_from_pretrained_kwargs(plan, local=True)


def test_architectures_without_sdpa_load_with_the_attention_they_were_planned_with(tmp_path):
    """Found on an H100: a gpt-oss plan (workload sdpa, sized as eager by the planner) passed
    attn_implementation="sdpa", and from_pretrained raised (GptOss has no sdpa path). The runtime asks for what the
    planner sized: eager; and a tiny gpt-oss built from that plan's kwargs loads on CPU."""
    from vplan.planner.api import plan_for

    plan = plan_for("openai/gpt-oss-20b")
    assert plan.workload.attn_implementation == "sdpa"
    kw = build_from_pretrained_kwargs(plan)
    assert kw["attn_implementation"] == "eager"
    cfg = transformers.GptOssConfig(hidden_size=64, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                                    num_key_value_heads=2, head_dim=16, num_local_experts=4, vocab_size=128)
    transformers.AutoModelForCausalLM.from_config(cfg).save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="scaled_dot_product_attention"):
        transformers.AutoModelForCausalLM.from_pretrained(tmp_path, attn_implementation="sdpa")
    model = transformers.AutoModelForCausalLM.from_pretrained(tmp_path, attn_implementation=kw["attn_implementation"])
    assert model.config._attn_implementation == "eager"
