"""TFDS builders: each builds from the generator's folders and yields the documented features;
bad folders fail with an error naming the file."""

import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import ml_collections
import numpy as np
import pytest
from PIL import Image
from test_cli_errors import one_line_error

from lcm_jax.input_pipeline import (
    davis,
    prepare,
    static_images,
    synthetic,
    testing,
    tfds_sets,
    video_io,
)
from lcm_jax.input_pipeline.video_io import DatasetError


def _examples(builder, split):
    """Decoded examples (the sets are ArrayRecord files: read with random access)."""
    return [
        {k: v if isinstance(v, (bytes, str)) else np.asarray(v) for k, v in e.items()}
        for e in builder.as_data_source(split)
    ]


def _text(value):
    return value.decode() if isinstance(value, bytes) else str(value)


def _reference_video(frame_paths, annotation_paths):
    """Independent expectations from the folders: label maps, ids, presence, boxes."""
    height, width = video_io.read_frame(frame_paths[0]).shape[:2]
    labels = np.zeros((len(frame_paths), height, width), np.uint8)
    stems = [p.stem for p in frame_paths]
    annotated = np.zeros(len(frame_paths), bool)
    for p in annotation_paths:
        labels[stems.index(p.stem)] = video_io.read_label_png(p)
        annotated[stems.index(p.stem)] = True
    ids = sorted(set(np.unique(labels).tolist()) - {0, 255})
    presence = np.zeros((len(frame_paths), len(ids)), bool)
    boxes = np.zeros((len(frame_paths), len(ids), 4), np.float32)
    for t in range(len(frame_paths)):
        for k, obj in enumerate(ids):
            ys, xs = np.nonzero(labels[t] == obj)
            if len(ys):
                presence[t, k] = True
                boxes[t, k] = (ys.min(), xs.min(), ys.max() + 1, xs.max() + 1)
    return labels, annotated, ids, presence, boxes


def _check_video_example(example, frame_paths, annotation_paths):
    labels, annotated, ids, presence, boxes = _reference_video(frame_paths, annotation_paths)
    assert example["frames"].dtype == np.uint8
    assert example["frames"].shape == (len(frame_paths), *labels.shape[1:], 3)
    for t, path in enumerate(frame_paths):  # JPEG bytes kept: TF and PIL decoders agree closely
        diff = np.abs(example["frames"][t].astype(int) - video_io.read_frame(path).astype(int))
        assert diff.mean() < 1.0
    np.testing.assert_array_equal(example["segmentations"][..., 0], labels)
    np.testing.assert_array_equal(example["annotated"], annotated)
    np.testing.assert_array_equal(example["object_ids"], ids)
    np.testing.assert_array_equal(example["presence"], presence)
    np.testing.assert_array_equal(example["boxes"], boxes)
    np.testing.assert_array_equal(example["first_frames"], presence.argmax(0))
    assert [_text(n) for n in example["frame_names"]] == [p.stem for p in frame_paths]


def test_davis_builder_yields_every_sequence_with_the_documented_features(prepared):
    raw, data_dir = prepared
    builder = tfds_sets.get_builder("davis17", str(data_dir))
    for split in ("train", "val"):
        seqs = video_io.davis_sequences(raw / "DAVIS", split)
        examples = _examples(builder, split)
        assert sorted(_text(e["video_name"]) for e in examples) == sorted(seqs)
    example = examples[0]
    frames, annotations = video_io.davis_video(raw / "DAVIS", _text(example["video_name"]))
    _check_video_example(example, frames, annotations)


def test_youtube_builder_keeps_sparse_valid_annotations_and_late_first_frames(prepared):
    raw, data_dir = prepared
    builder = tfds_sets.get_builder("youtube", str(data_dir))
    meta = video_io.youtube_meta(raw / "YouTube", "valid")["videos"]
    examples = _examples(builder, "valid")
    assert sorted(_text(e["video_name"]) for e in examples) == sorted(meta)
    for example in examples:
        vid = _text(example["video_name"])
        frames, annotations = video_io.youtube_video(raw / "YouTube", "valid", vid)
        _check_video_example(example, frames, annotations)
        stems = [p.stem for p in frames]
        expected_first = [
            stems.index(meta[vid]["objects"][str(o)]["frames"][0]) for o in example["object_ids"]
        ]
        np.testing.assert_array_equal(example["first_frames"], expected_first)
    train = _examples(builder, "train")
    assert all(e["annotated"].all() for e in train)


def test_static_builder_pairs_images_with_masks(prepared):
    raw, data_dir = prepared
    builder = tfds_sets.get_builder("static", str(data_dir))
    examples = _examples(builder, "train")
    assert len(examples) == testing.TINY["num_static"]
    for example in examples[:2]:
        name = _text(example["image_name"])
        labels = video_io.read_label_png(raw / "static/masks" / f"{name}.png")
        np.testing.assert_array_equal(example["segmentation"][..., 0], labels)
        ids = sorted(set(np.unique(labels).tolist()) - {0})
        np.testing.assert_array_equal(example["object_ids"], ids)
        ys, xs = np.nonzero(labels == ids[0])
        np.testing.assert_array_equal(
            example["boxes"][0], [ys.min(), xs.min(), ys.max() + 1, xs.max() + 1]
        )


def test_random_access_records_match_the_tfds_examples(prepared):
    _, data_dir = prepared
    builder = tfds_sets.get_builder("davis17", str(data_dir))
    source = tfds_sets.TfdsSource(builder, "train")
    examples = {_text(e["video_name"]): e for e in _examples(builder, "train")}
    assert len(source) == len(examples)
    record = source[1]
    example = examples[record["name"]]
    for key in ("annotated", "object_ids", "presence", "boxes"):
        np.testing.assert_array_equal(record[key], example[key])
    label = np.array(Image.open(io.BytesIO(record["segmentations"][2])))
    np.testing.assert_array_equal(label, example["segmentations"][2, ..., 0])
    static = tfds_sets.TfdsSource(tfds_sets.get_builder("static", str(data_dir)), "train")
    assert static[0]["boxes"].shape == (1, len(static[0]["object_ids"]), 4)


def test_a_prepared_set_records_its_source_and_is_not_reused_for_another(prepared, tmp_path):
    raw, data_dir = prepared
    builder = tfds_sets.get_builder("static", str(data_dir))
    recorded = json.loads((Path(builder.data_dir) / tfds_sets.SOURCE_FILE).read_text())
    settings = json.loads((raw / synthetic.SETTINGS_FILE).read_text())
    assert recorded == {"manual_dir": str((raw / "static").resolve()), "synthetic": settings}
    prepare.prepare("static", str(raw / "static"), str(data_dir))  # the same source: reused
    other = tmp_path / "other_static"  # the same images in another folder
    shutil.copytree(raw / "static", other)
    before = sorted(p.name for p in Path(builder.data_dir).iterdir())
    with pytest.raises(DatasetError, match=f"prepared from {raw.resolve()}/static, not {other}"):
        prepare.prepare("static", str(other), str(data_dir))
    config = ml_collections.ConfigDict(
        {"data_dir": str(data_dir), "davis_builder": "davis2017_vos"}
    )
    with pytest.raises(DatasetError, match=f"not {other}.*remove {builder.data_dir}"):
        tfds_sets.open_split(
            config, "static", "train", manual_dir=other, prepare_command="", why_not=None
        )
    assert sorted(p.name for p in Path(builder.data_dir).iterdir()) == before


def test_a_prepared_synthetic_set_is_not_reused_for_regenerated_videos_of_other_settings(
    tmp_path,
):
    raw, data_dir = tmp_path / "raw", str(tmp_path / "tfds")
    small = dict(num_videos=1, num_frames=3, height=32, width=32, progress=False)
    synthetic.generate(raw, **small, num_static=2)
    prepare.prepare("static", str(raw / "static"), data_dir)
    shutil.rmtree(raw)
    synthetic.generate(raw, **small, num_static=3)
    with pytest.raises(DatasetError, match="other settings [(]num_static: 2 -> 3[)]"):
        prepare.prepare("static", str(raw / "static"), data_dir)


def _one_video_davis(raw, root):
    seq = video_io.davis_sequences(raw / "DAVIS", "train")[0]
    for sub in ("JPEGImages/480p", "Annotations/480p"):
        shutil.copytree(raw / "DAVIS" / sub / seq, root / sub / seq)
    (root / "ImageSets/2017").mkdir(parents=True)
    for split in ("train", "val"):
        (root / "ImageSets/2017" / f"{split}.txt").write_text(seq + "\n")
    return root / "JPEGImages/480p" / seq, root / "Annotations/480p" / seq


def _build_davis(root, data_dir):
    builder = davis.Davis2017Vos(config="480p", data_dir=str(data_dir))
    tfds_sets.prepare_builder(builder, root)


@pytest.mark.parametrize("defect", ["corrupt_jpeg", "rgb_annotation", "size_mismatch", "no_first"])
def test_bad_davis_folders_fail_naming_the_file(prepared, tmp_path, defect):
    raw, _ = prepared
    frames, annotations = _one_video_davis(raw, tmp_path / "DAVIS")
    if defect == "corrupt_jpeg":
        data = (frames / "00003.jpg").read_bytes()
        (frames / "00003.jpg").write_bytes(data[: len(data) // 3])
        match = r"00003\.jpg"
    elif defect == "rgb_annotation":
        label = video_io.read_label_png(annotations / "00002.png")
        Image.fromarray(video_io.DAVIS_PALETTE[label]).save(annotations / "00002.png")
        match = r"00002\.png.*palette"
    elif defect == "size_mismatch":
        video_io.write_label_png(annotations / "00004.png", np.zeros((10, 10), np.uint8))
        match = r"00004\.png"
    else:
        (annotations / "00000.png").unlink()
        match = r"first-frame annotation.*00000\.png"
    with pytest.raises(DatasetError, match=match):
        _build_davis(tmp_path / "DAVIS", tmp_path / "tfds")


def test_static_pairing_follows_the_published_layouts_and_reads_saliency_masks(tmp_path):
    image = np.zeros((6, 8, 3), np.uint8)
    saliency = np.zeros((6, 8), np.uint8)
    saliency[1:3, 2:5] = 200  # grey saliency mask: >= 128 is object 1
    saliency[4, 4] = 100
    layout = {
        "ECSSD/images/a.jpg": image,
        "ECSSD/ground_truth_mask/a.png": saliency,
        "MSRA10K/Imgs/b.jpg": image,
        "MSRA10K/Imgs/b.png": saliency,
        "DUTS-TR/DUTS-TR-Image/c.jpg": image,
        "DUTS-TR/DUTS-TR-Mask/c.png": saliency,
        "HKU-IS/imgs/d.png": image,
        "HKU-IS/gt/d.png": saliency,
        "HKU-IS/imgs/unpaired.png": image,
    }
    for rel, array in layout.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(array).save(tmp_path / rel)
    pairs, unpaired = static_images.find_pairs(tmp_path)
    assert [(n, i.name, m.name) for n, i, m in pairs] == [
        ("DUTS-TR/c", "c.jpg", "c.png"),
        ("ECSSD/a", "a.jpg", "a.png"),
        ("HKU-IS/d", "d.png", "d.png"),
        ("MSRA10K/b", "b.jpg", "b.png"),
    ]
    assert unpaired == 1
    expected = np.zeros((6, 8), np.uint8)
    expected[1:3, 2:5] = 1
    np.testing.assert_array_equal(static_images.read_static_mask(pairs[0][2]), expected)
    Image.fromarray(image).save(tmp_path / "rgb_mask.png")
    with pytest.raises(DatasetError, match=r"rgb_mask\.png"):
        static_images.read_static_mask(tmp_path / "rgb_mask.png")


def test_tfds_davis_examples_convert_to_the_shared_format():
    segmentations = np.zeros((3, 4, 5, 1), np.uint8)
    segmentations[1, 1:3, 2:4] = 2
    segmentations[2, 0, 0] = 255
    example = {
        "metadata": {"video_name": b"bear", "num_frames": 3},
        "video": {"frames": np.zeros((3, 4, 5, 3), np.uint8), "segmentations": segmentations},
    }
    converted = davis.from_tfds_davis(example)
    assert converted["video_name"] == "bear"
    np.testing.assert_array_equal(converted["object_ids"], [2])
    np.testing.assert_array_equal(converted["presence"][:, 0], [False, True, False])
    np.testing.assert_array_equal(converted["boxes"][1, 0], [1, 2, 3, 4])
    np.testing.assert_array_equal(converted["first_frames"], [1])


def _prepare_env(tmpdir) -> dict:
    """The prepare CLI's environment: TMPDIR=`tmpdir`, TensorFlow quiet. TensorFlow 2.21 logs
    "oneDNN custom operations are on" at import (twice, whatever TF_CPP_MIN_LOG_LEVEL says);
    without oneDNN it is silent, and stderr holds only our lines."""
    return dict(os.environ, TMPDIR=str(tmpdir), TF_ENABLE_ONEDNN_OPTS="0")


def _prepare_cli(flags, tmpdir):
    """Runs the prepare CLI with `flags` and TMPDIR=`tmpdir`; returns the CompletedProcess."""
    cmd = [sys.executable, "-m", "lcm_jax.input_pipeline.prepare", *flags]
    return subprocess.run(
        cmd, capture_output=True, text=True, env=_prepare_env(tmpdir), timeout=300
    )


def test_prepare_cli_builds_a_set_in_the_data_dir_and_leaves_no_temporary_folder(
    prepared, tmp_path
):
    raw, _ = prepared
    tmpdir = tmp_path / "tmp"  # TFDS used to leave an empty tmp*tfds folder here per builder
    tmpdir.mkdir()
    flags = ["--dataset", "static", "--manual_dir", str(raw / "static")]
    run = _prepare_cli([*flags, "--data_dir", str(tmp_path / "tfds")], tmpdir)
    assert run.returncode == 0, run.stderr
    assert list(tmpdir.iterdir()) == []
    builder = tfds_sets.get_builder("static", str(tmp_path / "tfds"))
    assert builder.is_prepared()
    assert builder.info.splits["train"].num_examples == testing.TINY["num_static"]


def test_prepare_cli_rejects_bad_flags_and_missing_folders_in_one_line_before_writing(
    prepared, tmp_path, capsys, monkeypatch
):
    raw, _ = prepared
    partial = tmp_path / "partial"  # DAVIS/ and static/, no YouTube/
    partial.mkdir()
    for sub in ("DAVIS", "static"):
        (partial / sub).symlink_to(raw / sub)
    a_file = tmp_path / "a_file"
    a_file.write_text("mine")
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    data_dir = tmp_path / "tfds"
    cases = [  # (flags, what the error names)
        (["--dataset", "bogus"], "--dataset"),
        (["--dataset", "davis17", "--resolution", "720p"], "--resolution"),
        (["--dataset", "youtube", "--version", "2017"], "--version"),
        (["--dataset", "static", "--data_dir", str(a_file)], str(a_file)),
        # the DAVIS set was written before the missing YouTube/ was found
        (["--dataset", "synthetic", "--manual_dir", str(partial)], str(partial / "YouTube")),
    ]
    monkeypatch.setenv("TMPDIR", str(tmpdir))
    monkeypatch.setattr(tempfile, "tempdir", None)  # gettempdir() reads TMPDIR again
    env = _prepare_env(tmpdir)
    for i, (flags, named) in enumerate(cases):  # the flags after the common ones win
        argv = ["--manual_dir", str(raw), "--data_dir", str(data_dir), *flags]
        # the first as a command, the others through the same main in this process (faster)
        assert named in one_line_error(prepare, argv, capsys, command=i == 0, env=env), flags
    assert not data_dir.exists()
    assert a_file.read_text() == "mine"
    assert list(tmpdir.iterdir()) == []
