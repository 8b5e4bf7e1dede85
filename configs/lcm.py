r"""LCM training, one config per stage and dataset (section 3.5 of the paper).

`get_config("stage=S,data=D,runlocal=R")`, big_vision style (all keys optional):
  stage     pretrain | main | sequence                              (default main)
  data      static | davis | youtube | davis+youtube | synthetic    (default: static for
            pretrain, davis+youtube otherwise)
  runlocal  True: the tiny model (ResNet-18 x 1/8) on 64x64 crops of the data's "tiny"
            variant, 10 steps, a checkpoint and an eval every 5 (a CPU check)

Run the paper's three stages, each starting from the previous one's workdir:

  python -m lcm_jax.main --config configs/lcm.py:stage=pretrain --workdir $W/pretrain \
      --config.init_from=$W/resnet50_imagenet.pth
  python -m lcm_jax.main --config configs/lcm.py:stage=main,data=davis+youtube \
      --workdir $W/main --config.init_from=$W/pretrain
  python -m lcm_jax.main --config configs/lcm.py:stage=sequence,data=davis+youtube \
      --workdir $W/sequence --config.init_from=$W/main

Score a trained workdir on DAVIS 2017 val (J&F):

  python -m lcm_jax.evaluate --dataset davis --root data/DAVIS --split val \
      --checkpoint $W/sequence --out results/davis_val

A quick local run on synthetic videos (about 30 s on 2 CPU cores; the videos are generated in
$TMPDIR/lcm_synthetic, else /tmp/lcm_synthetic, when missing):

  python -m lcm_jax.main --config configs/lcm.py:stage=main,data=synthetic,runlocal=True \
      --workdir $W/local

Step counts follow the paper's epochs at batch 8 [choice]: pretrain 10 epochs over ~130k
images (ECSSD + MSRA10K + COCO) = 160k steps; main 200 epochs and sequence 50 epochs of one
clip per video per epoch (DAVIS 60 videos, YouTube-VOS 3471).
"""

import ml_collections

from lcm_jax.configs import base
from lcm_jax.configs import data as data_configs
from lcm_jax.configs import model as model_configs

DATASETS = ("static", "davis", "youtube", "davis+youtube", "synthetic")
_VIDEOS = {"davis": 60, "youtube": 3471, "davis+youtube": 3531, "synthetic": 64}
_EPOCHS = {"main": 200, "sequence": 50}
# The paper's optimiser per stage: (name, learning rate).
_OPTIMIZER = {"pretrain": ("adam", 5e-4), "main": ("adam", 1e-5), "sequence": ("sgd", 3e-4)}


def parse_arg(arg: str | None, **defaults) -> ml_collections.ConfigDict:
    """ "a=1,b=x,c=True" -> ConfigDict, typed by `defaults` (whose keys are the only ones
    allowed)."""
    out = ml_collections.ConfigDict(defaults)
    for item in filter(None, (arg or "").split(",")):
        key, sep, value = item.partition("=")
        if not sep or key not in defaults:
            raise ValueError(
                f"configs/lcm.py: bad argument {item!r}; expected key=value with "
                f"key in {sorted(defaults)}"
            )
        if isinstance(defaults[key], bool):
            if value not in ("True", "False", "true", "false", "1", "0"):
                raise ValueError(f"configs/lcm.py: {key} must be True or False, got {value!r}")
            out[key] = value in ("True", "true", "1")
        else:
            out[key] = type(defaults[key])(value)
    return out


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    """Returns the training config for `arg` (see the module docstring)."""
    arg = parse_arg(arg, stage="main", data="", runlocal=False)
    if arg.stage not in _OPTIMIZER:
        raise ValueError(
            f"configs/lcm.py: stage must be one of {list(_OPTIMIZER)}, got {arg.stage!r}"
        )
    data = arg.data or ("static" if arg.stage == "pretrain" else "davis+youtube")
    if data not in DATASETS:
        raise ValueError(f"configs/lcm.py: data must be one of {DATASETS}, got {data!r}")

    c = base.get_config()
    c.stage = arg.stage
    c.model = model_configs.get_config("tiny" if arg.runlocal else "paper")
    if not arg.runlocal:
        c.model.dtype = "bfloat16"  # compute dtype on accelerators; parameters stay float32
    c.data = data_configs.get_config(f"{data},{arg.stage}" + (",tiny" if arg.runlocal else ""))
    c.optimizer.name, c.optimizer.learning_rate = _OPTIMIZER[arg.stage]
    c.batch_size = 8
    if arg.stage == "pretrain":
        c.num_train_steps = 160_000
    else:
        c.num_train_steps = max(_VIDEOS.get(data, 3531) * _EPOCHS[arg.stage] // c.batch_size, 1)

    if arg.runlocal:
        c.num_train_steps = 10
        c.log_every_steps = 1
        c.checkpoint_every_steps = 5
        c.eval_every_steps = 5
        c.num_eval_batches = 1
        c.optimizer.learning_rate = 1e-3 if arg.stage != "sequence" else 1e-2
    return c
