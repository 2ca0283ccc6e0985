"""cluster detect: recorded outputs of bigger clusters (hand-written from the documented formats), round trip."""
from __future__ import annotations

from dataclasses import replace

import pytest

from vplan.planner.hardware.cluster import default_profile
from vplan.planner.slurm.profile_toml import load_profile, profile_from_toml_dict, profile_to_toml
from vplan.planner.slurm.detect import parse_gres, parse_kv_line, parse_sinfo, profile_from_slurm
from vplan.planner.errors import ClusterError
from vplan.planner.hardware.gpus import GPU_CATALOG

from .conftest import FIXTURES

MIB = 1024**2


def big():
    return profile_from_slurm((FIXTURES / "big_scontrol.txt").read_text(), (FIXTURES / "big_sinfo.txt").read_text(), name="big")


@pytest.mark.parametrize("text,want", [
    ("gpu:4", (("gpu", None, 4),)),
    ("gpu:4(S:0-1)", (("gpu", None, 4),)),
    ("gpu:a100:4(S:0-1)", (("gpu", "a100", 4),)),
    ("gpu:a100:2(S:0,1),gpu:v100:2", (("gpu", "a100", 2), ("gpu", "v100", 2))),
    ("gpu:h100:8(S:0-1),shard:32", (("gpu", "h100", 8), ("shard", None, 32))),
    ("(null)", ()),
])
def test_parse_gres(text, want):
    assert parse_gres(text) == want


def test_kv_values_with_spaces():
    kv = parse_kv_line("NodeName=n1 OS=Linux 6.1 #1 SMP (2024) RealMemory=100 Reason=gpu xid [root@x]")
    assert kv["OS"] == "Linux 6.1 #1 SMP (2024)" and kv["RealMemory"] == "100" and kv["Reason"] == "gpu xid [root@x]"


def test_big_cluster_partitions():
    d = big()
    p = {x.name: x for x in d.profile.partitions}
    assert d.profile.default_partition == "h100"
    assert (p["a100"].gpu, p["a100"].gpus_per_node, p["a100"].cpus_per_node, p["a100"].mem_bytes, p["a100"].max_time_s, p["a100"].nodes) == \
        (GPU_CATALOG["A100-80GB"], 4, 64, 515000 * MIB, 2 * 86400, 2)  # feature a100_80g beats GRES type a100
    assert (p["h100"].gpu.name, p["h100"].gpus_per_node, p["h100"].nodes, p["h100"].max_time_s) == ("H100-80GB", 8, 3, 86400)
    assert p["legacy"].gpu.name == "V100-32GB" and p["legacy"].gpus_per_node == 4  # untyped GRES, feature v100
    assert p["cpu"].gpu is None and p["cpu"].gpus_per_node == 0 and p["cpu"].max_time_s is None
    assert p["amd"].gpu is None and p["amd"].gpus_per_node == 0
    assert any("mi250" in c and "not in the vplan GPU catalog" for c in d.comments["amd"] for c in [c])
    assert any("mixed GPU types" in c for c in d.comments["all"])
    assert d.profile.gres_typed is False  # the legacy partition's GRES is untyped


def test_typed_cluster_sets_gres_type():
    d = profile_from_slurm((FIXTURES / "typed_scontrol.txt").read_text(), (FIXTURES / "typed_sinfo.txt").read_text())
    assert d.profile.gres_typed and d.profile.gres_type_name == "l40s"
    part = d.profile.partitions[0]
    assert (part.gpu.name, part.gpus_per_node, part.cpus_per_node, part.max_time_s) == ("L40S", 8, 48, 3 * 86400)


@pytest.mark.parametrize("make", [big, lambda: profile_from_slurm((FIXTURES / "typed_scontrol.txt").read_text(),
                                                                  (FIXTURES / "typed_sinfo.txt").read_text())])
def test_round_trip_detected(make, tmp_path):
    d = make()
    f = tmp_path / "c.toml"
    f.write_text(profile_to_toml(d.profile, d.comments))
    assert load_profile(f) == d.profile


def test_round_trip_hand_profiles(tmp_path):
    base = default_profile()
    variants = [base, replace(base, hf_home="/scratch/$USER/hf", setup=("module load cuda", 'echo "a \\ b"'),
                              compute_nodes_online=True, gpu_request="gpus-per-node", gres_typed=True, gres_type_name="a100",
                              storage_bytes_per_s=3 * 10**9),
                replace(base, partitions=(replace(base.partitions[0], name="gpu.long", max_time_s=3661, constraint="a100&ib",
                                                  scratch_bytes=10**12, local_scratch="/local/$SLURM_JOB_ID"),),
                        default_partition="gpu.long")]
    for v in variants:
        f = tmp_path / "p.toml"
        f.write_text(profile_to_toml(v))
        assert load_profile(f) == v


def test_bad_inputs_are_clear():
    with pytest.raises(ClusterError, match="no `NodeName=` lines"):
        profile_from_slurm("", "gpu up 1:00:00 1")
    with pytest.raises(ClusterError, match="expected the output of"):
        parse_sinfo("PARTITION AVAIL TIMELIMIT NODES NODELIST\ngpu* up 1:00:00 1 n1")
