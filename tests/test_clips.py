"""Clip builders of section 3.5 and the train iterator: invariants, alignment, reproducibility."""

import io
import itertools
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from lcm_jax.configs import data as data_configs
from lcm_jax.input_pipeline import (
    clips,
    davis,
    pipeline,
    sources,
    synthetic,
    tf_clips,
    tfds_sets,
    video_io,
)
from lcm_jax.input_pipeline.synthetic import OBJECT_COLOURS
from lcm_jax.input_pipeline.tf_setup import tf
from lcm_jax.input_pipeline.video_io import DatasetError


@pytest.fixture(scope="session")
def videos(prepared):
    _, data_dir = prepared
    parts = [
        tfds_sets.TfdsSource(tfds_sets.get_builder(d, str(data_dir)), "train")
        for d in ("davis17", "youtube")
    ]
    return sources.ConcatSource(parts)


@pytest.fixture(scope="session")
def images(prepared):
    _, data_dir = prepared
    return tfds_sets.TfdsSource(tfds_sets.get_builder("static", str(data_dir)), "train")


def _config(stage, **overrides):
    name = "synthetic"
    cfg = data_configs.get_config(f"{name},{stage},tiny")
    cfg.update(overrides)
    return cfg


def _take(source, cfg, n, *, batch_size=8, seed=0, start_index=0, process_index=0):
    batches = tf_clips.clip_batches(
        source,
        cfg,
        batch_size=batch_size,
        seed=seed,
        start_index=start_index,
        process_index=process_index,
    )
    batch = [next(batches) for _ in range(-(-n // batch_size))]
    return {k: np.concatenate([b[k] for b in batch])[:n] for k in batch[0]}


def _labels(record, t):
    return np.array(Image.open(io.BytesIO(record["segmentations"][t])))


def _clips(out):
    for i in range(len(out["index"])):
        yield {k: v[i] for k, v in out.items()}


def test_crop_window_contains_the_union_box_and_stays_inside_covering_frames():
    rng = np.random.default_rng(0)
    for _ in range(500):
        image = rng.integers(20, 200, 2).astype(float)
        crop = rng.integers(16, 160, 2).astype(float)
        y0, x0 = rng.uniform(0, image - 1)
        y1, x1 = rng.uniform((y0 + 1, x0 + 1), image)
        box = np.array([y0, x0, y1, x1])
        s, offset = clips.crop_window(box, image, crop, rng.uniform(size=2))
        assert s >= 1.0 or np.any(s * (box[2:] - box[:2]) > crop - 1e-6)
        assert np.all(offset <= s * box[:2] + 1e-9)
        assert np.all(offset + crop >= s * box[2:] - 1e-9)
        if np.all(s * image >= crop - 1e-9):
            assert np.all(offset >= -1e-9) and np.all(offset + crop <= s * image + 1e-9)
        if np.all(image >= crop) and np.all(box[2:] - box[:2] <= crop):
            assert s == 1.0  # never resized when the frame covers the crop and the box fits


def test_warp_of_a_shift_and_a_flip_equals_slicing():
    image = np.random.default_rng(1).uniform(size=(1, 20, 30, 3)).astype(np.float32)
    shift = clips._translate(-7, -4)  # output = input - (x 7, y 4)
    flip = np.array([[-1.0, 0, 16], [0, 1, 0], [0, 0, 1]])
    for forward, expected in [
        (shift, image[0, 4:14, 7:23]),
        (flip @ shift, image[0, 4:14, 7:23][:, ::-1]),
    ]:
        out = tf.raw_ops.ImageProjectiveTransformV3(
            images=image,
            transforms=clips._to_tf_transform(forward)[None],
            output_shape=[10, 16],
            fill_value=0.0,
            interpolation="BILINEAR",
            fill_mode="CONSTANT",
        )
        np.testing.assert_allclose(out.numpy()[0], expected, atol=1e-5)


def test_gaussian_blur_matches_scipy():
    image = np.random.default_rng(2).uniform(size=(12, 14, 3))
    sigma, radius = 1.3, 4
    out = tf_clips._gaussian_blur(tf.constant(image, tf.float32), tf.constant(sigma), radius)
    expected = ndimage.gaussian_filter(
        image, sigma=(sigma, sigma, 0), mode="mirror", truncate=radius / sigma
    )
    np.testing.assert_allclose(out.numpy(), expected, atol=1e-4)


def _check_crop_holds_the_objects(clip, record, crop):
    """When the clip's union box fits in the crop (scale 1), every object pixel of the three
    source frames is in the crop: the mask areas are equal. Returns whether it fitted."""
    objects = np.flatnonzero(clip["valid"])
    frames = clip["frame_indices"]
    source = {o: [_labels(record, t) == clip["object_ids"][o] for t in frames] for o in objects}
    ys, xs = np.nonzero(np.any([m for o in objects for m in source[o]], 0))
    fits = np.ptp(ys) < crop[0] and np.ptp(xs) < crop[1]
    for o in objects:
        for t in range(3):
            area = clip["masks"][t, o].sum()
            assert area == source[o][t].sum() if fits else area > 0 or not source[o][t].any()
    assert not clip["masks"][:, ~clip["valid"]].any()
    return fits


def test_main_clips_hold_objects_present_in_all_three_frames_whole_inside_the_crop(videos):
    cfg = _config("main")
    out = _take(videos, cfg, 32)
    unsorted = fitted = 0
    for clip in _clips(out):
        record = videos[int(clip["video_index"])]
        frames = clip["frame_indices"]
        assert len(set(frames.tolist())) == 3
        unsorted += not np.all(np.diff(frames) > 0)
        assert clip["valid"].any()
        for o in np.flatnonzero(clip["valid"]):
            for t in frames:  # present in all three frames
                assert (_labels(record, t) == clip["object_ids"][o]).any()
        fitted += _check_crop_holds_the_objects(clip, record, cfg.crop)
    assert unsorted > 0  # the order is shuffled
    assert fitted > 10


def test_sequence_clips_are_in_time_order_with_skips_in_bounds(videos):
    cfg = _config("sequence", min_skip=1, max_skip=2)
    out = _take(videos, cfg, 32)
    fitted = 0
    gaps = np.diff(out["frame_indices"], axis=1)
    assert gaps.min() >= 1 and gaps.max() <= 2
    assert (gaps == 2).any() and (gaps == 1).any()
    for clip in _clips(out):
        record = videos[int(clip["video_index"])]
        first = _labels(record, clip["frame_indices"][0])
        for o in np.flatnonzero(clip["valid"]):
            assert (first == clip["object_ids"][o]).any()  # objects of the first frame
            assert clip["masks"][0, o].any()
        fitted += _check_crop_holds_the_objects(clip, record, cfg.crop)
    assert fitted > 10


def _palette_cosine(pixels):
    """Cosine of the mean of RGB pixels [N, 3] with each of the generator's object colours."""
    mean = pixels.astype(np.float64).mean(0)
    colours = OBJECT_COLOURS.astype(np.float64)
    return colours @ mean / (np.linalg.norm(colours, axis=1) * np.linalg.norm(mean))


def _source_colour(record, object_id):
    """Index in OBJECT_COLOURS of an object's colour in the record's own (unaugmented) frames,
    where the generator drew it: the colours are assigned per video."""
    for t, frame in enumerate(record["frames"]):
        inner = ndimage.binary_erosion(_labels(record, t) == object_id, iterations=2)
        if inner.sum() >= 10:
            pixels = np.array(Image.open(io.BytesIO(frame)).convert("RGB"))[inner]
            return int(_palette_cosine(pixels).argmax())
    raise AssertionError(f"object {object_id} has no inner pixels in {record['name']}")


@pytest.mark.parametrize("stage", ["main", "pretrain"])
def test_frames_and_masks_stay_aligned_after_crop_flip_and_affine(videos, images, stage):
    source = images if stage == "pretrain" else videos
    out = _take(source, _config(stage, blur_prob=0.5), 16)
    checked = 0
    for clip in _clips(out):
        record = source[int(clip["video_index"])]
        for t, o in itertools.product(range(3), np.flatnonzero(clip["valid"])):
            inner = ndimage.binary_erosion(clip["masks"][t, o] > 0, iterations=2)
            if inner.sum() < 10:
                continue
            cosine = _palette_cosine(clip["frames"][t][inner])
            assert cosine.argmax() == _source_colour(record, clip["object_ids"][o])
            assert cosine.max() > 0.97
            checked += 1
    assert checked > 20


def test_static_clips_are_one_image_and_two_affine_copies(images):
    out = _take(images, _config("pretrain", flip=False, blur_prob=0.0), 8)
    fitted = 0
    for clip in _clips(out):
        record = images[int(clip["video_index"])]
        label = _labels(record, 0)
        objects = np.flatnonzero(clip["valid"])
        ys, xs = np.nonzero(np.isin(label, clip["object_ids"][objects]))
        if np.ptp(ys) < 64 and np.ptp(xs) < 64:  # scale 1; frame 0 is the crop only
            fitted += 1
            for o in objects:
                assert clip["masks"][0, o].sum() == (label == clip["object_ids"][o]).sum()
        assert not np.allclose(clip["frames"][1], clip["frames"][0])  # copies are warped
        assert not np.allclose(clip["frames"][2], clip["frames"][1])
    assert fitted > 0


def test_more_objects_than_max_objects_gives_a_sorted_random_subset(videos):
    out = _take(videos, _config("sequence", max_objects=2), 24)
    assert out["masks"].shape[2] == 2
    for clip in _clips(out):
        ids = clip["object_ids"][clip["valid"]]
        assert np.all(np.diff(ids) > 0)
        assert np.all(clip["object_ids"][~clip["valid"]] == -1)


def test_same_seed_gives_the_same_clips_and_a_restart_resumes_exactly(videos):
    cfg = _config("main")
    first = _take(videos, cfg, 8, batch_size=4)
    again = _take(videos, cfg, 8, batch_size=4)
    resumed = _take(videos, cfg, 4, batch_size=4, start_index=4)
    other = _take(videos, cfg, 8, batch_size=4, seed=1)
    for key in ("frames", "masks", "valid", "frame_indices", "video_index"):
        np.testing.assert_array_equal(first[key], again[key])
        np.testing.assert_array_equal(first[key][4:], resumed[key])
    assert not np.array_equal(first["frames"], other["frames"])


def test_one_tf_data_pipeline_serves_a_whole_stream_that_resumes_at_any_clip(videos, monkeypatch):
    traces = []
    render = tf_clips.render_clip
    monkeypatch.setattr(tf_clips, "render_clip", lambda e, cfg: traces.append(1) or render(e, cfg))
    cfg = _config("main")
    whole = _take(videos, cfg, 40, batch_size=2)  # 20 batches, one tf.data pipeline
    assert len(traces) == 1  # the renderer is traced once
    np.testing.assert_array_equal(whole["index"], np.arange(40))
    resumed = _take(videos, cfg, 10, batch_size=2, start_index=30)
    for key in ("frames", "masks", "valid", "frame_indices", "video_index"):
        np.testing.assert_array_equal(whole[key][30:], resumed[key])


_FIRST_BATCH = """
import os, sys, tempfile
from lcm_jax.configs import data as data_configs
from lcm_jax.input_pipeline import tf_clips, tfds_sets
cfg = data_configs.get_config("synthetic,sequence,tiny")
cfg.color_jitter = True
source = tfds_sets.TfdsSource(tfds_sets.get_builder("davis17", sys.argv[1]), "train")
next(tf_clips.clip_batches(source, cfg, batch_size=2, seed=0))
print(sorted(os.listdir(tempfile.gettempdir())))
"""


def test_the_tf_data_feed_writes_no_file_in_the_temporary_folder(prepared, tmp_path):
    # AutoGraph would write the code it generates there (removed at exit, left by a killed
    # run); a fresh process, since AutoGraph converts a function once per process.
    _, data_dir = prepared
    env = dict(os.environ, TMPDIR=str(tmp_path))
    done = subprocess.run(
        [sys.executable, "-c", _FIRST_BATCH, str(data_dir)],
        env=env, capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert done.stdout.splitlines()[-1] == "[]"


def test_processes_read_disjoint_videos(videos):
    cfg = data_configs.get_config("synthetic,main,tiny")
    seen = []
    for p in range(2):
        shard = sources.shard(videos, p, 2)
        stream = clips.plan_stream(shard, cfg, seed=0, process_index=p)
        seen.append({record["name"] for _, _, record, _ in itertools.islice(stream, 20)})
    assert seen[0] and seen[1] and not seen[0] & seen[1]
    assert len(seen[0] | seen[1]) == len(videos)


def test_train_iterator_yields_the_contract_batches_and_resumes(prepared):
    raw, data_dir = prepared
    cfg = data_configs.get_config("synthetic,main,tiny")
    cfg.manual_dir, cfg.data_dir = str(raw), str(data_dir)

    def batches(**kw):
        return pipeline.create_train_iterator(cfg, stage="main", batch_size=2, seed=3, **kw)

    it = batches(process_index=0, process_count=1)
    b0, b1 = next(it), next(it)
    assert set(b0) == {"frames", "masks", "valid"}
    assert b0["frames"].shape == (2, 3, 64, 64, 3) and b0["frames"].dtype == np.float32
    assert b0["masks"].shape == (2, 3, 3, 64, 64) and b0["masks"].dtype == np.float32
    assert b0["valid"].shape == (2, 3) and b0["valid"].dtype == bool
    assert 0 <= b0["frames"].min() and b0["frames"].max() <= 1
    assert set(np.unique(b0["masks"])) <= {0.0, 1.0}
    resumed = next(batches(start_step=1, process_index=0, process_count=1))
    for key in b1:
        np.testing.assert_array_equal(b1[key], resumed[key])
    other = next(batches(process_index=1, process_count=2))
    assert not np.array_equal(other["frames"], b0["frames"])
    with pytest.raises(ValueError, match="stage"):
        pipeline.create_train_iterator(cfg, stage="sequence", batch_size=2, seed=0)


def _record(name, labels):
    """An in-memory record (the path tfds's own `davis` takes) from label maps [T, H, W]."""
    frames = np.where(labels[..., None] == 1, OBJECT_COLOURS[0], 128).astype(np.uint8)
    ids = [1] if (labels == 1).any() else []
    presence = np.array([[(label == 1).any()] for label in labels])[:, : len(ids)]
    boxes = np.zeros((len(labels), len(ids), 4), np.float32)
    for t, label in enumerate(labels):
        ys, xs = np.nonzero(label == 1)
        if len(ys) and ids:
            boxes[t, 0] = (ys.min(), xs.min(), ys.max() + 1, xs.max() + 1)
    return sources.record_from_arrays(
        {
            "video_name": name,
            "frames": frames,
            "segmentations": labels[..., None],
            "annotated": np.ones(len(labels), bool),
            "object_ids": np.array(ids, np.int32),
            "presence": presence,
            "boxes": boxes,
        }
    )


def test_unusable_videos_are_skipped_and_counted_and_void_pixels_belong_to_no_object():
    labels = np.zeros((4, 64, 64), np.uint8)
    labels[:, 20:40, 10:30] = 255  # void band around the object
    labels[:, 24:36, 14:26] = 1
    good = _record("good", labels)
    short = _record("short", labels[:2])
    empty = _record("empty", np.zeros((5, 64, 64), np.uint8))
    cfg = _config("main", flip=False)
    before = dict(clips.SKIPS)
    out = _take([short, good, empty], cfg, 6, batch_size=3)
    assert set(out["video_index"].tolist()) == {1}
    assert clips.SKIPS[("main", "fewer than 3 annotated frames")] > before.get(
        ("main", "fewer than 3 annotated frames"), 0
    )
    assert clips.SKIPS[("main", "no object in 3 frames")] > 0
    np.testing.assert_array_equal(
        out["masks"][:, :, 0], np.broadcast_to(labels[0] == 1, (6, 3, 64, 64))
    )
    with pytest.raises(DatasetError, match="no video"):
        _take([short, empty], cfg, 1, batch_size=1)


def test_tfds_own_davis_set_feeds_the_same_clip_builders(monkeypatch):
    videos = []
    for i in range(2):
        frames, labels = synthetic.render_video(
            np.random.default_rng(i), num_frames=6, height=64, width=80
        )
        videos.append(
            {
                "metadata": {"video_name": f"v{i}", "num_frames": 6},
                "video": {"frames": frames, "segmentations": labels[..., None]},
            }
        )

    def fake_load(name, *, split, data_dir, download):
        assert (name, split, download) == ("davis/480p", "train", False)
        return tf.data.Dataset.from_tensor_slices(
            {
                "metadata": {
                    "video_name": np.array([v["metadata"]["video_name"] for v in videos]),
                    "num_frames": np.array([6, 6], np.int32),
                },
                "video": {
                    key: np.stack([v["video"][key] for v in videos])
                    for key in ("frames", "segmentations")
                },
            }
        )

    monkeypatch.setattr(davis.tfds, "load", fake_load)
    cfg = data_configs.get_config("davis,main,tiny")
    cfg.davis_builder = "davis"
    it = pipeline.create_train_iterator(
        cfg, stage="main", batch_size=4, seed=0, process_index=0, process_count=1
    )
    batch = next(it)
    assert batch["valid"].any(axis=1).all()
    for b, t in itertools.product(range(4), range(3)):
        for o in np.flatnonzero(batch["valid"][b]):
            assert batch["masks"][b, t, o].any()  # objects present in all three frames


def test_colour_jitter_changes_the_frames_and_leaves_the_geometry_alone(videos):
    plain = _take(videos, _config("main"), 8)
    jittered = _take(videos, _config("main", color_jitter=True, brightness=0.2), 8)
    np.testing.assert_array_equal(plain["masks"], jittered["masks"])
    np.testing.assert_array_equal(plain["frame_indices"], jittered["frame_indices"])
    difference = np.abs(plain["frames"] - jittered["frames"]).mean(axis=(2, 3, 4))  # [B, 3]
    assert (difference > 1e-3).all()  # every frame is jittered ...
    assert (np.ptp(difference, axis=1) > 1e-4).all()  # ... with its own draw


def test_a_missing_synthetic_set_is_generated_and_prepared_with_its_difficulty(tmp_path):
    cfg = data_configs.get_config("synthetic,pretrain,tiny")
    cfg.manual_dir, cfg.data_dir = str(tmp_path / "raw"), str(tmp_path / "tfds")
    cfg.synthetic.update(num_videos=2, num_frames=4)
    cfg.synthetic.difficulty.max_objects = 1
    cfg.prepare_if_missing = False
    with pytest.raises(ValueError, match="raw.*does not exist"):
        pipeline.create_train_iterator(cfg, stage="pretrain", batch_size=2, seed=0)
    cfg.prepare_if_missing = True
    batch = next(
        pipeline.create_train_iterator(
            cfg, stage="pretrain", batch_size=2, seed=0, process_index=0, process_count=1
        )
    )
    assert (tmp_path / "raw/DAVIS/ImageSets/2017/train.txt").is_file()
    np.testing.assert_array_equal(batch["valid"].sum(1), [1, 1])  # one target per image


def test_the_held_out_split_holds_exactly_the_davis_val_videos(prepared):
    raw, data_dir = prepared
    cfg = data_configs.get_config("synthetic,main,tiny")
    cfg.manual_dir, cfg.data_dir = str(raw), str(data_dir)
    held_out = pipeline.load_source(cfg, "val")
    names = {held_out[i]["name"] for i in range(len(held_out))}
    assert names == set(video_io.davis_sequences(raw / "DAVIS", "val"))
    training = pipeline.load_source(cfg, "train")
    assert not names & {training[i]["name"] for i in range(len(training))}
    batch = next(
        pipeline.create_train_iterator(
            cfg, stage="main", batch_size=2, seed=0, process_index=0, process_count=1, split="val"
        )
    )
    assert batch["frames"].shape == (2, 3, 64, 64, 3) and batch["valid"].any()
    youtube = data_configs.get_config("youtube,main")
    with pytest.raises(ValueError, match="no fully annotated held-out split"):
        pipeline.load_source(youtube, "val")


_EXIT_WITH_A_STREAM_OPEN = """
import sys, time
from lcm_jax.configs import data as data_configs
from lcm_jax.input_pipeline import sources, tf_clips, tfds_sets
class Slow(sources.ConcatSource):  # reads that release the GIL: tf.data is mid-call at exit
    def __getitem__(self, index):
        time.sleep(0.05)
        return super().__getitem__(index)
source = Slow([tfds_sets.TfdsSource(tfds_sets.get_builder("davis17", sys.argv[1]), "train")])
batches = tf_clips.clip_batches(source, data_configs.get_config("synthetic,main,tiny"),
                                batch_size=2, seed=0)
next(batches)
print("exiting with the stream open")
"""


def test_a_process_exits_with_a_clip_stream_still_open(prepared):
    # Without closing the stream at exit, tf.data's iterator was destroyed while its generator
    # waited for the GIL that the destroying thread held: the process hung (3 of 3 tries).
    _, data_dir = prepared
    done = subprocess.run(
        [sys.executable, "-c", _EXIT_WITH_A_STREAM_OPEN, str(data_dir)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.splitlines()[-1] == "exiting with the stream open"
