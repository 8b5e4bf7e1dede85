"""The segment, evaluate and convert commands of the README and of the CLIs' docstrings run as
written, in a folder laid out as they assume (after `make demo`, with the weights they name)."""

import os
import re
import subprocess
import sys
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import orbax.checkpoint as ocp
import torch
from test_convert import stm_release
from test_inference_support import synthetic_video, tiny_model

from lcm_jax import checkpoints, convert, evaluate, segment
from lcm_jax.configs import model as model_configs
from lcm_jax.input_pipeline import synthetic, video_io
from lcm_jax.interop import torch_lcm as tl

ROOT = Path(__file__).resolve().parents[1]
COMMAND = re.compile(r"^ *(python -m lcm_jax\.(?:segment|evaluate|convert) (?:.*\\\n)*.*)$", re.M)


def documented_commands() -> list[str]:
    """Each distinct command, continuation lines joined, in the order the texts give them."""
    texts = [(ROOT / "README.md").read_text()] + [m.__doc__ for m in (segment, evaluate, convert)]
    found = [re.sub(r"\\\n\s*", "", c) for text in texts for c in COMMAND.findall(text)]
    return list(dict.fromkeys(found))


def training_workdir(path: Path) -> None:
    """A tiny model's workdir as the training loop writes it (items state and model_config)."""
    config, variables = tiny_model(0)
    manager = ocp.CheckpointManager(path / "checkpoints")
    state = {"step": 3, **variables}
    manager.save(
        3,
        args=ocp.args.Composite(
            state=ocp.args.StandardSave(state), model_config=ocp.args.JsonSave(config)
        ),
    )
    manager.wait_until_finished()


def paper_weights(folder: Path) -> None:
    """resnet50.pth (a torchvision ResNet-50 trunk) and STM_weights.pth (the STM release's
    names), random weights at the paper's size."""
    torch.manual_seed(0)
    torch.save(tl.Encoder("resnet50", 1.0, memory=False).state_dict(), folder / "resnet50.pth")
    stm = dict(model_configs.get_config("paper"), use_pgm=False, use_orm=False)
    torch.save(stm_release(tl.build_torch_model(stm)), folder / "STM_weights.pth")


def test_the_documented_commands_run_as_written(tmp_path):
    commands = documented_commands()
    # segment (from the first frame, from frame 3), evaluate (DAVIS, YouTube-VOS), convert x3
    assert len(commands) == 7, commands
    synthetic.generate(tmp_path / "data", num_videos=4, num_frames=6, height=64, width=64,
                       seed=1, progress=False)  # fmt: skip
    training_workdir(tmp_path / "demo_out" / "train" / "lcm" / "sequence")
    frames, labels = synthetic_video(seed=3, num_frames=6)
    video_io.spawn_ffmpeg_without_fork()
    iio.imwrite(tmp_path / "my_video.mp4", frames, fps=6)
    video_io.write_label_png(tmp_path / "first.png", labels[0])
    video_io.write_label_png(tmp_path / "frame3.png", labels[3])
    paper_weights(tmp_path)
    bin_dir = tmp_path / "bin"  # `python` is this environment's
    bin_dir.mkdir()
    (bin_dir / "python").write_text(f'#!/bin/sh\nexec {sys.executable} "$@"\n')
    (bin_dir / "python").chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "PYTHONPATH": str(ROOT),
           "XLA_FLAGS": "--xla_backend_optimization_level=0", "JAX_PLATFORMS": "cpu"}  # fmt: skip

    for command in commands:
        done = subprocess.run(
            ["bash", "-c", command], cwd=tmp_path, env=env, capture_output=True, text=True,
            timeout=300,
        )  # fmt: skip
        assert done.returncode == 0, (command, done.stderr[-3000:])
        assert "Traceback" not in done.stderr and "warning" not in done.stderr.lower(), command

    assert len(list((tmp_path / "out" / "my_video").glob("*.png"))) == 6
    assert (tmp_path / "out" / "my_video" / "overlay.mp4").is_file()
    from_3 = tmp_path / "out" / "my_video_from_3"
    assert len(list(from_3.glob("*.png"))) == 6 and (from_3 / "overlay.mp4").is_file()
    np.testing.assert_array_equal(video_io.read_label_png(from_3 / "00003.png"), labels[3])
    assert (tmp_path / "results" / "davis_val" / "global_results-val.csv").is_file()
    assert (tmp_path / "results" / "ytvos_valid" / "submission.zip").is_file()
    assert checkpoints.load_model_config(tmp_path / "resnet50")["backbone"] == "resnet50"
    stm = checkpoints.load_model_config(tmp_path / "stm")
    assert (stm["backbone"], stm["use_pgm"], stm["use_orm"]) == ("resnet50", False, False)
    state_dict = torch.load(tmp_path / "stm.pth", weights_only=True)
    assert "decoder.pred2.bias" in state_dict
    assert not any(k.startswith(("pgm.", "orm.")) for k in state_dict)
