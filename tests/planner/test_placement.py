"""Placement with made-up GPUs: exact device maps, budgets respected, order kept."""
from hypothesis import given, settings
from hypothesis import strategies as st

from vplan.planner.search.placement import PlacementItem, place


def _model(n_layers=6, layer=20, embed=10, head=10, kv=2, tied=False):
    items = [PlacementItem("model.embed_tokens", embed, embed, 0)]
    items += [PlacementItem(f"model.layers.{i}", layer + kv, layer, 0, kv_bytes=kv) for i in range(n_layers)]
    items += [PlacementItem("model.norm", 1, 1, 0)]
    items += [PlacementItem("lm_head", 0 if tied else head, 0 if tied else head, 0,
                            follows="model.embed_tokens" if tied else None)]
    return items


def test_two_gpus_balanced_exact_map():
    p = place(_model(), [200, 200])
    assert p.device_map == {
        "model.embed_tokens": "0", "model.layers.0": "0", "model.layers.1": "0", "model.layers.2": "0",
        "model.layers.3": "1", "model.layers.4": "1", "model.layers.5": "1", "model.norm": "1", "lm_head": "1",
    }
    assert p.gpu_bytes == (76, 77)
    assert p.status == "fits"


def test_one_gpu_takes_everything():
    p = place(_model(), [1000])
    assert set(p.device_map.values()) == {"0"}
    assert p.gpu_bytes == (153,)


def test_spill_to_cpu_then_disk_in_order():
    p = place(_model(), [50, 50], cpu_budget=30, disk_budget=None)
    assert p.status == "disk-offload"
    order = list(p.device_map.values())
    # GPU prefix, then host: never back to a GPU after a spill
    first_off = next(i for i, d in enumerate(order) if not d.isdigit())
    assert all(not d.isdigit() for d in order[first_off:])
    assert p.gpu_bytes[0] <= 50 and p.gpu_bytes[1] <= 50
    assert p.cpu_bytes <= 30
    assert p.offloaded_kv_bytes == sum(2 for n, d in p.device_map.items() if n.startswith("model.layers") and d in ("cpu", "disk"))


def test_no_disk_means_does_not_fit():
    p = place(_model(), [50, 50], cpu_budget=30, disk_budget=0)
    assert p.status == "does-not-fit"
    assert "fits neither" in p.reason


def test_tied_lm_head_follows_embedding():
    p = place(_model(tied=True), [80, 80])
    assert p.device_map["lm_head"] == p.device_map["model.embed_tokens"] == "0"


def test_cpu_only_plan():
    p = place(_model(), [], cpu_budget=1000)
    assert set(p.device_map.values()) == {"cpu"}
    assert p.status == "cpu-offload"


@settings(max_examples=150, deadline=None)
@given(
    layers=st.lists(st.integers(1, 50), min_size=1, max_size=40),
    budget=st.integers(10, 400),
    n=st.integers(1, 8),
)
def test_budgets_respected_and_more_gpus_never_unfit(layers, budget, n):
    items = [PlacementItem(f"model.layers.{i}", b, b, 0) for i, b in enumerate(layers)]
    p = place(items, [budget] * n)
    for used in p.gpu_bytes:
        assert used <= budget
    if p.status == "fits":
        assert place(items, [budget] * (n + 1)).status == "fits"
        assert sorted(p.device_map.values(), key=int) == list(p.device_map.values())
