"""The main job end to end on tiny settings: what `make demo` writes is consistent."""

import csv
import json

import imageio.v2 as imageio
import numpy as np
from PIL import Image

from lcm_jax import demo
from lcm_jax.input_pipeline import video_io


def test_demo_writes_scores_overlays_figure_and_summary_that_agree(tmp_path):
    out = tmp_path / "demo_out"
    argv = ["--out", str(out), "--steps", "2", "--num_videos", "4", "--num_frames", "8",
            "--size", "64", "--crop", "64"]  # fmt: skip
    assert demo.main(argv) == 0

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

    # One overlay GIF per held-out video, one frame per video frame, drawn from the results.
    davis = out / "data" / "DAVIS"
    sequences = video_io.davis_sequences(davis, "val")
    for seq in sequences:
        gif = imageio.mimread(out / "overlays" / f"{seq}.gif")
        frames, _ = video_io.davis_video(davis, seq)
        assert len(gif) == len(frames)
        labels = video_io.read_label_png(out / "results" / "lcm" / seq / f"{frames[-1].stem}.png")
        background = labels == 0
        # Background pixels are the frame itself (GIF quantisation aside); object pixels are not.
        frame = video_io.read_frame(frames[-1]).astype(np.int16)
        drawn = np.asarray(gif[-1])[..., :3].astype(np.int16)
        assert np.abs(drawn - frame)[background].mean() < 12
    figure = Image.open(out / "pgm_position_map.png")
    assert figure.format == "PNG" and figure.size[0] > figure.size[1] > 100
