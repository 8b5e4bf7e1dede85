"""Training clips of the paper's section 3.5 (three frames, up to `max_objects` objects): the
random plan of each clip (NumPy only; this module never imports TensorFlow).

A clip is planned here (`plan_stream`: which video, frames, objects, warp, blur and colour
jitter) and rendered by one of two feeds that compute the same function of the plan
(`configs/data.py`, `feed`): `tf_clips.clip_batches` (tf.data) or `numpy_clips.clip_batches`
(NumPy and Pillow in a thread pool, for machines without TensorFlow).

Stages (the project's design spec, "Training"):
- pretrain: one static image and two random affine copies of it (translate, rotate, zoom,
  shear) with Gaussian blur; `crop` = 384x384.
- main: three distinct annotated frames at any interval, order shuffled; only the objects
  present in all three; `crop` = 384x640 (HxW) around the union box of those objects. The
  frames are drawn among those of a random object present in at least three frames, so that
  every clip keeps at least that object.
- sequence: three annotated frames in time order, each gap drawn from [min_skip, max_skip];
  the objects present in the first frame; same crop as main.

Crop (main, sequence and the static base crop): the frames are scaled by
`s = max(1, crop_h / H, crop_w / W)` (resized up when smaller than the crop), then by less when
the union box of the clip's objects does not fit in the crop; the crop window is drawn uniformly
among the windows that contain the (scaled) union box and lie inside the frame when the frame
covers the crop (`crop_window`). Optional horizontal flip (whole clip) and per-frame colour
jitter. Up to `max_objects` objects, a random subset when there are more (kept in id order),
padded with a validity mask.

Randomness: all random choices of a clip are drawn in NumPy from
`np.random.default_rng([seed, process_index, 0, n])`, n the process-local example index, and
videos are visited in a fresh permutation per epoch drawn from `[seed, process_index, 1, epoch]`:
example n is a function of (seed, process_index, n) and the shard, so a run that restarts at
step s with `start_index = s * batch_size` sees the same clips.

Bad input (documented skips, counted in `SKIPS` and logged): a video with fewer annotated frames
than a clip needs, or with no object that the stage can use (main: none present in 3 frames;
sequence: none in a frame with two later frames; static: empty mask), is skipped and the next
video of the permutation is used. Void (255) pixels belong to no object (mask 0).

A clip (one element of either feed's `clip_batches` batch, NumPy):
    frames        float32 [3, H, W, 3] in [0, 1]
    masks         float32 [3, O, H, W] in {0, 1}
    valid         bool [O]
    object_ids    int32 [O] (the label ids; -1 for padding)
    frame_indices int32 [3] (indices into the video's frames)
    video_index   int64 (index of the video in the source given to `clip_dataset`)
    index         int64 (n)
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import math
from collections.abc import Iterator, Sequence

import numpy as np

from lcm_jax.configs.data import STAGES
from lcm_jax.input_pipeline import sources
from lcm_jax.input_pipeline.video_io import DatasetError

SKIPS: collections.Counter = collections.Counter()  # (stage, reason) -> skipped clips
_WARNED: set = set()


@dataclasses.dataclass
class ClipPlan:
    """Everything random about one clip (NumPy).

    transforms: float32 [3, 8], output pixel (x, y) -> input pixel (ImageProjectiveTransformV3).
    jitter: float32 [3, 4] brightness delta, contrast, saturation factors, hue delta.
    """

    frame_indices: np.ndarray
    object_ids: np.ndarray
    valid: np.ndarray
    transforms: np.ndarray
    blur_sigma: np.ndarray
    jitter: np.ndarray


def crop_window(
    box: np.ndarray, image_hw: Sequence[float], crop_hw: Sequence[float], u: np.ndarray
) -> tuple[float, np.ndarray]:
    """Scale and crop offset so that the crop contains the union box.

    Args:
        box: (y0, x0, y1, x1) union box in input pixels (pixel edges).
        image_hw: input (H, W); crop_hw: output (h, w); u: two numbers in [0, 1].
    Returns:
        (s, offset [2] (y, x)): output coordinate = s * input coordinate - offset. The window
        [offset, offset + crop] (in scaled input coordinates) contains s * box, and lies inside
        the scaled image whenever the scaled image covers the crop.
    """
    image_hw = np.asarray(image_hw, np.float64)
    crop_hw = np.asarray(crop_hw, np.float64)
    box = np.asarray(box, np.float64)
    s = max(1.0, *(crop_hw / image_hw))
    extent = np.maximum(box[2:] - box[:2], 1e-6)
    s = min(s, *(crop_hw / extent))
    b0, b1, size = s * box[:2], s * box[2:], s * image_hw
    lo = np.maximum(b1 - crop_hw, np.minimum(0.0, size - crop_hw))
    hi = np.minimum(b0, np.maximum(0.0, size - crop_hw))
    hi = np.maximum(hi, lo)
    return s, lo + np.asarray(u, np.float64) * (hi - lo)


def _translate(tx: float, ty: float) -> np.ndarray:
    return np.array([[1, 0, tx], [0, 1, ty], [0, 0, 1]], np.float64)


def _to_tf_transform(forward: np.ndarray) -> np.ndarray:
    """Forward map in continuous (x, y) coordinates -> TF's output-to-input pixel transform."""
    index_forward = _translate(-0.5, -0.5) @ forward @ _translate(0.5, 0.5)
    inverse = np.linalg.inv(index_forward)
    inverse = inverse / inverse[2, 2]
    return inverse.reshape(-1)[:8].astype(np.float32)


def _random_affine(rng: np.random.Generator, cfg, crop_hw) -> np.ndarray:
    """Random translate/rotate/zoom/shear about the crop centre, continuous (x, y), [3, 3]."""
    h, w = crop_hw
    angle = math.radians(rng.uniform(-cfg.rotate_deg, cfg.rotate_deg))
    shear = math.radians(rng.uniform(-cfg.shear_deg, cfg.shear_deg))
    zoom = rng.uniform(*cfg.zoom_range)
    tx, ty = rng.uniform(-cfg.translate, cfg.translate, 2) * (w, h)
    rotate = np.array(
        [[math.cos(angle), -math.sin(angle), 0], [math.sin(angle), math.cos(angle), 0], [0, 0, 1]]
    )
    shear_m = np.array([[1, math.tan(shear), 0], [0, 1, 0], [0, 0, 1]])
    zoom_m = np.diag([zoom, zoom, 1.0])
    return (
        _translate(w / 2 + tx, h / 2 + ty) @ rotate @ shear_m @ zoom_m @ _translate(-w / 2, -h / 2)
    )


def _choose_objects(rng, candidates: np.ndarray, record, max_objects: int):
    ids = record["object_ids"][np.sort(candidates)]
    if len(ids) > max_objects:
        ids = np.sort(rng.choice(ids, max_objects, replace=False))
    object_ids = np.full(max_objects, -1, np.int32)
    object_ids[: len(ids)] = ids
    return object_ids, np.arange(max_objects) < len(ids)


def _sample_frames(record, stage: str, rng, cfg):
    """(frame_indices [3], candidate object columns) or (None, skip reason)."""
    annotated = np.flatnonzero(record["annotated"])
    presence = record["presence"]
    if stage == "pretrain":
        if not presence.shape[1]:
            return None, "empty mask"
        return np.zeros(3, np.int64), np.arange(presence.shape[1])
    if len(annotated) < 3:
        return None, "fewer than 3 annotated frames"
    if stage == "main":
        usable = np.flatnonzero(presence.sum(0) >= 3)
        if not usable.size:
            return None, "no object in 3 frames"
        k = rng.choice(usable)
        frames = rng.choice(np.flatnonzero(presence[:, k]), 3, replace=False)
        if not cfg.shuffle_order:
            frames = np.sort(frames)
        return frames, np.flatnonzero(presence[frames].all(0))
    # sequence: positions in the list of annotated frames; gaps in [min_skip, max_skip].
    last = len(annotated) - 1
    lo, hi = cfg.min_skip, cfg.max_skip
    starts = [i for i in range(last - 2 * lo + 1) if presence[annotated[i]].any()]
    if not starts:
        return None, f"no object in a frame followed by two more at skip >= {lo}"
    i = int(rng.choice(starts))
    g1 = int(rng.integers(lo, min(hi, last - i - lo) + 1))
    g2 = int(rng.integers(lo, min(hi, last - i - g1) + 1))
    frames = annotated[[i, i + g1, i + g1 + g2]]
    return frames, np.flatnonzero(presence[frames[0]])


def plan_clip(record: dict, stage: str, rng: np.random.Generator, cfg) -> ClipPlan | str:
    """Draws one clip from a record: a ClipPlan, or the reason (str) it cannot give one."""
    frames, candidates = _sample_frames(record, stage, rng, cfg)
    if frames is None:
        return candidates
    object_ids, valid = _choose_objects(rng, candidates, record, cfg.max_objects)
    columns = np.searchsorted(record["object_ids"], object_ids[valid])
    present = record["presence"][frames][:, columns]  # [3, n]; absent boxes are zeros
    boxes = record["boxes"][frames][:, columns][present]
    union = np.concatenate([boxes[:, :2].min(0), boxes[:, 2:].max(0)])
    crop_hw = tuple(cfg.crop)
    image_hw = sources.image_size(record["frames"][int(frames[0])])
    s, offset = crop_window(union, image_hw, crop_hw, rng.uniform(size=2))
    base = _translate(-offset[1], -offset[0]) @ np.diag([s, s, 1.0])  # (x, y) continuous
    flip = np.eye(3)
    if cfg.flip and rng.random() < 0.5:
        flip = np.array([[-1.0, 0, crop_hw[1]], [0, 1, 0], [0, 0, 1]])
    forwards, blur = [], np.zeros(3, np.float32)
    for t in range(3):
        forward = base
        if stage == "pretrain" and (t > 0 or not cfg.identity_first):
            forward = _random_affine(rng, cfg, crop_hw) @ base
            if rng.random() < cfg.blur_prob:
                blur[t] = rng.uniform(*cfg.blur_sigma)
        forwards.append(_to_tf_transform(flip @ forward))
    jitter = np.tile(np.array([0.0, 1.0, 1.0, 0.0], np.float32), (3, 1))
    if cfg.color_jitter:
        b, c, s_, h = cfg.brightness, cfg.contrast, cfg.saturation, cfg.hue
        jitter = np.stack(
            [
                rng.uniform(-b, b, 3),
                rng.uniform(1 - c, 1 + c, 3),
                rng.uniform(1 - s_, 1 + s_, 3),
                rng.uniform(-h, h, 3),
            ],
            -1,
        ).astype(np.float32)
    return ClipPlan(
        frame_indices=np.asarray(frames, np.int32),
        object_ids=object_ids,
        valid=valid,
        transforms=np.stack(forwards),
        blur_sigma=blur,
        jitter=jitter,
    )


def _skip(stage: str, reason: str, name: str) -> None:
    SKIPS[(stage, reason)] += 1
    if (stage, name) not in _WARNED:
        _WARNED.add((stage, name))
        logging.warning(
            "skipping %r for stage %s: %s (%d clips skipped for this reason so far)",
            name,
            stage,
            reason,
            SKIPS[(stage, reason)],
        )


def plan_stream(
    source: Sequence, cfg, *, seed: int, start_index: int = 0, process_index: int = 0
) -> Iterator[tuple[int, int, dict, ClipPlan]]:
    """Yields (n, video_index, record, ClipPlan) for n = start_index, start_index + 1, ...

    Args:
        source: records (`lcm_jax.input_pipeline.sources`); this process's shard.
        cfg: data config (`configs/data.py`); `cfg.stage` picks the sampler.
        seed, start_index, process_index: see "Randomness" in the module docstring.
    """
    if cfg.stage not in STAGES:
        raise ValueError(f"stage must be one of {STAGES}, got {cfg.stage!r}")
    if seed < 0 or start_index < 0 or process_index < 0:
        raise ValueError(
            f"seed, start_index and process_index must be >= 0, got {seed}, {start_index}, "
            f"{process_index}"
        )
    num_videos = len(source)
    if not num_videos:
        raise DatasetError("the clip source has no video")
    epoch, order = None, None
    n = start_index
    while True:
        e, j = divmod(n, num_videos)
        if e != epoch:
            epoch = e
            order = np.random.default_rng([seed, process_index, 1, e]).permutation(num_videos)
        rng = np.random.default_rng([seed, process_index, 0, n])
        for attempt in range(num_videos):
            video_index = int(order[(j + attempt) % num_videos])
            record = source[video_index]
            plan = plan_clip(record, cfg.stage, rng, cfg)
            if isinstance(plan, ClipPlan):
                break
            _skip(cfg.stage, plan, record["name"])
        else:
            raise DatasetError(f"no video of the source can give a {cfg.stage} clip")
        yield n, video_index, record, plan
        n += 1


def plan_inputs(n: int, video_index: int, record: dict, plan: ClipPlan) -> dict:
    """What either feed's `render_clip` renders, for one item of `plan_stream`:
    frames, segmentations  object [3] (the encoded bytes of the plan's three frames)
    transforms float32 [3, 8], object_ids int32 [O], valid bool [O], blur_sigma float32 [3],
    jitter float32 [3, 4], frame_indices int32 [3] (`ClipPlan`)
    video_index, index     int64 []
    """
    return {
        "frames": np.array([record["frames"][i] for i in plan.frame_indices], dtype=object),
        "segmentations": np.array(
            [record["segmentations"][i] for i in plan.frame_indices], dtype=object
        ),
        "transforms": plan.transforms,
        "object_ids": plan.object_ids,
        "valid": plan.valid,
        "blur_sigma": plan.blur_sigma,
        "jitter": plan.jitter,
        "frame_indices": plan.frame_indices,
        "video_index": np.int64(video_index),
        "index": np.int64(n),
    }
