"""An interactive video predictor: masks on any frame, propagation both ways, corrections.

    predictor = Predictor.from_checkpoint("workdir")
    state = predictor.init_state("frames/")           # a frame folder, a video file or an array
    predictor.add_mask(state, frame_index=3, object_id=1, mask=mask)    # bool [H, W]
    for t, masks in predictor.propagate(state):               # frames 3, 4, ... {1: bool [H, W]}
        ...
    for t, masks in predictor.propagate(state, reverse=True):  # frames 3, 2, 1, 0
        ...
    predictor.add_mask(state, 5, 1, corrected)           # a correction where object 1 drifted
    for t, masks in predictor.propagate(state, start=5):      # frames 5, 6, ... recomputed
        ...

A propagation is the engine's pass (`Engine.run`, the same jitted step) over the frames in the
direction's order: forward 0, 1, ..., N − 1, reverse N − 1, ..., 0, the memory schedule counting
positions in that order (so a reverse pass is a forward pass over the reversed video). Every mask
given so far takes part as a given mask at its frame, from the object's first mask with pixels in
the pass's order on: the object joins there (the reference frame of ORM), as in the engine; an
empty mask after it says the object is absent on that frame, one before it says nothing new, and
an object whose masks are all empty is never segmented. `propagate(start=k)` yields the frames
from k on, in the direction, and records them in the state (`masks(state, t)`); the frames
before k are not changed. Its memory at k is the pass's memory after the frames before k: the
state keeps the memory where the last pass of each direction stopped and goes on from there when
nothing given before that point changed; otherwise it runs the pass again from the direction's
first annotated frame, without yielding, up to k (frames earlier in the pass hold no object).

Both directions yield their start frame, so a forward and a reverse pass from an annotated frame
give every frame one result (the start frame's from both, the given mask).

Memory stays bounded: one memory pytree per direction (its capacity as the engine's options say,
the same for both directions, so that they share one compiled step) and one uint8 label map per
frame. Frame folders are read per frame; a video file is decoded once and kept; an array is used
as it is. Object slots are a multiple of the model's `max_objects`, so adding objects up to that
number does not compile the step again.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import jax
import numpy as np

from lcm_jax import checkpoints
from lcm_jax.inference import inputs
from lcm_jax.inference.engine import Engine, FrameResult, InferenceOptions, to_host
from lcm_jax.input_pipeline import video_io


class FrameSource(Sequence):
    """Random access to a video's frames (uint8 [H, W, 3]): a folder of images (read per frame),
    a video file (decoded once) or an array [T, H, W, 3]."""

    def __init__(self, video: str | os.PathLike | np.ndarray):
        if isinstance(video, np.ndarray):
            if video.ndim != 4 or video.shape[-1] != 3 or video.dtype != np.uint8 or not len(video):
                raise ValueError(
                    f"a video array must be uint8 [T, H, W, 3] with T >= 1, got {video.dtype} "
                    f"{video.shape}"
                )
            self._frames, self._paths = video, None
        elif Path(video).is_dir():
            folder = Path(video)
            self._paths = sorted(
                p for p in folder.iterdir() if p.suffix.lower() in inputs.FRAME_SUFFIXES
            )
            if not self._paths:
                raise video_io.DatasetError(f"frame folder {os.fspath(folder)!r} has no image")
            self._frames = None
        else:
            self._frames, self._paths = np.stack(inputs.read_video_file(video)), None
        first = self[0]
        self.height, self.width = first.shape[:2]

    def __len__(self) -> int:
        return len(self._paths) if self._paths is not None else len(self._frames)

    def __getitem__(self, t: int) -> np.ndarray:
        if self._paths is None:
            return self._frames[t]
        frame = video_io.read_frame(self._paths[t])
        if t and frame.shape[:2] != (self.height, self.width):
            raise video_io.DatasetError(
                f"frame {os.fspath(self._paths[t])!r} is {frame.shape[1]}x{frame.shape[0]}, "
                f"the first frame {self.width}x{self.height}"
            )
        return frame


@dataclasses.dataclass
class _Pass:
    """Where the last pass of one direction stopped: the memory before `position`."""

    position: int
    memory: Any
    key: tuple  # (object ids, geometry) the memory was built for


@dataclasses.dataclass
class PredictorState:
    """One video's predictions: the frames, the given masks, the results, the pass memories.

    given: {frame index: {object id: bool [H, W]}}; results: {frame index: the engine's
    FrameResult (labels uint8 [H, W] of object ids, confidences)}; passes: {reverse: _Pass}, the
    device memory of each direction.
    """

    frames: FrameSource
    given: dict[int, dict[int, np.ndarray]] = dataclasses.field(default_factory=dict)
    results: dict[int, FrameResult] = dataclasses.field(default_factory=dict)
    passes: dict[bool, _Pass] = dataclasses.field(default_factory=dict)

    @property
    def num_frames(self) -> int:
        return len(self.frames)

    @property
    def object_ids(self) -> tuple[int, ...]:
        return tuple(sorted({i for masks in self.given.values() for i in masks}))


class Predictor:
    """Propagates masks through a video with LCM, interactively (see the module docstring)."""

    def __init__(
        self, model_config: Mapping, variables: Mapping, options: InferenceOptions | None = None
    ):
        self.engine = Engine(model_config, variables, options or InferenceOptions())

    @classmethod
    def from_checkpoint(cls, path: str | os.PathLike, **options) -> Predictor:
        """A predictor of the checkpoint at `path` (its stored model config) with
        InferenceOptions(**options)."""
        config, variables = checkpoints.load_model(path)
        return cls(config, variables, InferenceOptions(**options))

    def init_state(self, video: str | os.PathLike | np.ndarray) -> PredictorState:
        """A state for `video`: a folder of frames, a video file or uint8 [T, H, W, 3]."""
        return PredictorState(FrameSource(video))

    # -- prompts ------------------------------------------------------------------------------

    def add_mask(self, state: PredictorState, frame_index: int, object_id: int, mask) -> None:
        """Gives object `object_id`'s mask (bool [H, W], or numbers 0 and 1, or 0 and 255) on
        frame `frame_index`, replacing an earlier one for that object and frame. Any other
        values (a label map, probabilities, NaN) are an error, not thresholded."""
        self._check_frame(state, frame_index)
        if (
            not isinstance(object_id, int | np.integer)
            or isinstance(object_id, bool)
            or not 1 <= object_id < 255
        ):
            raise ValueError(f"object_id must be an integer in [1, 254], got {object_id!r}")
        mask = np.asarray(mask)
        size = (state.frames.height, state.frames.width)
        what = f"the mask of object {object_id} on frame {frame_index}"
        if mask.shape != size:
            raise ValueError(
                f"{what} is {mask.dtype} {list(mask.shape)}; the frames are {size[1]}x{size[0]} "
                f"(a mask is [{size[0]}, {size[1]}])"
            )
        if mask.dtype != bool:
            values = np.unique(mask).tolist() if mask.dtype.kind in "iuf" else None
            if values is None or not (set(values) <= {0, 1} or set(values) <= {0, 255}):
                holding = (
                    f"{mask.dtype}"
                    if values is None
                    else f"{mask.dtype} holding "
                    + (", ".join(map(str, values[:6])) + (", ..." if len(values) > 6 else ""))
                )
                raise ValueError(
                    f"{what} must be bool or hold only 0 and 1 (or 0 and 255); it is {holding} "
                    f"(a label map: pass labels == {object_id}; probabilities: probs > 0.5)"
                )
        new_object = object_id not in state.object_ids
        state.given.setdefault(frame_index, {})[object_id] = mask.astype(bool)
        self._forget(state, frame_index, everything=new_object)

    def remove_object(self, state: PredictorState, object_id: int) -> None:
        """Forgets object `object_id`: its masks, its results and the pass memories."""
        if object_id not in state.object_ids:
            raise ValueError(f"no object {object_id} in this state (objects {state.object_ids})")
        for frame in list(state.given):
            state.given[frame].pop(object_id, None)
            if not state.given[frame]:
                del state.given[frame]
        state.results = {t: _without(r, object_id) for t, r in state.results.items()}
        state.passes.clear()

    def reset(self, state: PredictorState) -> None:
        """Forgets every mask, result and pass memory (the frames stay)."""
        state.given.clear()
        state.results.clear()
        state.passes.clear()

    def masks(self, state: PredictorState, frame_index: int) -> dict[int, np.ndarray]:
        """{object id: bool [H, W]} of the latest result on `frame_index` ({} if none)."""
        self._check_frame(state, frame_index)
        result = state.results.get(frame_index)
        if result is None:
            return {}
        return {i: result.labels == i for i in result.object_ids}

    # -- propagation --------------------------------------------------------------------------

    def propagate(
        self,
        state: PredictorState,
        start: int | None = None,
        reverse: bool = False,
        max_frames: int | None = None,
    ) -> Iterator[tuple[int, dict[int, np.ndarray]]]:
        """Yields (frame index, {object id: bool [H, W]}) from frame `start` (default: the
        first annotated frame in the direction) to the end of the video in the direction, at
        most `max_frames` frames; each result is also recorded in the state."""
        if not state.given:
            raise ValueError("no mask given yet: call add_mask on some frame first")
        n = state.num_frames
        position = (lambda t: n - 1 - t) if reverse else (lambda t: t)  # frame <-> position
        annotated = sorted(position(t) for t in state.given)
        if start is None:
            start = position(annotated[0])
        self._check_frame(state, start)
        if max_frames is not None and max_frames < 1:
            raise ValueError(f"max_frames must be >= 1 or None, got {max_frames}")
        first, stop = (
            position(start),
            n if max_frames is None else min(n, position(start) + max_frames),
        )

        ids = state.object_ids
        engine = self.engine
        slots = engine.net.max_objects
        # The memory of either direction (a frame with a given mask is kept; it may be a
        # multiple of mem_every in one direction and not in the other): one step for both.
        capacity = max(
            engine.capacity(n, state.given), engine.capacity(n, [n - 1 - t for t in state.given])
        )
        geometry = engine.geometry(
            state.frames.height,
            state.frames.width,
            math.ceil(len(ids) / slots) * slots,  # full groups: no recompilation per object
            capacity,
        )
        key = (ids, geometry)
        o = geometry.groups * geometry.slots
        step = engine.step_fn(geometry)
        size = (state.frames.height, state.frames.width)
        joins = {}  # object id -> its first position with pixels in this pass
        for t, masks in state.given.items():
            for i, mask in masks.items():
                if mask.any():
                    joins[i] = min(joins.get(i, n), position(t))
        inputs_at = {
            position(t): _given_inputs(
                {i: m for i, m in masks.items() if joins.get(i, n) <= position(t)}, ids, o, size
            )
            for t, masks in state.given.items()
        }
        nothing = _given_inputs({}, ids, o, size)

        cached = state.passes.pop(reverse, None)
        if cached is not None and cached.key == key and cached.position <= first:
            p, memory = cached.position, cached.memory
        else:
            p, memory = annotated[0], jax.tree.map(lambda x: x[None], engine.init_memory(geometry))
        p = min(p, first)
        pending = None
        try:
            while p < stop:
                labels, given = inputs_at.get(p, nothing)
                frame = state.frames[position(p)][None]
                memory, out = step(engine.variables, memory, frame, labels, given, np.int32(p))
                if pending is not None:
                    yield self._record(state, *pending, ids, position)
                    pending = None
                if p >= first:
                    pending = (p, out)
                p += 1
            if pending is not None:
                yield self._record(state, *pending, ids, position)
        finally:
            state.passes[reverse] = _Pass(position=p, memory=memory, key=key)

    # -- helpers ------------------------------------------------------------------------------

    @staticmethod
    def _record(state, p, out, ids, position) -> tuple[int, dict[int, np.ndarray]]:
        (result,) = to_host(p, out, [ids])
        t = position(p)
        state.results[t] = dataclasses.replace(result, index=t)
        return t, {i: result.labels == i for i in ids}

    @staticmethod
    def _check_frame(state: PredictorState, frame_index: int) -> None:
        n = len(state.frames)
        if (
            not isinstance(frame_index, int | np.integer)
            or isinstance(frame_index, bool)
            or not 0 <= frame_index < n
        ):
            raise IndexError(
                f"frame index {frame_index!r} is out of range: the video has {n} frames "
                f"(0 to {n - 1})"
            )

    @staticmethod
    def _forget(state: PredictorState, frame_index: int, everything: bool) -> None:
        """Drops the pass memories that a new mask on `frame_index` makes stale: all of them for
        a new object, else those that went past the frame."""
        n = state.num_frames
        for reverse, done in list(state.passes.items()):
            position = n - 1 - frame_index if reverse else frame_index
            if everything or done.position > position:
                del state.passes[reverse]


def _without(result: FrameResult, object_id: int) -> FrameResult:
    """`result` as if object `object_id` had never been there (its pixels background)."""
    k = result.object_ids.index(object_id)
    return dataclasses.replace(
        result,
        labels=np.where(result.labels == object_id, 0, result.labels).astype(np.uint8),
        confidence={i: c for i, c in result.confidence.items() if i != object_id},
        probs=None if result.probs is None else np.delete(result.probs, 1 + k, axis=0),
        object_ids=tuple(i for i in result.object_ids if i != object_id),
    )


def _given_inputs(
    masks: Mapping[int, np.ndarray], ids: Sequence[int], slots: int, size: tuple[int, int]
):
    """The step's (labels uint8 [1, H, W] as object index + 1, given bool [1, O]) for the masks
    {object id: bool [H, W]} of one frame (H, W = size). Every object with a mask is given, an
    empty mask too (the object is then absent there); where masks overlap, the higher object id
    wins."""
    labels = np.zeros((1, *size), np.uint8)
    given = np.zeros((1, slots), bool)
    for i in sorted(masks):
        index = ids.index(i)
        labels[0][masks[i]] = index + 1
        given[0, index] = True
    return labels, given
