"""Cluster profiles: partitions of GPU nodes (the TOML form is read and written by vplan.planner.slurm.profile_toml).

Sizes are bytes. The default profile is the problem statement's nodes; ``profile_for_gpu`` builds one from catalog
flags and records, in ``assumed``, every node fact it had to assume (so the output can say so).
"""
from __future__ import annotations

from dataclasses import dataclass, field

from vplan.planner.errors import UsageError
from vplan.planner.hardware.gpus import GPU_CATALOG, GpuSpec, find_gpu
from vplan.planner.units import GB, GB_S, parse_size_bytes

# Checkpoint read bandwidth by storage kind: one transformers process reading safetensors shards (mmap), cold.
# - network (Lustre/GPFS/NFS): transformers' loader reads Lustre at 0.26-0.7 GiB/s cold although the file system
#   streams 2.0 GiB/s to one sequential reader (huggingface/transformers#48227, H100 nodes); mmap page faults on
#   network mounts can fall to tens of MB/s (sgl-project/sglang#37806: 28 MiB/s on Lustre; ollama/ollama#5826,
#   Azure Files NFS). 0.5 GB/s: the middle of the transformers figures; state yours in the cluster profile.
# - nvme (node-local): Qwen3-30B-A3B, 61 GB, loads in ~12 s from AWS NVMe including the copy to 4 GPUs
#   (huggingface/transformers#37902): ~5 GB/s.
# - page-cache (a second load on the same node): the loader reads warm pages at 10-20 GiB/s (transformers#48227);
#   10 GB/s, about what pageable host-to-GPU copies sustain.
STORAGE_BYTES_PER_S = {"network": int(0.5 * GB_S), "nvme": 5 * GB_S, "page-cache": 10 * GB_S}
DEFAULT_STORAGE = "network"
# Reading an offload folder on node-local disk every step: accelerate's disk offload of OPT-30B and GPT-NeoX-20B
# (fp32, 2 x Titan RTX) decodes at 33.9 and 10.72 s/token with ~55 and ~15 GB on disk besides ~24 GB on the CPU:
# 1.8-2.2 GB/s once the CPU part's host-link time is taken out (benchmarks/evidence rows E0238, E0235).
DEFAULT_SCRATCH_BYTES_PER_S = 2 * GB_S
MAX_GPUS_PER_NODE = 16
MIN_NODE_MEM_BYTES = 1 * GB  # below this a "node" cannot even hold the Python process
MAX_NODE_MEM_BYTES = 10**15  # 1 PB: ten times the largest shared-memory nodes


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

    def summary(self) -> dict:
        return {"name": self.name, "gpu": self.gpu.name if self.gpu else None, "gpus_per_node": self.gpus_per_node,
                "cpus_per_node": self.cpus_per_node, "mem_bytes": self.mem_bytes, "max_time_s": self.max_time_s,
                "nodes": self.nodes, "scratch_bytes": self.scratch_bytes}


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
    storage: str = DEFAULT_STORAGE  # where checkpoints are read from: network | nvme | page-cache
    storage_bytes_per_s: int = STORAGE_BYTES_PER_S[DEFAULT_STORAGE]
    scratch_bytes_per_s: int = DEFAULT_SCRATCH_BYTES_PER_S
    setup: tuple[str, ...] = ()
    custom_gpus: tuple[GpuSpec, ...] = ()
    mxfp4_kernels: bool = False  # the nodes have `kernels` + triton for MXFP4 (gpt-oss stays MXFP4)
    network_interface: str | None = None  # NCCL_SOCKET_IFNAME / GLOO_SOCKET_IFNAME for multi-node jobs
    assumed: tuple[str, ...] = field(default=(), compare=False)  # node facts vplan assumed (not given)

    def partition(self, name: str | None = None) -> Partition:
        want = name or self.default_partition
        for p in self.partitions:
            if p.name == want:
                return p
        names = ", ".join(p.name for p in self.partitions)
        raise UsageError(f"partition {want!r} is not in cluster profile {self.name!r}; partitions: {names}")


def default_profile() -> ClusterProfile:
    """The problem statement's nodes: 2 x A100 40 GB, 4 CPUs, 128 GB RAM; no internet on compute nodes."""
    return ClusterProfile(
        name="default",
        partitions=(Partition(name="gpu", gpu=GPU_CATALOG["A100-40GB"], gpus_per_node=2, cpus_per_node=4,
                              mem_bytes=128 * GB, max_time_s=48 * 3600, nodes=8),),
        default_partition="gpu",
        assumed=("default nodes: 2 x A100-40GB, 4 CPUs, 128 GB RAM; 8 nodes, a 2-day limit and checkpoints on a network "
                 "file system; describe yours with --cluster FILE (vplan cluster detect)",),
    )


def profile_for_gpu(gpu_name: str | None, gpus_per_node: int, node_mem: str | int | None = None,
                    cpus_per_node: int | None = None, nodes: int | None = None) -> ClusterProfile:
    """A one-partition profile from catalog flags (``--gpu H100-80GB --gpus-per-node 4``).

    Unstated facts are assumed and listed in ``assumed``: host RAM 2x the node's GPU memory (at least 64 GB),
    8 CPUs per GPU (at least 4), one node.
    """
    if not 0 <= gpus_per_node <= MAX_GPUS_PER_NODE:
        raise UsageError(f"--gpus-per-node must be between 0 and {MAX_GPUS_PER_NODE}, got {gpus_per_node}")
    gpu = find_gpu(gpu_name) if gpus_per_node > 0 and gpu_name else None
    if gpus_per_node > 0 and gpu is None:
        raise UsageError(f"--gpus-per-node {gpus_per_node} needs --gpu TYPE (e.g. --gpu A100-40GB); `vplan gpus` lists them")
    assumed = []
    if node_mem is not None:
        mem = parse_size_bytes(node_mem, what="--node-mem")
        if not MIN_NODE_MEM_BYTES <= mem <= MAX_NODE_MEM_BYTES:
            raise UsageError(f"--node-mem {node_mem}: host RAM per node must be from 1 GB to 1 PB (the job's process "
                             "alone needs a few GB); give the node's RAM, e.g. 256GB")
    else:
        mem = max(64 * GB, 2 * gpus_per_node * (gpu.memory_bytes if gpu else 0))
        assumed.append(f"host RAM {mem / GB:.0f} GB per node (2x its GPU memory; give --node-mem)")
    if cpus_per_node is None:
        cpus_per_node = max(4, 8 * gpus_per_node)
        assumed.append(f"{cpus_per_node} CPUs per node (give --cpus-per-node)")
    if nodes is None:
        nodes = 1
        assumed.append("1 node (give --nodes for multi-node engines)")
    assumed.append(f"checkpoints read from a network file system at {STORAGE_BYTES_PER_S[DEFAULT_STORAGE] / GB_S:g} GB/s "
                   "(set storage in a --cluster profile)")
    pname = f"{gpu.name if gpu else 'cpu'}x{gpus_per_node}"
    return ClusterProfile(
        name=pname,
        partitions=(Partition(name=pname, gpu=gpu, gpus_per_node=gpus_per_node, cpus_per_node=cpus_per_node,
                              mem_bytes=mem, max_time_s=None, nodes=nodes),),
        default_partition=pname, assumed=tuple(assumed),
    )
