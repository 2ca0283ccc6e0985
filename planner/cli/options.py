"""The flags `check` and `plan` share, turned into library objects (a profile, CheckOptions); validation of flag
combinations lives here, the planning in the library."""
from __future__ import annotations

import shlex

import click

from vplan.planner.api import CheckOptions
from vplan.planner.errors import UsageError
from vplan.planner.hardware.cluster import ClusterProfile, default_profile, profile_for_gpu
from vplan.planner.model.behaviours import DEFAULT_TRANSFORMERS, MODELLED, behaviour, mxfp4_needs, normalize_version
from vplan.planner.plan.contract import ATTENTION, Workload
from vplan.planner.search.core import DEFAULT_MIN_TOKENS_PER_S, SearchOptions
from vplan.planner.source.environment import mxfp4_kernels_here

MAX_TOKENS = 10_000_000
MAX_BATCH = 100_000


def workload_options(f):
    opts = [
        click.option("--context", "context_tokens", type=click.IntRange(1, MAX_TOKENS), default=Workload.context_tokens,
                     show_default=True, help="Tokens cached per sequence (prompt + generated): sizes the KV cache."),
        click.option("--prompt-tokens", type=click.IntRange(1, MAX_TOKENS), default=None,
                     help="Prefill length that sets the activation peak [default: the context]."),
        click.option("--max-new-tokens", type=click.IntRange(1, MAX_TOKENS), default=Workload.max_new_tokens,
                     show_default=True, help="Tokens generated per request (job time)."),
        click.option("--batch", type=click.IntRange(1, MAX_BATCH), default=1, show_default=True,
                     help="Sequences decoded together."),
        click.option("--requests", type=click.IntRange(1, MAX_TOKENS), default=1, show_default=True,
                     help="Requests the job will run (job time, GPU-hours, --time auto)."),
        click.option("--attn", "attn_implementation", type=click.Choice(ATTENTION), default="sdpa", show_default=True,
                     help=f"Attention implementation transformers will run "
                          f"({' and '.join(behaviour('eager_only', DEFAULT_TRANSFORMERS))} always run eager)."),
        click.option("--gpu", "gpu_type", default=None, help="GPU type from `vplan gpus` (e.g. H100-80GB) instead of a profile."),
        click.option("--gpus-per-node", type=click.IntRange(0, 16), default=None, help="GPUs per node with --gpu (0: CPU only)."),
        click.option("--node-mem", default=None, help="Host RAM per node with --gpu, with its unit: 256GB, 240GiB."),
        click.option("--cpus-per-node", type=click.IntRange(1, 4096), default=None, help="CPUs per node with --gpu."),
        click.option("--nodes", type=click.IntRange(1, 4096), default=None,
                     help="Nodes of the partition with --gpu (multi-node engines) [default: 1]."),
        click.option("--cluster", "cluster_file", type=click.Path(dir_okay=False), default=None,
                     help="Cluster profile TOML (`vplan cluster detect`); default: 2 x A100 40 GB, 4 CPUs, 128 GB."),
        click.option("--partition", default=None, help="Partition of the cluster profile."),
        click.option("--precision", default=None, help="Force a precision: bf16, fp16, fp8, mxfp4, int8, nf4, ..."),
        click.option("--max-gpus", type=click.IntRange(1, 16), default=None, help="Use at most this many GPUs per node."),
        click.option("--no-offload", is_flag=True, help="Only plans that keep everything on GPUs."),
        click.option("--no-disk", is_flag=True, help="Never offload to disk."),
        click.option("--min-tokens-per-s", type=click.FloatRange(0, 1e6), default=DEFAULT_MIN_TOKENS_PER_S,
                     show_default=True, help="Offload plans slower than this count as does-not-fit."),
        click.option("--mxfp4-kernels", is_flag=True,
                     help=f"The nodes have {mxfp4_needs(DEFAULT_TRANSFORMERS)} (transformers "
                          f"{DEFAULT_TRANSFORMERS}): gpt-oss stays MXFP4."),
        click.option("--transformers", "transformers_version", default=DEFAULT_TRANSFORMERS, show_default=True,
                     help=f"transformers version on the nodes (modelled: {', '.join(MODELLED)})."),
        click.option("--engine", type=click.Choice(("transformers", "vllm", "all")), default="transformers",
                     show_default=True, help="How the model runs: transformers generate(), vLLM, or both side by side."),
        click.option("--revision", default=None, help="Hub revision (branch, tag or commit) to plan for."),
        click.option("--offline", is_flag=True, help="Do not contact the Hub: cache, then the bundled catalog."),
    ]
    for o in reversed(opts):
        f = o(f)
    return f


def workload_flag_names() -> set[str]:
    """Parameter names of the shared flags (what `vplan plan` needs to repeat a check)."""
    holder = workload_options(lambda **kw: None)
    return {p.name for p in getattr(holder, "__click_params__", [])}


def replay_flags(ctx: click.Context, names: set[str]) -> str:
    """The flags of ``names`` the user typed, as they would type them again (shell-quoted)."""
    from click.core import ParameterSource

    out = []
    for p in ctx.command.params:
        if p.name not in names or ctx.get_parameter_source(p.name) != ParameterSource.COMMANDLINE:
            continue
        v = ctx.params[p.name]
        if getattr(p, "is_flag", False):
            if v:
                out.append(p.opts[-1] if p.opts[-1].startswith("--") else p.opts[0])
        elif v is not None:
            out += [p.opts[-1] if p.opts[-1].startswith("--") else p.opts[0], shlex.quote(str(v))]
    return " ".join(out)


def _text(value: str | None, flag: str) -> str | None:
    if value is None:
        return None
    v = value.strip()
    if not v or any(ord(ch) < 32 for ch in v):
        raise UsageError(f"{flag} {value!r} is empty or has control characters; give a plain value")
    return v


def profile_from(kw: dict) -> ClusterProfile:
    gpu, n, mem, cpus = (_text(kw.get("gpu_type"), "--gpu"), kw.get("gpus_per_node"), _text(kw.get("node_mem"), "--node-mem"),
                         kw.get("cpus_per_node"))
    nodes = kw.get("nodes")
    if kw.get("cluster_file"):
        if gpu or n is not None or mem or cpus or nodes:
            raise UsageError("--cluster and --gpu/--gpus-per-node/--node-mem/--cpus-per-node/--nodes are exclusive: "
                             "describe the node in one place")
        from vplan.planner.slurm.profile_toml import load_profile

        return load_profile(kw["cluster_file"])
    if gpu or n is not None or mem or cpus or nodes:
        if n is None:
            n = 1 if gpu else 0
        if n > 0 and not gpu:
            raise UsageError("--gpus-per-node N needs --gpu TYPE (e.g. --gpu A100-40GB); `vplan gpus` lists the types")
        if mem is not None and mem.replace(".", "", 1).isdigit():
            eg = mem if mem.replace(".", "", 1).isascii() and float(mem) >= 1 else "256"
            raise UsageError(f"--node-mem {mem}: give a unit, e.g. {eg}GB or {eg}GiB (a bare number would be bytes)")
        return profile_for_gpu(gpu, n, node_mem=mem, cpus_per_node=cpus, nodes=nodes)
    return default_profile()


def check_options_from(kw: dict, profile: ClusterProfile) -> CheckOptions:
    prompt = kw.get("prompt_tokens") or kw["context_tokens"]
    if prompt > kw["context_tokens"]:
        raise UsageError(f"--prompt-tokens {prompt} exceeds --context {kw['context_tokens']}: the context holds the prompt")
    wl = Workload(context_tokens=kw["context_tokens"], prompt_tokens=prompt, max_new_tokens=kw["max_new_tokens"],
                  batch=kw["batch"], attn_implementation=kw["attn_implementation"], requests=kw["requests"])
    version = normalize_version(kw.get("transformers_version") or DEFAULT_TRANSFORMERS)
    search = SearchOptions(
        workload=wl, precision=_text(kw.get("precision"), "--precision"), max_gpus=kw.get("max_gpus"),
        no_offload=kw.get("no_offload", False), allow_disk=not kw.get("no_disk", False),
        min_tokens_per_s=kw.get("min_tokens_per_s", DEFAULT_MIN_TOKENS_PER_S),
        partition=_text(kw.get("partition"), "--partition"),
        mxfp4_kernels=bool(kw.get("mxfp4_kernels")) or profile.mxfp4_kernels or mxfp4_kernels_here(
            behaviour("mxfp4_requirements", version)),
        transformers=version, engine=kw.get("engine") or "transformers")
    profile.partition(search.partition)  # an unknown partition fails here, once, with the list
    return CheckOptions(search=search, revision=_text(kw.get("revision"), "--revision"),
                        offline=True if kw.get("offline") else None)
