"""Segment your own video from a mask of its first frame, or of any frame.

    python -m lcm_jax.segment --frames my_video.mp4 --mask first.png \\
        --checkpoint demo_out/train/lcm/sequence --out out/my_video
    python -m lcm_jax.segment --frames my_video.mp4 --mask frame3.png --mask-frame 3 \\
        --checkpoint demo_out/train/lcm/sequence --out out/my_video_from_3

--frames is a folder of images (sorted by name) or a video file; --mask an indexed or greyscale
PNG (pixel value = object id, 0 background), the frames' size, of the first frame or of frame
--mask-frame K (counted from 0), whose objects are then propagated forwards to the last frame
and backwards to the first (lcm_jax.Predictor). The model is the one stored with the checkpoint
(`--model paper|tiny` overrides it, and is needed for checkpoints written before configs were
stored). Writes `<out>/<frame>.png` (DAVIS palette),
`<out>/confidence.csv`, an overlay video (`<out>/overlay.mp4`; `--overlay overlay.gif` for a GIF)
and `<out>/manifest.json`, all atomically.

An interrupted video is segmented again from its first frame (its memory depends on every
frame before); a finished one is left as it is. Into a folder of another run's results it
stops and says what differs; --overwrite replaces them.

Exit status (lcm_jax/cli.py): 0 done, 1 the video failed while being segmented, 2 an input that
cannot be used (one line "error: ..." naming the file), 130/143 interrupted.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from lcm_jax import cli
from lcm_jax.inference.own_video import segment_video
from lcm_jax.inference.segmenter import Segmenter


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m lcm_jax.segment", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--frames", required=True, help="folder of frames, or a video file")
    parser.add_argument("--mask", required=True, help="a frame's mask (indexed PNG)")
    parser.add_argument(
        "--mask-frame",
        dest="mask_frame",
        type=int,
        default=0,
        help="the frame of --mask (default 0, the first); propagated both ways",
    )
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument(
        "--overlay", default="overlay.mp4", help="overlay file name in --out (.mp4 or .gif)"
    )
    parser.add_argument("--fps", type=float, default=24.0, help="overlay frame rate (> 0)")
    cli.add_model_flags(parser)
    cli.add_inference_flags(parser)
    return parser


def _segment(args: argparse.Namespace) -> int:
    segmenter = Segmenter.from_checkpoint(args.checkpoint, cli.inference_options(args), args.model)
    result = segment_video(
        segmenter,
        args.frames,
        args.mask,
        args.out,
        overlay_name=args.overlay,
        fps=args.fps,
        overwrite=args.overwrite,
        mask_frame=args.mask_frame,
    )
    if result.failures:
        return cli.report_failures(result.failures)
    done = "already there (same manifest)" if result.already_done else "wrote"
    print(f"{done}: {result.masks} masks and {result.overlay}")
    return cli.EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return cli.run(lambda: _segment(args))


if __name__ == "__main__":
    cli.exit(main())
