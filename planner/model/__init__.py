"""What a model is, from its config.json and checkpoint metadata: blocks, attention layers, MoE facts."""
from vplan.planner.model.architectures import build_spec
from vplan.planner.model.spec import AttentionLayer, Block, ModelSpec, MoeSpec

__all__ = ["AttentionLayer", "Block", "ModelSpec", "MoeSpec", "build_spec"]
