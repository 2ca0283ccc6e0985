"""load_planned on CPU: the device map used is the plan's, tokens match the plain model, memory matches the plan."""
from __future__ import annotations

import pytest

from vplan.planner.plan.contract import Quantization

from vplan.runtime.transformers.generate import run_records
from vplan.runtime.transformers.load import load_planned

from .conftest import PROMPTS, layer_map, make_plan

MIB = 1024**2


def _tokens(model, tok, plan):
    out = []
    run_records(model, tok, [{"id": i, "prompt": p} for i, p in enumerate(PROMPTS)], plan, max_new_tokens=8,
                on_record=lambda r: out.append(r["token_ids"]), keep_token_ids=True, log=lambda _l: None, tty=False)
    return out


def test_cpu_plan_same_tokens_and_memory(tiny_models, reference_tokens):
    folder = tiny_models["llama"]
    plan = make_plan(folder, layer_map(4, ["cpu"] * 4))
    lines = []
    model, tok, rep = load_planned(plan, log=lines.append, tty=False)
    assert _tokens(model, tok, plan) == reference_tokens["llama"]
    assert "[*] Model loaded successfully!" in "\n".join(lines)
    cpu = next(m for m in rep.measures if m.device == "cpu")
    # the model's own tensors on CPU are the planned bytes (from the safetensors header) plus the rotary
    # inv_freq buffers, which are computed, not stored (a few hundred bytes)
    assert 0 <= cpu.tensor_bytes - plan.device("cpu").weights_bytes <= 1024
    # process RSS growth during load: within 64 MiB of the planned CPU weights (allocator and loader noise)
    assert abs(cpu.measured_bytes - cpu.planned_bytes) < 64 * MIB, cpu
    assert rep.device_map_matches


def test_cpu_disk_plan_uses_the_planned_map(tiny_models, reference_tokens):
    folder = tiny_models["llama"]
    dm = layer_map(4, ["cpu", "disk", "disk", "cpu"])
    plan = make_plan(folder, dm)
    model, tok, rep = load_planned(plan, log=lambda _l: None, tty=False)
    assert {k: str(v) for k, v in model.hf_device_map.items()} == dm
    assert rep.device_map_matches and rep.device_map_used == dm
    assert _tokens(model, tok, plan) == reference_tokens["llama"]
    by_dev = {m.device: m for m in rep.measures}
    assert by_dev["disk"].tensor_bytes == plan.device("disk").weights_bytes
    assert 0 <= by_dev["cpu"].tensor_bytes - plan.device("cpu").weights_bytes <= 1024


def test_moe_cpu_disk_with_offload_folder(tiny_models, reference_tokens, tmp_path, monkeypatch):
    """MoE experts are fused at load time, so disk offload writes to the offload folder (VPLAN_OFFLOAD_FOLDER wins)."""
    folder = tiny_models["moe"]
    dm = layer_map(2, ["cpu", "disk"])
    plan = make_plan(folder, dm, offload_folder=str(tmp_path / "planned"))
    monkeypatch.setenv("VPLAN_OFFLOAD_FOLDER", str(tmp_path / "scratch"))
    model, tok, rep = load_planned(plan, log=lambda _l: None, tty=False)
    assert {k: str(v) for k, v in model.hf_device_map.items()} == dm
    assert _tokens(model, tok, plan) == reference_tokens["moe"]
    assert any((tmp_path / "scratch").iterdir()) and not (tmp_path / "planned").exists()
    disk = next(m for m in rep.measures if m.device == "disk")
    assert disk.tensor_bytes == plan.device("disk").weights_bytes


def test_int8_bitsandbytes_on_cpu(tiny_models, reference_tokens):
    pytest.importorskip("bitsandbytes")
    folder = tiny_models["llama"]
    q = Quantization("bitsandbytes", {"load_in_8bit": True})
    plan = make_plan(folder, layer_map(4, ["cpu"] * 4), precision="int8", quantization=q)
    model, tok, rep = load_planned(plan, log=lambda _l: None, tty=False)
    assert type(model.model.layers[0].mlp.gate_proj).__name__ == "Linear8bitLt"
    assert model.model.layers[0].mlp.gate_proj.weight.dtype.itemsize == 1
    got = _tokens(model, tok, plan)
    ref = reference_tokens["llama"]
    # int8 is lossy and greedy paths of a random model diverge after one flip: the first token of each prompt
    # must agree, and the prefill logits must stay within 5 % (of their range) of the fp32 model's
    assert [g[0] for g in got] == [r[0] for r in ref]
    import torch
    from transformers import AutoModelForCausalLM

    plain = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    ids = tok(PROMPTS[0], return_tensors="pt")["input_ids"]
    with torch.inference_mode():
        a, b = plain(ids).logits[0, -1], model(ids).logits[0, -1].float()
    assert (a - b).abs().max() / (a.max() - a.min()) < 0.05
    assert torch.nn.functional.cosine_similarity(a, b, dim=0) > 0.99
    cpu = next(m for m in rep.measures if m.device == "cpu")
    assert 0 <= cpu.tensor_bytes - plan.device("cpu").weights_bytes <= 1024


def test_load_failure_is_a_run_error_with_figures(tiny_models, tmp_path):
    from vplan.planner.errors import RunError

    plan = make_plan(tiny_models["llama"], layer_map(4, ["cpu"] * 4))
    with pytest.raises(RunError) as e:
        load_planned(plan, model_path=str(tmp_path / "nowhere"), log=lambda _l: None, tty=False)
    assert e.value.exit_code == 5
    assert "planned: cpu" in e.value.message and "measured at failure: process RSS" in e.value.message


def test_loaded_weights_are_checked_against_the_plan_on_every_path(tiny_models):
    """The API with no preflight at all: a plan that matches passes every check; plans whose precision, dtype or
    bytes the loaded model contradicts are reported with the numbers (the MXFP4-dequantized case is the same
    check: a plan's format against what transformers actually built)."""
    import dataclasses

    folder = tiny_models["llama"]
    plan = make_plan(folder, layer_map(4, ["cpu"] * 4))
    lines: list[str] = []
    _m, _t, rep = load_planned(plan, log=lines.append, tty=False)
    assert rep.weights_as_planned and all(c["ok"] for c in rep.weight_checks)
    assert any(line.startswith("[*] weights bytes cpu: cpu holds ") for line in lines)
    cpu = plan.device("cpu")
    wrong = dataclasses.replace(plan, precision="int8", quantization=None, dtype="float32", devices=(
        dataclasses.replace(cpu, weights_bytes=cpu.weights_bytes // 2),))
    lines = []
    _m, _t, rep = load_planned(wrong, log=lines.append, tty=False)
    bad = {c["name"]: c["detail"] for c in rep.weight_checks if not c["ok"]}
    assert set(bad) == {"format", "bytes cpu"}, bad
    assert "no Linear8bitLt module was loaded" in bad["format"]
    assert "+100.0 %" in bad["bytes cpu"] and "re-plan here" in bad["bytes cpu"]
    assert sum(line.startswith("[!] weights ") for line in lines) == 2


def test_an_mxfp4_plan_loaded_without_kernels_is_reported(tiny_models):
    """On this machine transformers cannot keep MXFP4 (no GPU, no `kernels`): a plan that says it will is told."""
    import dataclasses

    from vplan.runtime.transformers.verify import verify_loaded

    plan = make_plan(tiny_models["llama"], layer_map(4, ["cpu"] * 4))
    mx = dataclasses.replace(plan, precision="mxfp4", quantization=Quantization("mxfp4", {"dequantize": False}))
    model, _t, _r = load_planned(plan, log=lambda _l: None, tty=False)
    fmt = next(c for c in verify_loaded(model, mx, {}) if c.name == "format")
    assert not fmt.ok and "dequantized the experts to bf16" in fmt.detail and "--mxfp4-kernels" in fmt.detail
