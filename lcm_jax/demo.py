"""The main job (`make demo`): LCM learns on synthetic videos, then segments held-out ones.

    python -m lcm_jax.demo --out demo_out [--steps 400] [--ablation]

1. Data: procedural videos in the DAVIS 2017, YouTube-VOS and static-image layouts
   (`lcm_jax.input_pipeline.synthetic`) in `<out>/data`; the DAVIS `val` split is held out.
2. Training: the tiny LCM (ResNet-18 × 1/8) through the three stages of section 3.5, static
   images -> main (any interval, shuffled) -> sequence (skip 1-5), each stage starting from the
   previous one's checkpoint (`<out>/train/<variant>/<stage>`).
3. Evaluation: the held-out videos segmented frame by frame by the trained model and by an
   untrained one, scored with J&F as the DAVIS 2017 toolkit does (`<out>/results/<name>/`).
4. Pictures and summary: an overlay GIF per held-out video (`<out>/overlays/`), `<out>/summary.md`
   and, only where PGM's feature grid is large enough for its position map to mean something
   (`PgmGrid`), that map over a frame as in the paper's Figure 4 (`<out>/pgm_position_map.png`).

The defaults (64×64 crops, 96×96 frames: a 4×4 and a 6×6 grid at stride 16) show that training
and segmentation work end to end in a few CPU minutes; they are too small for PGM's position to
matter, and the summary says so. Whether PGM and ORM beat STM is `python -m benchmarks.ablation`
(benchmarks/RESULTS_ablation.md). `--ablation` adds the Table 4 variants, trained and scored the
same way (GRM alone is STM): a check that every switch trains and segments, not a comparison.
`--steps` is the main stage's length (pretrain and sequence take half as many); scale it up on
a GPU. Everything is seeded: the same command gives the same numbers on the same machine.

Run again into the same `--out`, the demo keeps its data and trained stages (an interrupted
stage resumes) and scores afresh. `<out>/demo.json` records the settings they were made with
(`SETTINGS`); other settings stop the run with one line naming them (choose another `--out`,
or remove the old one), as would a stage trained for another length or crop.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import shutil
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging

from lcm_jax import cli, files, train
from lcm_jax.configs import lcm as lcm_configs
from lcm_jax.configs import model as model_configs
from lcm_jax.inference import evaluation, padding, splits
from lcm_jax.inference.overlay import overlay, overlay_video, pick_colours
from lcm_jax.inference.segmenter import Segmenter
from lcm_jax.input_pipeline import synthetic, video_io
from lcm_jax.model import MemoryPool, PrevFrame, Reference, build_model, init_variables
from lcm_jax.model.lcm import GRID

# Up to two targets and one look-alike distractor per video: learnable by the tiny model in a
# few CPU minutes, and still the case PGM is for.
DIFFICULTY = synthetic.Difficulty(max_objects=2, num_distractors=1)
STAGES = ("pretrain", "main", "sequence")
STAGE_FRACTION = {"pretrain": 0.5, "main": 1.0, "sequence": 0.5}  # of --steps
# Table 4 (configs/model.py TABLE4) under the demo's names: name -> (use_grm, use_pgm, use_orm).
NAMES = {
    "lcm": "LCM",
    "no_pgm": "no PGM",
    "no_orm": "no ORM",
    "stm": "GRM only (STM)",
    "no_grm": "no GRM",
}
VARIANTS = {NAMES[v]: switches for v, switches in model_configs.TABLE4.items()}
# Where PGM's position can matter (issue 12): a feature grid of at least 8×8 cells in training
# crops and 12×12 in evaluated frames, the sizes benchmarks/ablation.py trains (128×128) and
# scores (192×192) at. On smaller grids "where the object was" is a handful of cells and the
# top-K response covers a large share of the map.
MIN_TRAIN_GRID, MIN_EVAL_GRID = 8, 12
BENCHMARK = "`python -m benchmarks.ablation` (results: benchmarks/RESULTS_ablation.md)"
OVERLAY_SIDE = 256  # overlay GIFs are enlarged (nearest) until their shorter side is this long
OVERLAY_OUTLINE = 2  # pixels of the enlarged GIF


@dataclasses.dataclass
class Scores:
    name: str
    jf: float
    j: float
    f: float
    seconds: float = 0.0


@dataclasses.dataclass(frozen=True)
class PgmGrid:
    """PGM's feature grid: cells (rows, columns) of the training crops and of the evaluated frames
    at the model's stride `GRID`, and the model's top-K (eq. 6)."""

    crop: tuple[int, int]  # training crop, pixels
    frame: tuple[int, int]  # evaluated frame at the engine's internal resolution, pixels
    top_k: int

    @classmethod
    def of(cls, crop: int, size: int, segmenter: Segmenter) -> PgmGrid:
        """The demo's: square crops and frames, as `segmenter` (its K, its internal size) runs."""
        frame = padding.internal_size(size, size, segmenter.options.shorter_side)
        return cls((crop, crop), frame, int(segmenter.model_config["pgm_top_k"]))

    @property
    def train(self) -> tuple[int, int]:
        return tuple(math.ceil(n / GRID) for n in self.crop)

    @property
    def evaluation(self) -> tuple[int, int]:
        return tuple(math.ceil(n / GRID) for n in self.frame)

    @property
    def meaningful(self) -> bool:
        """Whether the grids reach the benchmark's sizes (MIN_TRAIN_GRID, MIN_EVAL_GRID)."""
        return min(self.train) >= MIN_TRAIN_GRID and min(self.evaluation) >= MIN_EVAL_GRID

    def describe(self) -> str:
        """One sentence: the grids and the share of each map that the top-K covers."""
        (th, tw), (eh, ew) = self.train, self.evaluation
        return (
            f"At stride {GRID}, the {self.crop[0]}×{self.crop[1]} training crops give PGM a "
            f"{th}×{tw} feature grid and the {self.frame[0]}×{self.frame[1]} evaluated frames a "
            f"{eh}×{ew} grid; its top-K (K = {self.top_k}) covers "
            f"{self.top_k / (th * tw):.0%} and {self.top_k / (eh * ew):.0%} of the map."
        )


# The flags that decide the data, the trained weights and so the scores: what demo.json records.
SETTINGS = ("steps", "num_videos", "num_frames", "size", "crop")
SETTINGS_FILE = "demo.json"


def claim(out: Path, args: argparse.Namespace) -> None:
    """Records the run's SETTINGS in `out/demo.json`, or checks them against those recorded
    there. Raises ValueError naming each flag that differs, or when `out` holds trained stages
    without a record (an earlier version's), before anything is written."""
    settings = {name: getattr(args, name) for name in SETTINGS}
    path = out / SETTINGS_FILE
    if path.is_file():
        try:
            found = json.loads(path.read_text())
        except ValueError as e:
            raise ValueError(f"{path} is not valid JSON (damaged?): {e}") from e
        found = found if isinstance(found, dict) else {}
        differing = [
            f"--{name}: {found.get(name)} -> {value}"
            for name, value in settings.items()
            if found.get(name) != value
        ]
        if differing:
            raise ValueError(
                f"{out} holds a demo run of other settings ({'; '.join(differing)}); choose "
                "another --out, or remove it to start afresh"
            )
        return
    if (out / "train").exists():
        raise ValueError(
            f"{out} holds trained stages but no {SETTINGS_FILE} (an earlier version's demo), so "
            "their settings are unknown; choose another --out, or remove it to start afresh"
        )
    files.write_text(path, json.dumps(settings, indent=1, sort_keys=True) + "\n")


def make_data(out: Path, num_videos: int, num_frames: int, size: int) -> Path:
    """Synthetic videos (DAVIS, YouTube-VOS and static layouts) in `out`, unless already there
    (`synthetic.generate` checks that those are of the same settings)."""
    return synthetic.generate(
        out,
        num_videos=num_videos,
        num_frames=num_frames,
        height=size,
        width=size,
        seed=0,
        val_fraction=0.25,
        difficulty=DIFFICULTY,
    )


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
    checkpoints store their model config) and the seconds taken. A stage stopped by SIGTERM
    (its step saved) raises `cli.Terminated`: the same call resumes it."""
    switches = VARIANTS[name]
    init_from, start = "", time.time()
    for stage in STAGES:
        stage_steps = math.ceil(steps * STAGE_FRACTION[stage])
        config = stage_config(stage, stage_steps, crop, data, switches, init_from)
        workdir = out / "train" / slug(name) / stage
        print(f"[{name}] {stage}: {config.num_train_steps} steps -> {workdir}", flush=True)
        state, _ = train.train_and_evaluate(config, str(workdir))
        if int(state["step"]) < config.num_train_steps:  # SIGTERM: saved this step, returned
            raise cli.Terminated  # the next stage must not start from an unfinished one
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


def overlay_scale(height: int, width: int) -> int:
    """The integer factor that brings the shorter side to OVERLAY_SIDE or beyond (1 if it is)."""
    return max(1, math.ceil(OVERLAY_SIDE / min(height, width)))


def write_overlays(held_out: splits.Split, results: Path, out: Path) -> list[Path]:
    """One GIF per held-out video: the predicted objects outlined and tinted over the frames, each
    in a colour that stands out from it (`overlay.pick_colours`, kept for the whole video),
    enlarged by `overlay_scale` (nearest) so that a 96×96 video is not a thumbnail."""
    gifs = []
    for video in held_out.videos:
        gifs.append(out / f"{video.name}.gif")
        colours = {}
        with overlay_video(gifs[-1], fps=8) as append:
            for path in video.frames:
                frame = video_io.read_frame(path)
                labels = video_io.read_label_png(results / video.name / f"{path.stem}.png")
                s = overlay_scale(*labels.shape)
                frame, labels = (x.repeat(s, axis=0).repeat(s, axis=1) for x in (frame, labels))
                colours = pick_colours(frame, labels, colours)
                append(overlay(frame, labels, colours, width=OVERLAY_OUTLINE))
    return gifs


def position_map_figure(
    segmenter: Segmenter, held_out: splits.Split, results: Path, path: Path
) -> str:
    """The paper's Figure 4: PGM's position map of object 1 over a held-out frame.

    Frame t is segmented against frame 0 (GRM memory, ORM reference, ground truth) with PGM
    reading frame t-1 and the engine's prediction there, as at inference; the map is sown by
    the PGM module. Picks the held-out video and frame with the most look-alike pixels (object
    1's colour outside its mask). Drawn only where the grid is large enough for the map to mean
    something (`PgmGrid.meaningful`); each panel shows the frame at two screen pixels or more
    per frame pixel, the map cell by cell with its colour scale."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    video, t, alike = _figure_frame(held_out)
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
    height, width = frame.shape[:2]
    labels = np.asarray(jnp.argmax(logits[0], axis=0)).astype(np.uint8)
    gt = video_io.read_label_png(mask_paths[t])

    # Inches at 100 dpi: the frame at two screen pixels per pixel or more, after the margins.
    panel = max(3.2, 2.3 * max(height, width) / 100)
    fig, axes = plt.subplots(1, 4, figsize=(4 * panel + 1.2, panel + 1.3), dpi=100)
    titles = (
        f"{seq}, frame {t}",
        "object 1 (white), look-alike (red dashes)",
        "PGM position map P, object 1",
        "LCM prediction",
    )
    for ax, title in zip(axes, titles, strict=True):
        ax.imshow(overlay(frame, labels) if ax is axes[3] else frame, interpolation="nearest")
        if ax is axes[2]:  # the map cell by cell over the frame
            cells = ax.imshow(
                position, cmap="viridis", alpha=0.7, interpolation="nearest",
                extent=(-0.5, width - 0.5, height - 0.5, -0.5),
            )  # fmt: skip
            fig.colorbar(cells, ax=ax, fraction=0.046, pad=0.03).ax.tick_params(labelsize=10)
        if ax in (axes[1], axes[2]):
            ax.contour(gt == 1, levels=[0.5], colors="white", linewidths=2)
            if alike.any():
                ax.contour(alike, levels=[0.5], colors="red", linewidths=2, linestyles="--")
        ax.set_title(title, fontsize=12)
        ax.axis("off")
    fig.suptitle(
        "PGM's position map P (eq. 6) next to an unlabelled look-alike, as in the paper's "
        f"Figure 4\n{position.shape[0]}×{position.shape[1]} grid, K = "
        f"{segmenter.model_config['pgm_top_k']}; high P where PGM expects object 1",
        fontsize=13,
    )
    fig.tight_layout()
    with files.atomic_path(path) as tmp:
        fig.savefig(tmp)
    plt.close(fig)
    return f"{seq} frame {t}"


def _figure_frame(held_out: splits.Split) -> tuple[splits.VideoFiles, int, np.ndarray]:
    """(video, frame t >= 1, look-alike pixels bool [H, W]) of the held-out split with the most
    pixels that have object 1's colour (its mean chromaticity in that frame, as the generator
    colours each video's objects at random) but are not object 1: where a distractor is."""
    best = (-1, None, 1, None)
    for video in held_out.videos:
        frames, annotations = video.frames, video.annotations
        for t in range(1, min(len(frames), len(annotations))):
            labels = video_io.read_label_png(annotations[t])
            if not (labels == 1).any():
                continue
            image = video_io.read_frame(frames[t]).astype(np.float32)
            chroma = image / np.maximum(image.sum(-1, keepdims=True), 1)
            alike = (np.abs(chroma - chroma[labels == 1].mean(0)).sum(-1) < 0.15) & (labels != 1)
            if alike.sum() > best[0]:
                best = (int(alike.sum()), video, t, alike)
    return best[1], best[2], best[3]


def grid_note(grid: PgmGrid, figure: str | None, ablation: bool) -> list[str]:
    """What the demo's numbers can and cannot say about PGM and ORM, from its grid sizes."""
    if grid.meaningful:
        return [
            f"{grid.describe()} That is large enough for PGM's position map to mean something "
            f"(figure: {figure}). One seed on these videos still compares nothing: whether PGM "
            f"and ORM beat STM is {BENCHMARK}."
        ]
    return [
        "**What this demo does not show.** "
        + grid.describe()
        + " That is too small for PGM's position to matter (the benchmark trains on grids of "
        f"{MIN_TRAIN_GRID}×{MIN_TRAIN_GRID} or more and scores on "
        f"{MIN_EVAL_GRID}×{MIN_EVAL_GRID} or more), so these scores show that training and "
        "segmentation work end to end, not whether PGM or ORM help"
        + (", and the Table 4 rows below are no evidence either way" if ablation else "")
        + "; for the same reason the PGM position-map figure is left out. The comparison built "
        f"for that question (look-alike videos, seeds, paired bootstrap intervals): {BENCHMARK}."
    ]


def write_summary(
    out: Path,
    args,
    scores: list[Scores],
    train_seconds: dict,
    grid: PgmGrid,
    figure: str | None,
    gifs: list[Path],
    total: float,
) -> Path:
    def rows(names):
        return [
            f"| {s.name} | {s.jf:.3f} | {s.j:.3f} | {s.f:.3f} | "
            f"{'' if train_seconds.get(s.name) is None else f'{train_seconds[s.name]:.0f}'} |"
            for s in scores
            if s.name in names
        ]

    header = ["| model | J&F | J | F | training (s) |", "| --- | ---: | ---: | ---: | ---: |"]
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
        *header,
        *rows({"LCM", "untrained LCM"}),
        "",
        *grid_note(grid, figure, args.ablation),
    ]
    if args.ablation:
        lines += [
            "",
            "## Table 4 variants: a smoke test, not a comparison",
            "",
            "Each variant trained and scored once, as above (one seed, no interval): this shows "
            "that every switch trains and segments. It is not a ranking of the variants; see "
            f"{BENCHMARK}.",
            "",
            *header,
            *rows(set(VARIANTS)),
        ]
    if figure is not None:
        lines += [
            "",
            f"PGM position map (the paper's Figure 4, {figure}): "
            "[pgm_position_map.png](pgm_position_map.png)",
        ]
    lines += [
        "",
        "Overlays: " + ", ".join(f"[{g.stem}](overlays/{g.name})" for g in gifs),
        "",
        f"Wall time: {total:.0f} s on {jax.devices()[0].device_kind} "
        f"({len(jax.devices())} device(s)).",
    ]
    path = out / "summary.md"
    files.write_text(path, "\n".join(lines) + "\n")
    return path


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m lcm_jax.demo", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--out", default="demo_out", help="output folder")
    parser.add_argument("--steps", type=int, default=1000, help="main-stage steps")
    parser.add_argument(
        "--ablation",
        type=lambda s: s not in ("0", "false", "False", ""),
        nargs="?",
        const=True,
        default=False,
        help="also the Table 4 variants (a check that each trains, not a comparison)",
    )
    # Enough videos that the tiny model does not just memorise them (with 24 per layout it
    # scored 0.62 J&F on its training videos and 0.40 on the held-out ones).
    parser.add_argument("--num_videos", type=int, default=96, help="videos per layout")
    parser.add_argument("--num_frames", type=int, default=24)
    parser.add_argument("--size", type=int, default=96, help="frame height and width")
    parser.add_argument("--crop", type=int, default=64, help="training crop (multiple of 16)")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    """The demo; returns its exit status (`lcm_jax.cli`: 2 and one line "error: ..." for
    settings that differ from those of `--out`'s run, or a training config it refuses)."""
    args = parse_args(argv)
    return cli.run(lambda: _demo(args))


def _demo(args: argparse.Namespace) -> int:
    logging.set_verbosity(logging.WARNING)
    start = time.time()
    out = Path(args.out)
    claim(out, args)
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
    # Figure 4 only where the grid lets PGM's position mean something: on the default 6×6 grid
    # the map is a few cells, most of them in the top-K, and it misleads more than it shows.
    grid, figure_path = PgmGrid.of(args.crop, args.size, lcm), out / "pgm_position_map.png"
    figure_path.unlink(missing_ok=True)  # an earlier run's, with other settings
    figure = None
    if grid.meaningful:
        figure = position_map_figure(lcm, held_out, out / "results" / "lcm", figure_path)
    summary = write_summary(
        out, args, scores, train_seconds, grid, figure, gifs, time.time() - start
    )
    print()
    print(summary.read_text())
    files.write_text(
        out / "scores.json", json.dumps([dataclasses.asdict(s) for s in scores], indent=1)
    )
    return 0


if __name__ == "__main__":
    cli.exit(main())
