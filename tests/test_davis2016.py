"""DAVIS 2016 (the paper's Table 3): one object a sequence, its folders as the 2016 download
lays them out, scored as STCN, XMem and Cutie score it (the DAVIS 2017 protocol on that
object)."""

import shutil

import numpy as np
import pytest
from PIL import Image
from test_inference_support import davis2016_folder, save_tiny_checkpoint, write_split

from lcm_jax import evaluate
from lcm_jax.inference import inputs, splits
from lcm_jax.input_pipeline import video_io
from lcm_jax.metrics import report

NAMES = ["blackswan", "cows"]


def write_greyscale(path, mask):
    video_io.write_label_png(path, np.where(mask, 255, 0).astype(np.uint8), palette=None)


def test_nonzero_pixels_of_annotations_and_results_are_the_one_object(tmp_path):
    # Hand-computed as test_metrics' 2017 case: a 10x10 box over 4 frames (the first and the last
    # not scored). Sequence a: the result is shifted by one column on frames 1 and 2, J = 90/110,
    # F = 1 (the boundaries stay within the tolerance). Sequence b: exact, but written with the
    # palette's label 2 (a tool that numbers its objects otherwise): J = F = 1. The annotations
    # are the 2016 download's greyscale PNGs, 255 the object (the 2017 protocol alone reads 255
    # as void: no object at all).
    box = np.zeros((4, 20, 20), bool)
    box[:, 2:12, 2:12] = True
    shifted = box.copy()
    shifted[1:3] = np.roll(box[1:3], 1, axis=2)
    root, results = tmp_path / "DAVIS2016", tmp_path / "res"
    for seq in "ab":
        for t in range(4):
            write_greyscale(root / "Annotations" / "480p" / seq / f"{t:05d}.png", box[t])
    for t in range(4):
        write_greyscale(results / "a" / f"{t:05d}.png", shifted[t])
        video_io.write_label_png(results / "b" / f"{t:05d}.png", box[t].astype(np.uint8) * 2)
    scores = report.evaluate_davis(root, results, ["a", "b"], single_object=True)
    assert [o.name for o in scores.objects] == ["a_1", "b_1"]
    np.testing.assert_allclose([o.j[0] for o in scores.objects], [9 / 11, 1.0])
    np.testing.assert_allclose([o.f[0] for o in scores.objects], [1.0, 1.0])


def test_a_davis2016_folder_evaluates_as_the_same_videos_in_the_2017_layout(tmp_path):
    # The same videos as a DAVIS 2017 folder (the object as label 1) run through the 2017
    # protocol, which the official toolkit's numbers confirm (tests/test_metrics.py), must give
    # the same masks (255 for 1) and the same CSVs.
    d16 = davis2016_folder(tmp_path / "DAVIS2016", NAMES)
    d17 = tmp_path / "DAVIS"
    shutil.copytree(d16 / "JPEGImages", d17 / "JPEGImages")
    for png in (d16 / "Annotations").rglob("*.png"):
        labels = (video_io.read_label_png(png) == 255).astype(np.uint8)
        video_io.write_label_png(d17 / png.relative_to(d16), labels)
    write_split(d17, NAMES)
    checkpoint = save_tiny_checkpoint(tmp_path / "tiny")

    def run(dataset, root, out):
        args = ["--dataset", dataset, "--root", str(root), "--out", str(out)]
        assert evaluate.main([*args, "--checkpoint", str(checkpoint), "--score_workers", "1"]) == 0

    run("davis2016", d16, tmp_path / "out16")
    run("davis", d17, tmp_path / "out17")
    predicted = 0
    for seq in NAMES:
        for t in range(5):
            with Image.open(tmp_path / "out16" / seq / f"{t:05d}.png") as image:
                assert image.mode == "L"
                mask = np.asarray(image)
            labels = video_io.read_label_png(tmp_path / "out17" / seq / f"{t:05d}.png")
            np.testing.assert_array_equal(mask, np.where(labels == 1, 255, 0))
            predicted += int(t > 0 and mask.any())
    assert predicted > 0  # frames after the given one hold the object somewhere
    for csv in ("global_results-val.csv", "per-sequence_results-val.csv"):
        assert (tmp_path / "out16" / csv).read_text() == (tmp_path / "out17" / csv).read_text()


def test_the_2016_list_of_a_2017_trainval_folder_wins_and_its_objects_merge(tmp_path):
    # The DAVIS 2017 trainval download lists the 2016 sequences in ImageSets/2016/val.txt (STCN
    # and XMem read it); its masks number several objects, which DAVIS 2016 takes as one.
    labels = np.zeros((2, 32, 32), np.uint8)
    labels[:, 2:10, 2:10] = 1
    labels[:, 20:30, 12:30] = 2
    root = tmp_path / "trainval"
    for t in range(2):
        frame = np.full((32, 32, 3), 40 * t, np.uint8)
        video_io.write_frame(root / "JPEGImages" / "480p" / "dog" / f"{t:05d}.jpg", frame)
        video_io.write_label_png(root / "Annotations" / "480p" / "dog" / f"{t:05d}.png", labels[t])
    (root / "ImageSets" / "2016").mkdir(parents=True)
    (root / "ImageSets" / "2016" / "val.txt").write_text("dog\n")
    (root / "ImageSets" / "480p").mkdir(parents=True)
    (root / "ImageSets" / "480p" / "val.txt").write_text(
        "/JPEGImages/480p/cat/00000.jpg /Annotations/480p/cat/00000.png\n"
    )
    split = splits.list_davis(root, "val", year="2016")
    assert [v.name for v in split.videos] == ["dog"] and not split.unlisted
    assert split.data["dataset"] == "davis2016"
    video, names = inputs.davis_video(split.videos[0], single_object=True)
    assert names == ["00000", "00001"]
    np.testing.assert_array_equal(video.annotations[0], labels[0] > 0)


@pytest.mark.parametrize(
    "setup, args, message",
    [
        (
            None,
            [],
            "DAVIS 2016 split file: neither '{root}/ImageSets/2016/val.txt' nor "
            "'{root}/ImageSets/480p/val.txt' exists",
        ),
        (
            "blackswan\n",  # a list of names, where the 2016 download lists frames
            [],
            "DAVIS 2016 split file '{root}/ImageSets/480p/val.txt': line 'blackswan' does not "
            "start with /JPEGImages/<resolution>/<sequence>/<frame>.jpg",
        ),
        (
            None,
            ["--resolution", "Full-Resolution"],
            "DAVIS 2016 resolution must be one of ('480p', '1080p'), got 'Full-Resolution'",
        ),
    ],
    ids=["no split file", "not a frame line", "2017 resolution"],
)
def test_bad_davis2016_input_is_one_line_with_status_2(tmp_path, capsys, setup, args, message):
    root = tmp_path / "DAVIS2016"
    (root / "ImageSets" / "480p").mkdir(parents=True)
    if setup is not None:
        (root / "ImageSets" / "480p" / "val.txt").write_text(setup)
    out = tmp_path / "out"
    argv = ["--dataset", "davis2016", "--root", str(root), "--out", str(out)]
    assert evaluate.main([*argv, "--checkpoint", str(tmp_path / "none"), *args]) == 2
    assert capsys.readouterr().err == f"error: {message.format(root=root)}\n"
    assert not out.exists()
