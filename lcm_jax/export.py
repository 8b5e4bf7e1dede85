"""The engine's step as a file that runs without this repository's model code (`jax.export`).

    python -m lcm_jax.export --checkpoint demo_out/train/lcm/sequence --height 480 --width 854 \\
        --objects 2 --out model.jax --platforms cpu,cuda,tpu

writes one file holding the step of `lcm_jax.inference.engine` (frame -> labels, memory in and
out) serialised as StableHLO for the named platforms (default: cpu), the model's variables as
separate arrays (not baked into the program, so the weights are uploaded once and the program
stays small), the empty memory of `--max_memory_frames` slots (default 10) and the sizes it was
made for. --checkpoint is a training workdir or a `save_variables` directory (its stored model
config; `--model paper|tiny` for one that stores none).
Serve it with only jax and numpy installed:

    from lcm_jax import export
    model = export.load("model.jax")            # checks the platform
    for labels in model.segment(frames, first_labels):   # uint8 [H, W] object ids per frame
        ...

`load` and `ExportedModel` import nothing but jax and numpy (not flax, not `lcm_jax.model`).
The exported step has static shapes: frames of the exported height and width, up to the
exported number of objects, a memory of `max_memory_frames` slots (frames 0, 5, 10, ... and
t − 1, the oldest evicted when full, as the engine with that option).

File layout (a NumPy .npz): `exported` the serialised program (uint8), `meta` its description
(JSON), `variables/<i>` and `memory/<i>` the leaves of the variables and of the empty memory in
the program's argument order.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import jax
import numpy as np

FORMAT = "lcm-jax exported step, version 1"


class ExportError(ValueError):
    """A file that is no exported step, or inputs that do not fit it."""


class ExportedModel:
    """An exported engine step with its variables on the default device.

    meta: {"height", "width", "objects", "slots", "capacity", "mem_every", "platforms",
    "model_config", "format"}.
    """

    def __init__(self, path: str | os.PathLike):
        try:
            with np.load(path) as data:
                meta = json.loads(str(data["meta"]))
                program = bytearray(data["exported"].tobytes())
                variables = [data[f"variables/{i}"] for i in range(meta["num_variables"])]
                self._memory = [data[f"memory/{i}"] for i in range(meta["num_memory"])]
        except (OSError, KeyError, ValueError) as e:
            raise ExportError(f"{os.fspath(path)}: not an lcm-jax exported step ({e})") from e
        if meta.get("format") != FORMAT:
            raise ExportError(f"{os.fspath(path)}: format {meta.get('format')!r}, need {FORMAT!r}")
        # JAX's name of this platform as exports use it: "cuda" or "rocm" where
        # jax.default_backend() says "gpu"
        backend = jax.export.default_export_platform()
        if backend not in meta["platforms"]:
            raise ExportError(
                f"{os.fspath(path)} was exported for {', '.join(meta['platforms'])}; this "
                f"process runs on {backend} (export again with --platforms {backend})"
            )
        self.meta = meta
        self._step = jax.jit(jax.export.deserialize(program).call, donate_argnums=(1,))
        self._variables = jax.device_put(variables)

    def init_memory(self) -> list[jax.Array]:
        """The empty memory of one video (a list of arrays, the program's order), committed to
        the variables' device as the step's output memory is: an uncommitted first memory
        would make frame 1 compile the program a second time."""
        return jax.device_put(self._memory, self._variables[0].sharding)

    def step(self, memory, frame, labels, given, t: int):
        """One frame: (memory, labels uint8 [H, W] as object index + 1, confidence [O]).

        frame uint8 [H, W, 3]; labels uint8 [H, W] the masks given on this frame as object
        index + 1 (0 elsewhere); given bool [O] the objects whose mask is given here."""
        h, w, o = self.meta["height"], self.meta["width"], self.meta["objects"]
        frame, labels, given = np.asarray(frame), np.asarray(labels), np.asarray(given)
        if frame.shape != (h, w, 3) or frame.dtype != np.uint8:
            raise ExportError(
                f"the step was exported for uint8 frames of {w}x{h} ([{h}, {w}, 3]); got "
                f"{frame.dtype} {list(frame.shape)}"
            )
        if labels.shape != (h, w) or given.shape != (o,):
            raise ExportError(
                f"labels must be [{h}, {w}] and given [{o}]; got {list(labels.shape)}, "
                f"{list(given.shape)}"
            )
        if labels.dtype != np.uint8 or given.dtype != bool:
            raise ExportError(
                f"labels must be uint8 and given bool; got {labels.dtype} and {given.dtype}"
            )
        if labels.max() > o:
            raise ExportError(
                f"labels hold {int(labels.max())}: they are object index + 1, at most {o} "
                f"(the step was exported for {o} objects)"
            )
        return self._step(self._variables, memory, frame, labels, given, np.int32(t))

    def segment(
        self, frames: Iterable[np.ndarray], first_labels: np.ndarray
    ) -> Iterator[np.ndarray]:
        """Label maps (uint8 [H, W], the object ids of `first_labels`) of every frame, from
        the first frame's label map (integers, 0 background, 255 void)."""
        first_labels = np.asarray(first_labels)
        if (
            first_labels.dtype.kind not in "iu"
            or first_labels.size
            and (first_labels.min() < 0 or first_labels.max() > 255)
        ):
            raise ExportError(
                "the first mask must be a label map of object ids (integers 0 to 255, uint8 "
                f"[H, W]); got {first_labels.dtype} "
                + (
                    f"with values {first_labels.min()} to {first_labels.max()}"
                    if first_labels.size
                    else "with no values"
                )
            )
        ids = sorted(set(np.unique(first_labels).tolist()) - {0, 255})
        if len(ids) > self.meta["objects"]:
            raise ExportError(
                f"the first mask has {len(ids)} objects; the step was exported for at most "
                f"{self.meta['objects']}"
            )
        lut = np.zeros(256, np.uint8)
        lut[ids] = np.arange(1, len(ids) + 1)
        to_id = np.zeros(256, np.uint8)
        to_id[1 : len(ids) + 1] = ids
        given = np.arange(self.meta["objects"]) < len(ids)
        none = np.zeros(self.meta["objects"], bool)
        memory, pending = self.init_memory(), None
        for t, frame in enumerate(frames):
            labels = lut[first_labels] if t == 0 else np.zeros(first_labels.shape, np.uint8)
            memory, out, _ = self.step(memory, frame, labels, given if t == 0 else none, t)
            if pending is not None:
                yield to_id[np.asarray(pending)]
            pending = out
        if pending is not None:
            yield to_id[np.asarray(pending)]


def load(path: str | os.PathLike) -> ExportedModel:
    """The exported step at `path`, ready on this process's default device."""
    return ExportedModel(path)


# -- exporting (needs the model code) ---------------------------------------------------------


def export_step(
    model_config,
    variables,
    *,
    height: int,
    width: int,
    objects: int,
    platforms: Sequence[str] = ("cpu",),
    max_memory_frames: int = 10,
    mem_every: int = 5,
) -> tuple[bytes, dict, list[np.ndarray], list[np.ndarray]]:
    """(serialised program, meta, variable leaves, empty-memory leaves) of the engine step."""
    from lcm_jax.inference.engine import Engine, InferenceOptions, make_step

    options = InferenceOptions(mem_every=mem_every, max_memory_frames=max_memory_frames)
    engine = Engine(model_config, variables, options)
    geometry = engine.geometry(height, width, objects, max_memory_frames)
    step = make_step(engine.net, options, geometry)
    memory = engine.init_memory(geometry)
    var_leaves, var_tree = jax.tree.flatten(engine.variables)
    mem_leaves, mem_tree = jax.tree.flatten(memory)
    o = geometry.groups * geometry.slots

    def flat_step(var_leaves, mem_leaves, frame, labels, given, t):
        new_memory, out = step(
            jax.tree.unflatten(var_tree, var_leaves),
            jax.tree.unflatten(mem_tree, mem_leaves),
            frame,
            labels,
            given,
            t,
        )
        return jax.tree.leaves(new_memory), out.labels, out.confidence

    spec = lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype)  # noqa: E731
    exported = jax.export.export(jax.jit(flat_step), platforms=tuple(platforms))(
        [spec(x) for x in var_leaves],
        [spec(x) for x in mem_leaves],
        jax.ShapeDtypeStruct((height, width, 3), np.uint8),
        jax.ShapeDtypeStruct((height, width), np.uint8),
        jax.ShapeDtypeStruct((o,), np.bool_),
        jax.ShapeDtypeStruct((), np.int32),
    )
    meta = {
        "format": FORMAT,
        "height": height,
        "width": width,
        "objects": o,
        "slots": geometry.slots,
        "capacity": max_memory_frames,
        "mem_every": mem_every,
        "platforms": list(exported.platforms),
        "model_config": dict(model_config),
        "num_variables": len(var_leaves),
        "num_memory": len(mem_leaves),
    }
    return (
        exported.serialize(),
        meta,
        [np.asarray(x) for x in var_leaves],
        [np.asarray(x) for x in mem_leaves],
    )


def write(path: str | os.PathLike, program: bytes, meta: dict, variables, memory) -> Path:
    """Writes the exported step to `path` atomically (see the module docstring)."""
    from lcm_jax import files

    path = Path(path)
    arrays = {"exported": np.frombuffer(program, np.uint8), "meta": np.array(json.dumps(meta))}
    arrays.update({f"variables/{i}": x for i, x in enumerate(variables)})
    arrays.update({f"memory/{i}": x for i, x in enumerate(memory)})
    with files.atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez(f, **arrays)
    return path


def main(argv: Sequence[str] | None = None) -> int:
    from lcm_jax import checkpoints, cli, files  # the exporting side needs the model code

    parser = argparse.ArgumentParser(
        prog="python -m lcm_jax.export", description=__doc__.split("\n\n")[0]
    )
    cli.add_model_flags(parser)
    parser.add_argument("--height", type=int, required=True)
    parser.add_argument("--width", type=int, required=True)
    parser.add_argument("--objects", type=int, required=True, help="the most objects a video has")
    parser.add_argument("--out", required=True, help="the file to write (e.g. model.jax)")
    parser.add_argument("--platforms", default="cpu", help="comma-separated: cpu,cuda,tpu")
    parser.add_argument("--max_memory_frames", type=int, default=10)
    parser.add_argument("--mem_every", type=int, default=5)
    args = parser.parse_args(argv)
    platforms = [p.strip() for p in args.platforms.split(",") if p.strip()]
    unknown = sorted(set(platforms) - {"cpu", "cuda", "rocm", "tpu"})
    try:
        if unknown or not platforms:
            raise ExportError(f"--platforms: unknown {unknown or platforms}; use cpu,cuda,tpu")
        if min(args.height, args.width, args.objects) < 1:
            raise ExportError("--height, --width and --objects must be >= 1")
        if os.path.isdir(args.out):
            raise ExportError(f"--out {args.out} is a folder; name the file to write (model.jax)")
        files.check_writable(args.out)  # before the minutes of compiling
        model_config, variables = checkpoints.load_model(args.checkpoint, args.model)
        program, meta, var_leaves, mem_leaves = export_step(
            model_config,
            variables,
            height=args.height,
            width=args.width,
            objects=args.objects,
            platforms=platforms,
            max_memory_frames=args.max_memory_frames,
            mem_every=args.mem_every,
        )
        path = write(args.out, program, meta, var_leaves, mem_leaves)
    except cli.INPUT_ERRORS as e:  # CheckpointError and ExportError are ValueErrors
        print(cli.error_line(e), file=sys.stderr)
        return cli.EXIT_INPUT
    print(
        f"wrote {path}: {args.width}x{args.height}, {meta['objects']} object slots, "
        f"{args.max_memory_frames} memory frames, for {', '.join(meta['platforms'])}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
