"""Real files: a tiny random-weight Llama saved by transformers, read as a local folder and loaded with
``from_pretrained`` through the local Hub (HF_ENDPOINT in a subprocess: huggingface_hub reads it at import)."""
import os
import subprocess
import sys
import time

import pytest

from vplan.planner.source.resolve import resolve_model

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    out = tmp_path_factory.mktemp("tiny")
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
                      tie_word_embeddings=False, dtype="bfloat16")
    model = LlamaForCausalLM(cfg).to(torch.bfloat16)
    model.save_pretrained(out)
    vocab = {f"w{i}": i for i in range(60)} | {"<unk>": 60, "<s>": 61, "</s>": 62, "<pad>": 63}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", bos_token="<s>", eos_token="</s>",
                            pad_token="<pad>").save_pretrained(out)
    return out, model


def test_local_folder_matches_safetensors_and_torch(tiny_model):
    from safetensors import safe_open
    folder, model = tiny_model
    src = resolve_model(str(folder))
    assert (src.source, src.revision, src.model_id) == ("local", None, str(folder.resolve()))
    assert src.config["model_type"] == "llama" and src.tokenizer_files_present is True
    ck = src.checkpoint
    with safe_open(str(folder / "model.safetensors"), "np") as f:  # independent reader
        names = list(f.keys())
    assert ck.tensor_count == len(names) == len(dict(model.named_parameters()))
    assert ck.total_bytes == sum(p.numel() * p.element_size() for p in model.parameters())
    assert ck.params_by_dtype == {"BF16": sum(p.numel() for p in model.parameters())}
    assert ck.total_bytes < os.path.getsize(folder / "model.safetensors") < ck.total_bytes + 64 * 1024
    assert ck.bytes_by_block["model.layers.1"] == sum(
        p.numel() * 2 for n, p in model.named_parameters() if n.startswith("model.layers.1."))


def test_hub_resolve_and_from_pretrained_through_server(tiny_model, hf_env, hub_server):
    folder, model = tiny_model
    sha = hub_server.add_folder("tiny/llama", folder)
    src = resolve_model("tiny/llama", endpoint=hub_server.endpoint)
    assert src.revision == sha and src.checkpoint.bytes_by_block == resolve_model(str(folder)).checkpoint.bytes_by_block
    ids = [[61, 5, 9, 17]]
    with torch.no_grad():
        want = model.generate(torch.tensor(ids), max_new_tokens=5, do_sample=False)[0].tolist()
    code = (
        "import torch\n"
        "from transformers import AutoModelForCausalLM, AutoTokenizer\n"
        "m = AutoModelForCausalLM.from_pretrained('tiny/llama', revision=%r)\n"
        "t = AutoTokenizer.from_pretrained('tiny/llama')\n"
        "assert t('w5 w9 w17', add_special_tokens=False)['input_ids'] == [5, 9, 17]\n"
        "print(m.generate(torch.tensor(%r), max_new_tokens=5, do_sample=False)[0].tolist())\n" % (sha, ids))
    env = dict(os.environ, HF_ENDPOINT=hub_server.endpoint, HF_HOME=str(hf_env / "sub_home"),
               HF_HUB_DISABLE_TELEMETRY="1", PYTHONPATH=ROOT)
    env.pop("HF_HUB_CACHE", None)
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=240)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.strip().splitlines()[-1] == str(want)
    # then offline with the cache from_pretrained filled: no requests, same tokens
    hub_server.reset_requests()
    env["HF_HUB_OFFLINE"] = "1"
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=240)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.strip().splitlines()[-1] == str(want) and hub_server.count() == 0


def test_default_endpoint_without_network_is_fast(hf_env):
    """`vplan check`'s path on a machine without network: real default endpoint, catalog, well under 1 s."""
    import socket
    try:
        socket.getaddrinfo("huggingface.co", 443)
        pytest.skip("huggingface.co resolves here: this test is for machines without network")
    except OSError:
        pass
    code = ("import time, sys; t=time.perf_counter()\n"
            "from vplan.planner.source.resolve import resolve_model\n"
            "s = resolve_model('Qwen/Qwen2.5-72B-Instruct')\n"
            "print(s.source, round(time.perf_counter()-t, 3), 'huggingface_hub' in sys.modules)\n"
            "print(s.notes[0])\n")
    env = {k: v for k, v in os.environ.items() if k not in ("HF_ENDPOINT", "HF_HUB_OFFLINE")}
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    wall = time.perf_counter() - t0
    assert r.returncode == 0, r.stderr
    source, secs, hub_imported = r.stdout.split("\n")[0].split()
    assert source == "catalog" and float(secs) < 0.3 and hub_imported == "False" and wall < 1.0
    assert r.stdout.split("\n")[1].startswith("Hub unreachable (https://huggingface.co): DNS lookup of huggingface.co failed")
