"""The exported step: written by the CLI, run by a process that has no flax and no model code."""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import jax
import numpy as np
import pytest
from test_inference_support import synthetic_video, tiny_model

from lcm_jax import checkpoints, export
from lcm_jax.inference.engine import Engine, InferenceOptions, Video

# Programs compiled again by later tests come from JAX's persistent cache (conftest.py).
pytestmark = pytest.mark.usefixtures("compilation_cache")

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """(checkpoint dir, exported file) of the tiny model for 64x64 frames and 2 objects."""
    tmp = tmp_path_factory.mktemp("export")
    config, variables = tiny_model()
    ckpt = checkpoints.save_variables(tmp / "ckpt", variables, config)
    out = tmp / "model.jax"
    argv = ["--checkpoint", str(ckpt), "--height", "64", "--width", "64", "--objects", "2"]
    assert export.main([*argv, "--out", str(out), "--platforms", "cpu,cuda,tpu"]) == 0
    return ckpt, out


def test_a_fresh_process_without_flax_runs_the_file_and_gets_the_engines_labels(exported, tmp_path):
    ckpt, model_file = exported
    frames, labels = synthetic_video(seed=31, num_frames=8, objects=2)
    np.savez(tmp_path / "video.npz", frames=frames, first=labels[0])
    script = textwrap.dedent(
        f"""
        import sys
        import numpy as np
        from lcm_jax import export
        model = export.load({str(model_file)!r})
        video = np.load({str(tmp_path / "video.npz")!r})
        out = np.stack(list(model.segment(video["frames"], video["first"])))
        np.save({str(tmp_path / "out.npy")!r}, out)
        loaded = sorted(m for m in sys.modules if m.split(".")[0] in ("flax", "lcm_jax"))
        print(",".join(loaded))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().split(",") == ["lcm_jax", "lcm_jax.export"]  # no flax, no model
    got = np.load(tmp_path / "out.npy")

    engine = Engine(
        checkpoints.load_model_config(ckpt),
        checkpoints.load_variables(ckpt),
        InferenceOptions(max_memory_frames=10),
    )
    expected = [r.labels for r in engine.run(Video(list(frames), {0: labels[0]}, len(frames)))]
    np.testing.assert_array_equal(got, np.stack(expected))


def test_the_file_says_what_it_was_made_for_and_refuses_other_sizes(exported):
    _, model_file = exported
    model = export.load(model_file)
    assert (model.meta["height"], model.meta["width"], model.meta["objects"]) == (64, 64, 2)
    assert model.meta["platforms"] == ["cpu", "cuda", "tpu"]
    with pytest.raises(export.ExportError, match=r"exported for uint8 frames of 64x64"):
        model.step(model.init_memory(), np.zeros((48, 64, 3), np.uint8), None, None, 0)
    with pytest.raises(export.ExportError, match="3 objects; the step was exported for at most 2"):
        next(model.segment([np.zeros((64, 64, 3), np.uint8)], np.arange(4, dtype=np.uint8)))


def test_a_file_for_another_platform_or_no_file_at_all_is_a_clear_error(exported, tmp_path):
    ckpt, _ = exported
    tpu_only = tmp_path / "tpu.jax"
    argv = ["--checkpoint", str(ckpt), "--height", "32", "--width", "32", "--objects", "1"]
    assert export.main([*argv, "--out", str(tpu_only), "--platforms", "tpu"]) == 0
    with pytest.raises(export.ExportError, match=r"was exported for tpu; this process runs on cpu"):
        export.load(tpu_only)
    (tmp_path / "junk.jax").write_bytes(b"not a file of ours")
    with pytest.raises(export.ExportError, match="not an lcm-jax exported step"):
        export.load(tmp_path / "junk.jax")
    assert export.main([*argv, "--out", str(tmp_path / "x.jax"), "--platforms", "gpu"]) == 2


def test_a_file_for_cuda_loads_on_a_gpu_where_jax_names_the_backend_gpu(
    exported, tmp_path, monkeypatch
):
    # jax.default_backend() says "gpu" on an NVIDIA GPU; exports and --platforms say "cuda"
    ckpt, all_platforms = exported
    cpu_only = tmp_path / "cpu.jax"
    argv = ["--checkpoint", str(ckpt), "--height", "32", "--width", "32", "--objects", "1"]
    assert export.main([*argv, "--out", str(cpu_only)]) == 0
    monkeypatch.setattr(jax, "default_backend", lambda: "gpu")
    monkeypatch.setattr(jax.export, "default_export_platform", lambda: "cuda")
    assert export.load(all_platforms).meta["platforms"] == ["cpu", "cuda", "tpu"]
    with pytest.raises(
        export.ExportError,
        match=r"was exported for cpu; this process runs on cuda \(export again with "
        r"--platforms cuda\)",
    ):
        export.load(cpu_only)


def test_an_output_that_is_a_folder_or_under_a_file_is_one_line_before_loading(tmp_path, capsys):
    (tmp_path / "afile").write_text("x")
    (tmp_path / "adir").mkdir()
    argv = ["--checkpoint", str(tmp_path / "nothing"), "--height", "32", "--width", "32",
            "--objects", "1"]  # fmt: skip
    assert export.main([*argv, "--out", str(tmp_path / "adir")]) == 2
    assert capsys.readouterr().err == (
        f"error: --out {tmp_path / 'adir'} is a folder; name the file to write (model.jax)\n"
    )
    out = tmp_path / "afile" / "model.jax"
    assert export.main([*argv, "--out", str(out)]) == 2
    assert capsys.readouterr().err == (
        f"error: {out}: Not a directory ({tmp_path / 'afile'} is a file)\n"
    )
    assert sorted(os.listdir(tmp_path)) == ["adir", "afile"] and not os.listdir(tmp_path / "adir")


def test_labels_of_another_dtype_or_range_are_clear_errors_naming_them(exported):
    _, model_file = exported
    model = export.load(model_file)
    frame, labels, given = (
        np.zeros((64, 64, 3), np.uint8),
        np.zeros((64, 64), np.uint8),
        np.ones(2, bool),
    )
    with pytest.raises(
        export.ExportError, match="labels must be uint8 and given bool; got int64 and bool"
    ):
        model.step(model.init_memory(), frame, labels.astype(np.int64), given, 0)
    with pytest.raises(
        export.ExportError, match="labels must be uint8 and given bool; got uint8 and int32"
    ):
        model.step(model.init_memory(), frame, labels, given.astype(np.int32), 0)
    with pytest.raises(
        export.ExportError, match=r"labels hold 3: they are object index \+ 1, at most 2"
    ):
        model.step(model.init_memory(), frame, labels + 3, given, 0)
    bad_firsts = [
        (labels.astype(np.float32), "float32 with values 0.0 to 0.0"),
        (labels.astype(np.int32) + 300, "int32 with values 300 to 300"),
    ]
    for first, got in bad_firsts:
        with pytest.raises(
            export.ExportError, match=r"first mask must be a label map .*; got " + got
        ):
            next(model.segment([frame], first))
    first = np.zeros((64, 64), np.int32)  # an integer label map of another dtype is fine
    first[10:20, 10:20] = 7
    out = list(model.segment([frame, frame], first))
    assert [x.dtype for x in out] == [np.uint8] * 2 and np.array_equal(out[0], first)
