"""The LCM network (Flax Linen)."""

from lcm_jax.model.aggregation import PADDED_LOGIT, soft_aggregate
from lcm_jax.model.grm import grm_read
from lcm_jax.model.lcm import (
    LCM,
    MemoryFrame,
    MemoryPool,
    PrevFrame,
    QueryFeatures,
    Reference,
    build_model,
    init_variables,
    pool_to_grid,
)

__all__ = [
    "LCM",
    "PADDED_LOGIT",
    "MemoryFrame",
    "MemoryPool",
    "PrevFrame",
    "QueryFeatures",
    "Reference",
    "build_model",
    "init_variables",
    "grm_read",
    "pool_to_grid",
    "soft_aggregate",
]
