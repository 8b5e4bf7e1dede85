"""Overlays: the predicted objects drawn over the frames, as images and as a video file.

    colours = {}
    with overlay_video("out/overlay.mp4", fps=24) as append:   # or .gif
        for frame, labels in zip(frames, predictions):  # uint8 [H, W, 3], label maps [H, W]
            colours = pick_colours(frame, labels, colours)      # one colour per object per video
            append(overlay(frame, labels, colours))

Each object gets an opaque outline (its pixels next to another label) and a translucent fill
(alpha ALPHA) in a colour of CANDIDATES picked to stand out from the object: the candidate
farthest (RGB distance) from the mean colour of the object's pixels where it first appears, not
already taken by another object of the video. A fixed palette would hide the prediction
wherever an object has the palette's colour (DAVIS's object 1 and a red object are both red).

The video is written to a temporary file next to its path and renamed into place when the block
ends normally; on an exception (Ctrl-C, SIGTERM, a failed frame) nothing is left behind.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator, Mapping

import imageio.v2 as imageio
import numpy as np

from lcm_jax import files
from lcm_jax.input_pipeline import video_io

SUFFIXES = (".gif", ".mp4")  # the overlay videos `overlay_video` writes
ALPHA = 0.5  # weight of the object's colour in its fill
OUTLINE = 1  # outline width, pixels
# Saturated and light colours, in order of preference (ties go to the first): far from the
# greys, skin and foliage of most footage, and from each other.
CANDIDATES = np.array(
    [
        [255, 255, 0],  # yellow
        [0, 255, 255],  # cyan
        [255, 0, 255],  # magenta
        [0, 255, 0],  # lime
        [255, 255, 255],  # white
        [255, 128, 0],  # orange
        [0, 96, 255],  # azure
        [255, 0, 0],  # red
    ],
    np.uint8,
)


def object_ids(labels: np.ndarray) -> list[int]:
    """The objects of a label map: its ids other than background 0 and void 255."""
    return [int(k) for k in np.unique(labels) if k not in (0, video_io.VOID_LABEL)]


def pick_colours(
    frame: np.ndarray, labels: np.ndarray, keep: Mapping[int, np.ndarray] | None = None
) -> dict[int, np.ndarray]:
    """{object id: uint8 [3]}: the colours of `keep`, plus one for each object of labels uint8
    [H, W] that `keep` lacks, in id order: the candidate farthest from the mean colour of its
    pixels in frame uint8 [H, W, 3], among those no other object has (any, once all are taken)."""
    colours = dict(keep or {})
    for k in object_ids(labels):
        if k in colours:
            continue
        mean = frame[labels == k].astype(np.float64).mean(axis=0)
        taken = {tuple(c) for c in colours.values()}
        free = [c for c in CANDIDATES if tuple(c) not in taken] or list(CANDIDATES)
        distance = [np.linalg.norm(c.astype(np.float64) - mean) for c in free]
        colours[k] = free[int(np.argmax(distance))]
    return colours


def outline(mask: np.ndarray, width: int = OUTLINE) -> np.ndarray:
    """bool [H, W]: the pixels of mask bool [H, W] within `width` 4-neighbour steps of a pixel
    outside it; the frame's edge is not a border (an object cut by it has no outline there)."""
    inside = mask
    for _ in range(width):
        p = np.pad(inside, 1, mode="edge")
        inside = inside & p[:-2, 1:-1] & p[2:, 1:-1] & p[1:-1, :-2] & p[1:-1, 2:]
    return mask & ~inside


def overlay(
    frame: np.ndarray,
    labels: np.ndarray,
    colours: Mapping[int, np.ndarray] | None = None,
    *,
    alpha: float = ALPHA,
    width: int = OUTLINE,
) -> np.ndarray:
    """uint8 [H, W, 3]: frame uint8 [H, W, 3] with each object of labels uint8 [H, W] drawn in
    its colour (`colours`, completed by `pick_colours`): its outline opaque, its other pixels
    round((1 - alpha)·frame + alpha·colour); background and void pixels unchanged."""
    colours = pick_colours(frame, labels, colours)
    out = frame.copy()
    for k in object_ids(labels):
        mask = labels == k
        colour = np.asarray(colours[k], np.float64)
        out[mask] = np.round((1 - alpha) * frame[mask] + alpha * colour).astype(np.uint8)
        out[outline(mask, width)] = colours[k]
    return out


@contextlib.contextmanager
def overlay_video(path: str | os.PathLike, fps: float) -> Iterator[Callable[[np.ndarray], None]]:
    """Yields `append(frame uint8 [H, W, 3])`; the file (.gif by Pillow, .mp4 by ffmpeg: SUFFIXES;
    `fps` > 0) appears at `path` when the block ends without an exception."""
    with files.atomic_path(path) as tmp:
        if tmp.suffix.lower() == ".gif":
            writer = imageio.get_writer(tmp, mode="I", duration=1000 / fps, loop=0)
        else:
            video_io.spawn_ffmpeg_without_fork()
            writer = imageio.get_writer(tmp, fps=fps, macro_block_size=2)
        try:
            yield writer.append_data
        except BaseException:
            with contextlib.suppress(Exception):  # ffmpeg may have died with the process
                writer.close()
            raise
        writer.close()
