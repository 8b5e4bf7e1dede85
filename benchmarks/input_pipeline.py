"""Input pipeline throughput against the tiny model's train step, per training stage, one run.

    python -m benchmarks.input_pipeline                    # the tiny config (tests, CPU demo)
    python -m benchmarks.input_pipeline --height 480 --width 854 --crop 0 --batches 10
    python -m benchmarks.input_pipeline --feeds tf.data,numpy --pipeline_only --height 480 \
        --width 854 --crop 0 --batches 5          # the two feeds (configs/data.py) at paper crops

Generates synthetic videos (default 64x96 frames, as the tests and the CPU demo), prepares the
TFDS sets in a temporary folder (or --workdir, reused; only when a tf.data feed is measured),
then for each feed of --feeds and pretrain, main and sequence (the NumPy feed has no pretrain:
no static image sets) measures, after one warm-up batch:

- pipeline: `create_train_iterator` alone (record reads, JPEG/PNG decode, warp, one-hot masks,
  batching), clips/s;
- train step: the tiny model's jitted `train.make_train_step` on one batch held in memory
  (all local devices, as `lcm_jax.main` would use them), clips/s;
- fed: the same step fed by the pipeline, clips/s (both share the CPU);

and the ratio pipeline / train step (goal: >= 2, so that the input never starves the step).
--crop 0 keeps the paper's crops (384x384, 384x640); --pipeline_only measures the pipeline alone
(the tiny model's step at paper crops takes minutes on a CPU).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import jax
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from lcm_jax import train
from lcm_jax.configs import data as data_configs
from lcm_jax.configs import lcm as lcm_configs
from lcm_jax.input_pipeline import synthetic
from lcm_jax.model import build_model, init_variables


def clips_per_second(step, batches: int, batch_size: int) -> float:
    """Clips/s of `batches` calls of step() after one warm-up call; step() returns an array
    to wait for (or None)."""
    jax.block_until_ready(step())
    start = time.perf_counter()
    for _ in range(batches):
        out = step()
    jax.block_until_ready(out)
    return batches * batch_size / (time.perf_counter() - start)


def measure(config, batches: int, pipeline_only: bool) -> dict[str, float]:
    """{"pipeline", "train step", "fed"} clips/s for one stage's config (NaN: not measured)."""
    it = train.pipeline_batches(config)(config.data_seed, 0, "train")
    pipeline_rate = clips_per_second(lambda: next(it), batches, config.batch_size)
    if pipeline_only:
        return {"pipeline": pipeline_rate, "train step": float("nan"), "fed": float("nan")}

    mesh = train.make_mesh(config.mesh)
    replicated = NamedSharding(mesh, P())
    batch_sharding = NamedSharding(mesh, P("data"))
    net = build_model(config.model)
    tx, schedule = train.make_optimizer(config)
    step_fn = jax.jit(
        train.make_train_step(config, net, tx, schedule, batch_sharding),
        in_shardings=(replicated, batch_sharding),
        out_shardings=replicated,
        donate_argnums=(0,),
    )
    state = [
        jax.device_put(train.init_state(init_variables(net, jax.random.key(0)), tx), replicated)
    ]

    def next_batch():
        return jax.device_put({k: next(it)[k] for k in train.BATCH_KEYS}, batch_sharding)

    def step(batch):
        state[0], metrics = step_fn(state[0], batch)
        return metrics["loss"]

    held = next_batch()
    step_rate = clips_per_second(lambda: step(held), batches, config.batch_size)
    fed_rate = clips_per_second(lambda: step(next_batch()), batches, config.batch_size)
    return {"pipeline": pipeline_rate, "train step": step_rate, "fed": fed_rate}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--height", type=int, default=64)
    parser.add_argument("--width", type=int, default=96)
    parser.add_argument("--num_videos", type=int, default=8)
    parser.add_argument("--num_frames", type=int, default=12)
    parser.add_argument("--batch_size", type=int, default=8)
    parser.add_argument("--batches", type=int, default=20)
    parser.add_argument("--crop", type=int, default=64, help="square crop (0: the paper's)")
    parser.add_argument("--workdir", default="", help="reuse generated/prepared data here")
    parser.add_argument("--feeds", default="tf.data", help="comma-separated: tf.data, numpy")
    parser.add_argument("--pipeline_only", action="store_true", help="no train step")
    args = parser.parse_args(argv)
    feeds = args.feeds.split(",")
    if set(feeds) - set(data_configs.FEEDS):
        parser.error(f"--feeds must list {' and/or '.join(data_configs.FEEDS)}, got {args.feeds}")
    workdir = args.workdir or tempfile.mkdtemp(prefix="lcm_input_bench_")
    raw, data_dir = os.path.join(workdir, "raw"), os.path.join(workdir, "tfds")
    synthetic.generate(  # nothing to do when --workdir holds these videos; other ones stop it
        raw,
        num_videos=args.num_videos,
        num_frames=args.num_frames,
        height=args.height,
        width=args.width,
        num_static=4 * args.num_videos,
    )
    if "tf.data" in feeds and not os.path.isdir(data_dir):
        from lcm_jax.input_pipeline import prepare  # TensorFlow: the tf.data feed only

        prepare.prepare("synthetic", raw, data_dir)
    print(
        f"cpus: {os.cpu_count()}, devices: {jax.device_count()} {jax.devices()[0].platform}, "
        f"frames {args.height}x{args.width}, batch {args.batch_size}, tiny model"
    )
    print(
        f"{'feed':8s} {'stage':9s} {'crop':>8s} {'pipeline':>9s} {'train step':>11s} {'fed':>7s} "
        "ratio"
    )
    for feed, stage in [(f, s) for f in feeds for s in ("pretrain", "main", "sequence")]:
        if feed == "numpy" and stage == "pretrain":
            continue
        config = lcm_configs.get_config(f"stage={stage},data=synthetic,runlocal=True")
        config.data.manual_dir, config.data.data_dir = raw, data_dir
        config.data.feed = feed
        config.batch_size = args.batch_size
        if args.crop:
            config.data.crop = (args.crop, args.crop)
        else:
            config.data.crop = lcm_configs.get_config(f"stage={stage}").data.crop
        rates = measure(config, args.batches, args.pipeline_only)
        crop = "x".join(map(str, config.data.crop))
        print(
            f"{feed:8s} {stage:9s} {crop:>8s} {rates['pipeline']:9.1f} {rates['train step']:11.1f} "
            f"{rates['fed']:7.1f} {rates['pipeline'] / rates['train step']:6.1f}"
        )


if __name__ == "__main__":
    main()
