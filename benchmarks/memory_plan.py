"""Paper-size memory plans: the bytes one device needs for the ResNet-50 train step of each stage.

    python benchmarks/memory_plan.py                        # the plan on this machine's backend
    python benchmarks/memory_plan.py --dtype float32 --run  # also run two steps of each stage
    python benchmarks/memory_plan.py --runlocal --run --stages main  # a quick check (tiny model)

For each stage of `configs/lcm.py` (pretrain: 384x384 crops, Adam; main: 384x640, Adam;
sequence: 384x640, SGD), compiles `lcm_jax.train.make_train_step` for one device holding
--per_device_batch clips (the paper: 8 clips on 8 V100s, one a device; data parallelism
replicates the state, so a device's memory does not depend on the device count) and prints
XLA's `compiled.memory_analysis()`:

- arguments: the train state (float32 parameters, optimiser state) and the batch;
- temporaries: activations kept for the backward pass, gradients, workspace;
- peak = arguments + outputs - aliased (the donated state is updated in place) + temporaries
  + generated code: what the device must hold, before the runtime's own reserve (JAX takes
  75% of a GPU's memory by default; XLA_PYTHON_CLIENT_MEM_FRACTION raises it).

The plan is the backend's: run the command on the accelerator you mean to rent time on (it
compiles, it does not train; seconds on a GPU). With --run, each stage also runs two steps
(batch 1 unless --per_device_batch) and reports the second one's time and the process's peak
resident memory. Each stage runs in a fresh process. The batch is NumPy: no TensorFlow needed.
--stages plans only the stages named (default: all three). --runlocal plans the config's
`runlocal=True` instead (the tiny model, ResNet-18 x 1/8, on 64x64 crops, float32): seconds on
a CPU, a check that the script runs, not a plan.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout

from lcm_jax.configs.data import STAGES  # noqa: E402

GB = 1e9


def measure(
    stage: str, per_device_batch: int, dtype: str, run: bool, runlocal: bool = False
) -> dict:
    """The memory plan of one stage's train step (and, with `run`, two steps' timing)."""
    import jax
    import numpy as np

    from lcm_jax import train
    from lcm_jax.configs import lcm as lcm_configs
    from lcm_jax.model import build_model, init_variables

    config = lcm_configs.get_config(f"stage={stage},runlocal={runlocal}")
    config.model.dtype = dtype or config.model.dtype
    net = build_model(config.model)
    tx, schedule = train.make_optimizer(config)
    step = jax.jit(train.make_train_step(config, net, tx, schedule), donate_argnums=(0,))
    fresh = lambda: train.init_state(init_variables(net, jax.random.key(0)), tx)  # noqa: E731
    (h, w), o = config.data.crop, config.model.max_objects
    shapes = {"frames": (3, h, w, 3), "masks": (3, o, h, w), "valid": (o,)}
    dtypes = {"frames": np.float32, "masks": np.float32, "valid": np.bool_}
    batch = {k: jax.ShapeDtypeStruct((per_device_batch, *s), dtypes[k]) for k, s in shapes.items()}
    start = time.perf_counter()
    compiled = step.lower(jax.eval_shape(fresh), batch).compile()
    m = compiled.memory_analysis()
    result = {
        "stage": stage,
        "crop": f"{h}x{w}",
        "per_device_batch": per_device_batch,
        "dtype": config.model.dtype,
        "backend": f"{jax.devices()[0].platform} ({jax.devices()[0].device_kind})",
        "compile_s": time.perf_counter() - start,
        "arguments_gb": m.argument_size_in_bytes / GB,
        "temporaries_gb": m.temp_size_in_bytes / GB,
        "peak_gb": (
            m.argument_size_in_bytes
            + m.output_size_in_bytes
            - m.alias_size_in_bytes
            + m.temp_size_in_bytes
            + m.generated_code_size_in_bytes
        )
        / GB,
    }
    if run:
        rng = np.random.default_rng(0)
        data = {
            "frames": rng.random((per_device_batch, *shapes["frames"]), np.float32),
            "masks": np.zeros((per_device_batch, *shapes["masks"]), np.float32),
            "valid": np.ones((per_device_batch, o), bool),
        }
        data["masks"][:, :, 0, h // 4 : h // 2, w // 4 : w // 2] = 1.0  # one object
        data["valid"][:, 1:] = False
        state = jax.jit(fresh)()
        times = []
        for _ in range(2):
            start = time.perf_counter()
            state, metrics = compiled(state, data)
            jax.block_until_ready(metrics)
            times.append(time.perf_counter() - start)
        result["step_s"] = times[1]
        result["loss"] = float(metrics["loss"])
        result["peak_rss_gb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / GB
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--per_device_batch", type=int, default=1)
    parser.add_argument("--dtype", default="", help="compute dtype (default: the config's)")
    parser.add_argument("--run", action="store_true", help="also run two steps of each stage")
    parser.add_argument(
        "--runlocal", action="store_true", help="the tiny model on 64x64 crops (a quick check)"
    )
    parser.add_argument(
        "--stages", nargs="+", choices=STAGES, default=STAGES, help="the stages (default: all)"
    )
    parser.add_argument("--stage", choices=STAGES, help="one stage, in this process (JSON out)")
    args = parser.parse_args(argv)
    if args.stage:
        print(
            json.dumps(
                measure(args.stage, args.per_device_batch, args.dtype, args.run, args.runlocal)
            )
        )
        return 0
    rows = []
    for stage in args.stages:
        command = [
            sys.executable,
            __file__,
            "--stage",
            stage,
            *(sys.argv[1:] if argv is None else argv),
        ]
        done = subprocess.run(command, check=True, capture_output=True, text=True)
        rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
    print(f"backend: {rows[0]['backend']}; GB = 1e9 bytes")
    print(
        "| stage | crop | clips/device | dtype | arguments (GB) | temporaries (GB) | peak (GB) "
        "| compile (s) |" + (" step (s) | peak RSS (GB) |" if args.run else "")
    )
    print("| --- | --- | ---: | --- | ---: | ---: | ---: | ---: |" + (" ---: | ---: |" * args.run))
    for r in rows:
        line = (
            f"| {r['stage']} | {r['crop']} | {r['per_device_batch']} | {r['dtype']} | "
            f"{r['arguments_gb']:.2f} | {r['temporaries_gb']:.2f} | {r['peak_gb']:.2f} | "
            f"{r['compile_s']:.0f} |"
        )
        if args.run:
            line += f" {r['step_s']:.1f} | {r['peak_rss_gb']:.1f} |"
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
