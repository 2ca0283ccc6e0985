"""Live tensor bytes per device, counted by a TorchDispatchMode (simulator support).

Every storage produced by an op (or passed to ``track``) is charged once to its device, rounded like the
CUDA caching allocator (512-byte blocks), and released by a weakref finaliser when its StorageImpl dies.
The peak is sampled after every op while the op's inputs are still referenced: the
``max_memory_allocated`` high-water mark at op granularity (kernel-internal workspaces are invisible).
It works on real tensors as well as on FakeTensors, which is how it is validated.

``generate()`` reads data (``(mask == 1).all()``, ``isin(..).any()``, the stop check
``max(unfinished) == 0``): on fake tensors those reads are answered by ``ProvenanceOracle`` from the op that
produced the tensor (no padding, no early EOS) and anything else raises instead of guessing.
"""
from __future__ import annotations

import contextlib
import weakref

import torch
from torch._subclasses.fake_tensor import FakeTensor
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten
from torch.utils.weak import WeakIdKeyDictionary

aten = torch.ops.aten
CUDA_BLOCK_BYTES = 512  # CUDACachingAllocator kMinBlockSize
_SCALAR_READS = (aten._local_scalar_dense.default, aten.is_nonzero.default)


def device_key(dev: torch.device) -> str:
    """'0', '1', ... for CUDA devices (the plan's naming), else the device type ('cpu')."""
    if dev.type == "cuda":
        return str(dev.index or 0)
    return dev.type


class ProvenanceOracle:
    """Answers bool()/item() on fake tensors inside generate() from the producing op; raises otherwise."""

    RULES = {"all": True, "any": False}

    def __init__(self, new_tokens: int):
        self.prov = WeakIdKeyDictionary()
        self.new_tokens = new_tokens
        self.stop_checks = 0

    def record(self, func, args, out) -> None:
        if isinstance(out, torch.Tensor) and out.numel() <= 64:
            srcs = tuple(self.prov.get(a, "?") if isinstance(a, torch.Tensor) else a for a in args)
            self.prov[out] = (func.overloadpacket.__name__, srcs)

    def __call__(self, t: torch.Tensor):
        p = self.prov.get(t)
        if p is None:
            raise RuntimeError("simulator: data-dependent read of a tensor with unknown provenance")
        name, srcs = p
        if name in self.RULES:
            return self.RULES[name]
        if name == "eq" and isinstance(srcs[0], tuple) and srcs[0][0] == "max" and srcs[1] == 0:
            self.stop_checks += 1  # finished only once new_tokens tokens were produced
            return self.stop_checks >= self.new_tokens
        raise RuntimeError(f"simulator: data-dependent read the oracle cannot answer: {p}")


class LiveBytesTracker(TorchDispatchMode):
    """Per-device live and peak bytes, with the category breakdown and the place of each device's peak.

    ``category`` ('weights' | 'kv' | 'activations'), ``phase`` and ``module_stack`` are set by the caller's
    hooks; ``round_to`` is the allocation granule (512 for CUDA, 1 for exact bytes)."""

    def __init__(self, oracle: ProvenanceOracle | None = None, round_to: int = CUDA_BLOCK_BYTES):
        super().__init__()
        self.oracle = oracle
        self.round_to = round_to
        self.seen: dict[int, list] = {}  # storage id -> [bytes, category, device, weakref]
        self.live: dict[str, int] = {}
        self.peak: dict[str, int] = {}
        self.peak_cats: dict[str, dict[str, int]] = {}
        self.peak_where: dict[str, dict] = {}
        self.category = "activations"
        self.phase = "inputs"
        self.module_stack: list[str] = []
        self.ops = 0

    def charged_bytes(self, nbytes: int) -> int:
        r = self.round_to
        return 0 if nbytes == 0 else -(-nbytes // r) * r

    def track(self, t, category: str | None = None) -> str | None:
        """Charge t's storage (once) to its device; returns the device key, None when already counted."""
        if not isinstance(t, torch.Tensor):
            return None
        st = t.untyped_storage()
        key = st._cdata
        if key in self.seen:
            return None
        dev = device_key(t.device)
        rec = [self.charged_bytes(st.nbytes()), category or self.category, dev]
        self.seen[key] = rec
        self.live[dev] = self.live.get(dev, 0) + rec[0]
        sref = weakref.ref(self)

        def _free(_wr, key=key, rec=rec):
            s = sref()
            if s is not None and s.seen.get(key) is rec:
                s.live[rec[2]] -= rec[0]
                del s.seen[key]

        rec.append(weakref.ref(st, _free))
        return dev

    def mark_baseline(self) -> None:
        """Current live bytes (the weights) are the starting peak of every device."""
        for dev, b in self.live.items():
            if b > self.peak.get(dev, 0):
                self._new_peak(dev, "load")

    def _new_peak(self, dev: str, op: str) -> None:
        self.peak[dev] = self.live[dev]
        cats: dict[str, int] = {}
        for nb, cat, d, *_ in self.seen.values():
            if d == dev:
                cats[cat] = cats.get(cat, 0) + nb
        self.peak_cats[dev] = cats
        self.peak_where[dev] = {"module": "/".join(self.module_stack[-3:]), "op": op, "phase": self.phase,
                                "device": dev}

    def live_bytes(self, device: str, category: str | None = None) -> int:
        return sum(nb for nb, cat, d, *_ in self.seen.values() if d == device and category in (None, cat))

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in _SCALAR_READS and isinstance(args[0], FakeTensor):
            if self.oracle is None:
                raise RuntimeError("simulator: data-dependent read on a fake tensor without an oracle")
            return self.oracle(args[0])
        out = func(*args, **kwargs)
        if self.oracle is not None:
            self.oracle.record(func, args, out)
        self.ops += 1
        for t in tree_flatten(out)[0]:
            dev = self.track(t)
            if dev is not None and self.live[dev] > self.peak.get(dev, 0):
                self._new_peak(dev, str(func))
        return out


@contextlib.contextmanager
def kv_tagging(tracker: LiveBytesTracker):
    """Storages created inside any transformers cache layer's ``update()`` are charged as 'kv'."""
    from transformers import cache_utils

    base = getattr(cache_utils, "CacheLayerMixin", object)
    patched = []
    for name in dir(cache_utils):
        cls = getattr(cache_utils, name)
        if isinstance(cls, type) and "update" in cls.__dict__ and issubclass(cls, base):
            orig = cls.__dict__["update"]

            def update(self, *a, __orig=orig, **k):
                prev, tracker.category = tracker.category, "kv"
                try:
                    return __orig(self, *a, **k)
                finally:
                    tracker.category = prev

            cls.update = update
            patched.append((cls, orig))
    try:
        yield
    finally:
        for cls, orig in patched:
            cls.update = orig
