"""The Plan: the contract between the planner, the sbatch renderer and the runtime (schema version 2).

Everything the runtime and the renderer need is in a plan; neither re-plans. Integers are bytes (``*_bytes``),
seconds (``*_s``/``*_seconds``) or tokens. Device keys are strings: ``"0"``, ``"1"``, ... for GPUs (the CUDA
index on that device's node), ``"cpu"``, ``"disk"``. Each field's ``metadata`` carries its documentation and
bounds: the JSON Schema shipped beside this module (``schema.json``) is generated from these dataclasses
(:mod:`vplan.planner.plan.schema`), and a test keeps the two identical.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, fields, is_dataclass
from typing import Optional

PLAN_SCHEMA_VERSION = 2
STATUSES = ("fits", "cpu-offload", "disk-offload", "does-not-fit")
ENGINES = ("transformers", "vllm")
ATTENTION = ("sdpa", "eager")
SOURCES = ("hub", "cache", "catalog", "local", "config")
DTYPES = ("bfloat16", "float16", "float32")
# The runtime's allocator setting: the one place the planner, the sbatch renderer and the runtime read it.
ALLOC_CONF = "expandable_segments:True"


def doc(text: str, **bounds) -> dict:
    """Field metadata: the schema description plus JSON Schema bounds (minimum, maximum, enum, ...)."""
    return {"doc": text, **bounds}


class Rejection:
    """Why a candidate plan cannot run (``Plan.rejection``): one kind per cause, never told apart by message text."""

    GPU_MEMORY = "gpu-memory"  # all-GPU placement: the GPUs cannot hold weights + KV + activations + overhead
    OFFLOAD_CAPACITY = "offload-capacity"  # weights exceed the GPUs + host RAM (+ disk, where allowed)
    GPU0_OFFLOAD_ROOM = "gpu0-offload-room"  # GPU 0 cannot also hold offloaded layers' KV and one offloaded block
    TOO_SLOW = "too-slow"  # runs, but slower than the --min-tokens-per-s floor
    PRECISION = "precision"  # the precision cannot run for this model on this GPU (policy, with the reason)
    CONTEXT = "context"  # the engine cannot hold max_model_len at the asked concurrency (vLLM KV pool)
    NODES = "nodes"  # more nodes than the partition has
    ENGINE = "engine"  # the engine cannot run this model or partition (as vplan models it), with the reason
    HOST_MEMORY = "host-memory"  # the job's host RAM (process, loading peak, CPU weights) exceeds the node's usable RAM
    ALL = (GPU_MEMORY, OFFLOAD_CAPACITY, GPU0_OFFLOAD_ROOM, TOO_SLOW, PRECISION, CONTEXT, NODES, ENGINE, HOST_MEMORY)


@dataclass(frozen=True)
class Workload:
    context_tokens: int = field(default=4096, metadata=doc("tokens cached per sequence (prompt + generated)", minimum=1))
    prompt_tokens: int = field(default=4096, metadata=doc("prefill length that sets the activation peak", minimum=1))
    max_new_tokens: int = field(default=512, metadata=doc("tokens generated per request", minimum=1))
    batch: int = field(default=1, metadata=doc("sequences decoded together (vLLM: concurrent requests)", minimum=1))
    attn_implementation: str = field(default="sdpa", metadata=doc("attention transformers runs", enum=ATTENTION))
    requests: int = field(default=1, metadata=doc("sequences the job generates (job time, GPU-hours)", minimum=1))


@dataclass(frozen=True)
class DeviceBudget:
    """Planned bytes on one device. For GPUs ``total_bytes`` is the expected peak (vLLM: the rank's share of
    ``gpu_memory_utilization``)."""

    device: str = field(metadata=doc('"0", "1", ... (GPU index on its node), "cpu" or "disk"', pattern=r"^([0-9]+|cpu|disk)$"))
    weights_bytes: int = field(default=0, metadata=doc("weights as held on the device", minimum=0))
    kv_cache_bytes: int = field(default=0, metadata=doc("KV cache (vLLM: the whole KV pool of the rank)", minimum=0))
    activation_bytes: int = field(default=0, metadata=doc("activation peak (vLLM: the profiling run's peak)", minimum=0))
    overhead_bytes: int = field(default=0, metadata=doc(
        "GPU: CUDA context, workspaces, allocator reserve (vLLM: non-torch memory and CUDA graphs); "
        "cpu: the process and the loading peak", minimum=0))
    capacity_bytes: int = field(default=0, metadata=doc("what torch can allocate on the GPU; job RAM; scratch", minimum=0))
    node: int = field(default=0, metadata=doc("node of a multi-node plan (0 for one node)", minimum=0))

    @property
    def total_bytes(self) -> int:
        return self.weights_bytes + self.kv_cache_bytes + self.activation_bytes + self.overhead_bytes

    @property
    def tensor_bytes(self) -> int:
        """What torch's allocator holds at the peak: the total less the overheads outside it."""
        return self.weights_bytes + self.kv_cache_bytes + self.activation_bytes

    @property
    def free_bytes(self) -> int:
        return self.capacity_bytes - self.total_bytes

    @property
    def is_gpu(self) -> bool:
        return self.device.isdigit()


@dataclass(frozen=True)
class Speed:
    decode_tokens_per_s: float = field(metadata=doc("decode speed of one sequence", minimum=0))
    prefill_tokens_per_s: float = field(metadata=doc("prompt tokens processed per second", minimum=0))
    load_seconds: float = field(metadata=doc("reading the checkpoint (and writing an offload folder)", minimum=0))
    throughput_tokens_per_s: float = field(metadata=doc(
        "generated tokens per second of the whole job at the workload's concurrency", minimum=0))
    seconds_per_request: float = field(metadata=doc(
        "wall seconds per request once loaded, amortised over the concurrency", minimum=0))
    assumptions: tuple[str, ...] = field(default=(), metadata=doc("what the figures assume, in words"))

    def job_seconds(self, requests: int) -> float:
        """Load, then ``requests`` requests at the planned concurrency."""
        return self.load_seconds + requests * self.seconds_per_request


@dataclass(frozen=True)
class Quantization:
    method: str = field(metadata=doc("bitsandbytes | fp8 | mxfp4 | gptq | awq | ... (transformers' quant_method)"))
    config: dict = field(default_factory=dict, metadata=doc("keyword arguments of the transformers config class"))


@dataclass(frozen=True)
class Requirement:
    spec: str = field(metadata=doc('version specifier, e.g. ">=5.24,<5.25" (empty: any version)'))
    why: str = field(metadata=doc("what needs it"))


@dataclass(frozen=True)
class ClusterShape:
    profile: str = field(metadata=doc("cluster profile name"))
    partition: str = field(metadata=doc("SLURM partition"))
    gpu: Optional[str] = field(metadata=doc("GPU type of the partition (catalog name), null for CPU-only"))
    gpus_per_node: int = field(metadata=doc("GPUs per node of the partition", minimum=0))
    cpus_per_node: int = field(metadata=doc("CPUs per node", minimum=1))
    mem_bytes: int = field(metadata=doc("RAM per node", minimum=1))
    nodes: int = field(default=1, metadata=doc("nodes the partition has", minimum=1))
    storage: str = field(default="network", metadata=doc("where checkpoints are read from (load time)",
                                                         enum=("nvme", "network", "page-cache")))
    storage_bytes_per_s: int = field(default=500_000_000, metadata=doc("checkpoint read bandwidth", minimum=1))
    assumed: tuple[str, ...] = field(default=(), metadata=doc("node facts vplan assumed because they were not given"))


@dataclass(frozen=True)
class VllmRank:
    """One vLLM worker (one GPU): what vLLM itself allocates there."""

    node: int = field(metadata=doc("node index", minimum=0))
    gpu: int = field(metadata=doc("CUDA index on the node", minimum=0))
    tp_rank: int = field(metadata=doc("tensor-parallel rank", minimum=0))
    pp_rank: int = field(metadata=doc("pipeline stage", minimum=0))
    layers: tuple[int, ...] = field(metadata=doc("decoder layers of this pipeline stage"))
    weights_bytes: int = field(metadata=doc("weights this rank loads (sharded as vLLM shards them)", minimum=0))
    profile_peak_bytes: int = field(metadata=doc("torch peak of the profiling run beyond weights", minimum=0))
    non_torch_bytes: int = field(metadata=doc("CUDA context, NCCL buffers: memory outside torch's allocator", minimum=0))
    cuda_graph_bytes: int = field(metadata=doc("memory the CUDA graphs capture takes (0 with enforce_eager)", minimum=0))
    kv_cache_bytes: int = field(metadata=doc("this rank's KV pool", minimum=0))


@dataclass(frozen=True)
class VllmArgs:
    version: str = field(metadata=doc("vLLM version whose allocation the plan models"))
    tensor_parallel_size: int = field(metadata=doc("--tensor-parallel-size", minimum=1))
    pipeline_parallel_size: int = field(metadata=doc("--pipeline-parallel-size", minimum=1))
    quantization: Optional[str] = field(metadata=doc("--quantization (vLLM's method name), null for none"))
    dtype: str = field(metadata=doc("--dtype", enum=DTYPES))
    kv_cache_dtype: str = field(metadata=doc("--kv-cache-dtype", enum=("auto", "fp8", "fp8_e4m3", "fp8_e5m2")))
    max_model_len: int = field(metadata=doc("--max-model-len", minimum=1))
    gpu_memory_utilization: float = field(metadata=doc("--gpu-memory-utilization", exclusiveMinimum=0, maximum=1))
    max_num_seqs: int = field(metadata=doc("--max-num-seqs", minimum=1))
    max_num_batched_tokens: int = field(metadata=doc("--max-num-batched-tokens", minimum=1))
    block_size: int = field(metadata=doc("--block-size (tokens per KV page)", minimum=1))
    enforce_eager: bool = field(metadata=doc("--enforce-eager (no CUDA graphs)"))
    kv_cache_tokens: int = field(metadata=doc("KV cache tokens the engine will report", minimum=0))
    max_concurrency: float = field(metadata=doc("requests of max_model_len tokens the KV pool holds at once", minimum=0))
    port: int = field(default=8000, metadata=doc("OpenAI-compatible server port", minimum=1, maximum=65535))
    ranks: tuple[VllmRank, ...] = field(default=(), metadata=doc("every worker, node by node"))


@dataclass(frozen=True)
class Plan:
    model_id: str = field(metadata=doc("Hub repo id, or the absolute folder of a local model"))
    revision: Optional[str] = field(metadata=doc("pinned commit sha; null only when no source could tell it"))
    source: str = field(metadata=doc("where the model's facts came from", enum=SOURCES))
    architecture: str = field(metadata=doc("config model_type"))
    engine: str = field(metadata=doc("how the model runs", enum=ENGINES))
    status: str = field(metadata=doc("fits: all on GPUs; cpu-/disk-offload; does-not-fit", enum=STATUSES))
    rejection: Optional[str] = field(metadata=doc("why a does-not-fit plan cannot run (a kind), null otherwise",
                                                  enum=Rejection.ALL + (None,)))
    reason: str = field(metadata=doc("why this plan was chosen, or why it cannot run, in words"))
    precision: str = field(metadata=doc("what the weights are held in on the GPU: bf16 fp16 fp8 mxfp4 int8 nf4 ..."))
    dtype: str = field(metadata=doc("compute dtype", enum=DTYPES))
    quantization: Optional[Quantization] = field(metadata=doc("quantization config, null for none"))
    gpu_type: Optional[str] = field(metadata=doc("GPU catalog name, null for CPU-only"))
    gpus: int = field(metadata=doc("GPUs used per node", minimum=0))
    nodes: int = field(metadata=doc("nodes used", minimum=1))
    device_map: dict[str, str] = field(metadata=doc("transformers: module name -> device (empty for vLLM)"))
    devices: tuple[DeviceBudget, ...] = field(metadata=doc("GPUs node by node, then cpu, then disk"))
    offload_folder: Optional[str] = field(metadata=doc("where disk-offloaded weights are written, null if unused"))
    host_ram_bytes: int = field(metadata=doc("host RAM the job needs per node", minimum=0))
    disk_bytes: int = field(metadata=doc("offload folder bytes (not the Hub cache)", minimum=0))
    hub_cache_bytes: int = field(metadata=doc("checkpoint bytes the HF cache must hold", minimum=0))
    checkpoint_bytes: int = field(metadata=doc("checkpoint bytes on disk", minimum=0))
    params_total: int = field(metadata=doc("parameters", minimum=0))
    params_active: int = field(metadata=doc("parameters read per token (MoE: the routed share)", minimum=0))
    kv_bytes_per_token: int = field(metadata=doc("KV cache growth per sequence per token", minimum=0))
    kv_cache_bytes: int = field(metadata=doc("KV cache for the workload (vLLM: the whole pool)", minimum=0))
    workload: Workload = field(metadata=doc("what the plan was sized for"))
    speed: Speed = field(metadata=doc("expected speed, with its assumptions"))
    cluster: ClusterShape = field(metadata=doc("the nodes the plan was made for"))
    config: dict = field(metadata=doc("the model's config.json (the simulator and an offline runtime need it)"))
    trust_remote_code: bool = field(default=False, metadata=doc("always false: natively supported code only"))
    requirements: dict[str, Requirement] = field(default_factory=dict, metadata=doc(
        "packages the node needs, by distribution name; transformers' range is the one the memory model is for"))
    conditions: tuple[str, ...] = field(default=(), metadata=doc("what must hold on the node for the plan to be right"))
    warnings: tuple[str, ...] = field(default=(), metadata=doc("caveats"))
    vllm: Optional[VllmArgs] = field(default=None, metadata=doc("the vLLM engine's arguments and per-rank figures"))
    schema_version: int = field(default=PLAN_SCHEMA_VERSION, metadata=doc("plan file format", enum=(PLAN_SCHEMA_VERSION,)))
    vplan_version: str = field(default="", metadata=doc("vplan that wrote the plan"))
    created_at: str = field(default="", metadata=doc("UTC time the plan file was written (ISO 8601)"))

    def __post_init__(self):
        check_numbers(self)

    @property
    def gpu_devices(self) -> tuple[DeviceBudget, ...]:
        return tuple(d for d in self.devices if d.is_gpu)

    def device(self, name: str) -> DeviceBudget | None:
        return next((d for d in self.devices if d.device == name), None)

    @property
    def cpu_bytes(self) -> int:
        """Weights held in host RAM (CPU offload)."""
        d = self.device("cpu")
        return d.weights_bytes if d else 0

    @property
    def offload_disk_bytes(self) -> int:
        d = self.device("disk")
        return d.weights_bytes if d else 0

    @property
    def fits(self) -> bool:
        return self.status != "does-not-fit"


class PlanInvariantError(ValueError):
    """A plan broke what the contract promises (integer bytes, finite numbers, ...): a bug where plans are built;
    plan_from_dict turns it into a PlanFileError for files."""


def _numeric_fields(cls) -> tuple:
    cached = _NUMERIC.get(cls)
    if cached is None:
        cached = _NUMERIC[cls] = tuple((f.name, f.type.removeprefix("Optional[").rstrip("]"), f.metadata.get("minimum"),
                                        f.metadata.get("maximum")) for f in fields(cls))
    return cached


_NUMERIC: dict = {}


def _check_record(obj, path: str) -> None:
    for name, tp, lo, hi in _numeric_fields(type(obj)):
        v = getattr(obj, name)
        where = f"{path}{name}"
        if tp == "int" and v is not None:
            if isinstance(v, bool) or not isinstance(v, int):
                raise PlanInvariantError(f"{where} = {v!r} is not a whole number")
        elif tp == "float" and v is not None:
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                raise PlanInvariantError(f"{where} = {v!r} is not a finite number")
        elif is_dataclass(v):
            _check_record(v, f"{where}.")
            continue
        elif isinstance(v, tuple):
            for i, x in enumerate(v):
                if is_dataclass(x):
                    _check_record(x, f"{where}[{i}].")
            continue
        else:
            continue
        if (lo is not None and v < lo) or (hi is not None and v > hi):
            raise PlanInvariantError(f"{where} = {v!r} is outside {lo}..{hi}")


def check_numbers(plan: "Plan") -> None:
    """What every plan guarantees, however it was built: bytes and counts are whole numbers within the schema's
    bounds, speeds are finite, active parameters do not exceed the total, and a runnable plan fits every GPU."""
    _check_record(plan, "")
    if plan.params_active > plan.params_total:
        raise PlanInvariantError(f"params_active {plan.params_active} exceeds params_total {plan.params_total}")
    if plan.status != "does-not-fit":
        for d in plan.devices:
            if d.is_gpu and d.total_bytes > d.capacity_bytes:
                raise PlanInvariantError(f"status {plan.status} but GPU {d.device} needs {d.total_bytes} of "
                                         f"{d.capacity_bytes} bytes")
