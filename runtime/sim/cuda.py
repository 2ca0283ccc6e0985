"""Make fake CUDA tensors behave like an H100 in a CPU-only torch build (simulator support).

- ``CudaShim`` (a TorchFunctionMode) routes ``F.scaled_dot_product_attention`` like ``select_sdp_backend``
  on sm90 with bf16/fp16 inputs: cuDNN, then flash, then memory-efficient. On fake CUDA tensors in a CPU
  build torch would otherwise take the MATH kernel (fp32 P x P scores: +7.9 GiB wrong for Llama-70B at
  4k). The meta kernels of the fused ops allocate exactly the real outputs and logsumexp.
- Without the compiled no-op CUDA device guard (see ``_fake_cuda_guard``), indexing on fake CUDA tensors
  is rescued by flipping their fake device to cpu around ``__getitem__``/``__setitem__`` (the Python-only
  fallback: ``.contiguous()``/``.to()`` paths that open a guard in C++ may still fail).
- ``h100_properties`` answers device-capability questions (MoE grouped_mm needs CC >= 8.0) as sm90.
"""
from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F
from torch._subclasses.fake_tensor import FakeTensor
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_flatten

aten = torch.ops.aten
_SDPA_ARGS = ("query", "key", "value", "attn_mask", "dropout_p", "is_causal", "scale", "enable_gqa")


def sdpa_sm90(q, k, v, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None, enable_gqa=False):
    """Output of SDPA as the CUDA dispatcher on sm90 computes it (memory-wise); None = math fallback."""
    low = q.dtype in (torch.float16, torch.bfloat16)
    d_qk, d_v = q.shape[-1], v.shape[-1]
    hq, hk = q.shape[-3], k.shape[-3]
    gqa_ok = hq == hk or enable_gqa
    if attn_mask is not None and attn_mask.dtype == torch.bool:  # convert_boolean_attn_mask (materialised)
        attn_mask = torch.where(attn_mask, torch.zeros((), dtype=q.dtype, device=q.device),
                                torch.full((), -float("inf"), dtype=q.dtype, device=q.device))
    s_q, s_k = q.shape[-2], k.shape[-2]
    if low and d_qk <= 128 and d_v <= 128 and d_qk % 8 == 0 and d_v % 8 == 0 and s_k != 1 and gqa_ok:
        return aten._scaled_dot_product_cudnn_attention.default(q, k, v, attn_mask, False, dropout_p, is_causal,
                                                                False, scale=scale)[0]
    if low and attn_mask is None and d_qk == d_v and d_qk <= 256 and gqa_ok and not (is_causal and s_q != s_k):
        return aten._scaled_dot_product_flash_attention.default(q, k, v, dropout_p, is_causal, False, scale=scale)[0]
    if d_qk % 8 == 0 and d_v % 8 == 0 and gqa_ok:
        if attn_mask is not None and attn_mask.stride(-2) % 16 != 0:  # pad_bias<16>: padded copy, sliced back
            last = attn_mask.shape[-1]
            attn_mask = F.pad(attn_mask, (0, 16 - last % 16))[..., :last]
        if attn_mask is not None:
            attn_mask = attn_mask.expand(q.shape[0], hq, s_q, s_k)
        return aten._scaled_dot_product_efficient_attention.default(q, k, v, attn_mask, False, dropout_p, is_causal,
                                                                    scale=scale)[0]
    return None


class CudaShim(TorchFunctionMode):
    """SDPA routed like an H100; optional Python index fallback when no device guard is installed."""

    CPU = torch.device("cpu")

    def __init__(self, guard_installed: bool):
        super().__init__()
        self.flip_index = not guard_installed

    def _flipped_call(self, func, args, kwargs):
        flat, _ = tree_flatten((args, kwargs))
        flipped = [(t, t.fake_device) for t in flat if isinstance(t, FakeTensor) and t.fake_device.type == "cuda"]
        for t, _ in flipped:
            t.fake_device = self.CPU
        try:
            out = func(*args, **kwargs)
        finally:
            for t, d in flipped:
                t.fake_device = d
        if flipped and isinstance(out, FakeTensor) and out.fake_device.type == "cpu":
            out.fake_device = flipped[0][1]
        return out

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if self.flip_index and func in (torch.Tensor.__getitem__, torch.Tensor.__setitem__):
            return self._flipped_call(func, args, kwargs)
        if func is F.scaled_dot_product_attention and isinstance(args[0], FakeTensor) \
                and args[0].fake_device.type == "cuda":
            kw = dict(zip(_SDPA_ARGS, args))
            kw.update(kwargs)
            out = sdpa_sm90(kw["query"], kw["key"], kw["value"], kw.get("attn_mask"), kw.get("dropout_p", 0.0),
                            kw.get("is_causal", False), kw.get("scale"), kw.get("enable_gqa", False))
            if out is not None:
                return out
        return func(*args, **kwargs)


@contextlib.contextmanager
def h100_properties():
    """Kernel choices that ask the device capability see an H100 (sm90)."""
    orig = torch.cuda.get_device_capability
    torch.cuda.get_device_capability = lambda device=None: (9, 0)
    try:
        yield
    finally:
        torch.cuda.get_device_capability = orig
