"""Device placement of the simulated model, as accelerate's ``dispatch_model`` would do it (simulator support).

Given a device map ``{module_name: 0 | 1 | ... | "cpu" | "disk"}``:

- every parameter/buffer lives on the fake device of its longest mapped prefix (``cuda:N``); modules mapped
  to cpu/disk keep their weights in host memory (the 'cpu' bucket, not a GPU);
- a mapped module's pre-forward hook moves its tensor inputs to its execution device (accelerate's
  ``AlignDevicesHook``; caches are skipped); offloaded modules execute on the main GPU (the first GPU of the
  map) with their weights copied there for the duration of their forward and dropped after it;
- the whole model's outputs go back to the device of its input (``io_same_device``).

Activations therefore land on the device that computes them and every cross-device copy is a real op,
charged to the receiving device. Tied weights mapped to two devices stay on the first one (transformers
warns about such maps); the module that shares them then executes there, which the result notes.
"""
from __future__ import annotations

import contextlib

import torch
from torch.utils._pytree import tree_map

OFFLOAD = ("cpu", "disk")


def normalize_device_map(device_map: dict | None) -> dict[str, str]:
    """{module: '0' | '1' | ... | 'cpu' | 'disk'}; the empty name maps the whole model."""
    out = {}
    for name, dev in (device_map or {}).items():
        d = str(dev).replace("cuda:", "")
        if not (d.isdigit() or d in OFFLOAD):
            raise ValueError(f"device map entry {name!r}: unknown device {dev!r}")
        out[name] = d
    return out


def main_gpu(dmap: dict[str, str]) -> str:
    gpus = [d for d in dmap.values() if d.isdigit()]
    return gpus[0] if gpus else "0"


def mapped_device(name: str, dmap: dict[str, str], default: str) -> str:
    best, best_len = default, -1
    for block, dev in dmap.items():
        if (block == "" or name == block or name.startswith(block + ".")) and len(block) > best_len:
            best, best_len = dev, len(block)
    return best


def torch_device(dev: str) -> torch.device:
    return torch.device(f"cuda:{dev}") if dev.isdigit() else torch.device("cpu")


def _move(obj, device: torch.device):
    return tree_map(lambda t: t.to(device) if isinstance(t, torch.Tensor) and t.device != device else t, obj)


def _move_kwargs(kwargs: dict, device: torch.device) -> dict:
    # the cache stays where each layer wrote it (kwarg `past_key_values`, `cache` from transformers 5.24 on)
    return {k: (v if k in ("past_key_values", "cache") else _move(v, device)) for k, v in kwargs.items()}


def _weights_device(module: torch.nn.Module) -> torch.device | None:
    for p in module.parameters():
        return p.device
    return None


@contextlib.contextmanager
def dispatch_hooks(model: torch.nn.Module, dmap: dict[str, str], tracker, notes: list[str]):
    """Accelerate-like hooks: move inputs to each mapped module's execution device; stream offloaded weights."""
    main = torch_device(main_gpu(dmap))
    modules = dict(model.named_modules())
    handles = []
    for name, dev in dmap.items():
        mod = modules.get(name)
        if mod is None or mod is model:
            continue
        offloaded = dev in OFFLOAD
        exec_dev = main if offloaded else torch_device(dev)
        wdev = _weights_device(mod)
        if not offloaded and wdev is not None and wdev != exec_dev:
            notes.append(f"{name} shares tied weights placed on {wdev}: executed there, not on {exec_dev}")
            exec_dev = wdev
        handles.append(mod.register_forward_pre_hook(_pre_hook(exec_dev, offloaded, tracker), with_kwargs=True))
        if offloaded:
            handles.append(mod.register_forward_hook(_post_offload_hook))
    first = torch_device(mapped_device("", dmap, main_gpu(dmap)))

    def io_same_device(_m, _args, kwargs, out):
        ids = kwargs.get("input_ids")
        dev = ids.device if isinstance(ids, torch.Tensor) else first
        for k in list(out.keys()):
            if k != "past_key_values" and isinstance(out[k], torch.Tensor):
                out[k] = _move(out[k], dev)
        return out

    handles.append(model.register_forward_hook(io_same_device, with_kwargs=True))
    try:
        yield
    finally:
        for h in handles:
            h.remove()


def _pre_hook(exec_dev: torch.device, offloaded: bool, tracker):
    def pre(mod, args, kwargs):
        if offloaded:  # accelerate: set_module_tensor_to_device(execution device) before the forward
            prev, tracker.category = tracker.category, "weights"
            try:
                saved = {}
                for sub in mod.modules():
                    for store in (sub._parameters, sub._buffers):
                        for k, t in list(store.items()):
                            if t is not None and t.device != exec_dev:
                                saved[(id(store), k)] = (store, k, t)
                                new = t.to(exec_dev)
                                store[k] = torch.nn.Parameter(new, requires_grad=False) \
                                    if isinstance(t, torch.nn.Parameter) else new
                mod._vplan_offloaded = saved
            finally:
                tracker.category = prev
        return _move(args, exec_dev), _move_kwargs(kwargs, exec_dev)

    return pre


def _post_offload_hook(mod, _args, _out):
    for store, k, t in getattr(mod, "_vplan_offloaded", {}).values():
        store[k] = t  # the GPU copies die here
    mod._vplan_offloaded = {}
