"""The Python snippets of the module docstrings run as written. Each is taken from its module's
docstring (so the snippet tested is the one a reader sees) and executed in that module's
namespace, in a folder laid out as it assumes, with the names it leaves to the reader (`image`,
`source`, `cfg`, `frames`, ...) bound to small real objects. The shell commands of docstrings are
tests/test_documented_commands.py's and tests/test_documented_command_flags.py's.

Not run here: `lcm_jax.train`'s snippet (a whole local training run, minutes; its command line
twin, configs/lcm.py's quick local run, is run by tests/test_train.py)."""

import importlib
import os
import textwrap
from pathlib import Path

import imageio.v3 as iio
import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest
import torch
from PIL import Image
from test_inference_support import synthetic_video

from lcm_jax import files
from lcm_jax.configs import data as data_configs
from lcm_jax.input_pipeline import synthetic, video_io


def code_blocks(doc: str) -> list[str]:
    """The docstring's indented blocks (4 spaces or more), dedented, in order."""
    blocks, current = [], []
    for line in doc.splitlines() + ["end"]:
        if line.startswith("    ") or (current and not line.strip()):
            current.append(line)
        elif current:
            blocks.append(textwrap.dedent("\n".join(current)).strip("\n"))
            current = []
    return blocks


def snippet(module_name: str) -> str:
    """The one Python block of the module's docstring (shell commands start with `python `)."""
    module = importlib.import_module(module_name)
    (code,) = [b for b in code_blocks(module.__doc__) if not b.startswith("python ")]
    return code


def run_snippet(module_name: str, **names) -> dict:
    """Executes the snippet in a copy of its module's namespace plus `names`; returns it."""
    namespace = {**vars(importlib.import_module(module_name)), **names}
    exec(compile(snippet(module_name), f"<{module_name} docstring>", "exec"), namespace)
    return namespace


# The inference snippets each build an engine of the same tiny model at the same size: JAX's
# persistent compilation cache (conftest.py) compiles it once, not once per snippet.
pytestmark = pytest.mark.usefixtures("compilation_cache")


def tiny_variables(seed: int = 0) -> tuple[dict, dict]:
    """(the tiny model's config, random variables of its shapes), without compiling its init."""
    from lcm_jax.configs import model as model_configs
    from lcm_jax.interop.convert import abstract_variables

    config = dict(model_configs.get_config("tiny"))
    rng = np.random.default_rng(seed)
    shapes = abstract_variables(config)
    return config, jax.tree.map(lambda s: rng.standard_normal(s.shape).astype(s.dtype), shapes)


def same_tree(a, b) -> None:
    assert jax.tree.structure(a) == jax.tree.structure(b)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


# --- files, checkpoints, hosts, configs ------------------------------------------------------


def test_files_snippet(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    stale = tmp_path / "out" / ".scores.0123abcd.tmp.csv"  # what a killed writer left
    stale.parent.mkdir()
    stale.write_text("half")
    variables = {"w": np.arange(6, dtype=np.float32).reshape(2, 3)}
    missing = tmp_path / "missing.txt"
    try:
        missing.read_text()
    except OSError as e:
        error = e
    run_snippet(
        "lcm_jax.files",
        csv_path="out/scores.csv",
        png_path="out/frame.png",
        checkpoint_dir="out/checkpoint",
        folder="out",
        image=Image.new("RGB", (5, 4), (200, 10, 10)),
        checkpointer=ocp.PyTreeCheckpointer(),
        variables=variables,
        error=error,
    )
    assert (tmp_path / "out" / "scores.csv").read_text() == "a,b\n"
    assert Image.open(tmp_path / "out" / "frame.png").size == (5, 4)
    same_tree(ocp.PyTreeCheckpointer().restore(tmp_path / "out" / "checkpoint"), variables)
    assert not stale.exists()
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "checkpoint", "frame.png", "scores.csv"
    ]  # fmt: skip
    assert files.describe(error).startswith(str(missing))


def test_checkpoints_snippet(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config, variables = tiny_variables()
    done = run_snippet("lcm_jax.checkpoints", variables=variables, model_config=config)
    assert (tmp_path / "lcm_vars").is_dir()
    same_tree(done["variables"], variables)
    assert done["model_config"] == config


def test_hosts_snippet():
    videos, failures = ["bear", "camel", "dog"], [("camel", "a bad frame")]
    done = run_snippet("lcm_jax.inference.hosts", videos=videos, failures=failures)
    assert done["mine"] == videos and done["everyone"] == [failures]  # one process


def test_model_config_snippet():
    from lcm_jax.model import LCM

    done = run_snippet("lcm_jax.configs.model")
    assert isinstance(done["net"], LCM) and done["cfg"].backbone == "resnet50"


# --- the PyTorch bridge ----------------------------------------------------------------------


def clip_inputs(size=(32, 48)):
    """A training clip (frames [1, 3, H, W, 3], masks [1, 3, 3, H, W], valid [1, 3]) with two
    objects and a padded slot."""
    frames, labels = synthetic_video(seed=5, num_frames=3, size=size)
    masks = np.stack([labels == k for k in (1, 2, 3)], axis=1).astype(np.float32)
    return frames[None].astype(np.float32) / 255, masks[None], np.array([[True, True, False]])


def test_interop_snippets():
    from lcm_jax.interop import LCMTorch

    done = run_snippet("lcm_jax.interop")
    assert done["LCMTorch"] is LCMTorch

    config, _ = tiny_variables()
    torch.manual_seed(0)
    torch_net = LCMTorch(**config)
    done = run_snippet("lcm_jax.interop.convert", cfg=config, torch_net=torch_net)
    assert done["state_dict"].keys() == torch_net.state_dict().keys()
    for name, value in torch_net.state_dict().items():  # there and back: the same weights
        assert torch.equal(torch.as_tensor(done["state_dict"][name]), value), name

    frames, masks, valid = (torch.as_tensor(x) for x in clip_inputs())
    done = run_snippet("lcm_jax.interop.torch_lcm", frames=frames, masks=masks, valid=valid)
    assert tuple(done["logits"].shape) == (1, 2, 4, 32, 48)
    assert torch.isfinite(done["logits"]).all()


# --- data: folders, splits, clips, overlays --------------------------------------------------


@pytest.fixture(scope="module")
def data_folder(tmp_path_factory) -> Path:
    """A folder holding data/DAVIS and data/YouTube (synthetic, 64x64, 4 videos per layout)."""
    base = tmp_path_factory.mktemp("snippets")
    synthetic.generate(base / "data", num_videos=4, num_frames=6, height=64, width=64, seed=1,
                       num_static=2, progress=False)  # fmt: skip
    return base


def test_splits_and_folder_source_and_numpy_clips_snippets(data_folder, monkeypatch):
    monkeypatch.chdir(data_folder)
    done = run_snippet("lcm_jax.inference.splits")
    names = video_io.davis_sequences("data/DAVIS", "val")
    assert [v.name for v in done["split"].videos] == names and done["split"].unlisted == ()

    root = data_folder / "data" / "DAVIS"
    done = run_snippet("lcm_jax.input_pipeline.folder_source", root=root)
    assert done["record"]["name"] in video_io.davis_sequences(root, "train")
    assert len(done["record"]["frames"]) == 6

    cfg = data_configs.get_config("synthetic,main,tiny")
    done = run_snippet("lcm_jax.input_pipeline.numpy_clips", source=done["source"], cfg=cfg)
    batch = done["batch"]
    assert batch["frames"].shape == (8, 3, 64, 64, 3) and batch["valid"].shape[0] == 8


def test_overlay_snippet(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    frames, labels = synthetic_video(seed=2, num_frames=4)
    video_io.spawn_ffmpeg_without_fork()
    done = run_snippet("lcm_jax.inference.overlay", frames=frames, predictions=labels)
    assert sorted(done["colours"]) == [1, 2]
    written = iio.imread(tmp_path / "out" / "overlay.mp4")
    assert written.shape == frames.shape


# --- the prepared TFDS sets and the tf.data feed ---------------------------------------------


def test_tfds_snippets(prepared):
    raw, data_dir = (str(p) for p in prepared)  # the tiny synthetic sets, prepared once
    for module, root in (("davis", "DAVIS_ROOT"), ("youtube_vos", "YOUTUBE_ROOT"),
                         ("static_images", "STATIC_ROOT")):  # fmt: skip
        folder = {"davis": "DAVIS", "youtube_vos": "YouTube", "static_images": "static"}[module]
        names = {"DATA_DIR": data_dir, root: os.path.join(raw, folder)}
        done = run_snippet(f"lcm_jax.input_pipeline.{module}", **names)
        assert done["builder"].info.splits["train"].num_examples > 0, module

    done = run_snippet("lcm_jax.input_pipeline.tfds_sets", data_dir=data_dir,
                       manual_dir=os.path.join(raw, "DAVIS"))  # fmt: skip
    source = done["source"]
    assert len(source) == len(video_io.davis_sequences(os.path.join(raw, "DAVIS"), "train"))
    cfg = data_configs.get_config("synthetic,main,tiny")
    done = run_snippet("lcm_jax.input_pipeline.tf_clips", source=source, cfg=cfg)
    batch = done["batch"]
    assert batch["frames"].shape == (8, 3, 64, 64, 3) and batch["valid"].shape[0] == 8


def test_train_iterator_snippets(prepared, tmp_path, monkeypatch):
    """configs/data.py's and input_pipeline/pipeline.py's: "davis,main" reads the DAVIS set
    prepared in ~/tensorflow_datasets (here the tiny synthetic one, at the paper's crops)."""
    raw, data_dir = prepared
    home = tmp_path / "home"
    (home / "data").mkdir(parents=True)
    (home / "data" / "vos").symlink_to(raw)
    (home / "tensorflow_datasets").symlink_to(data_dir)
    monkeypatch.setenv("HOME", str(home))
    for module in ("lcm_jax.configs.data", "lcm_jax.input_pipeline.pipeline"):
        done = run_snippet(module)
        batch = done["batch"] if "batch" in done else next(done["it"])
        assert batch["frames"].shape == (4, 3, 384, 640, 3), module
        assert batch["masks"].shape == (4, 3, 3, 384, 640) and batch["valid"].any(), module


# --- inference: the segmenter, your own video, a benchmark split, the predictor, the export --


@pytest.fixture(scope="module")
def inference_folder(data_folder) -> tuple[Path, np.ndarray, np.ndarray]:
    """The data folder with what the inference snippets name: a checkpoint `workdir` (random
    tiny weights), an 8-frame video as `my_video.mp4` and as the folder `frames/`, and the
    masks `first.png` and `frame3.png` of its frames 0 and 3. Returns (folder, frames,
    labels)."""
    config, variables = tiny_variables()
    files.remove_temporaries(data_folder)
    from lcm_jax import checkpoints

    checkpoints.save_variables(data_folder / "workdir", variables, config)
    frames, labels = synthetic_video(seed=6, num_frames=8)
    video_io.spawn_ffmpeg_without_fork()
    iio.imwrite(data_folder / "my_video.mp4", frames, fps=24)
    for t, frame in enumerate(frames):
        video_io.write_frame(data_folder / "frames" / f"{t:05d}.jpg", frame)
    video_io.write_label_png(data_folder / "first.png", labels[0])
    video_io.write_label_png(data_folder / "frame3.png", labels[3])
    assert all(set(np.unique(labels[t]).tolist()) == {0, 1, 2} for t in (0, 3, 5))
    return data_folder, frames, labels


def test_inference_snippets(inference_folder, monkeypatch):
    from lcm_jax.inference.engine import Video

    folder, frames, labels = inference_folder
    monkeypatch.chdir(folder)
    video = Video(frames[:5], {0: labels[0]}, num_frames=5)
    done = run_snippet("lcm_jax.inference.segmenter", video=video)
    assert done["segmenter"].options.flip and len(done["results"]) == 5
    assert done["segmenter"].identity()["checkpoint"]["path"] == str(folder / "workdir")

    done = run_snippet("lcm_jax.inference.own_video")
    assert not done["result"].failures
    for out in ("out/my_video", "out/v"):
        assert len(list((folder / out).glob("*.png"))) == 8, out
        assert (folder / out / "overlay.mp4").is_file(), out
    np.testing.assert_array_equal(video_io.read_label_png(folder / "out/v/00003.png"), labels[3])

    done = run_snippet("lcm_jax.inference.evaluation")
    assert not done["result"].failures
    assert 0 <= done["result"].scores.global_scores()["J&F-Mean"] <= 1
    assert (folder / "results" / "davis_val" / "global_results-val.csv").is_file()

    mask, corrected = labels[3] == 1, labels[5] == 1
    done = run_snippet("lcm_jax.inference.predictor", mask=mask, corrected=corrected)
    state = done["state"]
    np.testing.assert_array_equal(done["predictor"].masks(state, 3)[1], mask)
    np.testing.assert_array_equal(done["predictor"].masks(state, 5)[1], corrected)
    assert sorted(state.results) == list(range(8))
