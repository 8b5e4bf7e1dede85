"""Fields shared by every training config (`configs/lcm.py` composes this with a model and a
data config and fills in the stage).

Not a runnable experiment by itself: `model` and `data` are empty here. Run a stage with

    python -m lcm_jax.main --config configs/lcm.py:stage=main,data=davis --workdir /tmp/lcm

`lcm_jax.train.train_and_evaluate` rejects any field that is not listed here (besides the
model's and the data's own fields, which `build_model` and the input pipeline check).
"""

import ml_collections


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    """Returns the base training config; `arg` is unused (kept for `config_flags`)."""
    del arg
    c = ml_collections.ConfigDict()
    c.stage = "main"  # pretrain | main | sequence (section 3.5)
    c.seed = 0  # parameter init and the per-step rng (jax.random.fold_in(rng, step))
    c.data_seed = 0  # the input pipeline's seed: the batch at step s depends on (data_seed, s)

    # Steps and batch. batch_size is global (all hosts and devices); it must divide by the
    # number of devices times grad_accum_steps.
    c.num_train_steps = 100_000
    c.batch_size = 8
    c.grad_accum_steps = 1  # micro-batches per step, summed in float32 (same update as 1 batch)

    # Device mesh: axes (name, size), -1 = the remaining devices. The batch is split over all
    # axes; parameters and optimizer state are split over "model" (largest divisible dim)
    # when that axis is present, e.g. (("data", -1), ("model", 2)).
    c.mesh = (("data", -1),)

    # Where the weights come from when the workdir has no checkpoint: "" (ImageNet-free
    # scratch), a previous stage's workdir, a converted PyTorch checkpoint directory
    # (`lcm_jax.checkpoints.save_variables`), or a torchvision ResNet-50 `.pth` state_dict.
    c.init_from = ""

    c.optimizer = ml_collections.ConfigDict()
    c.optimizer.name = "adam"  # adam | sgd
    c.optimizer.learning_rate = 1e-5
    c.optimizer.schedule = "constant"  # constant | cosine | linear (decay to 0 at the end)
    c.optimizer.warmup_steps = 0  # linear warm-up from 0
    c.optimizer.b1 = 0.9  # adam
    c.optimizer.b2 = 0.999  # adam
    c.optimizer.eps = 1e-8  # adam
    c.optimizer.momentum = 0.9  # sgd
    c.optimizer.nesterov = False  # sgd
    c.optimizer.weight_decay = 0.0  # L2 added to the gradient (torch's `weight_decay`)
    c.optimizer.grad_clip_norm = 0.0  # clip by global norm before the update; 0 = off

    c.loss = ml_collections.ConfigDict()
    c.loss.bootstrap = False  # bootstrapped CE (hardest pixels only), see lcm_jax/losses.py
    c.loss.top_p = 0.15
    c.loss.start_warm = 20_000
    c.loss.end_warm = 70_000

    # Bookkeeping.
    c.progress_bar = False  # a tqdm bar with the loss and clips/s (process 0), for interactive runs
    c.log_every_steps = 50
    c.checkpoint_every_steps = 1_000
    c.keep_checkpoints = 3
    c.eval_every_steps = 1_000  # 0 = no eval
    c.num_eval_batches = 4  # a fixed set of clips (data.eval_split) drawn with eval_data_seed
    c.eval_data_seed = 1_000_003

    c.model = ml_collections.ConfigDict()
    c.data = ml_collections.ConfigDict()
    return c
