"""Cluster profiles as TOML: read (strictly validated) and written, in one module (format: docs/slurm.md).

Every value is checked once, here: its TOML type (a string is never read as a boolean or a list), its range,
and unknown keys (a misspelt key is an error that names it and the keys allowed). Sizes are strings such as
``"128GB"`` (decimal) or ``"120GiB"``/``"120G"`` (binary, SLURM style). ``profile_to_toml`` writes what
``load_profile`` reads back to an equal profile.
"""
from __future__ import annotations

import json
import tomllib
from difflib import get_close_matches
from pathlib import Path

from vplan.planner.errors import ClusterError, UsageError, VplanError
from vplan.planner.files import read_user_file
from vplan.planner.hardware.cluster import (DEFAULT_SCRATCH_BYTES_PER_S, DEFAULT_STORAGE, MAX_GPUS_PER_NODE,
                                            MAX_NODE_MEM_BYTES, MIN_NODE_MEM_BYTES, STORAGE_BYTES_PER_S, ClusterProfile,
                                            Partition)
from vplan.planner.hardware.gpus import GpuSpec, find_gpu
from vplan.planner.model.behaviours import DEFAULT_TRANSFORMERS, mxfp4_needs
from vplan.planner.slurm.safety import CONTROL_RE, GRES_TYPE_RE, IFNAME_RE, NAME_RE
from vplan.planner.units import GB, GB_S, MAX_SIZE_BYTES, MIB, parse_duration_s, parse_size_bytes

TOP_KEYS = ("name", "default_partition", "gpu_request", "gres_typed", "gres_type_name", "compute_nodes_online",
            "hf_home", "storage", "storage_gb_per_s", "scratch_gb_per_s", "setup", "mxfp4_kernels",
            "network_interface", "gpus", "partitions")
PARTITION_KEYS = ("gpu", "gpus_per_node", "cpus_per_node", "mem", "max_time", "nodes", "local_scratch", "scratch",
                  "constraint")
GPU_KEYS = ("memory", "hbm_gb_per_s", "compute_capability", "bf16", "fp8", "bf16_tflops", "host_link_gb_per_s",
            "aliases", "interconnect_gb_per_s")
MAX_GPU_MEM_BYTES = 10**13  # 10 TB: fifty times the largest GPU
MAX_CPUS = 4096
MIN_GB_S = 0.001  # 1 MB/s: slower links and disks are not worth planning for (and keep bytes/s whole, non-zero)
MAX_NODES = 100_000


class _Reader:
    """Typed access to one TOML table, with the table's path for messages."""

    def __init__(self, table, where: str, allowed: tuple[str, ...], origin: str):
        if not isinstance(table, dict):
            raise ClusterError(f"{origin}: {where} must be a table, got {_show(table)}")
        self.t, self.where, self.origin = table, where, origin
        for key in table:
            if key not in allowed:
                near = get_close_matches(str(key), allowed, n=1)
                hint = f" (did you mean {near[0]!r}?)" if near else f"; allowed: {', '.join(allowed)}"
                raise ClusterError(f"{origin}: unknown key {_path(where, key)}{hint}")

    def _bad(self, key, value, want: str):
        return ClusterError(f"{self.origin}: {_path(self.where, key)} = {_show(value)}: {want}")

    def has(self, key) -> bool:
        return key in self.t

    def str(self, key, default=None, *, regex=None, what="a string"):
        v = self.t.get(key, default)
        if v is None:
            return None
        if not isinstance(v, str) or CONTROL_RE.search(v) or (regex is not None and not regex.match(v)):
            raise self._bad(key, v, f"expected {what}")
        return v

    def bool(self, key, default: bool) -> bool:
        v = self.t.get(key, default)
        if not isinstance(v, bool):
            raise self._bad(key, v, "expected true or false (a TOML boolean, not a string)")
        return v

    def int(self, key, default, lo: int, hi: int, why: str = "") -> int:
        v = self.t.get(key, default)
        if not isinstance(v, int) or isinstance(v, bool) or not lo <= v <= hi:
            raise self._bad(key, v, f"expected a whole number from {lo} to {hi}{why}")
        return v

    def number(self, key, default, lo: float, hi: float) -> float:
        v = self.t.get(key, default)
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not (lo < v <= hi):
            raise self._bad(key, v, f"expected a number above {lo:g} and at most {hi:g}")
        return float(v)

    def size(self, key, default, lo: int, hi: int = MAX_SIZE_BYTES) -> int | None:
        v = self.t.get(key, default)
        if v is None:
            return None
        if not isinstance(v, (str, int)) or isinstance(v, bool):
            raise self._bad(key, v, 'expected a size such as "128GB" or "120GiB"')
        try:
            n = parse_size_bytes(v, what=_path(self.where, key))
        except UsageError as e:
            raise ClusterError(f"{self.origin}: {e.message}") from None
        if not lo <= n <= hi:
            raise self._bad(key, v, f"must be from {lo / GB:g} GB to {hi / GB:g} GB")
        return n

    def str_list(self, key) -> tuple[str, ...]:
        v = self.t.get(key, [])
        if not isinstance(v, list) or not all(isinstance(x, str) and "\n" not in x and "\x00" not in x for x in v):
            raise self._bad(key, v, 'expected a list of one-line strings, e.g. ["module load cuda/12.4"]')
        return tuple(v)


def _show(v) -> str:
    s = json.dumps(v, default=str) if not isinstance(v, dict) else "a table"
    return s if len(s) <= 50 else s[:47] + "..."


def _path(where: str, key) -> str:
    return f"{where}.{key}" if where else str(key)


def load_profile(path: str | Path) -> ClusterProfile:
    """Read a cluster profile TOML (format in docs/slurm.md)."""
    p = Path(path)
    text = read_user_file(p, "cluster file", ClusterError, "create one with `vplan cluster detect > cluster.toml`")
    try:
        data = tomllib.loads(text)
    except (tomllib.TOMLDecodeError, RecursionError) as e:
        raise ClusterError(f"cluster file {str(p)!r} is not valid TOML ({str(e)[:120]}); fix it or regenerate it with "
                           "`vplan cluster detect`") from None
    return profile_from_toml_dict(data, origin=str(p))


def _gpu(name: str, table, origin: str) -> GpuSpec:
    r = _Reader(table, f"gpus.{name}", GPU_KEYS, origin)
    if not r.has("memory"):
        raise ClusterError(f'{origin}: gpus.{name} needs memory = "48GB" (what torch can allocate on it)')
    cc = r.str("compute_capability", "8.0", what='a compute capability such as "8.0"')
    parts = cc.split(".")
    if len(parts) != 2 or not all(x.isdigit() for x in parts) or not 3 <= int(parts[0]) <= 20:
        raise ClusterError(f'{origin}: gpus.{name}.compute_capability = {cc!r}: expected "MAJOR.MINOR", e.g. "8.0"')
    cc_t = (int(parts[0]), int(parts[1]))
    return GpuSpec(
        name=name, memory_bytes=r.size("memory", None, lo=GB, hi=MAX_GPU_MEM_BYTES),
        hbm_bytes_per_s=int(r.number("hbm_gb_per_s", 1000, MIN_GB_S, 1e5) * GB_S),
        compute_capability=cc_t, bf16=r.bool("bf16", cc_t >= (8, 0)), fp8=r.bool("fp8", cc_t >= (8, 9)),
        bf16_tflops=r.number("bf16_tflops", 100.0, 0.001, 1e5),
        host_link_bytes_per_s=int(r.number("host_link_gb_per_s", 25, MIN_GB_S, 1e4) * GB_S),
        interconnect_bytes_per_s=int(r.number("interconnect_gb_per_s", 25, MIN_GB_S, 1e5) * GB_S),
        aliases=tuple(a.lower() for a in r.str_list("aliases")), memory_source="cluster profile")


def profile_from_toml_dict(data: dict, origin: str = "<toml>") -> ClusterProfile:
    try:
        return _profile(data, origin)
    except VplanError:
        raise
    except (KeyError, ValueError, TypeError, OverflowError) as e:  # a value type the checks above did not expect
        raise ClusterError(f"{origin}: malformed cluster profile ({type(e).__name__}: {e}); see docs/slurm.md") from None


def _profile(data: dict, origin: str) -> ClusterProfile:
    top = _Reader(data, "", TOP_KEYS, origin)
    gpus_t = data.get("gpus", {})
    if not isinstance(gpus_t, dict):
        raise ClusterError(f"{origin}: gpus must be tables [gpus.NAME], got {_show(gpus_t)}")
    customs = tuple(_gpu(str(n), t, origin) for n, t in gpus_t.items())
    custom_by_name = {g.name.lower(): g for g in customs} | {a: g for g in customs for a in g.aliases}
    parts_raw = data.get("partitions")
    if not isinstance(parts_raw, dict) or not parts_raw:
        raise ClusterError(f"{origin}: partitions must be one or more [partitions.NAME] tables (see docs/slurm.md), "
                           f"got {_show(parts_raw)}")
    parts = [_partition(str(name), t, custom_by_name, origin) for name, t in parts_raw.items()]
    default = top.str("default_partition", parts[0].name)
    if default not in {p.name for p in parts}:
        raise ClusterError(f"{origin}: default_partition {default!r} is not one of the partitions "
                           f"({', '.join(p.name for p in parts)})")
    gpu_request = top.str("gpu_request", "gres")
    if gpu_request not in ("gres", "gpus-per-node"):
        raise ClusterError(f'{origin}: gpu_request = {gpu_request!r}: expected "gres" or "gpus-per-node"')
    storage = top.str("storage", DEFAULT_STORAGE)
    if storage not in STORAGE_BYTES_PER_S:
        raise ClusterError(f"{origin}: storage = {storage!r}: expected one of {', '.join(STORAGE_BYTES_PER_S)}")
    storage_bps = STORAGE_BYTES_PER_S[storage]
    if top.has("storage_gb_per_s"):
        storage_bps = int(top.number("storage_gb_per_s", None, MIN_GB_S, 1000) * GB_S)
    scratch_bps = DEFAULT_SCRATCH_BYTES_PER_S
    if top.has("scratch_gb_per_s"):
        scratch_bps = int(top.number("scratch_gb_per_s", None, MIN_GB_S, 1000) * GB_S)
    return ClusterProfile(
        name=top.str("name", Path(origin).stem, regex=NAME_RE, what="a name of letters, digits and ._-"),
        partitions=tuple(parts), default_partition=default, gpu_request=gpu_request,
        gres_typed=top.bool("gres_typed", False),
        gres_type_name=top.str("gres_type_name", None, regex=GRES_TYPE_RE, what="a GRES type such as a100"),
        compute_nodes_online=top.bool("compute_nodes_online", False), hf_home=top.str("hf_home", None),
        storage=storage, storage_bytes_per_s=storage_bps, scratch_bytes_per_s=scratch_bps,
        setup=top.str_list("setup"), custom_gpus=customs, mxfp4_kernels=top.bool("mxfp4_kernels", False),
        network_interface=top.str("network_interface", None, regex=IFNAME_RE, what="a network interface name such as ib0"),
    )


def _partition(name: str, table, custom_by_name: dict, origin: str) -> Partition:
    where = f"partitions.{name}"
    if not NAME_RE.match(name):
        raise ClusterError(f"{origin}: partition name {name!r}: use letters, digits and ._- only")
    r = _Reader(table, where, PARTITION_KEYS, origin)
    gname = r.str("gpu", None, what="a GPU type from `vplan gpus` or a [gpus.NAME] table")
    gpus = r.int("gpus_per_node", 1 if gname else 0, 0, MAX_GPUS_PER_NODE)
    gpu = None
    if gpus > 0:
        if not gname:
            raise ClusterError(f'{origin}: {where} has gpus_per_node = {gpus} but no gpu: add gpu = "A100-40GB" '
                               "(a type from `vplan gpus`) or set gpus_per_node = 0 for CPU nodes")
        try:
            gpu = custom_by_name.get(gname.lower()) or find_gpu(gname)
        except UsageError as e:
            raise ClusterError(f"{origin}: {where}.gpu: {e.message}") from None
    max_time = r.t.get("max_time")
    mts = None
    if max_time not in (None, ""):
        if not isinstance(max_time, str):
            raise ClusterError(f'{origin}: {where}.max_time = {_show(max_time)}: expected a SLURM time such as "2-00:00:00"')
        try:
            mts = parse_duration_s(max_time) or None
        except UsageError as e:
            raise ClusterError(f"{origin}: {where}.max_time: {e.message}") from None
    return Partition(
        name=name, gpu=gpu, gpus_per_node=gpus,
        cpus_per_node=r.int("cpus_per_node", 4, 1, MAX_CPUS), mem_bytes=r.size("mem", "64GB", lo=MIN_NODE_MEM_BYTES, hi=MAX_NODE_MEM_BYTES),
        max_time_s=mts, nodes=r.int("nodes", 1, 1, MAX_NODES),
        local_scratch=r.str("local_scratch", "${TMPDIR:-/tmp}"), scratch_bytes=r.size("scratch", None, lo=1),
        constraint=r.str("constraint", None) or None,
    )


# ------------------------------------------------------------------------------------------------ write
def _s(v: str) -> str:
    return json.dumps(v, ensure_ascii=False)  # a JSON string is a valid TOML basic string


def _size(n: int) -> str:
    if n % GB == 0:
        return _s(f"{n // GB}GB")
    if n % MIB == 0:
        return _s(f"{n // MIB}M")
    return str(n)


def _duration(seconds: int) -> str:
    d, rem = divmod(int(seconds), 86400)
    h, rem = divmod(rem, 3600)
    m, s = divmod(rem, 60)
    return _s(f"{d}-{h:02d}:{m:02d}:{s:02d}")


def _gb_s(n: int) -> str:
    v = n / GB_S
    if int(float(v) * GB_S) != n:
        raise ClusterError(f"bandwidth {n} B/s cannot be written exactly in GB/s")
    return repr(v)


def _or_example(key: str, value, example: str) -> str:
    """``key = value`` when set, else the key commented out with an example of what to write."""
    if not value:
        return f"# {key} = {example}"
    if isinstance(value, list):
        return f"{key} = [" + ", ".join(_s(x) for x in value) + "]"
    return f"{key} = {_s(value)}"


def profile_to_toml(profile: ClusterProfile, comments: dict[str, tuple[str, ...]] | None = None) -> str:
    """TOML that load_profile reads back to an equal profile (docs/slurm.md 'Cluster profiles')."""
    comments = comments or {}
    out = [f"# {c}" for c in comments.get("", ())]
    out += [f"name = {_s(profile.name)}", f"default_partition = {_s(profile.default_partition)}",
            f"gpu_request = {_s(profile.gpu_request)}", f"gres_typed = {str(profile.gres_typed).lower()}"]
    if profile.gres_type_name:
        out.append(f"gres_type_name = {_s(profile.gres_type_name)}")
    out.append("# compute nodes reach the Hub? false: jobs run with HF_HUB_OFFLINE=1")
    out.append(f"compute_nodes_online = {str(profile.compute_nodes_online).lower()}")
    out.append(_or_example("hf_home", profile.hf_home,
                           '"/shared/hf-cache"   # HF cache all nodes see; unset: the job environment decides'))
    out.append(f"# where checkpoints are read from (load time): {', '.join(STORAGE_BYTES_PER_S)}")
    out.append(f"storage = {_s(profile.storage)}")
    if profile.storage_bytes_per_s != STORAGE_BYTES_PER_S[profile.storage]:
        out.append(f"storage_gb_per_s = {_gb_s(profile.storage_bytes_per_s)}")
    if profile.scratch_bytes_per_s != DEFAULT_SCRATCH_BYTES_PER_S:
        out.append(f"scratch_gb_per_s = {_gb_s(profile.scratch_bytes_per_s)}")
    out.append(f"# the nodes have {mxfp4_needs(DEFAULT_TRANSFORMERS)}, so gpt-oss stays MXFP4 on the GPU")
    out.append(f"mxfp4_kernels = {str(profile.mxfp4_kernels).lower()}")
    out.append(_or_example("network_interface", profile.network_interface,
                           '"ib0"   # NCCL/GLOO interface for multi-node jobs; unset: their defaults'))
    out.append(_or_example("setup", list(profile.setup),
                           '["module load cuda/12.4", "source ~/venvs/vplan/bin/activate"]   # lines run before the job'))
    for g in profile.custom_gpus:
        out += ["", f"[gpus.{_s(g.name)}]", f"memory = {g.memory_bytes}", f"hbm_gb_per_s = {_gb_s(g.hbm_bytes_per_s)}",
                f"compute_capability = {_s('.'.join(map(str, g.compute_capability)))}", f"bf16 = {str(g.bf16).lower()}",
                f"fp8 = {str(g.fp8).lower()}", f"bf16_tflops = {float(g.bf16_tflops)!r}",
                f"host_link_gb_per_s = {_gb_s(g.host_link_bytes_per_s)}",
                f"interconnect_gb_per_s = {_gb_s(g.interconnect_bytes_per_s)}"]
        if g.aliases:
            out.append("aliases = [" + ", ".join(_s(a) for a in g.aliases) + "]")
    for p in profile.partitions:
        out.append("")
        out += [f"# {c}" for c in comments.get(p.name, ())]
        out.append(f"[partitions.{_s(p.name)}]")
        if p.gpu is not None and p.gpus_per_node > 0:
            out.append(f"gpu = {_s(p.gpu.name)}")
        out += [f"gpus_per_node = {p.gpus_per_node}", f"cpus_per_node = {p.cpus_per_node}", f"mem = {_size(p.mem_bytes)}"]
        if p.max_time_s:
            out.append(f"max_time = {_duration(p.max_time_s)}")
        out.append(f"nodes = {p.nodes}")
        out.append(f"local_scratch = {_s(p.local_scratch)}")
        if p.scratch_bytes:
            out.append(f"scratch = {_size(p.scratch_bytes)}")
        if p.constraint:
            out.append(f"constraint = {_s(p.constraint)}")
    return "\n".join(out) + "\n"
