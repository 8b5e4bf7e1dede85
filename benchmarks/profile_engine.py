"""Where one inference step goes: the engine step split into its parts, each timed jitted.

    python -m benchmarks.profile_engine                       # paper model, 480x854, 2 objects
    python -m benchmarks.profile_engine --model tiny --size 96x96 --iters 5 --trace /tmp/trace
    python -m benchmarks.profile_engine --against-stm --iters 10  # LCM against STM, 480x854

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

`--against-stm` times instead, in the same run and interleaved frame by frame, the full engine
step (as above: 2 objects in object slots sized to the video, `--memory` frames read) and STM
as its official evaluation loop runs a frame (memorize t − 1 + segment t, on the PyTorch
reference `lcm_jax.interop.torch_lcm` with PGM and ORM off, eager, torch.inference_mode, as
many torch threads as XLA's CPU client uses), with the same random weights converted from
torch to Flax (the cost does not depend on them), and prints the median ms per frame of each,
their ratio, the CPU and the load average at the start and end (`against_stm`).
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import os
import platform
import time

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks.machine import cpu_cores, cpu_name, load_average
from lcm_jax.configs import model as model_configs
from lcm_jax.inference import memory as mem
from lcm_jax.inference import padding
from lcm_jax.inference.engine import (
    Engine,
    Geometry,
    InferenceOptions,
    Video,
    frame_output,
    merge_objects,
    override,
)
from lcm_jax.model import LCM, grm_read, init_variables, pool_to_grid
from lcm_jax.model.lcm import GRID

# STM is LCM with GRM alone (the paper's Table 4 row "stm").
STM_SWITCHES = dict(
    zip(("use_grm", "use_pgm", "use_orm"), model_configs.TABLE4["stm"], strict=True)
)


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


def filled_memory(engine: Engine, geometry: Geometry, device_frames, first, count: int):
    """(the jitted step of `geometry`, the memory of one video after its frames [:count]), with
    the label map `first` (object index + 1, 0 background) given on frame 0."""
    step = engine.step_fn(geometry)
    memory = jax.tree.map(lambda x: x[None], engine.init_memory(geometry))
    given0, none = np.zeros((2, 1, geometry.groups * geometry.slots), bool)
    given0[0, : int(first.max())] = True
    for t in range(count):
        given = given0 if t == 0 else none
        memory, _ = step(
            engine.variables, memory, device_frames[t], first[None], given, np.int32(t)
        )
    return step, memory


@dataclasses.dataclass(frozen=True)
class AgainstStm:
    """Per timed frame t (ms, and the engine's FrameOutput of each side as NumPy: labels uint8
    [H, W], confidence float32 [O]): the LCM engine step and STM's memorize t − 1 + segment t."""

    lcm_ms: list[float]
    stm_ms: list[float]
    lcm: list[tuple[np.ndarray, np.ndarray]]
    stm: list[tuple[np.ndarray, np.ndarray]]
    threads: int
    torch_version: str


def against_stm(
    config, size: tuple[int, int], objects: int, memory_frames: int, iters: int, threads: int
) -> AgainstStm:
    """Times, interleaved per frame, the LCM engine step of `config` and STM as its official
    evaluation loop runs a frame, on one synthetic video and the same random weights.

    STM is the PyTorch reference (`lcm_jax.interop.torch_lcm`) with use_pgm = use_orm = False,
    eager under torch.inference_mode with `threads` threads, holding the reference weights that
    the engine's Flax variables are converted from (PGM's and ORM's left out). Per frame t it
    does what STM's eval loop does: memorize frame t − 1 (the memory encoder once per object,
    on the soft masks of t − 1), concatenate it to the kept memory, segment t against it (all
    objects in one batch), and the softmax of t (the soft masks for t + 1). Both sides read
    `memory_frames` frames: frame 0 (its masks given) and the latest others (the engine:
    mem_every=1, capacity `memory_frames`). Frames are zero-padded to a multiple of 16 as the
    engine pads them; STM memorizes its prediction on the padding where the engine memorizes
    zeros, so with PGM and ORM off the two compute the same function when nothing is padded
    and the objects fit one group (objects <= max_objects).

    Frames 1 .. memory_frames − 1 fill the memory, frame `memory_frames` is a warm-up of each
    side (the engine compiled before), then `iters` frames are timed, the engine then STM on
    each. The outputs are compared by the tests, not here.
    """
    import torch

    from lcm_jax.interop import convert
    from lcm_jax.interop import torch_lcm as tl

    torch.set_num_threads(threads)
    config = dict(config)
    reference = tl.random_weights_(tl.build_torch_model(config), 0)
    variables = convert.torch_to_flax(reference.state_dict(), convert.abstract_variables(config))
    stm = tl.build_torch_model({**config, **STM_SWITCHES, "max_objects": objects})
    weights = reference.state_dict()
    stm.load_state_dict({k: weights[k] for k in stm.state_dict()})
    del reference

    engine = Engine(
        config, variables, InferenceOptions(mem_every=1, max_memory_frames=memory_frames)
    )
    geometry = engine.geometry(*size, objects, memory_frames)
    frames, first = synthetic_video(memory_frames + 1 + iters, size, objects)
    device_frames = [jax.device_put(f[None]) for f in frames]
    labels = jax.device_put(first[None])
    none = np.zeros((1, geometry.groups * geometry.slots), bool)
    step, memory = filled_memory(engine, geometry, device_frames, first, memory_frames)

    def lcm_frame(t):
        nonlocal memory
        memory, out = step(engine.variables, memory, device_frames[t], labels, none, np.int32(t))
        return jax.block_until_ready((memory, out))[1]

    # STM's inputs as its loader gives them: float frames and the first masks, padded.
    pads = geometry.pads
    pad = lambda x, last: torch.from_numpy(np.array(padding.pad_hw(x, pads, last)))  # noqa: E731
    stm_frames = [pad(f[None].astype(np.float32) / 255, True) for f in frames]
    given = np.stack([first == k for k in range(1, objects + 1)]).astype(np.float32)
    probs = pad(given[None], False)  # the soft masks of frame t − 1, [1, O, Hp, Wp]
    valid = torch.ones((1, objects), dtype=torch.bool)
    kept = []  # (k_g, v) [1, O, 1, h, w, C] of the frames kept: frame 0, then the latest

    def stm_frame(t):
        nonlocal probs
        with torch.inference_mode():
            new = stm.encode_memory(stm_frames[t - 1], probs, valid)  # memorize t − 1
            new = (new.k_g[:, :, None], new.v[:, :, None])
            k_g, v = (torch.cat([*(m[i] for m in kept), new[i]], dim=2) for i in (0, 1))
            pool = tl.MemoryPool(k_g, v, torch.ones(v.shape[:3], dtype=torch.bool))
            logits = stm.segment(stm_frames[t], pool, None, None, valid)  # STM reads neither
            soft = torch.softmax(logits, dim=1)
        probs = soft[:, 1:]
        kept.append(new)
        if len(kept) > memory_frames - 1:
            del kept[1]  # frame 0 stays
        return soft

    def stm_output(soft):
        cropped = padding.crop_hw(soft[0].numpy(), pads, channels_last=False)
        return jax.device_get(frame_output(jnp.asarray(cropped), soft_output=False))

    for t in range(1, memory_frames + 1):  # fill STM's memory, then one warm-up frame each
        stm_frame(t)
    lcm_frame(memory_frames)
    times = {"lcm": [], "stm": []}
    outputs = {"lcm": [], "stm": []}
    for t in range(memory_frames + 1, len(frames)):
        for name, run in (("lcm", lcm_frame), ("stm", stm_frame)):
            start = time.perf_counter()
            out = run(t)
            times[name].append(1000 * (time.perf_counter() - start))
            out = jax.device_get(out) if name == "lcm" else stm_output(out)
            outputs[name].append((out.labels.reshape(size), out.confidence.reshape(-1)))
    return AgainstStm(
        *(times["lcm"], times["stm"], outputs["lcm"], outputs["stm"]),
        threads=torch.get_num_threads(),
        torch_version=torch.__version__,
    )


def print_against_stm(result: AgainstStm, config, args, load_before: str) -> None:
    lcm, stm = (float(np.median(x)) for x in (result.lcm_ms, result.stm_ms))
    switches = "+".join(k[4:].upper() for k in ("use_grm", "use_pgm", "use_orm") if config[k])
    print(
        f"CPU {cpu_name()} ({cpu_cores()} cores), load average {load_before} at start, "
        f"{load_average()} at end; jax {jax.__version__} (XLA CPU: {result.threads} threads), "
        f"torch {result.torch_version} (torch.set_num_threads({result.threads}), eager, "
        "inference_mode)"
    )
    print(
        f"{args.model} model ({config['backbone']} x{config['width']}, {args.dtype}), random "
        f"weights (the same on both sides), {args.size[0]}x{args.size[1]}, {args.objects} "
        f"objects, {args.memory} memory frames; one process, interleaved (LCM, STM, ...) over "
        f"{len(result.lcm_ms)} frames after a warm-up frame each; median ms per frame"
    )
    print("\n| per frame | ms |\n| --- | ---: |")
    print(f"| LCM engine step ({switches}; `Engine.step_fn`) | {lcm:.1f} |")
    print(f"| STM: memorize t−1 + segment t (PyTorch reference, GRM only) | {stm:.1f} |")
    print(f"| LCM / STM | {lcm / stm:.2f} |")


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="paper", choices=("paper", "tiny"))
    p.add_argument("--dtype", default="float32", choices=("float32", "bfloat16"))
    p.add_argument("--size", type=parse_size, default=(480, 854), help="frame HxW")
    p.add_argument("--objects", type=int, default=2)
    p.add_argument("--memory", type=int, default=5, help="memory frames read by a timed step")
    p.add_argument("--iters", type=int, default=3)
    p.add_argument("--trace", default="", help="write a jax.profiler trace of 3 steps here")
    p.add_argument(
        "--against-stm",
        action="store_true",
        help="instead of the parts: the engine step against STM's memorize + segment, "
        "interleaved per frame in this run (PyTorch reference; see `against_stm`)",
    )
    args = p.parse_args(argv)

    config = dict(model_configs.get_config(args.model), dtype=args.dtype)
    if args.against_stm:
        load_before = load_average()
        # XLA's CPU client runs one thread per CPU this process may run on; torch gets as many.
        threads = len(os.sched_getaffinity(0))
        result = against_stm(config, args.size, args.objects, args.memory, args.iters, threads)
        print_against_stm(result, config, args, load_before)
        return
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
        step, memory = filled_memory(engine, geometry, device_frames, first, args.memory)
        none = np.zeros((1, geometry.groups * geometry.slots), bool)
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
