"""Table 4 on look-alikes: do PGM and ORM beat STM (GRM only) where only position tells?

    python -m benchmarks.ablation                      # LCM and STM, seeds 0 1 2 (CPU, 78 min)
    python -m benchmarks.ablation --variants all --seeds 0,1,2 --name table4_cpu
                                                       # the five Table 4 variants (CPU; LCM
                                                       # and STM come from the cache)
    python -m benchmarks.ablation --variants all --name table4_gpu --set feed=numpy
                                                       # the same on a GPU (no TensorFlow there)
    python -m benchmarks.ablation --name k2 --variants lcm --seeds 0 \\
        --set eval.sets=val --set model.pgm_top_k=2    # a candidate choice, validation only

1. Data (`input_pipeline.lookalikes`, NumPy only): 192×192 videos of one target and two
   identical look-alikes that pass near and across it (occluding it, and occluded by it), and a
   control twin of every held-out scene where the look-alikes have another colour. Training
   scenes (half of each kind), a validation split (for choices) and a test split (for results).
2. Training as the paper's Table 4: no static pre-training; the main stage (three random frames,
   shuffled) then the sequence stage (skip 1-5, where PGM's frame t-1 means something), the same
   steps, optimisers and schedule for every variant, 128×128 crops (an 8×8 feature grid), the
   tiny model (ResNet-18 × 1/8) with one object. A seed sets the initialisation and the clip order
   (`config.seed` and `config.data_seed`); with the same seed the variants share the
   initialisation of their common layers and see the same clips.
3. Evaluation of each trained model by `lcm_jax.inference.evaluation` on the look-alike and
   control videos of the validation and test splits (a 12×12 grid): per-video J&F. For variants
   with PGM, the position map (eq. 6) of every frame t >= 1 of the look-alike videos, computed
   from frame t-1 and the engine's own soft prediction there (as at inference), and its mass on
   the target versus on the look-alikes (`mass_shares`).
4. Statistics (`summarise`): per variant and set, the mean J&F over videos for each seed, then
   mean ± std over seeds; per video, the difference to STM averaged over the seeds (the seeds are
   paired), its mean and a bootstrap 95% interval over videos.

Cache and resume, under --out (default ~/lcm_ablation, outside the repository):
    data/<data key>/DAVIS, tfds/           the videos and their TFDS set (per data config; the
                                           NumPy feed reads DAVIS/ only)
    runs/<variant>-seed<k>-<train key>/    main/, sequence/ (training workdirs, resumable),
        config.json, result-<eval key>.json
The train key hashes everything that decides the trained weights (data, model, stages, seed),
the eval key adds the evaluation settings: a result is reused only for the very same config,
and an interrupted run resumes from its last checkpoint when the same command is run again.
Every file is written atomically. The summary of the invocation goes to --json under --name
(default benchmarks/RESULTS_ablation.json) and its tables to --markdown (a block named --name in
benchmarks/RESULTS_ablation.md; the rest of that file is left as it is).

Training reads its clips through the tf.data feed, or with `--set feed=numpy` through the NumPy
feed, which needs no TensorFlow (`configs/data.py`, `feed`; the same clips but for JPEG
decoding, so the train key holds the feed).

Errors (unknown variant or config key, a failed write such as a full disk, a missing
TensorFlow for training with the tf.data feed) are one line on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import fcntl
import functools
import hashlib
import importlib.util
import json
import platform
import shutil
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import tqdm
from absl import logging

from lcm_jax import checkpoints, files
from lcm_jax.configs import data as data_configs
from lcm_jax.configs import lcm as lcm_configs
from lcm_jax.configs import model as model_configs
from lcm_jax.inference import evaluation, splits
from lcm_jax.inference.engine import InferenceOptions
from lcm_jax.inference.segmenter import Segmenter
from lcm_jax.input_pipeline import lookalikes, video_io
from lcm_jax.model import LCM, MemoryPool, PrevFrame, Reference, build_model
from lcm_jax.model.lcm import pool_to_grid

VARIANTS = model_configs.TABLE4  # name -> (use_grm, use_pgm, use_orm), and the row labels:
LABELS = {
    "lcm": "GRM+PGM+ORM (LCM)",
    "no_pgm": "GRM+ORM",
    "no_orm": "GRM+PGM",
    "stm": "GRM only (STM)",
    "no_grm": "PGM+ORM",
}
DEFAULT_VARIANTS = ("lcm", "stm")
# Paired comparisons (a, b) -> a − b, when both ran: every variant against STM, and LCM
# against LCM without PGM (PGM's own contribution) and without ORM (ORM's).
PAIRS = [(v, "stm") for v in VARIANTS if v != "stm"] + [("lcm", "no_pgm"), ("lcm", "no_orm")]
STAGES = ("main", "sequence")  # Table 4: no static pre-training
SPLITS = ("val", "test")
BOOTSTRAP_RESAMPLES = 10_000
DEFAULT_FEED = "tf.data"


class BenchmarkError(Exception):
    """A bad argument or an unusable output folder: reported as one line, exit code 2."""


# ----------------------------------------------------------------------------------- config


def get_config() -> ml_collections.ConfigDict:
    """The benchmark's settings; every field can be set with `--set key=value`."""
    c = ml_collections.ConfigDict()
    c.data = ml_collections.ConfigDict()
    c.data.num_train = 320  # training scenes: 160 with look-alikes, 160 control
    c.data.num_val = 24  # twin scenes: 24 look-alike + 24 control videos
    c.data.num_test = 48  # twin scenes: 48 look-alike + 48 control videos
    c.data.num_frames = 24
    c.data.size = 192  # frames S×S: a 12×12 grid at stride 16
    c.data.seed = 0
    c.data.scene = ml_collections.ConfigDict(vars(lookalikes.SceneConfig()))

    c.model = model_configs.get_config("tiny")  # the switches are set per variant
    c.model.max_objects = 1
    c.model.pgm_top_k = 8  # the paper's K (the tiny config's 4 is for the demo's 4×4 grid)
    c.model.frozen_bn = False  # no ImageNet statistics to freeze: BatchNorm learns from scratch

    c.crop = 128  # training crops: an 8×8 grid
    c.batch_size = 8
    # The training input (configs/data.py `feed`): "tf.data", or "numpy" where TensorFlow is
    # missing (the GPU image). Both give the same clips but for JPEG decoding (input_pipeline/
    # numpy_clips.py); the train key holds it only when it is not "tf.data", so the runs cached
    # before this field keep their keys.
    c.feed = DEFAULT_FEED
    c.stages = ml_collections.ConfigDict()
    for stage, steps, lr, warmup in (("main", 2000, 1e-3, 100), ("sequence", 1000, 2e-4, 0)):
        s = c.stages[stage] = ml_collections.ConfigDict()
        s.steps = steps
        s.optimizer = "adam"
        s.learning_rate = lr
        s.schedule = "cosine"
        s.warmup_steps = warmup
    c.checkpoint_every_steps = 250  # how much an interrupted run loses at most

    c.eval = ml_collections.ConfigDict()
    c.eval.sets = "val,test"  # splits to evaluate ("val" alone when screening a choice)
    c.eval.mem_every = 5
    return c


def apply_overrides(config: ml_collections.ConfigDict, items: Sequence[str]) -> None:
    """`key=value` items (dotted keys), each typed by the value it replaces."""
    for item in items:
        key, sep, text = item.partition("=")
        parent, _, leaf = key.rpartition(".")
        try:
            node = config[parent] if parent else config
            old = node[leaf]
        except (KeyError, AttributeError):
            raise BenchmarkError(f"unknown config key {key!r} in --set {item!r}") from None
        if not sep or isinstance(old, ml_collections.ConfigDict):
            raise BenchmarkError(f"--set {item!r}: expected key=value with a leaf key")
        try:
            if isinstance(old, bool):
                if text not in ("True", "False"):
                    raise ValueError("expected True or False")
                value = text == "True"
            elif isinstance(old, tuple):
                value = tuple(type(old[0])(v) for v in text.split(","))
            else:
                value = type(old)(text)
        except ValueError as e:
            raise BenchmarkError(f"--set {item!r}: {e}") from None
        node[leaf] = value


def key_of(tree: Mapping) -> str:
    """A short hash of a JSON-able tree (sorted keys): the cache key of what it describes."""
    text = json.dumps(tree, sort_keys=True, default=list)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def run_model_config(config, variant: str) -> ml_collections.ConfigDict:
    model = ml_collections.ConfigDict(config.model.to_dict())
    model.use_grm, model.use_pgm, model.use_orm = VARIANTS[variant]
    return model


def train_spec(config, variant: str, seed: int) -> dict:
    """Everything that decides a run's trained weights (the train key hashes it); the feed
    only when it is not the default (`get_config`)."""
    spec = {
        "data": config.data.to_dict(),
        "model": run_model_config(config, variant).to_dict(),
        "crop": config.crop,
        "batch_size": config.batch_size,
        "stages": config.stages.to_dict(),
        "seed": seed,
    }
    if config.feed != DEFAULT_FEED:
        spec["feed"] = config.feed
    return spec


def parse_variants(text: str) -> list[str]:
    names = list(VARIANTS) if text == "all" else [v for v in text.split(",") if v]
    unknown = [v for v in names if v not in VARIANTS]
    if unknown or not names:
        raise BenchmarkError(
            f"unknown variant(s) {unknown or [text]}; choose from {', '.join(VARIANTS)} or all"
        )
    return names


def parse_seeds(text: str) -> list[int]:
    try:
        seeds = [int(s) for s in text.split(",") if s]
    except ValueError:
        raise BenchmarkError(f"--seeds must be comma-separated integers, got {text!r}") from None
    if not seeds or min(seeds) < 0 or len(set(seeds)) != len(seeds):
        raise BenchmarkError(f"--seeds must be distinct integers >= 0, got {text!r}")
    return seeds


# ------------------------------------------------------------------------------------- data


def make_data(config, out: Path) -> Path:
    """The look-alike videos of `config.data` under `out/data/<data key>/` (written into a
    temporary folder, then renamed); returns that folder (DAVIS/ and, once trained, tfds/)."""
    spec = config.data.to_dict()
    folder = out / "data" / key_of(spec)
    if folder.is_dir():
        return folder
    tmp = folder.with_name(f".{folder.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)  # left by an interrupted run
    d = config.data
    lookalikes.write_scene_set(
        tmp,
        num_train=d.num_train,
        num_val=d.num_val,
        num_test=d.num_test,
        num_frames=d.num_frames,
        size=d.size,
        seed=d.seed,
        config=lookalikes.SceneConfig(**d.scene.to_dict()),
    )
    files.write_text(tmp / "data.json", json.dumps(spec, indent=1, default=list))
    tmp.rename(folder)
    return folder


# --------------------------------------------------------------------------------- training


def stage_config(config, stage: str, variant: str, seed: int, data: Path, init_from: str):
    """The `lcm_jax.train` config of one stage of one run."""
    s = config.stages[stage]
    c = lcm_configs.get_config(f"stage={stage},data=davis,runlocal=True")
    c.model = run_model_config(config, variant)
    c.data.max_objects = config.model.max_objects
    c.data.manual_dir = str(data)
    c.data.data_dir = str(data / "tfds")
    c.data.crop = (config.crop, config.crop)
    c.data.feed = config.feed
    c.batch_size = config.batch_size
    c.seed = c.data_seed = seed
    c.num_train_steps = s.steps
    c.optimizer.name = s.optimizer
    c.optimizer.learning_rate = s.learning_rate
    c.optimizer.schedule = s.schedule
    c.optimizer.warmup_steps = s.warmup_steps
    c.log_every_steps = 50
    c.checkpoint_every_steps = config.checkpoint_every_steps
    c.eval_every_steps = 0
    c.init_from = init_from
    c.progress_bar = True
    return c


def train_run(config, variant: str, seed: int, run_dir: Path, data: Path) -> float:
    """Trains the stages of one run in `run_dir/<stage>` (skipping finished ones and those with
    0 steps, resuming an interrupted one); returns the training seconds of its stages."""
    if config.feed == "tf.data" and importlib.util.find_spec("tensorflow") is None:
        raise BenchmarkError(
            "training with the tf.data feed needs TensorFlow, which is not installed; pass "
            "--set feed=numpy to train without it"
        )
    from lcm_jax import train  # imports TensorFlow with the tf.data feed, when it trains

    seconds, init_from = 0.0, ""
    for stage in STAGES:
        if not config.stages[stage].steps:  # skipped, as in the paper's Table 5
            continue
        workdir = run_dir / stage
        done = workdir / "done.json"
        if not done.is_file():
            start = time.time()
            cfg = stage_config(config, stage, variant, seed, data, init_from)
            state, _ = train.train_and_evaluate(cfg, str(workdir))
            step = int(state["step"])
            if step < cfg.num_train_steps:  # SIGTERM: the trainer saved this step and returned
                raise BenchmarkError(
                    f"{workdir} stopped at step {step} of {cfg.num_train_steps}; run the same "
                    "command again to resume"
                )
            files.write_text(done, json.dumps({"seconds": time.time() - start}))
        seconds += json.loads(done.read_text())["seconds"]
        init_from = str(workdir)
    return seconds


# ------------------------------------------------------------------------------- evaluation


def evaluate_run(config, variant: str, run_dir: Path, davis: Path) -> dict:
    """J&F per video of every evaluated set, and PGM's position-map statistics."""
    model = run_model_config(config, variant).to_dict()
    last = [stage for stage in STAGES if config.stages[stage].steps][-1]
    variables = checkpoints.load_variables(run_dir / last)
    # With PGM, the engine's soft masks (.npz next to the PNGs) feed `position_map_stats`.
    options = InferenceOptions(mem_every=config.eval.mem_every, soft_output=model["use_pgm"])
    segmenter = Segmenter(model, variables, options, str(run_dir / last))
    jf, pgm, where = {}, {}, {}
    for split in config.eval.sets.split(","):
        for kind in lookalikes.KINDS:
            name = f"{split}_{kind}"
            out = run_dir / f"eval-{config.eval.mem_every}" / name
            # The folder is this run's: results of an older evaluation are replaced.
            result = evaluation.evaluate(
                segmenter, splits.list_davis(davis, name), out, overwrite=True, progress=False
            )
            if result.failures or result.scores is None:
                raise BenchmarkError(
                    f"evaluation of {run_dir.name} on {name} failed: {result.failures}"
                )
            jf[name] = {
                o.name.rsplit("_", 1)[0]: (o.j[0] + o.f[0]) / 2 for o in result.scores.objects
            }
            seqs = video_io.davis_sequences(davis, name)
            where[name] = where_predicted(davis, out, seqs)
            if model["use_pgm"] and kind == "lookalike":
                pgm[name] = position_map_stats(model, variables, davis, out, seqs)
    return {"jf": jf, "pgm": pgm, "where": where}


def where_fractions(pred, target, others) -> dict[str, float]:
    """Where the predicted target pixels lie, as fractions of the true target's area.

    pred, target, others bool [F, H, W] (others: the look-alikes, or the control objects).
    Returns {"target": |pred ∧ target|, "lookalikes": |pred ∧ others|, "background": |pred
    elsewhere|}, each divided by |target|: a perfect result is (1, 0, 0), one that also
    segments a look-alike of the same size (1, 1, 0).
    """
    area = max(int(target.sum()), 1)
    return {
        "target": float((pred & target).sum() / area),
        "lookalikes": float((pred & others).sum() / area),
        "background": float((pred & ~target & ~others).sum() / area),
    }


def where_predicted(davis: Path, results: Path, seqs) -> dict[str, float]:
    """`where_fractions` over the videos `seqs` (pixels pooled), on the frames J&F scores
    (the first and the last frame excluded), from the result PNGs in `results/<seq>/`."""
    pred, target, others = [], [], []
    for seq in seqs:
        frame_paths, label_paths = video_io.davis_video(davis, seq)
        scored = slice(1, len(frame_paths) - 1)
        names = [p.stem for p in frame_paths[scored]]
        pred.append(
            np.stack([video_io.read_label_png(results / seq / f"{n}.png") == 1 for n in names])
        )
        target.append(np.stack([video_io.read_label_png(p) == 1 for p in label_paths[scored]]))
        others.append(lookalikes.read_others(davis, seq)[scored] > 0)
    return where_fractions(*(np.concatenate(x) for x in (pred, target, others)))


@functools.partial(jax.jit, static_argnums=0)
def position_maps(net: LCM, variables, frames, prev_frames, prev_masks):
    """PGM's position map P (eq. 6) of each frame from its previous frame and mask.

    frames, prev_frames float32 [B, H, W, 3] in [0, 1]; prev_masks float32 [B, H, W] (the
    target's soft mask at t-1) -> P float32 [B, H/16, W/16]. P depends only on PGM's inputs
    (the query's local key, frame t-1's memory local key and mask), so GRM's pool and ORM's
    reference are frame t-1 too here, and LCM.segment sows P as it does at inference.
    """
    b = frames.shape[0]
    valid = jnp.ones((b, 1), bool)
    masks = prev_masks[:, None]
    mem = net.apply(variables, prev_frames, masks, valid, method=LCM.encode_memory)
    slot = lambda x: None if x is None else x[:, :, None]
    pool = MemoryPool(k_g=slot(mem.k_g), v=slot(mem.v), valid=jnp.ones((b, 1, 1), bool))
    _, state = net.apply(
        variables, frames, pool, PrevFrame(mem.k_l, masks), Reference(mem.v, masks), valid,
        method=LCM.segment, mutable=["intermediates"],
    )  # fmt: skip
    return state["intermediates"]["pgm"]["position_map"][0]


def mass_shares(position_map, target, others) -> dict[str, np.ndarray]:
    """Where PGM's position map puts its mass: on the target or on the look-alikes.

    position_map float [F, h, w]; target, others bool [F, H, W] (visible pixels), H = 16h.
    The map is divided by its mean (1 = an average cell); a(j) is the fraction of cell j that
    the target (or the look-alikes) covers. Per frame:
        density_target = Σ_j P(j) a_target(j) / Σ_j a_target(j)   (the same for look-alikes)
        share  = Σ P a_target / (Σ P a_target + Σ P a_lookalikes)  (the map's share of the mass)
        chance = Σ a_target / (Σ a_target + Σ a_lookalikes)        (share of a uniform map)
    Only frames where both are visible count. Returns these four [F'] arrays.
    """
    p = np.asarray(position_map, np.float64)
    p = p / p.mean(axis=(1, 2), keepdims=True)
    a_t = np.asarray(pool_to_grid(np.asarray(target, np.float64), "area"))
    a_o = np.asarray(pool_to_grid(np.asarray(others, np.float64), "area"))
    area_t, area_o = a_t.sum(axis=(1, 2)), a_o.sum(axis=(1, 2))
    both = (area_t > 0) & (area_o > 0)
    mass_t = (p * a_t).sum(axis=(1, 2))[both]
    mass_o = (p * a_o).sum(axis=(1, 2))[both]
    area_t, area_o = area_t[both], area_o[both]
    return {
        "density_target": mass_t / area_t,
        "density_lookalikes": mass_o / area_o,
        "share": mass_t / (mass_t + mass_o),
        "chance": area_t / (area_t + area_o),
    }


def border_share(position_map) -> np.ndarray:
    """The share of the map's mass on the outermost ring of grid cells, [F] from [F, h, w]
    (a uniform map gives (2h + 2w - 4) / (h·w)): where an attention sink would be."""
    p = np.asarray(position_map, np.float64)
    inner = p[:, 1:-1, 1:-1].sum(axis=(1, 2))
    return 1 - inner / p.sum(axis=(1, 2))


def position_map_stats(model, variables, davis: Path, results: Path, seqs) -> dict[str, float]:
    """`mass_shares` over the frames t >= 1 of the look-alike videos `seqs`, with frame t-1's
    soft target mask from the engine's results (`results/<seq>/<frame>.npz`), and the
    `border_share` of the maps (all frames t >= 1) next to a uniform map's."""
    net = build_model(model)
    per_frame, border = [], []
    for seq in seqs:
        frame_paths, label_paths = video_io.davis_video(davis, seq)
        frames = np.stack([video_io.read_frame(p) for p in frame_paths]).astype(np.float32) / 255
        target = np.stack([video_io.read_label_png(p) == 1 for p in label_paths])
        probs = []
        for p in frame_paths[:-1]:
            with np.load(results / seq / f"{p.stem}.npz") as z:
                probs.append(z["probs"][1].astype(np.float32) / 255)
        maps = position_maps(net, variables, frames[1:], frames[:-1], np.stack(probs))
        border.append(border_share(maps))
        per_frame.append(mass_shares(maps, target[1:], lookalikes.read_others(davis, seq)[1:] > 0))
    stats = {k: float(np.concatenate([f[k] for f in per_frame]).mean()) for k in per_frame[0]}
    stats["target_denser"] = float(
        np.concatenate([f["density_target"] > f["density_lookalikes"] for f in per_frame]).mean()
    )
    stats["frames"] = int(sum(len(f["share"]) for f in per_frame))
    h, w = maps.shape[1:]
    stats["border"] = float(np.concatenate(border).mean())
    stats["border_uniform"] = (2 * h + 2 * w - 4) / (h * w)
    return stats


# ------------------------------------------------------------------------------- statistics


def bootstrap_ci(values, resamples: int = BOOTSTRAP_RESAMPLES, seed: int = 0):
    """Percentile bootstrap 95% interval of the mean of `values` [N] (resampling the N values)."""
    values = np.asarray(values, np.float64)
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, len(values), (resamples, len(values)))].mean(axis=1)
    lo, hi = np.percentile(means, [2.5, 97.5])
    return float(lo), float(hi)


def mean_std(values) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof 1; 0 for a single value)."""
    values = np.asarray(values, np.float64)
    return float(values.mean()), float(values.std(ddof=1)) if len(values) > 1 else 0.0


def _over_seeds(runs: Sequence[Mapping], key: str) -> dict:
    """{set: {statistic: (mean, std)}} of the runs' `key` entries over the seeds, for the sets
    and statistics that every run has (results cached before a statistic existed lack it)."""
    sets = set.intersection(*(set(r.get(key, {})) for r in runs))
    out = {}
    for s in sorted(sets):
        names = set.intersection(*(set(r[key][s]) for r in runs))
        out[s] = {k: mean_std([r[key][s][k] for r in runs]) for k in sorted(names)}
    return out


def summarise(runs: Sequence[Mapping]) -> dict:
    """Statistics over the runs [{variant, seed, jf: {set: {video: J&F}}, pgm: {set: stats}}].

    jf[variant][set]: per-seed means over videos, and their mean ± std.
    paired["a-b"][set] (each pair of PAIRS that ran, same seeds and videos): the per-video
      difference a − b averaged over the seeds, its mean and bootstrap 95% interval, and the
      mean difference of each seed.
    pgm[variant][set]: each statistic of `position_map_stats`, mean ± std over seeds.
    where[variant][set]: each fraction of `where_predicted`, mean ± std over seeds.
    """
    by = {(r["variant"], r["seed"]): r for r in runs}
    variants = list(dict.fromkeys(r["variant"] for r in runs))
    out = {"jf": {}, "paired": {}, "pgm": {}, "where": {}}
    for v in variants:
        mine = [r for r in runs if r["variant"] == v]
        sets = sorted(mine[0]["jf"])
        out["jf"][v] = {}
        for s in sets:
            per_seed = [float(np.mean(list(r["jf"][s].values()))) for r in mine]
            out["jf"][v][s] = {"seeds": per_seed, "mean_std": mean_std(per_seed)}
        out["where"][v] = _over_seeds(mine, "where")
        out["pgm"][v] = _over_seeds(mine, "pgm")
    for a, b in PAIRS:
        seeds = sorted(k for v, k in by if v == a and (b, k) in by)
        if not seeds:
            continue
        out["paired"][f"{a}-{b}"] = {}
        for s in sorted(set(by[(a, seeds[0])]["jf"]) & set(by[(b, seeds[0])]["jf"])):
            videos = sorted(by[(a, seeds[0])]["jf"][s])
            diff = np.array(
                [[by[(a, k)]["jf"][s][x] - by[(b, k)]["jf"][s][x] for x in videos] for k in seeds]
            )  # [seeds, videos]
            out["paired"][f"{a}-{b}"][s] = {
                "mean": float(diff.mean()),
                "ci95": bootstrap_ci(diff.mean(axis=0)),
                "per_seed": [float(d) for d in diff.mean(axis=1)],
                "videos": len(videos),
                "seeds": seeds,
            }
    return out


# ---------------------------------------------------------------------------------- reports


PAIRED_CAPTION = (
    "Paired differences per video (mean over the seeds, which the variants share), with a "
    "bootstrap 95% interval over videos, and the mean difference of each seed:"
)
WHERE_CAPTION = (
    "Where the predicted target pixels lie, as fractions of the true target's area (pixels "
    "pooled over the videos' scored frames; mean ± std over seeds):"
)
PGM_CAPTION = (
    "PGM's position map on the look-alike videos, frames t ≥ 1 where the target and a "
    "look-alike are visible (mean ± std over seeds; densities relative to the map's mean, "
    "1 = an average cell), and the share of the map's mass on the outermost ring of grid "
    "cells (all frames t ≥ 1; a uniform map's share in parentheses):"
)
PGM_HEADER = (
    "| variant | set | share on target | share if uniform | density target | "
    "density look-alikes | frames target denser | frames | mass on the border ring "
    "(uniform) |"
)


def _pm(mean_std_pair, digits=3) -> str:
    m, s = mean_std_pair
    return f"{m:.{digits}f} ± {s:.{digits}f}"


def markdown(summary: Mapping, header: str) -> str:
    """The tables of one invocation's summary."""
    jf, paired, pgm = summary["jf"], summary["paired"], summary["pgm"]
    present = {s for v in jf.values() for s in v}
    sets = [f"{s}_{k}" for s in SPLITS[::-1] for k in lookalikes.KINDS if f"{s}_{k}" in present]
    nice = lambda s: s.replace("_", " ").replace("lookalike", "look-alike")
    lines = [header, "", "J&F (mean ± std over seeds of the mean over videos):", ""]
    lines += ["| variant | " + " | ".join(nice(s) for s in sets) + " |"]
    lines += ["| --- |" + " ---: |" * len(sets)]
    for v, row in jf.items():
        lines.append(f"| {LABELS[v]} | " + " | ".join(_pm(row[s]["mean_std"]) for s in sets) + " |")
    if paired:
        lines += ["", PAIRED_CAPTION, ""]
        lines += ["| difference | set | mean | 95% interval | videos | per seed |"]
        lines += ["| --- | --- | ---: | --- | ---: | --- |"]
        for pair, rows in paired.items():
            a, b = pair.split("-")
            for s in sets:
                if s in rows:
                    r = rows[s]
                    lo, hi = r["ci95"]
                    seeds = ", ".join(f"{d:+.3f}" for d in r["per_seed"])
                    lines.append(
                        f"| {LABELS[a]} − {LABELS[b]} | {nice(s)} | {r['mean']:+.3f} | "
                        f"[{lo:+.3f}, {hi:+.3f}] | {r['videos']} | {seeds} |"
                    )
    if any(summary["where"].values()):
        lines += [
            "",
            WHERE_CAPTION,
            "",
            "| variant | set | on the target | on the look-alikes "
            "(control: the other objects) | elsewhere |",
            "| --- | --- | ---: | ---: | ---: |",
        ]
        for v, by_set in summary["where"].items():
            for s in sets:
                if s in by_set:
                    w = by_set[s]
                    lines.append(
                        f"| {LABELS[v]} | {nice(s)} | {_pm(w['target'], 2)} | "
                        f"{_pm(w['lookalikes'], 2)} | {_pm(w['background'], 2)} |"
                    )
    rows = [(v, s, stats) for v, by_set in pgm.items() for s, stats in by_set.items()]
    if rows:
        lines += ["", PGM_CAPTION, "", PGM_HEADER]
        lines += ["| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
        for v, s, st in rows:
            lines.append(
                f"| {LABELS[v]} | {nice(s)} | {_pm(st['share'])} | {_pm(st['chance'])} | "
                f"{_pm(st['density_target'], 2)} | {_pm(st['density_lookalikes'], 2)} | "
                f"{_pm(st['target_denser'], 2)} | {st['frames'][0]:.0f} | "
                + (
                    f"{_pm(st['border'], 2)} ({st['border_uniform'][0]:.2f}) |"
                    if "border" in st
                    else "– |"
                )
            )
    return "\n".join(lines) + "\n"


def write_markdown_block(path: Path, name: str, text: str) -> None:
    """Replaces the block `name` of the Markdown file `path` (appends it when absent)."""
    begin, end = f"<!-- ablation:{name}:begin -->", f"<!-- ablation:{name}:end -->"
    old = path.read_text() if path.is_file() else ""
    block = f"{begin}\n{text}{end}"
    if begin in old and end in old:
        new = old[: old.index(begin)] + block + old[old.index(end) + len(end) :]
    else:
        new = old + ("\n" if old and not old.endswith("\n\n") else "") + block + "\n"
    files.write_text(path, new)


def write_json_entry(path: Path, name: str, entry: Mapping) -> None:
    """Sets `name` in the JSON object of `path` (other entries kept)."""
    data = json.loads(path.read_text()) if path.is_file() else {}
    data[name] = entry
    files.write_text(path, json.dumps(data, indent=1, default=list) + "\n")


# ------------------------------------------------------------------------------------- main


def run_one(config, variant: str, seed: int, out: Path, data: Path) -> dict:
    """One (variant, seed): its cached result for this config, or trains (resuming) and
    evaluates it and caches the result."""
    spec = train_spec(config, variant, seed)
    run_dir = out / "runs" / f"{variant}-seed{seed}-{key_of(spec)}"
    result_path = run_dir / f"result-{key_of({'train': spec, 'eval': config.eval.to_dict()})}.json"
    if result_path.is_file():
        return json.loads(result_path.read_text())
    saved = run_dir / "config.json"
    text = json.dumps(spec, indent=1, default=list)
    if saved.is_file() and json.loads(saved.read_text()) != json.loads(text):
        raise BenchmarkError(f"{run_dir} holds a run of another config (see its config.json)")
    files.write_text(saved, text)
    with open(run_dir / ".lock", "w") as lock:  # one process per run; released when it exits
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise BenchmarkError(f"{run_dir} is in use by another benchmark process") from None
        if result_path.is_file():  # that other process finished it meanwhile
            return json.loads(result_path.read_text())
        train_seconds = train_run(config, variant, seed, run_dir, data)
        start = time.time()
        result = {
            "variant": variant,
            "seed": seed,
            "run": run_dir.name,
            "train_seconds": train_seconds,
            **evaluate_run(config, variant, run_dir, data / "DAVIS"),
            "eval_seconds": time.time() - start,
        }
        files.write_text(result_path, json.dumps(result, indent=1))
    return result


def run(config, variants: Sequence[str], seeds: Sequence[int], out: Path) -> list[dict]:
    """Every (variant, seed) of the benchmark, with a progress bar over them."""
    data = make_data(config, out)
    runs = []
    pairs = [(variant, seed) for variant in variants for seed in seeds]
    with tqdm.tqdm(total=len(pairs), desc="ablation", unit="run", position=0) as bar:
        for variant, seed in pairs:
            bar.set_postfix_str(f"{variant} seed {seed}")
            runs.append(run_one(config, variant, seed, out, data))
            bar.update()
    return runs


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.ablation", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--out", default="~/lcm_ablation", help="cache folder (runs, data)")
    parser.add_argument(
        "--variants", default=",".join(DEFAULT_VARIANTS), help=f"{','.join(VARIANTS)} or all"
    )
    parser.add_argument("--seeds", default="0,1,2", help="comma-separated seeds")
    parser.add_argument("--set", action="append", default=[], help="config key=value")
    parser.add_argument("--name", default="default", help="label of this invocation's results")
    here = Path(__file__).resolve().parent
    parser.add_argument("--json", default=str(here / "RESULTS_ablation.json"))
    parser.add_argument("--markdown", default=str(here / "RESULTS_ablation.md"))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.set_verbosity(logging.WARNING)
    start = time.time()
    try:
        variants = parse_variants(args.variants)
        seeds = parse_seeds(args.seeds)
        config = get_config()
        apply_overrides(config, args.set)
        if config.feed not in data_configs.FEEDS:
            raise BenchmarkError(f"feed must be one of {data_configs.FEEDS}, got {config.feed!r}")
        if set(config.eval.sets.split(",")) - set(SPLITS):
            raise BenchmarkError(f"eval.sets must list {' and/or '.join(SPLITS)}")
        if not any(config.stages[stage].steps for stage in STAGES):
            raise BenchmarkError("every stage has 0 steps: nothing to train")
        runs = run(config, variants, seeds, Path(args.out).expanduser())
        summary = summarise(runs)
        command = "python -m benchmarks.ablation " + " ".join(
            [f"--variants {args.variants}", f"--seeds {args.seeds}", f"--name {args.name}"]
            + [f"--set {s}" for s in args.set]
        )
        wall = time.time() - start
        write_json_entry(
            Path(args.json),
            args.name,
            {
                "command": command,
                "config": config.to_dict(),
                "wall_seconds_this_invocation": wall,
                "machine": f"{platform.machine()}, {jax.devices()[0].device_kind}",
                "summary": summary,
                "runs": runs,
            },
        )
        header = f"### `{args.name}`\n\n`{command}`"
        write_markdown_block(Path(args.markdown), args.name, markdown(summary, header))
    except (BenchmarkError, OSError, ValueError, FloatingPointError) as e:
        print(f"error: {type(e).__name__}: {e}".splitlines()[0], file=sys.stderr)
        return 2
    print(markdown(summary, header))
    print(f"wall time {wall:.0f} s; results in {args.json} and {args.markdown}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
