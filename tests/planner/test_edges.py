"""Issue 12, first list: every input that ended in an internal error, a hang or a nonsense plan now gets one line
that names the field, the value and what is allowed (exit 2), or a sane plan. Each case is a regression test."""
import copy
import json
import os
from dataclasses import replace
from pathlib import Path

import pytest

from tests.fuzz.harness import assert_sane_report, run_cli
from vplan.planner.errors import MalformedConfigError, UnsupportedModelError
from vplan.planner.model import build_spec
from vplan.planner.plan import plan_to_dict, read_plan
from vplan.planner.plan.contract import PlanInvariantError
from vplan.planner.model.multimodal import FAMILIES as MULTIMODAL_FAMILIES
from vplan.planner.source import catalog

REPO_CONFIGS = Path(__file__).resolve().parents[1] / "fixtures" / "configs"


pytestmark = pytest.mark.usefixtures("offline_home")


def cfg(mid: str, **edits) -> dict:
    c = copy.deepcopy(catalog.load(mid)["config"])
    for k, v in edits.items():
        if v is ...:
            c.pop(k, None)
        else:
            c[k] = v
    return c


def one_error(argv) -> str:
    code, out, err = run_cli(argv)
    lines = [x for x in err.splitlines() if x.strip()]
    assert code == 2 and len(lines) == 1 and lines[0].startswith("vplan: error: "), (code, err)
    assert "Traceback" not in err + out
    return lines[0]


def check_folder(tmp_path, config, text=None) -> str:
    folder = tmp_path / "model"
    folder.mkdir(exist_ok=True)
    (folder / "config.json").write_text(text if text is not None else json.dumps(config, allow_nan=True))
    return one_error(["check", str(folder)])


@pytest.mark.parametrize("mid,edits,needle", [
    ("Qwen/Qwen3-8B", {"num_hidden_layers": 100_000}, "num_hidden_layers = 100000: must be a whole number from 1 to 1,024"),
    ("Qwen/Qwen3-8B", {"num_key_value_heads": float("nan")}, "num_key_value_heads = NaN: must be a finite number"),
    ("Qwen/Qwen3-8B", {"num_key_value_heads": -8}, "num_key_value_heads = -8: must be a whole number from 1"),
    ("Qwen/Qwen3-8B", {"num_key_value_heads": 5}, "must divide num_attention_heads = 32"),
    ("Qwen/Qwen3-8B", {"head_dim": -128}, "head_dim = -128"),
    ("Qwen/Qwen3-8B", {"intermediate_size": -12288}, "intermediate_size = -12288"),
    ("Qwen/Qwen3-8B", {"hidden_size": 4096.0}, "hidden_size = 4096.0: must be a whole number"),
    ("Qwen/Qwen3-8B", {"layer_types": ["full_attention"] * 3}, "must list one type per layer: 36"),
    ("Qwen/Qwen3-8B", {"tie_word_embeddings": "no"}, "tie_word_embeddings = \"no\": must be true or false"),
    ("Qwen/Qwen3-8B", {"rope_scaling": json.loads('{"a":' * 100 + "1" + "}" * 100)}, "nests deeper than 32 levels"),
    ("Qwen/Qwen3-8B", {"hidden_size": 131072, "intermediate_size": 1_000_000, "num_hidden_layers": 1024},
     "trillion parameters"),
    ("Qwen/Qwen3-30B-A3B", {"num_experts_per_tok": 1000}, "must be at most the number of experts, 128"),
    ("deepseek-ai/DeepSeek-V2.5", {"model_type": "deepseek_v3", "qk_rope_head_dim": ...}, "qk_rope_head_dim is missing"),
    ("Qwen/Qwen3-8B", {"model_type": ["qwen3"]}, "has no model_type"),
])
def test_config_fields_at_the_edge(tmp_path, mid, edits, needle):
    line = check_folder(tmp_path, cfg(mid, **edits))
    assert needle in line and "config.json" in line


@pytest.mark.parametrize("factor,needle", [(None, "rope_scaling.factor is null"),
                                           (-40, "rope_scaling.factor = -40: must be a number above 0")])
def test_rope_scaling_the_vllm_layout_reads(tmp_path, factor, needle):
    """Found by the fuzz (seed 11): vLLM sizes its rotary tables from rope_scaling.factor; a null one was a TypeError
    and a negative one gave negative weight bytes (caught by the plan's invariant, exit 70)."""
    c = cfg("deepseek-ai/DeepSeek-V2-Lite")
    c["rope_scaling"]["factor"] = factor
    folder = tmp_path / "m"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(c))
    assert needle in one_error(["check", str(folder), "--engine", "vllm"])


def test_every_alias_of_a_field_is_checked(tmp_path):
    """Found by the fuzz (seed 100): gpt-oss names its top-k twice; vLLM reads num_experts_per_tok, which was not
    checked when experts_per_token was present, and a float there gave float KV bytes (invariant, exit 70)."""
    c = cfg("openai/gpt-oss-20b", num_experts_per_tok=1.0)
    folder = tmp_path / "m"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(c))
    assert "num_experts_per_tok = 1.0: must be a whole number" in one_error(["check", str(folder), "--engine", "vllm"])


@pytest.mark.parametrize("mid,field", [("Qwen/Qwen2.5-72B", "partial_rotary_factor"),
                                       ("Qwen/Qwen3-8B", "max_window_layers"),
                                       ("deepseek-ai/DeepSeek-V2-Lite", "num_experts_per_tok")])
def test_explicit_null_where_a_reader_defaults(tmp_path, mid, field):
    """Found by the fuzz (seed 200): `c.get(field, default)` returns None for an explicit null, so the vLLM layout
    multiplied by None (TypeError, exit 70); such fields must hold a value when present."""
    c = cfg(mid, **{field: None}, use_sliding_window=True)
    folder = tmp_path / "m"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(c))
    assert f"{field} is null: give a value" in one_error(["check", str(folder), "--engine", "vllm"])


def test_nul_bytes_in_paths_are_one_line(tmp_path):
    """Found by the fuzz (seed 200): a NUL byte in a path (possible in-process, not from a shell) was a ValueError."""
    from vplan.planner.api import plan_for
    from vplan.planner.plan import write_plan

    from vplan.planner.files import write_atomic
    from vplan.planner.errors import ClusterError, UsageError
    from vplan.planner.slurm.profile_toml import load_profile

    path = write_plan(plan_for("Qwen/Qwen3-8B"), tmp_path / "p.json")
    assert "an argument contains a NUL byte" in one_error(["render-sbatch", str(path), "--cluster", "\x00"])
    with pytest.raises(ClusterError, match="cannot be read"):
        load_profile("a\x00b.toml")
    with pytest.raises(UsageError, match="cannot write"):
        write_atomic("x", tmp_path / "a\x00b.json", force=False)


def test_a_field_another_family_reads_is_left_alone():
    """Found by the fuzz (seed 202): the top-k check compared gpt-oss's experts_per_token on a Qwen3-MoE config,
    where nothing reads it ("" > 128: TypeError inside the validator)."""
    spec = build_spec("m", None, "config", cfg("Qwen/Qwen3-30B-A3B", experts_per_token=""), None)
    assert spec.moe.top_k == 8


@pytest.mark.parametrize("header,index,needle", [
    ({"w.weight": {"dtype": [], "shape": [4, 4]}}, None, "tensor 'w.weight' has no safetensors dtype and shape"),
    ({"w.weight": {"dtype": "BF16", "shape": [-4, 4]}}, None, "tensor 'w.weight' has no safetensors dtype and shape"),
    ([1, 2], None, "not a JSON object"),
    ({"model.layers.0.w.weight": {"dtype": "BF16", "shape": [64, 64]}},
     {"metadata": {"total_size": -5}, "weight_map": ["model.safetensors"]}, "fancy_lm"),
])
def test_checkpoint_headers_at_the_edge(tmp_path, header, index, needle):
    """Found by the fuzz: a header dtype that is a list was a TypeError; negative shapes and total sizes would size
    negative bytes; an index whose weight_map is a list was an AttributeError."""
    import struct

    folder = tmp_path / "m"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "fancy_lm", "hidden_size": 64, "num_hidden_layers": 1,
                                                    "num_attention_heads": 4, "vocab_size": 128}))
    raw = json.dumps(header).encode()
    (folder / "model.safetensors").write_bytes(struct.pack("<Q", len(raw)) + raw)
    if index is not None:
        (folder / "model.safetensors.index.json").write_text(json.dumps(index))
    code, out, err = run_cli(["check", str(folder), "--json"])
    assert code in (0, 2) and "internal error" not in err and needle in (err + out), err
    if code == 0:
        assert_sane_report(out)


def test_gptq_bits_3_is_not_modelled():
    c = cfg("TheBloke/Wizard-Vicuna-30B-Uncensored-GPTQ")
    c["quantization_config"]["bits"] = 3
    with pytest.raises(UnsupportedModelError, match="quantization_config.bits = 3: vplan models gptq with 4 or 8 bits"):
        build_spec("m", None, "config", c, None)


def test_deep_config_json_file(tmp_path):
    assert "not valid JSON" in check_folder(tmp_path, None, text='{"model_type": "llama", "x": ' + "[" * 100_000)


def test_every_catalog_config_passes_validation():
    for mid in catalog.list_ids():
        build_spec(mid, None, "catalog", catalog.load(mid)["config"], None)


def test_plan_invariants_hold_on_construction():
    from vplan.planner.api import plan_for

    p = plan_for("Qwen/Qwen3-8B")
    with pytest.raises(PlanInvariantError, match="params_active"):
        replace(p, params_active=p.params_total + 1)
    with pytest.raises(PlanInvariantError, match="host_ram_bytes = 1.5"):
        replace(p, host_ram_bytes=1.5)
    with pytest.raises(PlanInvariantError, match="decode_tokens_per_s = inf"):
        replace(p, speed=replace(p.speed, decode_tokens_per_s=float("inf")))
    with pytest.raises(PlanInvariantError, match="GPU 0 needs"):
        replace(p, devices=(replace(p.devices[0], capacity_bytes=1),) + p.devices[1:])
    with pytest.raises(MalformedConfigError):
        build_spec("m", None, "config", cfg("Qwen/Qwen3-8B", vocab_size=-1), None)


@pytest.mark.parametrize("field,value,needle", [
    ("gpus", "two", "field gpus: 'two' is not an integer"),
    ("speed", {}, "field speed: the key 'decode_tokens_per_s' is missing"),
    ("device_map", None, "field device_map: None is not an object"),
    ("host_ram_bytes", 1.5, "field host_ram_bytes: 1.5 is not an integer"),
    ("params_active", 10**15, "params_active 1000000000000000 exceeds params_total"),
])
def test_plan_files_with_wrong_values(tmp_path, field, value, needle):
    from vplan.planner.api import plan_for

    d = plan_to_dict(plan_for("Qwen/Qwen3-8B"))
    d[field] = value
    (tmp_path / "p.json").write_text(json.dumps(d))
    line = one_error(["render-sbatch", str(tmp_path / "p.json"), "--prompt", "hi"])
    assert needle in line and "re-create the plan" in line


@pytest.mark.parametrize("toml,needle", [
    ('partitions = "gpu"', 'partitions must be one or more [partitions.NAME] tables'),
    ('[gpus.X]\nmemory = "0GB"\n[partitions.p]\ngpu = "X"\n', 'gpus.X.memory = "0GB": must be from 1 GB'),
    ('[partitions.p]\ngpu = "A100"\nmem = "0GB"\n', 'partitions.p.mem = "0GB": must be from 1 GB'),
    ('[partitions.p]\ngpu = "A100"\ngpus_per_node = -2\n', "gpus_per_node = -2: expected a whole number from 0 to 16"),
    ('[partitions.p]\ngpu = "A100"\ncpus_per_node = 0\n', "cpus_per_node = 0: expected a whole number from 1"),
    ('[partitions.p]\ngpu = "A100"\ncpus_per_node = -4\n', "cpus_per_node = -4"),
    ('storage_gb_per_s = -1\n[partitions.p]\ngpu = "A100"\n', "storage_gb_per_s = -1: expected a number above 0.001"),
    ('storage_gb_per_s = 1e-300\n[partitions.p]\ngpu = "A100"\n', "storage_gb_per_s = 1e-300"),
    ('gres_typed = "no"\n[partitions.p]\ngpu = "A100"\n', 'gres_typed = "no": expected true or false'),
    ('setup = "module load cuda"\n[partitions.p]\ngpu = "A100"\n', 'setup = "module load cuda": expected a list'),
    ('[partitions.p]\ngpus_per_node = 2\n', "has gpus_per_node = 2 but no gpu"),
    ('[partitions."gpu\\n"]\ngpu = "A100"\n', "partition name 'gpu\\n': use letters, digits"),
    ('[gpus.X]\nmemory = "48GB"\nhbm_gb_per_s = 1e-12\n[partitions.p]\ngpu = "X"\n', "hbm_gb_per_s = 1e-12"),
])
def test_cluster_toml_edges(tmp_path, toml, needle):
    (tmp_path / "c.toml").write_text(toml)
    assert needle in one_error(["check", "Qwen/Qwen3-8B", "--cluster", str(tmp_path / "c.toml")])


@pytest.mark.parametrize("args,needle", [
    (["--gpu", "H100", "--node-mem", "0"], "--node-mem 0: give a unit, e.g. 256GB"),
    (["--gpu", "H100", "--node-mem", "0GB"], "host RAM per node must be from 1 GB to 1 PB"),
    (["--gpu", "H100", "--node-mem", "256"], "--node-mem 256: give a unit, e.g. 256GB or 256GiB"),
    (["--gpu", "H100", "--node-mem", "99999999999PB"], "more than 1 EiB"),
    (["--gpus-per-node", "2"], "--gpus-per-node N needs --gpu TYPE"),
    (["--precision", "int4"], "unknown precision 'int4' (--precision)"),
    (["--precision", "fp8"], "is not possible for Qwen/Qwen3-8B on A100-40GB: fp8 weights need compute capability"),
    (["--batch"], "Option '--batch' requires an argument"),
    (["--batch", "x"], "'x' is not a valid integer range"),
])
def test_flags_one_line(args, needle):
    assert needle in one_error(["check", "Qwen/Qwen3-8B", *args])


def test_node_ram_below_the_job_is_a_rejection_not_a_fit():
    code, out, err = run_cli(["check", "Qwen/Qwen3-8B", "--gpu", "H100", "--node-mem", "2GB", "--json"])
    p = json.loads(out)["models"][0]["plan"]
    assert code == 0 and p["status"] == "does-not-fit" and p["rejection"] == "host-memory"
    assert "host RAM" in p["reason"] and "plan for nodes with more RAM" in p["reason"]


def test_fp16_is_allowed_when_asked_on_bf16_gpus():
    code, out, err = run_cli(["check", "Qwen/Qwen3-8B", "--precision", "fp16", "--json"])
    p = json.loads(out)["models"][0]["plan"]
    assert code == 0 and (p["precision"], p["status"]) == ("fp16", "fits")


@pytest.mark.parametrize("flag", ["--job-name", "--constraint", "--partition"])
def test_trailing_newline_in_sbatch_names_is_refused(tmp_path, flag):
    from vplan.planner.api import plan_for
    from vplan.planner.plan import write_plan

    path = write_plan(plan_for("Qwen/Qwen3-8B"), tmp_path / "p.json")
    line = one_error(["render-sbatch", str(path), "--prompt", "hi", flag, "abc\n"])
    assert "'abc\\n'" in line


def test_unwritable_outputs_are_one_line(tmp_path, monkeypatch):
    (tmp_path / "file").write_text("")
    assert "cannot write" in one_error(["plan", "Qwen/Qwen3-8B", "-o", str(tmp_path / "file" / "p.json")])

    def refuse(src, dst):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(os, "replace", refuse)  # the rename of the finished temp file fails (read-only target)
    assert "cannot write" in one_error(["plan", "Qwen/Qwen3-8B", "-o", str(tmp_path / "q.json")])
    assert not list(tmp_path.glob(".q.json.*"))  # the temp file is removed


@pytest.mark.parametrize("umask,mode", [(0o022, 0o644), (0o077, 0o600), (0o027, 0o640)])
def test_plan_file_mode_follows_the_umask(tmp_path, umask, mode):
    from vplan.planner.api import plan_for
    from vplan.planner.plan import write_plan

    old = os.umask(umask)
    try:
        path = write_plan(plan_for("Qwen/Qwen3-8B"), tmp_path / "p.json")
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == mode
    assert read_plan(path).model_id == "Qwen/Qwen3-8B"


def test_gptq_on_cpu_only_nodes_is_a_precision_rejection():
    code, out, err = run_cli(["check", "TheBloke/Wizard-Vicuna-30B-Uncensored-GPTQ", "--gpus-per-node", "0", "--json"])
    assert code == 0, err
    p = json.loads(out)["models"][0]["plan"]
    assert p["status"] == "does-not-fit" and p["rejection"] == "precision" and "need a CUDA GPU" in p["reason"]
    assert_sane_report(out)


@pytest.mark.parametrize("name", sorted(p.stem for p in (REPO_CONFIGS).glob("*.json")
                                        if json.loads(p.read_text()).get("model_type") in MULTIMODAL_FAMILIES
                                        or json.loads(p.read_text()).get("model_type") == "gemma2"))
def test_vllm_refuses_families_it_has_no_layout_of(tmp_path, name):
    """Found by the fuzz after the multimodal and vLLM branches met: a multimodal config with --engine vllm read a
    text field at the top level (KeyError, exit 70). vLLM plans exist only for families with a vLLM layout; the
    others are a does-not-fit vLLM row that names the modelled families, and the transformers row still plans."""
    folder = tmp_path / name
    folder.mkdir()
    (folder / "config.json").write_text((REPO_CONFIGS / f"{name}.json").read_text())
    code, out, err = run_cli(["check", str(folder), "--engine", "all", "--json"])
    assert code == 0, err
    assert_sane_report(out)
    rows = json.loads(out)
    rows = rows if isinstance(rows, list) else rows.get("models", [rows])
    vllm = [r for r in rows if r.get("engine") == "vllm" or (r.get("plan") or {}).get("engine") == "vllm"]
    assert vllm, out[:400]
    assert all("does not model vLLM's layout" in json.dumps(r) for r in vllm)


@pytest.mark.parametrize("fixture,path,value,expected", [
    ("gemma-3-27b", ("vision_config", "hidden_size"), -1, "vision_config.hidden_size = -1: must be a whole number"),
    ("gemma-3-27b", ("vision_config", "hidden_size"), None, "vision_config.hidden_size is null: give a value"),
    ("gemma-3-27b", ("text_config", "num_hidden_layers"), 124, "text_config.layer_types"),
    ("llama4-default", ("text_config", "num_local_experts"), -1, "text_config.num_local_experts = -1"),
    ("llama4-maverick", ("text_config", "intermediate_size_mlp"), 0.0, "text_config.intermediate_size_mlp = 0.0"),
    ("mistral-small-3.1", ("vision_config", "patch_size"), 4000, "vision_config.patch_size = 4000"),
    ("mistral-small-3.1", (None, "vision_feature_layer"), None, "vision_feature_layer must be a layer index"),
])
def test_multimodal_fields_are_checked_like_text_fields(tmp_path, fixture, path, value, expected):
    """Found by the fuzz once multimodal configs joined it: the text_config of a multimodal model (and a Llama 4 text
    config) had no field checks, the vision_config none at all: negative or fractional sizes ended in a plan
    invariant error, a too-short layer_types in an IndexError (exit 70). Now one line naming the nested field."""
    c = json.loads((REPO_CONFIGS / f"{fixture}.json").read_text())
    (c[path[0]] if path[0] else c)[path[1]] = value
    folder = tmp_path / "m"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(c))
    assert expected in one_error(["check", str(folder)])


def test_fields_only_other_families_read_are_not_iterated(tmp_path):
    """Found by the fuzz (mixtral with `mlp_only_layers: -1`): a Qwen3-MoE field on another MoE family was
    iterated by the validator itself (TypeError, exit 70); families that do not read it ignore it, as transformers does."""
    folder = tmp_path / "m"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(cfg("mistralai/Mixtral-8x7B-v0.1", mlp_only_layers=-1)))
    code, out, err = run_cli(["check", str(folder), "--json"])
    assert code == 0, err
    assert_sane_report(out)
