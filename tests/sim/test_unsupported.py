"""Precisions the simulator cannot represent are refused with a clear VplanError, never approximated;
MXFP4/FP8 checkpoints are simulated only as the bf16 model transformers dequantizes them to, and say so."""
from __future__ import annotations

import pytest

from vplan.planner.source.catalog import load
from vplan.planner.errors import SimulationUnsupportedError, VplanError
from vplan.runtime.sim.simulate import simulatable_config, simulate

SMALL = load("Qwen/Qwen3-0.6B")["config"]


@pytest.mark.parametrize("precision", ["int8", "nf4", "mxfp4", "fp8"])
def test_quantized_precisions_raise(precision):
    with pytest.raises(SimulationUnsupportedError, match=f"cannot represent {precision}"):
        simulate(SMALL, batch=1, prompt_tokens=16, new_tokens=1, precision=precision)
    assert issubclass(SimulationUnsupportedError, VplanError)


@pytest.mark.parametrize("qc,match", [
    ({"load_in_4bit": True, "bnb_4bit_quant_type": "nf4"}, "bitsandbytes"),
    ({"quant_method": "bitsandbytes", "load_in_8bit": True}, "bitsandbytes"),
    ({"quant_method": "gptq", "bits": 4}, "gptq"),
])
def test_quantized_checkpoints_raise(qc, match):
    with pytest.raises(SimulationUnsupportedError, match=match):
        simulate({**SMALL, "quantization_config": qc}, batch=1, prompt_tokens=16, new_tokens=1)


def test_mxfp4_and_fp8_only_as_bf16_and_said_so():
    gpt_oss = load("openai/gpt-oss-20b")["config"]
    cfg, notes = simulatable_config(gpt_oss, dtype="bfloat16")
    assert "quantization_config" not in cfg and any("bf16-dequantized" in n for n in notes)
    with pytest.raises(SimulationUnsupportedError, match="only as the bf16 model"):
        simulatable_config(gpt_oss, dtype="float16")
    fp8 = load("Qwen/Qwen3-32B-FP8")["config"]
    cfg, notes = simulatable_config(fp8, dtype="bfloat16")
    assert "quantization_config" not in cfg and any("fp8" in n for n in notes)


def test_unknown_dtype_and_attention_raise():
    with pytest.raises(SimulationUnsupportedError, match="dtype"):
        simulate(SMALL, batch=1, prompt_tokens=16, new_tokens=1, dtype="float8")
    with pytest.raises(SimulationUnsupportedError, match="attention"):
        simulate(SMALL, batch=1, prompt_tokens=16, new_tokens=1, attn_implementation="flash_attention_2")
