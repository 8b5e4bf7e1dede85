"""Videos to segment, read from dataset folders, frame folders or MP4 files, with checks.

Every problem is a `video_io.DatasetError` (a ValueError) that names the file: a missing or
unreadable frame, a video (MP4/GIF) that cannot be decoded, frames of different sizes, a missing
first-frame mask, a mask that is RGB or whose size differs from the frames, a mask with no frame.

A given mask with no object in it (only background, or only void 255) is not an error: the
video is segmented (every frame background), and an `EmptyMaskWarning` names the file.

Each reader returns a `Video` (engine.py) and the frame names (file stems) used to name the
outputs. Frames of folders are read lazily (a few ahead, in a thread) while the video is
segmented, so a bad frame fails its video mid-way (the video is then incomplete, and a rerun
redoes it).
"""

from __future__ import annotations

import collections
import concurrent.futures
import os
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path

import imageio.v3 as iio
import numpy as np

from lcm_jax.inference.engine import Video
from lcm_jax.inference.splits import VideoFiles
from lcm_jax.input_pipeline import video_io

FRAME_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
VIDEO_SUFFIXES = (".mp4", ".mov", ".avi", ".mkv", ".webm", ".gif")
READ_AHEAD = 4  # frames decoded ahead of the engine


class EmptyMaskWarning(UserWarning):
    """A given mask holds no object: the video is segmented as all background."""


def _frames(paths: Sequence[Path], first: np.ndarray) -> Iterator[np.ndarray]:
    """Frames of `paths` (the first already read), decoded READ_AHEAD frames ahead in a thread;
    each must have the first frame's size."""
    yield first
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        ahead: collections.deque = collections.deque()
        for path in paths[1:]:
            ahead.append((path, pool.submit(video_io.read_frame, path)))
            if len(ahead) > READ_AHEAD:
                yield _same_size(*ahead.popleft(), first, paths[0])
        while ahead:
            yield _same_size(*ahead.popleft(), first, paths[0])


def _same_size(path: Path, frame, first: np.ndarray, first_path: Path) -> np.ndarray:
    """The decoded frame (a future), which must have the size of the first frame."""
    frame = frame.result()
    if frame.shape != first.shape:
        raise video_io.DatasetError(
            f"frame {os.fspath(path)!r} is {frame.shape[1]}x{frame.shape[0]} but the first "
            f"frame {os.fspath(first_path)!r} is {first.shape[1]}x{first.shape[0]}"
        )
    return frame


def read_mask(
    path: str | os.PathLike, frame_shape: tuple[int, ...], single_object: bool = False
) -> np.ndarray:
    """A given mask: a label map uint8 [H, W] that must match the frames' [H, W]; warns
    (EmptyMaskWarning) when it holds no object. With `single_object` (DAVIS 2016), every
    nonzero pixel is object 1."""
    if not Path(path).is_file():
        raise video_io.DatasetError(f"mask {os.fspath(path)!r} does not exist")
    labels = video_io.read_label_png(path)
    if single_object:
        labels = (labels != 0).astype(np.uint8)
    if labels.shape != tuple(frame_shape[:2]):
        raise video_io.DatasetError(
            f"mask {os.fspath(path)!r} is {labels.shape[1]}x{labels.shape[0]} but the frames are "
            f"{frame_shape[1]}x{frame_shape[0]}"
        )
    if not np.any((labels != 0) & (labels != video_io.VOID_LABEL)):
        warnings.warn(
            f"mask {os.fspath(path)!r} holds no object (only background or void 255): every "
            "frame will be background",
            EmptyMaskWarning,
            stacklevel=2,
        )
    return labels


def _annotations(
    mask_paths: Sequence[Path], frame_paths: Sequence[Path], first: np.ndarray
) -> dict[int, np.ndarray]:
    """{frame index: label map} of masks named like their frames (same stem)."""
    index = {p.stem: t for t, p in enumerate(frame_paths)}
    out = {}
    for path in mask_paths:
        if path.stem not in index:
            raise video_io.DatasetError(f"mask {os.fspath(path)!r} has no frame of the same name")
        out[index[path.stem]] = read_mask(path, first.shape)
    return out


def davis_video(listed: VideoFiles, single_object: bool = False) -> tuple[Video, list[str]]:
    """A DAVIS sequence: all frames, and only the first frame's mask given (semi-supervised);
    with `single_object` (DAVIS 2016) its nonzero pixels are the one object."""
    frames = listed.frames
    if not listed.annotations or listed.annotations[0].stem != frames[0].stem:
        path = listed.annotations_dir / f"{frames[0].stem}.png"
        raise video_io.DatasetError(f"first-frame mask {os.fspath(path)!r} is missing")
    first = video_io.read_frame(frames[0])
    annotations = {0: read_mask(listed.annotations[0], first.shape, single_object)}
    return Video(_frames(frames, first), annotations, len(frames), listed.name), listed.frame_names


def youtube_video(listed: VideoFiles) -> tuple[Video, list[str]]:
    """A YouTube-VOS video: all its frames, every mask of its Annotations folder given (objects
    join on the frame of their first mask)."""
    if not listed.annotations:
        raise video_io.DatasetError(f"no mask in {os.fspath(listed.annotations_dir)!r}")
    first = video_io.read_frame(listed.frames[0])
    annotations = _annotations(listed.annotations, listed.frames, first)
    video = Video(_frames(listed.frames, first), annotations, len(listed.frames), listed.name)
    return video, listed.frame_names


def user_video(
    frames: str | os.PathLike, mask: str | os.PathLike, mask_frame: int = 0
) -> tuple[Video, list[str]]:
    """A folder of frames (sorted by name) or a video file, with the mask of frame `mask_frame`
    (the first frame by default).

    A video file is decoded whole (its frames are named 00000, 00001, ...).
    """
    frames = Path(frames)
    if frames.is_dir():
        paths = sorted(p for p in frames.iterdir() if p.suffix.lower() in FRAME_SUFFIXES)
        if not paths:
            raise video_io.DatasetError(
                f"frame folder {os.fspath(frames)!r} has no image ({', '.join(FRAME_SUFFIXES)})"
            )
        first = video_io.read_frame(paths[0])
        names = [p.stem for p in paths]
        stream = _frames(paths, first)
    elif frames.suffix.lower() in VIDEO_SUFFIXES:
        decoded = read_video_file(frames)
        first, names, stream = decoded[0], [f"{t:05d}" for t in range(len(decoded))], decoded
    elif frames.exists():
        raise video_io.DatasetError(
            f"{os.fspath(frames)!r} is neither a folder of frames nor a video "
            f"({', '.join(VIDEO_SUFFIXES)})"
        )
    else:
        raise video_io.DatasetError(f"frames {os.fspath(frames)!r} do not exist")
    if not 0 <= mask_frame < len(names):
        raise video_io.DatasetError(
            f"the mask's frame {mask_frame} is not a frame of {os.fspath(frames)!r} "
            f"({len(names)} frames, 0 to {len(names) - 1})"
        )
    annotations = {mask_frame: read_mask(mask, first.shape)}
    return Video(stream, annotations, len(names), frames.stem), names


def read_video_file(path: str | os.PathLike) -> list[np.ndarray]:
    """All frames of a video file as uint8 RGB [H, W, 3]."""
    if not Path(path).is_file():
        raise video_io.DatasetError(f"video {os.fspath(path)!r} does not exist")
    video_io.spawn_ffmpeg_without_fork()
    try:
        frames = iio.imread(path, index=None)
    except (OSError, ValueError, RuntimeError) as e:
        reason = [line for line in str(e).splitlines() if line.strip()][-1:]  # ffmpeg's last word
        raise video_io.DatasetError(
            f"cannot decode video {os.fspath(path)!r}: {' '.join(reason)}"
        ) from e
    if frames.ndim == 3:  # greyscale frames
        frames = np.repeat(frames[..., None], 3, axis=-1)
    if frames.ndim != 4 or frames.shape[0] == 0:
        raise video_io.DatasetError(f"video {os.fspath(path)!r} has no frame")
    return list(np.ascontiguousarray(frames[..., :3], dtype=np.uint8))
