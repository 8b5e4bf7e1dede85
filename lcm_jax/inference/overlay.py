"""Overlays: the predicted objects drawn over the frames, as images and as a video file.

    with overlay_video("out/overlay.mp4", fps=24) as append:   # or .gif
        for frame, labels in ...:
            append(overlay(frame, labels))

The video is written to a temporary file next to its path and renamed into place when the block
ends normally; on an exception (Ctrl-C, SIGTERM, a failed frame) nothing is left behind.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator

import imageio.v2 as imageio
import numpy as np

from lcm_jax import files
from lcm_jax.input_pipeline import video_io

ALPHA = 0.5  # weight of the object colour


def overlay(frame: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """uint8 [H, W, 3]: frame uint8 [H, W, 3] with the objects of labels uint8 [H, W] blended
    with their DAVIS palette colour (alpha 0.5); background pixels unchanged."""
    colours = video_io.DAVIS_PALETTE[labels].astype(np.float32)
    blend = (1 - ALPHA) * frame + ALPHA * colours
    return np.where(labels[..., None] > 0, np.round(blend), frame).astype(np.uint8)


@contextlib.contextmanager
def overlay_video(path: str | os.PathLike, fps: float) -> Iterator[Callable[[np.ndarray], None]]:
    """Yields `append(frame uint8 [H, W, 3])`; the file (.gif by Pillow, else by ffmpeg with the
    container of its suffix) appears at `path` when the block ends without an exception."""
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
