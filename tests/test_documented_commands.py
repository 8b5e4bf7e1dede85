"""The segment, evaluate, convert and export commands of the README, of the CLIs' docstrings
and of configs/lcm.py's run as written, in a folder laid out as they assume (after `make demo`,
with the weights they name); so do the Python snippets of the README's sections on the
Predictor and on serving (and export's docstring's), on the model and on the PyTorch
reference."""

import os
import pickle
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import imageio.v3 as iio
import jax
import numpy as np
import orbax.checkpoint as ocp
import torch
from test_convert import stm_release
from test_docstring_snippets import run_snippet
from test_inference_support import davis2016_folder, synthetic_video, tiny_model

from lcm_jax import checkpoints, convert, evaluate, export, segment
from lcm_jax.configs import lcm as lcm_configs
from lcm_jax.configs import model as model_configs
from lcm_jax.input_pipeline import synthetic, video_io
from lcm_jax.interop import torch_lcm as tl

ROOT = Path(__file__).resolve().parents[1]
COMMAND = re.compile(r"^ *(python -m lcm_jax\.(?:segment|evaluate|convert) (?:.*\\\n)*.*)$", re.M)
EXPORT_COMMAND = re.compile(r"^ *(python -m lcm_jax\.export (?:.*\\\n)*.*)$", re.M)
SERVING = "Interactive segmentation and serving"  # the README section of the snippets
BLOCK = re.compile(r"^```(bash|python)\n(.*?)^```$", re.M | re.S)


def documented_commands() -> list[str]:
    """Each distinct command, continuation lines joined, in the order the texts give them."""
    texts = [(ROOT / "README.md").read_text()]
    texts += [m.__doc__ for m in (segment, evaluate, convert, lcm_configs)]
    return joined(COMMAND, texts)


def joined(pattern: re.Pattern, texts: list[str]) -> list[str]:
    found = [re.sub(r"\\\n\s*", "", c) for text in texts for c in pattern.findall(text)]
    return list(dict.fromkeys(found))


def readme_section(title: str) -> str:
    text = (ROOT / "README.md").read_text()
    start = text.index(f"\n## {title}\n")
    return text[start : text.find("\n## ", start + 1)]


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


def command_env(folder: Path) -> dict:
    """The environment of the commands: `python` is this environment's, JAX on the CPU."""
    bin_dir = folder / "bin"
    bin_dir.mkdir()
    (bin_dir / "python").write_text(f'#!/bin/sh\nexec {sys.executable} "$@"\n')
    (bin_dir / "python").chmod(0o755)
    return {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "PYTHONPATH": str(ROOT),
            "XLA_FLAGS": "--xla_backend_optimization_level=0", "JAX_PLATFORMS": "cpu"}  # fmt: skip


def run_quietly(argv: list[str], folder: Path, env: dict, what: str) -> None:
    done = subprocess.run(argv, cwd=folder, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, (what, done.stderr[-3000:])
    assert "Traceback" not in done.stderr and "warning" not in done.stderr.lower(), what


def test_the_documented_commands_run_as_written(tmp_path):
    commands = documented_commands()
    # segment (from the first frame, from frame 3), evaluate (DAVIS, DAVIS 2016, YouTube-VOS
    # every 5th and all frames), convert x3, and configs/lcm.py's evaluate of $W/sequence (here
    # the README's checkpoint: its run finds the README's results there and keeps them)
    assert len(commands) == 10, commands
    synthetic.generate(tmp_path / "data", num_videos=4, num_frames=6, height=64, width=64,
                       seed=1, progress=False)  # fmt: skip
    davis2016_folder(tmp_path / "data" / "DAVIS2016", ["blackswan", "cows"])
    # all frames of YouTube-VOS valid in STCN's layout: here the same as the every-5th folder
    # (tests/test_evaluate.py runs folders with frames in between)
    youtube = tmp_path / "data" / "YouTube"
    shutil.copytree(youtube / "valid" / "JPEGImages",
                    youtube / "all_frames" / "valid_all_frames" / "JPEGImages")  # fmt: skip
    training_workdir(tmp_path / "demo_out" / "train" / "lcm" / "sequence")
    frames, labels = synthetic_video(seed=3, num_frames=6)
    video_io.spawn_ffmpeg_without_fork()
    iio.imwrite(tmp_path / "my_video.mp4", frames, fps=6)
    video_io.write_label_png(tmp_path / "first.png", labels[0])
    video_io.write_label_png(tmp_path / "frame3.png", labels[3])
    paper_weights(tmp_path)
    env = {**command_env(tmp_path), "W": "demo_out/train/lcm"}
    for command in commands:
        run_quietly(["bash", "-c", command], tmp_path, env, command)

    assert len(list((tmp_path / "out" / "my_video").glob("*.png"))) == 6
    assert (tmp_path / "out" / "my_video" / "overlay.mp4").is_file()
    from_3 = tmp_path / "out" / "my_video_from_3"
    assert len(list(from_3.glob("*.png"))) == 6 and (from_3 / "overlay.mp4").is_file()
    np.testing.assert_array_equal(video_io.read_label_png(from_3 / "00003.png"), labels[3])
    assert (tmp_path / "results" / "davis_val" / "global_results-val.csv").is_file()
    assert (tmp_path / "results" / "davis2016_val" / "global_results-val.csv").is_file()
    every_5th = zipped(tmp_path / "results" / "ytvos_valid" / "submission.zip")
    all_frames = zipped(tmp_path / "results" / "ytvos_valid_all_frames" / "submission.zip")
    assert every_5th and all_frames == every_5th  # the same frames here, so the same masks
    assert checkpoints.load_model_config(tmp_path / "resnet50")["backbone"] == "resnet50"
    stm = checkpoints.load_model_config(tmp_path / "stm")
    assert (stm["backbone"], stm["use_pgm"], stm["use_orm"]) == ("resnet50", False, False)
    state_dict = torch.load(tmp_path / "stm.pth", weights_only=True)
    assert "decoder.pred2.bias" in state_dict
    assert not any(k.startswith(("pgm.", "orm.")) for k in state_dict)


def zipped(path: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as z:
        return {name: z.read(name) for name in z.namelist()}


# what a snippet leaves behind, into the file its argv names (`state` is the Predictor's)
KEEP = """
import pickle as _pickle
import sys as _sys
_kept = {_k: _v for _k, _v in dict(globals()).items() if _k in ("results", "labels")}
if "state" in globals():
    _kept["object_ids"] = state.object_ids
    _kept["after"] = {_t: _r.labels for _t, _r in state.results.items()}
with open(_sys.argv[1], "wb") as _f:
    _pickle.dump(_kept, _f)
"""


def serving_folder(path: Path) -> np.ndarray:
    """The folder the serving section assumes: the demo's checkpoint, my_video.mp4 (6 frames of
    854x480 with objects 1 and 2) and the masks first.png, frame3.png and frame4.png of its
    frames 0, 3 and 4. Returns the video's labels uint8 [6, 480, 854]."""
    training_workdir(path / "demo_out" / "train" / "lcm" / "sequence")
    frames, labels = synthetic_video(seed=4, num_frames=6, size=(60, 107))
    frames, labels = (np.repeat(np.repeat(x, 8, 1), 8, 2)[:, :480, :854] for x in (frames, labels))
    video_io.spawn_ffmpeg_without_fork()
    # macro_block_size=1: keep 854 wide (imageio would resize it to a multiple of 16)
    iio.imwrite(path / "my_video.mp4", frames, fps=6, macro_block_size=1)
    for name, t in (("first", 0), ("frame3", 3), ("frame4", 4)):
        video_io.write_label_png(path / f"{name}.png", labels[t])
    assert all(set(np.unique(labels[t]).tolist()) == {0, 1, 2} for t in (0, 3, 4))
    return labels


def test_the_serving_section_runs_as_written(tmp_path, monkeypatch):
    section = readme_section(SERVING)
    blocks = BLOCK.findall(section)
    assert [language for language, _ in blocks] == ["python", "bash", "python"]
    # the export command the README and the module's docstring show is the one run here
    (command,) = joined(EXPORT_COMMAND, [section])
    assert joined(EXPORT_COMMAND, [(ROOT / "README.md").read_text(), export.__doc__]) == [command]
    labels = serving_folder(tmp_path)
    env = command_env(tmp_path)

    kept = []
    for i, (language, text) in enumerate(blocks):
        if language == "bash":
            run_quietly(["bash", "-e", "-c", text], tmp_path, env, text)
        else:
            out = tmp_path / f"snippet{i}.pkl"
            argv = [sys.executable, "-c", text + KEEP, str(out)]
            run_quietly(argv, tmp_path, env, text)
            kept.append(pickle.loads(out.read_bytes()))
    interactive, served = kept

    # the Predictor: every frame, the given masks where they were given, object 1 removed
    results = interactive["results"]
    assert sorted(results) == list(range(6))
    for i in (1, 2):
        np.testing.assert_array_equal(results[3][i], labels[3] == i)
    np.testing.assert_array_equal(results[4][2], labels[4] == 2)  # the correction
    assert interactive["object_ids"] == (2,)
    for t in range(6):
        np.testing.assert_array_equal(interactive["after"][t], np.where(results[t][2], 2, 0))

    # the exported file: made for what the command says; from first.png, labels of its objects
    # (that they equal the engine's is tests/test_export.py's)
    model = export.load(tmp_path / "model.jax")
    assert (model.meta["height"], model.meta["width"], model.meta["objects"]) == (480, 854, 2)
    assert model.meta["platforms"] == ["cpu", "cuda", "tpu"]
    assert len(served["labels"]) == 6
    np.testing.assert_array_equal(served["labels"][0], labels[0])
    assert set(np.unique(np.stack(served["labels"])).tolist()) <= {0, 1, 2}

    # the module docstring's serving snippet, on the same file and video: the same labels
    monkeypatch.chdir(tmp_path)
    frames = iio.imread("my_video.mp4")
    done = run_snippet("lcm_jax.export", frames=frames, first_labels=labels[0])
    np.testing.assert_array_equal(done["labels"], served["labels"][-1])


# what a model snippet leaves behind, into the file its argv names
KEEP_MODEL = """
import pickle as _pickle
import sys as _sys
_kept = {_k: globals()[_k] for _k in ("logits", "report", "variables") if _k in globals()}
with open(_sys.argv[1], "wb") as _f:
    _pickle.dump(_kept, _f)
"""


def test_the_model_and_comparison_snippets_run_as_written(tmp_path):
    sections = ("What LCM is", "Weights and the PyTorch reference")
    blocks = [
        [t for lang, t in BLOCK.findall(readme_section(s)) if lang == "python"] for s in sections
    ]
    assert [len(b) for b in blocks] == [1, 1]
    # The comparison at XLA's default optimisation, as users run it (at level 0 the tiny model's
    # float32 logits differ from PyTorch's by 7.6e-5 relative, 4.3e-6 at the default); the model
    # snippet, whose checks are not on rounding, at level 0 (19 s instead of 25 s)
    level_0 = command_env(tmp_path)
    envs = (level_0, {**level_0, "XLA_FLAGS": ""})
    kept = []
    for i, ((text,), env) in enumerate(zip(blocks, envs, strict=True)):
        out = tmp_path / f"snippet{i}.pkl"
        run_quietly([sys.executable, "-c", text + KEEP_MODEL, str(out)], tmp_path, env, text)
        kept.append(pickle.loads(out.read_bytes()))
    # The clip's logits: frames 1 and 2, background + 3 object slots, at the frames' size; the
    # two unused slots get no probability (soft aggregation leaves invalid objects out).
    logits = np.asarray(kept[0]["logits"], np.float64)
    assert logits.shape == (1, 2, 4, 64, 96) and np.isfinite(logits).all()
    probs = np.exp(logits - logits.max(axis=2, keepdims=True))
    probs /= probs.sum(axis=2, keepdims=True)
    assert probs[:, :, 2:].max() == 0 and probs[:, :, 1].max() > 0.5
    # The comparison: a row for each parameter's gradient; values within 1e-5 of their largest
    # entry, gradients within 1e-4 of the largest gradient (what the README says under it).
    report, variables = kept[1]["report"], kept[1]["variables"]
    grads = [row for name, row in report.rows.items() if name.startswith("grad.")]
    values = [row for name, row in report.rows.items() if not name.startswith("grad.")]
    assert len(grads) == len(jax.tree.leaves(variables["params"])) and "clip.logits" in report.rows
    assert 0 < max(row.rel_err for row in values) < 1e-5
    largest = max(row.max_abs_ref for row in grads)
    assert 0 < max(row.max_abs_err for row in grads) < 1e-4 * largest
