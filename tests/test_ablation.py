"""The look-alike ablation benchmark: statistics against hand-derived values, and a tiny run that
trains, caches, resumes and keys its cache by the config."""

import csv
import errno
import fcntl
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from benchmarks import ablation
from lcm_jax.input_pipeline import testing

REPO = Path(__file__).resolve().parents[1]

# One training stage only: each stage of each variant costs a compilation.
TINY = [
    "data.num_train=4",
    "data.num_val=1",
    "data.num_test=1",
    "data.num_frames=5",
    "data.size=64",
    "crop=64",
    "stages.main.steps=0",
    "stages.sequence.steps=2",
    "model.pgm_top_k=4",
]


def test_bootstrap_interval_of_three_values_is_their_extremes():
    # Of the 27 equally likely resamples of (0, 1, 5), one has mean 0 and one mean 5: each is
    # 3.7% > 2.5% of the bootstrap distribution, so the 95% percentile interval is [0, 5].
    assert ablation.bootstrap_ci([0.0, 1.0, 5.0]) == (0.0, 5.0)
    assert ablation.bootstrap_ci([0.25] * 7) == (0.25, 0.25)


def test_bootstrap_interval_of_many_values_is_the_normal_one():
    values = np.random.default_rng(1).normal(0.3, 1.0, 400)
    half = 1.96 * values.std() / np.sqrt(len(values))
    lo, hi = ablation.bootstrap_ci(values)
    assert lo == pytest.approx(values.mean() - half, abs=0.015)
    assert hi == pytest.approx(values.mean() + half, abs=0.015)


def test_mass_shares_of_a_hand_computed_position_map():
    # A 2x2 grid (32x32 pixels): P = [[3, 1], [0, 0]] has mean 1. The target covers cell (0, 0),
    # a look-alike half of cell (0, 1): mass 3 on 1 cell, 1 * 0.5 on 0.5 cell.
    position_map = np.array([[[3.0, 1.0], [0.0, 0.0]]] * 2)
    position_map[1] *= 10  # the map's scale does not matter
    target = np.zeros((2, 32, 32), bool)
    target[:, :16, :16] = True
    others = np.zeros((2, 32, 32), bool)
    others[:, :8, 16:] = True
    s = ablation.mass_shares(position_map, target, others)
    np.testing.assert_allclose(s["density_target"], [3.0, 3.0])
    np.testing.assert_allclose(s["density_lookalikes"], [1.0, 1.0])
    np.testing.assert_allclose(s["share"], [3 / 3.5] * 2)
    np.testing.assert_allclose(s["chance"], [1 / 1.5] * 2)
    others[1] = False  # frames without a visible look-alike do not count
    assert len(ablation.mass_shares(position_map, target, others)["share"]) == 1


def test_border_share_of_a_hand_computed_map():
    # 3x3: the centre holds 6, each of the 8 ring cells 0.25: 2 of the total 8 on the ring.
    ring = np.full((1, 3, 3), 0.25)
    ring[0, 1, 1] = 6.0
    np.testing.assert_allclose(ablation.border_share(ring), [0.25])
    np.testing.assert_allclose(ablation.border_share(np.ones((1, 4, 5))), [(8 + 10 - 4) / 20])


def test_where_fractions_of_a_hand_made_prediction():
    target = np.zeros((1, 4, 4), bool)
    target[0, :2, :2] = True  # 4 pixels
    others = np.zeros_like(target)
    others[0, 2:, 2:] = True  # a look-alike of 4 pixels
    pred = np.zeros_like(target)
    pred[0, 0, :] = True  # 2 on the target, 2 elsewhere
    pred[0, 3, 3] = True  # 1 on the look-alike
    got = ablation.where_fractions(pred, target, others)
    assert got == {"target": 0.5, "lookalikes": 0.25, "background": 0.5}


def test_paired_differences_are_per_video_and_per_seed():
    def run(variant, seed, scores):
        return {"variant": variant, "seed": seed, "jf": {"test_lookalike": scores}, "pgm": {}}

    runs = [
        run("stm", 0, {"a": 0.5, "b": 0.6}),
        run("stm", 1, {"a": 0.4, "b": 0.8}),
        run("lcm", 0, {"a": 0.7, "b": 0.6}),
        run("lcm", 1, {"a": 0.5, "b": 0.6}),
    ]
    s = ablation.summarise(runs)
    assert s["jf"]["lcm"]["test_lookalike"]["seeds"] == pytest.approx([0.65, 0.55])
    assert s["jf"]["lcm"]["test_lookalike"]["mean_std"] == pytest.approx((0.6, np.sqrt(0.005)))
    paired = s["paired"]["lcm-stm"]["test_lookalike"]
    # Per video over seeds: a: (0.2 + 0.1) / 2 = 0.15, b: (0 - 0.2) / 2 = -0.1.
    assert paired["mean"] == pytest.approx(0.025)
    assert paired["per_seed"] == pytest.approx([0.1, -0.05])
    assert paired["ci95"] == pytest.approx((-0.1, 0.15))
    assert set(s["paired"]) == {"lcm-stm"}

    # GRM+ORM with seed 1 only: paired with STM and with LCM on that seed.
    s = ablation.summarise([*runs, run("no_pgm", 1, {"a": 0.45, "b": 0.7})])
    assert set(s["paired"]) == {"lcm-stm", "no_pgm-stm", "lcm-no_pgm"}
    pgm_part = s["paired"]["lcm-no_pgm"]["test_lookalike"]
    assert pgm_part["seeds"] == [1] and pgm_part["mean"] == pytest.approx((0.05 - 0.1) / 2)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--variants", "lcm,gru"], "unknown variant(s) ['gru']"),
        (["--seeds", "0,x"], "--seeds must be comma-separated integers"),
        (["--set", "model.no_such_field=1"], "unknown config key 'model.no_such_field'"),
        (["--set", "eval.sets=train"], "eval.sets must list val and/or test"),
    ],
)
def test_bad_arguments_are_one_line_and_exit_code_2(argv, message, tmp_path, capsys):
    assert ablation.main([*argv, "--out", str(tmp_path)]) == 2
    assert message in _error_line(capsys)
    assert not (tmp_path / "runs").exists()


def _error_line(capsys) -> str:
    """The one error line on stderr (the progress bar's lines aside), never a traceback."""
    err = capsys.readouterr().err
    assert "Traceback" not in err
    (line,) = [x for x in err.splitlines() if x.startswith("error: ")]
    return line


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """One tiny invocation (LCM and STM, seed 0) and its argv, run as its docstring's command
    (its own process: one CPU device, not the tests' eight)."""
    base = tmp_path_factory.mktemp("ablation")
    argv = ["--out", str(base / "out"), "--seeds", "0", "--json", str(base / "r.json"),
            "--markdown", str(base / "r.md")] + [a for s in TINY for a in ("--set", s)]  # fmt: skip
    env = {**os.environ, "XLA_FLAGS": "--xla_backend_optimization_level=0"}
    done = subprocess.run([sys.executable, "-m", "benchmarks.ablation", *argv], env=env,
                          cwd=REPO, capture_output=True, text=True, timeout=600)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    return base, argv


def _result_files(out):
    return sorted(out.glob("runs/*/result-*.json"))


def test_tiny_run_reports_the_j_and_f_of_the_davis_csvs(tiny):
    base, _ = tiny
    entry = json.loads((base / "r.json").read_text())["default"]
    summary = entry["summary"]
    assert set(summary["jf"]) == {"lcm", "stm"}
    for run in entry["runs"]:
        for name, scores in run["jf"].items():
            folder = base / "out" / "runs" / run["run"] / "eval-5" / name
            with open(folder / f"global_results-{name}.csv") as f:
                global_jf = float(next(csv.DictReader(f))["J&F-Mean"])
            seed_means = summary["jf"][run["variant"]][name]["seeds"]
            assert seed_means[0] == pytest.approx(global_jf, abs=5e-4)  # CSV: 3 decimals
            assert len(scores) == 1  # one look-alike (or control) video per held-out split
    lcm, stm = ({r["variant"]: r for r in entry["runs"]}[v] for v in ("lcm", "stm"))
    paired = summary["paired"]["lcm-stm"]["test_lookalike"]
    video = next(iter(lcm["jf"]["test_lookalike"]))
    expected = lcm["jf"]["test_lookalike"][video] - stm["jf"]["test_lookalike"][video]
    assert paired["mean"] == pytest.approx(expected)
    pgm = lcm["pgm"]["test_lookalike"]
    assert 0 <= pgm["share"] <= 1 and 0 < pgm["chance"] < 1 and pgm["frames"] > 0
    assert stm["pgm"] == {}
    for run in entry["runs"]:
        assert set(run["where"]) == set(run["jf"])
        assert all(0 <= x for w in run["where"].values() for x in w.values())
    md = (base / "r.md").read_text()
    assert "<!-- ablation:default:begin -->" in md and "| GRM only (STM) |" in md


def test_a_rerun_reuses_the_cache_and_an_interrupted_run_resumes(tiny, monkeypatch):
    base, argv = tiny
    out = base / "out"
    before = {p: p.read_bytes() for p in _result_files(out)}

    def no_training(*args):
        raise AssertionError("a cached run was trained again")

    with monkeypatch.context() as m:
        m.setattr(ablation, "train_run", no_training)
        assert ablation.main(argv) == 0
    assert {p: p.read_bytes() for p in _result_files(out)} == before

    # Interrupted after the last checkpoint, before the result was written: the sequence stage
    # restarts from that checkpoint (its final step, nothing left to train) and the videos are
    # segmented again by the restored weights, with the same scores.
    lcm = next(p for p in before if p.parent.name.startswith("lcm-"))
    lcm.unlink()
    (lcm.parent / "sequence" / "done.json").unlink()
    shutil.rmtree(lcm.parent / "eval-5")
    assert ablation.main(argv) == 0
    redone, old = json.loads(lcm.read_text()), json.loads(before[lcm])
    assert (redone["jf"], redone["pgm"]) == (old["jf"], old["pgm"])


def test_a_stage_stopped_by_sigterm_is_not_marked_done(tiny, monkeypatch, capsys):
    base, argv = tiny
    from lcm_jax import train

    # On SIGTERM the trainer saves its step and returns early: not a finished stage.
    monkeypatch.setattr(train, "train_and_evaluate", lambda config, workdir: ({"step": 1}, []))
    assert ablation.main([*argv, "--seeds", "5"]) == 2
    assert "stopped at step 1 of 2; run the same command again" in _error_line(capsys)
    assert not list((base / "out").glob("runs/*-seed5-*/sequence/done.json"))


def test_a_run_in_use_by_another_process_is_an_error_not_a_second_training(
    tiny, monkeypatch, capsys
):
    base, argv = tiny
    argv = [*argv, "--set", "eval.mem_every=6"]  # no cached result: the run must be opened
    lcm_dir = next((base / "out" / "runs").glob("lcm-seed0-*"))
    with open(lcm_dir / ".lock", "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        monkeypatch.setattr(ablation, "train_run", lambda *a: pytest.fail("trained twice"))
        assert ablation.main(argv) == 2
    assert "is in use by another benchmark process" in _error_line(capsys)


def test_the_cache_is_keyed_by_the_full_config(tiny, monkeypatch):
    base, argv = tiny
    out = base / "out"
    dirs = {p.name for p in (out / "runs").iterdir()}
    # The same seed with another training config: another run folder, never the cached one.
    config = ablation.get_config()
    ablation.apply_overrides(config, TINY)
    spec = ablation.train_spec(config, "stm", 0)
    ablation.apply_overrides(config, ["stages.main.learning_rate=0.5"])
    other = ablation.train_spec(config, "stm", 0)
    assert ablation.key_of(spec) != ablation.key_of(other)
    assert f"stm-seed0-{ablation.key_of(spec)}" in dirs
    assert f"stm-seed0-{ablation.key_of(other)}" not in dirs

    # Another evaluation setting reuses the training but not the result.
    with monkeypatch.context() as m:
        m.setattr(ablation, "train_run", lambda *a: 0.0)
        assert ablation.main([*argv, "--set", "eval.mem_every=2", "--name", "mem2"]) == 0
    assert len(_result_files(out)) == 4 and {p.name for p in (out / "runs").iterdir()} == dirs

    # A run folder whose config.json is another config's is an error, not a reuse.
    stm_dir = out / "runs" / f"stm-seed0-{ablation.key_of(spec)}"
    saved = stm_dir / "config.json"
    good = saved.read_text()
    saved.write_text(json.dumps({**json.loads(good), "seed": 7}))
    try:
        assert ablation.main([*argv, "--set", "eval.mem_every=3"]) == 2
    finally:
        saved.write_text(good)


def test_a_full_disk_is_one_line_leaves_no_partial_file_and_the_rerun_completes(
    tiny, monkeypatch, capsys
):
    base, argv = tiny
    argv = [*argv, "--set", "eval.mem_every=4", "--name", "disk"]
    real_replace = os.replace

    def full_when_caching_a_result(src, dst):
        if Path(dst).name.startswith("result-"):
            raise OSError(errno.ENOSPC, "No space left on device", str(dst))
        return real_replace(src, dst)

    results = len(_result_files(base / "out"))
    with monkeypatch.context() as m:
        m.setattr(os, "replace", full_when_caching_a_result)
        assert ablation.main(argv) == 2
    assert "No space left on device" in _error_line(capsys)
    assert len(_result_files(base / "out")) == results
    assert not list((base / "out").rglob("*.tmp"))
    assert ablation.main(argv) == 0
    assert len(_result_files(base / "out")) == results + 2


def test_without_tensorflow_cached_runs_are_reported_and_training_is_a_clear_error(
    tiny, monkeypatch, capsys
):
    base, argv = tiny
    real = ablation.importlib.util.find_spec
    monkeypatch.setattr(
        ablation.importlib.util,
        "find_spec",
        lambda name, *a: None if name == "tensorflow" else real(name, *a),
    )
    assert ablation.main(argv) == 0  # everything cached
    assert ablation.main([*argv, "--seeds", "1"]) == 2
    line = _error_line(capsys)
    assert "needs TensorFlow" in line and "--set feed=numpy" in line


_MAIN_WITHOUT_TENSORFLOW = (
    testing.WITHOUT_TENSORFLOW
    + """
from benchmarks import ablation

status = ablation.main(sys.argv[1:])
assert not [m for m in sys.modules if m.split(".")[0] in ("tensorflow", "tensorflow_datasets")]
sys.exit(status)
"""
)


def test_with_the_numpy_feed_the_benchmark_trains_and_scores_without_tensorflow(tmp_path):
    """The GPU image's case: TensorFlow not installed, `--set feed=numpy`."""
    argv = ["--variants", "lcm", "--seeds", "0", "--out", str(tmp_path / "out"),
            "--json", str(tmp_path / "r.json"), "--markdown", str(tmp_path / "r.md"),
            "--set", "feed=numpy"] + [a for s in TINY for a in ("--set", s)]  # fmt: skip
    done = subprocess.run(
        [sys.executable, "-c", _MAIN_WITHOUT_TENSORFLOW, *argv],
        cwd=REPO,
        env=dict(os.environ, XLA_FLAGS="--xla_backend_optimization_level=0"),
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    (run,) = json.loads((tmp_path / "r.json").read_text())["default"]["runs"]
    config = ablation.get_config()
    ablation.apply_overrides(config, ["feed=numpy", *TINY])
    spec = ablation.train_spec(config, "lcm", 0)
    assert spec["feed"] == "numpy" and run["run"] == f"lcm-seed0-{ablation.key_of(spec)}"
    assert all(0 <= jf <= 1 for scores in run["jf"].values() for jf in scores.values())
    assert run["pgm"]["test_lookalike"]["frames"] > 0
    assert not list((tmp_path / "out" / "data").glob("*/tfds"))  # nothing prepared for tf.data


def test_the_default_feed_keeps_the_train_keys_of_runs_cached_before_the_feed_existed():
    config = ablation.get_config()
    before = {  # train_spec as it was before config.feed
        "data": config.data.to_dict(),
        "model": ablation.run_model_config(config, "lcm").to_dict(),
        "crop": config.crop,
        "batch_size": config.batch_size,
        "stages": config.stages.to_dict(),
        "seed": 0,
    }
    assert ablation.key_of(ablation.train_spec(config, "lcm", 0)) == ablation.key_of(before)
    ablation.apply_overrides(config, ["feed=numpy"])
    numpy_spec = ablation.train_spec(config, "lcm", 0)
    assert numpy_spec == {**before, "feed": "numpy"}
    assert ablation.stage_config(config, "main", "lcm", 0, Path("d"), "").data.feed == "numpy"


def test_an_unknown_feed_is_one_line(capsys):
    assert ablation.main(["--set", "feed=torch"]) == 2
    assert "feed must be one of ('tf.data', 'numpy')" in _error_line(capsys)
