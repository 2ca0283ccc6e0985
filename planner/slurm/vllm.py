"""sbatch scripts for vLLM plans: one node (``vllm_job.sh.j2``) or several (``vllm_multinode.sh.j2``).

The job starts vLLM's OpenAI-compatible server with exactly the plan's engine flags (planner/plan/vllm_serve.py),
waits for ``/health`` with a timeout, then runs ``vplan run PLAN --endpoint $VPLAN_ENDPOINT`` as a client (the
prompts JSONL in, the records out) or the user's command with ``VPLAN_ENDPOINT`` exported, and stops every
process it started when it ends, fails or is cancelled. Across nodes it uses vLLM's own launcher (mp backend:
``--nnodes/--node-rank/--master-addr``, followers ``--headless``; docs/slurm.md says why not Ray). Resources are
slurm.resources' rules applied per node (one task per node holding all its GPUs). Pure, like slurm.render.
"""
from __future__ import annotations

import math
import re
import shlex

from vplan.planner.errors import ClusterError, UsageError
from vplan.planner.hardware.cluster import ClusterProfile
from vplan.planner.plan.contract import Plan
from vplan.planner.plan.vllm_serve import MASTER_PORT, base_argv, multinode_flags, vllm_args
from vplan.planner.slurm.resources import Resources, SbatchOptions, compute_resources, partition_for
from vplan.planner.slurm.safety import (IFNAME_RE, check_text, sanitise_job_name, validate_abs_path, validate_name)
from vplan.planner.slurm.script import (check_plan, directives, echo_lines, environment, log_stem, payload,
                                        render_template)
from vplan.planner.units import GIB

QUANT_RE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
HEALTH_MIN_S = 900  # loading, the profiling run and CUDA-graph capture before /health answers
HEALTH_LOAD_FACTOR = 3  # x the plan's load estimate, + HEALTH_EXTRA_S
HEALTH_EXTRA_S = 600
STOP_GRACE_S = 30  # SIGTERM, then SIGKILL, for the server's process group


def health_timeout_s(plan: Plan) -> int:
    """How long the job waits for the server: the larger of 15 min and 3 x the plan's load time + 10 min."""
    return max(HEALTH_MIN_S, math.ceil(HEALTH_LOAD_FACTOR * plan.speed.load_seconds) + HEALTH_EXTRA_S)


def _header(plan: Plan, path: str) -> list[str]:
    a = vllm_args(plan)
    quant = f", --quantization {a.quantization}" if a.quantization else ""
    lines = [
        f"model: {plan.model_id} @ {plan.revision or 'unpinned revision'} ({plan.source})",
        f"plan: {path}" + (f" (created {plan.created_at}, vplan {plan.vplan_version})" if plan.created_at else ""),
        f"status: {plan.status}; vLLM {a.version}: tensor parallel {a.tensor_parallel_size} x pipeline parallel "
        f"{a.pipeline_parallel_size} on {plan.nodes} node(s) x {plan.gpus} {plan.gpu_type or 'GPU'}",
        f"precision {plan.precision} (--dtype {a.dtype}{quant}, --kv-cache-dtype {a.kv_cache_dtype})",
        f"KV cache: {a.kv_cache_tokens:,} tokens, {a.max_concurrency:.2f} requests of {a.max_model_len:,} tokens at once "
        f"(--gpu-memory-utilization {a.gpu_memory_utilization:g}, --block-size {a.block_size})",
    ]
    for r in a.ranks:
        lines.append(f"node {r.node} GPU {r.gpu} (TP {r.tp_rank}, PP {r.pp_rank}): weights {r.weights_bytes / GIB:.2f} GiB, "
                     f"KV {r.kv_cache_bytes / GIB:.2f} GiB, profiling peak {r.profile_peak_bytes / GIB:.2f} GiB, "
                     f"non-torch {r.non_torch_bytes / GIB:.2f} GiB, CUDA graphs {r.cuda_graph_bytes / GIB:.2f} GiB")
    lines += [
        f"host RAM per node: {plan.host_ram_bytes / GIB:.1f} GiB",
        f"speed: ~{plan.speed.throughput_tokens_per_s:.4g} tokens/s in all at {plan.workload.batch} concurrent request(s), "
        f"load ~{plan.speed.load_seconds:.0f} s (estimates, see the plan's assumptions)",
    ]
    if plan.status == "does-not-fit":
        lines.append(f"WARNING (--force): the plan does not fit: {plan.reason or 'no reason recorded'}")
    return [check_text(x, "plan field") for x in lines]


def _check_nodes(plan: Plan, profile: ClusterProfile, options: SbatchOptions) -> None:
    part = partition_for(plan, profile, options)
    if plan.nodes > part.nodes and not options.force:
        raise ClusterError(f"plan {plan.model_id} needs {plan.nodes} nodes but partition {part.name!r} has {part.nodes} "
                           "(profile: nodes); re-plan for this partition, or pass --force if the profile undercounts them")
    if plan.gpus < 1:
        raise ClusterError(f"vLLM plan {plan.model_id} uses no GPU; vLLM plans run on GPU partitions")


def _serve_words(plan: Plan) -> str:
    a = vllm_args(plan)
    if a.quantization and not QUANT_RE.match(a.quantization):
        raise UsageError(f"plan quantization {a.quantization!r} is not a vLLM method name; re-create the plan")
    words = base_argv(plan)
    if plan.source == "local":
        validate_abs_path(words[1], "the plan's model folder")
    return " ".join(shlex.quote(w) for w in ["vllm", *words])


def _multinode(plan: Plan) -> str:
    """vLLM's multi-node flags for the node function: the node rank and head address are the task's variables."""
    shell = {"RANK": '"$rank"', "ADDR": '"$VPLAN_HEAD_ADDR"'}
    return " ".join(shell.get(w) or shlex.quote(w) for w in multinode_flags(plan.nodes, "RANK", "ADDR", MASTER_PORT))


def _interface(profile: ClusterProfile) -> str | None:
    name = profile.network_interface
    if name and not IFNAME_RE.match(name):
        raise UsageError(f"network_interface {name!r} is not an interface name such as ib0 or eth0")
    return name or None


def vllm_context(plan: Plan, profile: ClusterProfile, options: SbatchOptions) -> tuple[Resources, dict]:
    check_plan(plan, options)
    a = vllm_args(plan)
    _check_nodes(plan, profile, options)
    path = validate_abs_path(options.plan_path, "plan path")
    res = compute_resources(plan, profile, options)
    job_name = validate_name(options.job_name, "--job-name") if options.job_name else sanitise_job_name(plan.model_id)
    header = _header(plan, path)
    timeout = health_timeout_s(plan)
    notes = list(res.notes) + [
        f"layout: {plan.nodes} node(s), one task per node holding its {plan.gpus} GPU(s); vLLM places the "
        f"{a.tensor_parallel_size * a.pipeline_parallel_size} ranks (TP innermost, then PP)",
        f"server start: /health within {timeout} s (max({HEALTH_MIN_S}, {HEALTH_LOAD_FACTOR} x load + {HEALTH_EXTRA_S}); "
        "override with VPLAN_HEALTH_TIMEOUT_S at submit)",
    ]
    log_dir = options.log_dir.rstrip("/") if options.log_dir else '"${SLURM_SUBMIT_DIR:-$PWD}"'
    log_stem(options, array=False)  # validates log_dir
    ctx = {
        **environment(profile),
        "header": header, "header_echo": echo_lines(header[:5]), "notes": notes,
        "directives": directives(res, job_name, log_stem(options, array=False), [f"--nodes={plan.nodes}", "--ntasks-per-node=1"]),
        "plan_path": shlex.quote(path),
        "port": a.port, "master_port": MASTER_PORT, "nodes": plan.nodes,
        "model_name": shlex.quote(base_argv(plan)[1]),
        "serve": _serve_words(plan), "multinode": _multinode(plan),
        "interface": _interface(profile),
        "health_timeout_s": timeout, "stop_grace_s": STOP_GRACE_S,
        "vllm_log": f'{log_dir}/{job_name}-"${{SLURM_JOB_ID:-$$}}".vllm.log',
        "payload": payload(options, 'vplan run "$VPLAN_PLAN" --endpoint "$VPLAN_ENDPOINT" --engine-log "$VPLAN_VLLM_LOG"',
                           hint="; a vLLM job's command finds the job's server in $VPLAN_ENDPOINT"),
    }
    return res, ctx


def render_vllm(plan: Plan, profile: ClusterProfile, options: SbatchOptions) -> str:
    """The sbatch script of a vLLM plan: one node, or ``plan.nodes`` nodes with vLLM's multi-node launcher."""
    _, ctx = vllm_context(plan, profile, options)
    return render_template("vllm_multinode.sh.j2" if plan.nodes > 1 else "vllm_job.sh.j2", ctx)
