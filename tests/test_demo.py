"""The main job end to end on tiny settings: what `make demo` writes is consistent and says
what its grid can and cannot show."""

import argparse
import csv
import json
import math
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import imageio.v2 as imageio
import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from lcm_jax import demo
from lcm_jax.configs import model as model_configs
from lcm_jax.inference import splits
from lcm_jax.inference.engine import InferenceOptions
from lcm_jax.input_pipeline import synthetic, video_io

TINY_K = model_configs.get_config("tiny").pgm_top_k
ROOT = Path(__file__).resolve().parents[1]
ONE_TARGET_ONE_LOOKALIKE = synthetic.Difficulty(min_objects=1, max_objects=1, num_distractors=1)


def test_demo_writes_scores_overlays_and_a_summary_that_agree_and_say_the_grid_is_too_small(
    tmp_path,
):
    out = tmp_path / "demo_out"
    out.mkdir()
    (out / "pgm_position_map.png").write_bytes(b"an earlier run's figure")
    argv = ["--out", str(out), "--steps", "2", "--num_videos", "4", "--num_frames", "8",
            "--size", "64", "--crop", "64"]  # fmt: skip
    # As `make demo` runs it: its own process, one CPU device (not the tests' eight).
    env = {**os.environ, "XLA_FLAGS": "--xla_backend_optimization_level=0"}
    done = subprocess.run([sys.executable, "-m", "lcm_jax.demo", *argv], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=600)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]

    # The scores are the DAVIS toolkit CSVs' global J&F of each model's results.
    scores = {s["name"]: s for s in json.loads((out / "scores.json").read_text())}
    assert set(scores) == {"LCM", "untrained LCM"}
    for name, folder in (("LCM", "lcm"), ("untrained LCM", "untrained")):
        with open(out / "results" / folder / "global_results-val.csv") as f:
            row = next(csv.DictReader(f))
        assert abs(float(row["J&F-Mean"]) - scores[name]["jf"]) <= 5e-4  # 3 decimals
        assert 0.0 <= scores[name]["jf"] <= 1.0
    summary = (out / "summary.md").read_text()
    assert f"| LCM | {scores['LCM']['jf']:.3f} |" in summary

    # 64×64 crops and frames at stride 16: a 4×4 grid, the tiny model's K covers K/16 of it.
    # Too small for PGM: the summary says so, points to the benchmark, draws no position map.
    assert "What this demo does not show" in summary
    assert "a 4×4 feature grid and the 64×64 evaluated frames a 4×4 grid" in summary
    assert f"(K = {TINY_K}) covers {TINY_K / 16:.0%} and {TINY_K / 16:.0%} of the map" in summary
    assert "`python -m benchmarks.ablation`" in summary
    assert "benchmarks/RESULTS_ablation.md" in summary
    assert "Table 4" not in summary  # no ablation table without --ablation
    assert "pgm_position_map" not in summary and not (out / "pgm_position_map.png").exists()
    assert "What this demo does not show" in done.stdout

    # One overlay GIF per held-out video, one frame per video frame, drawn from the results,
    # enlarged 4× (nearest) to 256×256.
    davis = out / "data" / "DAVIS"
    for seq in video_io.davis_sequences(davis, "val"):
        gif = imageio.mimread(out / "overlays" / f"{seq}.gif")
        frames, _ = video_io.davis_video(davis, seq)
        assert len(gif) == len(frames)
        big = lambda x: x.repeat(4, axis=0).repeat(4, axis=1)  # noqa: E731
        for t in (0, len(frames) - 1):
            labels = big(video_io.read_label_png(out / "results/lcm" / seq / f"{t:05d}.png"))
            frame = big(video_io.read_frame(frames[t])).astype(np.int16)
            drawn = np.asarray(gif[t])[..., :3].astype(np.int16)
            assert drawn.shape == (256, 256, 3)
            # Background pixels are the frame itself (GIF quantisation aside).
            assert np.abs(drawn - frame)[labels == 0].mean() < 12
        # Frame 0's objects (its given mask): a 2-pixel outline in one colour per object, far
        # from the object's own colour.
        labels_0 = big(video_io.read_label_png(out / "results/lcm" / seq / "00000.png"))
        objects = set(np.unique(labels_0)) - {0}
        assert objects
        drawn = np.asarray(gif[0])[..., :3].astype(np.float64)
        frame = big(video_io.read_frame(frames[0])).astype(np.float64)
        outlines = []
        for k in objects:
            mask = labels_0 == k
            edge = mask & ~ndimage.binary_erosion(mask, iterations=2, border_value=1)
            colour = np.median(drawn[edge], axis=0)
            assert np.abs(drawn[edge] - colour).mean() < 12
            assert np.linalg.norm(colour - frame[mask].mean(0)) > 150
            outlines.append(tuple(np.round(colour)))
        assert len(set(outlines)) == len(outlines)  # objects in different colours


@pytest.mark.parametrize(
    "crop, size, shorter_side, k, train, evaluation, meaningful",
    [
        (64, 96, None, 8, (4, 4), (6, 6), False),  # `make demo`: K = 8 covers half the 4×4 map
        (128, 192, None, 8, (8, 8), (12, 12), True),  # the ablation benchmark's sizes
        (128, 176, None, 8, (8, 8), (11, 11), False),
        (112, 192, None, 8, (7, 7), (12, 12), False),
        (128, 96, 200, 8, (8, 8), (13, 13), True),  # frames enlarged to 200 inside the engine
    ],
)
def test_pgm_grid_is_the_frame_size_over_the_stride(
    crop, size, shorter_side, k, train, evaluation, meaningful
):
    config = dict(model_configs.get_config("tiny"), pgm_top_k=k)
    segmenter = demo.Segmenter(config, {}, InferenceOptions(shorter_side=shorter_side))
    grid = demo.PgmGrid.of(crop, size, segmenter)
    assert (grid.train, grid.evaluation, grid.top_k) == (train, evaluation, k)
    assert grid.meaningful is meaningful
    text = grid.describe()
    share = lambda g: f"{k / (g[0] * g[1]):.0%}"  # noqa: E731
    assert f"covers {share(train)} and {share(evaluation)} of the map" in text
    assert f"a {train[0]}×{train[1]} feature grid" in text


def test_position_map_figure_on_a_12x12_grid_shows_a_look_alike_legibly(tmp_path):
    raw = synthetic.generate(
        tmp_path / "data", num_videos=4, num_frames=4, height=192, width=192, seed=1,
        num_static=1, difficulty=ONE_TARGET_ONE_LOOKALIKE, progress=False,
    )  # fmt: skip
    held_out = splits.list_davis(raw / "DAVIS", "val")
    results = tmp_path / "results"  # predictions: the ground truth, as a perfect model's
    for video in held_out.videos:
        shutil.copytree(video.annotations[0].parent, results / video.name)
    lcm = demo.untrained(dict(model_configs.get_config("tiny")))
    assert demo.PgmGrid.of(128, 192, lcm).meaningful
    picked = demo.position_map_figure(lcm, held_out, results, tmp_path / "figure.png")

    # The frame it picked holds pixels of object 1's palette colour outside object 1.
    seq, t = picked.split(" frame ")
    video = next(v for v in held_out.videos if v.name == seq)
    frame = video_io.read_frame(video.frames[int(t)]).astype(np.float64)
    labels = video_io.read_label_png(video.annotations[int(t)])
    palette = synthetic.OBJECT_COLOURS.astype(np.float64)
    cosine = frame @ palette.T / (np.linalg.norm(frame, axis=-1, keepdims=True) + 1e-6)
    cosine /= np.linalg.norm(palette, axis=-1)
    colour = cosine[labels == 1].mean(0).argmax()
    saturated = frame.max(-1) - frame.min(-1) > 60
    alike = saturated & (cosine.argmax(-1) == colour) & (cosine.max(-1) > 0.97) & (labels != 1)
    assert alike.sum() >= 50
    # Four panels of at least two screen pixels per frame pixel.
    width, height = Image.open(tmp_path / "figure.png").size
    assert width >= 4 * 2 * 192 and height >= 2 * 192
    assert math.isclose(width / height, 4, rel_tol=0.25)


@pytest.mark.parametrize("size, crop", [(96, 64), (192, 128)])
def test_the_ablation_table_is_a_smoke_test_and_the_note_follows_the_grid(tmp_path, size, crop):
    args = argparse.Namespace(out="o", steps=10, ablation=True, crop=crop, size=size, held_out=3)
    scores = [demo.Scores(name, 0.5 + i / 100, 0.5, 0.5) for i, name in enumerate(demo.VARIANTS)]
    scores.insert(1, demo.Scores("untrained LCM", 0.1, 0.1, 0.1))
    lcm = demo.Segmenter(dict(model_configs.get_config("tiny"), pgm_top_k=8), {})
    grid = demo.PgmGrid.of(crop, size, lcm)
    figure = "synth0001 frame 3" if grid.meaningful else None
    summary = demo.write_summary(tmp_path, args, scores, {}, grid, figure, [], 1.0).read_text()
    main, table = summary.split("## Table 4 variants: a smoke test, not a comparison")
    assert "| LCM | 0.500 |" in main and "| untrained LCM | 0.100 |" in main
    assert "| no PGM |" not in main
    for s in scores[:1] + scores[2:]:
        assert f"| {s.name} | {s.jf:.3f} |" in table
    assert "not a ranking" in table and "`python -m benchmarks.ablation`" in table
    if size == 96:  # 6×6 at evaluation, 4×4 in training: K = 8 covers 50% and 22%
        assert "covers 50% and 22% of the map" in main and "too small" in main
        assert "no evidence either way" in main and "pgm_position_map" not in summary
    else:  # 12×12 and 8×8: 6% and 12%
        assert "covers 12% and 6% of the map" in main and "too small" not in main
        assert "[pgm_position_map.png](pgm_position_map.png)" in summary


@pytest.mark.parametrize(
    "variables, ablation, steps",
    [("", False, 1000), ("ABLATION=1", True, 1000), ("DEMO_STEPS=5000", False, 5000)],
)
def test_the_readmes_make_demo_lines_pass_their_settings_to_the_demo(variables, ablation, steps):
    # `make demo ABLATION=1` and `make demo DEMO_STEPS=5000` as the README writes them; the
    # command make would run (`-n`: printed, not run), parsed by the demo's own parser.
    command = ["make", "demo", *variables.split()]
    assert f"`{' '.join(command)}`" in (ROOT / "README.md").read_text()
    shown = subprocess.run(
        [*command[:1], "-n", "-B", *command[1:]],
        cwd=ROOT, capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    (line,) = [line for line in shown.splitlines() if " -m lcm_jax.demo " in line]
    args = demo.parse_args(shlex.split(line.split(" -m lcm_jax.demo ", 1)[1]))
    assert (args.out, args.ablation, args.steps) == ("demo_out", ablation, steps)
