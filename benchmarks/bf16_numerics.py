"""bf16 numerics: the same LCM weights computing in float32 and in bfloat16.

    python benchmarks/bf16_numerics.py [--model paper] [--size 384x384] [--clips 4] \
        [--attention_dtype float32|compute]

For training clips of a synthetic video (3 frames, 2 objects + 1 padded slot), runs the model
with `dtype="float32"` and `dtype="bfloat16"` on the same float32 parameters and reports, over
the clips:

- logits: relative error ||l16 - l32|| / ||l32|| of frames 1 and 2 (real channels);
- probabilities: the largest absolute difference, and the fraction of pixels whose label
  (argmax) differs;
- gradient: relative error of the clip loss's gradient over all parameters (as one vector),
  and its cosine similarity.

The bf16 model keeps its keys in float32 (the model config's `attention_dtype`, default);
`--attention_dtype compute` rounds them to bf16 as well, for comparison. Random weights
(seed 0; PyTorch's default init for the non-backbone layers) unless --checkpoint gives
trained ones (e.g. `demo_out/train/lcm/sequence` with `--model tiny`).
Needs no TensorFlow.
"""

from __future__ import annotations

import argparse
import platform
import sys
import tempfile
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lcm_jax import checkpoints, losses  # noqa: E402
from lcm_jax.configs import model as model_configs  # noqa: E402
from lcm_jax.input_pipeline import synthetic, video_io  # noqa: E402
from lcm_jax.model import build_model, init_variables  # noqa: E402


def clips(size: tuple[int, int], count: int, objects: int):
    """`count` clips (frames 0, 3, 6 + 3k) of one synthetic video at `size`, padded objects."""
    with tempfile.TemporaryDirectory() as tmp:
        difficulty = synthetic.Difficulty(min_objects=2, max_objects=2)
        synthetic.generate(
            tmp,
            num_videos=2,
            num_frames=6 + 3 * count,
            height=size[0],
            width=size[1],
            seed=0,
            difficulty=difficulty,
            progress=False,
        )
        root = Path(tmp) / "DAVIS"
        frames, masks = video_io.davis_video(root, video_io.davis_sequences(root, "train")[0])
        video = np.stack([video_io.read_frame(p) for p in frames]).astype(np.float32) / 255
        labels = np.stack([video_io.read_label_png(p) for p in masks])
    ids = np.arange(1, objects + 1)[:, None, None]
    for k in range(count):
        t = [3 * k, 3 * k + 3, 3 * k + 6]
        yield (
            video[t][None],
            (labels[t][:, None] == ids).astype(np.float32)[None],
            np.array([[True] * 2 + [False] * (objects - 2)]),
        )


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="paper", choices=("paper", "tiny"))
    parser.add_argument("--size", default="384x384", help="HxW, multiples of 16")
    parser.add_argument("--clips", type=int, default=4)
    parser.add_argument("--checkpoint", default="", help="weights (default: random, seed 0)")
    parser.add_argument(
        "--attention_dtype",
        default="float32",
        choices=("float32", "compute"),
        help="the bf16 model's keys: float32 (the default) or bf16 ('compute', as before)",
    )
    args = parser.parse_args(argv)
    size = tuple(int(s) for s in args.size.split("x"))
    config = {**dict(model_configs.get_config(args.model)), "attention_dtype": args.attention_dtype}
    nets = {d: build_model({**config, "dtype": d}) for d in ("float32", "bfloat16")}
    batches = list(clips(size, args.clips, config["max_objects"]))
    if args.checkpoint:
        variables = checkpoints.load_variables(args.checkpoint)
    else:
        variables = jax.jit(lambda key: init_variables(nets["float32"], key))(jax.random.key(0))

    def loss_and_grad(dtype):
        def loss(params, frames, masks, valid):
            logits = nets[dtype].apply({**variables, "params": params}, frames, masks, valid)
            return losses.training_loss(logits, masks, valid)[0], logits

        return jax.jit(jax.value_and_grad(loss, has_aux=True))

    run = {d: loss_and_grad(d) for d in nets}
    rows = []
    for frames, masks, valid in batches:
        out = {d: run[d](variables["params"], frames, masks, valid) for d in nets}
        (_, l32), g32 = out["float32"]
        (_, l16), g16 = out["bfloat16"]
        real = l32[:, :, :3]  # background and the two real objects
        p32, p16 = jax.nn.softmax(l32, axis=2), jax.nn.softmax(l16, axis=2)
        flat = lambda g: jnp.concatenate([x.ravel() for x in jax.tree.leaves(g)])  # noqa: E731
        v32, v16 = flat(g32), flat(g16)
        rows.append(
            (
                float(jnp.linalg.norm(l16[:, :, :3] - real) / jnp.linalg.norm(real)),
                float(jnp.abs(p16 - p32).max()),
                float((p16.argmax(2) != p32.argmax(2)).mean()),
                float(jnp.linalg.norm(v16 - v32) / jnp.linalg.norm(v32)),
                float(v16 @ v32 / (jnp.linalg.norm(v16) * jnp.linalg.norm(v32))),
            )
        )
    r = np.array(rows)
    device = jax.devices()[0]
    print(
        f"{device.device_kind} ({platform.machine()}), jax {jax.__version__}, model "
        f"{args.model}, {size[0]}x{size[1]}, {len(rows)} clips, bf16 keys in {args.attention_dtype}"
    )
    names = ("logits rel err", "max |p16 - p32|", "labels differing", "grad rel err", "grad cos")
    print(f"{'':18s} {'mean':>10s} {'max':>10s}")
    for name, col in zip(names, r.T, strict=True):
        print(f"{name:18s} {col.mean():10.3e} {col.max():10.3e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
