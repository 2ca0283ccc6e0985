"""resolve_model against the local Hub (tests/hubserver.py) with isolated caches."""
import json
import os
import time

import pytest

from tests.hubserver import HubServer, VirtualSafetensors
from vplan.planner.errors import (GatedModelError, HubUnreachableError, MalformedConfigError, ModelNotFoundError,
                                  NoConfigError, OfflineNoCacheError)
from vplan.planner.source.resolve import resolve_model

CONFIG = {"model_type": "llama", "architectures": ["LlamaForCausalLM"], "hidden_size": 4, "num_hidden_layers": 2,
          "torch_dtype": "bfloat16", "vocab_size": 10}
TENSORS = {
    "model.embed_tokens.weight": ("BF16", [10, 4]),
    "model.layers.0.self_attn.q_proj.weight": ("F8_E4M3", [4, 4]),
    "model.layers.0.self_attn.q_proj.weight_scale_inv": ("F32", [1, 1]),
    "model.layers.1.mlp.up_proj.weight": ("I8", [16, 4]),
    "model.layers.1.mlp.up_proj.SCB": ("F32", [16]),
    "model.norm.weight": ("BF16", [4]),
    "lm_head.weight": ("BF16", [10, 4]),
}


def _files(config=CONFIG, sharded=False):
    files = {"config.json": json.dumps(config), "tokenizer.json": "{}"}
    if sharded:
        names = list(TENSORS)
        a, b = names[:3], names[3:]
        files["model-00001-of-00002.safetensors"] = VirtualSafetensors({n: TENSORS[n] for n in a})
        files["model-00002-of-00002.safetensors"] = VirtualSafetensors({n: TENSORS[n] for n in b})
        wm = {n: "model-00001-of-00002.safetensors" for n in a} | {n: "model-00002-of-00002.safetensors" for n in b}
        total = sum(f.data_size for k, f in files.items() if k.endswith(".safetensors"))
        files["model.safetensors.index.json"] = json.dumps({"metadata": {"total_size": total}, "weight_map": wm})
    else:
        files["model.safetensors"] = VirtualSafetensors(TENSORS, metadata={"format": "pt"})
    return files


@pytest.mark.parametrize("sharded", [False, True])
def test_hub_config_and_headers_exact(hf_env, hub_server, sharded):
    sha = hub_server.add_repo("org/tiny", _files(sharded=sharded))
    src = resolve_model("org/tiny", endpoint=hub_server.endpoint)
    assert (src.source, src.revision, src.config, src.gated, src.tokenizer_files_present) == \
        ("hub", sha, CONFIG, False, True)
    ck = src.checkpoint
    assert ck.origin == "safetensors headers" and ck.format == "safetensors" and ck.tensor_count == 7
    assert ck.params_by_dtype == {"BF16": 84, "F8_E4M3": 16, "F32": 17, "I8": 64}
    assert ck.bytes_by_dtype == {"BF16": 168, "F8_E4M3": 16, "F32": 68, "I8": 64}
    assert ck.bytes_by_block == {"model.embed_tokens": 80, "model.layers.0": 20, "model.layers.1": 128,
                                 "model.norm": 8, "lm_head": 80}
    assert ck.total_bytes == 316
    # config landed in the HF cache, the summary in the vplan cache
    snap = hf_env / "hf_home" / "hub" / "models--org--tiny" / "snapshots" / sha / "config.json"
    assert json.loads(snap.read_text()) == CONFIG
    assert (snap.parent / "model.safetensors.index.json").is_file() == sharded  # index in the same cache
    assert sum(1 for m, p, _ in hub_server.requests if m == "GET" and p.endswith(".safetensors")) == 1 + sharded
    assert (hf_env / "vplan_cache" / "checkpoints" / "models--org--tiny" / f"{sha}.json").is_file()


def test_offline_warm_cache_zero_requests(hf_env, hub_server, monkeypatch):
    sha = hub_server.add_repo("org/tiny", _files(sharded=True))
    online = resolve_model("org/tiny", endpoint=hub_server.endpoint)
    hub_server.reset_requests()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    off = resolve_model("org/tiny", endpoint=hub_server.endpoint)
    assert hub_server.count() == 0
    assert (off.source, off.revision, off.config, off.checkpoint) == ("cache", sha, CONFIG, online.checkpoint)
    assert any("offline mode" in n and "HF cache" in n for n in off.notes)
    monkeypatch.delenv("HF_HUB_OFFLINE")
    assert resolve_model("org/tiny", offline=True, endpoint=hub_server.endpoint).source == "cache"
    assert hub_server.count() == 0


def test_offline_cache_without_vplan_summary_reads_cached_shards(hf_env, hub_server, tmp_path):
    """HF cache populated by someone else (e.g. from_pretrained): headers are read from the cached shards."""
    import shutil
    hub_server.add_repo("org/tiny", _files())
    resolve_model("org/tiny", endpoint=hub_server.endpoint)
    from huggingface_hub import hf_hub_download
    hf_hub_download("org/tiny", "model.safetensors", endpoint=hub_server.endpoint,
                    cache_dir=str(hf_env / "hf_home" / "hub"))
    shutil.rmtree(hf_env / "vplan_cache")
    off = resolve_model("org/tiny", offline=True)
    assert off.source == "cache" and off.checkpoint.total_bytes == 316
    assert off.checkpoint.origin == "safetensors headers"


def test_revision_pin_and_unknown_revision(hf_env, hub_server):
    sha = hub_server.add_repo("org/tiny", _files(), branches={"v1": "a" * 40})
    assert resolve_model("org/tiny", revision=sha, endpoint=hub_server.endpoint).revision == sha
    with pytest.raises(ModelNotFoundError, match="revision 'nope'"):
        resolve_model("org/tiny", revision="nope", endpoint=hub_server.endpoint)


def test_gated(hf_env, hub_server, monkeypatch):
    hub_server.add_repo("org/gated", _files(), gated=True)
    with pytest.raises(GatedModelError) as ei:
        resolve_model("org/gated", endpoint=hub_server.endpoint)
    msg = ei.value.message
    assert msg == ("org/gated is gated: accept its license on the Hub and set HF_TOKEN (or run `hf auth login`)")
    assert ei.value.exit_code == 2 and "\n" not in msg
    hub_server.reset_requests()
    src = resolve_model("org/gated", endpoint=hub_server.endpoint, token="hf_test")
    assert src.source == "hub" and src.gated is True and src.checkpoint.total_bytes == 316
    assert all(a == "Bearer hf_test" for m, p, a in hub_server.requests if "/resolve/" in p)
    monkeypatch.setenv("HF_TOKEN", "hf_env_token")  # read at call time
    assert resolve_model("org/gated", endpoint=hub_server.endpoint).source == "hub"


def test_unknown_repo(hf_env, hub_server):
    with pytest.raises(ModelNotFoundError) as ei:
        resolve_model("org/nope", endpoint=hub_server.endpoint)
    assert ei.value.message.startswith(f"org/nope not found on {hub_server.endpoint}: check the id, or pass a local folder")


def test_repo_without_config(hf_env, hub_server):
    hub_server.add_repo("org/noconfig", {"README.md": "hi", "model.safetensors": VirtualSafetensors(TENSORS)})
    with pytest.raises(NoConfigError, match="org/noconfig has no config.json"):
        resolve_model("org/noconfig", endpoint=hub_server.endpoint)


@pytest.mark.parametrize("content, why", [("{not json", "not valid JSON"), (json.dumps({"hidden_size": 4}), "no model_type"),
                                          (json.dumps([1, 2]), "no model_type")])
def test_malformed_config(hf_env, hub_server, content, why):
    hub_server.add_repo("org/bad", {"config.json": content})
    with pytest.raises(MalformedConfigError, match=why):
        resolve_model("org/bad", endpoint=hub_server.endpoint)


def test_repo_without_weights(hf_env, hub_server):
    hub_server.add_repo("org/noweights", {"config.json": json.dumps(CONFIG)})
    src = resolve_model("org/noweights", endpoint=hub_server.endpoint)
    assert src.checkpoint is None and "checkpoint size unknown" in src.notes[0]


def test_offline_no_cache_not_in_catalog(hf_env):
    with pytest.raises(OfflineNoCacheError) as ei:
        resolve_model("org/never-seen", offline=True)
    assert "offline mode is on" in ei.value.message and "\n" not in ei.value.message


def test_offline_catalog_fallback(hf_env, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    src = resolve_model("openai/gpt-oss-20b")
    assert src.source == "catalog" and src.revision is None
    assert src.checkpoint.total_bytes == 13_761_264_768
    assert src.notes[0].startswith("offline mode") and "bundled catalog" in src.notes[0]


def _closed_port():
    import socket
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def test_unreachable_falls_back_fast(hf_env):
    ep = f"http://127.0.0.1:{_closed_port()}"
    t0 = time.perf_counter()
    src = resolve_model("Qwen/Qwen2.5-72B-Instruct", endpoint=ep)
    assert time.perf_counter() - t0 < 3
    assert src.source == "catalog"
    assert src.notes[0].startswith(f"Hub unreachable ({ep})") and "vplan's bundled catalog snapshot" in src.notes[0]
    assert any("reconstructed" in n for n in src.notes)
    t0 = time.perf_counter()
    with pytest.raises(HubUnreachableError, match="check the network or HF_ENDPOINT"):
        resolve_model("org/never-seen", endpoint=ep)
    assert time.perf_counter() - t0 < 3


def test_unreachable_prefers_warm_cache(hf_env):
    with HubServer() as hub:
        sha = hub.add_repo("Qwen/Qwen3-32B", _files())  # same id as a catalog entry: the cache must win
        resolve_model("Qwen/Qwen3-32B", endpoint=hub.endpoint)
        ep = hub.endpoint
    src = resolve_model("Qwen/Qwen3-32B", endpoint=ep)
    assert (src.source, src.revision, src.config) == ("cache", sha, CONFIG)
    assert "Hub unreachable" in src.notes[0]


def test_endpoint_from_env_at_call_time(hf_env, hub_server, monkeypatch):
    hub_server.add_repo("org/tiny", _files())
    monkeypatch.setenv("HF_ENDPOINT", hub_server.endpoint)
    assert resolve_model("org/tiny").source == "hub"


def test_bad_refs(hf_env, tmp_path):
    with pytest.raises(ModelNotFoundError, match="does not exist"):
        resolve_model(str(tmp_path / "missing"))
    with pytest.raises(ModelNotFoundError, match="neither a Hub repo id"):
        resolve_model("org/na me")
    with pytest.raises(NoConfigError):
        resolve_model(str(tmp_path))
