"""Training loop for LCM's three stages (section 3.5), on any number of devices and hosts.

    from lcm_jax import train
    from lcm_jax.configs import lcm
    config = lcm.get_config("stage=main,data=synthetic,runlocal=True")
    state, history = train.train_and_evaluate(config, "/tmp/lcm")
    # history: [{"step": 1, "loss": ..., "loss_frame1": ..., "grad_norm": ...}, ...]

`train_and_evaluate` reads top to bottom: Mesh -> Input -> Model -> Shard -> Checkpoint ->
Update -> Eval -> Loop (big_vision's layout). The pieces a reader looks up on their own sit
above it: `check_config`, `make_mesh`, `make_optimizer`, `make_train_step`, `make_eval_step`
(the benchmarks jit the same steps). Everything a run needs is in `config` (configs/base.py
lists the fields); `lcm_jax/main.py` is the command line around it.

The state is a dict pytree {"step", "params", "batch_stats", "opt_state"}; it is created
sharded (`jax.eval_shape` gives its shapes, a rule gives each leaf a `NamedSharding`,
`jax.jit(init, out_shardings=...)` builds it in place) and saved by Orbax with the input
position and the model config (`lcm_jax.checkpoints`: `save_training_state`,
`restore_training_state`), which is what `checkpoints.load_variables` and
`load_model_config` read from a workdir.

Resuming: the workdir's latest checkpoint, else `config.init_from`, else a fresh init; the
step s batch and the step s rng (`fold_in(key(seed), s)`) depend on s only, so a run killed
and restarted repeats the losses of an uninterrupted one exactly. A checkpoint stores the
config that wrote it, and a resumed run may differ from it only in RESUMABLE_FIELDS (the
length, the bookkeeping, the mesh): `check_resume`. Checkpoints are saved every
`checkpoint_every_steps`, at the end and on SIGTERM (then the run stops).

Input: `train_and_evaluate(..., batches=fn)` takes any `fn(seed, start_step, split)` that
yields this process's rows of each global batch as NumPy (the `Batches` contract below);
without it, the input pipeline (`lcm_jax.input_pipeline.pipeline`, imported when used):
`config.data.feed="tf.data"` needs TensorFlow (the only part that does), `"numpy"` trains on
DAVIS / YouTube-VOS folders without it. Without TensorFlow (and clu), metrics go to the log
only.

Shapes at the boundary: a global batch is {frames float32 [B, 3, H, W, 3] in [0, 1],
masks float32 [B, 3, O, H, W], valid bool [B, O]}; the model returns logits
[B, 2, 1+O, H, W] for frames 1 and 2 (`lcm_jax.losses` has the objective).
"""

import json
import os
import signal
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import tqdm
from absl import logging
from jax.experimental import mesh_utils, multihost_utils
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from lcm_jax import checkpoints, files, losses
from lcm_jax.configs import base as base_config
from lcm_jax.configs.data import STAGES
from lcm_jax.inference import manifest
from lcm_jax.input_pipeline.video_io import DatasetError
from lcm_jax.model import LCM, build_model, init_variables

MODEL_AXIS = "model"
BATCH_KEYS = ("frames", "masks", "valid")

# batches(seed, start_step, split) -> iterator of host-local batches {frames float32
# [b, 3, H, W, 3], masks float32 [b, 3, O, H, W], valid bool [b, O]} (NumPy), b =
# config.batch_size // jax.process_count(), (H, W) = config.data.crop; split "train" or
# config.data.eval_split. The i-th batch yielded (i = 0, 1, ...) feeds step start_step + i + 1
# and must depend only on (seed, start_step + i, the process): a resumed run repeats it.
Batches = Callable[[int, int, str], Iterator[Mapping[str, np.ndarray]]]


class ConfigError(ValueError):
    """The config, the data, the workdir or `init_from` cannot be used; raised before
    anything is written."""


class NonFiniteError(FloatingPointError):
    """The loss or the gradient norm of a step is NaN or Inf; the run stops without saving."""


# ---------------------------------------------------------------- Config
# field -> (test, what it must be), where the field is set; the model's choices (backbone,
# dtype, ...) are checked when it is built.
_VALUE_RULES = {
    "num_train_steps": (lambda v: v >= 1, ">= 1"),
    "batch_size": (lambda v: v >= 1, ">= 1"),
    "grad_accum_steps": (lambda v: v >= 1, ">= 1"),
    "seed": (lambda v: v >= 0, ">= 0"),
    "data_seed": (lambda v: v >= 0, ">= 0"),
    "eval_data_seed": (lambda v: v >= 0, ">= 0"),
    "log_every_steps": (lambda v: v >= 1, ">= 1"),
    "checkpoint_every_steps": (lambda v: v >= 1, ">= 1"),
    "keep_checkpoints": (lambda v: v >= 1, ">= 1"),
    "eval_every_steps": (lambda v: v >= 0, ">= 0 (0: no eval)"),
    "num_eval_batches": (lambda v: v >= 1, ">= 1"),
    "optimizer.learning_rate": (lambda v: v > 0, "> 0"),
    "optimizer.warmup_steps": (lambda v: v >= 0, ">= 0"),
    "optimizer.weight_decay": (lambda v: v >= 0, ">= 0"),
    "optimizer.grad_clip_norm": (lambda v: v >= 0, ">= 0 (0: off)"),
    "optimizer.momentum": (lambda v: 0 <= v < 1, "in [0, 1)"),
    "optimizer.b1": (lambda v: 0 <= v < 1, "in [0, 1)"),
    "optimizer.b2": (lambda v: 0 <= v < 1, "in [0, 1)"),
    "optimizer.eps": (lambda v: v > 0, "> 0"),
    "loss.top_p": (lambda v: 0 < v <= 1, "in (0, 1]"),
    "loss.start_warm": (lambda v: v >= 0, ">= 0"),
    "model.width": (lambda v: v > 0, "> 0"),
    "model.max_objects": (lambda v: v >= 1, ">= 1"),
    "model.pgm_top_k": (lambda v: v >= 1, ">= 1"),
    "model.orm_reduction": (lambda v: v >= 1, ">= 1"),
    "model.grm_chunk_size": (lambda v: v >= 0, ">= 0 (0: plain read)"),
    "data.crop": (
        lambda v: len(v) == 2 and all(s >= 16 and s % 16 == 0 for s in v),
        "(H, W), each a positive multiple of 16 (the model's stride)",
    ),
    "data.min_skip": (lambda v: v >= 1, ">= 1"),
    "data.prefetch": (lambda v: v >= 0, ">= 0"),
    "data.num_parallel_calls": (lambda v: v == -1 or v >= 1, "-1 (autotune) or >= 1"),
}


def check_config(config: ml_collections.ConfigDict) -> None:
    """Raises ConfigError for fields that configs/base.py does not define, or bad values.

    Values that cannot train (num_train_steps <= 0, a crop the model's stride does not
    divide, ...) are rejected here; the data's paths are checked by the input pipeline.
    """

    def unknown(c, ref, prefix):
        for key in c.keys():
            if key not in ref:
                yield prefix + key
            elif isinstance(ref[key], ml_collections.ConfigDict) and key not in ("model", "data"):
                yield from unknown(c[key], ref[key], f"{prefix}{key}.")

    bad = list(unknown(config, base_config.get_config(), "config."))
    if bad:
        raise ConfigError(f"unknown config fields {bad} (configs/base.py lists the known ones)")
    if config.stage not in STAGES:
        raise ConfigError(f"config.stage must be one of {STAGES}, got {config.stage!r}")
    if config.optimizer.name not in ("adam", "sgd"):
        raise ConfigError(
            f"config.optimizer.name must be 'adam' or 'sgd', got {config.optimizer.name!r}"
        )
    if config.optimizer.schedule not in ("constant", "cosine", "linear"):
        raise ConfigError(
            "config.optimizer.schedule must be constant|cosine|linear, got "
            f"{config.optimizer.schedule!r}"
        )
    if config.data.get("stage", config.stage) != config.stage:
        raise ConfigError(
            f"config.data.stage={config.data.stage!r} differs from config.stage="
            f"{config.stage!r}; build it with configs/data.py:<data>,{config.stage}"
        )
    if config.data.get("max_objects", config.model.max_objects) != config.model.max_objects:
        raise ConfigError(
            f"config.data.max_objects={config.data.max_objects} differs from "
            f"config.model.max_objects={config.model.max_objects}"
        )
    for name, (ok, must_be) in _VALUE_RULES.items():
        *parents, leaf = name.split(".")
        node = config
        for p in parents:
            node = node[p]
        if leaf in node and not ok(node[leaf]):
            raise ConfigError(f"config.{name} must be {must_be}, got {node[leaf]!r}")
    if config.loss.start_warm > config.loss.end_warm:
        raise ConfigError(
            f"config.loss.start_warm={config.loss.start_warm} is after "
            f"config.loss.end_warm={config.loss.end_warm}"
        )
    if config.data.get("max_skip", 1) < config.data.get("min_skip", 1):
        raise ConfigError(
            f"config.data.max_skip={config.data.max_skip} is below "
            f"config.data.min_skip={config.data.min_skip}"
        )
    try:
        build_model(config.model)
    except ValueError as e:
        raise ConfigError(f"config.model: {e}") from e


def check_processes_agree(config: ml_collections.ConfigDict, workdir: str) -> None:
    """With several processes, raises ConfigError on every one of them when they were started
    with different configs or workdirs, naming each field that differs from process 0's.

    Each process contributes its config and workdir as JSON (all processes, one collective).
    """
    if jax.process_count() == 1:
        return
    mine = {"workdir": workdir, "config": json.loads(config.to_json())}
    payload = np.frombuffer(json.dumps(mine, sort_keys=True).encode(), np.uint8)
    sizes = multihost_utils.process_allgather(np.array([payload.size], np.int32))
    padded = np.zeros(int(sizes.max()), np.uint8)
    padded[: payload.size] = payload
    gathered = multihost_utils.process_allgather(padded)

    def flat(tree, prefix=""):
        if not isinstance(tree, dict):
            return {prefix: tree}
        return {k: v for key, sub in tree.items() for k, v in flat(sub, f"{prefix}.{key}").items()}

    configs = [
        flat(json.loads(row[:n].tobytes())) for row, n in zip(gathered, sizes.ravel(), strict=True)
    ]
    differences = [
        f"process {i} has {name.lstrip('.')}={theirs.get(name)!r}, process 0 "
        f"{configs[0].get(name)!r}"
        for i, theirs in enumerate(configs[1:], start=1)
        for name in sorted(set(theirs) | set(configs[0]))
        if theirs.get(name) != configs[0].get(name)
    ]
    if differences:
        raise ConfigError(
            "the processes of this run were started with different settings ("
            + "; ".join(differences[:10])
            + ("; ..." if len(differences) > 10 else "")
            + "): start every process with the same command"
        )


# Fields a run resumed from a workdir's checkpoint may set differently from the run that wrote
# it: how long to train, how often to log, save and evaluate, the progress bar, how the same
# batch is spread over devices, a memory-only model knob, and where the same data is read
# from. Any other difference (model, stage, optimizer, learning rate, batch size, data, seeds,
# init_from, ...) stops the run: `check_resume`.
RESUMABLE_FIELDS = (
    "num_train_steps",
    "log_every_steps",
    "checkpoint_every_steps",
    "keep_checkpoints",
    "eval_every_steps",
    "num_eval_batches",
    "eval_data_seed",
    "progress_bar",
    "mesh",
    "grad_accum_steps",
    "model.grm_chunk_size",
    "data.manual_dir",
    "data.data_dir",
    "data.prepare_if_missing",
    "data.feed",
    "data.num_parallel_calls",
    "data.prefetch",
    "data.eval_split",
)


def check_resume(config: ml_collections.ConfigDict, manager, workdir: str) -> None:
    """Raises ConfigError, naming each field, when `manager`'s latest checkpoint was written
    with settings that a resumed run may not change (all but RESUMABLE_FIELDS; a field the
    stored config lacks, from an older version, is not compared). A checkpoint from before the
    training config was stored is compared on its model config only."""
    latest = manager.latest_step()
    if latest is None:
        return
    try:
        stored, stored_model = checkpoints.stored_training_configs(manager, latest)
    except checkpoints.CheckpointError as e:
        raise ConfigError(str(e)) from e
    current = json.loads(config.to_json())
    if stored is None:
        if stored_model is None:
            return
        stored, current = {"model": stored_model}, {"model": current["model"]}
    old, new = manifest.flatten(stored), manifest.flatten(current)
    differing = [
        f"{name}: {json.dumps(old[name])} -> {json.dumps(new[name])}"
        for name in sorted(set(old) & set(new))
        if old[name] != new[name] and name not in RESUMABLE_FIELDS
    ]
    if differing:
        raise ConfigError(
            f"workdir {workdir} holds a run with other settings (checkpoint {latest}: "
            + "; ".join(differing)
            + "): run with its settings to resume it, or use another --workdir (with "
            "--config.init_from to start from its weights); a resumed run may change only "
            "the steps, the log/checkpoint/eval settings, the mesh, grad_accum_steps and the "
            "data's folders"
        )
    if (
        old.get("num_train_steps") not in (None, config.num_train_steps)
        and config.optimizer.schedule != "constant"
    ):
        logging.warning(
            "num_train_steps changed from %s to %d: the %s learning rate schedule of the "
            "remaining steps follows the new count.",
            old["num_train_steps"], config.num_train_steps, config.optimizer.schedule,
        )  # fmt: skip


# ---------------------------------------------------------------- Mesh
def make_mesh(axes) -> Mesh:
    """A Mesh from config.mesh, e.g. (("data", -1),) or (("data", -1), ("model", 2)).

    -1 takes the remaining devices; without -1 the mesh may use the first k of the devices
    (single process only, e.g. (("data", 1),) for a one-device run)."""
    pairs = all(
        isinstance(a, tuple | list) and len(a) == 2 and isinstance(a[0], str) and type(a[1]) is int
        for a in axes
    )
    if not axes or not pairs:
        raise ConfigError(
            f"config.mesh must be axes (name, size), e.g. (('data', -1),), got {tuple(axes)}"
        )
    names = tuple(name for name, _ in axes)
    sizes = [size for _, size in axes]
    n = jax.device_count()
    if sizes.count(-1) > 1 or any(s == 0 or s < -1 for s in sizes):
        raise ConfigError(f"config.mesh {axes}: sizes must be >= 1, with at most one -1")
    known = int(np.prod([s for s in sizes if s != -1]))
    if n % known:
        raise ConfigError(f"config.mesh {axes} does not divide over {n} devices")
    sizes = [n // known if s == -1 else s for s in sizes]
    k = int(np.prod(sizes))
    if k != n and jax.process_count() > 1:
        raise ConfigError(f"config.mesh {axes} uses {k} of {n} devices; use all of them (-1)")
    return Mesh(mesh_utils.create_device_mesh(sizes, devices=jax.devices()[:k]), names)


def state_sharding_rule(mesh: Mesh) -> Callable[[Any], NamedSharding]:
    """Leaf -> sharding: replicated, or (with a "model" axis) split on its largest dimension
    that the axis divides (parameters and optimiser moments alike, ZeRO-3 style)."""
    model_size = dict(mesh.shape).get(MODEL_AXIS, 1)

    def rule(leaf):
        spec = [None] * len(leaf.shape)
        if model_size > 1:
            dims = [d for d in np.argsort(leaf.shape)[::-1] if leaf.shape[d] % model_size == 0]
            if dims and leaf.shape[dims[0]] >= model_size:
                spec[dims[0]] = MODEL_AXIS
        return NamedSharding(mesh, P(*spec))

    return rule


# ---------------------------------------------------------------- Input
def pipeline_batches(config: ml_collections.ConfigDict) -> Batches:
    """The input pipeline (`lcm_jax.input_pipeline.pipeline`; with config.data.feed="tf.data"
    TensorFlow is imported here) of this process: its share of the videos,
    config.batch_size // process_count clips a batch.

    Opens (and, on a single process, prepares when allowed) the training and eval splits now,
    once for the whole run, so that missing data is a ConfigError before anything is written.
    """
    from lcm_jax.input_pipeline import pipeline

    index, count = jax.process_index(), jax.process_count()
    splits = {"train", config.data.eval_split} if config.eval_every_steps else {"train"}
    try:
        shares = {s: pipeline.process_share(config.data, s, index, count) for s in sorted(splits)}
    except DatasetError as e:
        raise ConfigError(f"config.data: {e}") from e

    def batches(seed: int, start_step: int, split: str) -> Iterator[dict[str, np.ndarray]]:
        return pipeline.create_train_iterator(
            config.data,
            stage=config.stage,
            batch_size=config.batch_size // count,
            seed=seed,
            start_step=start_step,
            process_index=index,
            process_count=count,
            split=split,
            share=shares[split],
        )

    return batches


# ---------------------------------------------------------------- Model
def make_optimizer(
    config: ml_collections.ConfigDict,
) -> tuple[optax.GradientTransformation, optax.Schedule]:
    """The stage's optimiser: [clip by global norm] -> [+ weight_decay * params] -> Adam or
    SGD with momentum -> learning-rate schedule (linear warm-up, then constant/cosine/linear
    decay over the remaining steps)."""
    c = config.optimizer
    decay_steps = max(config.num_train_steps - c.warmup_steps, 1)
    schedule = {
        "constant": lambda: optax.constant_schedule(c.learning_rate),
        "cosine": lambda: optax.cosine_decay_schedule(c.learning_rate, decay_steps),
        "linear": lambda: optax.linear_schedule(c.learning_rate, 0.0, decay_steps),
    }[c.schedule]()
    if c.warmup_steps:
        warmup = optax.linear_schedule(0.0, c.learning_rate, c.warmup_steps)
        schedule = optax.join_schedules([warmup, schedule], [c.warmup_steps])
    chain = []
    if c.grad_clip_norm:
        chain.append(optax.clip_by_global_norm(c.grad_clip_norm))
    if c.weight_decay:
        chain.append(optax.add_decayed_weights(c.weight_decay))
    if c.name == "adam":
        chain.append(optax.scale_by_adam(b1=c.b1, b2=c.b2, eps=c.eps))
    else:
        chain.append(optax.trace(decay=c.momentum, nesterov=c.nesterov))
    chain.append(optax.scale_by_learning_rate(schedule))
    return optax.chain(*chain), schedule


def init_state(variables: Mapping[str, Any], tx: optax.GradientTransformation) -> dict:
    """The train state at step 0: `variables`' params and batch_stats, a fresh optimiser."""
    return {
        "step": jnp.zeros((), jnp.int32),
        "params": variables["params"],
        "batch_stats": variables["batch_stats"],
        "opt_state": tx.init(variables["params"]),
    }


# ---------------------------------------------------------------- Update
def make_train_step(
    config: ml_collections.ConfigDict,
    net: LCM,
    tx: optax.GradientTransformation,
    schedule: optax.Schedule,
    batch_sharding: NamedSharding | None = None,
) -> Callable[[dict, dict], tuple[dict, dict]]:
    """`train_step(state, batch) -> (state, metrics)`, one optimiser update (to be jitted).

    The global batch (module docstring) is split into config.grad_accum_steps micro-batches
    (clips i, i + accum, ...: a local reshape of each device's rows, kept on
    `batch_sharding` when given) whose gradients are averaged in float32: the update of the
    whole batch at once. Randomness: fold_in(key(config.seed), step). metrics: float32
    scalars loss, loss_frame1, loss_frame2, grad_norm, learning_rate (before the update).
    """
    accum = config.grad_accum_steps

    def loss_fn(params, batch_stats, batch, step_rng, bootstrap_p):
        variables = {"params": params, "batch_stats": batch_stats}
        args = (batch["frames"], batch["masks"], batch["valid"])
        if config.model.frozen_bn:
            logits = net.apply(variables, *args, train=True, rngs={"dropout": step_rng})
        else:
            logits, updates = net.apply(
                variables, *args, train=True, rngs={"dropout": step_rng}, mutable=["batch_stats"]
            )
            batch_stats = updates["batch_stats"]
        loss, per_frame = losses.training_loss(
            logits, batch["masks"], batch["valid"], bootstrap_p=bootstrap_p
        )
        return loss, (per_frame, batch_stats)

    grad_fn = jax.value_and_grad(loss_fn, has_aux=True)

    def split(x):
        x = x.reshape(x.shape[0] // accum, accum, *x.shape[1:])
        if batch_sharding is not None:
            x = jax.lax.with_sharding_constraint(x, batch_sharding)
        return jnp.swapaxes(x, 0, 1)

    def train_step(state, batch):
        step = state["step"]
        step_rng = jax.random.fold_in(jax.random.key(config.seed), step)
        bootstrap_p = 1.0
        if config.loss.bootstrap:
            bootstrap_p = losses.bootstrap_fraction(
                step, config.loss.start_warm, config.loss.end_warm, config.loss.top_p
            )
        params = state["params"]
        if accum == 1:
            (loss, (per_frame, batch_stats)), grads = grad_fn(
                params, state["batch_stats"], batch, step_rng, bootstrap_p
            )
        else:

            def micro_step(carry, xs):
                i, micro = xs
                grads, loss, per_frame, batch_stats = carry
                (micro_loss, (micro_per_frame, batch_stats)), micro_grads = grad_fn(
                    params, batch_stats, micro, jax.random.fold_in(step_rng, i), bootstrap_p
                )
                grads = jax.tree.map(jnp.add, grads, micro_grads)
                carry = (grads, loss + micro_loss, per_frame + micro_per_frame, batch_stats)
                return carry, None

            zeros = jax.tree.map(jnp.zeros_like, params)
            init = (zeros, jnp.zeros(()), jnp.zeros((2,)), state["batch_stats"])
            micro_batches = (jnp.arange(accum), jax.tree.map(split, batch))
            (grads, loss, per_frame, batch_stats), _ = jax.lax.scan(micro_step, init, micro_batches)
            grads = jax.tree.map(lambda g: g / accum, grads)
            loss, per_frame = loss / accum, per_frame / accum
        updates, opt_state = tx.update(grads, state["opt_state"], params)
        new = {
            "step": step + 1,
            "params": optax.apply_updates(params, updates),
            "batch_stats": batch_stats,
            "opt_state": opt_state,
        }
        metrics = {
            "loss": loss,
            "loss_frame1": per_frame[0],
            "loss_frame2": per_frame[1],
            "grad_norm": optax.global_norm(grads),
            "learning_rate": schedule(step),
        }
        return new, metrics

    return train_step


# ---------------------------------------------------------------- Eval
def make_eval_step(net: LCM) -> Callable[[dict, dict], tuple[jax.Array, jax.Array]]:
    """`eval_step(state, batch) -> (loss, per-frame losses [2])`: plain CE of the clips
    (no bootstrapping), BatchNorm in inference mode (to be jitted)."""

    def eval_step(state, batch):
        variables = {"params": state["params"], "batch_stats": state["batch_stats"]}
        logits = net.apply(variables, batch["frames"], batch["masks"], batch["valid"])
        return losses.training_loss(logits, batch["masks"], batch["valid"])

    return eval_step


# ---------------------------------------------------------------- Metrics
class _LogWriter:
    """The metric writer where clu (and so TensorFlow) is not installed: log lines only."""

    def write_scalars(self, step: int, scalars: Mapping[str, float]) -> None:
        logging.info("[%d] %s", step, ", ".join(f"{k}={v:.6g}" for k, v in scalars.items()))

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass


def make_metric_writer(workdir: str, num_train_steps: int):
    """(writer, progress hook): TensorBoard events and log lines from process 0, log lines
    from the others, and clu's ReportProgress (steps/s, ETA); log lines and no report where
    clu or TensorFlow is not installed. Creates `workdir`."""
    try:
        from clu import metric_writers, periodic_actions
    except ImportError as e:
        logging.warning("No TensorBoard events (%s): metrics go to the log only.", e)
        return _LogWriter(), lambda step: None
    writer = metric_writers.create_default_writer(workdir, just_logging=jax.process_index() > 0)
    return writer, periodic_actions.ReportProgress(num_train_steps=num_train_steps, writer=writer)


# ---------------------------------------------------------------- Train
def train_and_evaluate(
    config: ml_collections.ConfigDict, workdir: str, *, batches: Batches | None = None
) -> tuple[dict[str, Any], list[dict[str, float]]]:
    """Trains (resuming from `workdir` if it holds checkpoints).

    `batches` feeds the run (the `Batches` contract at the top of this module); by default
    the tf.data pipeline of `config.data` (`pipeline_batches`).

    Returns the final state (sharded arrays) and the history of what was written to the
    metric writers: one dict per log or eval step, with "step" and the metrics.

    Raises ConfigError before anything is written for a bad config, data, workdir or
    init_from (with several processes, also for processes started with different settings),
    and NonFiniteError (naming the step) when a step's loss or gradient norm is not finite;
    the workdir then keeps its last good checkpoint.
    """
    check_config(config)
    workdir = workdir if "://" in workdir else os.path.abspath(workdir)  # gs://... as is
    if "://" not in workdir:
        try:  # the metric writer creates it once the data is loaded
            files.check_writable(workdir, folder=True)
        except OSError as e:
            raise ConfigError(f"workdir {files.describe(e)}") from e
    check_processes_agree(config, workdir)
    # A workdir's checkpoints must come from this config (but RESUMABLE_FIELDS): checked
    # before the data is read or prepared.
    manager = checkpoints.training_manager(
        os.path.join(workdir, "checkpoints"), config.keep_checkpoints
    )
    check_resume(config, manager, workdir)

    # ---------------------------------------------------------------- Mesh
    mesh = make_mesh(config.mesh)
    n_dev, accum = mesh.size, config.grad_accum_steps
    if config.batch_size % (n_dev * accum):
        raise ConfigError(
            f"config.batch_size={config.batch_size} does not divide over {n_dev} devices "
            f"(of {jax.process_count()} process(es)) x config.grad_accum_steps={accum}; use a "
            f"multiple of {n_dev * accum}"
        )
    replicated = NamedSharding(mesh, P())
    batch_sharding = NamedSharding(mesh, P(mesh.axis_names))  # the batch over every device

    # ---------------------------------------------------------------- Input
    # Each process reads its own rows of the global batch; the batch at step s depends only
    # on (data_seed, s, the process), so the data position is the step.
    batches = batches or pipeline_batches(config)

    def global_batches(seed: int, start_step: int, split: str) -> Iterator[dict[str, jax.Array]]:
        for local in batches(seed, start_step, split):
            yield {
                k: jax.make_array_from_process_local_data(batch_sharding, np.asarray(local[k]))
                for k in BATCH_KEYS
            }

    # ---------------------------------------------------------------- Model
    # Randomness is a function of config.seed: parameters from key(seed), step s from
    # fold_in(key(seed), s). Keys are made inside the jitted functions (no host-local inputs).
    net = build_model(config.model)
    tx, schedule = make_optimizer(config)

    def fresh_variables() -> dict[str, Any]:
        return init_variables(net, jax.random.key(config.seed))

    # ---------------------------------------------------------------- Shard
    try:
        abstract_state = jax.eval_shape(lambda: init_state(fresh_variables(), tx))
    except ValueError as e:  # the model's own checks of its choices
        raise ConfigError(f"config.model: {e}") from e
    state_shardings = jax.tree.map(state_sharding_rule(mesh), abstract_state)
    abstract_sharded = jax.tree.map(
        lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s),
        abstract_state,
        state_shardings,
    )

    # ---------------------------------------------------------------- Checkpoint
    # Init order: the workdir's latest checkpoint (`manager`, above) -> config.init_from ->
    # scratch. Every check runs before anything is written to the workdir.

    def position(step: int) -> dict[str, int]:
        """The input position saved with a checkpoint."""
        return {
            "step": step,
            "data_seed": config.data_seed,
            "batch_size": config.batch_size,
            "process_count": jax.process_count(),
        }

    try:
        restored = checkpoints.restore_training_state(manager, abstract_sharded)
    except checkpoints.CheckpointError as e:
        raise ConfigError(str(e)) from e
    if restored is not None:
        state, data_position = restored
        start_step = int(data_position["step"])
        logging.info("Resuming from %s at step %d.", manager.directory, start_step)
        if start_step >= config.num_train_steps:
            logging.warning(
                "%s is at step %d and num_train_steps is %d: nothing to train (a larger "
                "--config.num_train_steps trains longer).",
                manager.directory, start_step, config.num_train_steps,
            )  # fmt: skip
        if data_position != position(start_step):
            logging.warning(
                "The input differs from the checkpoint's (%s, now %s): the batches after step "
                "%d are not those of an uninterrupted run.",
                data_position, position(start_step), start_step,
            )  # fmt: skip
    elif config.init_from:
        try:
            variables = checkpoints.load_init_from(
                config.init_from,
                {k: abstract_state[k] for k in ("params", "batch_stats")},
                fresh_variables=lambda: jax.device_get(jax.jit(fresh_variables)()),
            )
        except checkpoints.CheckpointError as e:
            raise ConfigError(f"config.init_from={e}") from e
        variables = jax.tree.map(
            lambda x, s: jax.make_array_from_callback(x.shape, s, lambda i, x=x: x[i]),
            variables,
            {k: state_shardings[k] for k in variables},
        )
        state = jax.jit(lambda v: init_state(v, tx), out_shardings=state_shardings)(variables)
        start_step = 0
        logging.info("Initialised from %s.", config.init_from)
    else:
        state = jax.jit(lambda: init_state(fresh_variables(), tx), out_shardings=state_shardings)()
        start_step = 0

    saved_config = json.loads(config.to_json())  # what `check_resume` compares with

    def save(step: int) -> None:
        checkpoints.save_training_state(
            manager, step, state, position(step), config.model.to_dict(), saved_config
        )

    # ---------------------------------------------------------------- Update
    train_step = jax.jit(
        make_train_step(config, net, tx, schedule, batch_sharding),
        in_shardings=(state_shardings, batch_sharding),
        out_shardings=(state_shardings, replicated),
        donate_argnums=(0,),
    )

    # ---------------------------------------------------------------- Eval
    # An eval loss: plain CE on a fixed set of clips drawn with eval_data_seed from
    # config.data.eval_split (DAVIS val where DAVIS is in the data, else training videos);
    # J&F on whole videos is lcm_jax/evaluate.py's job.
    eval_step = jax.jit(
        make_eval_step(net),
        in_shardings=(state_shardings, batch_sharding),
        out_shardings=replicated,
    )
    eval_batches = []

    def evaluate(state) -> dict[str, float]:
        if not eval_batches:
            it = global_batches(config.eval_data_seed, 0, config.data.eval_split)
            eval_batches.extend(next(it) for _ in range(config.num_eval_batches))
        results = [eval_step(state, b) for b in eval_batches]
        loss = np.mean([float(r[0]) for r in results])
        per_frame = np.mean([np.asarray(r[1]) for r in results], axis=0)
        return {
            "eval_loss": float(loss),
            "eval_loss_frame1": float(per_frame[0]),
            "eval_loss_frame2": float(per_frame[1]),
        }

    # ---------------------------------------------------------------- Loop
    writer, progress = make_metric_writer(workdir, config.num_train_steps)
    # Preemption: one process catches SIGTERM itself; with several, JAX's preemption sync
    # point (its own SIGTERM handler, via manager.reached_preemption) makes all stop together.
    preempted = []
    single_process = jax.process_count() == 1
    if single_process:
        previous_handler = signal.signal(signal.SIGTERM, lambda *_: preempted.append(True))
    train_iter = global_batches(config.data_seed, start_step, "train")
    bar = tqdm.tqdm(
        total=config.num_train_steps,
        initial=start_step,
        desc=config.stage,
        unit="step",
        dynamic_ncols=True,
        disable=not config.progress_bar or jax.process_index() > 0,
    )
    pending = None  # (step, metrics) whose finiteness is not checked yet
    history = []

    def write(step: int, scalars: Mapping[str, float]) -> None:
        writer.write_scalars(step, scalars)
        writer.flush()
        history.append({"step": step, **scalars})

    last_log = (start_step, time.perf_counter())

    def check_finite(step: int, metrics: Mapping[str, jax.Array]) -> None:
        loss, grad_norm = float(metrics["loss"]), float(metrics["grad_norm"])
        if not (np.isfinite(loss) and np.isfinite(grad_norm)):
            raise NonFiniteError(
                f"step {step}: loss={loss}, grad_norm={grad_norm} is not finite; stopped "
                f"without saving, the last good checkpoint is step {manager.latest_step()} "
                f"in {manager.directory}"
            )

    try:
        for step in range(start_step + 1, config.num_train_steps + 1):
            with jax.profiler.StepTraceAnnotation("train", step_num=step):
                state, metrics = train_step(state, next(train_iter))
            # Check the previous step now (the current one is already dispatched).
            if pending is not None:
                check_finite(*pending)
            pending = (step, metrics)
            progress(step)
            bar.update(1)
            stop = bool(preempted) or manager.reached_preemption(step)
            last = step == config.num_train_steps
            if step % config.log_every_steps == 0 or last:
                check_finite(step, metrics)
                pending = None
                now = time.perf_counter()
                clips_per_sec = (step - last_log[0]) * config.batch_size / (now - last_log[1])
                last_log = (step, now)
                write(step, {**jax.tree.map(float, metrics), "clips_per_sec": clips_per_sec})
                bar.set_postfix(
                    loss=f"{float(metrics['loss']):.3f}", clips_s=f"{clips_per_sec:.1f}"
                )
            if step % config.checkpoint_every_steps == 0 or last or stop:
                check_finite(step, metrics)
                pending = None
                save(step)
            if config.eval_every_steps and (step % config.eval_every_steps == 0 or last):
                write(step, evaluate(state))
            if stop:
                logging.warning(
                    "Preempted: saved step %d to %s, stopping.", step, manager.directory
                )
                break
        if pending is not None:
            check_finite(*pending)
    finally:
        if single_process:
            signal.signal(signal.SIGTERM, previous_handler)
        bar.close()
        manager.wait_until_finished()
        manager.close()
        writer.close()
    return state, history
