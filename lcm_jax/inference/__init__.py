"""Video inference: the memory pytree and its schedule, the jitted per-frame step, outputs."""

from lcm_jax.inference.engine import (
    Engine,
    FrameOutput,
    FrameResult,
    Geometry,
    InferenceOptions,
    Video,
    make_step,
)
from lcm_jax.inference.memory import Memory, Schedule

__all__ = [
    "Engine",
    "FrameOutput",
    "FrameResult",
    "Geometry",
    "InferenceOptions",
    "Memory",
    "Schedule",
    "Video",
    "make_step",
]
