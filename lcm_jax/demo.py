"""The main job (`make demo`): LCM learns on synthetic videos, then segments held-out ones.

    python -m lcm_jax.demo --out demo_out [--steps 400] [--ablation]

1. Data: procedural videos in the DAVIS 2017, YouTube-VOS and static-image layouts
   (`lcm_jax.input_pipeline.synthetic`) in `<out>/data`; the DAVIS `val` split is held out.
2. Training: the tiny LCM (ResNet-18 × 1/8) through the three stages of section 3.5, static
   images -> main (any interval, shuffled) -> sequence (skip 1-5), each stage starting from the
   previous one's checkpoint (`<out>/train/<variant>/<stage>`).
3. Evaluation: the held-out videos segmented frame by frame by the trained model and by an
   untrained one, scored with J&F as the DAVIS 2017 toolkit does (`<out>/results/<name>/`).
4. Pictures: an overlay GIF per held-out video (`<out>/overlays/`), the PGM position map over a
   frame as in the paper's Figure 4 (`<out>/pgm_position_map.png`), and `<out>/summary.md`.

`--ablation` adds the Table 4 variants, trained and scored the same way (GRM alone is STM).
`--steps` is the main stage's length (pretrain and sequence take half as many); scale it up on
a GPU. Everything is seeded: the same command gives the same numbers on the same machine.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import shutil
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging

from lcm_jax import files, train
from lcm_jax.configs import lcm as lcm_configs
from lcm_jax.inference import evaluation, splits
from lcm_jax.inference.overlay import overlay, overlay_video
from lcm_jax.inference.segmenter import Segmenter
from lcm_jax.input_pipeline import synthetic, video_io
from lcm_jax.model import MemoryPool, PrevFrame, Reference, build_model, init_variables

# Up to two targets and one look-alike distractor per video: learnable by the tiny model in a
# few CPU minutes, and still the case PGM is for.
DIFFICULTY = synthetic.Difficulty(max_objects=2, num_distractors=1)
STAGES = ("pretrain", "main", "sequence")
STAGE_FRACTION = {"pretrain": 0.5, "main": 1.0, "sequence": 0.5}  # of --steps
# Table 4: name -> (use_grm, use_pgm, use_orm).
VARIANTS = {
    "LCM": (True, True, True),
    "no PGM": (True, False, True),
    "no ORM": (True, True, False),
    "GRM only (STM)": (True, False, False),
    "no GRM": (False, True, True),
}


@dataclasses.dataclass
class Scores:
    name: str
    jf: float
    j: float
    f: float
    seconds: float = 0.0


def make_data(out: Path, num_videos: int, num_frames: int, size: int) -> Path:
    """Synthetic videos (DAVIS, YouTube-VOS and static layouts) in `out`, unless already there."""
    if not (out / "DAVIS" / "ImageSets").is_dir():
        synthetic.generate(
            out,
            num_videos=num_videos,
            num_frames=num_frames,
            height=size,
            width=size,
            seed=0,
            val_fraction=0.25,
            difficulty=DIFFICULTY,
        )
    return out


def stage_config(stage: str, steps: int, crop: int, data: Path, switches, init_from: str):
    """`configs/lcm.py:stage=<stage>,data=synthetic,runlocal=True` sized for the demo."""
    config = lcm_configs.get_config(f"stage={stage},data=synthetic,runlocal=True")
    config.model.use_grm, config.model.use_pgm, config.model.use_orm = switches
    config.data.manual_dir = str(data)
    config.data.data_dir = str(data.parent / "tfds")
    config.data.crop = (crop, crop)
    config.optimizer.schedule = "cosine"
    config.num_train_steps = steps
    config.log_every_steps = max(steps // 10, 1)
    config.checkpoint_every_steps = steps
    config.eval_every_steps = 0
    config.init_from = init_from
    config.progress_bar = True
    return config


def train_variant(out: Path, name: str, steps: int, crop: int, data: Path) -> tuple[Path, float]:
    """The three stages for one Table 4 variant; returns the last stage's workdir (its
    checkpoints store their model config) and the seconds taken."""
    switches = VARIANTS[name]
    init_from, start = "", time.time()
    for stage in STAGES:
        stage_steps = math.ceil(steps * STAGE_FRACTION[stage])
        config = stage_config(stage, stage_steps, crop, data, switches, init_from)
        workdir = out / "train" / slug(name) / stage
        print(f"[{name}] {stage}: {config.num_train_steps} steps -> {workdir}", flush=True)
        train.train_and_evaluate(config, str(workdir))
        init_from = str(workdir)
    return Path(init_from), time.time() - start


def slug(name: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in name.lower()).strip("_")


def untrained(model_config) -> Segmenter:
    """The LCM's initial parameters (seed 0), as a stage would start from scratch."""
    variables = jax.jit(lambda key: init_variables(model_config, key))(jax.random.key(0))
    return Segmenter(model_config, variables)


def score(name: str, segmenter: Segmenter, held_out: splits.Split, out: Path) -> Scores:
    """Segments the held-out DAVIS split into `out` (afresh) and returns its J&F."""
    start = time.time()
    shutil.rmtree(out, ignore_errors=True)  # the demo's own folder: results of this run only
    result = evaluation.evaluate(segmenter, held_out, out)
    if result.failures or result.scores is None:
        raise RuntimeError(f"evaluation of {name} failed: {list(result.failures)}")
    g = result.scores.global_scores()
    return Scores(name, g["J&F-Mean"], g["J-Mean"], g["F-Mean"], time.time() - start)


def write_overlays(held_out: splits.Split, results: Path, out: Path) -> list[Path]:
    """One GIF per held-out video: frames with the predicted objects in the DAVIS palette."""
    gifs = []
    for video in held_out.videos:
        gifs.append(out / f"{video.name}.gif")
        with overlay_video(gifs[-1], fps=8) as append:
            for path in video.frames:
                labels = video_io.read_label_png(results / video.name / f"{path.stem}.png")
                append(overlay(video_io.read_frame(path), labels))
    return gifs


def position_map_figure(
    segmenter: Segmenter, held_out: splits.Split, results: Path, path: Path
) -> str:
    """The paper's Figure 4: PGM's position map of object 1 over a held-out frame.

    Frame t is segmented against frame 0 (GRM memory, ORM reference, ground truth) with PGM
    reading frame t-1 and the engine's prediction there, as at inference; the map is sown by
    the PGM module. Picks the held-out video and frame with the most distractor-like pixels
    (pixels of object 1's colour outside its mask)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    video, t = _figure_frame(held_out)
    seq, frame_paths, mask_paths = video.name, video.frames, video.annotations
    load = lambda i: jnp.asarray(video_io.read_frame(frame_paths[i]), jnp.float32)[None] / 255  # noqa: E731
    objects = segmenter.model_config["max_objects"]
    variables = segmenter.variables

    def masks(labels):
        ids = np.arange(1, objects + 1)[:, None, None]
        return jnp.asarray(labels[None] == ids, jnp.float32)[None]

    gt0 = masks(video_io.read_label_png(mask_paths[0]))
    prev_pred = masks(video_io.read_label_png(results / seq / f"{frame_paths[t - 1].stem}.png"))
    valid = jnp.asarray(np.asarray(gt0).reshape(objects, -1).any(axis=1))[None]
    net = build_model(segmenter.model_config)
    mem0 = net.apply(variables, load(0), gt0, valid, method=net.encode_memory)
    mem_prev = net.apply(variables, load(t - 1), prev_pred, valid, method=net.encode_memory)
    one = lambda x: None if x is None else x[:, :, None]  # noqa: E731
    pool = MemoryPool(k_g=one(mem0.k_g), v=one(mem0.v), valid=jnp.ones((1, objects, 1), bool))
    logits, state = net.apply(
        variables, load(t), pool, PrevFrame(mem_prev.k_l, prev_pred),
        Reference(mem0.v, gt0), valid, method=net.segment, mutable=["intermediates"],
    )  # fmt: skip
    position = np.asarray(state["intermediates"]["pgm"]["position_map"][0][0])  # object 1
    frame = video_io.read_frame(frame_paths[t])
    heat = np.asarray(jax.image.resize(position, frame.shape[:2], "bilinear"))
    labels = np.asarray(jnp.argmax(logits[0], axis=0)).astype(np.uint8)
    gt = video_io.read_label_png(mask_paths[t])

    fig, axes = plt.subplots(1, 4, figsize=(12, 3.4))
    titles = (
        f"{seq}, frame {t}",
        "object 1 (ground truth, white)",
        "PGM position map P, object 1",
        "LCM prediction",
    )
    for ax, title in zip(axes, titles, strict=True):
        ax.imshow(overlay(frame, labels) if ax is axes[3] else frame)
        if ax is axes[2]:
            ax.imshow(heat, cmap="jet", alpha=0.55)
        if ax in (axes[1], axes[2]):
            ax.contour(gt == 1, levels=[0.5], colors="white", linewidths=1.5)
        ax.set_title(title, fontsize=10)
        ax.axis("off")
    fig.suptitle(
        "PGM's position map P (eq. 6) next to an unlabelled look-alike, as in the "
        "paper's Figure 4 (blue low, red high)"
    )
    fig.tight_layout()
    with files.atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100)
    plt.close(fig)
    return f"{seq} frame {t}"


def _figure_frame(held_out: splits.Split) -> tuple[splits.VideoFiles, int]:
    """(sequence, frame >= 1) of the held-out split with the most pixels that look like object 1
    (its colour) but are not object 1: where a distractor is."""
    best = (-1, None, 1)
    colour = synthetic.OBJECT_COLOURS[0].astype(np.float32)
    for video in held_out.videos:
        frames, annotations = video.frames, video.annotations
        for t in range(1, min(len(frames), len(annotations))):
            image = video_io.read_frame(frames[t]).astype(np.float32)
            labels = video_io.read_label_png(annotations[t])
            hue = image / np.maximum(image.sum(-1, keepdims=True), 1) - colour / colour.sum()
            alike = (np.abs(hue).sum(-1) < 0.15) & (labels != 1)
            if (labels == 1).any() and alike.sum() > best[0]:
                best = (int(alike.sum()), video, t)
    return best[1], best[2]


def write_summary(
    out: Path,
    args,
    scores: list[Scores],
    train_seconds: dict,
    figure: str,
    gifs: list[Path],
    total: float,
) -> Path:
    lines = [
        "# lcm-jax demo",
        "",
        f"Command: `python -m lcm_jax.demo --out {args.out} --steps {args.steps}"
        + (" --ablation" if args.ablation else "")
        + "` (`make demo`).",
        "",
        f"The tiny LCM (ResNet-18 × 1/8) trained through the three stages of section 3.5 "
        f"({', '.join(f'{s} {math.ceil(args.steps * STAGE_FRACTION[s])} steps' for s in STAGES)}"
        f", batch 8, {args.crop}×{args.crop} crops) on synthetic videos, then scored on the "
        f"held-out DAVIS-layout `val` split ({args.size}×{args.size}, "
        f"{args.held_out} videos) with J&F as the DAVIS 2017 "
        "toolkit computes it.",
        "",
        "| model | J&F | J | F | training (s) |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for s in scores:
        seconds = train_seconds.get(s.name)
        lines.append(
            f"| {s.name} | {s.jf:.3f} | {s.j:.3f} | {s.f:.3f} | "
            f"{'' if seconds is None else f'{seconds:.0f}'} |"
        )
    lines += [
        "",
        f"PGM position map (the paper's Figure 4, {figure}): "
        "[pgm_position_map.png](pgm_position_map.png)",
        "",
        "Overlays: " + ", ".join(f"[{g.stem}](overlays/{g.name})" for g in gifs),
        "",
        f"Wall time: {total:.0f} s on {jax.devices()[0].device_kind} "
        f"({len(jax.devices())} device(s)).",
    ]
    path = out / "summary.md"
    files.write_text(path, "\n".join(lines) + "\n")
    return path


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lcm_jax.demo", description=__doc__)
    parser.add_argument("--out", default="demo_out", help="output folder")
    parser.add_argument("--steps", type=int, default=1000, help="main-stage steps")
    parser.add_argument(
        "--ablation",
        type=lambda s: s not in ("0", "false", "False", ""),
        nargs="?",
        const=True,
        default=False,
        help="also the Table 4 variants",
    )
    # Enough videos that the tiny model does not just memorise them (with 24 per layout it
    # scored 0.62 J&F on its training videos and 0.40 on the held-out ones).
    parser.add_argument("--num_videos", type=int, default=96, help="videos per layout")
    parser.add_argument("--num_frames", type=int, default=24)
    parser.add_argument("--size", type=int, default=96, help="frame height and width")
    parser.add_argument("--crop", type=int, default=64, help="training crop (multiple of 16)")
    args = parser.parse_args(argv)
    logging.set_verbosity(logging.WARNING)
    start = time.time()
    out = Path(args.out)
    args.data = make_data(out / "data", args.num_videos, args.num_frames, args.size) / "DAVIS"

    held_out = splits.list_davis(args.data, "val")
    args.held_out = len(held_out.videos)
    names = list(VARIANTS) if args.ablation else ["LCM"]
    scores, train_seconds, trained = [], {}, {}
    for name in names:
        workdir, train_seconds[name] = train_variant(
            out, name, args.steps, args.crop, args.data.parent
        )
        trained[name] = Segmenter.from_checkpoint(workdir)  # its stored model config
        scores.append(score(name, trained[name], held_out, out / "results" / slug(name)))
    lcm = trained["LCM"]
    blank = untrained(lcm.model_config)
    scores.insert(1, score("untrained LCM", blank, held_out, out / "results" / "untrained"))
    gifs = write_overlays(held_out, out / "results" / "lcm", out / "overlays")
    figure = position_map_figure(
        lcm, held_out, out / "results" / "lcm", out / "pgm_position_map.png"
    )
    summary = write_summary(out, args, scores, train_seconds, figure, gifs, time.time() - start)
    print()
    print(summary.read_text())
    files.write_text(
        out / "scores.json", json.dumps([dataclasses.asdict(s) for s in scores], indent=1)
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
