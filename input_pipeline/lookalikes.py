"""Look-alike scenes: one target and identical unannotated copies that pass near and across it.

The videos of the PGM/ORM ablation (`benchmarks/ablation.py`), where only position and motion
tell the target from its look-alikes:

- one target (label 1) on a textured grey background, moving smoothly (drift + wobble) inside
  the frame, rotating and pulsing in size (`input_pipeline.synthetic.Sprite`);
- `num_lookalikes` unannotated copies of it: same colour, shape family, texture, size, rotation
  and pulsing (a translated copy, frame by frame). Look-alike l moves with the target plus a
  constant relative velocity and a small wobble of its own, and crosses the target at a frame
  t_c in the middle half of the video, off-centre by less than one radius: it comes near, then
  occludes (l even: in front) or is occluded by (l odd: behind) the target, then moves away;
- the **control** twin of a scene draws the same random numbers and differs only in the
  look-alikes' colour (another palette colour): same paths, same occlusions, same target masks,
  no look-alike.

Written in the DAVIS 2017 layout (`write_scene_set`), so that the TFDS builder, the training
input and `lcm_jax.inference.evaluation` read it as they read DAVIS:
    DAVIS/JPEGImages/480p/<seq>/00000.jpg, DAVIS/Annotations/480p/<seq>/00000.png,
    DAVIS/Lookalikes/<seq>/00000.png  visible look-alike pixels (label map, l + 1 for look-alike
                                      l; for a control video, the pixels of the differently
                                      coloured objects in the same places)
    DAVIS/ImageSets/2017/<split>.txt  train (both kinds), val (both kinds, for TFDS),
                                      val_lookalike, val_control, test_lookalike, test_control
Training scenes are independent draws (half look-alike, half control); validation and test
scenes come as twins (`<split>_lookalike_i` and `<split>_control_i` share scene i).
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import numpy as np
from tqdm import tqdm

from lcm_jax.input_pipeline import synthetic, video_io

KINDS = ("lookalike", "control")
HELD_OUT = ("val", "test")  # splits of twin scenes; "val" is for choices, "test" for results
_SPLIT_IDS = {"train": 0, "val": 1, "test": 2}  # rng stream of each split


@dataclasses.dataclass(frozen=True)
class SceneConfig:
    """Knobs of a look-alike scene. Lengths are fractions of the frame size S (square frames).

    Attributes:
        num_lookalikes: look-alikes per scene (even ones pass in front of the target).
        radius: range of the target's radius.
        target_speed: largest drift of the target per frame.
        target_wobble: largest amplitude of the target's wobble (per axis).
        relative_speed: range of a look-alike's speed relative to the target, per frame.
        lookalike_wobble: largest amplitude of a look-alike's own wobble.
        miss: largest distance between the centres at the crossing frame, in target radii.
        scale_amplitude, rotation_speed: the shared pulsing and rotation (as `Difficulty`).
    """

    num_lookalikes: int = 2
    radius: tuple[float, float] = (0.1, 0.13)
    target_speed: float = 0.006
    target_wobble: float = 0.1
    relative_speed: tuple[float, float] = (0.012, 0.025)
    lookalike_wobble: float = 0.04
    miss: float = 0.8
    scale_amplitude: float = 0.2
    rotation_speed: float = 0.08

    def __post_init__(self):
        if self.num_lookalikes < 1:
            raise ValueError(f"num_lookalikes must be >= 1, got {self.num_lookalikes}")


def _wobble(rng, num_frames: int, amplitude: float, size: int) -> np.ndarray:
    """A smooth per-axis sinusoid [T, 2] in pixels: amplitude in [0, amplitude]·size."""
    a = rng.uniform(0, amplitude, 2) * size
    freq = rng.uniform(0.08, 0.25, 2)
    phase = rng.uniform(0, 2 * np.pi, 2)
    return a * np.sin(freq * np.arange(num_frames)[:, None] + phase)


def _target_path(rng, num_frames: int, size: int, radius: float, c: SceneConfig) -> np.ndarray:
    """Centres [T, 2] (y, x) that keep the whole target (1.2 radii) inside the frame."""
    margin = 1.2 * radius * (1 + c.scale_amplitude)
    for _ in range(100):
        start = rng.uniform(0.35, 0.65, 2) * size
        drift = rng.uniform(-c.target_speed, c.target_speed, 2) * size
        path = start + drift * np.arange(num_frames)[:, None]
        path = path + _wobble(rng, num_frames, c.target_wobble, size)
        if (path >= margin).all() and (path <= size - margin).all():
            return path
    raise RuntimeError("no target path fits in the frame; use a larger frame or smaller radius")


def _lookalike_offset(rng, num_frames: int, size: int, radius: float, c: SceneConfig):
    """A look-alike's centre minus the target's, [T, 2]: constant velocity plus a wobble, equal
    to a `miss` offset (perpendicular to the motion) at the crossing frame t_c."""
    t_c = rng.uniform(0.25, 0.75) * (num_frames - 1)
    angle = rng.uniform(0, 2 * np.pi)
    direction = np.array([np.sin(angle), np.cos(angle)])
    normal = np.array([-direction[1], direction[0]])
    speed = rng.uniform(*c.relative_speed) * size
    miss = rng.uniform(-c.miss, c.miss) * radius
    t = np.arange(num_frames)[:, None]
    wobble = _wobble(rng, num_frames + 1, c.lookalike_wobble, size)
    # The wobble's value at t_c (linear interpolation) is subtracted, so the crossing stays.
    at_crossing = np.array([np.interp(t_c, np.arange(num_frames + 1), w) for w in wobble.T])
    return direction * speed * (t - t_c) + normal * miss + wobble[:num_frames] - at_crossing


def render_scene(
    rng: np.random.Generator, *, num_frames: int, size: int, config: SceneConfig = SceneConfig()
) -> dict[str, np.ndarray]:
    """Renders one scene in both kinds from the same random numbers.

    Returns:
        {"lookalike": frames uint8 [T, S, S, 3], "control": frames uint8 [T, S, S, 3],
         "labels": uint8 [T, S, S] (1 = target; the same for both kinds),
         "others": uint8 [T, S, S] (visible pixels of look-alike l as l + 1),
         "centres": float64 [1 + L, T, 2] (target, then look-alikes; (y, x) pixels)}.
    """
    c = config
    d = synthetic.Difficulty(scale_amplitude=c.scale_amplitude)
    colours = rng.permutation(len(synthetic.OBJECT_COLOURS))[:2]  # target, control objects
    family, texture = synthetic.random_look(rng)
    radius = rng.uniform(*c.radius) * size
    look = dict(
        label=1,
        colour=synthetic.OBJECT_COLOURS[colours[0]],
        family=family,
        radius=radius,
        texture=texture,
        centre0=np.zeros(2),
        drift=np.zeros(2),
        wobble=np.zeros(2),
        wobble_freq=np.zeros(2),
        wobble_phase=np.zeros(2),
        angle0=rng.uniform(0, 2 * np.pi),
        angular_speed=rng.uniform(-c.rotation_speed, c.rotation_speed),
        scale_freq=rng.uniform(0.05, 0.25),
        scale_phase=rng.uniform(0, 2 * np.pi),
        start=0,
    )
    target = _target_path(rng, num_frames, size, radius, c)
    centres = np.stack(
        [target]
        + [
            target + _lookalike_offset(rng, num_frames, size, radius, c)
            for _ in range(c.num_lookalikes)
        ]
    )
    background = synthetic.draw_background(rng, size, size, d)
    # Depth, back to front: odd look-alikes, the target, even look-alikes.
    behind = list(range(2, 1 + c.num_lookalikes, 2))
    in_front = list(range(1, 1 + c.num_lookalikes, 2))
    order = behind + [0] + in_front
    out = {kind: np.empty((num_frames, size, size, 3), np.uint8) for kind in KINDS} | {
        "labels": np.zeros((num_frames, size, size), np.uint8),
        "others": np.zeros((num_frames, size, size), np.uint8),
        "centres": centres,
    }
    for t in range(num_frames):
        images = {kind: background.copy() for kind in KINDS}
        owner = np.full((size, size), -1)
        for index in order:
            sprite = synthetic.Sprite(**(look | dict(centre0=centres[index, t])))
            coverage, colour = synthetic.draw_sprite(sprite, t, size, size, d)
            owner[coverage] = index
            images["lookalike"][coverage] = colour[coverage]
            if index:  # the control's objects: the same texture in another colour
                scale = synthetic.OBJECT_COLOURS[colours[1]] / sprite.colour.astype(np.float64)
                colour = colour * scale
            images["control"][coverage] = colour[coverage]
        for kind in KINDS:
            out[kind][t] = np.clip(np.round(images[kind]), 0, 255).astype(np.uint8)
        out["labels"][t] = owner == 0
        out["others"][t] = np.where(owner > 0, owner, 0)
    return out


def sequence_name(split: str, kind: str, index: int) -> str:
    return f"{split}_{kind}_{index:04d}"


def write_scene_set(
    out_dir: str | os.PathLike,
    *,
    num_train: int,
    num_val: int,
    num_test: int,
    num_frames: int,
    size: int,
    seed: int = 0,
    config: SceneConfig = SceneConfig(),
    jpeg_quality: int = 92,
    progress: bool = True,
) -> Path:
    """Writes the splits (module docstring) under `out_dir`/DAVIS; returns that DAVIS root.

    num_train scenes for training (the first half look-alike, the rest control), num_val and
    num_test twin scenes each (so 2·num_val and 2·num_test videos). Everything written is a
    function of the arguments.
    """
    if num_train < 2 or num_val < 1 or num_test < 1 or num_frames < 3 or size < 32:
        raise ValueError(
            f"need num_train >= 2, num_val and num_test >= 1, num_frames >= 3 and size >= 32; "
            f"got {num_train}, {num_val}, {num_test}, {num_frames}, {size}"
        )
    davis = Path(out_dir) / "DAVIS"
    lists: dict[str, list[str]] = {"train": [], "val": []}
    lists |= {f"{s}_{kind}": [] for s in HELD_OUT for kind in KINDS}
    counts = {"train": num_train, "val": num_val, "test": num_test}
    bar = tqdm(total=sum(counts.values()), desc="look-alike scenes", disable=not progress)
    for split, count in counts.items():
        for i in range(count):
            rng = np.random.default_rng([seed, _SPLIT_IDS[split], i])
            scene = render_scene(rng, num_frames=num_frames, size=size, config=config)
            kinds = KINDS if split in HELD_OUT else (KINDS[int(i >= count // 2)],)
            for kind in kinds:
                seq = sequence_name(split, kind, i)
                synthetic.write_davis_sequence(
                    davis, seq, scene[kind], scene["labels"], jpeg_quality
                )
                for t, others in enumerate(scene["others"]):
                    video_io.write_label_png(davis / "Lookalikes" / seq / f"{t:05d}.png", others)
                if split != "test":
                    lists[split].append(seq)
                if split in HELD_OUT:
                    lists[f"{split}_{kind}"].append(seq)
            bar.update()
    bar.close()
    for name, seqs in lists.items():
        path = davis / "ImageSets" / "2017" / f"{name}.txt"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(f"{s}\n" for s in seqs))
    return davis


def read_others(davis_root: str | os.PathLike, seq: str) -> np.ndarray:
    """The visible look-alike pixels of a sequence, uint8 [T, H, W] (l + 1 for look-alike l)."""
    paths = sorted((Path(davis_root) / "Lookalikes" / seq).glob("*.png"))
    if not paths:
        raise video_io.DatasetError(f"no look-alike masks for {seq!r} in {str(davis_root)!r}")
    return np.stack([video_io.read_label_png(p) for p in paths])
