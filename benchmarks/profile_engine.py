"""Where one inference step goes: the engine step split into its parts, each timed jitted.

    python -m benchmarks.profile_engine                       # paper model, 480x854, 2 objects
    python -m benchmarks.profile_engine --model tiny --size 96x96 --iters 5 --trace /tmp/trace

Builds the engine of `lcm_jax.inference` (random weights: the cost does not depend on them),
fills its memory with `--memory` frames (mem_every=1, capacity `--memory`, so every timed step
reads exactly that many frames) and times, after a warm-up call each:

* the whole jitted step (`Engine.step_fn`), and the engine's Python loop per frame (`Engine.run`
  on frames already in memory): their difference is the host's share (dispatch, the uint8
  frame to the device, the labels back);
* its parts, each jitted alone on the step's own inputs: query encoder (+ projections),
  memory encoder (+ projections; all objects in one batched call), GRM read, PGM, ORM,
  decoder, soft aggregation of the objects with the given-mask override and the outputs, and
  the memory write; the host-to-device copy of a frame and the device-to-host copy of a label
  map.

Parts run separately lose the fusion across their borders, so their sum can differ from the
step. `--trace DIR` also records a `jax.profiler` trace of a few steps (open it with
TensorBoard's profile plugin or Perfetto) to see the same split inside the compiled step.
Prints a Markdown table (ms and % of the step).
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import platform
import time

import jax
import jax.numpy as jnp
import numpy as np

from lcm_jax.configs import model as model_configs
from lcm_jax.inference import memory as mem
from lcm_jax.inference.engine import Engine, InferenceOptions, Video, merge_objects, override
from lcm_jax.model import LCM, grm_read, init_variables, pool_to_grid
from lcm_jax.model.lcm import GRID


def parse_size(text: str) -> tuple[int, int]:
    h, w = (int(v) for v in text.lower().split("x"))
    return h, w


def seconds_per_call(fn, iters: int) -> float:
    """Median seconds of fn() over `iters` calls, each synchronised, after one warm-up call."""
    jax.block_until_ready(fn())
    times = []
    for _ in range(iters):
        start = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def synthetic_video(num_frames: int, size: tuple[int, int], objects: int, seed: int = 0):
    """Random uint8 frames and a first-frame label map with `objects` side-by-side boxes."""
    rng = np.random.default_rng(seed)
    h, w = size
    frames = [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for _ in range(num_frames)]
    labels = np.zeros((h, w), np.uint8)
    for k in range(objects):
        labels[
            h // 4 : 3 * h // 4, k * w // objects + w // 16 : (k + 1) * w // objects - w // 16
        ] = k + 1
    return frames, labels


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="paper", choices=("paper", "tiny"))
    p.add_argument("--dtype", default="float32", choices=("float32", "bfloat16"))
    p.add_argument("--size", type=parse_size, default=(480, 854), help="frame HxW")
    p.add_argument("--objects", type=int, default=2)
    p.add_argument("--memory", type=int, default=5, help="memory frames read by a timed step")
    p.add_argument("--iters", type=int, default=3)
    p.add_argument("--trace", default="", help="write a jax.profiler trace of 3 steps here")
    args = p.parse_args(argv)

    config = dict(model_configs.get_config(args.model), dtype=args.dtype)
    variables = jax.jit(lambda key: init_variables(config, key))(jax.random.key(0))
    options = InferenceOptions(mem_every=1, max_memory_frames=args.memory)
    engine = Engine(config, variables, options)
    net: LCM = engine.net
    frames, first = synthetic_video(args.memory + 2 + args.iters, args.size, args.objects)
    video = Video(frames=frames, annotations={0: first}, num_frames=len(frames))

    # The engine's Python loop per frame, memory full after the first `memory` frames.
    results = engine.run(video)
    for _ in range(args.memory + 1):
        next(results)  # fills the memory, compiles
    start = time.perf_counter()
    for _ in results:
        pass
    loop = (time.perf_counter() - start) / (len(frames) - args.memory - 1)

    # The step alone, on device inputs, from a full memory: the engine's object slots (sized to
    # the video) and, for comparison, every group padded to the model's max_objects (before).
    device_frames = [jax.device_put(f[None]) for f in frames]
    t_step = np.int32(args.memory)

    def stepper(geometry):
        """(one_step() -> labels, the memory it steps from), the memory full."""
        step = engine.step_fn(geometry)
        o = geometry.groups * geometry.slots
        memory = jax.tree.map(lambda x: x[None], engine.init_memory(geometry))
        given0, none = np.zeros((1, o), bool), np.zeros((1, o), bool)
        given0[0, : args.objects] = True
        for t in range(args.memory):
            given = given0 if t == 0 else none
            memory, _ = step(
                engine.variables, memory, device_frames[t], first[None], given, np.int32(t)
            )
        state = {"memory": memory}

        def one_step():
            state["memory"], out = step(
                engine.variables, state["memory"], device_frames[-1], first[None], none, t_step
            )
            return out.labels

        return one_step, state

    geometry = engine.geometry(*args.size, args.objects, args.memory)
    padded = dataclasses.replace(geometry, slots=net.max_objects)
    one_step, state = stepper(geometry)
    rows = [
        (f"engine step ({geometry.slots} object slots)", seconds_per_call(one_step, args.iters))
    ]
    if padded != geometry:
        rows.append(
            (
                f"engine step, slots padded to max_objects={net.max_objects} (before)",
                seconds_per_call(stepper(padded)[0], args.iters),
            )
        )
    if args.trace:
        with jax.profiler.trace(args.trace):
            for _ in range(3):
                jax.block_until_ready(one_step())

    # The parts, on the step's own inputs (batch row 0 of the one video).
    full = jax.tree.map(lambda x: x[0], state["memory"])
    hp, wp = geometry.padded
    s_rows, m = options.streams * geometry.groups, geometry.slots
    o = geometry.groups * m
    frame = (
        jnp.zeros((s_rows, hp, wp, 3), jnp.float32)
        .at[:, : args.size[0], : args.size[1]]
        .set(jnp.asarray(frames[-1], jnp.float32) / 255)
    )
    joined = mem.joined(full)
    valid = mem.per_row(joined, options.streams, m)
    apply = functools.partial(net.apply, engine.variables)
    part = lambda f: jax.jit(lambda *a: apply(*a, method=f))  # noqa: E731

    query = part(LCM.encode_query)
    q = query(frame)
    rows.append(("query encoder + projections", seconds_per_call(lambda: query(frame), args.iters)))
    masks = full.prev.mask
    encode = part(LCM.encode_memory)
    rows.append(
        (
            f"memory encoder + projections ({args.objects} objects of {m} slots, one call)",
            seconds_per_call(lambda: encode(frame, masks, valid), args.iters),
        )
    )
    b = s_rows * m
    h, w = hp // GRID, wp // GRID
    n = h * w
    flat = lambda x: x.reshape(b, *x.shape[2:])  # noqa: E731
    per_object = lambda x: jnp.repeat(x, m, axis=0)  # noqa: E731
    pool = mem.pool(full, options.streams)
    k_q = per_object(q.k_g).reshape(b, n, -1)
    k_p = flat(pool.k_g).reshape(b, -1, k_q.shape[-1])
    v_p = flat(pool.v).reshape(b, k_p.shape[1], -1)
    pool_valid = jnp.repeat(flat(pool.valid), n, axis=1)
    read = jax.jit(
        functools.partial(grm_read, scale_keys=net.scale_keys, chunk_size=net.grm_chunk_size)
    )
    rows.append(
        (
            f"GRM read ({args.memory} memory frames)",
            seconds_per_call(lambda: read(k_q, k_p, v_p, pool_valid), args.iters),
        )
    )
    v_q = per_object(q.v)
    if net.use_pgm:
        m_prev = pool_to_grid(flat(full.prev.mask), net.mask_pooling)
        pgm = part(lambda mdl, *a: mdl.pgm(*a))
        k_l_q, k_l_m = per_object(q.k_l), flat(full.prev.k_l)
        rows.append(("PGM", seconds_per_call(lambda: pgm(k_l_q, k_l_m, m_prev, v_q), args.iters)))
    if net.use_orm:
        w_ref = pool_to_grid(flat(full.reference.mask), net.mask_pooling)
        orm = part(lambda mdl, *a: mdl.orm(*a))
        v_f = flat(full.reference.v)
        rows.append(("ORM", seconds_per_call(lambda: orm(v_q, v_f, w_ref), args.iters)))
    x = jnp.concatenate([v_q, v_q], axis=-1)
    decoder = part(lambda mdl, *a: mdl.decoder(*a))
    rows.append(
        (
            "decoder (skips once per frame)",
            seconds_per_call(lambda: decoder(x, q.r3, q.r2), args.iters),
        )
    )
    r3, r2 = per_object(q.r3), per_object(q.r2)
    rows.append(
        (
            "decoder, skips repeated per object first (before)",
            seconds_per_call(lambda: decoder(x, r3, r2), args.iters),
        )
    )
    fg = jnp.zeros((options.streams, o, *args.size), jnp.float32)
    given_masks = jnp.zeros((o, *args.size), jnp.float32)

    @jax.jit
    def aggregate(fg, given_masks):
        probs = merge_objects(fg, joined)
        return jnp.argmax(override(probs, given_masks, jnp.zeros(o, bool)), axis=0)

    rows.append(
        (
            "soft aggregation + override + labels",
            seconds_per_call(lambda: aggregate(fg, given_masks), args.iters),
        )
    )
    encoded = encode(frame, masks, valid)
    write = jax.jit(functools.partial(mem.write, mem_every=1, streams=options.streams))
    rows.append(
        (
            "memory write",
            seconds_per_call(
                lambda: write(full, encoded, masks, t_step, given=jnp.zeros(o, bool)), args.iters
            ),
        )
    )
    raw = frames[-1]
    rows.append(
        ("frame to device (uint8)", seconds_per_call(lambda: jax.device_put(raw), args.iters))
    )
    out = one_step()
    rows.append(("labels to host (uint8)", seconds_per_call(lambda: np.asarray(out), args.iters)))
    rows.append(("engine loop per frame (Engine.run, frames in host memory)", loop))

    total = rows[0][1]
    device = jax.devices()[0]
    print(
        f"{args.model} model ({config['backbone']} x{config['width']}, {args.dtype}), "
        f"{args.size[0]}x{args.size[1]} (padded {hp}x{wp}), {args.objects} objects in "
        f"{geometry.groups} group(s) of {m} slots, {args.memory} memory frames; "
        f"{device.platform} {device.device_kind} ({platform.processor() or platform.machine()}), "
        f"jax {jax.__version__}; median of {args.iters}"
    )
    print("\n| part | ms | % of the step |\n| --- | ---: | ---: |")
    for name, seconds in rows:
        print(f"| {name} | {1000 * seconds:.1f} | {100 * seconds / total:.0f} |")
    skip = ("engine", "(before)", "to device", "to host")
    parts = sum(s for name, s in rows if not any(k in name for k in skip))
    print(f"| sum of the model parts | {1000 * parts:.1f} | {100 * parts / total:.0f} |")


if __name__ == "__main__":
    main()
