"""Speed of the Flax LCM (jit, after warm-up) against the PyTorch reference (eager), same weights.

Two measurements, on the same inputs in one run:
* segment: one frame (480x854 by default, zero-padded to a multiple of 16 as the spec's
  inference: 480x864) against a memory of 5 frames with 2 objects -> frames/s
  (PyTorch under torch.inference_mode);
* train: one training step (forward + backward of the 3-frame clip loss + Adam update) at
  384x384, batch 2, 2 objects -> clips/s; JAX runs the trainer's own step
  (`lcm_jax.train.make_train_step`, the paper's main-stage config) fed from NumPy.

    python benchmarks/speed.py                                   # GPU, ResNet-50, full sizes
    python benchmarks/speed.py --device cpu --size 240x432 --train-size 192x192 --iters 3

The model config is the Flax/torch constructors' defaults (the paper's ResNet-50) with
--backbone/--width/--dtype overrides. No TensorFlow is needed (ml_collections is, for the
training config).
"""

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout

from benchmarks.machine import cpu_cores, cpu_name  # noqa: E402

os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")  # leave GPU memory to torch too

MEMORY_FRAMES, OBJECTS = 5, 2


def parse_size(text: str) -> tuple[int, int]:
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"size must be HxW, e.g. 480x854, got {text!r}") from e
    return h, w


def padded(h: int, w: int) -> tuple[int, int]:
    """Inference padding of the spec: up to the next multiple of 16."""
    return h + (-h % 16), w + (-w % 16)


def machine(device: str) -> str:
    import jax
    import torch

    text = f"CPU {cpu_name()} ({cpu_cores()} cores)"
    if device == "gpu":
        text += f"; GPU {torch.cuda.get_device_name(0)} (jax: {jax.devices()[0].device_kind})"
    return text


def timed(fn, iters: int, sync) -> float:
    """Seconds per call of fn() (after one warm-up call)."""
    sync(fn())
    start = time.perf_counter()
    for _ in range(iters):
        out = fn()
    sync(out)
    return (time.perf_counter() - start) / iters


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", choices=("gpu", "cpu"), default="gpu")
    p.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32")
    p.add_argument("--iters", type=int, default=20)
    p.add_argument("--size", type=parse_size, default=(480, 854), help="segment frame HxW")
    p.add_argument("--train-size", type=parse_size, default=(384, 384), help="training crop HxW")
    p.add_argument("--batch", type=int, default=2, help="training clips per step")
    p.add_argument("--backbone", default="resnet50")
    p.add_argument("--width", type=float, default=1.0)
    p.add_argument("--skip", choices=("segment", "train"), action="append", default=[])
    args = p.parse_args(argv)
    if args.device == "cpu":
        os.environ["JAX_PLATFORMS"] = "cpu"

    import jax
    import jax.numpy as jnp
    import numpy as np
    import torch

    from lcm_jax import train
    from lcm_jax.configs import lcm as lcm_configs
    from lcm_jax.interop import convert
    from lcm_jax.interop import torch_lcm as tl
    from lcm_jax.model import LCM, MemoryPool, PrevFrame, Reference

    tdev = torch.device("cuda" if args.device == "gpu" else "cpu")
    cfg = {"backbone": args.backbone, "width": args.width, "zero_init_mask_stem": False}
    tnet = tl.random_weights_(tl.build_torch_model(cfg), 0).to(tdev)
    net = LCM(**cfg, dtype=args.dtype)
    variables = convert.torch_to_flax(
        tnet.state_dict(), convert.abstract_variables({**cfg, "max_objects": 3})
    )
    variables = jax.device_put(variables)
    autocast = torch.autocast(tdev.type, dtype=torch.bfloat16, enabled=args.dtype == "bfloat16")
    jsync = jax.block_until_ready
    tsync = (lambda _: torch.cuda.synchronize()) if tdev.type == "cuda" else (lambda _: None)
    rng = np.random.default_rng(0)
    rows = []
    print(f"machine: {machine(args.device)}")
    print(
        f"model: {args.backbone} width {args.width}, dtype {args.dtype}, jax {jax.__version__}, "
        f"torch {torch.__version__}"
    )

    if "segment" not in args.skip:
        hh, ww = padded(*args.size)
        h, w = hh // 16, ww // 16
        t, o, kd, vd = MEMORY_FRAMES, OBJECTS, tnet.key_dim, tnet.value_dim
        frame = np.zeros((1, hh, ww, 3), np.float32)
        top, left = (hh - args.size[0]) // 2, (ww - args.size[1]) // 2
        frame[:, top : top + args.size[0], left : left + args.size[1]] = rng.random(
            (1, *args.size, 3), dtype=np.float32
        )
        arrays = {
            "k_g": rng.standard_normal((1, o, t, h, w, kd)).astype(np.float32),
            "v": rng.standard_normal((1, o, t, h, w, vd)).astype(np.float32),
            "k_l": rng.standard_normal((1, o, h, w, kd)).astype(np.float32),
            "mask": (rng.random((1, o, hh, ww)) > 0.5).astype(np.float32),
        }
        mvalid, valid = np.ones((1, o, t), bool), np.ones((1, o), bool)
        seg = jax.jit(
            lambda v, f, m, pr, ref, va: net.apply(v, f, m, pr, ref, va, method=net.segment)
        )
        jin = (
            variables,
            jnp.asarray(frame),
            MemoryPool(k_g=arrays["k_g"], v=arrays["v"], valid=mvalid),
            PrevFrame(k_l=arrays["k_l"], mask=arrays["mask"]),
            Reference(v=arrays["v"][:, :, 0], mask=arrays["mask"]),
            valid,
        )
        jin = jax.device_put(jin)
        tt = {k: torch.from_numpy(v).to(tdev) for k, v in arrays.items()}
        tin = (
            torch.from_numpy(frame).to(tdev),
            tl.MemoryPool(tt["k_g"], tt["v"], torch.from_numpy(mvalid).to(tdev)),
            tl.PrevFrame(tt["k_l"], tt["mask"]),
            tl.Reference(tt["v"][:, :, 0], tt["mask"]),
            torch.from_numpy(valid).to(tdev),
        )

        def torch_segment():
            with torch.inference_mode(), autocast:
                return tnet.segment(*tin)

        sj = timed(lambda: seg(*jin), args.iters, jsync)
        st = timed(torch_segment, args.iters, tsync)
        rows.append(
            (
                f"segment {args.size[0]}x{args.size[1]} (pad {hh}x{ww}), memory "
                f"{t} frames, {o} objects",
                "frames/s",
                1 / sj,
                1 / st,
            )
        )

    if "train" not in args.skip:
        b, (hh, ww) = args.batch, args.train_size
        frames = rng.random((b, 3, hh, ww, 3), dtype=np.float32)
        masks = np.zeros((b, 3, OBJECTS, hh, ww), np.float32)
        masks[:, :, 0, : hh // 2, : ww // 2] = 1.0
        masks[:, :, 1, hh // 2 :, ww // 2 :] = 1.0
        valid = np.ones((b, OBJECTS), bool)
        labels = np.where(masks[:, 1:].max(2) > 0.5, 1 + masks[:, 1:].argmax(2), 0).astype(np.int32)
        config = lcm_configs.get_config("stage=main")  # Adam 1e-5, as the torch side
        config.model.update(cfg, dtype=args.dtype)
        tx, schedule = train.make_optimizer(config)
        train_step = jax.jit(train.make_train_step(config, net, tx, schedule), donate_argnums=(0,))
        batch = jax.device_put({"frames": frames, "masks": masks, "valid": valid})
        state = [train.init_state(jax.tree.map(jnp.copy, variables), tx)]

        def jax_step():
            state[0], metrics = train_step(state[0], batch)
            return metrics["loss"]

        tnet.train()
        opt = torch.optim.Adam(tnet.parameters(), lr=1e-5)
        tf, tm, tv = (torch.from_numpy(x).to(tdev) for x in (frames, masks, valid))
        tlab = torch.from_numpy(labels).long().to(tdev)

        def torch_step():
            opt.zero_grad(set_to_none=True)
            with autocast:
                logits = tnet(tf, tm, tv)
            loss = torch.nn.functional.cross_entropy(
                logits.flatten(0, 1).float(), tlab.flatten(0, 1)
            )
            loss.backward()
            opt.step()
            return loss

        sj = timed(jax_step, args.iters, jsync)
        st = timed(torch_step, args.iters, tsync)
        rows.append(
            (f"train step {hh}x{ww}, batch {b}, {OBJECTS} objects", "clips/s", b / sj, b / st)
        )

    print(f"{'measurement':<62} {'unit':<9} {'JAX':>9} {'PyTorch':>9} {'JAX/PyTorch':>12}")
    for name, unit, j, t in rows:
        print(f"{name:<62} {unit:<9} {j:9.3f} {t:9.3f} {j / t:12.2f}")


if __name__ == "__main__":
    main()
