"""The Plan contract: typed records, its JSON Schema (schema.json) and plan files."""
from vplan.planner.plan.contract import (ALLOC_CONF, PLAN_SCHEMA_VERSION, STATUSES, ClusterShape, DeviceBudget, Plan,
                                         Quantization, Rejection, Requirement, Speed, VllmArgs, VllmRank, Workload)
from vplan.planner.plan.io import plan_from_dict, plan_json, plan_to_dict, read_plan, write_plan

__all__ = ["ALLOC_CONF", "PLAN_SCHEMA_VERSION", "STATUSES", "ClusterShape", "DeviceBudget", "Plan", "Quantization",
           "Rejection", "Requirement", "Speed", "VllmArgs", "VllmRank", "Workload", "plan_from_dict", "plan_json",
           "plan_to_dict", "read_plan", "write_plan"]
