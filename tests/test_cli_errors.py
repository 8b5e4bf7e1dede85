"""The commands' input errors: one line "error: ..." naming the path, status 2, no traceback,
nothing written; and how an interrupted command ends."""

import os
import subprocess
import sys

import pytest
from test_inference_support import save_tiny_checkpoint, synthetic_video

from lcm_jax import cli, segment
from lcm_jax.input_pipeline import video_io


def one_line_error(module, argv: list[str], capsys, *, command: bool, env=None) -> str:
    """Runs the CLI `module` with `argv`, as a command (`python -m`, in `env`) or through its
    `main` in this process, and checks that it failed as an input mistake: status 2, nothing on
    stdout, one line "error: ..." on stderr, no traceback. Returns that line."""
    if command:
        run = subprocess.run([sys.executable, "-m", module.__name__, *argv], env=env,
                             capture_output=True, text=True, timeout=300)  # fmt: skip
        status, stdout, stderr = run.returncode, run.stdout, run.stderr
    else:
        status = module.main(argv)
        stdout, stderr = capsys.readouterr()
    assert status == cli.EXIT_INPUT, (argv, stderr)
    assert "Traceback" not in stderr and stdout == "", (argv, stderr)
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), (argv, stderr)
    return lines[0]


def test_an_os_error_is_one_line_naming_the_path_and_the_file_in_the_way(tmp_path, capsys):
    (tmp_path / "afile").write_text("x")
    assert cli.run(lambda: (tmp_path / "afile" / "sub").mkdir()) == cli.EXIT_INPUT
    afile = tmp_path / "afile"
    assert capsys.readouterr().err == f"error: {afile}/sub: Not a directory ({afile} is a file)\n"


@pytest.mark.parametrize(
    "error",
    [
        PermissionError(13, "Permission denied", "/data/ckpt/_METADATA"),
        IsADirectoryError(21, "Is a directory", "out"),
    ],
)
def test_permission_and_directory_errors_are_input_errors(error, capsys):
    def body():
        raise error

    assert cli.run(body) == cli.EXIT_INPUT
    assert capsys.readouterr().err == f"error: {error.filename}: {error.strerror}\n"


def test_segment_into_a_folder_under_a_file_is_one_line_and_writes_nothing(tmp_path, capsys):
    checkpoint = save_tiny_checkpoint(tmp_path / "ckpt")
    frames, labels = synthetic_video(seed=50, num_frames=5)
    for t, frame in enumerate(frames):
        video_io.write_frame(tmp_path / "frames" / f"{t:05d}.png", frame)
    video_io.write_label_png(tmp_path / "mask.png", labels[0])
    (tmp_path / "afile").write_text("x")
    out = tmp_path / "afile" / "sub"
    argv = ["--frames", str(tmp_path / "frames"), "--mask", str(tmp_path / "mask.png"),
            "--checkpoint", str(checkpoint), "--out", str(out)]  # fmt: skip
    assert segment.main(argv) == cli.EXIT_INPUT
    err = capsys.readouterr().err
    assert err == f"error: {out}: Not a directory ({tmp_path / 'afile'} is a file)\n"
    assert (tmp_path / "afile").read_text() == "x"
    assert sorted(os.listdir(tmp_path)) == ["afile", "ckpt", "frames", "mask.png"]


def test_a_shorter_side_below_16_is_one_line_before_anything_is_read_or_written(tmp_path, capsys):
    argv = ["--frames", str(tmp_path / "frames"), "--mask", str(tmp_path / "mask.png"),
            "--checkpoint", str(tmp_path / "ckpt"), "--out", str(tmp_path / "out")]  # fmt: skip
    for value in ("0", "-8"):
        assert segment.main([*argv, "--shorter_side", value]) == cli.EXIT_INPUT
        err = capsys.readouterr().err
        assert (
            err == f"error: shorter_side must be >= 16 (the model's stride) or None, got {value}\n"
        )
    assert os.listdir(tmp_path) == []


_EXIT = """
import atexit, sys
from lcm_jax import cli
atexit.register(print, "finalised")
print("written before", end="")  # no newline: still buffered when cli.exit is called
cli.exit(int(sys.argv[1]))
"""


@pytest.mark.parametrize("status", [0, 1, 2, 130, 143])
def test_an_interrupted_command_ends_without_finalisation_and_loses_no_output(status):
    # An interrupted run skips the interpreter's finalisation (where XLA work cut short crashed
    # it now and then: status 139 after "interrupted"), after flushing what it printed.
    done = subprocess.run(
        [sys.executable, "-c", _EXIT, str(status)], capture_output=True, text=True, check=False
    )
    assert done.returncode == status
    interrupted = status in (cli.EXIT_SIGINT, cli.EXIT_SIGTERM)
    assert done.stdout == "written before" + ("" if interrupted else "finalised\n")
