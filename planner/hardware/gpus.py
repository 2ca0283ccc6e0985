"""Built-in GPU catalog: public specs the memory and speed models need.

``memory_bytes`` is the total the driver reports (``nvidia-smi --query-gpu=memory.total``, MiB), which
is what ``torch.cuda.get_device_properties().total_memory`` returns, not the marketing figure.
Bandwidths are vendor datasheet peaks in bytes/s; ``host_link_bytes_per_s`` is what a pinned
host-to-device copy achieves in practice on that generation's PCIe link (PCIe 4.0 x16 ~25 GB/s,
PCIe 5.0 ~50 GB/s, PCIe 3.0 ~12 GB/s).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

from vplan.planner.errors import UsageError

MIB = 1024**2
GB_S = 1000**3


@dataclass(frozen=True)
class GpuSpec:
    name: str
    memory_bytes: int
    hbm_bytes_per_s: int
    compute_capability: tuple[int, int]
    bf16: bool
    fp8: bool
    bf16_tflops: float
    host_link_bytes_per_s: int
    aliases: tuple[str, ...] = ()

    @property
    def mxfp4_kernels(self) -> bool:
        """transformers keeps MXFP4 weights only on CC >= 7.5 (plus Triton >= 3.4 and `kernels`)."""
        return self.compute_capability >= (7, 5)

    @property
    def compute_dtype(self) -> str:
        return "bf16" if self.bf16 else "fp16"

    def to_dict(self) -> dict:
        d = asdict(self)
        d["compute_capability"] = ".".join(map(str, self.compute_capability))
        d.pop("aliases")
        return d


def _gpu(name, mib, bw_gbs, cc, bf16, fp8, tflops, link_gbs, *aliases) -> GpuSpec:
    return GpuSpec(name, mib * MIB, int(bw_gbs * GB_S), cc, bf16, fp8, tflops, int(link_gbs * GB_S), tuple(aliases))


GPU_CATALOG: dict[str, GpuSpec] = {
    g.name: g
    for g in (
        _gpu("A100-40GB", 40536, 1555, (8, 0), True, False, 312, 25, "a100", "a100-sxm4-40gb", "a100_40g", "a100-40g", "a100-pcie-40gb"),
        _gpu("A100-80GB", 81920, 2039, (8, 0), True, False, 312, 25, "a100-80gb", "a100_80g", "a100-sxm4-80gb", "a100-80g", "a100l"),
        _gpu("H100-80GB", 81559, 3350, (9, 0), True, True, 989, 50, "h100", "h100-sxm", "h100-80gb", "h100_80g", "h100-sxm5-80gb", "h100-80g"),
        _gpu("H100-PCIe", 81559, 2000, (9, 0), True, True, 756, 50, "h100-pcie", "h100_pcie"),
        _gpu("H100-NVL", 95830, 3900, (9, 0), True, True, 835, 50, "h100-nvl", "h100_nvl", "h100nvl"),
        _gpu("H200", 143771, 4800, (9, 0), True, True, 989, 50, "h200", "h200-141gb", "h200_141g"),
        _gpu("L40S", 46068, 864, (8, 9), True, True, 362, 25, "l40s"),
        _gpu("L4", 23034, 300, (8, 9), True, True, 121, 25, "l4"),
        _gpu("A10", 23028, 600, (8, 6), True, False, 125, 25, "a10", "a10g"),
        _gpu("RTX-A6000", 49140, 768, (8, 6), True, False, 155, 25, "a6000", "rtx_a6000", "rtxa6000"),
        _gpu("V100-32GB", 32768, 900, (7, 0), False, False, 125, 12, "v100", "v100-32gb", "v100s", "v100_32g", "tesla-v100"),
    )
}


def find_gpu(name: str) -> GpuSpec:
    """Look a GPU up by catalog name or alias (case-insensitive)."""
    key = name.strip().lower().replace(" ", "-")
    for gpu in GPU_CATALOG.values():
        if key == gpu.name.lower() or key in gpu.aliases:
            return gpu
    known = ", ".join(GPU_CATALOG)
    raise UsageError(f"unknown GPU type {name!r}; known types: {known} (or describe it in a --cluster TOML file)")
