"""Cluster detection: `scontrol show node -o` + `sinfo` text -> ClusterProfile -> TOML (slurm.profile_toml).

Parsing is pure (text in, profile out); only :func:`run_slurm_commands` runs the two commands.
A partition takes the GPU type most of its nodes have, and the smallest GPU count, CPUs, RealMemory
and TmpDisk among those nodes (a job must fit any node it lands on). GRES type names map to the GPU
catalog with hardware.find_gpu, node features first (``a100_80g`` is more specific than ``a100``);
unknown types are kept in a TOML comment and the partition is written with 0 GPUs until described.
"""
from __future__ import annotations

import json
import re
import subprocess
from collections import Counter
from dataclasses import dataclass, field

from vplan.planner.hardware.cluster import ClusterProfile, Partition
from vplan.planner.errors import ClusterError, UsageError
from vplan.planner.hardware.gpus import GpuSpec, find_gpu
from vplan.planner.slurm.profile_toml import profile_to_toml
from vplan.planner.units import MIB, parse_duration_s

SCONTROL_CMD = ("scontrol", "show", "node", "-o")
SINFO_CMD = ("sinfo", "-h", "-o", "%P %a %l %D")

_KEY_RE = re.compile(r"(?:^|\s)([A-Za-z][A-Za-z0-9_/:]*)=")


@dataclass(frozen=True)
class NodeInfo:
    name: str
    cpus: int
    real_memory_mib: int
    tmp_disk_mib: int
    partitions: tuple[str, ...]
    gres: tuple[tuple[str, str | None, int], ...]  # (name, type or None, count)
    features: tuple[str, ...]
    state: str

    def gpus(self) -> tuple[str | None, int]:
        """(GRES type or None, count) of the node's GPUs; the most numerous type when mixed."""
        by_type: Counter = Counter()
        for name, typ, n in self.gres:
            if name == "gpu":
                by_type[typ] += n
        if not by_type:
            return None, 0
        return by_type.most_common(1)[0]


@dataclass(frozen=True)
class Detected:
    profile: ClusterProfile
    comments: dict[str, tuple[str, ...]] = field(default_factory=dict)  # partition name (or "") -> comment lines


def parse_kv_line(line: str) -> dict[str, str]:
    """`Key=value Key2=value with spaces` -> dict (values run to the next ` Key=`)."""
    out: dict[str, str] = {}
    marks = list(_KEY_RE.finditer(line))
    for i, m in enumerate(marks):
        end = marks[i + 1].start() if i + 1 < len(marks) else len(line)
        out[m.group(1)] = line[m.end():end].strip()
    return out


def _split_top(text: str) -> list[str]:
    """Split on commas outside parentheses: `gpu:a100:4(S:0,1),shard:8` -> two items."""
    parts, depth, cur = [], 0, ""
    for ch in text:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    parts.append(cur)
    return [p.strip() for p in parts if p.strip()]


def parse_gres(text: str) -> tuple[tuple[str, str | None, int], ...]:
    """`gpu:4`, `gpu:a100:4(S:0-1)`, `gpu:a100:2,gpu:v100:2` -> ((name, type, count), ...)."""
    if not text or text in ("(null)", "N/A"):
        return ()
    out = []
    for item in _split_top(text):
        item = re.sub(r"\(.*\)$", "", item)
        bits = item.split(":")
        name = bits[0]
        typ: str | None = None
        count = 1
        if len(bits) == 2:
            if bits[1].isdigit():
                count = int(bits[1])
            else:
                typ = bits[1]
        elif len(bits) >= 3:
            typ = bits[1]
            m = re.match(r"^(\d+)", bits[2])
            count = int(m.group(1)) if m else 1
        out.append((name, typ, count))
    return tuple(out)


def parse_nodes(text: str) -> list[NodeInfo]:
    nodes = []
    for line in text.splitlines():
        if not line.strip().startswith("NodeName="):
            continue
        kv = parse_kv_line(line.strip())
        try:
            cpus = int(kv.get("CPUTot") or kv.get("CPUEfctv") or kv.get("CPUs") or 0)
            mem = int(kv.get("RealMemory", "0") or 0)
            tmp = int(kv.get("TmpDisk", "0") or 0)
        except ValueError as e:
            raise ClusterError(f"cannot read node line {line[:80]!r}... ({e}); is this `scontrol show node -o` output?") from None
        feats = kv.get("AvailableFeatures", "")
        nodes.append(NodeInfo(
            name=kv["NodeName"], cpus=cpus, real_memory_mib=mem, tmp_disk_mib=tmp,
            partitions=tuple(p for p in kv.get("Partitions", "").split(",") if p and p != "(null)"),
            gres=parse_gres(kv.get("Gres", "")),
            features=tuple(f for f in feats.split(",") if f and f != "(null)"),
            state=kv.get("State", ""),
        ))
    if not nodes:
        raise ClusterError("no `NodeName=` lines in the scontrol output; run `scontrol show node -o` on a login node")
    return nodes


@dataclass(frozen=True)
class PartitionInfo:
    name: str
    default: bool
    available: str
    time_limit: str  # as sinfo prints it (e.g. 2-00:00:00, infinite)
    nodes: int


def parse_sinfo(text: str) -> list[PartitionInfo]:
    """Lines of `sinfo -h -o '%P %a %l %D'`; rows of one partition (split by node state) are merged."""
    seen: dict[str, PartitionInfo] = {}
    for line in text.splitlines():
        bits = line.split()
        if not bits:
            continue
        if len(bits) != 4 or not bits[3].isdigit():
            raise ClusterError(f"cannot read sinfo line {line!r}; expected the output of: sinfo -h -o '%P %a %l %D'")
        name, avail, limit, count = bits
        default = name.endswith("*")
        name = name.rstrip("*")
        if name in seen:
            old = seen[name]
            seen[name] = PartitionInfo(name, old.default or default, old.available, old.time_limit, old.nodes + int(count))
        else:
            seen[name] = PartitionInfo(name, default, avail, limit, int(count))
    if not seen:
        raise ClusterError("no partitions in the sinfo output; run `sinfo -h -o '%P %a %l %D'` on a login node")
    return list(seen.values())


def _gpu_for(typ: str | None, features: tuple[str, ...]) -> tuple[GpuSpec | None, str | None]:
    """Catalog GPU from node features (most specific), then the GRES type; (None, note) when unknown."""
    matches = []
    for f in features:
        try:
            matches.append((len(f), f, find_gpu(f)))
        except UsageError:
            pass
    if matches:  # the longest matching feature is the most specific (a100_80g over a100)
        return max(matches, key=lambda m: (m[0], m[1]))[2], None
    if typ is None:
        return None, "untyped GRES: the GPU model is unknown; set gpu = \"...\" (see `vplan gpus`)"
    try:
        gpu = find_gpu(typ)
    except UsageError:
        return None, (f"GRES type {typ!r} is not in the vplan GPU catalog: describe it in a [gpus.{typ}] table "
                      f"(memory = \"...\", hbm_gb_per_s = ...) and set gpu = {json.dumps(typ)} and gpus_per_node below")
    note = None
    if gpu.name == "A100-40GB" and typ.lower() == "a100":
        note = "GRES type 'a100' read as A100-40GB: write gpu = \"A100-80GB\" if the nodes have 80 GB cards"
    return gpu, note


def profile_from_slurm(scontrol_text: str, sinfo_text: str, name: str = "detected") -> Detected:
    nodes = parse_nodes(scontrol_text)
    parts_info = parse_sinfo(sinfo_text)
    partitions, comments = [], {}
    typed_parts, type_names = [], set()
    for pi in parts_info:
        members = [n for n in nodes if pi.name in n.partitions]
        notes: list[str] = []
        if not members:
            notes.append("no node of this partition in the scontrol output; skipped")
            comments[pi.name] = tuple(notes)
            continue
        shapes = Counter(n.gpus()[0] for n in members)
        typ = shapes.most_common(1)[0][0]
        same = [n for n in members if n.gpus()[0] == typ]
        if len(shapes) > 1:
            notes.append(f"mixed GPU types {sorted(str(t) for t in shapes)}: described by the {len(same)} node(s) with {typ}; "
                         "use a constraint to land on them")
        gpus = min(n.gpus()[1] for n in same)
        cpus = min(n.cpus for n in same)
        mem_mib = min(n.real_memory_mib for n in same)
        tmp_mib = min(n.tmp_disk_mib for n in same)
        if len({(n.gpus()[1], n.cpus, n.real_memory_mib) for n in same}) > 1:
            notes.append("nodes differ in GPUs/CPUs/memory: the smallest of each is used")
        feats = sorted(set.intersection(*(set(n.features) for n in same))) if same else []
        gpu = None
        if gpus > 0:
            typed_parts.append(typ is not None)
            if typ is not None:
                type_names.add(typ)
            gpu, note = _gpu_for(typ, tuple(feats))
            if note:
                notes.append(note)
            if gpu is None:
                gpus = 0
        if feats:
            notes.append("node features (constraint hints): " + ",".join(feats))
        try:
            max_s = parse_duration_s(pi.time_limit) or None
        except UsageError:
            max_s = None
            notes.append(f"time limit {pi.time_limit!r} not understood; max_time left out")
        if pi.available != "up":
            notes.append(f"partition is {pi.available}")
        partitions.append(Partition(name=pi.name, gpu=gpu, gpus_per_node=gpus, cpus_per_node=cpus, mem_bytes=mem_mib * MIB,
                                    max_time_s=max_s, nodes=len(members),
                                    scratch_bytes=tmp_mib * MIB if tmp_mib > 0 else None))
        comments[pi.name] = tuple(notes)
    if not partitions:
        raise ClusterError("no partition has nodes in the scontrol output; check `sinfo` and `scontrol show node -o`")
    kept = {p.name for p in partitions}
    default = next((pi.name for pi in parts_info if pi.default and pi.name in kept), partitions[0].name)
    typed = bool(typed_parts) and all(typed_parts)  # untyped --gres=gpu:N also works where GRES are typed
    gres_type_name = next(iter(type_names)) if len(type_names) == 1 and typed else None
    top = ["detected from `scontrol show node -o` and `sinfo`: check compute_nodes_online, hf_home and setup"]
    if typed_parts and not typed and any(typed_parts):
        top.append("some partitions have untyped GPU GRES: requests stay untyped (--gres=gpu:N works on typed GRES too)")
    if typed and len(type_names) > 1:
        top.append(f"several GRES types {sorted(type_names)}: render-sbatch uses each GPU's catalog alias as the GRES type")
    comments[""] = tuple(top)
    profile = ClusterProfile(name=name, partitions=tuple(partitions), default_partition=default, gres_typed=typed,
                             gres_type_name=gres_type_name)
    return Detected(profile, comments)


def run_slurm_commands(timeout_s: float = 30) -> tuple[str, str]:
    """Run scontrol and sinfo on this (login) node; a clear error when SLURM is not there."""
    outs = []
    for cmd in (SCONTROL_CMD, SINFO_CMD):
        try:
            r = subprocess.run(list(cmd), capture_output=True, text=True, timeout=timeout_s, check=False)
        except FileNotFoundError:
            raise ClusterError(f"`{cmd[0]}` not found: run `vplan cluster detect` on a SLURM login node, "
                               "or pass --scontrol-file/--sinfo-file with saved outputs") from None
        except subprocess.TimeoutExpired:
            raise ClusterError(f"`{' '.join(cmd)}` did not answer in {timeout_s:.0f} s; is slurmctld reachable?") from None
        if r.returncode != 0:
            raise ClusterError(f"`{' '.join(cmd)}` failed ({r.returncode}): {r.stderr.strip()[:200]}")
        outs.append(r.stdout)
    return outs[0], outs[1]


def detect(scontrol_text: str | None = None, sinfo_text: str | None = None, name: str = "detected") -> str:
    """The TOML profile of this cluster (or of saved command outputs)."""
    if scontrol_text is None or sinfo_text is None:
        a, b = run_slurm_commands()
        scontrol_text = a if scontrol_text is None else scontrol_text
        sinfo_text = b if sinfo_text is None else sinfo_text
    d = profile_from_slurm(scontrol_text, sinfo_text, name=name)
    return profile_to_toml(d.profile, d.comments)


__all__ = ["Detected", "NodeInfo", "PartitionInfo", "detect", "parse_gres", "parse_kv_line", "parse_nodes",
           "parse_sinfo", "profile_from_slurm", "run_slurm_commands"]
