"""Your own video (a folder of frames or a video file) segmented from one frame's mask.

    segmenter = Segmenter.from_checkpoint("workdir")
    result = segment_video(segmenter, "my_video.mp4", "first.png", "out/my_video")
    result = segment_video(segmenter, "my_video.mp4", "frame3.png", "out/v", mask_frame=3)

The mask of the first frame: the engine's pass, frame by frame. The mask of a later frame K:
the interactive predictor (predictor.py) propagates it forwards from K to the end and backwards
from K to the first frame, then the frames are written in order.

Writes `<out>/<frame>.png` (DAVIS palette), `<out>/confidence.csv`, the `.npz` probabilities
with `soft_output`, and an overlay video (`<out>/overlay.mp4` by default, .gif also works), each
atomically, after `<out>/manifest.json` (manifest.py; the data entry records the frames' path
and `frames_sha256`, the mask's path and SHA-256, the overlay's name and frame rate: a rerun
after the frames or the mask changed stops, as with other data).

A video's memory at frame t depends on every frame before it, so an interrupted video is
segmented again from its first frame; a finished one, asked again with the same manifest, is
left as it is.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import os
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
import tqdm

from lcm_jax import files
from lcm_jax.inference import inputs, manifest, outputs
from lcm_jax.inference.engine import Video
from lcm_jax.inference.overlay import SUFFIXES, overlay, overlay_video, pick_colours
from lcm_jax.inference.segmenter import Segmenter
from lcm_jax.input_pipeline import video_io


@dataclasses.dataclass(frozen=True)
class Segmentation:
    """failures: [(video name, message)] when the video failed; already_done: the folder held
    the finished results of the same manifest; masks: the PNGs of the folder; overlay: its path."""

    failures: tuple[tuple[str, str], ...]
    already_done: bool
    masks: int
    overlay: Path


def _recording(frames: Iterable[np.ndarray], store: dict) -> Iterator[np.ndarray]:
    """Passes frames through, remembering each until its result has been drawn."""
    for t, frame in enumerate(frames):
        store[t] = frame
        yield frame


def check_overlay(name: str, fps: float) -> None:
    """Raises ValueError unless `name` is a file name for the overlay in the output folder (no
    folder part; .gif or .mp4, so never the name of a mask, .npz, CSV or the manifest; not a
    temporary's) and `fps` a frame rate > 0."""
    if Path(name).name != name:
        raise ValueError(
            f"overlay {name!r} must be a file name: it is written in the output folder"
        )
    if Path(name).suffix.lower() not in SUFFIXES:
        raise ValueError(f"overlay {name!r} must end in {' or '.join(SUFFIXES)}")
    if files.is_temporary(name):
        raise ValueError(f"overlay {name!r} is named as temporary files are, which runs remove")
    if not (math.isfinite(fps) and fps > 0):
        raise ValueError(f"fps (the overlay's frame rate) must be > 0, got {fps}")


def frames_sha256(frames: str | os.PathLike) -> str:
    """What the manifest records of the frames' content: the SHA-256 of a video file's bytes,
    or of a folder's frame files' names, sizes and modification times (an edited frame changes
    them; a copy of the folder that does not keep the times reads as other frames)."""
    frames = Path(frames)
    if not frames.is_dir():
        with open(frames, "rb") as f:
            return hashlib.file_digest(f, "sha256").hexdigest()
    digest = hashlib.sha256()
    for path in sorted(p for p in frames.iterdir() if p.suffix.lower() in inputs.FRAME_SUFFIXES):
        stat = path.stat()
        digest.update(f"{path.name}|{stat.st_size}|{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def segment_video(
    segmenter: Segmenter,
    frames: str | os.PathLike,
    mask: str | os.PathLike,
    out: str | os.PathLike,
    *,
    overlay_name: str = "overlay.mp4",
    fps: float = 24.0,
    overwrite: bool = False,
    progress: bool = True,
    mask_frame: int = 0,
) -> Segmentation:
    """Segments `frames` from the first-frame `mask` into `out` (see the module docstring).

    Raises (before anything is written): ValueError for an overlay name or frame rate that
    `check_overlay` refuses, video_io.DatasetError for frames or a mask that cannot be used,
    manifest.ManifestError for a folder of another run's results (without `overwrite`). A
    failure while segmenting is returned in `failures` instead.
    """
    check_overlay(overlay_name, fps)
    out = Path(out)
    video, names = inputs.user_video(frames, mask, mask_frame)
    data = {
        "frames": os.path.abspath(frames),
        "frames_sha256": frames_sha256(frames),
        "mask": os.path.abspath(mask),
        "mask_frame": mask_frame,
        "mask_sha256": hashlib.sha256(Path(mask).read_bytes()).hexdigest(),
        "overlay": overlay_name,
        "fps": fps,
    }
    manifest.prepare(out, manifest.build("segment", segmenter.identity(), data), overwrite)
    layout = outputs.Layout.folder(out, segmenter.options.soft_output)
    overlay_path = out / overlay_name
    if layout.complete(names) and overlay_path.is_file():
        return Segmentation((), True, len(names), overlay_path)

    seen: dict[int, np.ndarray] = {}
    labels = video.annotations[mask_frame]
    both_ways = mask_frame > 0 and np.any((labels != 0) & (labels != video_io.VOID_LABEL))
    try:
        with (
            tqdm.tqdm(total=len(names), unit="frame", desc=video.name, disable=not progress) as bar,
            overlay_video(overlay_path, fps) as append,
        ):
            if both_ways:
                frames_of, results = _both_ways(segmenter, frames, video, labels, mask_frame, bar)
            else:
                frames_of = seen.pop
                video = Video(
                    _recording(video.frames, seen), video.annotations, video.num_frames, video.name
                )
                results = segmenter.engine.run(video)

            colours = {}  # each object's, picked where it is first drawn: steady over the video

            def draw(result):
                frame = frames_of(result.index)
                colours.update(pick_colours(frame, result.labels, colours))
                append(overlay(frame, result.labels, colours))
                if not both_ways:
                    bar.update(1)

            outputs.write_video(results, names, layout, on_frame=draw)
    except Exception as e:  # noqa: BLE001 - reported as the video's failure, like evaluate's
        return Segmentation(((video.name, f"{type(e).__name__}: {e}"),), False, 0, overlay_path)
    return Segmentation((), False, len(names), overlay_path)


def _both_ways(segmenter: Segmenter, frames, video: Video, labels, k: int, bar):
    """(frame index -> frame, FrameResults in frame order) of the predictor propagating the
    mask of frame k forwards and backwards."""
    from lcm_jax.inference.predictor import Predictor

    predictor = Predictor(segmenter.model_config, segmenter.variables, segmenter.options)
    # A video file is already decoded (a list); a folder is read again frame by frame.
    source = np.stack(video.frames) if isinstance(video.frames, list) else frames
    state = predictor.init_state(source)
    for i in sorted(set(np.unique(labels).tolist()) - {0, video_io.VOID_LABEL}):
        predictor.add_mask(state, k, i, labels == i)
    for reverse in (False, True):
        for t, _ in predictor.propagate(state, reverse=reverse):
            if not reverse or t != k:
                bar.update(1)
    return (lambda t: state.frames[t]), [state.results[t] for t in range(state.num_frames)]
