"""Segment your own video from a mask of its first frame.

    python -m lcm_jax.segment --frames my_video.mp4 --mask first.png \\
        --checkpoint workdir --out out/my_video [--model paper] [--overlay overlay.gif]

--frames is a folder of images (sorted by name) or a video file; --mask an indexed or greyscale
PNG of the first frame (pixel value = object id, 0 background), the frames' size. Writes
`<out>/<frame>.png` (DAVIS palette), `<out>/confidence.csv`, and an overlay video
(`<out>/overlay.mp4` by default; .gif also works), all atomically. Exit code 1 on bad input,
with a message naming the file.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

import imageio.v2 as imageio
import numpy as np
import tqdm

from lcm_jax import checkpoints
from lcm_jax.evaluate import add_engine_flags, engine_from_flags
from lcm_jax.inference import inputs, outputs
from lcm_jax.inference.engine import Video
from lcm_jax.input_pipeline import video_io

OVERLAY_ALPHA = 0.5


def overlay(frame: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """uint8 [H, W, 3]: objects blended with their DAVIS palette colour (alpha 0.5)."""
    colours = video_io.DAVIS_PALETTE[labels].astype(np.float32)
    blend = (1 - OVERLAY_ALPHA) * frame + OVERLAY_ALPHA * colours
    return np.where(labels[..., None] > 0, np.round(blend), frame).astype(np.uint8)


class OverlayWriter:
    """Writes overlay frames to a temporary file next to `path`, renamed into place on close."""

    def __init__(self, path: Path, fps: float):
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, self._tmp = tempfile.mkstemp(
            dir=path.parent, prefix=f".{path.stem}.", suffix=path.suffix
        )
        os.close(fd)
        self.path = path
        if path.suffix.lower() == ".gif":
            self._writer = imageio.get_writer(self._tmp, mode="I", duration=1000 / fps, loop=0)
        else:
            self._writer = imageio.get_writer(self._tmp, fps=fps, macro_block_size=2)

    def append(self, frame: np.ndarray) -> None:
        self._writer.append_data(frame)

    def close(self, keep: bool) -> None:
        self._writer.close()
        if keep:
            os.replace(self._tmp, self.path)
        else:
            os.unlink(self._tmp)


def _recording(frames, store: dict) -> Iterator[np.ndarray]:
    """Passes frames through, remembering each until its result has been drawn."""
    for t, frame in enumerate(frames):
        store[t] = frame
        yield frame


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m lcm_jax.segment", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--frames", required=True, help="folder of frames, or a video file")
    parser.add_argument("--mask", required=True, help="first-frame mask (indexed PNG)")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--overlay", default="overlay.mp4", help="overlay file name in --out")
    parser.add_argument("--fps", type=float, default=24.0, help="overlay frame rate")
    add_engine_flags(parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        video, names = inputs.user_video(args.frames, args.mask)
        engine = engine_from_flags(args)
        frames: dict[int, np.ndarray] = {}
        video = Video(
            _recording(video.frames, frames), video.annotations, video.num_frames, video.name
        )
        writer = OverlayWriter(Path(args.out) / args.overlay, args.fps)
        with tqdm.tqdm(total=video.num_frames, unit="frame", desc=video.name) as bar:

            def draw(result):
                writer.append(overlay(frames.pop(result.index), result.labels))
                bar.update(1)

            try:
                outputs.write_video(
                    engine.run(video),
                    names,
                    outputs.Layout.folder(args.out, args.soft),
                    on_frame=draw,
                )
            except BaseException:
                writer.close(keep=False)
                raise
            writer.close(keep=True)
    except (video_io.DatasetError, checkpoints.CheckpointError, ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"wrote {len(names)} masks and {writer.path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
