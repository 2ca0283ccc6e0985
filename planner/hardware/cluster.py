"""Cluster profiles: partitions of GPU nodes, read from TOML or built from catalog flags.

The TOML format is documented in docs/slurm.md. Sizes are bytes internally; in TOML
they are strings such as ``"128GB"`` (decimal) or ``"120GiB"``/``"120G"`` (binary, SLURM style).
"""
from __future__ import annotations

import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path

from vplan.planner.errors import ClusterError, UsageError, VplanError
from vplan.planner.hardware.gpus import GB_S, GPU_CATALOG, GpuSpec, find_gpu
from vplan.planner.units import parse_duration_s, parse_size_bytes

DEFAULT_STORAGE_BYTES_PER_S = 1 * GB_S  # shared filesystem read, one client (Lustre/GPFS/NFS, conservative)
DEFAULT_SCRATCH_BYTES_PER_S = 2 * GB_S  # node-local NVMe read


@dataclass(frozen=True)
class Partition:
    name: str
    gpu: GpuSpec | None
    gpus_per_node: int
    cpus_per_node: int
    mem_bytes: int
    max_time_s: int | None = None  # None: no limit known
    nodes: int = 1
    local_scratch: str = "${TMPDIR:-/tmp}"
    scratch_bytes: int | None = None
    constraint: str | None = None

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "gpu": self.gpu.name if self.gpu else None,
            "gpus_per_node": self.gpus_per_node,
            "cpus_per_node": self.cpus_per_node,
            "mem_bytes": self.mem_bytes,
            "max_time_s": self.max_time_s,
            "nodes": self.nodes,
            "local_scratch": self.local_scratch,
            "scratch_bytes": self.scratch_bytes,
            "constraint": self.constraint,
        }


@dataclass(frozen=True)
class ClusterProfile:
    name: str
    partitions: tuple[Partition, ...]
    default_partition: str
    gpu_request: str = "gres"  # "gres" -> --gres=gpu:N ; "gpus-per-node" -> --gpus-per-node=N
    gres_typed: bool = False  # --gres=gpu:a100:2 instead of --gres=gpu:2
    gres_type_name: str | None = None  # the GRES type string the cluster uses (e.g. "a100")
    compute_nodes_online: bool = False
    hf_home: str | None = None
    storage_bytes_per_s: int = DEFAULT_STORAGE_BYTES_PER_S
    scratch_bytes_per_s: int = DEFAULT_SCRATCH_BYTES_PER_S
    setup: tuple[str, ...] = ()
    custom_gpus: tuple[GpuSpec, ...] = field(default=(), compare=False)

    def partition(self, name: str | None = None) -> Partition:
        want = name or self.default_partition
        for p in self.partitions:
            if p.name == want:
                return p
        names = ", ".join(p.name for p in self.partitions)
        raise UsageError(f"partition {want!r} is not in cluster profile {self.name!r}; partitions: {names}")

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "default_partition": self.default_partition,
            "gpu_request": self.gpu_request,
            "gres_typed": self.gres_typed,
            "gres_type_name": self.gres_type_name,
            "compute_nodes_online": self.compute_nodes_online,
            "hf_home": self.hf_home,
            "storage_bytes_per_s": self.storage_bytes_per_s,
            "scratch_bytes_per_s": self.scratch_bytes_per_s,
            "setup": list(self.setup),
            "partitions": [p.to_dict() for p in self.partitions],
            "custom_gpus": [g.to_dict() for g in self.custom_gpus],
        }

    @classmethod
    def from_dict(cls, d: dict) -> "ClusterProfile":
        customs = tuple(_gpu_from_table(g["name"], g) for g in d.get("custom_gpus", []))
        lookup = {g.name: g for g in customs}
        parts = []
        for p in d["partitions"]:
            gname = p.get("gpu")
            gpu = lookup.get(gname) if gname in lookup else (find_gpu(gname) if gname else None)
            parts.append(
                Partition(
                    name=p["name"], gpu=gpu, gpus_per_node=p["gpus_per_node"], cpus_per_node=p["cpus_per_node"],
                    mem_bytes=p["mem_bytes"], max_time_s=p.get("max_time_s"), nodes=p.get("nodes", 1),
                    local_scratch=p.get("local_scratch", "${TMPDIR:-/tmp}"), scratch_bytes=p.get("scratch_bytes"),
                    constraint=p.get("constraint"),
                )
            )
        return cls(
            name=d["name"], partitions=tuple(parts), default_partition=d["default_partition"],
            gpu_request=d.get("gpu_request", "gres"), gres_typed=d.get("gres_typed", False),
            gres_type_name=d.get("gres_type_name"), compute_nodes_online=d.get("compute_nodes_online", False),
            hf_home=d.get("hf_home"), storage_bytes_per_s=d.get("storage_bytes_per_s", DEFAULT_STORAGE_BYTES_PER_S),
            scratch_bytes_per_s=d.get("scratch_bytes_per_s", DEFAULT_SCRATCH_BYTES_PER_S),
            setup=tuple(d.get("setup", ())), custom_gpus=customs,
        )


def default_profile() -> ClusterProfile:
    """The problem statement's nodes: 2 x A100 40 GB, 4 CPUs, 128 GB RAM; no internet on compute nodes."""
    return ClusterProfile(
        name="default",
        partitions=(
            Partition(name="gpu", gpu=GPU_CATALOG["A100-40GB"], gpus_per_node=2, cpus_per_node=4,
                      mem_bytes=128 * 1000**3, max_time_s=48 * 3600, nodes=1),
        ),
        default_partition="gpu",
    )


def profile_for_gpu(gpu_name: str, gpus_per_node: int, node_mem: str | int | None = None,
                    cpus_per_node: int | None = None) -> ClusterProfile:
    """A one-partition profile from catalog flags (``--gpu H100-80GB --gpus-per-node 4``).

    Host RAM defaults to 2x the node's GPU memory (at least 64 GB), CPUs to 8 per GPU: typical of
    vendor reference nodes; pass ``--node-mem`` to state the real figure.
    """
    if gpus_per_node < 0 or gpus_per_node > 16:
        raise UsageError(f"--gpus-per-node must be between 0 and 16, got {gpus_per_node}")
    gpu = find_gpu(gpu_name) if gpus_per_node > 0 else None
    if node_mem is not None:
        mem = parse_size_bytes(node_mem, what="--node-mem")
    else:
        mem = max(64 * 1000**3, 2 * gpus_per_node * (gpu.memory_bytes if gpu else 0))
    cpus = cpus_per_node if cpus_per_node else max(4, 8 * gpus_per_node)
    pname = f"{gpu.name if gpu else 'cpu'}x{gpus_per_node}"
    return ClusterProfile(
        name=pname,
        partitions=(Partition(name=pname, gpu=gpu, gpus_per_node=gpus_per_node, cpus_per_node=cpus,
                              mem_bytes=mem, max_time_s=None),),
        default_partition=pname,
    )


def _gpu_from_table(name: str, t: dict) -> GpuSpec:
    try:
        cc = t.get("compute_capability", "8.0")
        cc_t = tuple(int(x) for x in str(cc).split("."))[:2]
        mem = parse_size_bytes(t["memory"] if "memory" in t else t["memory_bytes"], what=f"gpus.{name}.memory")
        bw = t.get("hbm_bytes_per_s") or int(float(t.get("hbm_gb_per_s", 1000)) * GB_S)
        link = t.get("host_link_bytes_per_s") or int(float(t.get("host_link_gb_per_s", 25)) * GB_S)
        return GpuSpec(
            name=name, memory_bytes=mem, hbm_bytes_per_s=int(bw), compute_capability=cc_t,  # type: ignore[arg-type]
            bf16=bool(t.get("bf16", cc_t >= (8, 0))), fp8=bool(t.get("fp8", cc_t >= (8, 9))),
            bf16_tflops=float(t.get("bf16_tflops", 100.0)), host_link_bytes_per_s=int(link),
            aliases=tuple(a.lower() for a in t.get("aliases", ())),
        )
    except (KeyError, ValueError, TypeError) as e:
        raise ClusterError(f"GPU {name!r} in the cluster file is incomplete ({e}); give at least memory = \"48GB\"") from None


def load_profile(path: str | Path) -> ClusterProfile:
    """Read a cluster profile TOML (format in docs/slurm.md)."""
    p = Path(path)
    try:
        data = tomllib.loads(p.read_text())
    except FileNotFoundError:
        raise ClusterError(f"cluster file {str(p)!r} does not exist; create one with `vplan cluster detect > cluster.toml`") from None
    except tomllib.TOMLDecodeError as e:
        raise ClusterError(f"cluster file {str(p)!r} is not valid TOML ({e}); fix it or regenerate with `vplan cluster detect`") from None
    return profile_from_toml_dict(data, origin=str(p))


def profile_from_toml_dict(data: dict, origin: str = "<toml>") -> ClusterProfile:
    try:
        customs = tuple(_gpu_from_table(n, t) for n, t in (data.get("gpus") or {}).items())
        custom_by_name = {g.name.lower(): g for g in customs}
        for g in customs:
            for a in g.aliases:
                custom_by_name[a] = g
        parts_raw = data.get("partitions")
        if isinstance(parts_raw, dict):
            parts_raw = [dict(v, name=k) for k, v in parts_raw.items()]
        if not parts_raw:
            raise ClusterError(f"{origin}: no [partitions.NAME] table; see docs/slurm.md (cluster profiles)")
        parts = []
        for pr in parts_raw:
            gname = pr.get("gpu")
            gpus = int(pr.get("gpus_per_node", 0 if not gname else 1))
            gpu = None
            if gname and gpus > 0:
                gpu = custom_by_name.get(str(gname).lower()) or find_gpu(str(gname))
            max_time = pr.get("max_time")
            mts = parse_duration_s(str(max_time)) if max_time not in (None, "") else None
            parts.append(
                Partition(
                    name=str(pr["name"]), gpu=gpu, gpus_per_node=gpus, cpus_per_node=int(pr.get("cpus_per_node", 4)),
                    mem_bytes=parse_size_bytes(pr.get("mem", "64GB"), what=f"partitions.{pr['name']}.mem"),
                    max_time_s=mts or None, nodes=int(pr.get("nodes", 1)),
                    local_scratch=str(pr.get("local_scratch", "${TMPDIR:-/tmp}")),
                    scratch_bytes=parse_size_bytes(pr["scratch"], what="scratch") if pr.get("scratch") else None,
                    constraint=pr.get("constraint") or None,
                )
            )
        default = data.get("default_partition", parts[0].name)
        if default not in {p.name for p in parts}:
            raise ClusterError(f"{origin}: default_partition {default!r} is not one of the partitions")
        gpu_request = data.get("gpu_request", "gres")
        if gpu_request not in ("gres", "gpus-per-node"):
            raise ClusterError(f"{origin}: gpu_request must be \"gres\" or \"gpus-per-node\", got {gpu_request!r}")
        storage = data.get("storage_gb_per_s")
        scratch = data.get("scratch_gb_per_s")
        return ClusterProfile(
            name=str(data.get("name", Path(origin).stem)), partitions=tuple(parts), default_partition=default,
            gpu_request=gpu_request, gres_typed=bool(data.get("gres_typed", False)),
            gres_type_name=data.get("gres_type_name"), compute_nodes_online=bool(data.get("compute_nodes_online", False)),
            hf_home=data.get("hf_home"),
            storage_bytes_per_s=int(float(storage) * GB_S) if storage else DEFAULT_STORAGE_BYTES_PER_S,
            scratch_bytes_per_s=int(float(scratch) * GB_S) if scratch else DEFAULT_SCRATCH_BYTES_PER_S,
            setup=tuple(str(s) for s in data.get("setup", ())), custom_gpus=customs,
        )
    except VplanError:
        raise
    except (KeyError, ValueError, TypeError) as e:
        raise ClusterError(f"{origin}: malformed cluster profile ({type(e).__name__}: {e}); see docs/slurm.md (cluster profiles)") from None


def with_partition(profile: ClusterProfile, part: Partition) -> ClusterProfile:
    """The same profile restricted to one (possibly modified) partition."""
    return replace(profile, partitions=(part,), default_partition=part.name)
