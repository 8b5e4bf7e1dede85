"""Smoke tests of the benchmarks meant for a rented accelerator (speed, bf16_numerics, memory_plan,
evaluate_speed, jf_speed): each runs at its smallest sizes on the CPU, so that a script broken by
a change fails here rather than on the device. They check what the printed tables must satisfy
(rows, units, ratios, bounds, agreement with the project's own scorer), never the speeds.
"""

import json
import math
import os
import re
import statistics
import subprocess
import sys
import types
from pathlib import Path

import jax
import numpy as np
import pytest

from lcm_jax.configs import model as model_configs
from lcm_jax.model import init_variables

REPO = Path(__file__).resolve().parents[1]


# bf16_numerics and evaluate_speed initialise the same tiny model: JAX's persistent compilation
# cache (conftest.py) compiles it once, not twice.
pytestmark = pytest.mark.usefixtures("compilation_cache")


def markdown_rows(out: str) -> list[list[str]]:
    """The cells of a printed Markdown table's body rows (header and separator left out)."""
    lines = [line for line in out.splitlines() if line.startswith("| ")]
    return [[cell.strip() for cell in line.strip("|").split("|")] for line in lines[2:]]


def positive(text: str) -> float:
    value = float(text)
    assert math.isfinite(value) and value > 0, text
    return value


@pytest.fixture
def one_torch_thread(monkeypatch):
    """One torch thread: on 2 cores shared with other jobs, torch's threads wait for each other
    at every operation (measured: the tiny model's torch train step took 10 s with 2 threads).
    speed.py also sets JAX_PLATFORMS for the process. Both are put back after the test."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    monkeypatch.setenv("JAX_PLATFORMS", os.environ.get("JAX_PLATFORMS", "cpu"))
    monkeypatch.setenv("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
    yield
    torch.set_num_threads(threads)


def test_speed_prints_both_frameworks_speeds_and_their_ratio(capsys, one_torch_thread):
    from benchmarks import speed

    # The tiny model's backbone and width; 40x56 is padded to 48x64. Both sizes give PGM's
    # top_k (8 with the paper's config) enough positions at stride 16 (3x4 and 3x3).
    argv = ["--device", "cpu", "--backbone", "resnet18", "--width", "0.125",
            "--size", "40x56", "--train-size", "48x48", "--batch", "1", "--iters", "1"]  # fmt: skip
    speed.main(argv)
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("machine: CPU ")
    assert lines[1].startswith("model: resnet18 width 0.125, dtype float32, jax ")
    assert lines[2].split() == ["measurement", "unit", "JAX", "PyTorch", "JAX/PyTorch"]
    rows = [line.rsplit(maxsplit=4) for line in lines[3:]]
    assert [(row[0].strip(), row[1]) for row in rows] == [
        ("segment 40x56 (pad 48x64), memory 5 frames, 2 objects", "frames/s"),
        ("train step 48x48, batch 1, 2 objects", "clips/s"),
    ]
    for _, _, jax_speed, torch_speed, ratio in rows:
        jax_speed, torch_speed = positive(jax_speed), positive(torch_speed)
        # Speeds are printed to 3 decimals, the ratio to 2.
        assert float(ratio) == pytest.approx(jax_speed / torch_speed, rel=1e-2, abs=6e-3)


def test_bf16_numerics_reports_small_nonzero_errors(capsys):
    from benchmarks import bf16_numerics

    bf16_numerics.main(["--model", "tiny", "--size", "32x32", "--clips", "2"])
    lines = capsys.readouterr().out.splitlines()
    assert "model tiny, 32x32, 2 clips, bf16 keys in float32" in lines[0]
    assert lines[1].split() == ["mean", "max"]
    stats = {line[:18].strip(): [float(v) for v in line[18:].split()] for line in lines[2:]}
    assert list(stats) == [
        "logits rel err", "max |p16 - p32|", "labels differing", "grad rel err", "grad cos"
    ]  # fmt: skip
    assert all(mean <= peak for mean, peak in stats.values())  # over the 2 clips
    # bf16 keeps 8 significant bits (rounding error 2**-9 = 2e-3 per value): a model that
    # ran in float32 would give errors of 0. Bounds: 2.5x to 10x what RESULTS.md measured for
    # the tiny model (logits 2e-2, probabilities 0.07 to 0.19, gradient 3e-2 to 0.13, cosine 0.99+);
    # the untrained model's labels are near ties, whose flips are not bounded.
    assert 0 < stats["logits rel err"][1] < 0.1
    assert 0 < stats["max |p16 - p32|"][1] < 0.5
    assert 0 <= stats["labels differing"][1] <= 1
    assert 0 < stats["grad rel err"][1] < 0.5
    assert 0.9 < stats["grad cos"][0] <= 1 + 1e-6


def test_memory_plan_prints_the_childs_plan_and_step(capsys, monkeypatch):
    from benchmarks import memory_plan

    children = []

    def spy(command, **kwargs):  # the real run; keeps the child's JSON (unrounded)
        done = subprocess.run(command, **{**kwargs, "check": False})
        assert done.returncode == 0, done.stderr[-3000:]
        children.append(json.loads(done.stdout.strip().splitlines()[-1]))
        return done

    monkeypatch.setattr(memory_plan, "subprocess", types.SimpleNamespace(run=spy))
    memory_plan.main(["--runlocal", "--run", "--stages", "main"])
    out = capsys.readouterr().out
    assert out.startswith("backend: cpu (")
    assert "| compile (s) | step (s) | peak RSS (GB) |" in out
    [plan] = children
    [row] = markdown_rows(out)
    assert row[:4] == ["main", "64x64", "1", "float32"]
    printed = [plan[k] for k in ("arguments_gb", "temporaries_gb", "peak_gb")]
    assert [float(v) for v in row[4:7]] == pytest.approx(printed, abs=5e-3)
    assert float(row[7]) == pytest.approx(plan["compile_s"], abs=0.5)
    assert float(row[8]) == pytest.approx(plan["step_s"], abs=0.05)
    assert float(row[9]) == pytest.approx(plan["peak_rss_gb"], abs=0.05)
    # The arguments hold the train state (float32 parameters and Adam's two moments) and the
    # batch (3 frames and the masks of 3 object slots, float32).
    variables = jax.eval_shape(
        lambda: init_variables(model_configs.get_config("tiny"), jax.random.key(0))
    )
    params = sum(x.size for x in jax.tree.leaves(variables["params"]))
    batch = 4 * 3 * 64 * 64 * (3 + 3)
    assert plan["arguments_gb"] * 1e9 >= 3 * 4 * params + batch
    assert plan["peak_gb"] >= plan["arguments_gb"] and plan["peak_gb"] >= plan["temporaries_gb"]
    assert plan["temporaries_gb"] > 0 and plan["compile_s"] > 0 and plan["step_s"] > 0
    assert math.isfinite(plan["loss"]) and plan["loss"] > 0  # a cross-entropy
    # On the CPU the plan's buffers are the process's memory, so they are resident at its peak.
    assert plan["peak_rss_gb"] >= plan["peak_gb"]


def test_evaluate_speed_prints_both_modes_and_the_speed_up(capsys):
    from benchmarks import evaluate_speed

    with pytest.raises(SystemExit):  # lengths 4, 3, 2: a video of 2 frames cannot be rendered
        evaluate_speed.main(["--videos", "3", "--frames", "4"])
    assert "every video needs 3 frames or more" in capsys.readouterr().err
    evaluate_speed.main(["--sizes", "48x48", "--videos", "2", "--frames", "4",
                         "--repeats", "2", "--batch", "2"])  # fmt: skip
    out = capsys.readouterr().out
    # Video lengths are --frames minus 0, 1 or 2 in turn.
    assert out.startswith("tiny model; 2 videos per frame size, 3-4 frames each (7 per size), ")
    rows = markdown_rows(out)
    assert [row[:2] for row in rows] == [["48×48", "one at a time"], ["48×48", "--batch_videos 2"]]
    medians = []
    for _, _, median, runs, speed_up in rows:
        runs = [positive(v) for v in runs.split(", ")]
        assert len(runs) == 2
        assert positive(median) == pytest.approx(statistics.median(runs), abs=0.1)  # rounding
        medians.append(float(median))
        assert speed_up.endswith("×")
        assert float(speed_up[:-1]) == pytest.approx(medians[-1] / medians[0], rel=1e-2, abs=6e-3)


def test_jf_speed_times_the_scorers_that_agree_with_ours(tmp_path):
    from benchmarks import jf_speed
    from lcm_jax.metrics import report

    # vos-benchmark's venv (the script's default --vosb-python): timed and checked where it is.
    vosb = jf_speed.vosb_available("/tmp/vosb-venv/bin/python")
    data = tmp_path / "jf"
    # A subprocess: the script makes its process a child subreaper that waits for every child.
    command = [sys.executable, "-m", "benchmarks.jf_speed", "--data", str(data),
               "--sequences", "1", "--repeats", "1", "--old", "--check"]  # fmt: skip
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    out = done.stdout
    frames = jf_speed.LENGTHS[0]
    assert (data / "davis/ImageSets/2017/val.txt").read_text() == "seq00\n"
    assert len(list((data / "results/seq00").glob("*.png"))) == frames
    assert f"{frames} frames, 1 sequences at 480x854;" in out
    ours = report.evaluate_davis(data / "davis", data / "results", ["seq00"], workers=1)
    rows = {row[0]: row[1:] for row in markdown_rows(out)}
    expected = ["ours, workers=1", "ours before issue 13, 1 process"]
    if vosb:
        expected.insert(1, "vos-benchmark, 1 processes")
    else:
        assert "cannot import vos_benchmark: its row is skipped" in out
    assert list(rows) == expected
    for wall, scoring, cpu, speed, jf in rows.values():
        wall, scoring = positive(wall), positive(scoring)
        assert scoring <= wall and positive(cpu)  # the scoring call runs inside the command
        # Wall seconds are printed to 1 decimal, frames/s to 0.
        low, high = frames / (wall + 0.05), frames / max(wall - 0.05, 1e-9)
        assert low - 0.5 <= positive(speed) <= high + 0.5
        assert float(jf) == pytest.approx(ours.global_scores()["J&F-Mean"], abs=5e-5)
    object_frames = len(ours.objects) * (frames - 2)  # the first and last frames are not scored
    assert f"old scorer: {object_frames} object-frames, all equal" in out
    if vosb:
        assert f"vos-benchmark's Evaluator: {object_frames} object-frames, all equal" in out
    assert re.search(r"ours, workers=1: \[\([\d.]+, [\d.]+\)\]", out)
    assert np.load(data / "old_per_frame.npz")["seq00/J"].shape == (len(ours.objects), frames - 2)
