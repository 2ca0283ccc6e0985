"""Fixtures for render-sbatch / cluster detect: hand-built Plans and a real single-node SLURM cluster.

The cluster (scripts/slurm-up.sh) is shaped like the default profile: 2 fake GPUs typed `a100`, 4 CPUs,
122070 MiB (= 128 GB) with SLURM_CI_FAKE=1, MaxTime 2 days. It is started once per session on a free
port in a private folder, and always torn down. Without SLURM: CI=true fails loudly, locally it skips.
"""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
from dataclasses import replace
from pathlib import Path

import pytest

from tests import plans
from vplan.planner.hardware.cluster import default_profile
from vplan.planner.hardware.gpus import GPU_CATALOG
from vplan.planner.plan.contract import ClusterShape, DeviceBudget, Plan, Workload
from vplan.planner.units import GIB

REPO = Path(__file__).resolve().parents[2]
GOLDEN = Path(__file__).parent / "golden"
FIXTURES = REPO / "tests" / "fixtures" / "slurm"
A100_40 = GPU_CATALOG["A100-40GB"].memory_bytes
REFRESH_CMD = "VPLAN_REFRESH_GOLDEN=1 .venv/bin/python -m pytest tests/slurm -q"


def make_plan(model_id: str = "Qwen/Qwen3-8B", *, gpus: int = 1, status: str = "fits", weights_bytes: int = 16 * GIB,
              host_ram_bytes: int = 6 * GIB, cpu_weights_bytes: int = 0, gpu_type: str | None = "A100-40GB",
              decode: float = 30.0, load_s: float = 20.0, requests: int = 1, revision: str | None = "0123456789abcdef",
              reason: str | None = None, partition: str = "gpu", source: str = "hub", precision: str = "bf16") -> Plan:
    per_gpu = weights_bytes // max(gpus, 1)
    devices = [DeviceBudget(str(i), weights_bytes=per_gpu, kv_cache_bytes=GIB // 2, activation_bytes=GIB // 4,
                            overhead_bytes=GIB, capacity_bytes=A100_40) for i in range(gpus)]
    if cpu_weights_bytes:
        devices.append(DeviceBudget("cpu", weights_bytes=cpu_weights_bytes, overhead_bytes=host_ram_bytes - cpu_weights_bytes,
                                    capacity_bytes=128 * 1000**3))
    wl = Workload(requests=requests)
    return plans.plan(
        model_id=model_id, revision=revision, source=source, status=status, reason=reason or "test plan",
        precision=precision, gpu_type=gpu_type if gpus else None, gpus=gpus,
        device_map={"model.layers.0": "0" if gpus else "cpu"}, devices=tuple(devices), host_ram_bytes=host_ram_bytes,
        hub_cache_bytes=weights_bytes, checkpoint_bytes=weights_bytes, params_total=weights_bytes // 2,
        params_active=weights_bytes // 2, kv_bytes_per_token=131072, kv_cache_bytes=GIB // 2 * gpus, workload=wl,
        speed=plans.speed(decode=decode, load_s=load_s, workload=wl),
        cluster=ClusterShape(profile="default", partition=partition, gpu=gpu_type, gpus_per_node=2, cpus_per_node=4,
                             mem_bytes=128 * 1000**3))


def planned(model_ids=None, profile=None, engine: str = "transformers") -> dict:
    """Real plans from the planner library (vplan.planner.api.check_one, what `vplan plan` calls), offline from the
    bundled catalog, in a private HF_HOME/VPLAN_CACHE: {model_id: Plan}."""
    from vplan.planner.api import CheckOptions, check_one
    from vplan.planner.search.core import SearchOptions
    from vplan.planner.source.catalog import list_ids

    keys = ("HF_HUB_OFFLINE", "HF_HOME", "HF_HUB_CACHE", "VPLAN_CACHE")
    saved = {k: os.environ.get(k) for k in keys}
    tmp = tempfile.mkdtemp(prefix="vplan-plans-")
    os.environ.update(HF_HUB_OFFLINE="1", HF_HOME=f"{tmp}/hf", VPLAN_CACHE=f"{tmp}/vplan")
    os.environ.pop("HF_HUB_CACHE", None)
    try:
        out = {}
        for mid in model_ids or list_ids():
            opts = CheckOptions(offline=True, suggest=False, search=SearchOptions(engine=engine))
            out[mid] = check_one(mid, profile or default_profile(), opts).plan
        return out
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture(scope="session")
def real_plans() -> dict:
    """Every catalog model planned on the default profile (~0.5 s for all)."""
    return planned()


def live_profile():
    """The default profile, with the GRES type the test cluster uses."""
    return replace(default_profile(), gres_typed=True, gres_type_name="a100")


@pytest.fixture
def sandbox(tmp_path):
    """A folder with a fake `vplan` on PATH that records its argv, and a hostile subfolder name."""
    d = tmp_path / "a'; rm -rf ~ #" / "$(touch x)"
    (d / "bin").mkdir(parents=True)
    fake = d / "bin" / "vplan"
    fake.write_text('#!/bin/bash\nprintf "%s\\n" "$@" > "$VPLAN_ARGV_FILE"\necho "fake vplan ran"\n')
    fake.chmod(0o755)
    return d


def _free_port() -> int:
    for _ in range(50):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port > 60000:
            continue
        with socket.socket() as s2:
            try:
                s2.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
        return port
    return 16817


def _no_slurm(reason: str):
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"SLURM test cluster unavailable in CI: {reason}", pytrace=False)
    pytest.skip(f"SLURM test cluster unavailable: {reason} (run scripts/install-slurm.sh as root)")


def _ensure_slurm(unavailable) -> None:
    """SLURM's daemons installed (scripts/install-slurm.sh when root), else ``unavailable(reason)``."""
    if shutil.which("slurmctld") or Path("/usr/sbin/slurmctld").exists():
        return
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        unavailable("slurmctld is not installed and this is not root")
    r = subprocess.run(["bash", str(REPO / "scripts" / "install-slurm.sh")], capture_output=True, text=True, timeout=300)
    if r.returncode != 0:
        unavailable(f"install-slurm.sh failed: {r.stderr[-500:]}")


@pytest.fixture(scope="session")
def slurm_cluster():
    """A real slurmctld + slurmd; yields the environment (SLURM_CONF set) for subprocess calls."""
    _ensure_slurm(_no_slurm)
    base = tempfile.mkdtemp(prefix="vplan-slurm-", dir="/tmp")
    env = dict(os.environ, SLURM_CI_DIR=base, SLURM_CI_GPUS="2", SLURM_CI_GPUTYPE="a100", SLURM_CI_CPUS="4",
               SLURM_CI_MEM="122070", SLURM_CI_FAKE="1", SLURM_CI_MAXTIME="2-00:00:00", SLURM_CI_PORT=str(_free_port()))
    r = subprocess.run(["bash", str(REPO / "scripts" / "slurm-up.sh")], env=env, capture_output=True, text=True, timeout=90)
    if r.returncode != 0:
        subprocess.run(["bash", str(REPO / "scripts" / "slurm-down.sh")], env=env, capture_output=True, timeout=60)
        _no_slurm(f"slurm-up.sh failed ({r.returncode}): {r.stderr[-1500:]}")
    env["SLURM_CONF"] = f"{base}/etc/slurm.conf"
    env["PATH"] = env.get("PATH", "") + ":/usr/sbin"
    try:
        yield env
    finally:
        subprocess.run(["bash", str(REPO / "scripts" / "slurm-down.sh")], env=env, capture_output=True, timeout=60)
        shutil.rmtree(base, ignore_errors=True)


def _no_namespaces(reason: str):
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"multi-node SLURM test cluster unavailable in CI: {reason}", pytrace=False)
    pytest.skip(f"multi-node SLURM test cluster unavailable: {reason}")


@pytest.fixture(scope="session")
def multinode_cluster():
    """A real multi-node SLURM cluster (scripts/mn-slurm-up.sh: one network namespace per node), sized for the largest
    plan the tests submit (DeepSeek-V2.5's, on the default profile's nodes: 2 x a100, 4 CPUs, 128 GB). Names, subnet
    and port are private to this session; it is always torn down. Needs root: skipped locally without, fails in CI."""
    if os.geteuid() != 0:
        _no_namespaces("network namespaces need root")
    for tool in ("ip", "nsenter"):
        if not shutil.which(tool):
            _no_namespaces(f"`{tool}` is not installed")
    _ensure_slurm(_no_namespaces)
    nodes = max(2, planned(["deepseek-ai/DeepSeek-V2.5"], engine="vllm")["deepseek-ai/DeepSeek-V2.5"].nodes)
    base = tempfile.mkdtemp(prefix="vplan-mn-", dir="/tmp")
    tag = os.getpid() % 200 + 20  # a subnet and names no other session on this machine uses at the same time
    env = dict(os.environ, MN_DIR=base, MN_NODES=str(nodes), MN_GPUS="2", MN_GPUTYPE="a100", MN_CPUS="4", MN_MEM="122070",
               MN_PORT=str(_free_port()), MN_NET=f"10.{tag}.{os.getpid() % 250}", MN_PREFIX=f"v{os.getpid() % 1000:03d}")
    env["PATH"] = env.get("PATH", "") + ":/usr/sbin"
    r = subprocess.run(["bash", str(REPO / "scripts" / "mn-slurm-up.sh")], env=env, capture_output=True, text=True, timeout=120)
    if r.returncode != 0:
        subprocess.run(["bash", str(REPO / "scripts" / "mn-slurm-down.sh")], env=env, capture_output=True, timeout=120)
        _no_namespaces(f"mn-slurm-up.sh failed ({r.returncode}): {r.stderr[-1500:]}")
    env["SLURM_CONF"] = f"{base}/etc/slurm.conf"
    try:
        yield env
    finally:
        subprocess.run(["bash", str(REPO / "scripts" / "mn-slurm-down.sh")], env=env, capture_output=True, timeout=120)
        shutil.rmtree(base, ignore_errors=True)
