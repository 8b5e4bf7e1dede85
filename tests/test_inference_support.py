"""Shared by the inference tests: one tiny random-init LCM per test session, and small videos."""

import functools

import jax
import numpy as np

from lcm_jax.configs import model as model_configs
from lcm_jax.input_pipeline import synthetic
from lcm_jax.model import init_variables

SIZE = (64, 64)  # frame height, width


@functools.cache
def tiny_model() -> tuple[dict, dict]:
    """(model config as a dict, variables) of the tiny LCM with random initialisation."""
    config = dict(model_configs.get_config("tiny"))
    return config, jax.jit(lambda key: init_variables(config, key))(jax.random.key(0))


def synthetic_video(seed: int, num_frames: int, size=SIZE, objects: int = 2):
    """(frames uint8 [N, H, W, 3], labels uint8 [N, H, W]) of a procedural video."""
    difficulty = synthetic.Difficulty(min_objects=objects, max_objects=objects, num_distractors=0)
    return synthetic.render_video(
        np.random.default_rng(seed),
        num_frames=num_frames,
        height=size[0],
        width=size[1],
        difficulty=difficulty,
    )
