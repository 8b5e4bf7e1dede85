"""Procedural VOS videos with known answers, in the DAVIS 2017, YouTube-VOS and static layouts.

Each video has 1-5 textured target objects on a textured grey background. Objects move, rotate
and scale along smooth paths, occlude each other (fixed depth order), may leave the frame and come
back, and (YouTube-VOS layout only) may first appear mid-video. Unannotated **distractors** copy a
target's colour, texture and shape family and move elsewhere: the case PGM exists for.

Known answers: each target object is drawn in a colour of `OBJECT_COLOURS` times a texture
brightness in [TEXTURE_LOW, 1], the targets of a video in different colours, assigned at random
per video (object 1 is not always red: the overlays stay readable); the background is near-grey
(saturation below BACKGROUND_MAX_TINT). Tests use this to check that augmented frames and masks
stay aligned.

Output under `out_dir`:
    DAVIS/JPEGImages/480p/<seq>/00000.jpg, DAVIS/Annotations/480p/<seq>/00000.png (palette),
    DAVIS/ImageSets/2017/{train,val}.txt
    YouTube/{train,valid}/JPEGImages/<vid>/00000.jpg (frame names step 5: 00000, 00005, ...),
    YouTube/{train,valid}/Annotations/<vid>/*.png (train: every frame; valid: only the frame
    where an object first appears, holding the objects that start there), .../meta.json
    static/images/<name>.jpg, static/masks/<name>.png (palette label maps, 1-3 objects)
    synthetic.json: the arguments that wrote them (`SETTINGS_FILE`)

The set is written into a temporary folder beside `out_dir` and renamed into place once
complete, so an `out_dir` that exists holds a whole set: a killed run leaves no half-written
set that a later one would take for complete (its temporary is removed by the next run).
Asked again into an `out_dir` holding the set of the same arguments, `generate` writes nothing;
a set of other arguments, or files without `synthetic.json`, stop it with a ValueError naming
the difference (new and old frames would mix otherwise).

CLI:
    python -m lcm_jax.input_pipeline.synthetic --out lcm_synth --num_videos 8 --num_frames 24

A bad flag (a value outside `RANGES`, an --out that is a file) is one line "error: ..." on stderr
with exit status 2, before anything is written (`lcm_jax.cli`).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw
from tqdm import tqdm

from lcm_jax import files
from lcm_jax.input_pipeline import video_io

# RGB of the target objects (a random one each, per video); distractors copy their twin's.
# `lookalikes` draws from this list too: changing it changes the look-alike scenes.
OBJECT_COLOURS = np.array(
    [[230, 40, 40], [40, 210, 40], [40, 90, 240], [235, 215, 30], [210, 40, 220]], np.uint8
)
TEXTURE_LOW = 0.65  # object pixels are colour * brightness, brightness in [TEXTURE_LOW, 1]
BACKGROUND_MAX_TINT = 12  # background: grey level 70..180 plus a per-channel tint <= this
SHAPE_FAMILIES = ("ellipse", "box", "triangle", "star")
YOUTUBE_FRAME_STEP = 5  # YouTube-VOS frame file names advance by 5 (00000, 00005, ...)
SETTINGS_FILE = "synthetic.json"  # the arguments a set was written with, at its top level


@dataclasses.dataclass(frozen=True)
class Difficulty:
    """Difficulty knobs of the generator.

    Attributes:
        min_objects, max_objects: number of target objects per video (1 <= min <= max <= 5).
        num_distractors: unannotated look-alikes of random targets per video.
        size_range: object radius as a fraction of min(H, W).
        speed: largest drift of an object's centre per frame, fraction of the frame size.
        rotation_speed: largest rotation per frame, radians.
        scale_amplitude: relative amplitude of the smooth size oscillation.
        leave_prob: probability that an object's path leaves the frame and comes back.
        late_start_prob: probability (YouTube-VOS layout only) that an object first appears
            mid-video (between frame 1 and half the video); target 1 always starts at frame 0.
        background_contrast: amplitude of the background texture (grey levels).
        jpeg_quality: JPEG quality of the written frames.
    """

    min_objects: int = 1
    max_objects: int = 3
    num_distractors: int = 1
    size_range: tuple[float, float] = (0.12, 0.22)
    speed: float = 0.02
    rotation_speed: float = 0.08
    scale_amplitude: float = 0.2
    leave_prob: float = 0.25
    late_start_prob: float = 0.3
    background_contrast: float = 40.0
    jpeg_quality: int = 92

    def __post_init__(self):
        if not 1 <= self.min_objects <= self.max_objects <= len(OBJECT_COLOURS):
            raise ValueError(
                f"need 1 <= min_objects <= max_objects <= {len(OBJECT_COLOURS)}, got "
                f"{self.min_objects}, {self.max_objects}"
            )
        if self.num_distractors < 0:
            raise ValueError(f"num_distractors must be >= 0, got {self.num_distractors}")


@dataclasses.dataclass
class Sprite:
    """One object's look and path; `draw_sprite` renders it at frame t. Its centre at frame t is
    centre0 + drift·t + wobble·sin(wobble_freq·t + wobble_phase), its angle
    angle0 + angular_speed·t, its radius radius·(1 + scale_amplitude·sin(scale_freq·t +
    scale_phase))."""

    label: int  # 0 for a distractor
    colour: np.ndarray  # uint8 [3]
    family: str
    radius: float
    texture: tuple[str, float, float]  # (kind, period in radii, angle)
    centre0: np.ndarray  # [2] (y, x) pixels
    drift: np.ndarray  # [2] pixels / frame
    wobble: np.ndarray  # [2] amplitude, pixels
    wobble_freq: np.ndarray  # [2] radians / frame
    wobble_phase: np.ndarray  # [2]
    angle0: float
    angular_speed: float
    scale_freq: float
    scale_phase: float
    start: int  # first frame it is drawn in


def random_look(rng: np.random.Generator) -> tuple[str, tuple[str, float, float]]:
    """A random shape family and texture (kind, period in radii, angle) of a `Sprite`."""
    family = SHAPE_FAMILIES[int(rng.integers(len(SHAPE_FAMILIES)))]
    texture = (
        ("stripes", "checker")[int(rng.integers(2))],
        float(rng.uniform(0.3, 0.7)),
        float(rng.uniform(0, np.pi)),
    )
    return family, texture


def _polygon(family: str) -> np.ndarray:
    """Unit-radius outline of a shape family, [P, 2] (y, x)."""
    if family == "ellipse":
        a = np.linspace(0, 2 * np.pi, 24, endpoint=False)
        return np.stack([0.7 * np.sin(a), np.cos(a)], -1)
    if family == "box":
        return np.array([[-0.7, -1.0], [-0.7, 1.0], [0.7, 1.0], [0.7, -1.0]])
    if family == "triangle":
        a = np.array([-0.5, 1 / 6, 5 / 6]) * np.pi
        return np.stack([np.sin(a), np.cos(a)], -1)
    a = np.linspace(0, 2 * np.pi, 10, endpoint=False)  # star
    r = np.where(np.arange(10) % 2 == 0, 1.0, 0.45)
    return np.stack([r * np.sin(a), r * np.cos(a)], -1)


def _make_sprite(rng, label, colour, family, texture, height, width, d, start) -> Sprite:
    size = min(height, width)
    radius = rng.uniform(*d.size_range) * size
    frame = np.array([height, width], np.float64)
    centre0 = rng.uniform(0.25, 0.75, 2) * frame
    wobble = rng.uniform(0.0, 0.15, 2) * frame
    wobble_freq = rng.uniform(0.05, 0.2, 2)
    if rng.random() < d.leave_prob:  # a wide swing along x that leaves the frame and comes back
        centre0[1] = width / 2
        wobble[1] = 0.5 * width + 1.5 * radius
        wobble_freq[1] = rng.uniform(0.15, 0.3)
    return Sprite(
        label=label,
        colour=colour,
        family=family,
        radius=radius,
        texture=texture,
        centre0=centre0,
        drift=rng.uniform(-d.speed, d.speed, 2) * frame,
        wobble=wobble,
        wobble_freq=wobble_freq,
        wobble_phase=rng.uniform(0, 2 * np.pi, 2),
        angle0=rng.uniform(0, 2 * np.pi),
        angular_speed=rng.uniform(-d.rotation_speed, d.rotation_speed),
        scale_freq=rng.uniform(0.05, 0.25),
        scale_phase=rng.uniform(0, 2 * np.pi),
        start=start,
    )


def draw_background(rng, height, width, d: Difficulty) -> np.ndarray:
    """Smooth grey texture with a small tint, float [H, W, 3]."""
    coarse = rng.uniform(-1, 1, (height // 16 + 2, width // 16 + 2))
    image = Image.fromarray(((coarse + 1) * 127.5).astype(np.uint8)).resize(
        (width, height), Image.Resampling.BICUBIC
    )
    smooth = np.asarray(image, np.float64) / 127.5 - 1
    fine = rng.uniform(-1, 1, (height, width)) * 0.25
    grey = np.clip(125 + d.background_contrast * (smooth + fine), 70, 180)
    tint = rng.uniform(-BACKGROUND_MAX_TINT, BACKGROUND_MAX_TINT, 3)
    return np.clip(grey[..., None] + tint, 0, 255)


def draw_sprite(sprite: Sprite, t: int, height: int, width: int, d: Difficulty):
    """Returns (coverage bool [H, W], RGB float [H, W, 3]) of a sprite at frame t."""
    centre = (
        sprite.centre0
        + sprite.drift * t
        + sprite.wobble * np.sin(sprite.wobble_freq * t + sprite.wobble_phase)
    )
    angle = sprite.angle0 + sprite.angular_speed * t
    scale = sprite.radius * (
        1 + d.scale_amplitude * np.sin(sprite.scale_freq * t + sprite.scale_phase)
    )
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    outline = _polygon(sprite.family) @ rot.T * scale + centre
    canvas = Image.new("L", (width, height), 0)
    ImageDraw.Draw(canvas).polygon([(float(x), float(y)) for y, x in outline], fill=1)
    coverage = np.asarray(canvas, bool)
    # Texture in the sprite's own (rotating, scaling) coordinates.
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float64)
    local = np.stack([yy - centre[0], xx - centre[1]], -1) @ rot / scale
    kind, period, tex_angle = sprite.texture
    u = local[..., 0] * np.cos(tex_angle) + local[..., 1] * np.sin(tex_angle)
    v = -local[..., 0] * np.sin(tex_angle) + local[..., 1] * np.cos(tex_angle)
    wave = np.sin(2 * np.pi * u / period)
    if kind == "checker":
        wave = wave * np.sin(2 * np.pi * v / period)
    brightness = TEXTURE_LOW + (1 - TEXTURE_LOW) * (0.5 + 0.5 * wave)
    return coverage, brightness[..., None] * sprite.colour.astype(np.float64)


def render_video(
    rng: np.random.Generator,
    *,
    num_frames: int,
    height: int,
    width: int,
    difficulty: Difficulty = Difficulty(),
    allow_late_start: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Renders one video.

    Returns:
        frames uint8 [T, H, W, 3] and label maps uint8 [T, H, W] (0 background, k = target k).
        Without `allow_late_start` every target is visible in frame 0 (DAVIS's convention).
    """
    d = difficulty
    for _ in range(100):
        num_objects = int(rng.integers(d.min_objects, d.max_objects + 1))
        sprites = []
        for label in range(1, num_objects + 1):
            family, texture = random_look(rng)
            late = (
                allow_late_start
                and label > 1
                and rng.random() < d.late_start_prob
                and num_frames > 2
            )
            start = int(rng.integers(1, max(2, num_frames // 2))) if late else 0
            sprites.append(_make_sprite(rng, label, None, family, texture, height, width, d, start))
        twins = []  # the target each distractor copies
        for _ in range(d.num_distractors):
            twins.append(int(rng.integers(num_objects)))
            twin = sprites[twins[-1]]
            sprites.append(
                _make_sprite(rng, 0, None, twin.family, twin.texture, height, width, d, 0)
            )
        order = rng.permutation(len(sprites))  # depth: later sprites occlude earlier ones
        background = draw_background(rng, height, width, d)
        # Colours are drawn last: shapes, paths and background are what the same seed gave when
        # target k was always OBJECT_COLOURS[k - 1] (the first try's, where it was retried).
        colours = OBJECT_COLOURS[rng.permutation(len(OBJECT_COLOURS))[:num_objects]]
        for sprite, k in zip(sprites, [*range(num_objects), *twins], strict=True):
            sprite.colour = colours[k]
        frames = np.empty((num_frames, height, width, 3), np.uint8)
        labels = np.zeros((num_frames, height, width), np.uint8)
        for t in range(num_frames):
            image = background.copy()
            for index in order:
                sprite = sprites[index]
                if t < sprite.start:
                    continue
                coverage, colour = draw_sprite(sprite, t, height, width, d)
                image[coverage] = colour[coverage]
                labels[t][coverage] = sprite.label
            frames[t] = np.clip(np.round(image), 0, 255).astype(np.uint8)
        present = [(labels == k).any(axis=(1, 2)) for k in range(1, num_objects + 1)]
        if allow_late_start:
            ok = all(p.any() for p in present)
        else:
            ok = all(p[0] and p.sum() >= 3 for p in present)
        if ok:
            return frames, labels
    raise RuntimeError("could not render a video whose targets are visible; relax the knobs")


def write_davis_sequence(
    davis_root: str | os.PathLike, seq: str, frames: np.ndarray, labels: np.ndarray, quality: int
) -> None:
    """Writes one sequence in the DAVIS 2017 layout (480p): frames uint8 [T, H, W, 3] as
    JPEGImages/480p/<seq>/00000.jpg..., label maps uint8 [T, H, W] as palette PNGs in
    Annotations/480p/<seq>/."""
    davis = Path(davis_root)
    for t in range(len(frames)):
        video_io.write_frame(davis / "JPEGImages/480p" / seq / f"{t:05d}.jpg", frames[t], quality)
        video_io.write_label_png(davis / "Annotations/480p" / seq / f"{t:05d}.png", labels[t])


# The allowed ranges (low, high; None: unbounded) of `generate`'s arguments and of the
# `Difficulty` knobs the CLI sets; the CLI's flags are named as they are.
RANGES = {
    "num_videos": (1, None),
    "num_frames": (3, None),
    "height": (16, None),
    "width": (16, None),
    "seed": (0, None),
    "num_static": (0, None),
    "max_objects": (1, len(OBJECT_COLOURS)),
    "num_distractors": (0, None),
}


def check_arguments(prefix: str = "", **values: int | None) -> None:
    """Raises ValueError "<prefix><name> must be ..., got <value>" for the first of `values`
    (names of `RANGES`) outside its range; None values are skipped (their defaults)."""
    for name, value in values.items():
        low, high = RANGES[name]
        if value is None or (low <= value and (high is None or value <= high)):
            continue
        allowed = f">= {low}" if high is None else f"in {low}..{high}"
        raise ValueError(f"{prefix}{name} must be {allowed}, got {value}")


def _num_val(num_videos: int, val_fraction: float) -> int:
    return min(num_videos - 1, max(1, round(num_videos * val_fraction))) if num_videos > 1 else 0


def generate(
    out_dir: str | os.PathLike,
    *,
    num_videos: int = 8,
    num_frames: int = 24,
    height: int = 128,
    width: int = 128,
    seed: int = 0,
    num_static: int | None = None,
    val_fraction: float = 0.25,
    difficulty: Difficulty = Difficulty(),
    progress: bool = True,
) -> Path:
    """Writes the DAVIS, YouTube-VOS and static layouts under `out_dir` (see module docstring).

    Args:
        num_videos: videos per video layout (DAVIS and YouTube-VOS each), split into train and
            val/valid by `val_fraction` (at least one of each when num_videos >= 2).
        num_frames, height, width: video length and frame size.
        seed: everything written is a function of the arguments (same seed, same bytes).
        num_static: static images (default 2 * num_videos).
        difficulty: the generator's knobs (`Difficulty`).
    Returns:
        Path(out_dir), which holds the whole set (written now, or there already).
    Raises:
        ValueError, before anything is written: naming the first argument outside its
        `RANGES`; or `out_dir` holds a set of other arguments (naming each), or files that are
        not a set (no `SETTINGS_FILE`), or is a file.
    """
    check_arguments(
        num_videos=num_videos,
        num_frames=num_frames,
        height=height,
        width=width,
        seed=seed,
        num_static=num_static,
    )
    num_static = 2 * num_videos if num_static is None else num_static
    settings = json.loads(
        json.dumps(
            {
                "num_videos": num_videos,
                "num_frames": num_frames,
                "height": height,
                "width": width,
                "seed": seed,
                "num_static": num_static,
                "val_fraction": val_fraction,
                "difficulty": dataclasses.asdict(difficulty),
            }
        )
    )  # as it reads back from the file
    final = Path(out_dir)
    if _holds_set(final, settings):
        return final
    files.remove_temporaries(final.absolute().parent, final.name)  # a killed run's
    # Renamed into place at the end; onto an empty folder too (POSIX rename replaces one).
    with files.atomic_dir(final) as out:
        _write_set(out, settings, difficulty, progress)
    return final


def _holds_set(out: Path, settings: dict) -> bool:
    """Whether `out` holds the set of `settings` already; False when it is missing or empty.
    Raises ValueError when it holds anything else."""
    if out.exists() and not out.is_dir():
        raise ValueError(f"{out} is a file; the synthetic videos are written into a folder")
    if not out.is_dir() or not any(out.iterdir()):
        return False
    try:
        found = json.loads((out / SETTINGS_FILE).read_text())
    except (OSError, ValueError):
        found = None
    if not isinstance(found, dict):
        raise ValueError(
            f"{out} holds files but no readable {SETTINGS_FILE}, so they are not a synthetic "
            "set of this version (or not a whole one); choose another output folder or empty it"
        )
    found, settings = _flat(found), _flat(settings)
    differing = [
        f"{key}: {json.dumps(found.get(key))} -> {json.dumps(settings.get(key))}"
        for key in sorted(set(found) | set(settings))
        if found.get(key) != settings.get(key)
    ]
    if differing:
        raise ValueError(
            f"{out} holds synthetic videos of other settings ({'; '.join(differing)}); "
            "choose another output folder or remove it"
        )
    return True


def _flat(settings: dict) -> dict:
    """`settings` with the Difficulty knobs as "difficulty.<knob>" entries."""
    knobs = settings.get("difficulty")
    if not isinstance(knobs, dict):
        return settings
    rest = {k: v for k, v in settings.items() if k != "difficulty"}
    return rest | {f"difficulty.{k}": v for k, v in knobs.items()}


def _write_set(out: Path, settings: dict, d: Difficulty, progress: bool) -> None:
    """The three layouts of `settings` (`generate`'s arguments) into the new folder `out`."""
    num_videos, num_frames = settings["num_videos"], settings["num_frames"]
    height, width, seed = settings["height"], settings["width"], settings["seed"]
    num_static = settings["num_static"]
    n_val = _num_val(num_videos, settings["val_fraction"])
    total = 2 * num_videos + num_static
    bar = tqdm(total=total, desc="synthetic videos", unit="video", disable=not progress)

    # DAVIS 2017: every target visible in frame 0, every frame annotated.
    davis = out / "DAVIS"
    names = {"train": [], "val": []}
    for i in range(num_videos):
        rng = np.random.default_rng([seed, 0, i])
        frames, labels = render_video(
            rng, num_frames=num_frames, height=height, width=width, difficulty=d
        )
        seq = f"synth{i:04d}"
        names["val" if i >= num_videos - n_val else "train"].append(seq)
        write_davis_sequence(davis, seq, frames, labels, d.jpeg_quality)
        bar.update()
    for split, seqs in names.items():
        path = davis / "ImageSets/2017" / f"{split}.txt"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(f"{s}\n" for s in seqs))

    # YouTube-VOS: objects may start late; valid keeps only first-appearance annotations.
    youtube = out / "YouTube"
    metas = {"train": {"videos": {}}, "valid": {"videos": {}}}
    for i in range(num_videos):
        rng = np.random.default_rng([seed, 1, i])
        frames, labels = render_video(
            rng,
            num_frames=num_frames,
            height=height,
            width=width,
            difficulty=d,
            allow_late_start=True,
        )
        split = "valid" if i >= num_videos - n_val else "train"
        vid = f"{seed:02d}{i:08x}"
        stems = [f"{t * YOUTUBE_FRAME_STEP:05d}" for t in range(num_frames)]
        objects = {}
        for k in range(1, int(labels.max()) + 1):
            present = np.flatnonzero((labels == k).any(axis=(1, 2)))
            objects[str(k)] = {"category": "synthetic", "frames": [stems[t] for t in present]}
        metas[split]["videos"][vid] = {"objects": objects}
        first = {k: int(stems.index(o["frames"][0])) for k, o in objects.items()}
        for t in range(num_frames):
            video_io.write_frame(
                youtube / split / "JPEGImages" / vid / f"{stems[t]}.jpg", frames[t], d.jpeg_quality
            )
            if split == "train":
                video_io.write_label_png(
                    youtube / split / "Annotations" / vid / f"{stems[t]}.png", labels[t]
                )
            elif t in first.values():
                starting = [int(k) for k, f in first.items() if f == t]
                sparse = np.where(np.isin(labels[t], starting), labels[t], 0).astype(np.uint8)
                video_io.write_label_png(
                    youtube / split / "Annotations" / vid / f"{stems[t]}.png", sparse
                )
        bar.update()
    for split, meta in metas.items():
        files.write_text(youtube / split / "meta.json", json.dumps(meta, indent=1))

    # Static image/mask pairs (COCO-instance style palette label maps, 1-3 objects).
    static_d = dataclasses.replace(d, max_objects=min(3, d.max_objects), min_objects=1)
    for i in range(num_static):
        rng = np.random.default_rng([seed, 2, i])
        frames, labels = render_video(
            rng, num_frames=3, height=height, width=width, difficulty=static_d
        )
        name = f"img{i:05d}"
        video_io.write_frame(out / "static/images" / f"{name}.jpg", frames[0], d.jpeg_quality)
        video_io.write_label_png(out / "static/masks" / f"{name}.png", labels[0])
        bar.update()
    bar.close()
    files.write_text(out / SETTINGS_FILE, json.dumps(settings, indent=1, sort_keys=True) + "\n")


def main(argv: list[str] | None = None) -> int:
    """The CLI; returns its exit status (`lcm_jax.cli`: 2 and one line "error: ..." on stderr
    for a bad flag, before anything is written)."""
    from lcm_jax import cli  # imports JAX, which the generator itself does not need

    parser = argparse.ArgumentParser(
        prog="python -m lcm_jax.input_pipeline.synthetic", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--num_videos", type=int, default=8, help="videos per layout")
    parser.add_argument("--num_frames", type=int, default=24)
    parser.add_argument("--height", type=int, default=128)
    parser.add_argument("--width", type=int, default=128)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--num_static", type=int, default=None, help="default 2 * num_videos")
    parser.add_argument("--max_objects", type=int, default=Difficulty.max_objects)
    parser.add_argument("--num_distractors", type=int, default=Difficulty.num_distractors)
    args = parser.parse_args(argv)
    return cli.run(lambda: _generate(args))


def _generate(args: argparse.Namespace) -> int:
    check_arguments("--", **{name: getattr(args, name) for name in RANGES})
    files.check_writable(args.out, folder=True)  # a folder, or one that can be made
    out = generate(
        args.out,
        num_videos=args.num_videos,
        num_frames=args.num_frames,
        height=args.height,
        width=args.width,
        seed=args.seed,
        num_static=args.num_static,
        difficulty=Difficulty(max_objects=args.max_objects, num_distractors=args.num_distractors),
    )
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
