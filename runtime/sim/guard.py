"""A no-op CUDA DeviceGuard for CPU-only torch builds, so fake CUDA tensors can be indexed, made
contiguous and moved (C++ opens a device guard before dispatch). Compiled once with load_inline
(needs a C++ compiler and ninja) and cached under $VPLAN_CACHE/torch_ext (default ~/.cache/vplan)."""
from __future__ import annotations

import os

_SRC = r"""
#include <torch/extension.h>
#include <c10/core/impl/DeviceGuardImplInterface.h>
#include <c10/core/impl/FakeGuardImpl.h>
namespace { c10::impl::FakeGuardImpl<c10::DeviceType::CUDA> g_impl; }
bool install() {
  auto idx = static_cast<size_t>(c10::DeviceType::CUDA);
  if (c10::impl::device_guard_impl_registry[idx].load() != nullptr) return false;
  c10::impl::device_guard_impl_registry[idx].store(&g_impl);
  return true;
}
"""
_state: dict[str, bool] = {}


def install() -> bool:
    """True when a CUDA device guard is available (the fake one, or a real CUDA build)."""
    if "ok" in _state:
        return _state["ok"]
    import torch

    if torch.cuda.is_available() or torch.version.cuda:
        _state["ok"] = True
        return True
    try:
        from torch.utils.cpp_extension import load_inline

        base = os.environ.get("VPLAN_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "vplan")
        build = os.path.join(base, "torch_ext", f"fake_cuda_guard_{torch.__version__}")
        os.makedirs(build, exist_ok=True)
        mod = load_inline("vplan_fake_cuda_guard", cpp_sources=_SRC, functions=["install"], build_directory=build,
                          verbose=False, extra_cflags=["-O1"])
        mod.install()
        _state["ok"] = True
    except Exception:  # no compiler / ninja: the simulator falls back to the Python index shim
        _state["ok"] = False
    return _state["ok"]
