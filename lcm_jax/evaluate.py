"""Evaluate LCM on DAVIS 2017 or YouTube-VOS: segment every video, write the results, score.

    python -m lcm_jax.evaluate --dataset davis --root data/DAVIS --split val \\
        --checkpoint workdir --out results/davis_val [--model paper] [--flip]
    python -m lcm_jax.evaluate --dataset youtube --root data/YouTube --split valid \\
        --checkpoint workdir --out results/ytvos_valid

DAVIS: `<out>/<seq>/<frame>.png` (the results layout of the DAVIS toolkit), then J&F as the
DAVIS 2017 toolkit computes it, in `<out>/global_results-<split>.csv` and
`<out>/per-sequence_results-<split>.csv` (when the split has every frame annotated).
YouTube-VOS: `<out>/Annotations/<vid>/<frame>.png` for the frames meta.json lists, and
`<out>/submission.zip` for the evaluation server. Both: `<out>/confidence/<video>.csv`, and with
--soft the quantised probabilities (.npz).

Every PNG is written atomically and a video counts as done once all its files exist, so an
interrupted run, started again with the same arguments, skips the finished videos. A video that
fails (bad or missing file) is reported and skipped; the others go on, the failures are listed
at the end, and the exit code is 1 if any video failed.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import tqdm

from lcm_jax import checkpoints
from lcm_jax.configs import model as model_configs
from lcm_jax.inference import inputs, outputs
from lcm_jax.inference.engine import Engine, InferenceOptions
from lcm_jax.input_pipeline import video_io
from lcm_jax.metrics import report


def add_engine_flags(parser: argparse.ArgumentParser) -> None:
    """Flags shared with lcm_jax.segment: checkpoint, model size and InferenceOptions."""
    parser.add_argument("--checkpoint", required=True, help="variables dir or training workdir")
    parser.add_argument("--model", default="paper", choices=("paper", "tiny"))
    parser.add_argument("--mem_every", type=int, default=5)
    parser.add_argument(
        "--max_memory_frames", type=int, default=None, help="memory slots (default: unbounded)"
    )
    parser.add_argument("--flip", action="store_true", help="flip test-time augmentation")
    parser.add_argument(
        "--shorter_side", type=int, default=None, help="internal resolution (default: original)"
    )
    parser.add_argument("--dtype", default=None, choices=("float32", "bfloat16"))
    parser.add_argument("--soft", action="store_true", help="also write probabilities (.npz)")


def engine_from_flags(args: argparse.Namespace) -> Engine:
    """The Engine that the flags of `add_engine_flags` describe."""
    options = InferenceOptions(
        mem_every=args.mem_every,
        max_memory_frames=args.max_memory_frames,
        flip=args.flip,
        shorter_side=args.shorter_side,
        dtype=args.dtype,
        soft_output=args.soft,
    )
    variables = checkpoints.load_variables(args.checkpoint)
    return Engine(model_configs.get_config(args.model), variables, options)


def run_videos(
    engine: Engine,
    names: Sequence[str],
    prepare: Callable[[str], tuple],
    bar: tqdm.tqdm,
) -> list[tuple[str, str]]:
    """Segments and writes each video; returns the failures as (video, message).

    `prepare(name)` returns (Video, frame names, Layout, wanted frame names or None) or raises.
    A video whose files all exist is skipped.
    """
    failures = []
    for name in names:
        bar.set_postfix_str(name)
        try:
            video, frame_names, layout, wanted = prepare(name)
            if layout.complete(wanted if wanted is not None else frame_names):
                bar.update(video.num_frames)
                continue
            outputs.write_video(
                engine.run(video), frame_names, layout, wanted, on_frame=lambda _: bar.update(1)
            )
        except Exception as e:  # noqa: BLE001 - one bad video must not stop the run
            failures.append((name, f"{type(e).__name__}: {e}"))
            bar.write(f"FAILED {name}: {e}")
    return failures


def _count_frames(list_frames: Callable[[str], Sequence], names: Sequence[str]) -> int:
    total = 0
    for name in names:
        try:
            total += len(list_frames(name))
        except video_io.DatasetError:
            pass  # reported when the video is run
    return total


def evaluate_davis(
    engine: Engine,
    root: str | Path,
    split: str,
    out: str | Path,
    *,
    resolution: str = "480p",
    sequences: Sequence[str] | None = None,
    soft: bool = False,
) -> tuple[report.DavisResults | None, list[tuple[str, str]]]:
    """Segments a DAVIS split into `out` and scores the fully annotated sequences.

    Returns (the J&F results, or None when no sequence could be scored; the failures as
    (sequence, message)). The CSVs are written to `out` as the DAVIS toolkit writes them.
    """
    sequences = sequences or video_io.davis_sequences(root, split)

    def prepare(seq):
        video, frame_names = inputs.davis_video(root, seq, resolution)
        return video, frame_names, outputs.Layout.davis(out, seq, soft), None

    total = _count_frames(lambda s: video_io.davis_video(root, s, resolution)[0], sequences)
    with tqdm.tqdm(total=total, unit="frame", desc="DAVIS", dynamic_ncols=True) as bar:
        failures = run_videos(engine, sequences, prepare, bar)
    failed = {name for name, _ in failures}
    scored = [s for s in sequences if s not in failed and _fully_annotated(root, s, resolution)]
    if not scored:
        return None, failures
    results = report.evaluate_davis(root, out, scored, resolution)
    report.write_csvs(results, out, split)
    return results, failures


def _fully_annotated(root: str | Path, seq: str, resolution: str) -> bool:
    frames, annotations = video_io.davis_video(root, seq, resolution)
    return len(annotations) == len(frames)


def evaluate_youtube(
    engine: Engine,
    root: str | Path,
    split: str,
    out: str | Path,
    *,
    sequences: Sequence[str] | None = None,
    soft: bool = False,
) -> list[tuple[str, str]]:
    """Segments a YouTube-VOS split into `out` (the frames meta.json lists) and zips it for the
    evaluation server (`out/submission.zip`); returns the failures as (video, message)."""
    meta = video_io.youtube_meta(root, split)
    vids = sequences or sorted(meta["videos"])

    def prepare(vid):
        if vid not in meta["videos"]:
            raise video_io.DatasetError(f"video {vid!r} is not in {split}/meta.json")
        video, frame_names = inputs.youtube_video(root, split, vid)
        wanted = outputs.youtube_frames(meta, vid)
        missing = sorted(wanted - set(frame_names))
        if missing:
            raise video_io.DatasetError(
                f"meta.json lists frames {missing[:3]} of {vid!r} that JPEGImages lacks"
            )
        return video, frame_names, outputs.Layout.youtube(out, vid, soft), wanted

    total = _count_frames(lambda v: video_io.youtube_video(root, split, v)[0], vids)
    with tqdm.tqdm(total=total, unit="frame", desc="YouTube-VOS", dynamic_ncols=True) as bar:
        failures = run_videos(engine, vids, prepare, bar)
    if len(failures) < len(vids):
        path = outputs.write_submission_zip(out, Path(out) / "submission.zip")
        print(f"submission: {path}")
    return failures


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m lcm_jax.evaluate", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--dataset", required=True, choices=("davis", "youtube"))
    parser.add_argument("--root", required=True, help="DAVIS folder, or YouTube-VOS folder")
    parser.add_argument("--split", default="val", help="davis: val/test-dev; youtube: valid")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--resolution", default="480p", help="DAVIS: 480p or Full-Resolution")
    parser.add_argument(
        "--sequences", nargs="*", default=None, help="only these videos (default: the split)"
    )
    add_engine_flags(parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        engine = engine_from_flags(args)
        common = dict(sequences=args.sequences, soft=args.soft)
        if args.dataset == "davis":
            results, failures = evaluate_davis(
                engine, args.root, args.split, args.out, resolution=args.resolution, **common
            )
            if results is not None:
                csv = Path(args.out) / f"global_results-{args.split}.csv"
                print(f"J&F over {len(results.objects)} objects ({csv}):")
                for column, value in results.global_scores().items():
                    print(f"  {column:9s} {value:.3f}")
        else:
            failures = evaluate_youtube(engine, args.root, args.split, args.out, **common)
    except (video_io.DatasetError, checkpoints.CheckpointError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if failures:
        print(f"{len(failures)} video(s) failed:", file=sys.stderr)
        for name, message in failures:
            print(f"  {name}: {message}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
