"""Training loop for LCM's three stages (section 3.5), on any number of devices and hosts.

    from lcm_jax import train
    from lcm_jax.configs import lcm
    config = lcm.get_config("stage=main,data=synthetic,runlocal=True")
    state, history = train.train_and_evaluate(config, "/tmp/lcm")
    # history: [{"step": 1, "loss": ..., "loss_frame1": ..., "grad_norm": ...}, ...]

One function, read top to bottom: Mesh -> Input -> Model -> Shard -> Update -> Checkpoint ->
Eval -> Loop (big_vision's layout). Everything a run needs is in `config` (configs/base.py
lists the fields); `lcm_jax/main.py` is the command line around it.

The state is a dict pytree {"step", "params", "batch_stats", "opt_state"}; it is created
sharded (`jax.eval_shape` gives its shapes, a rule gives each leaf a `NamedSharding`,
`jax.jit(init, out_shardings=...)` builds it in place) and saved by Orbax as the item "state"
(with the JSON items "data", the input position, and "model_config", the model config), which
is what `lcm_jax.checkpoints.load_variables` and `load_model_config` read from a workdir.

Resuming: the workdir's latest checkpoint, else `config.init_from`, else a fresh init; the
step s batch and the step s rng (`fold_in(key(seed), s)`) depend on s only, so a run killed
and restarted repeats the losses of an uninterrupted one exactly. Checkpoints are saved every
`checkpoint_every_steps`, at the end and on SIGTERM (then the run stops).

Shapes at the boundary: a global batch is {frames float32 [B, 3, H, W, 3] in [0, 1],
masks float32 [B, 3, O, H, W], valid bool [B, O]}; the model returns logits
[B, 2, 1+O, H, W] for frames 1 and 2 (`lcm_jax.losses` has the objective).
"""

import functools
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
import orbax.checkpoint as ocp
import tqdm
from absl import logging
from clu import metric_writers, periodic_actions
from jax.experimental import mesh_utils
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from lcm_jax import checkpoints, losses
from lcm_jax.configs import base as base_config
from lcm_jax.input_pipeline import pipeline
from lcm_jax.model import build_model

STAGES = ("pretrain", "main", "sequence")
MODEL_AXIS = "model"
# Spatial size of the dummy clip that `net.init` sees; parameter shapes do not depend on it.
_INIT_SIZE = 64


class ConfigError(ValueError):
    """The config, the workdir or `init_from` cannot be used; raised before any step runs."""


class NonFiniteError(FloatingPointError):
    """The loss or the gradient norm of a step is NaN or Inf; the run stops without saving."""


def check_config(config: ml_collections.ConfigDict) -> None:
    """Raises ConfigError for fields that configs/base.py does not define, or bad values.

    `config.model` and `config.data` are checked by `build_model` and the input pipeline.
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
    for name in (
        "batch_size",
        "grad_accum_steps",
        "log_every_steps",
        "checkpoint_every_steps",
        "keep_checkpoints",
    ):
        if config[name] < 1:
            raise ConfigError(f"config.{name} must be >= 1, got {config[name]}")


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


def make_mesh(axes) -> Mesh:
    """A Mesh from config.mesh, e.g. (("data", -1),) or (("data", -1), ("model", 2)).

    -1 takes the remaining devices; without -1 the mesh may use the first k of the devices
    (single process only, e.g. (("data", 1),) for a one-device run)."""
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


def tree_mismatches(expected: Any, found: Any) -> list[str]:
    """Paths whose shape differs, or which one of the two trees lacks ("path: expected X,
    found Y"). Leaves need a `.shape` (arrays, ShapeDtypeStructs, Orbax array metadata)."""

    def shapes(tree):
        flat = jax.tree_util.tree_flatten_with_path(tree)[0]
        return {
            "/".join(
                str(getattr(k, "key", getattr(k, "name", getattr(k, "idx", k)))) for k in path
            ): tuple(leaf.shape)
            for path, leaf in flat
        }

    want, have = shapes(expected), shapes(found)

    def describe(p):
        if p not in have:
            return f"{p}: expected {want[p]}, found nothing"
        if p not in want:
            return f"{p}: not in the model, found {have[p]}"
        return f"{p}: expected {want[p]}, found {have[p]}"

    paths = sorted(set(want) | set(have), key=lambda p: (not p.startswith("params"), p))
    return [describe(p) for p in paths if want.get(p) != have.get(p)]


def _raise_if_mismatched(expected: Any, found: Any, where: str) -> None:
    bad = tree_mismatches(expected, found)
    if bad:
        listing = "\n  ".join(bad[:50]) + ("\n  ..." if len(bad) > 50 else "")
        raise ConfigError(
            f"{where} does not match the configured model "
            f"({len(bad)} mismatched parameters):\n  {listing}"
        )


def train_and_evaluate(
    config: ml_collections.ConfigDict, workdir: str
) -> tuple[dict[str, Any], list[dict[str, float]]]:
    """Trains (resuming from `workdir` if it holds checkpoints).

    Returns the final state (sharded arrays) and the history of what was written to the
    metric writers: one dict per log or eval step, with "step" and the metrics.

    Raises ConfigError before any step for a bad config, workdir or init_from, and
    NonFiniteError (naming the step) when a step's loss or gradient norm is not finite; the
    workdir then keeps its last good checkpoint.
    """
    check_config(config)
    workdir = os.path.abspath(workdir)

    # ---------------------------------------------------------------- Mesh
    mesh = make_mesh(config.mesh)
    batch_axes = mesh.axis_names  # the batch is split over every device
    n_dev, accum = mesh.size, config.grad_accum_steps
    if config.batch_size % (n_dev * accum):
        raise ConfigError(
            f"config.batch_size={config.batch_size} does not divide over {n_dev} devices x "
            f"config.grad_accum_steps={accum}; use a multiple of {n_dev * accum}"
        )
    replicated = NamedSharding(mesh, P())
    batch_sharding = NamedSharding(mesh, P(batch_axes))

    # ---------------------------------------------------------------- Input
    # Each process reads its own slice of the global batch; the batch at step s depends only
    # on (data_seed, s, process_index), so the data position is the step.
    local_batch_size = config.batch_size // jax.process_count()

    def input_iterator(
        seed: int, start_step: int, split: str = "train"
    ) -> Iterator[dict[str, jax.Array]]:
        it = pipeline.create_train_iterator(
            config.data,
            stage=config.stage,
            batch_size=local_batch_size,
            seed=seed,
            start_step=start_step,
            process_index=jax.process_index(),
            process_count=jax.process_count(),
            split=split,
        )
        for local in it:
            yield {
                k: jax.make_array_from_process_local_data(batch_sharding, np.asarray(v))
                for k, v in local.items()
            }

    # ---------------------------------------------------------------- Model
    net = build_model(config.model)
    tx, schedule = make_optimizer(config)
    n_obj = config.model.max_objects

    # Randomness is a function of config.seed: parameters from key(seed), step s from
    # fold_in(key(seed), s). Keys are made inside the jitted functions (no host-local inputs).
    def init_variables() -> dict[str, Any]:
        s = _INIT_SIZE
        variables = net.init(
            jax.random.key(config.seed),
            jnp.zeros((1, 3, s, s, 3)),
            jnp.zeros((1, 3, n_obj, s, s)),
            jnp.ones((1, n_obj), bool),
        )
        return {"params": variables["params"], "batch_stats": variables.get("batch_stats", {})}

    def init_state() -> dict[str, Any]:
        variables = init_variables()
        return new_state(variables["params"], variables["batch_stats"])

    def new_state(params, batch_stats) -> dict[str, Any]:
        return {
            "step": jnp.zeros((), jnp.int32),
            "params": params,
            "batch_stats": batch_stats,
            "opt_state": tx.init(params),
        }

    # ---------------------------------------------------------------- Shard
    abstract_state = jax.eval_shape(init_state)
    state_shardings = jax.tree.map(state_sharding_rule(mesh), abstract_state)
    abstract_sharded = jax.tree.map(
        lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s),
        abstract_state,
        state_shardings,
    )
    abstract_variables = {k: abstract_state[k] for k in ("params", "batch_stats")}

    # ---------------------------------------------------------------- Update
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

    def train_step(state, batch):
        """One optimiser update on the global batch: `accum` micro-batches, their gradients
        averaged in float32 (the update of the whole batch at once)."""
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
            # Micro-batch i holds clips i, i+accum, ...: a local reshape of each device's rows.
            def split(x):
                x = x.reshape(x.shape[0] // accum, accum, *x.shape[1:])
                x = jax.lax.with_sharding_constraint(x, batch_sharding)
                return jnp.swapaxes(x, 0, 1)

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
        grad_norm = optax.global_norm(grads)
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
            "grad_norm": grad_norm,
            "learning_rate": schedule(step),
        }
        return new, metrics

    train_step = jax.jit(
        train_step,
        in_shardings=(state_shardings, batch_sharding),
        out_shardings=(state_shardings, replicated),
        donate_argnums=(0,),
    )

    # ---------------------------------------------------------------- Checkpoint
    # Init order: the workdir's latest checkpoint -> config.init_from -> scratch. Every check
    # runs before anything is written to the workdir.
    ckpt_dir = os.path.join(workdir, "checkpoints")

    def position(step: int) -> dict[str, int]:
        """The input position saved with a checkpoint (item "data")."""
        return {
            "step": step,
            "data_seed": config.data_seed,
            "batch_size": config.batch_size,
            "process_count": jax.process_count(),
        }

    manager = ocp.CheckpointManager(
        ckpt_dir,
        item_handlers={
            "state": ocp.StandardCheckpointHandler(),
            "data": ocp.JsonCheckpointHandler(),
            checkpoints.MODEL_CONFIG_ITEM: ocp.JsonCheckpointHandler(),
        },
        options=ocp.CheckpointManagerOptions(
            max_to_keep=config.keep_checkpoints,
            create=False,  # the first save makes the directory: a failed start leaves no trace
            enable_async_checkpointing=True,
        ),
    )
    latest = manager.latest_step()
    if latest is not None:
        found = dict(manager.item_metadata(latest)).get("state")
        if found is None:
            raise ConfigError(f"checkpoint {latest} in {ckpt_dir} has no 'state' item")
        _raise_if_mismatched(
            abstract_variables,
            {k: found[k] for k in ("params", "batch_stats") if k in found},
            f"checkpoint {latest} in {ckpt_dir} (a workdir of another model?)",
        )
        restored = manager.restore(
            latest,
            args=ocp.args.Composite(
                state=ocp.args.StandardRestore(abstract_sharded), data=ocp.args.JsonRestore()
            ),
        )
        state, data_position = restored["state"], restored["data"]
        start_step = int(data_position["step"])
        logging.info("Resuming from %s at step %d.", ckpt_dir, start_step)
        if data_position != position(start_step):
            logging.warning(
                "The input differs from the checkpoint's (%s, now %s): the batches after step "
                "%d are not those of an uninterrupted run.",
                data_position, position(start_step), start_step,
            )  # fmt: skip
    elif config.init_from:
        variables = _load_init_from(
            config.init_from,
            abstract_variables,
            fresh_variables=lambda: jax.device_get(jax.jit(init_variables)()),
        )
        variables = jax.tree.map(
            lambda x, s: jax.make_array_from_callback(x.shape, s, lambda i, x=x: x[i]),
            variables,
            {k: state_shardings[k] for k in variables},
        )
        state = jax.jit(new_state, out_shardings=state_shardings)(
            variables["params"], variables["batch_stats"]
        )
        start_step = 0
        logging.info("Initialised from %s.", config.init_from)
    else:
        state = jax.jit(init_state, out_shardings=state_shardings)()
        start_step = 0

    def save(step: int) -> None:
        manager.save(
            step,
            args=ocp.args.Composite(
                **{
                    "state": ocp.args.StandardSave(state),
                    "data": ocp.args.JsonSave(position(step)),
                    checkpoints.MODEL_CONFIG_ITEM: ocp.args.JsonSave(config.model.to_dict()),
                }
            ),
            force=True,
        )

    # ---------------------------------------------------------------- Eval
    # An eval loss: plain CE on a fixed set of clips drawn with eval_data_seed from
    # config.data.eval_split (DAVIS val where DAVIS is in the data, else training videos);
    # J&F on whole videos is lcm_jax/evaluate.py's job.
    @functools.partial(
        jax.jit, in_shardings=(state_shardings, batch_sharding), out_shardings=replicated
    )
    def eval_step(state, batch):
        variables = {"params": state["params"], "batch_stats": state["batch_stats"]}
        logits = net.apply(variables, batch["frames"], batch["masks"], batch["valid"])
        return losses.training_loss(logits, batch["masks"], batch["valid"])

    eval_batches = None

    def evaluate(state) -> dict[str, float]:
        nonlocal eval_batches
        if eval_batches is None:
            it = input_iterator(config.eval_data_seed, 0, config.data.eval_split)
            eval_batches = [next(it) for _ in range(config.num_eval_batches)]
        results = [eval_step(state, b) for b in eval_batches]
        loss = np.mean([float(r[0]) for r in results])
        per_frame = np.mean([np.asarray(r[1]) for r in results], axis=0)
        return {
            "eval_loss": float(loss),
            "eval_loss_frame1": float(per_frame[0]),
            "eval_loss_frame2": float(per_frame[1]),
        }

    # ---------------------------------------------------------------- Loop
    writer = metric_writers.create_default_writer(workdir, just_logging=jax.process_index() > 0)
    progress = periodic_actions.ReportProgress(
        num_train_steps=config.num_train_steps, writer=writer
    )
    # Preemption: one process catches SIGTERM itself; with several, JAX's preemption sync
    # point (its own SIGTERM handler, via manager.reached_preemption) makes all stop together.
    preempted = []
    single_process = jax.process_count() == 1
    if single_process:
        previous_handler = signal.signal(signal.SIGTERM, lambda *_: preempted.append(True))
    train_iter = input_iterator(config.data_seed, start_step)
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
                f"in {ckpt_dir}"
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
                logging.warning("Preempted: saved step %d to %s, stopping.", step, ckpt_dir)
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


def _load_init_from(
    path: str, abstract_variables: dict[str, Any], fresh_variables: Callable[[], dict[str, Any]]
) -> dict[str, Any]:
    """{"params", "batch_stats"} as host arrays from config.init_from, checked against the
    model: a previous stage's workdir or a `save_variables` directory (via
    `lcm_jax.checkpoints.load_variables`), or a torchvision ResNet `.pth` state_dict converted
    into both encoders of `fresh_variables()` (`lcm_jax.interop.convert`, layout
    "torchvision": LCM-only layers keep their fresh initialisation)."""
    if not os.path.exists(path):
        raise ConfigError(f"config.init_from={path!r} does not exist")
    try:
        if path.endswith(".pth"):
            import torch  # only for this branch: torch is an optional dependency

            from lcm_jax.interop import convert

            state_dict = torch.load(path, map_location="cpu", weights_only=True)
            variables = convert.torch_to_flax(
                state_dict, fresh_variables(), layout="torchvision", source=path
            )
        else:
            variables = checkpoints.load_variables(path)
    except ValueError as e:  # CheckpointError, ConversionError: they list what is wrong
        raise ConfigError(f"config.init_from={path!r} cannot be used: {e}") from e
    _raise_if_mismatched(abstract_variables, variables, f"config.init_from={path!r}")
    return jax.tree.map(np.asarray, dict(variables))
