"""The bundled catalog: verbatim configs of every hub fixture, honest checkpoint summaries, exact gpt-oss bytes."""
import importlib.util
import json
import os
import time

import pytest

from tests.source.conftest import FIXTURES
from vplan.planner.source import catalog
from vplan.planner.source.checkpoint import CheckpointSummary, block_of, tensor_nbytes

SIX = ["openai/gpt-oss-20b", "deepseek-ai/DeepSeek-V2.5", "meta-llama/Llama-3.3-70B-Instruct",
       "Qwen/Qwen2.5-72B-Instruct", "Qwen/Qwen3-32B", "deepseek-ai/deepseek-llm-7b-chat"]
GPT_OSS_TOTAL = 13_761_264_768
FIXTURE_IDS = sorted(d.replace("__", "/", 1) for d in os.listdir(FIXTURES) if os.path.isdir(os.path.join(FIXTURES, d)))


def _fixture(model_id, name):
    with open(os.path.join(FIXTURES, model_id.replace("/", "__"), name)) as f:
        return json.load(f)


def _build_script():
    path = os.path.join(os.path.dirname(FIXTURES), "..", "..", "scripts", "build_catalog.py")
    spec = importlib.util.spec_from_file_location("build_catalog", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_covers_fixtures_and_six_models():
    assert len(FIXTURE_IDS) == 22
    ids = set(catalog.list_ids())
    assert set(FIXTURE_IDS) <= ids and set(SIX) <= ids


@pytest.mark.parametrize("model_id", FIXTURE_IDS)
def test_entry_is_verbatim_and_consistent(model_id):
    e = catalog.load(model_id)
    assert e["model_id"] == model_id and e["config"] == _fixture(model_id, "config.json")
    assert e["revision"] is None  # no sha is known for any of these copies
    assert e["provenance"] and isinstance(e["reconstructed"], bool)
    ck = CheckpointSummary.from_dict(e["checkpoint"])
    assert ck.total_bytes == sum(ck.bytes_by_block.values()) == sum(ck.bytes_by_dtype.values()) > 0
    assert ck.origin.startswith("derived from config") and ck.format == "safetensors"
    if e["config"].get("tie_word_embeddings"):
        assert "lm_head" not in ck.bytes_by_block  # tied: stored once


def test_reconstructed_flags():
    assert {m for m in FIXTURE_IDS if catalog.load(m)["reconstructed"]} == {
        "deepseek-ai/DeepSeek-V2.5", "deepseek-ai/deepseek-llm-7b-chat", "Qwen/Qwen2.5-72B-Instruct"}


def test_case_insensitive_and_missing():
    assert catalog.load("qwen/qwen3-32b")["model_id"] == "Qwen/Qwen3-32B"
    assert catalog.load("org/none") is None and catalog.load("nope") is None


@pytest.mark.parametrize("model_id", ["openai/gpt-oss-20b", "jeevanchaps/Meta-Llama3.1-8B-Instruct-assessment"])
def test_quantized_entries_match_real_index(model_id):
    idx = _fixture(model_id, "model.safetensors.index.json")
    ck = CheckpointSummary.from_dict(catalog.load(model_id)["checkpoint"])
    assert ck.total_bytes == idx["metadata"]["total_size"]
    assert ck.tensor_count == len(idx["weight_map"])
    assert set(ck.bytes_by_block) == {block_of(n) for n in idx["weight_map"]}
    assert ck.files == tuple(sorted(set(idx["weight_map"].values())))


def test_llama_70b_matches_measured_meta_model():
    # FACTS.md: the meta model of Llama-3.3-70B in bf16 is 141,107,412,992 bytes, 70,553,706,496 parameters
    ck = CheckpointSummary.from_dict(catalog.load("meta-llama/Llama-3.3-70B-Instruct")["checkpoint"])
    assert (ck.total_bytes, ck.params_total) == (141_107_412_992, 70_553_706_496)


def test_gpt_oss_virtual_shards_through_hub(hf_env, hub_server):
    """Shards built from the derived MXFP4 shapes, split as the real index splits them, served virtually."""
    idx = _fixture("openai/gpt-oss-20b", "model.safetensors.index.json")
    cfg = _fixture("openai/gpt-oss-20b", "config.json")
    triples = _build_script().gpt_oss_mxfp4(cfg)
    assert {n for n, _, _ in triples} == set(idx["weight_map"])
    assert sum(tensor_nbytes(d, s) for _, d, s in triples) == GPT_OSS_TOTAL
    from tests.hubserver import VirtualSafetensors
    shards = {}
    for n, d, s in triples:
        shards.setdefault(idx["weight_map"][n], {})[n] = (d, list(s))
    files = {name: VirtualSafetensors(t) for name, t in shards.items()}
    files["config.json"] = json.dumps(cfg)
    files["model.safetensors.index.json"] = json.dumps(idx)
    hub_server.add_repo("openai/gpt-oss-20b", files)
    from vplan.planner.source.resolve import resolve_model
    t0 = time.perf_counter()
    src = resolve_model("openai/gpt-oss-20b", endpoint=hub_server.endpoint)
    assert time.perf_counter() - t0 < 5
    ck = src.checkpoint
    assert src.source == "hub" and ck.origin == "safetensors headers" and not src.notes
    assert ck.total_bytes == GPT_OSS_TOTAL
    assert ck.params_by_dtype["U8"] > 0 and set(ck.params_by_dtype) == {"U8", "BF16"}
    cat = CheckpointSummary.from_dict(catalog.load("openai/gpt-oss-20b")["checkpoint"])
    assert ck.bytes_by_block == cat.bytes_by_block and ck.params_by_dtype == cat.params_by_dtype
