"""Shared by the inference tests: one tiny random-init LCM per test session, and small videos."""

import functools

import jax
import jax.numpy as jnp
import numpy as np

from configs import model as model_configs
from input_pipeline import synthetic
from lcm_jax.model import build_model

SIZE = (64, 64)  # frame height, width


@functools.cache
def tiny_model() -> tuple[dict, dict]:
    """(model config as a dict, variables) of the tiny LCM with random initialisation."""
    config = dict(model_configs.get_config("tiny"))
    net = build_model(config)
    frames = jnp.zeros((1, 3, *SIZE, 3))
    masks = jnp.zeros((1, 3, net.max_objects, *SIZE))
    variables = jax.jit(net.init)(jax.random.PRNGKey(0), frames, masks, jnp.ones((1, 3), bool))
    return config, variables


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
