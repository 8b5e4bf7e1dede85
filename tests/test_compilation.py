"""Compilations on the paths users run: one per documented geometry, none as a video goes on.

Counted as JAX builds programs (`jax.log_compiles`: one "Compiling jit(<name>) ..." record per
program lowered for XLA, which XLA then compiles or finds in a cache), on frames of 32x32.
"""

import collections
import contextlib
import logging

import jax
import numpy as np
import pytest
from test_inference_support import synthetic_video, tiny_model

from lcm_jax import export
from lcm_jax.inference.engine import Engine, InferenceOptions, Video

SIZE = (32, 32)


@contextlib.contextmanager
def compiled(caplog):
    """A Counter, filled on exit, of the programs built inside the block, by name ("jit(step)")."""
    counts = collections.Counter()
    with caplog.at_level(logging.WARNING, logger="jax"), jax.log_compiles(True):
        start = len(caplog.records)
        yield counts
        messages = [r.getMessage() for r in caplog.records[start:]]
    counts.update(m.split()[1] for m in messages if m.startswith("Compiling "))


@pytest.fixture(scope="module")
def clip():
    return synthetic_video(seed=41, num_frames=12, size=SIZE, objects=2)


def test_the_engine_compiles_once_per_geometry_not_as_videos_get_longer(clip, caplog):
    frames, labels = clip
    engine = Engine(*tiny_model(), InferenceOptions(max_memory_frames=4))
    with compiled(caplog) as short:
        list(engine.run(Video(list(frames[:3]), {0: labels[0]}, 3)))
    # Longer, its memory full and evicting, the second object joining at frame 8.
    later = {0: np.where(labels[0] == 1, labels[0], 0), 8: labels[8]}
    with compiled(caplog) as longer:
        list(engine.run(Video(list(frames), later, len(frames))))
    assert short["jit(step)"] == 1 and longer["jit(step)"] == 0


def test_the_exported_step_compiles_once_its_second_frame_compiles_nothing(clip, tmp_path, caplog):
    # The first memory was uncommitted (device_put without a device), the step's output memory
    # committed: frame 1 compiled the whole program a second time.
    frames, labels = clip
    program, meta, variables, memory = export.export_step(
        *tiny_model(), height=SIZE[0], width=SIZE[1], objects=2, max_memory_frames=4
    )
    model = export.load(export.write(tmp_path / "model.jax", program, meta, variables, memory))
    with compiled(caplog) as first:
        list(model.segment(frames[:3], labels[0]))
    with compiled(caplog) as second:
        list(model.segment(frames, labels[0]))
    assert first["jit(call)"] == 1 and sum(second.values()) == 0
