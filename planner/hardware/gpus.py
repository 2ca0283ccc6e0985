"""Built-in GPU catalog: public specs the memory and speed models need, each capacity with its source.

``memory_bytes`` is what torch can allocate: ``torch.cuda.get_device_properties(i).total_memory``, which is
less than the nvidia-smi total (the driver keeps a reserved area) and much less than the marketing figure. It
is the capacity every plan is budgeted against. Where a public torch figure exists it is used (the lowest
reported, MiB-aligned); otherwise the nvidia-smi total minus 0.85 GiB, the largest gap between the two among
the cards measured (A100-80GB), and ``memory_source`` says so.

Bandwidths are vendor datasheet peaks in bytes/s. ``host_link_bytes_per_s``: what a pinned host-to-device copy
achieves on that generation's PCIe link (PCIe 4.0 x16 ~25 GB/s, 5.0 ~50 GB/s, 3.0 ~12 GB/s).
``interconnect_bytes_per_s``: GPU-to-GPU bandwidth per direction inside a node for tensor-parallel all-reduce
(NVLink datasheet figure halved for one direction; PCIe cards: the PCIe link).
"""
from __future__ import annotations

from dataclasses import dataclass

from vplan.planner.errors import UsageError
from vplan.planner.units import GB_S, GIB, MIB

SMI_GAP_BYTES = int(0.85 * GIB)  # nvidia-smi total - torch total_memory, the largest gap measured (A100-80GB)
_TORCH = "torch total_memory, public reports (FACTS.md)"


@dataclass(frozen=True)
class GpuSpec:
    name: str
    memory_bytes: int  # what torch can allocate (total_memory)
    hbm_bytes_per_s: int
    compute_capability: tuple[int, int]
    bf16: bool
    fp8: bool
    bf16_tflops: float
    host_link_bytes_per_s: int
    interconnect_bytes_per_s: int = 25 * GB_S
    aliases: tuple[str, ...] = ()
    memory_source: str = ""  # where memory_bytes comes from

    @property
    def mxfp4_capable(self) -> bool:
        """transformers' MXFP4 kernels run on compute capability >= 7.5 (with triton >= 3.4 and `kernels`)."""
        return self.compute_capability >= (7, 5)

    def summary(self) -> dict:
        return {"name": self.name, "memory_bytes": self.memory_bytes, "memory_source": self.memory_source,
                "hbm_bytes_per_s": self.hbm_bytes_per_s, "compute_capability": ".".join(map(str, self.compute_capability)),
                "bf16": self.bf16, "fp8": self.fp8, "bf16_tflops": self.bf16_tflops,
                "host_link_bytes_per_s": self.host_link_bytes_per_s,
                "interconnect_bytes_per_s": self.interconnect_bytes_per_s, "aliases": list(self.aliases)}


def _torch(total_bytes: int) -> tuple[int, str]:
    return total_bytes, _TORCH


def _smi(mib: int) -> tuple[int, str]:
    return mib * MIB - SMI_GAP_BYTES, f"nvidia-smi total {mib:,} MiB minus 0.85 GiB (no public torch figure)"


def _gpu(name, memory, bw_gbs, cc, bf16, fp8, tflops, link_gbs, nvlink_gbs, *aliases) -> GpuSpec:
    mem, source = memory
    return GpuSpec(name, mem, int(bw_gbs * GB_S), cc, bf16, fp8, tflops, int(link_gbs * GB_S), int(nvlink_gbs * GB_S),
                   tuple(aliases), source)


GPU_CATALOG: dict[str, GpuSpec] = {
    g.name: g
    for g in (
        _gpu("A100-40GB", _torch(42_298_834_944), 1555, (8, 0), True, False, 312, 25, 300,
             "a100", "a100-sxm4-40gb", "a100_40g", "a100-40g"),
        _gpu("A100-40GB-PCIe", _torch(42_298_834_944), 1555, (8, 0), True, False, 312, 25, 25,
             "a100-pcie-40gb", "a100-pcie"),
        _gpu("A100-80GB", _torch(84_986_036_224), 2039, (8, 0), True, False, 312, 25, 300,
             "a100-80gb", "a100_80g", "a100-sxm4-80gb", "a100-80g", "a100l"),
        _gpu("H100-80GB", _torch(84_943_044_608), 3350, (9, 0), True, True, 989, 50, 450,
             "h100", "h100-sxm", "h100-80gb", "h100_80g", "h100-sxm5-80gb", "h100-80g"),
        _gpu("H100-PCIe", _torch(84_943_044_608), 2000, (9, 0), True, True, 756, 50, 50, "h100-pcie", "h100_pcie"),
        _gpu("H100-NVL", _smi(95_830), 3900, (9, 0), True, True, 835, 50, 300, "h100-nvl", "h100_nvl", "h100nvl"),
        _gpu("H200", _torch(150_022_914_048), 4800, (9, 0), True, True, 989, 50, 450, "h200", "h200-141gb", "h200_141g"),
        _gpu("L40S", _torch(47_663_022_080), 864, (8, 9), True, True, 362, 25, 25, "l40s"),
        _gpu("L4", _smi(23_034), 300, (8, 9), True, True, 121, 25, 25, "l4"),
        _gpu("A10", _smi(23_028), 600, (8, 6), True, False, 125, 25, 25, "a10", "a10g"),
        _gpu("RTX-A6000", _smi(49_140), 768, (8, 6), True, False, 155, 25, 25, "a6000", "rtx_a6000", "rtxa6000"),
        _gpu("V100-32GB", _smi(32_510), 900, (7, 0), False, False, 125, 12, 150,
             "v100", "v100-32gb", "v100s", "v100_32g", "tesla-v100"),
    )
}


def find_gpu(name: str) -> GpuSpec:
    """Look a GPU up by catalog name or alias (case-insensitive)."""
    key = str(name).strip().lower().replace(" ", "-")
    for gpu in GPU_CATALOG.values():
        if key == gpu.name.lower() or key in gpu.aliases:
            return gpu
    known = ", ".join(GPU_CATALOG)
    raise UsageError(f"unknown GPU type {name!r}; known types: {known} (or describe it in a --cluster TOML file)")
