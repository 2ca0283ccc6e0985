"""Fuzz: every catalog config, mutated (types, signs, NaN/Infinity, huge, missing, nested, deep), planned from a
local folder by `vplan check --json` and `vplan plan`: a one-line user error or a sane plan, never an internal error,
a traceback or a hang."""
import tempfile
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from tests.fuzz.harness import (RULE_KEYS, assert_clean, assert_sane_report, catalog_configs, dumps_any, fuzz,
                                mutated, run_cli)
from vplan.planner.plan import read_plan

CONFIGS = catalog_configs()


@st.composite
def config_case(draw):
    name = draw(st.sampled_from(sorted(CONFIGS)))
    return name, draw(mutated(CONFIGS[name], extra_keys=RULE_KEYS))


def _folder(root: str, text: str) -> str:
    folder = Path(tempfile.mkdtemp(dir=root))
    (folder / "config.json").write_text(text)
    return str(folder)


@fuzz(400)
@given(case=config_case(), as_plan=st.booleans(), engine=st.sampled_from(["transformers", "transformers", "vllm", "all"]))
def test_mutated_configs(case, as_plan, engine, offline_home):
    name, cfg = case
    folder = _folder(str(offline_home), dumps_any(cfg))
    if as_plan:
        out = Path(folder) / "plan.json"
        argv = ["plan", folder, "-o", out, "--engine", "vllm" if engine == "vllm" else "transformers"]
        code, stdout, err = run_cli(argv)
        assert_clean(argv, code, stdout, err)
        if code in (0, 3):
            read_plan(out)  # the written plan passes the schema: whole bytes, finite numbers, known fields
    else:
        argv = ["check", folder, "--json", "--engine", engine]
        code, stdout, err = run_cli(argv)
        assert_clean(argv, code, stdout, err)
        if code == 0:
            assert_sane_report(stdout)


@fuzz(60)
@given(text=st.one_of(
    st.integers(1, 200_000).map(lambda n: "[" * n + "]" * n),
    st.integers(1, 200_000).map(lambda n: '{"model_type": "llama", "rope_scaling": ' + '{"a": ' * n + "1" + "}" * n + "}"),
    st.text(max_size=200), st.binary(max_size=200).map(lambda b: b.decode("latin-1")),
    st.sampled_from(["", "null", "[]", "{}", '{"model_type": 3}', '{"model_type": "llama"}', "NaN", '{"a": Infinity}',
                     '{"model_type": "llama", "hidden_size": 1e400}', "\ufeff{}"]),
))
def test_config_text(text, offline_home):
    argv = ["check", _folder(str(offline_home), text), "--json"]
    code, stdout, err = run_cli(argv)
    assert_clean(argv, code, stdout, err)
    if code == 0:
        assert_sane_report(stdout)


UNKNOWN = {"model_type": "fancy_lm", "hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
           "num_key_value_heads": 2, "vocab_size": 128, "intermediate_size": 96}
HEADER = {"__metadata__": {"format": "pt"},
          "model.embed_tokens.weight": {"dtype": "BF16", "shape": [128, 64], "data_offsets": [0, 16384]},
          "model.layers.0.mixer.weight": {"dtype": "BF16", "shape": [64, 64], "data_offsets": [0, 8192]},
          "model.layers.1.mixer.weight": {"dtype": "F8_E4M3", "shape": [96, 64], "data_offsets": [0, 6144]},
          "model.layers.1.mixer.scale": {"dtype": "F32", "shape": [96], "data_offsets": [0, 384]},
          "lm_head.weight": {"dtype": "BF16", "shape": [128, 64], "data_offsets": [0, 16384]}}
INDEX = {"metadata": {"total_size": 47_488}, "weight_map": {k: "model.safetensors" for k in HEADER if k[0] != "_"}}


@fuzz(150)
@given(config=st.one_of(mutated(UNKNOWN, extra_keys=RULE_KEYS), st.sampled_from([CONFIGS["Qwen/Qwen3-0.6B"], UNKNOWN])),
       header=mutated(HEADER, extra_keys=["x.weight", "model.layers.9.w"]), index=st.none() | mutated(INDEX),
       length=st.sampled_from([None, 0, 1, 7, 2**40]))
def test_checkpoint_headers(config, header, index, length, offline_home):
    """A folder with safetensors headers (unknown architectures are sized from them): mutated headers, indexes,
    header lengths."""
    import struct

    folder = Path(_folder(str(offline_home), dumps_any(config)))
    raw = dumps_any(header).encode()
    (folder / "model.safetensors").write_bytes(struct.pack("<Q", len(raw) if length is None else length) + raw)
    if index is not None:
        (folder / "model.safetensors.index.json").write_text(dumps_any(index))
    argv = ["check", str(folder), "--json"]
    code, stdout, err = run_cli(argv)
    assert_clean(argv, code, stdout, err)
    if code == 0:
        assert_sane_report(stdout)
