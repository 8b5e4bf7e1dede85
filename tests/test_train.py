"""train_and_evaluate on the tiny model and 8 fake CPU devices (tests/conftest.py).

In-process runs read clips rendered by `lcm_jax.input_pipeline.synthetic.render_video` through
the trainer's input seam (`train_and_evaluate(..., batches=...)`, the `train.Batches` contract:
the batch at step s depends only on (seed, s)). Compiled executables are shared between runs
through JAX's persistent compilation cache, so equal configs compile once.
"""

import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from lcm_jax import checkpoints, losses, train
from lcm_jax.configs import base
from lcm_jax.configs import lcm as lcm_configs
from lcm_jax.configs import model as model_configs
from lcm_jax.input_pipeline import synthetic
from lcm_jax.model import build_model, init_variables

SIZE = 64
OBJECTS = 3


# JAX's persistent compilation cache (conftest.py) for this module's runs, in process and not.
pytestmark = pytest.mark.usefixtures("compilation_cache")


def render_clips(num: int, seed: int = 0) -> dict[str, np.ndarray]:
    """`num` 3-frame clips of synthetic videos: frames [N,3,H,W,3], masks [N,3,O,H,W], valid."""
    rng = np.random.default_rng(seed)
    frames, masks, valid = [], [], []
    for _ in range(num):
        video, labels = synthetic.render_video(rng, num_frames=3, height=SIZE, width=SIZE)
        ids = np.arange(1, OBJECTS + 1)
        frames.append(video.astype(np.float32) / 255)
        masks.append((labels[:, None] == ids[None, :, None, None]).astype(np.float32))
        valid.append((labels[0][None] == ids[:, None, None]).any(axis=(1, 2)))
    return {"frames": np.stack(frames), "masks": np.stack(masks), "valid": np.stack(valid)}


def clip_batches(clips, batch_size, nan_at_step=None) -> train.Batches:
    """`train.Batches` over `clips` (batch s: a seeded choice; both splits draw from the same
    clips)."""

    def batches(seed, start_step, split):
        step = start_step
        while True:
            pick = np.random.default_rng([seed, step]).integers(0, len(clips["valid"]), batch_size)
            batch = {k: v[pick] for k, v in clips.items()}
            if step + 1 == nan_at_step:  # the batch of training step `nan_at_step`
                batch["frames"][0, 0, 0, 0, 0] = np.nan
            yield batch
            step += 1

    return batches


def tiny_config(**overrides):
    c = base.get_config()
    c.model = model_configs.get_config("tiny")
    c.data.eval_split = "train"  # the one data field the loop reads; the stand-in does the rest
    c.stage = "pretrain"
    c.batch_size = 8
    c.num_train_steps = 1
    c.log_every_steps = 1
    c.checkpoint_every_steps = 2
    c.eval_every_steps = 0
    c.optimizer.name = "sgd"
    c.optimizer.learning_rate = 0.05
    for key, value in overrides.items():
        node = c
        *parents, leaf = key.split("__")
        for p in parents:
            node = node[p]
        node[leaf] = value
    return c


@pytest.fixture(scope="module")
def clips():
    return render_clips(8)


@pytest.fixture(scope="module")
def initial_variables(tmp_path_factory):
    """Fresh tiny-model variables on disk, the common start of the runs below."""
    model_config = model_configs.get_config("tiny")
    variables = jax.jit(lambda key: init_variables(model_config, key))(jax.random.key(0))
    path = tmp_path_factory.mktemp("init") / "vars"
    return str(checkpoints.save_variables(path, variables, model_config))


def run(config, workdir, clips, nan_at_step=None):
    batches = clip_batches(clips, config.batch_size, nan_at_step)
    return train.train_and_evaluate(config, str(workdir), batches=batches)


def config_of_eight_device_run(**overrides):
    """`eight_device_run`'s config: eval batch 0 == the batch of step 1 (eval_data_seed ==
    data_seed)."""
    defaults = {"eval_every_steps": 1, "num_eval_batches": 1, "eval_data_seed": 0}
    return tiny_config(**{**defaults, **overrides})


@pytest.fixture(scope="module")
def eight_device_run(tmp_path_factory, initial_variables, clips):
    """One SGD step on the 8-device mesh, then the eval loss on the clips of that step; its
    workdir is "stage 1" for later tests."""
    workdir = tmp_path_factory.mktemp("eight")
    config = config_of_eight_device_run(init_from=initial_variables)
    state, history = run(config, workdir, clips)
    return workdir, jax.device_get(state), history


def _assert_trees_close(a, b, atol):
    for (path, x), y in zip(
        jax.tree_util.tree_leaves_with_path(a), jax.tree.leaves(b), strict=True
    ):
        np.testing.assert_allclose(
            np.asarray(x), np.asarray(y), atol=atol, rtol=0, err_msg=str(path)
        )


def test_a_step_on_eight_devices_equals_the_step_on_one_device(
    eight_device_run, initial_variables, clips, tmp_path
):
    _, state8, history8 = eight_device_run
    config = tiny_config(init_from=initial_variables, mesh=(("data", 1),))
    state1, history1 = run(config, tmp_path, clips)
    assert history8[0]["step"] == history1[0]["step"] == 1
    assert abs(history8[0]["loss"] - history1[0]["loss"]) <= 1e-5
    _assert_trees_close(state8["params"], jax.device_get(state1["params"]), atol=1e-5)
    # The step moved the parameters (the comparison above is not between two initial states).
    initial = checkpoints.load_variables(initial_variables)["params"]
    moved = max(
        float(np.abs(np.asarray(x) - y).max())
        for x, y in zip(jax.tree.leaves(state8["params"]), jax.tree.leaves(initial), strict=True)
    )
    assert moved > 1e-3


def test_a_workdir_checkpoint_carries_the_model_config_it_was_trained_with(eight_device_run):
    workdir, _, _ = eight_device_run
    assert checkpoints.load_model_config(workdir) == tiny_config().model.to_dict()
    assert checkpoints.load_model_config(workdir)["width"] == 0.125  # the tiny model's


def test_the_eval_loss_is_the_loss_of_the_new_parameters_on_the_eval_clips(eight_device_run, clips):
    _, state, history = eight_device_run
    (evaluation,) = [h for h in history if "eval_loss" in h]
    batch = next(clip_batches(clips, 8)(0, 0, "train"))
    net = build_model(model_configs.get_config("tiny"))
    variables = {"params": state["params"], "batch_stats": state["batch_stats"]}
    logits = net.apply(variables, batch["frames"], batch["masks"], batch["valid"])
    loss, per_frame = losses.training_loss(logits, batch["masks"], batch["valid"])
    assert evaluation["step"] == 1
    assert abs(evaluation["eval_loss"] - float(loss)) <= 1e-5
    assert abs(evaluation["eval_loss_frame2"] - float(per_frame[1])) <= 1e-5


def test_two_accumulated_half_batches_on_a_data_by_model_mesh_equal_one_full_batch(
    eight_device_run, initial_variables, clips, tmp_path
):
    _, state_full, history_full = eight_device_run
    mesh = (("data", 2), ("model", 2))  # 4 devices; parameters split over "model"
    config = tiny_config(init_from=initial_variables, grad_accum_steps=2, mesh=mesh)
    state, history = run(config, tmp_path, clips)
    assert abs(history[0]["loss"] - history_full[0]["loss"]) <= 1e-5
    np.testing.assert_allclose(history[0]["grad_norm"], history_full[0]["grad_norm"], rtol=1e-6)
    _assert_trees_close(state_full["params"], jax.device_get(state["params"]), atol=1e-5)
    # convFM: [3, 3, value_dim 64 + value_dim 64, decoder_dim 32], split on its largest dim.
    kernel = state["params"]["decoder"]["convFM"]["kernel"]
    assert kernel.sharding.spec == jax.sharding.PartitionSpec(None, None, "model", None)
    assert kernel.addressable_shards[0].data.shape == (3, 3, 64, 32)


def test_stage_two_starts_from_the_checkpoint_of_stage_one(eight_device_run, clips, tmp_path):
    stage1_dir, stage1_state, _ = eight_device_run
    config = tiny_config(init_from=str(stage1_dir))
    config.stage = "main"  # the same step as stage 1's: its executables are in the cache
    state, history = run(config, tmp_path, clips)
    # Step 1's loss is that of stage 1's parameters on step 1's batch.
    batch = next(clip_batches(clips, config.batch_size)(config.data_seed, 0, "train"))
    net = build_model(config.model)
    variables = {"params": stage1_state["params"], "batch_stats": stage1_state["batch_stats"]}
    logits = net.apply(variables, batch["frames"], batch["masks"], batch["valid"])
    expected, _ = losses.training_loss(logits, batch["masks"], batch["valid"])
    assert abs(history[0]["loss"] - float(expected)) <= 1e-5
    # A new stage counts its own steps, with a fresh optimiser state (its counts start at 0).
    assert int(state["step"]) == 1
    counts = {int(x) for x in jax.tree.leaves(state["opt_state"]) if np.ndim(x) == 0}
    assert counts == {1}


def _torchvision_name(module: tuple[str, ...]) -> str:
    """("layer1_0", "downsample_conv") -> "layer1.0.downsample.0" (torchvision's names)."""
    parts = []
    for p in module:
        if p.startswith("layer"):
            parts += p.split("_")
        else:
            parts += {
                "downsample_conv": ["downsample", "0"],
                "downsample_bn": ["downsample", "1"],
            }.get(p, [p])
    return ".".join(parts)


def test_a_torchvision_state_dict_initialises_both_encoders(initial_variables, tmp_path):
    import torch

    fresh = checkpoints.load_variables(initial_variables)
    rng = np.random.default_rng(0)
    state_dict, expected = {}, {}
    torch_names = {"kernel": "weight", "scale": "weight", "bias": "bias"}
    torch_names.update(mean="running_mean", var="running_var")
    for col in ("params", "batch_stats"):
        flat = jax.tree_util.tree_flatten_with_path(fresh[col]["query_encoder"])[0]
        for path, leaf in flat:
            *module, name = (k.key for k in path)
            value = rng.uniform(0.5, 1.5, size=leaf.shape).astype(np.float32)
            torch_value = value.transpose(3, 2, 0, 1) if name == "kernel" else value
            key = f"{_torchvision_name(tuple(module))}.{torch_names[name]}"
            state_dict[key] = torch.from_numpy(np.ascontiguousarray(torch_value))
            expected[(col, *module, name)] = value
    state_dict["fc.weight"] = torch.zeros(1000, 64)  # unused by LCM
    torch.save(state_dict, tmp_path / "resnet18.pth")

    # What train_and_evaluate starts from with config.init_from=<the .pth>.
    abstract = jax.eval_shape(lambda: fresh)
    state = checkpoints.load_init_from(str(tmp_path / "resnet18.pth"), abstract, lambda: fresh)
    for (col, *path), value in expected.items():
        for encoder in ("query_encoder", "memory_encoder"):
            leaf = state[col][encoder]
            for k in path:
                leaf = leaf[k]
            np.testing.assert_array_equal(leaf, value, err_msg=f"{col}/{encoder}/{path}")
    for stem in ("conv1_m", "conv1_o"):
        assert not np.any(state["params"]["memory_encoder"][stem]["kernel"])
    # Layers that ImageNet does not have keep the fresh initialisation.
    _assert_trees_close(fresh["params"]["decoder"], state["params"]["decoder"], atol=0)


class _NotATensor:
    pass


@pytest.mark.parametrize(
    "case, expected",
    [
        ("text", "cannot be read as a torch checkpoint (truncated or not a .pth file): KeyError"),
        ("truncated", "cannot be read as a torch checkpoint (truncated or not a .pth file)"),
        ("pickled_object", "holds Python objects other than tensors"),
        ("tensor", "expected a state_dict (a mapping of names to tensors), got Tensor"),
    ],
)
def test_an_init_from_pth_that_is_no_state_dict_names_the_file(tmp_path, case, expected):
    import pickle

    import torch

    path = tmp_path / "resnet.pth"
    if case == "text":
        path.write_text("hello\n")
    elif case == "truncated":
        torch.save({"conv1.weight": torch.zeros(64, 3, 7, 7)}, path)
        path.write_bytes(path.read_bytes()[:2000])
    elif case == "pickled_object":
        path.write_bytes(pickle.dumps({"model": _NotATensor()}))
    else:
        torch.save(torch.zeros(3), path)
    with pytest.raises(checkpoints.CheckpointError) as e:  # train raises it as a ConfigError
        checkpoints.load_init_from(str(path), {}, lambda: pytest.fail("the file is read first"))
    assert str(e.value).startswith(f"{str(path)!r} cannot be used: {path}: {expected}")
    assert "\n" not in str(e.value)


def test_a_nan_stops_the_run_at_its_step_and_keeps_the_last_good_checkpoint(
    initial_variables, clips, tmp_path
):
    config = tiny_config(init_from=initial_variables, num_train_steps=4)
    with pytest.raises(train.NonFiniteError, match="step 3: loss=nan"):
        run(config, tmp_path, clips, nan_at_step=3)
    assert sorted(os.listdir(tmp_path / "checkpoints")) == ["2"]
    restored = checkpoints.load_variables(tmp_path)
    assert all(np.isfinite(x).all() for x in jax.tree.leaves(restored))


def test_sigterm_saves_the_current_step_and_stops(initial_variables, clips, tmp_path):
    config = tiny_config(init_from=initial_variables, num_train_steps=5, checkpoint_every_steps=100)
    batches = clip_batches(clips, config.batch_size)

    def terminated_at_step_2(seed, start_step, split):
        for step, batch in enumerate(batches(seed, start_step, split), start=start_step + 1):
            if step == 2:
                os.kill(os.getpid(), signal.SIGTERM)
            yield batch

    handler = signal.getsignal(signal.SIGTERM)
    state, history = train.train_and_evaluate(config, str(tmp_path), batches=terminated_at_step_2)
    assert [h["step"] for h in history] == [1, 2]
    assert int(state["step"]) == 2
    assert sorted(os.listdir(tmp_path / "checkpoints")) == ["2"]
    assert signal.getsignal(signal.SIGTERM) is handler  # train's handler is removed


def test_the_tiny_model_overfits_one_synthetic_clip(tmp_path):
    config = tiny_config(
        batch_size=1,
        num_train_steps=40,
        checkpoint_every_steps=1000,
        mesh=(("data", 1),),
    )
    config.optimizer.name = "adam"
    # At 1e-3, 2 of 11 clips (seeds 3 and 9, since the generator varies object colours) stall
    # from step 2 on: saturated probabilities hit soft aggregation's clamp [1e-7, 1 - 1e-7],
    # whose gradient is 0 (loss stuck at 7.82, gradient norm 0.03). At 5e-4 both overfit.
    config.optimizer.learning_rate = 5e-4
    _, history = run(config, tmp_path, render_clips(1, seed=3))
    loss = [h["loss"] for h in history]
    # Measured: 5.68 at step 1, 0.43 at step 6, 0.126 by step 40 (25x smaller: 0.227).
    assert len(loss) == 40
    assert min(loss[-5:]) < loss[0] / 25, loss[::5]


def _losses_in_events(workdir) -> dict[int, list[float]]:
    """step -> every "loss" scalar in the TensorBoard event files of `workdir`."""
    import tensorflow as tf

    out = {}
    for name in os.listdir(workdir):
        if not name.startswith("events.out.tfevents"):
            continue
        for event in tf.compat.v1.train.summary_iterator(os.path.join(workdir, name)):
            for value in event.summary.value:
                if value.tag == "loss":
                    out.setdefault(event.step, []).append(float(tf.make_ndarray(value.tensor)))
    return out


def quick_local_run() -> str:
    """The "quick local run" command of configs/lcm.py's docstring, continuation lines joined."""
    match = re.search(
        r"^ *(python -m lcm_jax\.main .*runlocal=True \\\n.*)$", lcm_configs.__doc__, re.M
    )
    return re.sub(r"\\\n\s*", "", match.group(1))


def test_the_quick_local_run_as_written_resumes_after_a_kill_with_the_same_losses(tmp_path):
    # The documented command, in its folder $W and with the synthetic videos it generates in
    # $TMPDIR: 10 steps, checkpoints at 5 (the kill) and 10, an eval at each.
    command = ["bash", "-c", quick_local_run()]
    assert "--workdir $W/local" in command[-1]
    env = dict(
        os.environ,
        PATH=f"{os.path.dirname(sys.executable)}:{os.environ['PATH']}",  # `python`: this one
        TMPDIR=str(tmp_path / "tmp"),
        # One CPU device (the runs are about resuming, not sharding), compiled faster.
        XLA_FLAGS="--xla_backend_optimization_level=0",
        JAX_COMPILATION_CACHE_DIR=str(tmp_path / "jax_cache"),
        JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
        JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0",
    )
    (tmp_path / "tmp").mkdir()
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    reference = {**env, "W": str(tmp_path / "reference")}
    subprocess.run(command, env=reference, cwd=repo, check=True, capture_output=True)
    assert (tmp_path / "tmp" / "lcm_synthetic" / "raw" / "DAVIS").is_dir()  # generated there
    expected = _losses_in_events(tmp_path / "reference" / "local")
    assert sorted(expected) == list(range(1, 11))

    killed = {**env, "W": str(tmp_path / "killed")}
    workdir = tmp_path / "killed" / "local"
    proc = subprocess.Popen(
        command, env=killed, cwd=repo, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True,  # its own process group: bash and the run are killed together
    )  # fmt: skip
    first = workdir / "checkpoints" / "5"
    while not first.is_dir() and proc.poll() is None:
        time.sleep(0.01)
    os.killpg(proc.pid, signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL, "the run ended before it could be killed"
    restarted = subprocess.run(
        command, env=killed, cwd=repo, check=True, capture_output=True, text=True
    )
    resumed_at = re.search(r"Resuming from \S+ at step (\d+)", restarted.stderr)
    assert resumed_at and int(resumed_at.group(1)) >= 5

    found = _losses_in_events(workdir)
    assert sorted(found) == list(range(1, 11))
    for step, values in found.items():
        assert values == expected[step] * len(values), step


def _snapshot(path) -> dict[str, tuple[int, int]]:
    return {
        os.path.join(root, f): (os.stat(os.path.join(root, f)).st_size,
                                os.stat(os.path.join(root, f)).st_mtime_ns)
        for root, _, files in os.walk(path)
        for f in files
    }  # fmt: skip


def test_unknown_config_fields_are_rejected_before_anything_is_written(tmp_path):
    config = tiny_config()
    config.learning_rate = 0.1
    config.optimizer.lr = 0.1
    with pytest.raises(train.ConfigError, match=r"config\.learning_rate.*config\.optimizer\.lr"):
        train.train_and_evaluate(config, str(tmp_path / "w"))
    assert not (tmp_path / "w").exists()


def test_a_batch_that_does_not_divide_over_the_devices_is_rejected(tmp_path):
    expected = r"batch_size=12 does not divide over 8 devices \(of 1 process\(es\)\)"
    with pytest.raises(train.ConfigError, match=expected):
        train.train_and_evaluate(tiny_config(batch_size=12), str(tmp_path / "w"))
    assert not (tmp_path / "w").exists()


def test_a_workdir_under_a_file_is_rejected_before_the_data_is_read(tmp_path, monkeypatch):
    (tmp_path / "afile").write_text("x")
    monkeypatch.setattr(train, "pipeline_batches", lambda c: pytest.fail("data read first"))
    for workdir in (tmp_path / "afile", tmp_path / "afile" / "w"):
        with pytest.raises(train.ConfigError) as e:
            train.train_and_evaluate(tiny_config(), str(workdir))
        assert str(e.value).startswith(f"workdir {workdir}: Not a directory")
    assert str(e.value).endswith(f"({tmp_path / 'afile'} is a file)")
    assert os.listdir(tmp_path) == ["afile"] and (tmp_path / "afile").read_text() == "x"


def test_an_init_from_that_does_not_exist_is_rejected(clips, tmp_path):
    config = tiny_config(init_from=str(tmp_path / "nowhere"))
    with pytest.raises(train.ConfigError, match=r"init_from=.*nowhere.* does not exist"):
        run(config, tmp_path / "w", clips)


def test_an_init_from_of_another_model_lists_the_mismatched_parameters(
    initial_variables, clips, tmp_path
):
    config = tiny_config(init_from=initial_variables)
    config.model.use_pgm = False
    config.model.orm_reduction = 8  # SE bottleneck: value_dim 64 / 8 = 8, the file has 64 / 16
    with pytest.raises(train.ConfigError) as e:
        run(config, tmp_path / "w", clips)
    message = str(e.value)
    # PGM off: its f_n (kernel, bias) and both local-key heads (2 x kernel, bias) are extra;
    # ORM: fc1 kernel and bias, fc2 kernel change shape (fc2's bias stays [64]).
    assert "(9 mismatched parameters)" in message
    assert "params/query_proj/key_l/kernel: not in the model, found (3, 3, 32, 16)" in message
    assert "params/orm/fc1/kernel: expected (64, 8), found (64, 4)" in message
    assert "params/orm/fc2/kernel: expected (8, 64), found (4, 64)" in message
    assert "params/pgm/f_n/kernel: not in the model, found (1, 1, 16, 16)" in message
    assert not (tmp_path / "w").exists()


def test_a_workdir_of_another_model_is_rejected_and_left_untouched(
    eight_device_run, initial_variables, clips
):
    workdir, _, _ = eight_device_run
    before = _snapshot(workdir)
    config = tiny_config(num_train_steps=3)
    config.model.backbone = "resnet34"  # more blocks than the checkpoint's ResNet-18
    with pytest.raises(train.ConfigError) as e:
        run(config, workdir, clips)
    message = str(e.value)
    assert message.startswith(f"workdir {workdir} holds a run with other settings (checkpoint 1: ")
    assert f'init_from: "{initial_variables}" -> ""' in message
    assert 'model.backbone: "resnet18" -> "resnet34"' in message
    assert "num_train_steps" not in message.split("):")[0]  # may change on resume
    assert _snapshot(workdir) == before


def test_a_resumed_run_may_change_only_its_length_and_bookkeeping(
    eight_device_run, initial_variables, clips, tmp_path, caplog
):
    workdir = tmp_path / "w"
    shutil.copytree(eight_device_run[0], workdir)
    before = _snapshot(workdir)
    changed = config_of_eight_device_run(init_from=initial_variables, batch_size=16, stage="main")
    changed.optimizer.learning_rate = 0.5
    with pytest.raises(train.ConfigError) as e:
        run(changed, workdir, clips)
    assert (
        "(checkpoint 1: batch_size: 8 -> 16; optimizer.learning_rate: 0.05 -> 0.5; "
        'stage: "pretrain" -> "main"): run with its settings to resume it' in str(e.value)
    )
    assert _snapshot(workdir) == before
    # Training longer, with other log/checkpoint/eval settings and a progress bar, resumes.
    longer = config_of_eight_device_run(
        init_from=initial_variables, num_train_steps=2, eval_every_steps=0, progress_bar=True
    )
    state, history = run(longer, workdir, clips)
    assert int(state["step"]) == 2 and [h["step"] for h in history] == [2]
    assert sorted(os.listdir(workdir / "checkpoints")) == ["1", "2"]
    # Fewer steps than the workdir holds: nothing to train, and the log says so.
    with caplog.at_level(logging.WARNING):
        state, history = run(
            config_of_eight_device_run(init_from=initial_variables), workdir, clips
        )
    assert int(state["step"]) == 2 and history == []
    assert "is at step 2 and num_train_steps is 1: nothing to train" in caplog.text


def test_a_checkpoint_without_a_stored_config_is_checked_on_its_model_and_optimizer(
    eight_device_run, initial_variables, clips, tmp_path
):
    # As written before checkpoints stored the training config: no "config" item.
    workdir = tmp_path / "w"
    shutil.copytree(eight_device_run[0], workdir)
    shutil.rmtree(workdir / "checkpoints" / "1" / "config", ignore_errors=True)
    wider = config_of_eight_device_run(init_from=initial_variables, num_train_steps=2)
    wider.model.width = 0.25
    with pytest.raises(train.ConfigError, match=r"\(checkpoint 1: model\.width: 0\.125 -> 0\.25\)"):
        run(wider, workdir, clips)
    adam = config_of_eight_device_run(init_from=initial_variables, num_train_steps=2)
    adam.optimizer.name = "adam"  # the checkpoint's optimizer state is SGD's
    with pytest.raises(train.ConfigError) as e:
        run(adam, workdir, clips)
    assert str(e.value).startswith(
        f"cannot resume from checkpoint 1 in {workdir / 'checkpoints'} (a workdir of another "
        "optimizer or stage?): ValueError: "
    )
    assert "\n" not in str(e.value)


@pytest.mark.parametrize(
    "arg, optimizer, learning_rate, crop",
    [
        ("stage=pretrain", "adam", 5e-4, (384, 384)),
        ("stage=main,data=davis", "adam", 1e-5, (384, 640)),
        ("stage=sequence,data=davis+youtube", "sgd", 3e-4, (384, 640)),
    ],
)
def test_each_stage_config_has_the_papers_optimiser_and_crop(arg, optimizer, learning_rate, crop):
    config = lcm_configs.get_config(arg)
    train.check_config(config)
    assert (config.optimizer.name, config.optimizer.learning_rate) == (optimizer, learning_rate)
    assert tuple(config.data.crop) == crop
    assert (config.model.backbone, config.model.dtype) == ("resnet50", "bfloat16")


def test_config_arguments_that_do_not_exist_are_rejected():
    with pytest.raises(ValueError, match="bad argument 'stages=main'"):
        lcm_configs.get_config("stages=main")
    with pytest.raises(ValueError, match="data must be one of"):
        lcm_configs.get_config("stage=main,data=kitti")
    with pytest.raises(ValueError, match="runlocal must be True or False"):
        lcm_configs.get_config("runlocal=maybe")


_RUNLOCAL = ["--config", "configs/lcm.py:stage=main,data=synthetic,runlocal=True"]
# Mistakes at the command line: (flags, environment, what the error line says). A batch that
# does not divide over the devices: tests/test_multiprocess.py (its line, from two processes).
_CLI_MISTAKES = {
    "zero steps": (
        [*_RUNLOCAL, "--config.num_train_steps=0"],
        {},
        r"config\.num_train_steps must be >= 1, got 0$",
    ),
    "negative steps": (
        [*_RUNLOCAL, "--config.num_train_steps=-5"],
        {},
        r"config\.num_train_steps must be >= 1, got -5$",
    ),
    "a crop the stride does not divide": (
        [*_RUNLOCAL, "--config.data.crop=(60, 60)"],
        {},
        r"config\.data\.crop must be .* a positive multiple of 16",
    ),
    "a mesh that is not (name, size) axes": (
        [*_RUNLOCAL, "--config.mesh=('data', 2)"],
        {},
        r"config\.mesh must be axes \(name, size\), e\.g\. \(\('data', -1\),\), got \('data', 2\)$",
    ),
    "a missing data dir": (
        ["--config", "configs/lcm.py:stage=main,data=davis", "--config.data.manual_dir={tmp}/raw"]
        + ["--config.data.data_dir={tmp}/tfds"],
        {},
        r"davis2017_vos.* is not prepared in '.*/tfds' and its manual_dir '.*/raw/DAVIS' does "
        r"not exist\. Download DAVIS-2017-trainval-480p\.zip",
    ),
    "a bad config argument": (
        ["--config", "configs/lcm.py:stage=finetune"],
        {},
        r"stage must be one of \['pretrain', 'main', 'sequence'\], got 'finetune'$",
    ),
    "an unknown override": (
        [*_RUNLOCAL, "--config.learning_rate=0.1"],
        {},
        r"a --config\.<field> flag names a field that the config does not have: learning_rate$",
    ),
    "a workdir under a file": (
        [*_RUNLOCAL, "--workdir={tmp}/afile/w"],
        {},
        r"workdir .*/afile/w: Not a directory \(.*/afile is a file\)$",
    ),
    "a half-set environment": (
        _RUNLOCAL,
        {"JAX_COORDINATOR_ADDRESS": "127.0.0.1:1234"},
        r"missing --num_processes or JAX_NUM_PROCESSES, --process_id or JAX_PROCESS_ID$",
    ),
    "an unreachable coordinator": (
        [*_RUNLOCAL, "--coordinator_address=127.0.0.1:1", "--num_processes=2", "--process_id=1"]
        + ["--initialization_timeout=3"],
        {},
        r"could not join the multi-process run through the coordinator at 127\.0\.0\.1:1 "
        r"within 3 s",
    ),
}


def test_every_input_mistake_ends_the_cli_with_one_line_and_status_2(tmp_path):
    """Each mistake through `python -m lcm_jax.main` (all started at once): exit status 2, one
    line "error: ..." naming the problem, no traceback, nothing written."""
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    (tmp_path / "afile").write_text("x")
    procs = {}
    for name, (flags, env, _) in _CLI_MISTAKES.items():
        flags = [f"--workdir={tmp_path / 'w'}", *(f.format(tmp=tmp_path) for f in flags)]
        procs[name] = subprocess.Popen(
            [sys.executable, "-m", "lcm_jax.main", *flags],
            env={**os.environ, **env},
            cwd=repo,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
    for name, proc in procs.items():
        stderr = proc.communicate(timeout=180)[1]
        errors = [line for line in stderr.splitlines() if line.startswith("error: ")]
        assert proc.returncode == 2, (name, stderr[-2000:])
        assert len(errors) == 1 and re.search(_CLI_MISTAKES[name][2], errors[0]), (name, errors)
        assert "Traceback" not in stderr, (name, stderr[-2000:])
    assert os.listdir(tmp_path) == ["afile"]  # no workdir, no data dir
