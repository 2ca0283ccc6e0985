"""The Plan: the contract between the planner, the sbatch renderer and the runtime.

A plan file is versioned JSON (``schema_version``). Everything the runtime and the renderer need is in
it; neither re-plans. Integers are bytes (``*_bytes``), seconds (``*_s``/``*_seconds``) or tokens.

Device keys are strings in JSON: ``"0"``, ``"1"``, ... for GPUs, ``"cpu"``, ``"disk"``. ``device_map``
values use the same strings; the runtime turns GPU indices into ints for transformers.
"""
from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from vplan.planner.errors import PlanFileError

PLAN_SCHEMA_VERSION = 1
STATUSES = ("fits", "cpu-offload", "disk-offload", "does-not-fit")


@dataclass(frozen=True)
class Workload:
    context_tokens: int = 4096  # tokens cached per sequence (prompt + generated)
    prompt_tokens: int = 4096  # prefill length that sets the activation peak
    max_new_tokens: int = 512
    batch: int = 1
    attn_implementation: str = "sdpa"  # "sdpa" | "eager" (what transformers will run)
    requests: int = 1  # sequences the job generates (for --time auto)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "Workload":
        return cls(**{f.name: d[f.name] for f in fields(cls) if f.name in d})


@dataclass(frozen=True)
class DeviceBudget:
    """Planned bytes on one device. For GPUs, ``total_bytes`` is the expected peak."""

    device: str  # "0", "1", ..., "cpu", "disk"
    weights_bytes: int = 0
    kv_cache_bytes: int = 0
    activation_bytes: int = 0
    overhead_bytes: int = 0  # GPU: CUDA context + workspaces + allocator reserve; cpu: process + load peak
    capacity_bytes: int = 0  # what the device has (GPU memory, job RAM, scratch space)
    max_memory_bytes: int = 0  # the budget handed to from_pretrained(max_memory=...); 0 for disk

    @property
    def total_bytes(self) -> int:
        return self.weights_bytes + self.kv_cache_bytes + self.activation_bytes + self.overhead_bytes

    @property
    def free_bytes(self) -> int:
        return self.capacity_bytes - self.total_bytes

    def to_dict(self) -> dict:
        d = asdict(self)
        d["total_bytes"] = self.total_bytes
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "DeviceBudget":
        return cls(**{f.name: d[f.name] for f in fields(cls) if f.name in d})


@dataclass(frozen=True)
class Speed:
    decode_tokens_per_s: float  # per sequence, batch of `batch` decoded together
    prefill_tokens_per_s: float
    load_seconds: float
    assumptions: tuple[str, ...] = ()

    def to_dict(self) -> dict:
        d = asdict(self)
        d["assumptions"] = list(self.assumptions)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "Speed":
        return cls(d["decode_tokens_per_s"], d["prefill_tokens_per_s"], d["load_seconds"], tuple(d.get("assumptions", ())))

    def job_seconds(self, workload: Workload) -> float:
        """Load + prefill + decode for the workload's requests, batched `batch` at a time."""
        rounds = -(-workload.requests // max(1, workload.batch))
        prefill = workload.prompt_tokens * workload.batch / max(self.prefill_tokens_per_s, 1e-9)
        decode = workload.max_new_tokens / max(self.decode_tokens_per_s, 1e-9)
        return self.load_seconds + rounds * (prefill + decode)


@dataclass(frozen=True)
class Plan:
    model_id: str
    revision: str | None  # pinned commit sha; None only when no source could tell it (warned)
    source: str  # "hub" | "cache" | "catalog" | "local"
    architecture: str  # config model_type
    status: str  # one of STATUSES
    precision: str  # what weights are held in on the GPU: bf16 fp16 fp8 mxfp4 int8 nf4 gptq-int4 awq-int4 ...
    dtype: str  # compute dtype for from_pretrained: "bfloat16" | "float16" | "float32"
    quantization: dict | None  # {"method": "bitsandbytes"|"mxfp4"|"fp8"|..., "config": {...kwargs}} or None
    gpu_type: str | None
    gpus: int
    device_map: dict[str, str]  # module name -> "0".."n-1" | "cpu" | "disk"
    devices: tuple[DeviceBudget, ...]  # GPUs in order, then "cpu", then "disk" when used
    offload_folder: str | None  # where disk-offloaded weights go (node-local scratch), None if not needed
    host_ram_bytes: int  # what the job needs in host RAM (offloaded weights + load peak + process)
    disk_bytes: int  # offload folder bytes (not the Hub cache)
    hub_cache_bytes: int  # checkpoint bytes the HF cache must hold
    checkpoint_bytes: int
    params_total: int
    params_active: int
    kv_bytes_per_token: int
    kv_cache_bytes: int
    workload: Workload
    speed: Speed
    cluster: dict  # profile name, partition, gpu type, gpus_per_node, cpus_per_node, mem_bytes, ...
    config: dict  # the model config.json the plan was made from (the simulator and offline runtime need it)
    trust_remote_code: bool = False
    requirements: dict = field(default_factory=dict)  # {"transformers": ">=5.0", "bitsandbytes": ">=0.45", ...}
    conditions: tuple[str, ...] = ()  # what must hold on the node for the plan to be right (kernels, ...)
    warnings: tuple[str, ...] = ()
    reason: str | None = None  # why it does not fit (does-not-fit) or why this plan was chosen
    schema_version: int = PLAN_SCHEMA_VERSION
    vplan_version: str = ""
    created_at: str = ""

    def __post_init__(self):
        if self.status not in STATUSES:
            raise ValueError(f"status {self.status!r} not in {STATUSES}")

    @property
    def gpu_devices(self) -> tuple[DeviceBudget, ...]:
        return tuple(d for d in self.devices if d.device.isdigit())

    def device(self, name: str) -> DeviceBudget | None:
        return next((d for d in self.devices if d.device == name), None)

    @property
    def cpu_bytes(self) -> int:
        """Weights held in host RAM (CPU offload)."""
        d = self.device("cpu")
        return d.weights_bytes if d else 0

    @property
    def max_memory(self) -> dict[str, int]:
        return {d.device: d.max_memory_bytes for d in self.devices if d.device != "disk"}

    def to_dict(self) -> dict:
        d: dict[str, Any] = {}
        for f in fields(self):
            v = getattr(self, f.name)
            if f.name == "devices":
                v = [x.to_dict() for x in v]
            elif f.name in ("workload", "speed"):
                v = v.to_dict()
            elif isinstance(v, tuple):
                v = list(v)
            d[f.name] = v
        d["max_memory"] = self.max_memory
        d["cpu_bytes"] = self.cpu_bytes
        # Stable, readable order: schema first, config last.
        head = {k: d.pop(k) for k in ("schema_version", "vplan_version", "created_at", "model_id", "revision")}
        config = d.pop("config")
        return {**head, **d, "config": config}

    @classmethod
    def from_dict(cls, d: dict) -> "Plan":
        version = d.get("schema_version")
        if version != PLAN_SCHEMA_VERSION:
            raise PlanFileError(
                f"plan schema version {version!r} is not supported by this vplan (expects {PLAN_SCHEMA_VERSION}); "
                "re-create the plan with `vplan plan`"
            )
        kw: dict[str, Any] = {}
        for f in fields(cls):
            if f.name not in d:
                continue
            v = d[f.name]
            if f.name == "devices":
                v = tuple(DeviceBudget.from_dict(x) for x in v)
            elif f.name == "workload":
                v = Workload.from_dict(v)
            elif f.name == "speed":
                v = Speed.from_dict(v)
            elif f.name in ("conditions", "warnings"):
                v = tuple(v)
            kw[f.name] = v
        try:
            return cls(**kw)
        except (TypeError, ValueError) as e:
            raise PlanFileError(f"plan file is incomplete or malformed ({e}); re-create it with `vplan plan`") from None


def write_plan(plan: Plan, path: str | Path, *, force: bool = True) -> Path:
    """Write atomically (temp file + rename) so a crash never leaves half a plan."""
    p = Path(path)
    if p.exists() and not force:
        raise PlanFileError(f"{p} exists; pass --force to overwrite it")
    p.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(plan.to_dict(), indent=2, sort_keys=False) + "\n"
    fd, tmp = tempfile.mkstemp(dir=p.parent, prefix=f".{p.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        os.replace(tmp, p)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return p


def read_plan(path: str | Path) -> Plan:
    p = Path(path)
    try:
        data = json.loads(p.read_text())
    except FileNotFoundError:
        raise PlanFileError(f"plan file {str(p)!r} does not exist; create one with `vplan plan MODEL -o {p}`") from None
    except json.JSONDecodeError as e:
        raise PlanFileError(f"plan file {str(p)!r} is not valid JSON ({e.msg} at line {e.lineno}); re-create it with `vplan plan`") from None
    if not isinstance(data, dict):
        raise PlanFileError(f"plan file {str(p)!r} is not a JSON object; re-create it with `vplan plan`")
    return Plan.from_dict(data)
