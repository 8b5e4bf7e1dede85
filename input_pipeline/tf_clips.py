"""The tf.data feed of training clips: renders the plans of `clips.plan_stream` in TensorFlow.

    batches = clip_batches(source, cfg, batch_size=8, seed=0)
    batch = next(batches)  # each key of a clip (`clips` module docstring), [8, ...]

`render_clip` decodes the plan's three frames and label maps (`tf.io.decode_image`: JPEG with
TF's default, fast integer IDCT), warps them with `ImageProjectiveTransformV3` (bilinear for frames,
nearest for labels, constant fill 0), blurs (pretrain) and colour-jitters the frames.
`numpy_clips.render_clip` computes the same function without TensorFlow.
"""

from __future__ import annotations

import atexit
import math
import threading
import weakref
from collections.abc import Iterator, Sequence

import ml_collections
import numpy as np

from lcm_jax.input_pipeline import clips
from lcm_jax.input_pipeline.tf_setup import tf


def _gaussian_blur(image: tf.Tensor, sigma: tf.Tensor, radius: int) -> tf.Tensor:
    """Separable Gaussian blur of [H, W, 3] with std `sigma` pixels (sigma 0: identity)."""
    x = tf.range(-radius, radius + 1, dtype=tf.float32)
    kernel = tf.exp(-(x**2) / (2 * sigma**2 + 1e-6))
    kernel = kernel / tf.reduce_sum(kernel)
    padded = tf.pad(image[None], [[0, 0], [radius, radius], [radius, radius], [0, 0]], "REFLECT")
    k_y = tf.tile(kernel[:, None, None, None], [1, 1, 3, 1])
    k_x = tf.tile(kernel[None, :, None, None], [1, 1, 3, 1])
    out = tf.nn.depthwise_conv2d(padded, k_y, [1, 1, 1, 1], "VALID")
    return tf.nn.depthwise_conv2d(out, k_x, [1, 1, 1, 1], "VALID")[0]


def render_clip(element: dict, cfg) -> dict:
    """tf.data map: decodes the three frames and label maps of `clips.plan_inputs` and applies
    the plan (graph mode); returns a clip (`clips` module docstring) as tensors."""
    crop = tf.constant(list(cfg.crop), tf.int32)
    frames, labels = [], []
    for t in range(3):
        frame = tf.io.decode_image(element["frames"][t], channels=3, expand_animations=False)
        label = tf.io.decode_png(element["segmentations"][t], channels=1)
        frames.append(tf.cast(frame, tf.float32) / 255.0)
        labels.append(label)

    def warp(images, interpolation):
        return tf.raw_ops.ImageProjectiveTransformV3(
            images=tf.stack(images),
            transforms=element["transforms"],
            output_shape=crop,
            fill_value=0.0,
            interpolation=interpolation,
            fill_mode="CONSTANT",
        )

    frames = warp(frames, "BILINEAR")
    labels = warp(labels, "NEAREST")
    out_frames = []
    radius = max(1, math.ceil(3 * cfg.blur_sigma[1]))
    for t in range(3):
        frame = frames[t]
        if cfg.stage == "pretrain" and cfg.blur_prob > 0:
            frame = _gaussian_blur(frame, element["blur_sigma"][t], radius)
        if cfg.color_jitter:
            j = element["jitter"][t]
            frame = tf.image.adjust_brightness(frame, j[0])
            frame = tf.image.adjust_contrast(frame, j[1])
            frame = tf.image.adjust_saturation(frame, j[2])
            frame = tf.image.adjust_hue(frame, j[3])
        out_frames.append(tf.clip_by_value(frame, 0.0, 1.0))
    ids = element["object_ids"]  # [O], -1 padding: never equal to a label
    masks = tf.cast(tf.cast(labels, tf.int32) == ids[None, None, None, :], tf.float32)
    return {
        "frames": tf.ensure_shape(tf.stack(out_frames), [3, *cfg.crop, 3]),
        "masks": tf.ensure_shape(
            tf.transpose(masks, [0, 3, 1, 2]), [3, cfg.max_objects, *cfg.crop]
        ),
        "valid": element["valid"],
        "object_ids": ids,
        "frame_indices": element["frame_indices"],
        "video_index": element["video_index"],
        "index": element["index"],
    }


def _input_signature(cfg) -> dict[str, tf.TensorSpec]:
    o = cfg.max_objects
    return {
        "frames": tf.TensorSpec([3], tf.string),
        "segmentations": tf.TensorSpec([3], tf.string),
        "transforms": tf.TensorSpec([3, 8], tf.float32),
        "object_ids": tf.TensorSpec([o], tf.int32),
        "valid": tf.TensorSpec([o], tf.bool),
        "blur_sigma": tf.TensorSpec([3], tf.float32),
        "jitter": tf.TensorSpec([3, 4], tf.float32),
        "frame_indices": tf.TensorSpec([3], tf.int32),
        "video_index": tf.TensorSpec([], tf.int64),
        "index": tf.TensorSpec([], tf.int64),
    }


def clip_batches(
    source: Sequence,
    cfg: ml_collections.ConfigDict,
    *,
    batch_size: int,
    seed: int,
    start_index: int = 0,
    process_index: int = 0,
) -> Iterator[dict[str, np.ndarray]]:
    """Yields batches of clips forever: each key of a clip (`clips` module docstring) with a
    leading batch axis [batch_size, ...]; batch b holds examples start_index + b * batch_size...

    One tf.data pipeline serves the whole stream: a Python generator draws the plans in order
    (and reads the records; `from_generator`, run by tf.data ahead of the consumer), tf.data
    decodes and warps them in parallel (`render_clip`, traced once), keeps their order and
    batches them. An error of the generator (e.g. DatasetError: no usable video) is raised
    again as itself by the iterator. Closing the iterator (or dropping it, or exiting with it
    still open) first stops the generator and drains what tf.data has in flight: a tf.data
    iterator destroyed while its generator waits for the GIL, which the destroying thread holds,
    would hang forever.

    Args:
        source: records (`lcm_jax.input_pipeline.sources`); this process's shard.
        cfg: data config (`configs/data.py`); `cfg.stage` picks the sampler.
        seed, start_index, process_index: see "Randomness" in the `clips` module docstring.
    """
    stream = _stream(source, ml_collections.FrozenConfigDict(cfg), batch_size, seed, start_index,
                     process_index)  # fmt: skip
    _OPEN_STREAMS.add(stream)
    return stream


# Streams not closed yet. At exit their tf.data iterators would be destroyed in no set order,
# possibly while a generator call waits for the GIL (a hang); they are closed first instead.
_OPEN_STREAMS: weakref.WeakSet = weakref.WeakSet()


@atexit.register
def _close_open_streams() -> None:
    for stream in list(_OPEN_STREAMS):
        stream.close()


def _stream(source, cfg, batch_size, seed, start_index, process_index):
    """The generator of `clip_batches`."""
    parallel = cfg.num_parallel_calls if cfg.num_parallel_calls > 0 else tf.data.AUTOTUNE
    failures = []  # what the generator raised: tf.data reports it as an OpError only
    stop = threading.Event()  # set when the consumer closes: the generator ends

    def plans():
        stream = clips.plan_stream(
            source, cfg, seed=seed, start_index=start_index, process_index=process_index
        )
        try:
            for item in stream:
                if stop.is_set():
                    return
                yield clips.plan_inputs(*item)
        except Exception as e:
            failures.append(e)
            raise

    ds = tf.data.Dataset.from_generator(plans, output_signature=_input_signature(cfg))
    # Python control flow in render_clip is on the config only: no AutoGraph conversion, which
    # would write its generated code to files in the temporary folder (left there by a killed run).
    render = tf.autograph.experimental.do_not_convert(lambda e: render_clip(e, cfg))
    ds = ds.map(render, num_parallel_calls=parallel, deterministic=True)
    ds = ds.batch(batch_size, drop_remainder=True).prefetch(cfg.prefetch)
    batches = ds.as_numpy_iterator()
    try:
        yield from batches
    except GeneratorExit:  # first: at interpreter exit `tf` may already be None
        stop.set()
        try:
            for _ in batches:  # waits without the GIL, so the generator can see `stop` and end
                pass
        except Exception:  # nothing to save; at interpreter exit TF itself may be torn down
            pass
        raise
    except tf.errors.OpError:
        if failures:
            raise failures[0] from None
        raise
