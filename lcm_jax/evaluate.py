"""Evaluate LCM on DAVIS 2017, DAVIS 2016 or YouTube-VOS: segment every video, write the
results, score.

    python -m lcm_jax.evaluate --dataset davis --root data/DAVIS --split val \\
        --checkpoint demo_out/train/lcm/sequence --out results/davis_val
    python -m lcm_jax.evaluate --dataset davis2016 --root data/DAVIS2016 --split val \\
        --checkpoint demo_out/train/lcm/sequence --out results/davis2016_val
    python -m lcm_jax.evaluate --dataset youtube --root data/YouTube --split valid \\
        --checkpoint demo_out/train/lcm/sequence --out results/ytvos_valid
    python -m lcm_jax.evaluate --dataset youtube --root data/YouTube --split valid --all_frames \\
        --checkpoint demo_out/train/lcm/sequence --out results/ytvos_valid_all_frames

The model is the one stored with the checkpoint (`--model paper|tiny` overrides it, and is
needed for checkpoints written before configs were stored). DAVIS: `<out>/<seq>/<frame>.png`
(the DAVIS toolkit's results layout), then J&F as the DAVIS 2017 toolkit computes it in
`<out>/global_results-<split>.csv` and `<out>/per-sequence_results-<split>.csv`. DAVIS 2016
(the paper's Table 3; one object a sequence, as STCN, XMem and Cutie evaluate it): the same
from the DAVIS 2016 folder (its split `ImageSets/480p/<split>.txt`, or `ImageSets/2016/<split>.txt`
of a DAVIS 2017 trainval folder, whose masks' objects are then merged into one), the results
greyscale PNGs, 255 the object, as the 2016 annotations. YouTube-VOS:
`<out>/Annotations/<vid>/<frame>.png` for the frames meta.json lists, and `<out>/submission.zip`
for the evaluation server; with --all_frames the videos run through every frame (from
`<root>/all_frames/valid_all_frames/JPEGImages`, STCN's, XMem's and Cutie's layout, or
`<root>/valid_all_frames/JPEGImages`), not every 5th, as those evaluate, and the same frames are
written. All: `<out>/confidence/<video>.csv`, with --soft the quantised probabilities (.npz),
and `<out>/manifest.json` (checkpoint, model, options, data).

An interrupted run, started again with the same arguments, keeps the finished videos; into a
folder of another run's results (another checkpoint, options or data) it stops and says what
differs, and --overwrite replaces them. A video that fails is reported and skipped. Add --flip
for flip test-time augmentation, --shorter_side 480 for an internal resolution, --soft for the
probabilities, --batch_videos 8 to segment up to 8 videos of one frame size, object count and
memory size at a time (faster where one video leaves the accelerator idle; the results of one at
a time but for float rounding, which may flip a pixel at a tie; a batch that runs out of memory
is redone in halves), --score_workers 4 to score DAVIS's J&F in 4 processes (default: up to one
per CPU, fewer for few frames, `lcm_jax.metrics.report.default_workers`; 1 scores in this
process; the scores do not depend on it).

Several processes split the videos between them (the same launch as training: the flags below
or JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES, JAX_PROCESS_ID, or SLURM / Open MPI); --out must
be a folder they all see, and process 0 writes the CSVs or the zip.

Exit status (lcm_jax/cli.py): 0 done, 1 some videos failed (listed), 2 an input that cannot be
used (one line "error: ..."), 130/143 interrupted.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

import jax

from lcm_jax import cli, distributed
from lcm_jax.inference import evaluation, splits
from lcm_jax.inference.segmenter import Segmenter

DEFAULT_SPLITS = {"davis": "val", "davis2016": "val", "youtube": "valid"}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m lcm_jax.evaluate", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--dataset", required=True, choices=tuple(DEFAULT_SPLITS))
    parser.add_argument(
        "--root", required=True, help="DAVIS 2017 or 2016 folder, or YouTube-VOS folder"
    )
    parser.add_argument(
        "--split",
        default=None,
        help="davis: val (default) or test-dev; davis2016: val (default); youtube: valid (default)",
    )
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument(
        "--resolution",
        default="480p",
        help="davis: 480p or Full-Resolution; davis2016: 480p or 1080p",
    )
    parser.add_argument(
        "--sequences",
        nargs="*",
        default=None,
        help="only these videos, each once and of the dataset (default: the split)",
    )
    parser.add_argument(
        "--all_frames",
        action="store_true",
        help="YouTube-VOS: segment every frame (from <root>/all_frames/<split>_all_frames/"
        "JPEGImages, or <root>/<split>_all_frames/JPEGImages), not every 5th, and write the "
        "frames meta.json lists, as STCN, XMem and Cutie evaluate",
    )
    cli.add_model_flags(parser)
    cli.add_inference_flags(parser)
    parser.add_argument(
        "--batch_videos",
        type=int,
        default=1,
        metavar="N",
        help="segment up to N videos of one frame size, object count and memory size at a time "
        "(default 1; faster where one video leaves the accelerator idle; the results of one at "
        "a time but for float rounding; halved when a batch runs out of memory)",
    )
    parser.add_argument(
        "--score_workers",
        type=int,
        default=None,
        metavar="N",
        help="DAVIS: processes scoring J&F (default: up to one per CPU, fewer for few frames; "
        "1: in this process)",
    )
    parser.add_argument("--coordinator_address", default=None, help="host:port of process 0")
    parser.add_argument("--num_processes", type=int, default=None)
    parser.add_argument("--process_id", type=int, default=None, help="in [0, num_processes)")
    parser.add_argument(
        "--initialization_timeout",
        type=int,
        default=distributed.DEFAULT_TIMEOUT_S,
        help="seconds to wait for every process to join",
    )
    return parser


def _evaluate(args: argparse.Namespace) -> int:
    if args.all_frames and args.dataset != "youtube":
        raise ValueError("--all_frames is for YouTube-VOS; DAVIS's folders hold every frame")
    distributed.initialize(
        args.coordinator_address, args.num_processes, args.process_id, args.initialization_timeout
    )
    split_name = args.split or DEFAULT_SPLITS[args.dataset]
    if args.dataset in ("davis", "davis2016"):
        year = "2016" if args.dataset == "davis2016" else "2017"
        split = splits.list_davis(args.root, split_name, args.resolution, args.sequences, year)
    else:
        split = splits.list_youtube(args.root, split_name, args.sequences, args.all_frames)
    segmenter = Segmenter.from_checkpoint(args.checkpoint, cli.inference_options(args), args.model)
    result = evaluation.evaluate(
        segmenter,
        split,
        args.out,
        overwrite=args.overwrite,
        batch_videos=args.batch_videos,
        score_workers=args.score_workers,
    )
    if jax.process_index() != 0:
        return cli.EXIT_FAILED if result.failures else cli.EXIT_OK
    if result.scores is not None:
        csv = Path(args.out) / f"global_results-{split_name}.csv"
        print(f"J&F over {len(result.scores.objects)} objects ({csv}):")
        for column, value in result.scores.global_scores().items():
            print(f"  {column:9s} {value:.3f}")
    for path in result.written:
        print(f"wrote {path}")
    return cli.report_failures(result.failures)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return cli.run(lambda: _evaluate(args))


if __name__ == "__main__":
    cli.exit(main())
