"""The interactive predictor: the engine's pass in both directions, corrections, objects."""

import numpy as np
import pytest
from test_inference_support import synthetic_video, tiny_model

from lcm_jax import Predictor
from lcm_jax.inference.engine import Engine, InferenceOptions, Video

# Programs compiled again by later tests come from JAX's persistent cache (conftest.py).
pytestmark = pytest.mark.usefixtures("compilation_cache")

N = 10  # frames


@pytest.fixture(scope="module")
def model():
    return tiny_model()


@pytest.fixture(scope="module")
def predictor(model):
    return Predictor(*model)


@pytest.fixture(scope="module")
def clip():
    frames, labels = synthetic_video(seed=21, num_frames=N, objects=3)
    return frames, labels


def engine_labels(model, frames, annotations):
    """Label maps of a fresh Engine.run over `frames` with `annotations` {t: label map}."""
    video = Video(list(frames), annotations, len(frames))
    return [r.labels for r in Engine(*model, InferenceOptions()).run(video)]


def only(labels, ids):
    return np.where(np.isin(labels, ids), labels, 0).astype(np.uint8)


def add_all(predictor, state, labels, t, ids):
    for i in ids:
        predictor.add_mask(state, t, i, labels[t] == i)


def as_labels(masks, shape):
    out = np.zeros(shape, np.uint8)
    for i, m in masks.items():
        out[m] = i
    return out


def test_forward_propagation_gives_the_engines_labels_byte_for_byte(predictor, model, clip):
    frames, labels = clip
    state = predictor.init_state(frames)
    add_all(predictor, state, labels, 0, [1, 2])
    got = list(predictor.propagate(state))
    assert [t for t, _ in got] == list(range(N))
    expected = engine_labels(model, frames, {0: only(labels[0], [1, 2])})
    for (t, masks), want in zip(got, expected, strict=True):
        np.testing.assert_array_equal(as_labels(masks, want.shape), want)
        np.testing.assert_array_equal(state.results[t].labels, want)


def test_reverse_propagation_is_forward_propagation_of_the_reversed_video(predictor, clip):
    frames, labels = clip
    state = predictor.init_state(frames)
    add_all(predictor, state, labels, N - 1, [1, 2])
    backwards = dict(predictor.propagate(state, reverse=True))
    assert list(backwards) == list(range(N - 1, -1, -1))
    mirrored = predictor.init_state(np.ascontiguousarray(frames[::-1]))
    add_all(predictor, mirrored, labels[::-1], 0, [1, 2])
    for t, masks in predictor.propagate(mirrored):
        for i in (1, 2):
            np.testing.assert_array_equal(backwards[N - 1 - t][i], masks[i])


def test_a_mask_on_the_middle_frame_propagated_both_ways_gives_every_frame_one_result(
    predictor, clip
):
    frames, labels = clip
    state = predictor.init_state(frames)
    middle = N // 2
    add_all(predictor, state, labels, middle, [1])
    forward = dict(predictor.propagate(state))
    backward = dict(predictor.propagate(state, reverse=True))
    assert list(forward) == list(range(middle, N))
    assert list(backward) == list(range(middle, -1, -1))
    assert sorted(set(forward) | set(backward)) == list(range(N))
    np.testing.assert_array_equal(forward[middle][1], labels[middle] == 1)  # the given mask,
    np.testing.assert_array_equal(backward[middle][1], labels[middle] == 1)  # from both
    assert sorted(state.results) == list(range(N))


def test_a_correction_on_frame_k_recomputes_only_frames_from_k_as_a_fresh_run_with_both_masks(
    predictor, model, clip
):
    frames, labels = clip
    state = predictor.init_state(frames)
    add_all(predictor, state, labels, 0, [1, 2])
    list(predictor.propagate(state))
    before = {t: state.results[t].labels.copy() for t in range(N)}
    k = next(t for t in range(5, N) if (labels[t] == 1).any())
    corrected = labels[k] == 1
    predictor.add_mask(state, k, 1, corrected)
    again = dict(predictor.propagate(state, start=k))
    assert list(again) == list(range(k, N))
    for t in range(k):
        np.testing.assert_array_equal(state.results[t].labels, before[t])
    fresh = engine_labels(model, frames, {0: only(labels[0], [1, 2]), k: only(labels[k], [1])})
    for t in range(k, N):
        np.testing.assert_array_equal(state.results[t].labels, fresh[t])
    np.testing.assert_array_equal(again[k][1], corrected)


def test_an_empty_mask_says_the_object_is_absent_on_that_frame(predictor, clip):
    frames, labels = clip
    state = predictor.init_state(frames)
    add_all(predictor, state, labels, 0, [1, 2])
    predictor.add_mask(state, 3, 2, np.zeros_like(labels[3], bool))
    results = dict(predictor.propagate(state))
    assert not results[3][2].any()
    assert np.array_equal(results[0][2], labels[0] == 2) and results[0][2].any()


def test_an_object_joins_at_its_first_mask_with_pixels_and_never_without_one(
    predictor, model, clip
):
    # As in the engine (and XMem, Cutie), an object starts with its first pixels: an empty mask
    # before them says nothing new, and an object never drawn is never segmented. (Joined at an
    # empty first mask, such objects took pixels of later frames, with trained weights too.)
    frames, labels = clip
    k, empty = 4, np.zeros_like(labels[0], bool)
    state = predictor.init_state(frames)
    predictor.add_mask(state, 0, 1, labels[0] == 1)
    predictor.add_mask(state, 0, 3, empty)  # named on frame 0, drawn on frame k
    predictor.add_mask(state, k, 3, labels[k] == 3)
    predictor.add_mask(state, 2, 4, empty)  # named, never drawn
    results = dict(predictor.propagate(state))
    fresh = engine_labels(model, frames, {0: only(labels[0], [1]), k: only(labels[k], [3])})
    for t in range(N):
        np.testing.assert_array_equal(state.results[t].labels, fresh[t])
        assert not results[t][4].any()
    assert not any(results[t][3].any() for t in range(k)) and results[k][3].any()


def test_propagation_stopped_early_goes_on_from_where_it_stopped(predictor, clip, monkeypatch):
    frames, labels = clip
    steps = []
    step_fn = predictor.engine.step_fn

    def counting(geometry):
        step = step_fn(geometry)
        return lambda *args: steps.append(1) or step(*args)

    monkeypatch.setattr(predictor.engine, "step_fn", counting)
    full = predictor.init_state(frames)
    add_all(predictor, full, labels, 0, [1, 2])
    expected = dict(predictor.propagate(full))
    state = predictor.init_state(frames)
    add_all(predictor, state, labels, 0, [1, 2])
    steps.clear()
    first = dict(predictor.propagate(state, max_frames=4))
    assert list(first) == [0, 1, 2, 3] and len(steps) == 4
    assert state.passes[False].position == 4  # the memory after frames 0-3, kept
    rest = dict(predictor.propagate(state, start=4))
    assert list(rest) == list(range(4, N)) and len(steps) == N  # frames 0-3 not run again
    for t in range(N):
        np.testing.assert_array_equal(state.results[t].labels, full.results[t].labels)
    assert expected.keys() == set(range(N))


def test_an_object_added_mid_video_joins_there_and_removing_it_gives_the_run_without_it(
    predictor, model, clip
):
    frames, labels = clip
    k = 4
    state = predictor.init_state(frames)
    add_all(predictor, state, labels, 0, [1, 2])
    predictor.add_mask(state, k, 3, labels[k] == 3)
    results = dict(predictor.propagate(state))
    assert all(not results[t][3].any() for t in range(k))
    np.testing.assert_array_equal(results[k][3], labels[k] == 3)
    fresh = engine_labels(model, frames, {0: only(labels[0], [1, 2]), k: only(labels[k], [3])})
    for t in range(N):
        np.testing.assert_array_equal(state.results[t].labels, fresh[t])

    predictor.remove_object(state, 3)
    assert state.object_ids == (1, 2)
    assert all(3 not in state.results[t].labels for t in range(N))
    assert all(state.results[t].object_ids == (1, 2) for t in range(N))
    without = dict(predictor.propagate(state))
    fresh = engine_labels(model, frames, {0: only(labels[0], [1, 2])})
    for t in range(N):
        np.testing.assert_array_equal(as_labels(without[t], fresh[t].shape), fresh[t])


def test_more_objects_than_the_models_slots_are_grouped_and_one_step_compiles_per_size(model):
    frames, labels = synthetic_video(seed=22, num_frames=4, objects=4)
    predictor = Predictor(*model)  # max_objects = 3
    state = predictor.init_state(frames)
    for i in (1, 2, 3):
        predictor.add_mask(state, 0, i, labels[0] == i)
        list(predictor.propagate(state))
    assert len(predictor.engine._compiled) == 1  # 1, 2 and 3 objects share the step
    predictor.add_mask(state, 0, 4, labels[0] == 4)
    results = dict(predictor.propagate(state))
    assert len(predictor.engine._compiled) == 2  # a second group of slots
    np.testing.assert_array_equal(results[0][4], labels[0] == 4)


def test_bad_prompts_are_clear_errors(predictor, clip):
    frames, labels = clip
    state = predictor.init_state(frames)
    with pytest.raises(ValueError, match="no mask given yet"):
        next(predictor.propagate(state))
    with pytest.raises(ValueError, match=r"the frames are 64x64"):
        predictor.add_mask(state, 0, 1, np.zeros((32, 64), bool))
    with pytest.raises(IndexError, match=r"frame index 10 is out of range: the video has 10"):
        predictor.add_mask(state, N, 1, labels[0] == 1)
    with pytest.raises(IndexError, match=r"frame index -1 is out of range: .* \(0 to 9\)"):
        predictor.add_mask(state, -1, 1, labels[0] == 1)
    predictor.add_mask(state, 0, 1, labels[0] == 1)
    with pytest.raises(IndexError, match=r"frame index 12 is out of range"):
        next(predictor.propagate(state, start=12))
    with pytest.raises(ValueError, match="max_frames must be >= 1 or None, got 0"):
        next(predictor.propagate(state, max_frames=0))
    assert not state.results and not state.passes  # nothing ran
    with pytest.raises(ValueError, match="object_id must be an integer in"):
        predictor.add_mask(state, 0, 255, labels[0] == 1)
    with pytest.raises(ValueError, match="no object 7"):
        predictor.remove_object(state, 7)
    with pytest.raises(ValueError, match="uint8"):
        predictor.init_state(frames.astype(np.float32))


def test_a_mask_that_is_no_binary_mask_is_a_clear_error_not_thresholded(predictor, clip):
    frames, labels = clip
    state = predictor.init_state(frames)
    one = labels[0] == 1
    for mask, holding in [
        (labels[0], r"uint8 holding 0, 1, 2, 3 \(a label map: pass labels == 1"),
        (np.where(one, 0.9, 0.2), r"float64 holding 0.2, 0.9 \(.*probabilities: probs > 0.5\)"),
        (np.full(one.shape, np.nan), "float64 holding nan"),
        (np.full(one.shape, "x"), "<U1 "),
    ]:
        with pytest.raises(ValueError, match="mask of object 1 on frame 0 must be bool or hold "
                           r"only 0 and 1 \(or 0 and 255\); it is " + holding):  # fmt: skip
            predictor.add_mask(state, 0, 1, mask)
    with pytest.raises(ValueError, match=r"is object \[\]; the frames are 64x64 \(a mask is"):
        predictor.add_mask(state, 0, 1, None)
    with pytest.raises(ValueError, match="object_id must be an integer in"):
        predictor.add_mask(state, 0, True, one)
    with pytest.raises(IndexError, match="frame index True is out of range"):
        predictor.add_mask(state, True, 1, one)
    assert not state.given  # nothing was taken
    for mask in (one.astype(np.uint8) * 255, one.astype(np.float32), one.astype(np.int64)):
        predictor.add_mask(state, 0, 1, mask)  # 0/255 and 0/1 numbers are masks
        np.testing.assert_array_equal(state.given[0][1], one)
