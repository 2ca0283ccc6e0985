"""The `vllm serve` command line of a vLLM plan: the one place a plan's ``VllmArgs`` become engine flags.

Read by the sbatch renderer (planner/slurm/vllm.py) and by the runtime when it starts the server itself
(runtime/vllm/server.py), so a job and `vplan run` start the same engine with the same numbers. Flag names are
vLLM 0.32.0's (vllm/engine/arg_utils.py; the multi-node ones in vllm/entrypoints/cli/serve.py). Pure: argv
lists only; whoever puts them in a shell script quotes each word.
"""
from __future__ import annotations

from vplan.planner.errors import UsageError
from vplan.planner.plan.contract import Plan, VllmArgs

HOST = "127.0.0.1"  # the server answers on the node itself: the job's client and the user's command run there
MASTER_PORT = 29501  # vLLM's default --master-port (torch.distributed rendezvous on the head node)


def vllm_args(plan: Plan) -> VllmArgs:
    if plan.engine != "vllm" or plan.vllm is None:
        raise UsageError(f"plan {plan.model_id} is a {plan.engine} plan without vLLM arguments; "
                         "re-create it with `vplan plan MODEL --engine vllm`")
    return plan.vllm


def model_ref(plan: Plan, model_path: str | None = None) -> list[str]:
    """What `vllm serve` loads: a local folder, or the Hub id pinned with --revision (read from the HF cache)."""
    if model_path:
        return [model_path]
    if plan.source == "local":
        return [plan.model_id]
    return [plan.model_id] + (["--revision", plan.revision] if plan.revision else [])


def engine_flags(args: VllmArgs) -> list[str]:
    """The engine's sizing flags, exactly the plan's (nothing left to vLLM's defaults that changes memory)."""
    out = ["--dtype", args.dtype, "--tensor-parallel-size", str(args.tensor_parallel_size),
           "--pipeline-parallel-size", str(args.pipeline_parallel_size)]
    if args.quantization:
        out += ["--quantization", args.quantization]
    out += ["--kv-cache-dtype", args.kv_cache_dtype, "--max-model-len", str(args.max_model_len),
            "--gpu-memory-utilization", repr(float(args.gpu_memory_utilization)), "--max-num-seqs", str(args.max_num_seqs),
            "--max-num-batched-tokens", str(args.max_num_batched_tokens), "--block-size", str(args.block_size)]
    if args.enforce_eager:
        out.append("--enforce-eager")
    return out


def base_argv(plan: Plan, model_path: str | None = None) -> list[str]:
    """``serve MODEL FLAGS --host ...``: everything but the port (the command, without the ``vllm`` executable)."""
    return ["serve", *model_ref(plan, model_path), *engine_flags(vllm_args(plan)), "--host", HOST]


def serve_argv(plan: Plan, *, model_path: str | None = None, port: int | None = None) -> list[str]:
    """``serve ...`` for one node, on the plan's port unless another is given."""
    return [*base_argv(plan, model_path), "--port", str(port if port is not None else vllm_args(plan).port)]


def multinode_flags(nnodes: int, node_rank: str, master_addr: str, master_port: int = MASTER_PORT) -> list[str]:
    """vLLM's own multi-node launch (mp backend): every node runs `vllm serve` with these; followers add --headless."""
    return ["--distributed-executor-backend", "mp", "--nnodes", str(nnodes), "--node-rank", node_rank,
            "--master-addr", master_addr, "--master-port", str(master_port)]
