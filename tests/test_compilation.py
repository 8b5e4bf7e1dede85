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

from lcm_jax import Predictor, export
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


def test_a_forward_and_a_reverse_pass_of_the_predictor_share_one_step(clip, caplog):
    # Masks on frames 0, 2, 4, 6 of 8 with mem_every=2: forward they are among the kept frames
    # (5 memory slots with t - 1: 8), backwards at positions 7, 5, 3, 1 they are not (9: 16),
    # and the reverse pass compiled a second step.
    frames, labels = clip
    predictor = Predictor(*tiny_model(), InferenceOptions(mem_every=2))
    state = predictor.init_state(frames[:8])
    for t in (0, 2, 4, 6):
        predictor.add_mask(state, t, 1, labels[t] == 1)
    with compiled(caplog) as counts:
        forward = dict(predictor.propagate(state))
        backward = dict(predictor.propagate(state, reverse=True))
    assert sorted(forward) == list(range(8)) and sorted(backward) == list(range(7))
    assert counts["jit(step)"] == 1 and len(predictor.engine._compiled) == 1


@pytest.mark.parametrize(("max_memory_frames", "expected"), [(None, 1), (4, 0)])
def test_masks_on_more_frames_compile_anew_only_without_max_memory_frames(
    clip, caplog, max_memory_frames, expected
):
    # As README says: without max_memory_frames, the memory (a multiple of 8 slots) holds every
    # frame with a mask, so the 8th such frame compiles again; with it, nothing new compiles.
    frames, labels = clip
    options = InferenceOptions(mem_every=8, max_memory_frames=max_memory_frames)
    predictor = Predictor(*tiny_model(), options)
    state = predictor.init_state(frames[:8])
    predictor.add_mask(state, 0, 1, labels[0] == 1)
    with compiled(caplog) as first:
        list(predictor.propagate(state))
    for t in range(1, 8):  # 8 kept frames and t - 1: 9 slots
        predictor.add_mask(state, t, 1, labels[t] == 1)
    with compiled(caplog) as more:
        list(predictor.propagate(state))
    assert first["jit(step)"] == 1 and more["jit(step)"] == expected
