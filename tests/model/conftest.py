"""Truth helpers: transformers' own models (meta device) and real caches (CPU)."""
import copy

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from vplan.planner.source.catalog import list_ids, load  # noqa: E402
from vplan.planner.source.checkpoint import block_of  # noqa: E402
from vplan.planner.model import build_spec  # noqa: E402

CATALOG_IDS = list_ids()


def catalog_config(mid: str) -> dict:
    return load(mid)["config"]


def default_config(model_type: str, **over) -> dict:
    """transformers' default config of a family (the published base model of that family) with overrides."""
    d = transformers.AutoConfig.for_model(model_type).to_dict()
    d.update(over)
    return d


def loaded_config(cfg: dict):
    """The transformers config of ``cfg`` with lm_head tied as from_pretrained ties it, and the Auto class the runtime
    loads it with (the truth for multimodal configs is the class the runtime loads, not AutoModelForCausalLM)."""
    from vplan.planner.model.multimodal import with_loaded_tie
    from vplan.runtime.transformers.load import auto_model_class

    cfg = {k: v for k, v in cfg.items() if k not in ("quantization_config", "_comment")}
    conf = transformers.AutoConfig.for_model(**with_loaded_tie(cfg, transformers.__version__))
    return conf, auto_model_class(conf.model_type)


def meta_model(cfg: dict, dtype=None):
    conf, auto = loaded_config(cfg)
    with torch.device("meta"):
        return auto.from_config(conf, dtype=dtype or torch.bfloat16)


def spec_of(mid: str, cfg: dict, checkpoint=None):
    return build_spec(mid, None, "test", cfg, checkpoint, transformers=transformers.__version__)


def meta_bytes_by_block(model, dtype_bytes=None) -> tuple[dict, dict]:
    """(params per block, bytes per block incl. buffers as the loader holds them: buffers/params named in
    ``_keep_in_fp32_modules_strict`` are fp32 under bf16/fp16 loads, modeling_utils._get_dtype_plan)."""
    strict = tuple(getattr(model, "_keep_in_fp32_modules_strict", None) or ())
    params: dict[str, int] = {}
    nbytes: dict[str, int] = {}
    for name, p in model.named_parameters():  # tied parameters appear once, under their first name
        b = block_of(name)
        params[b] = params.get(b, 0) + p.numel()
        nbytes[b] = nbytes.get(b, 0) + p.numel() * (4 if any(s in name for s in strict) else p.element_size())
    for name, t in model.named_buffers():
        b = block_of(name)
        nbytes[b] = nbytes.get(b, 0) + t.numel() * (4 if any(s in name for s in strict) else t.element_size())
    return params, nbytes


def shrink(cfg: dict, layers: int) -> dict:
    """Fewer layers (and tiny vocab/MLP/experts); every attention shape kept as published."""
    c = copy.deepcopy({k: v for k, v in cfg.items() if k != "quantization_config"})
    c["num_hidden_layers"] = layers
    c["vocab_size"] = 512
    for k in ("pad_token_id", "bos_token_id", "eos_token_id"):
        c[k] = None
    for k in ("intermediate_size", "moe_intermediate_size"):
        if c.get(k):
            c[k] = 64
    for k in ("num_local_experts", "num_experts", "n_routed_experts"):
        if c.get(k):
            c[k] = 4
    if c.get("n_group"):
        c["n_group"], c["topk_group"] = 1, 1
    for k in ("num_experts_per_tok", "experts_per_token"):
        if c.get(k):
            c[k] = 2
    if c.get("n_shared_experts"):
        c["n_shared_experts"] = 1
    if "first_k_dense_replace" in c:
        c["first_k_dense_replace"] = 1
    if isinstance(c.get("layer_types"), list):
        c["layer_types"] = c["layer_types"][:layers]
    if c.get("max_window_layers"):
        c["max_window_layers"] = min(c["max_window_layers"], layers)
    return c


def cpu_model(cfg: dict):
    """A real CPU model without paying for random init: meta -> empty storage -> zeros (values do not
    change cache shapes); rotary buffers recomputed by the model's own init."""
    conf, auto = loaded_config(cfg)
    with torch.device("meta"):
        model = auto.from_config(conf, dtype=torch.bfloat16)
    model = model.to_empty(device="cpu").eval()
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
        for m in model.modules():
            if hasattr(m, "rope_init_fn") or type(m).__name__.endswith("RotaryEmbedding"):
                for n, b in list(m.named_buffers(recurse=False)):
                    b.zero_()
    return model


def cache_bytes(cache) -> tuple[int, int]:
    """(storage bytes held, visible tensor bytes) of a transformers cache."""
    seen = {}
    visible = 0
    for layer in cache.layers:
        for t in (layer.keys, layer.values):
            visible += t.numel() * t.element_size()
            st = t.untyped_storage()
            seen[st.data_ptr()] = st.nbytes()
    return sum(seen.values()), visible
