"""video_io: the DAVIS palette, palette PNG I/O, folder readers and their errors."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from lcm_jax.input_pipeline import video_io
from lcm_jax.input_pipeline.video_io import DatasetError


def test_davis_palette_matches_the_published_voc_colours():
    expected = {
        0: (0, 0, 0),
        1: (128, 0, 0),
        2: (0, 128, 0),
        3: (128, 128, 0),
        4: (0, 0, 128),
        5: (128, 0, 128),
        6: (0, 128, 128),
        7: (128, 128, 128),
        8: (64, 0, 0),
        9: (192, 0, 0),
        255: (224, 224, 192),
    }
    assert video_io.DAVIS_PALETTE.shape == (256, 3)
    assert video_io.DAVIS_PALETTE.dtype == np.uint8
    for index, colour in expected.items():
        assert tuple(video_io.DAVIS_PALETTE[index]) == colour


def test_label_png_round_trip_is_an_indexed_png_written_atomically(tmp_path):
    labels = np.random.default_rng(0).integers(0, 6, (7, 9)).astype(np.uint8)
    labels[0, 0] = 255
    path = tmp_path / "a" / "b" / "00000.png"
    video_io.write_label_png(path, labels)
    with Image.open(path) as image:
        assert image.mode == "P"
        assert image.getpalette()[3:6] == [128, 0, 0]
    np.testing.assert_array_equal(video_io.read_label_png(path), labels)
    assert os.listdir(path.parent) == ["00000.png"]  # no temporary file left


def test_grey_label_png_is_accepted_and_rgb_is_rejected_naming_the_file(tmp_path):
    grey = np.array([[0, 1], [2, 3]], np.uint8)
    Image.fromarray(grey).save(tmp_path / "grey.png")
    np.testing.assert_array_equal(video_io.read_label_png(tmp_path / "grey.png"), grey)
    Image.fromarray(np.zeros((2, 2, 3), np.uint8)).save(tmp_path / "rgb.png")
    with pytest.raises(ValueError, match=r"rgb\.png.*palette"):
        video_io.read_label_png(tmp_path / "rgb.png")


def test_corrupt_or_missing_frames_raise_naming_the_file(tmp_path):
    frame = np.random.default_rng(1).integers(0, 255, (32, 32, 3)).astype(np.uint8)
    video_io.write_frame(tmp_path / "ok.jpg", frame)
    data = (tmp_path / "ok.jpg").read_bytes()
    (tmp_path / "bad.jpg").write_bytes(data[: len(data) // 2])
    assert video_io.read_frame(tmp_path / "ok.jpg").shape == (32, 32, 3)
    with pytest.raises(DatasetError, match=r"bad\.jpg"):
        video_io.read_frame(tmp_path / "bad.jpg")
    with pytest.raises(DatasetError, match=r"missing\.jpg"):
        video_io.read_frame(tmp_path / "missing.jpg")


def test_davis_folders_list_sequences_and_sorted_sparse_annotations(tmp_path):
    (tmp_path / "ImageSets/2017").mkdir(parents=True)
    (tmp_path / "ImageSets/2017/val.txt").write_text("bear\n\ncows\n")
    for t in (2, 0, 1):
        video_io.write_frame(
            tmp_path / f"JPEGImages/480p/bear/{t:05d}.jpg", np.zeros((8, 8, 3), np.uint8)
        )
    video_io.write_label_png(
        tmp_path / "Annotations/480p/bear/00000.png", np.zeros((8, 8), np.uint8)
    )
    assert video_io.davis_sequences(tmp_path, "val") == ["bear", "cows"]
    frames, annotations = video_io.davis_video(tmp_path, "bear")
    assert [p.name for p in frames] == ["00000.jpg", "00001.jpg", "00002.jpg"]
    assert [p.name for p in annotations] == ["00000.png"]
    with pytest.raises(DatasetError, match=r"train\.txt"):
        video_io.davis_sequences(tmp_path, "train")
    with pytest.raises(DatasetError, match="cows"):
        video_io.davis_video(tmp_path, "cows")


def test_youtube_meta_is_parsed_and_malformed_meta_is_named(tmp_path):
    meta = {
        "videos": {"abc": {"objects": {"1": {"category": "cat", "frames": ["00000", "00005"]}}}}
    }
    (tmp_path / "valid").mkdir()
    (tmp_path / "valid/meta.json").write_text(json.dumps(meta))
    assert video_io.youtube_meta(tmp_path, "valid") == meta
    (tmp_path / "valid/meta.json").write_text(json.dumps({"videos": {"abc": {"objects": 3}}}))
    with pytest.raises(DatasetError, match=r"meta\.json.*abc"):
        video_io.youtube_meta(tmp_path, "valid")
    (tmp_path / "valid/meta.json").write_text("{not json")
    with pytest.raises(DatasetError, match="not JSON"):
        video_io.youtube_meta(tmp_path, "valid")


def test_video_io_imports_without_tensorflow():
    code = "import sys, lcm_jax.input_pipeline.video_io; assert 'tensorflow' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=os.getcwd())


def test_the_input_pipeline_without_tensorflow_says_how_to_install_it():
    code = (
        "import sys; sys.modules['tensorflow'] = None\n"  # as if TensorFlow were not installed
        "from lcm_jax.input_pipeline import tf_clips"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 1
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("ModuleNotFoundError: the tf.data input pipeline needs TensorFlow")
    assert "pip install -e '.[cpu]'" in last and "feed='numpy'" in last
