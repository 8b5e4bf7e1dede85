"""Video inference: the memory pytree and its schedule, the jitted per-frame step, outputs.

Around the engine: `segmenter.Segmenter` (a checkpoint's model, weights and options), `splits` (a
benchmark split listed once), `evaluation.evaluate` (a split segmented, then scored or zipped,
on one or several processes), `own_video.segment_video` (your video and its overlay) and
`manifest` (what a results folder was made with).
"""

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
