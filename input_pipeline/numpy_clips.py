"""The NumPy feed of training clips: renders the plans of `clips.plan_stream` without TensorFlow.

    batches = clip_batches(source, cfg, batch_size=8, seed=0)
    batch = next(batches)  # each key of a clip (`clips` module docstring), [8, ...]

`render_clip` is `tf_clips.render_clip` in NumPy and Pillow, operation by operation in float32:
- decode: Pillow, which decodes JPEG with libjpeg's accurate integer IDCT (as inference reads
  frames), where `tf.io.decode_image` uses its fast one: on JPEG frames the two feeds differ by
  that alone (up to 9/255 per pixel, 0.97/255 on average, on the look-alike benchmark's
  frames); on PNG frames they give the same clips. A run records its feed
  (`config.data.feed`; `benchmarks.ablation` keys its cache by it), so the two never mix;
- warp: `ImageProjectiveTransformV3`'s conventions: output pixel (x, y) (integer indices) reads
  input (x', y') = ((a0 x + a1 y + a2) / k, (b0 x + b1 y + b2) / k), k = c0 x + c1 y + 1, for the
  8 parameters (a0, a1, a2, b0, b1, b2, c0, c1); bilinear for frames (each of the 4 neighbours
  outside the image reads the fill value 0), nearest for labels (std::round: halves away from
  zero); nothing is read where k == 0;
- the pretrain Gaussian blur (reflect padding, separable, kernel as `tf_clips._gaussian_blur`);
- `tf.image.adjust_brightness`, `adjust_contrast` (per-channel mean, summed by TF's halving
  folds), `adjust_saturation` and `adjust_hue` (TF's HSV and hue/range round trips, copied from
  its CPU kernels), then a clip to [0, 1].
Masks are exactly TF's; from the same decoded frames, frames differ from TF's by float32
rounding only (the blur's sums, in another order; `tests/test_numpy_feed.py` measures it).

`clip_batches` renders in a thread pool ahead of the consumer (Pillow and NumPy release the GIL
in their loops) and keeps the order of the plans, so that its batches equal `tf_clips`'s.
"""

from __future__ import annotations

import collections
import io
import math
import os
from collections.abc import Iterator, Sequence
from concurrent import futures

import ml_collections
import numpy as np
from PIL import Image

from lcm_jax.input_pipeline import clips

F32 = np.float32


def decode_frame(data: bytes) -> np.ndarray:
    """Encoded image (JPEG, PNG, ...) -> uint8 [H, W, 3] (RGB)."""
    with Image.open(io.BytesIO(data)) as image:
        return np.asarray(image.convert("RGB"))


def decode_label(data: bytes) -> np.ndarray:
    """Encoded grey ('L') PNG label map -> uint8 [H, W] object ids."""
    with Image.open(io.BytesIO(data)) as image:
        return np.asarray(image)


def _source_coordinates(transform: np.ndarray, out_hw: Sequence[int]):
    """Input (x', y') float32 [h, w] of each output pixel, and where k != 0 (bool [h, w])."""
    a = np.asarray(transform, F32)
    y, x = np.mgrid[: out_hw[0], : out_hw[1]].astype(F32)
    k = a[6] * x + a[7] * y + F32(1)
    defined = k != 0
    k = np.where(defined, k, F32(1))
    return (a[0] * x + a[1] * y + a[2]) / k, (a[3] * x + a[4] * y + a[5]) / k, defined


def _read(image: np.ndarray, y: np.ndarray, x: np.ndarray) -> np.ndarray:
    """image [H, W, C] at integer (y, x) [h, w]; 0 outside -> [h, w, C]."""
    height, width = image.shape[:2]
    inside = (y >= 0) & (y < height) & (x >= 0) & (x < width)
    out = image[np.clip(y, 0, height - 1), np.clip(x, 0, width - 1)]
    return np.where(inside[..., None], out, 0).astype(image.dtype)


def warp_bilinear(image: np.ndarray, transform: np.ndarray, out_hw: Sequence[int]) -> np.ndarray:
    """float32 [H, W, C] -> [h, w, C] (module docstring, "warp")."""
    xs, ys, defined = _source_coordinates(transform, out_hw)
    x0, y0 = np.floor(xs), np.floor(ys)
    x1, y1 = x0 + F32(1), y0 + F32(1)
    ix0, iy0, ix1, iy1 = (v.astype(np.int64) for v in (x0, y0, x1, y1))
    wx0, wx1 = (x1 - xs)[..., None], (xs - x0)[..., None]
    top = wx0 * _read(image, iy0, ix0) + wx1 * _read(image, iy0, ix1)
    bottom = wx0 * _read(image, iy1, ix0) + wx1 * _read(image, iy1, ix1)
    out = (y1 - ys)[..., None] * top + (ys - y0)[..., None] * bottom
    return np.where(defined[..., None], out, F32(0))


def _round_half_away(v: np.ndarray) -> np.ndarray:
    """std::round, exactly (np.round rounds halves to even)."""
    a = np.abs(v)
    r = np.floor(a)
    r = r + (a - r >= F32(0.5))
    return np.copysign(r, v)


def warp_nearest(labels: np.ndarray, transform: np.ndarray, out_hw: Sequence[int]) -> np.ndarray:
    """uint8 [H, W] -> [h, w] (module docstring, "warp")."""
    xs, ys, defined = _source_coordinates(transform, out_hw)
    ix, iy = (_round_half_away(v).astype(np.int64) for v in (xs, ys))
    out = _read(labels[..., None], iy, ix)[..., 0]
    return np.where(defined, out, 0).astype(labels.dtype)


def gaussian_blur(image: np.ndarray, sigma: float, radius: int) -> np.ndarray:
    """float32 [H, W, 3], std `sigma` pixels, reflect padding (`tf_clips._gaussian_blur`)."""
    x = np.arange(-radius, radius + 1, dtype=F32)
    kernel = np.exp(-(x**2) / (F32(2) * F32(sigma) ** 2 + F32(1e-6)))
    kernel = kernel / kernel.sum(dtype=F32)
    padded = np.pad(image, [(radius, radius), (radius, radius), (0, 0)], mode="reflect")
    height, width = image.shape[:2]
    out = sum(kernel[i] * padded[i : i + height] for i in range(2 * radius + 1))
    return sum(kernel[i] * out[:, i : i + width] for i in range(2 * radius + 1))


def adjust_contrast(image: np.ndarray, factor: float) -> np.ndarray:
    """`tf.image.adjust_contrast` of float32 [H, W, C]: (x - mean) * factor + mean, the mean per
    channel summed as TF's CPU kernel does (fold the pixels in halves until one is left)."""
    flat = image.reshape(-1, image.shape[-1])
    total = flat
    while len(total) > 1:
        right = len(total) // 2
        left = len(total) - right
        total = np.concatenate([total[left:] + total[:right], total[right:left]])
    mean = total[0] * (F32(1) / F32(len(flat)))
    return (image - mean) * F32(factor) + mean


def _rgb_to_hsv(r, g, b):
    """TF's AdjustSaturation rgb_to_hsv (float32 [N] each)."""
    v = np.maximum(r, np.maximum(g, b))
    chroma = v - np.minimum(r, np.minimum(g, b))
    with np.errstate(divide="ignore", invalid="ignore"):
        s = np.where(v > 0, chroma / v, F32(0))
        norm = F32(1) / (F32(6) * chroma)
        h = np.where(
            r == v,
            norm * (g - b),
            np.where(
                g == v,
                (norm * (b - r)).astype(np.float64) + 2.0 / 6.0,
                (norm * (r - g)).astype(np.float64) + 4.0 / 6.0,
            ).astype(F32),
        )
    h = np.where(chroma <= 0, F32(0), h)
    h = np.where(h < 0, h + F32(1), h)
    return h, s, v


def _hsv_to_rgb(h, s, v):
    """TF's AdjustSaturation hsv_to_rgb (float32 [N] each)."""
    c = s * v
    m = v - c
    dh = h * F32(6)
    category = np.trunc(dh).astype(np.int64)  # static_cast<int>
    fmodu = dh.copy()
    while (low := fmodu <= 0).any():
        fmodu[low] += F32(2)
    while (high := fmodu > 2).any():
        fmodu[high] -= F32(2)
    x = c * (F32(1) - np.abs(fmodu - F32(1)))
    zero = np.zeros_like(c)
    rgb = np.select(
        [category == i for i in range(6)],
        [
            np.stack(p)
            for p in ((c, x, zero), (x, c, zero), (zero, c, x), (zero, x, c), (x, zero, c))
            + ((c, zero, x),)
        ],
        np.stack((zero, zero, zero)),
    )
    return rgb + m


def adjust_saturation(image: np.ndarray, factor: float) -> np.ndarray:
    """`tf.image.adjust_saturation` of float32 [H, W, 3] (TF's CPU kernel)."""
    r, g, b = image.reshape(-1, 3).T
    h, s, v = _rgb_to_hsv(r, g, b)
    s = np.minimum(F32(1), np.maximum(F32(0), s * F32(factor)))
    return _hsv_to_rgb(h, s, v).T.reshape(image.shape)


def adjust_hue(image: np.ndarray, delta: float) -> np.ndarray:
    """`tf.image.adjust_hue` of float32 [H, W, 3] (TF's CPU kernel: hue in [0, 6) and the
    (min, max) range of the channels; the middle channel is rebuilt from the new hue)."""
    r, g, b = image.reshape(-1, 3).T
    # TF's rgb_to_hv_range: the six orderings, ties counted on either side as TF counts them.
    cases = [
        (r < g) & (b < r),  # b < r < g
        (r < g) & ~(b < r) & (b > g),  # r < g < b
        (r < g) & ~(b < r) & ~(b > g),  # r <= b <= g
        ~(r < g) & (b < g),  # b < g <= r
        ~(r < g) & ~(b < g) & (b > r),  # g <= r < b
    ]
    v_max = np.select(cases, [g, b, g, r, b], r)
    v_mid = np.select(cases, [r, g, b, g, r], b)
    v_min = np.select(cases, [b, r, r, b, g], g)
    category = np.select(cases, [1, 3, 2, 0, 4], 5)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = (v_mid - v_min) / (v_max - v_min)
    increase = category % 2 == 0
    h = category.astype(F32) + np.where(increase, ratio, F32(1) - ratio)
    h = np.where(v_max == v_min, F32(0), h)
    h = h + F32(delta) * F32(6)
    while (low := h < 0).any():
        h[low] += F32(6)
    while (high := h >= 6).any():
        h[high] -= F32(6)
    # TF's hv_range_to_rgb.
    category = h.astype(np.int64)
    ratio = h - category.astype(F32)
    ratio = np.where(category % 2 == 0, ratio, F32(1) - ratio)
    v_mid = v_min + ratio * (v_max - v_min)
    rgb = np.select(
        [category == i for i in range(5)],
        [
            np.stack(p)
            for p in (
                (v_max, v_mid, v_min),
                (v_mid, v_max, v_min),
                (v_min, v_max, v_mid),
                (v_min, v_mid, v_max),
                (v_mid, v_min, v_max),
            )
        ],
        np.stack((v_max, v_min, v_mid)),
    )
    return rgb.T.reshape(image.shape)


def render_clip(element: dict, cfg) -> dict:
    """`tf_clips.render_clip` in NumPy: `clips.plan_inputs` -> a clip (`clips` module
    docstring) of NumPy arrays (frames float32 [3, H, W, 3], masks float32 [3, O, H, W])."""
    crop = tuple(cfg.crop)
    radius = max(1, math.ceil(3 * cfg.blur_sigma[1]))
    frames, masks = [], []
    for t in range(3):
        transform = element["transforms"][t]
        frame = decode_frame(element["frames"][t]).astype(F32) / F32(255)
        frame = warp_bilinear(frame, transform, crop)
        if cfg.stage == "pretrain" and cfg.blur_prob > 0:
            frame = gaussian_blur(frame, element["blur_sigma"][t], radius)
        if cfg.color_jitter:
            brightness, contrast, saturation, hue = element["jitter"][t]
            frame = frame + brightness
            frame = adjust_contrast(frame, contrast)
            frame = adjust_saturation(frame, saturation)
            frame = adjust_hue(frame, hue)
        frames.append(np.clip(frame, F32(0), F32(1)))
        labels = warp_nearest(decode_label(element["segmentations"][t]), transform, crop)
        ids = element["object_ids"]  # [O], -1 padding: never equal to a label
        masks.append((labels[None].astype(np.int32) == ids[:, None, None]).astype(F32))
    return {
        "frames": np.stack(frames),
        "masks": np.stack(masks),
        **{
            key: element[key]
            for key in ("valid", "object_ids", "frame_indices", "video_index", "index")
        },
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
    """`tf_clips.clip_batches` without TensorFlow: the same batches (module docstring).

    The plans are drawn in order by the consumer's thread (`clips.plan_stream`, which reads
    the records); `cfg.num_parallel_calls` threads (-1: one per CPU) render them, with up to
    `cfg.prefetch` batches rendered ahead.
    """
    cfg = ml_collections.FrozenConfigDict(cfg)
    workers = cfg.num_parallel_calls if cfg.num_parallel_calls > 0 else os.cpu_count() or 1
    stream = clips.plan_stream(
        source, cfg, seed=seed, start_index=start_index, process_index=process_index
    )
    ahead = (max(1, cfg.prefetch) + 1) * batch_size
    pool = futures.ThreadPoolExecutor(workers, thread_name_prefix="numpy_clips")
    pending = collections.deque()
    try:
        while True:
            while len(pending) < ahead:
                pending.append(pool.submit(render_clip, clips.plan_inputs(*next(stream)), cfg))
            batch = [pending.popleft().result() for _ in range(batch_size)]
            yield {key: np.stack([clip[key] for clip in batch]) for key in batch[0]}
    finally:  # the consumer stopped (or a plan failed): drop what is not rendered yet
        pool.shutdown(wait=False, cancel_futures=True)
