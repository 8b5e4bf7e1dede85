"""Video inference: one jitted step per frame, a Python loop that only moves data.

`make_step` builds the pure step of one video, `(variables, memory, frame, labels, given, t)
-> (memory, FrameOutput)`:

1. the frame (uint8 [H, W, 3]) goes to [0, 1], is resized to the internal resolution, padded to a
   multiple of 16 (padding.py) and, with flip test-time augmentation, joined by its mirror image;
2. `LCM.segment` predicts every object group of every stream from the memory (GRM reads the
   pool, PGM frame t − 1, ORM each object's reference frame), the query encoder running once
   per stream for all groups;
3. the groups' and streams' object probabilities are merged by soft aggregation (STM, as the
   model's own `soft_aggregate`, over all objects at once) and averaged over the streams;
4. masks given on this frame override the prediction (`override`), at the internal resolution
   for the memory and at the original resolution for the output;
5. the frame is encoded with its final soft masks and written into the memory (memory.py).

A video's objects take O = G·M object slots: G = ceil(objects / max_objects) groups of
M = ceil(objects / G) slots, which run as extra batch rows on the same frames (the memory
encoder's other-objects mask still covers every other object, of all groups). A video of 2
objects thus pays for 2 slots, not for the model's `max_objects`; padded slots (at most G − 1)
never join. The memory has a fixed capacity, and `t`, `given` and `labels` are traced: the step
compiles once per frame size (and slot layout and capacity), never as memory fills or objects
join. `jax.vmap` of the step runs several videos of one size together (`Engine.run_videos`),
compiled once more for each number of videos run together.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

from lcm_jax.inference import memory as mem
from lcm_jax.inference import padding
from lcm_jax.input_pipeline import video_io
from lcm_jax.model import LCM, build_model, soft_aggregate
from lcm_jax.model.aggregation import EPS

CAPACITY_ROUNDING = 8  # unbounded memory: slots rounded up to a multiple (fewer compilations)


@dataclasses.dataclass(frozen=True)
class InferenceOptions:
    """Inference settings.

    Attributes:
      mem_every: every mem_every-th frame stays in memory (STM: 5).
      max_memory_frames: slots of the memory pool, frame t − 1 included; when full, the oldest
        frame that is no reference is evicted. None: enough for the whole video.
      flip: horizontal-flip test-time augmentation (two streams, probabilities averaged; both
        streams memorise the averaged masks).
      shorter_side: internal resolution, the frame's shorter side in pixels (e.g. 480); None
        keeps the original size. Outputs are always at the original size.
      dtype: compute dtype of the model ("float32", "bfloat16"); None keeps the model config's.
      soft_output: also return the probabilities, quantised to uint8.
    """

    mem_every: int = 5
    max_memory_frames: int | None = None
    flip: bool = False
    shorter_side: int | None = None
    dtype: str | None = None
    soft_output: bool = False

    def __post_init__(self):
        if self.mem_every < 1:
            raise ValueError(f"mem_every must be >= 1, got {self.mem_every}")
        if self.max_memory_frames is not None and self.max_memory_frames < 2:
            raise ValueError(
                f"max_memory_frames must be >= 2 (a kept frame and t - 1) or None, got "
                f"{self.max_memory_frames}"
            )
        if self.shorter_side is not None and self.shorter_side < padding.MULTIPLE:
            raise ValueError(
                f"shorter_side must be >= {padding.MULTIPLE} (the model's stride) or None, got "
                f"{self.shorter_side}"
            )

    @property
    def streams(self) -> int:
        return 2 if self.flip else 1


@dataclasses.dataclass(frozen=True)
class Geometry:
    """Static sizes of one compiled step: original (height, width), internal `inner` size,
    padding to a multiple of 16, object groups of `slots` objects each, and memory slots."""

    height: int
    width: int
    inner: tuple[int, int]
    pads: padding.Pads
    groups: int
    slots: int
    capacity: int

    @property
    def padded(self) -> tuple[int, int]:
        (top, bottom), (left, right) = self.pads
        return self.inner[0] + top + bottom, self.inner[1] + left + right


@flax.struct.dataclass
class FrameOutput:
    """One frame's result on the device (O = G·M object slots, object index o -> label o + 1).

    labels: uint8 [H, W], 0 background; confidence: float32 [O], the mean probability of each
    object over the pixels labelled with it (NaN where it has none); probs: uint8 [1 + O, H, W],
    round(255 · p), background first, or None.
    """

    labels: jnp.ndarray
    confidence: jnp.ndarray
    probs: Any


def merge_objects(fg_logits, joined):
    """Soft aggregation over all objects of all groups, averaged over the streams.

    fg_logits float32 [S, O, H, W] are the model's aggregated object logits; they equal
    log(p_o / (1 − p_o)) of each object's own foreground probability, so p_o = sigmoid(logit)
    and `soft_aggregate` of the logit pairs (0, logit) re-aggregates p_o over all O objects.
    joined bool [O]. Returns probabilities float32 [1 + O, H, W], background first.
    """
    pairs = jnp.stack([jnp.zeros_like(fg_logits), fg_logits], axis=-1)
    valid = jnp.broadcast_to(joined, fg_logits.shape[:2])
    return jax.nn.softmax(soft_aggregate(pairs, valid), axis=1).mean(axis=0)


def override(probs, masks, given):
    """Given masks replace the prediction.

    probs float32 [1 + O, H, W] (background first), masks float32 [O, H, W] (disjoint, soft),
    given bool [O]. Each given object takes its mask; the probability left, 1 − Σ given masks,
    is shared by the other channels in proportion to their predicted probabilities (all to the
    background where they predicted nothing).
    """
    m = jnp.where(given[:, None, None], masks, 0.0)
    union = jnp.clip(m.sum(axis=0), 0.0, 1.0)
    is_given = jnp.concatenate([jnp.zeros((1,), bool), given])[:, None, None]
    rest = jnp.where(is_given, 0.0, probs)
    total = rest.sum(axis=0)
    background = jnp.zeros_like(probs).at[0].set(1.0)
    rest = jnp.where(total > EPS, rest / jnp.maximum(total, EPS), background)
    return (1.0 - union) * rest + jnp.concatenate([jnp.zeros_like(union)[None], m])


def frame_output(probs, soft_output: bool) -> FrameOutput:
    """Labels, confidences and (optionally) quantised probabilities from float32 [1 + O, H, W]."""
    labels = jnp.argmax(probs, axis=0)
    ids = jnp.arange(1, probs.shape[0])[:, None, None]
    mine = labels[None] == ids
    count = mine.sum(axis=(1, 2))
    total = jnp.where(mine, probs[1:], 0.0).sum(axis=(1, 2))
    return FrameOutput(
        labels=labels.astype(jnp.uint8),
        confidence=jnp.where(count > 0, total / jnp.maximum(count, 1), jnp.nan),
        probs=jnp.round(probs * 255).astype(jnp.uint8) if soft_output else None,
    )


def make_step(net: LCM, options: InferenceOptions, geometry: Geometry):
    """The pure step of one video (see the module docstring).

    step(variables, memory, frame, labels, given, t) -> (memory, FrameOutput), with frame uint8
    [H, W, 3] at the original size, labels uint8 [H, W] the given masks as object index + 1
    (0 elsewhere), given bool [O] the objects whose mask is given on this frame, t int32.
    """
    s, g, m = options.streams, geometry.groups, geometry.slots
    o = g * m
    hp, wp = geometry.padded
    original = (geometry.height, geometry.width)
    resized = geometry.inner != original

    def step(variables, memory: mem.Memory, frame, labels, given, t):
        x = frame.astype(jnp.float32) / 255.0
        if resized:
            x = jax.image.resize(x, (*geometry.inner, 3), "linear")
        x = padding.pad_hw(x, geometry.pads, channels_last=True)
        streams = jnp.stack([x, x[:, ::-1]]) if options.flip else x[None]
        frames = jnp.repeat(streams, g, axis=0)  # row s·G + g
        joined = mem.joined(memory)
        rows = lambda a: mem.per_row(a, s, m)  # noqa: E731

        # The query encoder runs once per stream; its features serve every object group.
        query = net.apply(variables, streams, method=LCM.encode_query)
        logits = net.apply(
            variables,
            jax.tree.map(lambda f: jnp.repeat(f, g, axis=0), query),  # row s·G + g
            mem.pool(memory, s),
            memory.prev,
            memory.reference,
            rows(joined),
            method=LCM.segment_encoded,
        )
        fg = logits[:, 1:].reshape(s, o, hp, wp)
        if options.flip:
            fg = fg.at[1].set(fg[1, :, :, ::-1])
        probs = merge_objects(padding.crop_hw(fg, geometry.pads, channels_last=False), joined)

        given_masks = (labels[None] == jnp.arange(1, o + 1)[:, None, None]) & given[:, None, None]
        given_masks = given_masks.astype(jnp.float32)  # [O, H, W] at the original size
        if resized:
            probs_out = jax.image.resize(probs, (1 + o, *original), "linear")
            given_inner = jax.image.resize(given_masks, (o, *geometry.inner), "linear")
        else:
            probs_out, given_inner = probs, given_masks
        out = frame_output(override(probs_out, given_masks, given), options.soft_output)

        inner_masks = padding.pad_hw(override(probs, given_inner, given)[1:], geometry.pads, False)
        if options.flip:
            inner_masks = jnp.stack([inner_masks, inner_masks[:, :, ::-1]])
        masks = inner_masks.reshape(s * g, m, hp, wp)
        valid = rows(joined | given)
        every_group = (masks * valid[:, :, None, None]).reshape(s, o, hp, wp).sum(axis=1)
        all_masks = jnp.repeat(every_group, g, axis=0)  # [S·G, Hp, Wp], row s·G + g
        encoded = net.apply(
            variables, frames, masks, valid, all_masks=all_masks, method=LCM.encode_memory
        )
        memory = mem.write(
            memory, encoded, masks, t, mem_every=options.mem_every, given=given, streams=s
        )
        return memory, out

    return step


@dataclasses.dataclass(frozen=True)
class FrameResult:
    """One frame's result on the host, in the video's object ids.

    labels uint8 [H, W] (object ids, 0 background); confidence {object id: float, NaN where the
    object has no pixel}; probs uint8 [1 + len(object_ids), H, W] (background, then the objects
    in `object_ids` order) or None.
    """

    index: int
    labels: np.ndarray
    confidence: dict[int, float]
    probs: np.ndarray | None
    object_ids: tuple[int, ...]


@dataclasses.dataclass(frozen=True)
class Video:
    """One video to segment: frames (a sequence of uint8 [H, W, 3], or an iterable of them,
    `num_frames` long) and the given masks {frame index: uint8 label map [H, W]} (pixel value =
    object id, 0 background, 255 void = background)."""

    frames: Iterable[np.ndarray]
    annotations: Mapping[int, np.ndarray]
    num_frames: int
    name: str = "video"


class Engine:
    """A model with its variables and options; compiles one step per geometry.

    The memory is not held here: `run_videos` keeps it in a local variable, passing it into
    and out of the jitted step.
    """

    def __init__(self, model_config: Mapping, variables: Mapping, options=InferenceOptions()):
        fields = dict(model_config)
        if options.dtype is not None:
            fields["dtype"] = options.dtype
        self.net = build_model(fields)
        self.variables = jax.device_put(
            {"params": variables["params"], "batch_stats": variables.get("batch_stats", {})}
        )
        self.options = options
        self._compiled: dict[Geometry, Any] = {}
        self._encoded_shapes: dict[tuple[int, int, int, int], Any] = {}

    def geometry(self, height: int, width: int, num_objects: int, capacity: int) -> Geometry:
        inner = padding.internal_size(height, width, self.options.shorter_side)
        groups = max(1, math.ceil(num_objects / self.net.max_objects))
        return Geometry(
            height=height,
            width=width,
            inner=inner,
            pads=padding.pad_amounts(*inner),
            groups=groups,
            slots=max(1, math.ceil(num_objects / groups)),
            capacity=capacity,
        )

    def capacity(self, num_frames: int, annotated: Iterable[int]) -> int:
        """Memory slots: max_memory_frames, or every frame that stays plus t − 1 (rounded up)."""
        if self.options.max_memory_frames is not None:
            return self.options.max_memory_frames
        kept = set(range(0, num_frames, self.options.mem_every)) | set(annotated)
        return -(-(len(kept) + 1) // CAPACITY_ROUNDING) * CAPACITY_ROUNDING

    def video_geometry(self, video: Video, size: tuple[int, int]) -> Geometry:
        """The geometry `run_videos([video])` compiles for `video` alone, whose frames are `size`
        (height, width). Videos of one such geometry run together with nothing padded (no
        object slot, memory slot or pixel that one of them lacks alone): each computes what it
        computes alone, except that XLA's kernels may sum in another order for another batch
        size (last-bit float differences)."""
        capacity = self.capacity(video.num_frames, video.annotations)
        return self.geometry(*size, len(_object_ids(video)), capacity)

    def init_memory(self, geometry: Geometry) -> mem.Memory:
        """An empty memory of one video for `geometry` (fresh buffers: the step donates them)."""
        s, m = self.options.streams, geometry.slots
        rows = s * geometry.groups
        hp, wp = geometry.padded
        key = (rows, m, hp, wp)
        if key not in self._encoded_shapes:
            shape = jax.ShapeDtypeStruct
            self._encoded_shapes[key] = jax.eval_shape(
                functools.partial(self.net.apply, method=LCM.encode_memory),
                self.variables,
                shape((rows, hp, wp, 3), jnp.float32),
                shape((rows, m, hp, wp), jnp.float32),
                shape((rows, m), jnp.bool_),
            )
        encoded = self._encoded_shapes[key]
        return mem.init_memory(encoded, streams=s, capacity=geometry.capacity, size=(hp, wp))

    def step_fn(self, geometry: Geometry):
        """The jitted step of `geometry`, vmapped over a leading video axis (t shared)."""
        if geometry not in self._compiled:
            step = make_step(self.net, self.options, geometry)
            self._compiled[geometry] = jax.jit(
                jax.vmap(step, in_axes=(None, 0, 0, 0, 0, None)), donate_argnums=(1,)
            )
        return self._compiled[geometry]

    def run(self, video: Video) -> Iterator[FrameResult]:
        """Segments one video frame by frame (see `run_videos`)."""
        for results in self.run_videos([video]):
            yield results[0]

    def run_videos(self, videos: Sequence[Video]) -> Iterator[list[FrameResult | None]]:
        """Segments videos of one frame size together (`jax.vmap` of the step), yielding per
        frame t a list with one FrameResult per video, None for a video shorter than t + 1
        frames (it is fed blank frames from then on, and their results are dropped). Frame
        t + 1 is dispatched before frame t's result is copied to the host. Videos of different
        object counts or lengths take the geometry of the most objects and the longest (their
        objects may then be grouped otherwise, their memory padded); videos of one
        `video_geometry` get the results of single runs, up to float rounding.

        Raises:
          ValueError: videos of different sizes, a frame or mask of the wrong shape or dtype
            (the message names the video and frame index).
        """
        if not videos:
            return
        num_frames = max(v.num_frames for v in videos)
        objects = [_object_ids(v) for v in videos]
        iters = [iter(v.frames) for v in videos]
        first = [_next_frame(it, v, 0) for it, v in zip(iters, videos, strict=True)]
        height, width = first[0].shape[:2]
        for f, v in zip(first, videos, strict=True):
            _check_size(f, v, 0, (height, width))
        capacity = max(self.capacity(v.num_frames, v.annotations) for v in videos)
        geometry = self.geometry(height, width, max(len(ids) for ids in objects), capacity)
        o = geometry.groups * geometry.slots
        step = self.step_fn(geometry)
        memory = jax.tree.map(
            lambda *x: jnp.stack(x), *[self.init_memory(geometry) for _ in videos]
        )
        blank = np.zeros_like(first[0])
        pending = None
        for t in range(num_frames):
            running = [t < v.num_frames for v in videos]
            frames = (
                first
                if t == 0
                else [
                    _next_frame(it, v, t) if on else blank
                    for it, v, on in zip(iters, videos, running, strict=True)
                ]
            )
            for f, v in zip(frames, videos, strict=True):
                _check_size(f, v, t, (height, width))
            inputs = [
                _frame_inputs(f, v, ids, t, o, (height, width))
                for f, v, ids in zip(frames, videos, objects, strict=True)
            ]
            labels, given = (np.stack(x) for x in zip(*inputs, strict=True))
            memory, out = step(self.variables, memory, np.stack(frames), labels, given, np.int32(t))
            if pending is not None:
                yield _running_only(to_host(*pending[:2], objects), pending[2])
            pending = (t, out, running)
        yield _running_only(to_host(*pending[:2], objects), pending[2])


def _running_only(results: list[FrameResult], running: list[bool]) -> list[FrameResult | None]:
    return [r if on else None for r, on in zip(results, running, strict=True)]


def _next_frame(frames: Iterator[np.ndarray], video: Video, t: int) -> np.ndarray:
    try:
        frame = next(frames)
    except StopIteration:
        raise ValueError(
            f"{video.name}: has fewer than num_frames={video.num_frames} frames"
        ) from None
    frame = np.asarray(frame)
    if frame.ndim != 3 or frame.shape[-1] != 3 or frame.dtype != np.uint8:
        raise ValueError(
            f"{video.name}: frame {t} must be uint8 [H, W, 3], got {frame.dtype} {frame.shape}"
        )
    return frame


def _check_size(frame: np.ndarray, video: Video, t: int, size: tuple[int, int]) -> None:
    if frame.shape[:2] != size:
        raise ValueError(
            f"{video.name}: frame {t} is {frame.shape[1]}x{frame.shape[0]}, but the frames "
            f"segmented with it are {size[1]}x{size[0]}"
        )


def _object_ids(video: Video) -> tuple[int, ...]:
    """Sorted object ids found in the video's given masks (void excluded)."""
    ids = set()
    for lab in video.annotations.values():
        ids.update(int(i) for i in np.unique(lab))
    return tuple(sorted(ids - {0, video_io.VOID_LABEL}))


def _frame_inputs(frame, video: Video, ids, t: int, o: int, size) -> tuple[np.ndarray, np.ndarray]:
    """labels uint8 [H, W] as object index + 1, and given bool [O], for frame t."""
    given = np.zeros(o, bool)
    lab = video.annotations.get(t)
    if lab is None:
        return np.zeros(size, np.uint8), given
    lab = np.asarray(lab)
    if lab.shape != frame.shape[:2]:
        raise ValueError(
            f"{video.name}: the mask of frame {t} is {lab.shape[1]}x{lab.shape[0]} but the frame "
            f"is {frame.shape[1]}x{frame.shape[0]}"
        )
    lut = np.zeros(256, np.uint8)
    lut[list(ids)] = np.arange(1, len(ids) + 1)
    index = lut[lab]
    present = np.unique(index)
    given[present[present > 0] - 1] = True
    return index, given


def to_host(t: int, out: FrameOutput, objects) -> list[FrameResult]:
    labels = np.asarray(out.labels)
    confidence = np.asarray(out.confidence)
    probs = None if out.probs is None else np.asarray(out.probs)
    results = []
    for v, ids in enumerate(objects):
        to_id = np.zeros(256, np.uint8)
        to_id[1 : len(ids) + 1] = ids
        results.append(
            FrameResult(
                index=t,
                labels=to_id[labels[v]],
                confidence={i: float(confidence[v, k]) for k, i in enumerate(ids)},
                probs=None if probs is None else probs[v, : len(ids) + 1],
                object_ids=ids,
            )
        )
    return results
