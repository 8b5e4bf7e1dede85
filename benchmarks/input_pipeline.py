"""Input pipeline throughput: clips/s of each training stage on synthetic data.

    python -m benchmarks.input_pipeline [--height 480 --width 854] [--batch_size 8] [--batches 20]

Generates synthetic videos at the given frame size (default DAVIS 480p), prepares the TFDS sets
in a temporary folder, then times `create_train_iterator` for pretrain (384x384 crops), main
and sequence (384x640 crops), after one warm-up batch. Pass --crop 64 for the tiny config.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

from lcm_jax.configs import data as data_configs
from lcm_jax.input_pipeline import pipeline, prepare, synthetic


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--width", type=int, default=854)
    parser.add_argument("--num_videos", type=int, default=8)
    parser.add_argument("--num_frames", type=int, default=24)
    parser.add_argument("--batch_size", type=int, default=8)
    parser.add_argument("--batches", type=int, default=20)
    parser.add_argument(
        "--crop", type=int, default=0, help="square crop for every stage (0: paper)"
    )
    parser.add_argument("--workdir", default="", help="reuse generated/prepared data here")
    args = parser.parse_args(argv)
    workdir = args.workdir or tempfile.mkdtemp(prefix="lcm_input_bench_")
    raw, data_dir = os.path.join(workdir, "raw"), os.path.join(workdir, "tfds")
    if not os.path.isdir(raw):
        synthetic.generate(
            raw,
            num_videos=args.num_videos,
            num_frames=args.num_frames,
            height=args.height,
            width=args.width,
            num_static=4 * args.num_videos,
        )
        prepare.prepare("synthetic", raw, data_dir)
    print(f"cpus: {os.cpu_count()}, frames {args.height}x{args.width}, batch {args.batch_size}")
    for stage in ("pretrain", "main", "sequence"):
        cfg = data_configs.get_config(f"synthetic,{stage}")
        cfg.manual_dir, cfg.data_dir = raw, data_dir
        if args.crop:
            cfg.crop = (args.crop, args.crop)
        it = pipeline.create_train_iterator(
            cfg, stage=stage, batch_size=args.batch_size, seed=0, process_index=0, process_count=1
        )
        next(it)  # warm-up: tracing, first chunk
        start = time.perf_counter()
        for _ in range(args.batches):
            next(it)
        seconds = time.perf_counter() - start
        clips = args.batches * args.batch_size
        print(f"{stage:9s} crop {cfg.crop[0]}x{cfg.crop[1]}: {clips / seconds:7.1f} clips/s")


if __name__ == "__main__":
    main()
