"""Frames/s of `evaluate` one video at a time against `--batch_videos N`, in one run.

    python -m benchmarks.evaluate_speed                         # tiny model, 96x96 and 240x432
    python -m benchmarks.evaluate_speed --model paper --sizes 480x854 --videos 30 --batch 8

Writes a synthetic DAVIS folder (procedural videos rendered with NumPy,
`lcm_jax.input_pipeline.synthetic`; `--videos` per frame size, 2 objects, lengths `--frames`
minus 0, 1 or 2, only the first frame annotated so that nothing is scored), then times
`lcm_jax.inference.evaluation.evaluate` (random weights: the cost does not depend on them) into
a fresh folder per run: reading the JPEGs, segmenting, writing the PNGs and CSVs. Both modes run
once untimed first (compilation excluded), then `--repeats` times each, interleaved; the table
gives the median frames/s and the speed-up of batching.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import jax
import numpy as np

from benchmarks.machine import cpu_cores, cpu_name
from lcm_jax.configs import model as model_configs
from lcm_jax.inference import evaluation, splits
from lcm_jax.inference.engine import InferenceOptions
from lcm_jax.inference.segmenter import Segmenter
from lcm_jax.input_pipeline import synthetic, video_io
from lcm_jax.model import init_variables


def parse_size(text: str) -> tuple[int, int]:
    h, w = (int(v) for v in text.lower().split("x"))
    return h, w


def write_folder(root: Path, size, videos: int, frames: int, objects: int) -> list[int]:
    """A DAVIS folder of `videos` synthetic videos of `size`, first frames annotated; returns the
    videos' lengths."""
    difficulty = synthetic.Difficulty(min_objects=objects, max_objects=objects, num_distractors=0)
    rng = np.random.default_rng(0)
    lengths = [frames - i % 3 for i in range(videos)]
    for i, n in enumerate(lengths):
        clip, labels = synthetic.render_video(
            rng, num_frames=n, height=size[0], width=size[1], difficulty=difficulty
        )
        for t, frame in enumerate(clip):
            video_io.write_frame(root / "JPEGImages" / "480p" / f"v{i}" / f"{t:05d}.jpg", frame)
        video_io.write_label_png(root / "Annotations" / "480p" / f"v{i}" / "00000.png", labels[0])
    (root / "ImageSets" / "2017").mkdir(parents=True)
    (root / "ImageSets" / "2017" / "val.txt").write_text("".join(f"v{i}\n" for i in range(videos)))
    return lengths


def frames_per_s(segmenter: Segmenter, split: splits.Split, out: Path, batch: int) -> float:
    """Frames/s of one `evaluate` run of the split into `out`."""
    start = time.perf_counter()
    result = evaluation.evaluate(segmenter, split, out, progress=False, batch_videos=batch)
    seconds = time.perf_counter() - start
    assert not result.failures, result.failures
    return sum(len(listed.frames) for listed in split.videos) / seconds


def machine() -> str:
    device = jax.devices()[0]
    text = f"{cpu_name()}, {cpu_cores()} cores"
    if device.platform != "cpu":
        text += f"; {device.device_kind}"
    return f"{text} (jax {jax.__version__})"


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="tiny", choices=("paper", "tiny"))
    p.add_argument("--sizes", type=parse_size, nargs="+", default=[(96, 96), (240, 432)])
    p.add_argument("--videos", type=int, default=8, help="videos of each frame size")
    p.add_argument("--frames", type=int, default=12, help="frames of the longest video")
    p.add_argument("--objects", type=int, default=2)
    p.add_argument("--batch", type=int, default=4, help="--batch_videos of the batched mode")
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args(argv)
    if args.frames - min(args.videos - 1, 2) < 3:  # the generator shows each object 3 times
        p.error("--frames: every video needs 3 frames or more (--frames minus 0, 1 or 2)")

    config = dict(model_configs.get_config(args.model))
    variables = jax.jit(lambda key: init_variables(config, key))(jax.random.key(0))
    segmenter = Segmenter(config, variables, InferenceOptions())
    modes = {"one at a time": 1, f"--batch_videos {args.batch}": args.batch}
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        runs = iter(range(10**6))
        for size in args.sizes:
            root = Path(tmp) / f"DAVIS_{size[0]}x{size[1]}"
            lengths = write_folder(root, size, args.videos, args.frames, args.objects)
            split = splits.list_davis(root, "val")

            for batch in modes.values():
                frames_per_s(segmenter, split, Path(tmp) / f"out{next(runs)}", batch)  # compiles
            timed = {mode: [] for mode in modes}
            for _ in range(args.repeats):
                for mode, batch in modes.items():
                    out = Path(tmp) / f"out{next(runs)}"
                    timed[mode].append(frames_per_s(segmenter, split, out, batch))
            base = statistics.median(timed["one at a time"])
            for mode, values in timed.items():
                median = statistics.median(values)
                runs_text = ", ".join(f"{v:.1f}" for v in values)
                rows.append(
                    f"| {size[0]}×{size[1]} | {mode} | {median:.1f} | {runs_text} | "
                    f"{median / base:.2f}× |"
                )

    print(
        f"{args.model} model; {args.videos} videos per frame size, {min(lengths)}-{max(lengths)} "
        f"frames each ({sum(lengths)} per size), {args.objects} objects; {machine()}\n"
    )
    print("| frames | mode | frames/s (median) | runs | speed-up |")
    print("| --- | --- | ---: | --- | ---: |")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
