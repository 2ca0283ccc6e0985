"""Layers -> devices: an explicit device map the runtime hands to ``from_pretrained`` unchanged.

Pure arithmetic on byte counts; budgets are arguments, so placement is tested with made-up GPUs.

Rules (matching how accelerate's hooks execute a device map in transformers 5):
- Blocks are placed in model order: GPUs 0..n-1, then ``cpu``, then ``disk``.
- Across several GPUs the split is balanced (each GPU near total/n) when that fits; otherwise each
  GPU is filled up to its budget (sequential).
- A tied ``lm_head`` goes where ``model.embed_tokens`` is (the weight is shared, counted once).
- Blocks on ``cpu``/``disk`` are executed on GPU 0 (accelerate's main device): their KV cache lives
  on GPU 0, and GPU 0 must keep room for the largest offloaded block while it runs. ``place`` reports
  both (``offloaded_kv_bytes``, ``largest_offloaded_gpu_bytes``); the caller shrinks GPU 0's budget by
  them and places again (vplan.planner.search.transformers).
"""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class PlacementItem:
    name: str
    gpu_bytes: int  # weights + KV this block costs on a GPU
    cpu_bytes: int  # weights this block costs in host RAM (bnb fp32 offload may make it larger)
    disk_bytes: int  # bytes written to the offload folder if it goes to disk (0: read from the checkpoint)
    kv_bytes: int = 0  # part of gpu_bytes that is KV cache (moves to GPU 0 when the block is offloaded)
    follows: str | None = None  # place on the same device as this block (tied weights)


@dataclass(frozen=True)
class Placement:
    device_map: dict[str, str]
    gpu_bytes: tuple[int, ...]  # weights+KV per GPU (excluding offloaded blocks' KV; see offloaded_kv_bytes)
    cpu_bytes: int
    disk_bytes: int  # bytes in the offload folder
    offloaded_kv_bytes: int  # KV of cpu/disk blocks, held on GPU 0
    largest_offloaded_gpu_bytes: int  # weights of the largest cpu/disk block (transient on GPU 0)
    fits: bool  # everything placed within budgets
    reason: str = ""
    per_device_blocks: dict[str, list[str]] = field(default_factory=dict, compare=False)

    @property
    def devices_used(self) -> set[str]:
        return set(self.device_map.values())

    @property
    def status(self) -> str:
        used = self.devices_used
        if not self.fits:
            return "does-not-fit"
        if "disk" in used:
            return "disk-offload"
        if "cpu" in used:  # GPU+CPU, or a CPU-only plan (weights in host RAM)
            return "cpu-offload"
        return "fits"


def place(
    items: list[PlacementItem],
    gpu_budgets: list[int],
    cpu_budget: int = 0,
    disk_budget: int | None = 0,
    *,
    balance: bool = True,
) -> Placement:
    """Assign every item to a device within the budgets.

    ``gpu_budgets[i]``: bytes available for weights+KV on GPU i (net of overhead and activations).
    ``cpu_budget``: host RAM bytes for weights. ``disk_budget``: None = unlimited, 0 = no disk offload.
    Blocks run in order, so the map is a prefix on GPU 0, then GPU 1, ..., then cpu, then disk.
    """
    free_items = [it for it in items if it.follows is None]
    gpu_of = _balanced(free_items, gpu_budgets) if balance and len(gpu_budgets) > 1 else None
    if gpu_of is None:
        gpu_of = _sequential(free_items, gpu_budgets)
    assign = {it.name: str(g) for it, g in zip(free_items, gpu_of) if g is not None}

    cpu_used = disk_used = 0
    fits, reason = True, ""
    for it, g in zip(free_items, gpu_of):
        if g is not None:
            continue
        if cpu_used + it.cpu_bytes <= cpu_budget:
            assign[it.name] = "cpu"
            cpu_used += it.cpu_bytes
            continue
        assign[it.name] = "disk"
        disk_used += it.disk_bytes
        if disk_budget == 0 or (disk_budget is not None and disk_used > disk_budget):
            fits = False
            reason = reason or f"{it.name} fits neither on the GPUs, in host RAM nor on disk"

    for it in items:
        if it.follows is not None:
            assign[it.name] = assign.get(it.follows, "cpu")
    cpu_used += sum(it.cpu_bytes for it in items if it.follows is not None and assign[it.name] == "cpu")

    offloaded = [it for it in items if assign[it.name] in ("cpu", "disk")]
    per_dev: dict[str, list[str]] = {}
    for it in items:
        per_dev.setdefault(assign[it.name], []).append(it.name)
    gpu_bytes = tuple(sum(it.gpu_bytes for it in items if assign[it.name] == str(i)) for i in range(len(gpu_budgets)))
    return Placement(
        device_map={it.name: assign[it.name] for it in items},
        gpu_bytes=gpu_bytes,
        cpu_bytes=cpu_used,
        disk_bytes=disk_used,
        offloaded_kv_bytes=sum(it.kv_bytes for it in offloaded),
        largest_offloaded_gpu_bytes=max((it.gpu_bytes - it.kv_bytes for it in offloaded), default=0),
        fits=fits,
        reason=reason,
        per_device_blocks=per_dev,
    )


def _sequential(items: list[PlacementItem], budgets: list[int]) -> list[int | None]:
    """Fill GPU 0 to its budget, then GPU 1, ...; the first block that fits nowhere ends GPU use."""
    out: list[int | None] = []
    gi, used = 0, 0
    for it in items:
        while gi < len(budgets) and used + it.gpu_bytes > budgets[gi]:
            gi, used = gi + 1, 0
        if gi >= len(budgets):
            out.extend([None] * (len(items) - len(out)))
            return out
        out.append(gi)
        used += it.gpu_bytes
    return out


def _balanced(items: list[PlacementItem], budgets: list[int]) -> list[int | None] | None:
    """Split points near cumulative total*(i+1)/n, weighted by budget; None if any GPU overflows."""
    total = sum(it.gpu_bytes for it in items)
    if total > sum(budgets):
        return None
    cap = sum(budgets)
    bounds, acc = [], 0.0
    for b in budgets[:-1]:
        acc += total * b / cap
        bounds.append(acc)
    out: list[int | None] = []
    gi, cum = 0, 0
    used = [0] * len(budgets)
    for it in items:
        # move on when this block's midpoint lies past the current GPU's boundary
        while gi < len(bounds) and cum + it.gpu_bytes / 2 > bounds[gi]:
            gi += 1
        out.append(gi)
        used[gi] += it.gpu_bytes
        cum += it.gpu_bytes
    if any(u > b for u, b in zip(used, budgets)):
        return None
    return out
