"""Shared by the inference tests: tiny random-init LCMs and their checkpoints, small videos,
DAVIS folders."""

import functools

import jax
import numpy as np

from lcm_jax import checkpoints
from lcm_jax.configs import model as model_configs
from lcm_jax.input_pipeline import synthetic, video_io
from lcm_jax.model import init_variables

SIZE = (64, 64)  # frame height, width


# The mask stems (conv1_m, conv1_o) start at random, not at zero as in training: the memory
# encodings then depend on the masks written with them, as a trained model's do.
TINY = dict(model_configs.get_config("tiny"), zero_init_mask_stem=False)
_init_tiny = jax.jit(lambda key: init_variables(TINY, key))  # compiled once for every seed


@functools.cache
def tiny_model(seed: int = 0) -> tuple[dict, dict]:
    """(model config as a dict, variables) of the tiny LCM with random initialisation."""
    return dict(TINY), _init_tiny(jax.random.key(seed))


def save_tiny_checkpoint(path, seed: int = 0):
    """A `save_variables` directory of `tiny_model(seed)` (it stores its model config)."""
    config, variables = tiny_model(seed)
    return checkpoints.save_variables(path, variables, config)


def synthetic_video(seed: int, num_frames: int, size=SIZE, objects: int = 2):
    """(frames uint8 [N, H, W, 3], labels uint8 [N, H, W]) of a procedural video."""
    difficulty = synthetic.Difficulty(min_objects=objects, max_objects=objects, num_distractors=0)
    return synthetic.render_video(
        np.random.default_rng(seed),
        num_frames=num_frames,
        height=size[0],
        width=size[1],
        difficulty=difficulty,
    )


def write_davis_sequence(root, seq, frames, labels, annotate="all"):
    """Frames (and every, the first or no frame's labels) in the DAVIS 480p layout."""
    for t, frame in enumerate(frames):
        video_io.write_frame(root / "JPEGImages" / "480p" / seq / f"{t:05d}.jpg", frame)
        if annotate == "all" or (annotate == "first" and t == 0):
            video_io.write_label_png(
                root / "Annotations" / "480p" / seq / f"{t:05d}.png", labels[t]
            )


def write_split(root, names, split="val"):
    (root / "ImageSets" / "2017").mkdir(parents=True, exist_ok=True)
    (root / "ImageSets" / "2017" / f"{split}.txt").write_text("\n".join(names) + "\n")


def davis_folder(root, names, num_frames=5, seed=20):
    """A DAVIS folder whose val split is `names`, each a synthetic video annotated throughout."""
    for i, seq in enumerate(names):
        write_davis_sequence(root, seq, *synthetic_video(seed=seed + i, num_frames=num_frames))
    write_split(root, names)
    return root


def tree(folder):
    """{relative path: bytes} of every file under folder."""
    return {
        p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()
    }


def davis2016_folder(root, names, num_frames=5, seed=30):
    """A DAVIS 2016 folder as its download lays it out, `names` its val split: JPEGImages/480p,
    Annotations/480p (greyscale PNGs, 255 the object), ImageSets/480p/val.txt (a frame and its
    mask a line); each a synthetic video of one object."""
    lines = []
    for i, seq in enumerate(names):
        frames, labels = synthetic_video(seed=seed + i, num_frames=num_frames, objects=1)
        for t, (frame, lab) in enumerate(zip(frames, labels, strict=True)):
            video_io.write_frame(root / "JPEGImages" / "480p" / seq / f"{t:05d}.jpg", frame)
            mask = np.where(lab > 0, 255, 0).astype(np.uint8)
            video_io.write_label_png(
                root / "Annotations" / "480p" / seq / f"{t:05d}.png", mask, palette=None
            )
            lines.append(f"/JPEGImages/480p/{seq}/{t:05d}.jpg /Annotations/480p/{seq}/{t:05d}.png")
    (root / "ImageSets" / "480p").mkdir(parents=True, exist_ok=True)
    (root / "ImageSets" / "480p" / "val.txt").write_text("\n".join(lines) + "\n")
    return root
