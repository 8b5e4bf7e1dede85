"""The evaluate and segment CLIs: resume after an interruption, YouTube-VOS files, bad input."""

import json
import zipfile

import imageio.v3 as iio
import numpy as np
import pytest
from PIL import Image
from test_inference_support import synthetic_video, tiny_model

from lcm_jax import checkpoints, evaluate, segment
from lcm_jax.inference import engine as engine_lib
from lcm_jax.inference import outputs
from lcm_jax.input_pipeline import video_io


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    config, variables = tiny_model()
    return checkpoints.save_variables(tmp_path_factory.mktemp("ckpt") / "tiny", variables, config)


def write_davis_sequence(root, seq, frames, labels, annotate="all"):
    for t, frame in enumerate(frames):
        video_io.write_frame(root / "JPEGImages" / "480p" / seq / f"{t:05d}.jpg", frame)
        if annotate == "all" or (annotate == "first" and t == 0):
            video_io.write_label_png(
                root / "Annotations" / "480p" / seq / f"{t:05d}.png", labels[t]
            )


def write_split(root, names):
    (root / "ImageSets" / "2017").mkdir(parents=True, exist_ok=True)
    (root / "ImageSets" / "2017" / "val.txt").write_text("\n".join(names) + "\n")


def tree(folder):
    """{relative path: bytes} of every file under folder."""
    return {
        p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()
    }


def davis_args(root, out, checkpoint):
    return ["--dataset", "davis", "--root", str(root), "--split", "val", "--out", str(out)] + [
        "--checkpoint",
        str(checkpoint),
        "--model",
        "tiny",
    ]


def test_an_interrupted_evaluate_run_resumed_gives_the_same_files(
    tmp_path, checkpoint, monkeypatch
):
    root = tmp_path / "DAVIS"
    names = ["a", "b", "c"]
    for i, seq in enumerate(names):
        write_davis_sequence(root, seq, *synthetic_video(seed=20 + i, num_frames=5))
    write_split(root, names)
    assert evaluate.main(davis_args(root, tmp_path / "full", checkpoint)) == 0

    written = []
    original_write = outputs.write_labels

    def write_then_interrupt(path, labels):
        if len(written) == 7:  # sequence "b" is half written
            raise KeyboardInterrupt
        written.append(path)
        original_write(path, labels)

    monkeypatch.setattr(outputs, "write_labels", write_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        evaluate.main(davis_args(root, tmp_path / "resumed", checkpoint))
    monkeypatch.setattr(outputs, "write_labels", original_write)
    runs = []
    original_run = engine_lib.Engine.run
    monkeypatch.setattr(
        engine_lib.Engine, "run", lambda self, v: runs.append(v.name) or original_run(self, v)
    )
    assert evaluate.main(davis_args(root, tmp_path / "resumed", checkpoint)) == 0
    assert runs == ["b", "c"]  # "a" was complete
    full, resumed = tree(tmp_path / "full"), tree(tmp_path / "resumed")
    assert sorted(full) == sorted(resumed)
    assert {"global_results-val.csv", "per-sequence_results-val.csv", "a/00004.png"} <= set(full)
    assert all(full[k] == resumed[k] for k in full)


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
    args = ["--dataset", "youtube", "--root", str(root), "--split", "valid", "--out", str(out)]
    assert evaluate.main(args + ["--checkpoint", str(checkpoint), "--model", "tiny"]) == 0
    listed = ["00000", "00010", "00020", "00030"]
    assert sorted(p.stem for p in (out / "Annotations" / "v1").iterdir()) == listed
    with zipfile.ZipFile(out / "submission.zip") as z:
        assert sorted(z.namelist()) == [f"Annotations/v1/{n}.png" for n in listed]
    frame2 = video_io.read_label_png(out / "Annotations" / "v1" / "00010.png")
    assert (frame2[late == 2] == 2).all()
    assert set(np.unique(video_io.read_label_png(out / "Annotations" / "v1" / "00000.png"))) <= {
        0,
        1,
    }


def test_bad_videos_fail_with_the_file_named_and_the_others_go_on(tmp_path, checkpoint, capsys):
    root = tmp_path / "DAVIS"
    frames, labels = synthetic_video(seed=40, num_frames=4)
    write_davis_sequence(root, "good", frames, labels)
    write_davis_sequence(root, "nomask", frames, labels, annotate="none")
    write_davis_sequence(root, "badsize", frames, labels, annotate="first")
    video_io.write_label_png(
        root / "Annotations" / "480p" / "badsize" / "00000.png", labels[0][:32]
    )
    write_davis_sequence(root, "rgbmask", frames, labels, annotate="first")
    Image.fromarray(frames[0]).save(root / "Annotations" / "480p" / "rgbmask" / "00000.png")
    write_davis_sequence(root, "sizes", frames, labels, annotate="first")
    video_io.write_frame(root / "JPEGImages" / "480p" / "sizes" / "00002.jpg", frames[2][:, :48])
    write_davis_sequence(root, "corrupt", frames, labels, annotate="first")
    (root / "JPEGImages" / "480p" / "corrupt" / "00001.jpg").write_bytes(b"not a jpeg")
    bad = ["nomask", "badsize", "rgbmask", "sizes", "corrupt"]
    write_split(root, ["good"] + bad)

    out = tmp_path / "out"
    assert evaluate.main(davis_args(root, out, checkpoint)) == 1
    err = capsys.readouterr().err
    assert "5 video(s) failed" in err
    expected_files = {
        "nomask": "nomask/00000.png",
        "badsize": "badsize/00000.png",
        "rgbmask": "rgbmask/00000.png",
        "sizes": "sizes/00002.jpg",
        "corrupt": "corrupt/00001.jpg",
    }
    for line in err.splitlines()[-5:]:
        seq = line.strip().split(":")[0]
        assert expected_files[seq] in line
    assert len(list((out / "good").glob("*.png"))) == 4
    assert (out / "global_results-val.csv").is_file()


@pytest.mark.filterwarnings("ignore:os.fork:RuntimeWarning")  # imageio-ffmpeg's subprocess
def test_segment_writes_masks_and_an_overlay_from_frames_or_an_mp4(tmp_path, checkpoint, capsys):
    frames, labels = synthetic_video(seed=50, num_frames=5)
    folder = tmp_path / "frames"
    for t, frame in enumerate(frames):
        video_io.write_frame(folder / f"img{t:03d}.png", frame)
    mask = tmp_path / "first.png"
    video_io.write_label_png(mask, labels[0])
    mp4 = tmp_path / "clip.mp4"
    iio.imwrite(mp4, frames, fps=5)
    common = ["--mask", str(mask), "--checkpoint", str(checkpoint), "--model", "tiny"]

    out = tmp_path / "out_frames"
    assert (
        segment.main(["--frames", str(folder), "--out", str(out), "--overlay", "o.gif"] + common)
        == 0
    )
    assert sorted(p.name for p in out.glob("*.png")) == [f"img{t:03d}.png" for t in range(5)]
    np.testing.assert_array_equal(video_io.read_label_png(out / "img000.png"), labels[0])
    overlay = iio.imread(out / "o.gif", index=None)
    assert overlay.shape[0] == 5
    # Object pixels of frame 0 are tinted half-way towards the palette colour.
    tint = segment.overlay(frames[0], labels[0])
    assert np.abs(overlay[0][..., :3].astype(int) - tint.astype(int)).mean() < 8

    out = tmp_path / "out_mp4"
    assert segment.main(["--frames", str(mp4), "--out", str(out)] + common) == 0
    assert len(list(out.glob("*.png"))) == 5 and (out / "overlay.mp4").is_file()
    assert iio.imread(out / "overlay.mp4", index=None).shape[0] == 5

    (tmp_path / "broken.mp4").write_bytes(b"no video here")
    assert segment.main(["--frames", str(tmp_path / "broken.mp4"), "--out", str(out)] + common) == 1
    assert "broken.mp4" in capsys.readouterr().err
    small = tmp_path / "small.png"
    video_io.write_label_png(small, labels[0][:, :32])
    args = ["--frames", str(folder), "--out", str(out), "--mask", str(small)]
    assert segment.main(args + common[2:]) == 1
    assert "small.png" in capsys.readouterr().err
