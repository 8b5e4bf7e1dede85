"""The NumPy feed (`config.data.feed="numpy"`) against the tf.data feed: the same clips, records
and batches, and training with TensorFlow blocked.

Frame tolerance: `FRAME_ATOL` = 1e-5, for clips rendered from the same pixels (PNG frames).
Measured on this project's CPU machine (TF 2.21): the main and sequence clips are bit-identical
(the warp, brightness, contrast, saturation and hue copy TF's float32 kernels operation by
operation); pretrain clips differ by up to 3.6e-7 from the blur alone (TF's depthwise
convolution sums the 7-13 taps in another order) and up to 1.1e-6 when colour jitter
(saturation/contrast factors up to 1.5 here) amplifies that difference (80 clips per stage and
jitter setting, these tests' configs). JPEG frames decode differently (Pillow's accurate IDCT,
TF's fast one): the batches of the two feeds then differ by the decoders' own difference, which
the bilinear warp (a convex combination of pixels) cannot enlarge.
Masks are compared exactly (nearest ties round away from zero in both).
"""

import io
import itertools
import os
import subprocess
import sys

import ml_collections
import numpy as np
import pytest
from PIL import Image

from lcm_jax.configs import data as data_configs
from lcm_jax.input_pipeline import (
    clips,
    folder_source,
    numpy_clips,
    pipeline,
    sources,
    synthetic,
    testing,
    tf_clips,
    tfds_sets,
    vos_format,
)
from lcm_jax.input_pipeline.tf_setup import tf
from lcm_jax.input_pipeline.video_io import DatasetError

FRAME_ATOL = 1e-5


def _record(seed, height, width, num_frames=8):
    """An in-memory record of a synthetic video (PNG frames, so that both feeds decode the same
    pixels; grey PNG label maps)."""
    frames, labels = synthetic.render_video(
        np.random.default_rng(seed), num_frames=num_frames, height=height, width=width
    )
    ids = vos_format.object_ids_of(labels)
    presence = np.zeros((num_frames, len(ids)), bool)
    boxes = np.zeros((num_frames, len(ids), 4), np.float32)
    for t in range(num_frames):
        presence[t], boxes[t] = vos_format.label_boxes(labels[t], ids)
    record = sources.record_from_arrays(
        {
            "video_name": f"v{seed}",
            "frames": frames,
            "segmentations": labels[..., None],
            "annotated": np.ones(num_frames, bool),
            "object_ids": np.array(ids, np.int32),
            "presence": presence,
            "boxes": boxes,
        }
    )
    record["frames"] = [sources.encode_png(f) for f in frames]
    return record


def _tf_render(element, cfg):
    out = tf_clips.render_clip({k: tf.constant(v) for k, v in element.items()}, cfg)
    return {k: v.numpy() for k, v in out.items()}


def _assert_same_clips(a, b):
    for key in a:
        if key == "frames":
            np.testing.assert_allclose(a[key], b[key], atol=FRAME_ATOL, rtol=0)
        else:
            np.testing.assert_array_equal(a[key], b[key], err_msg=key)


@pytest.mark.parametrize("stage", data_configs.STAGES)
def test_numpy_clips_equal_tf_clips_for_random_plans(stage):
    records = [_record(i, 60, 90) for i in range(3)] + [_record(9, 30, 40)]  # smaller than crop
    worst = 0.0
    for jitter, flip in itertools.product([False, True], [False, True]):
        cfg = data_configs.get_config(f"synthetic,{stage},tiny")
        cfg.update(crop=(48, 72), color_jitter=jitter, flip=flip, blur_prob=0.7)
        cfg.update(brightness=0.3, contrast=0.5, saturation=0.5, hue=0.3, rotate_deg=40)
        cfg = ml_collections.FrozenConfigDict(cfg)
        stream = clips.plan_stream(records, cfg, seed=int(jitter) + 2 * int(flip))
        for item in itertools.islice(stream, 6):
            element = clips.plan_inputs(*item)
            ours, theirs = numpy_clips.render_clip(element, cfg), _tf_render(element, cfg)
            assert set(ours) == set(theirs)
            _assert_same_clips(ours, theirs)
            worst = max(worst, float(np.abs(ours["frames"] - theirs["frames"]).max()))
    assert worst <= FRAME_ATOL


def test_warps_match_tf_at_ties_borders_and_projective_transforms():
    rng = np.random.default_rng(0)
    frame = rng.uniform(size=(9, 11, 3)).astype(np.float32)
    labels = rng.integers(0, 6, (9, 11)).astype(np.uint8)
    transforms = [
        [1, 0, 0.5, 0, 1, -0.5, 0, 0],  # every sample is a nearest tie (x.5), some negative
        [1, 0, -2.5, 0, 1, 1.5, 0, 0],  # samples partly outside the image
        [0.5, 0, 0.25, 0, 0.5, 0.75, 0, 0],  # zoom: ties and exact pixel centres
        [0.9, 0.2, 1.0, -0.1, 1.1, -0.7, 0.02, -0.03],  # projective
        [1, 0, 0, 0, 1, 0, 0.1, 0],  # k = 0 at x = -10 is outside; k < 0 nowhere
    ]
    for transform in np.asarray(transforms, np.float32):
        for image, interpolation, ours in [
            (frame, "BILINEAR", numpy_clips.warp_bilinear(frame, transform, (12, 13))),
            (labels[..., None], "NEAREST", numpy_clips.warp_nearest(labels, transform, (12, 13))),
        ]:
            theirs = tf.raw_ops.ImageProjectiveTransformV3(
                images=image[None],
                transforms=transform[None],
                output_shape=[12, 13],
                fill_value=0.0,
                interpolation=interpolation,
                fill_mode="CONSTANT",
            ).numpy()[0]
            np.testing.assert_array_equal(ours, theirs.reshape(ours.shape), err_msg=interpolation)


def test_colour_adjustments_match_tf_also_out_of_range_and_at_ties():
    rng = np.random.default_rng(1)
    image = rng.uniform(-0.2, 1.2, (16, 17, 3)).astype(np.float32)
    image[0, :4] = [[0.5, 0.5, 0.5], [0.2, 0.5, 0.5], [0.5, 0.2, 0.5], [0.0, 0.0, 0.0]]
    for factor, delta in [(0.6, -0.3), (1.4, 0.45), (1.0, 0.0)]:
        np.testing.assert_array_equal(
            numpy_clips.adjust_contrast(image, factor),
            tf.image.adjust_contrast(image, factor).numpy(),
        )
        np.testing.assert_array_equal(
            numpy_clips.adjust_saturation(image, factor),
            tf.image.adjust_saturation(image, factor).numpy(),
        )
        np.testing.assert_array_equal(
            numpy_clips.adjust_hue(image, delta), tf.image.adjust_hue(image, delta).numpy()
        )


def _decoded(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)))


@pytest.mark.parametrize(
    "dataset, folder, splits",
    [("davis17", "DAVIS", ("train", "val")), ("youtube", "YouTube", ("train", "valid"))],
)
def test_folder_records_equal_the_prepared_tfds_records(prepared, dataset, folder, splits):
    raw, data_dir = prepared
    builder = tfds_sets.get_builder(dataset, str(data_dir))
    for split in splits:
        theirs = tfds_sets.TfdsSource(builder, split)
        if dataset == "davis17":
            ours = folder_source.FolderSource.davis(raw / folder, split, "480p")
        else:
            ours = folder_source.FolderSource.youtube(raw / folder, split)
        assert len(ours) == len(theirs) > 1
        for i in range(len(ours)):
            a, b = ours[i], theirs[i]
            assert set(a) == set(b)
            assert a["name"] == b["name"]  # same videos at the same indices
            assert a["frames"] == b["frames"]  # the folder's JPEG bytes
            assert len(a["segmentations"]) == len(b["segmentations"])
            for x, y in zip(a["segmentations"], b["segmentations"], strict=True):
                assert Image.open(io.BytesIO(x)).mode == "L"
                np.testing.assert_array_equal(_decoded(x), _decoded(y))
            for key in ("annotated", "object_ids", "presence", "boxes"):
                assert a[key].dtype == b[key].dtype, key
                np.testing.assert_array_equal(a[key], b[key], err_msg=key)


def _config(prepared, stage, feed, **overrides):
    raw, data_dir = prepared
    cfg = data_configs.get_config(f"synthetic,{stage},tiny")
    cfg.update(manual_dir=str(raw), data_dir=str(data_dir), feed=feed, **overrides)
    return cfg


def _jpeg_decoders_differ_by(raw) -> float:
    """max |Pillow - TF| over every JPEG frame under `raw`, in [0, 1] units."""
    worst = 0
    for path in sorted(raw.rglob("*.jpg")):
        data = path.read_bytes()
        ours = numpy_clips.decode_frame(data).astype(np.int16)
        theirs = tf.io.decode_image(data, channels=3).numpy().astype(np.int16)
        worst = max(worst, int(np.abs(ours - theirs).max()))
    return worst / 255


@pytest.mark.parametrize("stage", ["main", "sequence"])
def test_the_numpy_feed_gives_the_tf_data_batches_and_resumes(prepared, stage):
    def batches(feed, start_step):
        return pipeline.create_train_iterator(
            _config(prepared, stage, feed),
            stage=stage,
            batch_size=3,
            seed=5,
            start_step=start_step,
            process_index=0,
            process_count=1,
        )

    # The synthetic frames are JPEGs: the warp (colour jitter is off) can only pass on the
    # decoders' difference, so a frame that is more off was cut or chosen elsewhere.
    atol = _jpeg_decoders_differ_by(prepared[0]) + FRAME_ATOL
    assert 0 < atol < 0.05
    theirs = list(itertools.islice(batches("tf.data", 0), 3))
    ours = list(itertools.islice(batches("numpy", 0), 3))
    resumed = next(batches("numpy", 2))
    for a, b in zip(ours + [resumed], theirs + theirs[2:], strict=True):
        assert set(a) == {"frames", "masks", "valid"}
        np.testing.assert_allclose(a["frames"], b["frames"], atol=atol, rtol=0)
        np.testing.assert_array_equal(a["masks"], b["masks"])
        np.testing.assert_array_equal(a["valid"], b["valid"])


def test_the_numpy_feed_rejects_static_sets_in_one_line_before_generating_data(prepared, tmp_path):
    cfg = _config(prepared, "pretrain", "numpy")
    cfg.manual_dir = str(tmp_path / "raw")
    assert cfg.prepare_if_missing  # synthetic data that is missing would be generated
    with pytest.raises(DatasetError, match=r"^config.data.feed='numpy' .* static image sets"):
        pipeline.load_source(cfg)
    assert not (tmp_path / "raw").exists()
    cfg.feed = "torch"
    with pytest.raises(DatasetError, match=r"feed must be one of \('tf.data', 'numpy'\)"):
        pipeline.load_source(cfg)


_TRAIN = """
from lcm_jax import train
from lcm_jax.configs import lcm
from lcm_jax.input_pipeline import folder_source

opened = []  # the dataset split of each FolderSource made: each reads a whole folder split
make = folder_source.FolderSource.__init__


def counted(self, keys, read, split):
    opened.append(split)
    make(self, keys, read, split)


folder_source.FolderSource.__init__ = counted

config = lcm.get_config("stage=main,data=synthetic,runlocal=True")
config.data.update(manual_dir=sys.argv[1], data_dir=sys.argv[2] + "/no_tfds", feed="numpy")
config.update(num_train_steps=2, checkpoint_every_steps=2, eval_every_steps=2)
state, history = train.train_and_evaluate(config, sys.argv[2] + "/workdir")
assert int(state["step"]) == 2 and "eval_loss" in history[-1], history
assert [h["step"] for h in history if "loss" in h] == [1, 2], history  # every step logged
# DAVIS train + YouTube-VOS train for training, DAVIS val for the eval loss: each once
assert sorted(opened) == ["train", "train", "val"], opened
assert not any(m.split(".")[0] in ("tensorflow", "tensorflow_datasets") for m in sys.modules)
try:
    import tensorflow  # noqa: F401
except ModuleNotFoundError:
    print("trained without TensorFlow")
"""


def test_training_with_the_numpy_feed_never_imports_tensorflow(prepared, tmp_path):
    raw, _ = prepared
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    done = subprocess.run(
        [sys.executable, "-c", testing.WITHOUT_TENSORFLOW + _TRAIN, str(raw), str(tmp_path)],
        cwd=repo,
        env=dict(os.environ, XLA_FLAGS="--xla_backend_optimization_level=0"),
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "trained without TensorFlow" in done.stdout
    assert "No TensorBoard events" in done.stderr  # the metrics went to the log
    assert sorted(os.listdir(tmp_path / "workdir" / "checkpoints")) == ["2"]
    assert not (tmp_path / "no_tfds").exists()


def test_the_input_pipeline_benchmark_measures_both_feeds(tmp_path, capsys):
    from benchmarks import input_pipeline as bench

    argv = ["--workdir", str(tmp_path), "--feeds", "tf.data,numpy", "--pipeline_only",
            "--batches", "1", "--num_videos", "2", "--num_frames", "6",
            "--batch_size", "2"]  # fmt: skip
    bench.main(argv)
    rows = [line.split() for line in capsys.readouterr().out.splitlines()]
    rows = [row for row in rows if row[0] in ("tf.data", "numpy")]
    assert [tuple(row[:2]) for row in rows] == [
        ("tf.data", "pretrain"),
        ("tf.data", "main"),
        ("tf.data", "sequence"),
        ("numpy", "main"),
        ("numpy", "sequence"),
    ]
    assert all(float(row[3]) > 0 and row[4] == "nan" for row in rows)
