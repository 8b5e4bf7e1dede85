"""The evaluate CLI: resume, manifests that keep results true to their run, YouTube-VOS files,
bad videos, input errors, and two processes sharing the videos."""

import csv
import json
import os
import socket
import subprocess
import sys
import zipfile
from pathlib import Path

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest
from test_inference_support import (
    davis_folder,
    save_tiny_checkpoint,
    synthetic_video,
    tiny_model,
    tree,
    write_davis_sequence,
    write_split,
)

from lcm_jax import evaluate
from lcm_jax.inference import engine as engine_lib
from lcm_jax.inference import outputs, splits
from lcm_jax.input_pipeline import video_io
from lcm_jax.metrics import report

ROOT = Path(__file__).resolve().parents[1]
# Programs compiled again by later tests come from JAX's persistent cache (conftest.py).
pytestmark = pytest.mark.usefixtures("compilation_cache")


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return save_tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny")


@pytest.fixture(scope="module")
def davis(tmp_path_factory):
    return davis_folder(tmp_path_factory.mktemp("data") / "DAVIS", ["a", "b", "c"])


def davis_args(root, out, checkpoint, *more):
    return ["--dataset", "davis", "--root", str(root), "--split", "val", "--out", str(out),
            "--checkpoint", str(checkpoint), *map(str, more)]  # fmt: skip


def global_jf(out) -> float:
    with open(out / "global_results-val.csv") as f:
        return float(next(csv.DictReader(f))["J&F-Mean"])


def test_an_interrupted_evaluate_run_resumed_gives_the_same_files(
    tmp_path, davis, checkpoint, monkeypatch
):
    assert evaluate.main(davis_args(davis, tmp_path / "full", checkpoint)) == 0

    written = []
    original_write = outputs.write_labels

    def write_then_interrupt(path, labels):
        if len(written) == 7:  # sequence "b" is half written
            raise KeyboardInterrupt
        written.append(path)
        original_write(path, labels)

    monkeypatch.setattr(outputs, "write_labels", write_then_interrupt)
    assert evaluate.main(davis_args(davis, tmp_path / "resumed", checkpoint)) == 130  # Ctrl-C
    monkeypatch.setattr(outputs, "write_labels", original_write)
    runs = []
    original_run = engine_lib.Engine.run
    monkeypatch.setattr(
        engine_lib.Engine, "run", lambda self, v: runs.append(v.name) or original_run(self, v)
    )
    assert evaluate.main(davis_args(davis, tmp_path / "resumed", checkpoint)) == 0
    assert runs == ["b", "c"]  # "a" was complete
    full, resumed = tree(tmp_path / "full"), tree(tmp_path / "resumed")
    assert sorted(full) == sorted(resumed)
    assert {"global_results-val.csv", "per-sequence_results-val.csv", "a/00004.png"} <= set(full)
    assert all(full[k] == resumed[k] for k in full)


def test_results_of_another_checkpoint_or_option_are_never_reused_or_reported(
    tmp_path, davis, checkpoint, capsys
):
    other = save_tiny_checkpoint(tmp_path / "other", seed=1)
    out = tmp_path / "out"
    assert evaluate.main(davis_args(davis, out, checkpoint)) == 0
    first = tree(out)
    assert evaluate.main(davis_args(davis, tmp_path / "fresh", other)) == 0
    jf_other = global_jf(tmp_path / "fresh")
    masks = lambda files: {k: v for k, v in files.items() if k.endswith(".png")}  # noqa: E731
    assert masks(first) != masks(tree(tmp_path / "fresh"))  # the checkpoints segment differently
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["checkpoint"]["path"] == str(checkpoint)
    assert manifest["checkpoint"]["step"] is None  # a save_variables directory has no step
    assert manifest["model_config"] == json.loads((checkpoint / "model_config.json").read_text())
    assert manifest["inference"] == {
        "mem_every": 5,
        "max_memory_frames": None,
        "flip": False,
        "shorter_side": None,
        "dtype": None,
        "soft_output": False,
    }
    assert manifest["data"] == {
        "dataset": "davis",
        "root": str(davis),
        "split": "val",
        "resolution": "480p",
    }
    capsys.readouterr()

    # Another checkpoint, or another option, into the same folder: stop, name what differs.
    assert evaluate.main(davis_args(davis, out, other)) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"error: {out} holds results of another run")
    assert f"checkpoint: other weights ({checkpoint} step None -> {other} step None)" in err
    assert "--overwrite" in err
    assert evaluate.main(davis_args(davis, out, checkpoint, "--flip")) == 2
    assert "inference.flip: false -> true" in capsys.readouterr().err
    assert tree(out) == first  # nothing was touched

    # --overwrite starts afresh: the printed J&F is the other checkpoint's, as in a new folder.
    assert evaluate.main(davis_args(davis, out, other, "--overwrite")) == 0
    assert f"J&F-Mean  {jf_other:.3f}" in capsys.readouterr().out
    assert tree(out) == tree(tmp_path / "fresh")


def test_youtube_run_writes_exactly_the_frames_meta_lists_and_zips_annotations(
    tmp_path, checkpoint
):
    root = tmp_path / "YouTube"
    frames, labels = synthetic_video(seed=30, num_frames=8)
    names = [f"{5 * t:05d}" for t in range(8)]
    for t, name in enumerate(names):
        video_io.write_frame(root / "valid" / "JPEGImages" / "v1" / f"{name}.jpg", frames[t])
    # Object 1 given on 00000, object 2 joins on 00010 (each PNG holds the objects starting there).
    video_io.write_label_png(
        root / "valid" / "Annotations" / "v1" / "00000.png",
        np.where(labels[0] == 1, 1, 0).astype(np.uint8),
    )
    late = np.where(labels[2] == 2, 2, 0).astype(np.uint8)
    video_io.write_label_png(root / "valid" / "Annotations" / "v1" / "00010.png", late)
    meta = {
        "videos": {
            "v1": {
                "objects": {
                    "1": {"category": "x", "frames": ["00000", "00010", "00020"]},
                    "2": {"category": "x", "frames": ["00010", "00030"]},
                }
            }
        }
    }
    (root / "valid" / "meta.json").write_text(json.dumps(meta))
    out = tmp_path / "out"
    args = ["--dataset", "youtube", "--root", str(root), "--out", str(out)]  # split: valid
    assert evaluate.main(args + ["--checkpoint", str(checkpoint)]) == 0
    listed = ["00000", "00010", "00020", "00030"]
    assert sorted(p.stem for p in (out / "Annotations" / "v1").iterdir()) == listed
    with zipfile.ZipFile(out / "submission.zip") as z:
        assert sorted(z.namelist()) == [f"Annotations/v1/{n}.png" for n in listed]
    frame2 = video_io.read_label_png(out / "Annotations" / "v1" / "00010.png")
    assert (frame2[late == 2] == 2).all()
    first = video_io.read_label_png(out / "Annotations" / "v1" / "00000.png")
    assert set(np.unique(first)) <= {0, 1}


def test_youtube_all_frames_runs_through_every_frame_and_writes_the_listed_ones(
    tmp_path, checkpoint, capsys
):
    frames, labels = synthetic_video(seed=31, num_frames=11)
    every = [f"{t:05d}" for t in range(11)]
    listed = every[::5]  # 00000 00005 00010: what valid/JPEGImages and meta.json hold

    def youtube(root, frames_dir):
        for t, name in enumerate(every):
            video_io.write_frame(frames_dir / "v1" / f"{name}.jpg", frames[t])
            if name in listed and frames_dir != root / "valid" / "JPEGImages":
                video_io.write_frame(
                    root / "valid" / "JPEGImages" / "v1" / f"{name}.jpg", frames[t]
                )
        video_io.write_label_png(root / "valid" / "Annotations" / "v1" / "00000.png", labels[0])
        objects = {str(k): {"category": "x", "frames": listed} for k in (1, 2)}
        (root / "valid" / "meta.json").write_text(
            json.dumps({"videos": {"v1": {"objects": objects}}})
        )
        return ["--dataset", "youtube", "--root", str(root), "--checkpoint", str(checkpoint)]

    def written(out):
        folder = out / "Annotations" / "v1"
        assert sorted(p.stem for p in folder.iterdir()) == listed
        return {n: video_io.read_label_png(folder / f"{n}.png") for n in listed}

    # STCN's layout, and the download unzipped: both give the results of a valid folder that
    # held every frame
    stcn = tmp_path / "stcn"
    args = youtube(stcn, stcn / "all_frames" / "valid_all_frames" / "JPEGImages")
    assert evaluate.main(args + ["--all_frames", "--out", str(tmp_path / "all")]) == 0
    unzipped = tmp_path / "unzipped"
    more = youtube(unzipped, unzipped / "valid_all_frames" / "JPEGImages")
    assert evaluate.main(more + ["--all_frames", "--out", str(tmp_path / "unzipped_all")]) == 0
    dense = tmp_path / "dense"
    dense_args = youtube(dense, dense / "valid" / "JPEGImages")
    assert evaluate.main(dense_args + ["--out", str(tmp_path / "dense_out")]) == 0
    expected = written(tmp_path / "dense_out")
    for out in ("all", "unzipped_all"):
        for name, labels_written in written(tmp_path / out).items():
            np.testing.assert_array_equal(labels_written, expected[name], err_msg=name)
    # without --all_frames the same video runs through 3 frames, and gives other masks
    assert evaluate.main(args + ["--out", str(tmp_path / "every5")]) == 0
    sparse = written(tmp_path / "every5")
    assert any((sparse[n] != expected[n]).any() for n in listed[1:])

    # the manifest names the frames: results of every 5th frame are not taken for all frames
    capsys.readouterr()
    assert evaluate.main(args + ["--out", str(tmp_path / "all")]) == 2
    frames_dir = stcn / "all_frames" / "valid_all_frames" / "JPEGImages"
    assert f'data.frames: "{frames_dir}" -> (none)' in capsys.readouterr().err
    # no folder of all frames, or DAVIS: one line, exit 2, nothing written
    assert evaluate.main(dense_args + ["--all_frames", "--out", str(tmp_path / "none")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: YouTube-VOS has no folder of all frames of 'valid': neither ")
    assert f"{dense}/all_frames/valid_all_frames/JPEGImages" in err and err.count("\n") == 1
    davis = ["--dataset", "davis", "--root", str(dense), "--all_frames"]
    assert (
        evaluate.main(davis + ["--checkpoint", str(checkpoint), "--out", str(tmp_path / "d")]) == 2
    )
    assert "--all_frames is for YouTube-VOS" in capsys.readouterr().err
    assert not (tmp_path / "none").exists() and not (tmp_path / "d").exists()


@pytest.mark.parametrize("batch", [1, 8])
def test_bad_videos_fail_with_the_file_named_and_the_others_go_on(
    tmp_path, checkpoint, capsys, batch
):
    root = tmp_path / "DAVIS"
    frames, labels = synthetic_video(seed=40, num_frames=4)
    write_davis_sequence(root, "good", frames, labels)
    write_davis_sequence(root, "nomask", frames, labels, annotate="none")
    write_davis_sequence(root, "badsize", frames, labels, annotate="first")
    video_io.write_label_png(
        root / "Annotations" / "480p" / "badsize" / "00000.png", labels[0][:32]
    )
    write_davis_sequence(root, "rgbmask", frames, labels, annotate="first")
    rgb = root / "Annotations" / "480p" / "rgbmask" / "00000.png"
    video_io.write_frame(rgb, frames[0])
    write_davis_sequence(root, "sizes", frames, labels, annotate="first")
    video_io.write_frame(root / "JPEGImages" / "480p" / "sizes" / "00002.jpg", frames[2][:, :48])
    write_davis_sequence(root, "corrupt", frames, labels, annotate="first")
    (root / "JPEGImages" / "480p" / "corrupt" / "00001.jpg").write_bytes(b"not a jpeg")
    # An empty first-frame mask is no failure: a warning names it, the video is written.
    write_davis_sequence(root, "empty", frames, np.zeros_like(labels), annotate="first")
    bad = ["nomask", "badsize", "rgbmask", "sizes", "corrupt", "missing"]
    write_split(root, ["good", "empty"] + bad)

    out = tmp_path / "out"
    assert evaluate.main(davis_args(root, out, checkpoint, "--batch_videos", batch)) == 1
    printed, err = capsys.readouterr()
    if batch > 1:  # good, sizes and corrupt fail together, then one at a time
        corrupt = root / "JPEGImages" / "480p" / "corrupt" / "00001.jpg"
        failed = f"batch good, sizes, corrupt failed (DatasetError: cannot read frame '{corrupt}'"
        assert failed in printed and "); one at a time now" in printed
    empty_mask = root / "Annotations" / "480p" / "empty" / "00000.png"
    assert f"warning: mask '{empty_mask}' holds no object" in err
    assert "6 video(s) failed" in err
    expected_files = {
        "nomask": "nomask/00000.png",
        "badsize": "badsize/00000.png",
        "rgbmask": "rgbmask/00000.png",
        "sizes": "sizes/00002.jpg",
        "corrupt": "corrupt/00001.jpg",
        "missing": "JPEGImages/480p/missing",
    }
    failed = dict(line.strip().split(": ", 1) for line in err.splitlines()[-6:])
    assert set(failed) == set(expected_files)
    for seq, file in expected_files.items():
        assert file in failed[seq]
    assert len(list((out / "good").glob("*.png"))) == 4
    assert all(not video_io.read_label_png(p).any() for p in (out / "empty").glob("*.png"))
    assert len(list((out / "empty").glob("*.png"))) == 4
    assert (out / "global_results-val.csv").is_file()


# (name, frame size, frames, objects): two frame sizes, different lengths, one object count apart
MIXED = [("a", (64, 64), 6, 2), ("b", (48, 64), 5, 2), ("c", (64, 64), 4, 2),
         ("d", (64, 64), 5, 1), ("e", (48, 64), 3, 2), ("f", (64, 64), 7, 2)]  # fmt: skip


@pytest.fixture(scope="module")
def mixed(tmp_path_factory, checkpoint):
    """(DAVIS folder of the MIXED videos, its results segmented one video at a time, --soft)."""
    folder = tmp_path_factory.mktemp("mixed")
    root = folder / "DAVIS"
    for i, (seq, size, n, objects) in enumerate(MIXED):
        clip = synthetic_video(seed=80 + i, num_frames=n, size=size, objects=objects)
        write_davis_sequence(root, seq, *clip)
    write_split(root, [seq for seq, *_ in MIXED])
    assert evaluate.main(davis_args(root, folder / "one", checkpoint, "--soft")) == 0
    return root, folder / "one"


def record_batches(monkeypatch) -> list[list[str]]:
    """The names of each batch of videos `Engine.run_videos` segments together from now on."""
    batches = []
    original = engine_lib.Engine.run_videos

    def recorded(self, videos):
        batches.append([v.name for v in videos])
        return original(self, videos)

    monkeypatch.setattr(engine_lib.Engine, "run_videos", recorded)
    return batches


def read_csv(path) -> list[list[str]]:
    with open(path) as f:
        return list(csv.reader(f))


def differing_labels(one: Path, other: Path) -> int:
    """Checks that two --soft runs wrote the same files but where float rounding decides, and
    returns the number of pixels labelled differently: each a tie (the two labels'
    probabilities at most 1/255 apart), probabilities at most 1/255 apart, confidences and
    scores in their last printed digit; the manifest identical."""
    a, b = tree(one), tree(other)
    assert sorted(a) == sorted(b)
    assert a["manifest.json"] == b["manifest.json"]
    differing = 0
    for name in a:
        if name.endswith(".png"):
            soft = np.load(one / name.replace(".png", ".npz"))
            channel = np.zeros(256, int)  # object id -> channel of probs
            channel[soft["object_ids"]] = np.arange(1, len(soft["object_ids"]) + 1)
            la, lb = video_io.read_label_png(one / name), video_io.read_label_png(other / name)
            ys, xs = np.nonzero(la != lb)
            probs = soft["probs"].astype(int)
            gap = probs[channel[la[ys, xs]], ys, xs] - probs[channel[lb[ys, xs]], ys, xs]
            assert (np.abs(gap) <= 1).all(), (name, gap)
            differing += len(ys)
        elif name.endswith(".npz"):
            sa, sb = np.load(one / name), np.load(other / name)
            np.testing.assert_array_equal(sa["object_ids"], sb["object_ids"])
            assert np.abs(sa["probs"].astype(int) - sb["probs"].astype(int)).max() <= 1
        elif name.endswith(".csv"):
            ra, rb = read_csv(one / name), read_csv(other / name)
            keys = 2 if name.startswith("confidence/") else 1  # frame, object / sequence
            assert [r[:keys] for r in ra] == [r[:keys] for r in rb]
            digit = 1.01e-4 if keys == 2 else 1.01e-3  # the last printed digit
            for x, y in zip(sum(ra[1:], []), sum(rb[1:], []), strict=True):
                assert x == y or abs(float(x) - float(y)) <= digit, (name, x, y)
    return differing


def test_batched_evaluate_writes_the_files_of_one_video_at_a_time(
    tmp_path, mixed, checkpoint, monkeypatch
):
    root, single = mixed
    batched = tmp_path / "three"
    batches = record_batches(monkeypatch)
    assert evaluate.main(davis_args(root, batched, checkpoint, "--soft", "--batch_videos", 3)) == 0
    # One frame size, object count and memory size together, 3 at most; d (1 object) alone.
    assert batches == [["a", "c", "f"], ["b", "e"], ["d"]]
    pixels = sum(n * h * w for _, (h, w), n, _ in MIXED)
    assert len(list(single.glob("*/*.png"))) == sum(n for _, _, n, _ in MIXED)
    assert differing_labels(single, batched) <= pixels // 10_000  # 1 of 114,688 here
    alone = lambda run: {k: v for k, v in tree(run).items() if k.startswith(("d/", "confidence/d"))}  # noqa: E731
    assert len(alone(single)) == 11 and alone(single) == alone(batched)  # d ran alone: identical

    # More than there are videos: fewer, all of one geometry at once. A run resumed with another
    # batch size (no part of the manifest) keeps the finished videos.
    batches.clear()
    (batched / "confidence" / "a.csv").unlink()
    (batched / "confidence" / "e.csv").unlink()
    assert evaluate.main(davis_args(root, batched, checkpoint, "--soft", "--batch_videos", 50)) == 0
    assert batches == [["a"], ["e"]]
    assert differing_labels(single, batched) <= pixels // 10_000


def test_a_batch_out_of_memory_is_redone_in_halves_and_later_batches_stay_smaller(
    tmp_path, mixed, checkpoint, monkeypatch, capsys
):
    root, single = mixed
    batches = []
    original = engine_lib.Engine.run_videos

    def two_fit(self, videos):  # a device that holds 2 videos: more fail after the first frame
        batches.append([v.name for v in videos])
        results = original(self, videos)
        if len(videos) > 2:
            yield next(results)
            raise jax.errors.JaxRuntimeError(
                "RESOURCE_EXHAUSTED: Out of memory while trying to allocate 1073741824 bytes."
            )
        yield from results

    monkeypatch.setattr(engine_lib.Engine, "run_videos", two_fit)
    out = tmp_path / "four"
    assert evaluate.main(davis_args(root, out, checkpoint, "--soft", "--batch_videos", 4)) == 0
    assert batches == [["a", "c", "f"], ["a", "c"], ["f"], ["b", "e"], ["d"]]
    assert (
        "out of memory segmenting 3 videos at once (JaxRuntimeError: RESOURCE_EXHAUSTED: Out of "
        "memory while trying to allocate 1073741824 bytes.); 2 at a time from now on"
    ) in capsys.readouterr().out
    assert differing_labels(single, out) <= sum(n * h * w for _, (h, w), n, _ in MIXED) // 10_000


def legacy_checkpoint(path):
    """What save_variables wrote before checkpoints stored their model config."""
    checkpointer = ocp.StandardCheckpointer()
    checkpointer.save(path, tiny_model(0)[1])
    checkpointer.wait_until_finished()
    return path


@pytest.mark.parametrize(
    "case",
    ["no checkpoint", "not a checkpoint", "no data", "no split", "no meta.json",
     "model mismatch", "old checkpoint", "foreign out", "half multi-process", "batch 0",
     "batch -2", "score workers 0", "sequence twice", "unknown sequence", "unknown video"],
)  # fmt: skip
def test_input_errors_are_one_line_with_status_2_and_nothing_written(
    tmp_path, davis, checkpoint, capsys, case
):
    out, more, ckpt, root = tmp_path / "out", [], checkpoint, davis
    if case == "no checkpoint":
        ckpt, expected = tmp_path / "nothing", f"no checkpoint at {tmp_path / 'nothing'}"
    elif case == "not a checkpoint":
        ckpt = davis
        expected = f"{davis} holds neither variables written by save_variables nor a training"
    elif case == "no meta.json":
        more = ["--dataset", "youtube", "--split", "valid"]
        expected = f"YouTube-VOS meta file '{davis / 'valid' / 'meta.json'}' does not exist"
    elif case == "no data":
        root, expected = tmp_path / "nope", f"DAVIS folder '{tmp_path / 'nope'}' does not exist"
    elif case == "no split":
        more = ["--split", "train"]
        expected = f"split file '{davis / 'ImageSets' / '2017' / 'train.txt'}' does not exist"
    elif case == "model mismatch":
        more = ["--model", "paper"]
        expected = ("backbone: 'resnet50' in --model paper, 'resnet18' in the checkpoint; "
                    "width: 1.0 in --model paper, 0.125 in the checkpoint")  # fmt: skip
    elif case == "old checkpoint":
        ckpt = legacy_checkpoint(tmp_path / "old")
        expected = "stores no model config (written before checkpoints did)"
    elif case == "foreign out":
        out.mkdir()
        (out / "notes.txt").write_text("mine")
        expected = f"{out} holds files but no manifest.json"
    elif case.startswith("batch"):
        size = case.split()[1]
        more, expected = ["--batch_videos", size], f"batch_videos must be >= 1, got {size}"
    elif case == "score workers 0":
        more, expected = ["--score_workers", "0"], "score_workers must be >= 1, got 0"
    elif case == "sequence twice":  # it would be segmented and scored twice
        more = ["--sequences", "a", "b", "a", "b", "c"]
        expected = "the videos to segment name 'a', 'b' more than once"
    elif case == "unknown sequence":  # a typo: not in val.txt, no folder
        more = ["--sequences", "a", "nosuch", "bb"]
        expected = (f"DAVIS folder '{davis}' has no sequence 'nosuch', 'bb': not in ImageSets/"
                    "2017/val.txt, no folder in JPEGImages/480p or Annotations/480p")  # fmt: skip
    elif case == "unknown video":
        root = tmp_path / "YouTube"
        (root / "valid").mkdir(parents=True)
        (root / "valid" / "meta.json").write_text('{"videos": {"v1": {"objects": {}}}}')
        more = ["--dataset", "youtube", "--split", "valid", "--sequences", "v1", "v2"]
        expected = f"YouTube-VOS meta file '{root / 'valid' / 'meta.json'}' lists no video 'v2'"
    else:
        more, expected = ["--num_processes", "2"], "missing --coordinator_address or JAX_"
    assert evaluate.main(davis_args(root, out, ckpt, *more)) == 2  # the last flag counts
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ") and expected in err
    written = sorted(os.listdir(out)) if out.exists() else []
    assert written == (["notes.txt"] if case == "foreign out" else [])


def test_named_videos_that_are_there_but_broken_stay_failures_and_typos_stop(tmp_path):
    root = davis_folder(tmp_path / "DAVIS", ["a"], num_frames=3)
    write_davis_sequence(root, "extra", *synthetic_video(seed=25, num_frames=3))  # not in val
    write_split(root, ["a", "gone"])  # "gone" has no folder
    (root / "Annotations" / "480p" / "masks_only").mkdir()
    split = splits.list_davis(root, "val", names=["gone", "a", "masks_only", "extra"])
    assert [v.name for v in split.videos] == ["a", "extra"]
    assert split.unlisted == (
        ("gone", f"DAVIS frame folder '{root / 'JPEGImages' / '480p' / 'gone'}' does not exist"),
        ("masks_only", f"DAVIS frame folder '{root}/JPEGImages/480p/masks_only' does not exist"),
    )
    with pytest.raises(video_io.DatasetError, match="has no sequence 'nosuch': not in"):
        splits.list_davis(root, "val", names=["a", "nosuch"])
    (root / "ImageSets" / "2017" / "val.txt").unlink()  # no split file: the folders decide
    assert [v.name for v in splits.list_davis(root, "val", names=["extra"]).videos] == ["extra"]

    youtube = tmp_path / "YouTube"
    (youtube / "valid").mkdir(parents=True)
    (youtube / "valid" / "meta.json").write_text('{"videos": {"v1": {"objects": {}}}}')
    split = splits.list_youtube(youtube, "valid", names=["v1"])
    frames = youtube / "valid" / "JPEGImages" / "v1"
    assert split.videos == ()
    assert split.unlisted == (("v1", f"YouTube-VOS frame folder '{frames}' does not exist"),)
    with pytest.raises(video_io.DatasetError, match="lists no video 'v2'"):
        splits.list_youtube(youtube, "valid", names=["v1", "v2"])


def test_score_workers_change_how_the_scores_are_computed_not_what_they_are(
    tmp_path, davis, checkpoint, monkeypatch
):
    asked = []
    original = report.score_sequences
    monkeypatch.setattr(report, "score_sequences", lambda *a: asked.append(a[2]) or original(*a))
    out = tmp_path / "out"
    scores = []
    for workers in (1, 2):  # the second run finds the videos complete and scores them again
        assert evaluate.main(davis_args(davis, out, checkpoint, "--score_workers", workers)) == 0
        names = ("global_results-val.csv", "per-sequence_results-val.csv")
        scores.append([read_csv(out / name) for name in names])
    assert asked == [1, 2]
    assert scores[0] == scores[1] and len(scores[0][1]) > 3  # the header and 2 objects x 3


def test_an_old_checkpoint_runs_with_model_and_its_switches_read_off_the_weights(
    tmp_path, davis, capsys
):
    old = legacy_checkpoint(tmp_path / "old")
    assert evaluate.main(davis_args(davis, tmp_path / "out", old, "--model", "tiny")) == 0
    assert evaluate.main(davis_args(davis, tmp_path / "new", old, "--model", "paper")) == 2
    assert "the weights fit --model tiny" in capsys.readouterr().err


def test_python_m_evaluate_prints_one_line_and_no_traceback(tmp_path, davis, checkpoint):
    def run(*args):
        return subprocess.run(
            [sys.executable, "-m", "lcm_jax.evaluate", *args],
            cwd=ROOT, capture_output=True, text=True, timeout=120,
            env={**os.environ, "XLA_FLAGS": "--xla_backend_optimization_level=0"},
        )  # fmt: skip

    done = run(*davis_args(davis, tmp_path / "out", tmp_path / "missing"))
    assert done.returncode == 2
    assert done.stderr == f"error: no checkpoint at {tmp_path / 'missing'}\n"
    # A multi-process run whose coordinator never answers (nothing listens on port 1).
    done = run(*davis_args(davis, tmp_path / "out", checkpoint), "--coordinator_address",
               "127.0.0.1:1", "--num_processes", "2", "--process_id", "1",
               "--initialization_timeout", "2")  # fmt: skip
    assert done.returncode == 2
    assert done.stderr.startswith("error: could not join the multi-process run through the ")
    assert done.stderr.count("\n") == 1 and not (tmp_path / "out").exists()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_share_the_videos_and_process_0_scores_as_one_process(tmp_path, checkpoint):
    root = tmp_path / "DAVIS"
    for i, (seq, n) in enumerate([("a", 5), ("b", 6), ("c", 7)]):
        write_davis_sequence(root, seq, *synthetic_video(seed=60 + i, num_frames=n))
    write_split(root, ["a", "b", "c"])
    assert evaluate.main(davis_args(root, tmp_path / "one", checkpoint)) == 0

    address = f"127.0.0.1:{free_port()}"
    env = {**os.environ, "XLA_FLAGS": "--xla_backend_optimization_level=0", "JAX_PLATFORMS": "cpu"}
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "lcm_jax.evaluate",
                *davis_args(root, tmp_path / "two", checkpoint),
                "--coordinator_address",
                address,
                "--num_processes",
                "2",
                "--process_id",
                str(i),
                "--initialization_timeout",
                "60",
            ],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        for i in range(2)
    ]
    try:
        results = [p.communicate(timeout=300) for p in procs]
    finally:
        for p in procs:
            p.kill()
    assert [p.returncode for p in procs] == [0, 0], results
    (out0, err0), (out1, err1) = results
    # Disjoint shares: process 0 segments a and c (5 + 7 frames), process 1 b (6 frames).
    assert "[process 0/2]" in err0 and "12/12" in err0 and "6/6" not in err0
    assert "[process 1/2]" in err1 and "6/6" in err1 and "12/12" not in err1
    assert "J&F-Mean" in out0 and "J&F-Mean" not in out1
    one, two = tree(tmp_path / "one"), tree(tmp_path / "two")
    assert sorted(one) == sorted(two)
    assert all(one[k] == two[k] for k in one)  # the CSVs, the PNGs and the manifest
