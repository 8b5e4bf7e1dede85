"""Outputs that a later run reuses carry what made them: the synthetic generator's sets and the
demo's folder. Another setting stops the run with a message naming it; an interrupted run
leaves nothing that a rerun would take for finished."""

import json
import os
from pathlib import Path

import numpy as np
import pytest

from lcm_jax import cli, demo, train
from lcm_jax.input_pipeline import synthetic, video_io

SMALL = dict(num_videos=2, num_frames=3, height=16, width=16, num_static=4, progress=False)


def snapshot(folder: Path) -> dict[str, tuple[bytes, int]]:
    """Every file under `folder`: its bytes and modification time."""
    return {
        str(p.relative_to(folder)): (p.read_bytes(), p.stat().st_mtime_ns)
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def test_a_synthetic_set_is_reused_only_for_the_same_settings(tmp_path):
    out = synthetic.generate(tmp_path / "raw", **SMALL)
    before = snapshot(out)
    assert json.loads((out / synthetic.SETTINGS_FILE).read_text())["num_frames"] == 3

    # The same settings (num_static given or its default, progress on or off): nothing rewritten.
    assert synthetic.generate(out, **{**SMALL, "num_static": None, "progress": True}) == out
    assert snapshot(out) == before

    # Other settings: refused, naming each, the set untouched (its frames were overwritten in
    # part before: 3 new frames of 24x24 and 2 old of 16x16 in one sequence).
    with pytest.raises(ValueError) as e:
        synthetic.generate(out, **{**SMALL, "num_frames": 5, "height": 24}, seed=1)
    assert str(e.value) == (
        f"{out} holds synthetic videos of other settings (height: 16 -> 24; num_frames: 3 -> 5; "
        "seed: 0 -> 1); choose another output folder or remove it"
    )
    with pytest.raises(ValueError, match=r"difficulty\.num_distractors: 1 -> 2\)"):
        synthetic.generate(out, **SMALL, difficulty=synthetic.Difficulty(num_distractors=2))
    assert snapshot(out) == before

    # Files that are no set of this generator (or one from before it recorded its settings).
    (out / synthetic.SETTINGS_FILE).unlink()
    with pytest.raises(ValueError, match=f"{out} holds files but no readable synthetic.json"):
        synthetic.generate(out, **SMALL)


def test_an_interrupted_synthetic_set_is_not_taken_for_whole_and_a_rerun_writes_it(
    tmp_path, monkeypatch
):
    whole = snapshot(synthetic.generate(tmp_path / "whole", **SMALL))
    out = tmp_path / "data" / "raw"
    out.mkdir(parents=True)  # an empty folder may be named, as the CLI allows
    killed = out.parent / ".raw.0123abcd.tmp"  # what a SIGKILLed run left
    (killed / "raw").mkdir(parents=True)

    original = video_io.write_label_png

    def interrupt_at_the_static_images(path, labels):
        if "static" in Path(path).parts:
            raise KeyboardInterrupt
        original(path, labels)

    monkeypatch.setattr(video_io, "write_label_png", interrupt_at_the_static_images)
    with pytest.raises(KeyboardInterrupt):
        synthetic.generate(out, **SMALL)
    # Nothing at `out` that a later run (the demo's, the training pipeline's "generate when
    # missing") would take for a whole set: DAVIS and YouTube-VOS were written, static not.
    assert sorted(os.listdir(out.parent)) == ["raw"] and not any(out.iterdir())  # as it was

    monkeypatch.setattr(video_io, "write_label_png", original)
    synthetic.generate(out, **SMALL)
    assert sorted(os.listdir(out.parent)) == ["raw"]  # no temporary, the killed run's neither
    assert {k: v[0] for k, v in snapshot(out).items()} == {k: v[0] for k, v in whole.items()}


def demo_args(out: Path, *more: str) -> list[str]:
    return ["--out", str(out), "--steps", "2", "--num_videos", "4", "--num_frames", "8",
            "--size", "64", "--crop", "64", *more]  # fmt: skip


def test_the_demo_stops_at_an_out_of_other_settings_before_writing_anything(tmp_path, capsys):
    out = tmp_path / "demo_out"
    demo.claim(out, demo.parse_args(demo_args(out)))
    recorded = (out / "demo.json").read_text()
    assert json.loads(recorded) == {
        "steps": 2, "num_videos": 4, "num_frames": 8, "size": 64, "crop": 64
    }  # fmt: skip
    # The same settings (and --ablation, which only adds variants): the folder is the run's.
    demo.claim(out, demo.parse_args(demo_args(out, "--ablation")))

    # Another length or frame size would resume the stages trained for the old one, or reuse
    # videos of the old size, and report them as the new settings'.
    assert demo.main(demo_args(out, "--steps", "4", "--size", "96")) == cli.EXIT_INPUT
    err = capsys.readouterr().err
    assert err == (
        f"error: {out} holds a demo run of other settings (--steps: 2 -> 4; --size: 64 -> 96); "
        "choose another --out, or remove it to start afresh\n"
    )
    assert sorted(p.name for p in out.iterdir()) == ["demo.json"]
    assert (out / "demo.json").read_text() == recorded

    # Trained stages of an earlier version's demo (no demo.json): their settings are unknown.
    older = tmp_path / "older"
    (older / "train" / "lcm" / "pretrain").mkdir(parents=True)
    assert demo.main(demo_args(older)) == cli.EXIT_INPUT
    assert "holds trained stages but no demo.json" in capsys.readouterr().err
    assert not (older / "demo.json").exists()


def test_a_demo_stage_stopped_by_sigterm_is_not_what_the_next_stage_starts_from(
    tmp_path, monkeypatch
):
    """SIGTERM makes the trainer save its step and return: the demo must stop there (the same
    command resumes that stage) rather than train the next stage from the unfinished one."""
    started = []

    def trainer_preempted_in_pretrain(config, workdir):
        started.append((config.stage, config.init_from))
        steps = config.num_train_steps - 1 if config.stage == "pretrain" else config.num_train_steps
        return {"step": np.asarray(steps)}, []

    monkeypatch.setattr(train, "train_and_evaluate", trainer_preempted_in_pretrain)
    with pytest.raises(cli.Terminated):
        demo.train_variant(tmp_path, "LCM", 4, 64, tmp_path / "data")
    assert started == [("pretrain", "")]
