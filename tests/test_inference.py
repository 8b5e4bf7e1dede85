"""The inference engine: memory schedule, one trace per video, joining objects, batching, TTA."""

import dataclasses

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from test_inference_support import SIZE, synthetic_video, tiny_model

from lcm_jax.inference import engine as engine_lib
from lcm_jax.inference import memory, padding
from lcm_jax.inference.engine import Engine, InferenceOptions, Video
from lcm_jax.model import LCM, MemoryFrame

# Programs compiled again by later tests come from JAX's persistent cache (conftest.py).
pytestmark = pytest.mark.usefixtures("compilation_cache")


def simulate(capacity, num_frames, mem_every=5, annotated=(0,)):
    """Writes frames 0..num_frames-1 as the step does; returns the sets of frames held after
    each write (= the frames GRM reads at the next frame)."""
    s = memory.empty_schedule(capacity)
    held = []
    for t in range(num_frames):
        ann = t in annotated
        slot = memory.choose_slot(s)
        s = memory.record(s, slot, t, memory.keep_frame(t, mem_every, ann), ann)
        held.append(set(int(f) for f in np.asarray(s.frame) if f != memory.EMPTY))
    return held


def test_memory_schedule_reads_stms_pool_sizes_for_frames_1_to_12():
    held = simulate(capacity=16, num_frames=12)
    assert [len(h) for h in held] == [1, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 4]
    assert held[10] == {0, 5, 10} and held[11] == {0, 5, 10, 11}  # read at frames 11 and 12


def test_eviction_drops_the_oldest_non_reference_frame_and_keeps_references():
    # Capacity 4, references 0 and 7 (hand-traced): {0,5,7,10} after frame 10, then frame 11
    # evicts 5, frame 15 replaces 11..14, frame 16 evicts 10, frame 20 replaces 16..19.
    held = simulate(capacity=4, num_frames=22, annotated=(0, 7))
    assert held[10] == {0, 5, 7, 10}
    assert held[11] == {0, 7, 10, 11}
    assert held[15] == {0, 7, 10, 15}
    assert held[20] == {0, 7, 15, 20}
    assert held[21] == {0, 7, 20, 21}
    assert all({0, 7} <= h for h in held[7:])


def test_objects_read_only_frames_from_the_one_where_they_joined():
    s = memory.empty_schedule(4)
    for t in range(3):
        s = memory.record(s, memory.choose_slot(s), t, True, t == 0)
    first_frame = jnp.array([0, 1, memory.NOT_JOINED], jnp.int32)
    np.testing.assert_array_equal(
        memory.readable(s, first_frame),
        [[1, 1, 1, 0], [0, 1, 1, 0], [0, 0, 0, 0]],
    )


def test_orms_reference_is_the_frame_where_each_object_is_first_annotated():
    # Spec (ORM): "the reference frame is the frame where that object is first annotated". Object
    # 0 is given on frames 0 and 2 (a correction), object 1 first on frame 2; each frame's
    # encoding is filled with its index + 1, so the reference says which frame it came from.
    streams, groups, slots, size = 1, 1, 2, (4, 4)
    encoded = lambda t: MemoryFrame(  # noqa: E731
        k_g=None, k_l=None, v=jnp.full((streams * groups, slots, 1, 1, 2), t + 1.0)
    )
    mem = memory.init_memory(encoded(0), streams=streams, capacity=4, size=size)
    for t, given in [(0, [True, False]), (1, [False, False]), (2, [True, True])]:
        masks = jnp.full((1, slots, *size), t + 1.0)
        given = jnp.array(given)
        mem = memory.write(mem, encoded(t), masks, t, mem_every=5, given=given, streams=streams)
    np.testing.assert_array_equal(mem.first_frame, [0, 2])
    np.testing.assert_array_equal(mem.reference.v[0, :, 0, 0, 0], [1.0, 3.0])  # frames 0 and 2
    np.testing.assert_array_equal(mem.reference.mask[0, :, 0, 0], [1.0, 3.0])


def test_padding_puts_half_the_difference_on_top_left_and_crops_back():
    assert padding.pad_amounts(480, 854) == ((0, 0), (5, 5))
    assert padding.pad_amounts(61, 70) == ((1, 2), (5, 5))
    x = np.arange(61 * 70 * 3, dtype=np.float32).reshape(61, 70, 3) + 1
    padded = np.asarray(padding.pad_hw(jnp.asarray(x), ((1, 2), (5, 5)), channels_last=True))
    assert padded.shape == (64, 80, 3)
    np.testing.assert_array_equal(padded[1:62, 5:75], x)
    assert padded.sum() == x.sum()  # everything else is zero
    back = padding.crop_hw(jnp.asarray(padded), ((1, 2), (5, 5)), channels_last=True)
    np.testing.assert_array_equal(back, x)
    assert padding.internal_size(480, 854, 240) == (240, 427)
    assert padding.internal_size(61, 70, None) == (61, 70)


@pytest.mark.parametrize("shorter_side", [0, -8, 15])
def test_an_internal_size_below_the_models_stride_is_refused_by_the_options(shorter_side):
    with pytest.raises(ValueError, match=f"shorter_side must be >= 16 .*got {shorter_side}"):
        InferenceOptions(shorter_side=shorter_side)
    assert InferenceOptions(shorter_side=16).shorter_side == 16


def test_merging_groups_is_stm_soft_aggregation_over_all_objects():
    rng = np.random.default_rng(0)
    p = rng.uniform(0.01, 0.99, (2, 4, 3, 5))  # [streams, objects, H, W]
    joined = np.array([True, True, False, True])
    logits = np.log(p / (1 - p))  # what LCM.segment returns for each object
    got = np.asarray(
        engine_lib.merge_objects(jnp.asarray(logits, jnp.float32), jnp.asarray(joined))
    )
    # NumPy float64 soft aggregation (STM): background prod(1 - p), logit of clamped p, softmax.
    q = np.where(joined[None, :, None, None], p, 0.0)
    em = np.concatenate([np.prod(1 - q, axis=1, keepdims=True), q], axis=1)
    em = np.clip(em, 1e-7, 1 - 1e-7)
    z = np.log(em / (1 - em))
    z[:, 1:][:, ~joined] = -np.inf
    expected = (np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)).mean(axis=0)
    np.testing.assert_allclose(got, expected, atol=1e-5)


def test_given_masks_override_the_prediction_and_the_rest_shares_what_is_left():
    probs = jnp.array([0.5, 0.3, 0.2, 0.0]).reshape(4, 1, 1) * jnp.ones((4, 1, 2))
    masks = jnp.zeros((3, 1, 2)).at[2, 0, 0].set(1.0)  # object 3 given on pixel (0, 0)
    given = jnp.array([False, False, True])
    out = np.asarray(engine_lib.override(probs, masks, given))
    np.testing.assert_allclose(out[:, 0, 0], [0, 0, 0, 1])
    np.testing.assert_allclose(out[:, 0, 1], [0.5, 0.3, 0.2, 0])


def make_engine(**options):
    config, variables = tiny_model()
    return Engine(config, variables, InferenceOptions(**options))


def video(frames, labels, given_at, name="v"):
    """A Video whose given masks are `labels` restricted to the objects first given at t."""
    annotations = {
        t: np.where(np.isin(labels[t], ids), labels[t], 0) for t, ids in given_at.items()
    }
    return Video(list(frames), annotations, len(frames), name)


def test_a_30_frame_video_traces_the_step_once_while_memory_fills_and_objects_join(monkeypatch):
    made = []
    original = engine_lib.make_step

    def make_step_traced_once(*args):
        made.append(1)
        return chex.assert_max_traces(original(*args), n=1)

    monkeypatch.setattr(engine_lib, "make_step", make_step_traced_once)
    frames, labels = synthetic_video(seed=1, num_frames=30, objects=3)
    results = list(make_engine(max_memory_frames=4).run(video(frames, labels, {0: [1, 2], 7: [3]})))
    assert len(made) == 1 and [r.index for r in results] == list(range(30))
    assert all(set(np.unique(r.labels)) <= {0, 1, 2, 3} for r in results)


def test_an_object_joining_at_frame_k_gets_its_given_mask_there_and_is_absent_before():
    # 4 objects with max_objects = 3: two groups; internal resolution 32 (outputs at 64).
    frames, labels = synthetic_video(seed=2, num_frames=8, objects=4)
    k = 5
    given = {0: [1, 2, 3], k: [4]}
    results = list(make_engine(shorter_side=32).run(video(frames, labels, given)))
    first = np.where(np.isin(labels[0], [1, 2, 3]), labels[0], 0)
    np.testing.assert_array_equal(results[0].labels, first)
    assert results[0].labels.shape == SIZE
    assert all(4 not in r.labels for r in results[:k])
    object4 = labels[k] == 4
    assert object4.any()
    assert (results[k].labels[object4] == 4).all()
    assert results[k].confidence[4] == pytest.approx(1.0)


def test_a_two_object_video_takes_two_object_slots_and_matches_the_padded_layout(monkeypatch):
    frames, labels = synthetic_video(seed=5, num_frames=6, objects=2)
    eng = make_engine(soft_output=True)  # max_objects = 3
    assert eng.net.max_objects == 3
    sized = list(eng.run(video(frames, labels, {0: [1, 2]})))
    assert [(g.groups, g.slots) for g in eng._compiled] == [(1, 2)]
    assert list(eng._compiled) == [eng.video_geometry(video(frames, labels, {0: [1, 2]}), SIZE)]
    padded_geometry = lambda *a: dataclasses.replace(Engine.geometry(eng, *a), slots=3)  # noqa: E731
    monkeypatch.setattr(eng, "geometry", padded_geometry)
    padded = list(eng.run(video(frames, labels, {0: [1, 2]})))
    assert sorted((g.groups, g.slots) for g in eng._compiled) == [(1, 2), (1, 3)]
    for a, b in zip(sized, padded, strict=True):
        np.testing.assert_array_equal(a.labels, b.labels)
        assert np.abs(a.probs.astype(int) - b.probs.astype(int)).max() <= 1


def test_four_objects_take_two_groups_of_two_slots_not_three_plus_a_padded_one():
    eng = make_engine()
    geometry = eng.geometry(64, 64, num_objects=4, capacity=8)
    assert (geometry.groups, geometry.slots) == (2, 2)
    assert (eng.geometry(64, 64, 7, 8).groups, eng.geometry(64, 64, 7, 8).slots) == (3, 3)
    assert (eng.geometry(64, 64, 0, 8).groups, eng.geometry(64, 64, 0, 8).slots) == (1, 1)


def test_the_memory_encoders_other_objects_mask_covers_the_objects_of_every_group():
    # Spec: conv1_o sees the other objects' masks summed, clipped to [0, 1]. 4 objects with
    # max_objects = 3 run as 2 groups of 2 slots; each object's encoding of frame 0 must equal
    # that of one memory-encoder call over all 4 objects (by a model that allows 4 in a row).
    frames, labels = synthetic_video(seed=2, num_frames=8, objects=4)
    eng = make_engine()
    assert np.abs(eng.variables["params"]["memory_encoder"]["conv1_o"]["kernel"]).max() > 0
    geometry = eng.geometry(*SIZE, num_objects=4, capacity=8)
    assert (geometry.groups, geometry.slots) == (2, 2)
    memory = jax.tree.map(lambda x: x[None], eng.init_memory(geometry))  # a batch of 1 video
    given = np.ones((1, 4), bool)
    memory, _ = eng.step_fn(geometry)(
        eng.variables, memory, frames[:1], labels[:1], given, jnp.int32(0)
    )
    written = memory.reference.v[0].reshape(4, *memory.reference.v.shape[3:])  # [G·M, h, w, C]
    masks = (labels[0] == np.arange(1, 5)[:, None, None]).astype(np.float32)  # [4, H, W]
    one_call = eng.net.clone(max_objects=4).apply(
        eng.variables,
        jnp.asarray(frames[:1], jnp.float32) / 255.0,
        masks[None],
        given,
        method=LCM.encode_memory,
    )
    assert all(m.any() for m in masks)
    np.testing.assert_allclose(written, one_call.v[0], rtol=1e-5, atol=1e-5)


def test_three_batched_videos_of_different_lengths_equal_three_single_runs():
    lengths = (7, 4, 6)
    clips = [
        synthetic_video(seed=10 + i, num_frames=n, objects=i + 1) for i, n in enumerate(lengths)
    ]
    given = [{0: [1]}, {0: [1], 2: [2]}, {0: [1, 2, 3]}]
    videos = lambda: [video(f, lab, g) for (f, lab), g in zip(clips, given, strict=True)]  # noqa: E731
    eng = make_engine(soft_output=True)
    batched = list(eng.run_videos(videos()))
    assert len(batched) == max(lengths)
    for i, v in enumerate(videos()):
        single = list(eng.run(v))
        assert len(single) == lengths[i]
        assert all(batched[t][i] is None for t in range(lengths[i], max(lengths)))
        for t, r in enumerate(single):
            b = batched[t][i]
            assert b.object_ids == r.object_ids
            np.testing.assert_array_equal(b.labels, r.labels)
            diff = np.abs(b.probs.astype(int) - r.probs.astype(int))
            assert diff.max() <= 1


def test_flip_augmentation_of_a_mirrored_video_gives_the_mirrored_result():
    frames, labels = synthetic_video(seed=3, num_frames=6)
    eng = make_engine(flip=True, soft_output=True)
    plain = list(eng.run(video(frames, labels, {0: [1, 2]})))
    mirrored = list(eng.run(video(frames[:, :, ::-1], labels[:, :, ::-1], {0: [1, 2]})))
    for a, b in zip(plain, mirrored, strict=True):
        assert np.abs(a.probs.astype(int) - b.probs[:, :, ::-1].astype(int)).max() <= 1


def test_bfloat16_compute_stays_close_to_float32():
    frames, labels = synthetic_video(seed=4, num_frames=4)
    runs = [
        list(make_engine(dtype=d, soft_output=True).run(video(frames, labels, {0: [1, 2]})))
        for d in ("float32", "bfloat16")
    ]
    for a, b in zip(*runs, strict=True):
        assert np.abs(a.probs / 255 - b.probs / 255).mean() < 0.05


def test_mismatched_videos_and_masks_are_errors_naming_the_video_and_frame():
    frames, labels = (x[:2] for x in synthetic_video(seed=5, num_frames=3))
    eng = make_engine()
    other = Video([frames[0][:32], frames[1][:32]], {0: labels[0][:32]}, 2, "small")
    with pytest.raises(ValueError, match=r"small: frame 0 is 64x32, but the frames segmented"):
        next(eng.run_videos([video(frames, labels, {0: [1]}), other]))
    bad_mask = Video(list(frames), {0: labels[0][:, :40]}, 2, "clip")
    with pytest.raises(
        ValueError, match=r"clip: the mask of frame 0 is 40x64 but the frame is 64x64"
    ):
        next(eng.run(bad_mask))


def test_first_three_frames_equal_the_models_training_clip():
    # LCM.__call__ predicts frame 1 from {0} and frame 2 from {0, 1} with PGM's previous frame
    # and ORM's reference exactly as the engine's schedule does for t = 1, 2.
    config, variables = tiny_model()
    frames, labels = synthetic_video(seed=6, num_frames=3)
    masks = np.stack([(labels == k) for k in (1, 2, 3)], axis=1).astype(np.float32)
    net = engine_lib.build_model(config)
    logits = net.apply(
        variables,
        jnp.asarray(frames[None] / 255.0, jnp.float32),
        jnp.asarray(masks[None]),
        jnp.array([[True, True, False]]),
    )
    expected = np.asarray(jax.nn.softmax(logits[0], axis=1))[:, :3]  # [2 frames, bg + 2, H, W]
    results = list(make_engine(soft_output=True).run(video(frames, labels, {0: [1, 2]})))
    for t in (1, 2):
        got = results[t].probs / 255.0
        assert np.abs(got - expected[t - 1]).max() <= 0.5 / 255 + 1e-4
