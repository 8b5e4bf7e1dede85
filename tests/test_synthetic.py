"""The synthetic generator: deterministic, published layouts, known colours, the hard cases."""

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage
from test_cli_errors import one_line_error

from lcm_jax.input_pipeline import lookalikes, prepare, synthetic, testing, tfds_sets, video_io
from lcm_jax.input_pipeline.synthetic import OBJECT_COLOURS, Difficulty


@pytest.fixture(scope="session")
def raw(tmp_path_factory):
    return testing.tiny_synthetic(tmp_path_factory.getbasetemp())


def _cosine(a, b):
    return float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b)))


def test_same_seed_writes_the_same_bytes_and_another_seed_does_not(tmp_path):
    kwargs = dict(num_videos=2, num_frames=4, height=32, width=48, num_static=1, progress=False)
    a = synthetic.generate(tmp_path / "a", seed=5, **kwargs)
    b = synthetic.generate(tmp_path / "b", seed=5, **kwargs)
    c = synthetic.generate(tmp_path / "c", seed=6, **kwargs)
    files = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    assert len(files) > 20
    for f in files:
        assert (a / f).read_bytes() == (b / f).read_bytes(), f
    frame = "DAVIS/JPEGImages/480p/synth0000/00000.jpg"
    assert (a / frame).read_bytes() != (c / frame).read_bytes()


def test_davis_layout_has_disjoint_splits_and_every_target_in_frame_zero(raw):
    davis = raw / "DAVIS"
    train = video_io.davis_sequences(davis, "train")
    val = video_io.davis_sequences(davis, "val")
    assert not set(train) & set(val)
    assert len(train) + len(val) == testing.TINY["num_videos"]
    for seq in train + val:
        frames, annotations = video_io.davis_video(davis, seq)
        assert len(frames) == len(annotations) == testing.TINY["num_frames"]
        labels = np.stack([video_io.read_label_png(p) for p in annotations])
        ids = set(np.unique(labels)) - {0}
        assert ids == set(range(1, max(ids) + 1))  # ids 1..K
        assert ids <= set(np.unique(labels[0]))  # DAVIS: every object in frame 0


def test_youtube_meta_lists_each_objects_frames_and_valid_keeps_only_first_frames(raw):
    youtube = raw / "YouTube"
    train = video_io.youtube_meta(youtube, "train")["videos"]
    for vid, video in train.items():
        frames, annotations = video_io.youtube_video(youtube, "train", vid)
        assert [p.stem for p in frames] == [f"{5 * t:05d}" for t in range(len(frames))]
        labels = {p.stem: video_io.read_label_png(p) for p in annotations}
        for obj, info in video["objects"].items():
            present = [s for s, label in sorted(labels.items()) if (label == int(obj)).any()]
            assert info["frames"] == present
    valid = video_io.youtube_meta(youtube, "valid")["videos"]
    assert valid
    for vid, video in valid.items():
        _, annotations = video_io.youtube_video(youtube, "valid", vid)
        firsts = {info["frames"][0] for info in video["objects"].values()}
        assert {p.stem for p in annotations} == firsts
        for p in annotations:
            ids = set(np.unique(video_io.read_label_png(p))) - {0}
            starting = {int(o) for o, i in video["objects"].items() if i["frames"][0] == p.stem}
            assert ids == starting


def _target_colours(frames, labels):
    """Index in OBJECT_COLOURS of each target's colour (1..K), read off its inner pixels."""
    found = []
    for k in range(1, int(labels.max()) + 1):
        inner = ndimage.binary_erosion(labels == k, iterations=1, axes=(1, 2))
        mean = frames[inner].astype(np.float64).mean(0)
        cosines = [_cosine(mean, c) for c in OBJECT_COLOURS]
        index = int(np.argmax(cosines))
        assert cosines[index] > 0.98
        assert synthetic.TEXTURE_LOW * 0.95 <= mean.max() / OBJECT_COLOURS[index].max() <= 1.0
        found.append(index)
    return found


def test_object_pixels_have_a_known_colour_and_distractors_are_unlabelled_look_alikes():
    def render(num_distractors):
        rng = np.random.default_rng(11)
        d = Difficulty(min_objects=3, max_objects=3, num_distractors=num_distractors)
        return synthetic.render_video(rng, num_frames=8, height=96, width=96, difficulty=d)

    frames, labels = render(2)
    colours = _target_colours(frames, labels)
    assert len(set(colours)) == 3  # the targets of a video differ

    def lookalike_pixels(frames, labels, colours):
        far = ~ndimage.binary_dilation(labels > 0, iterations=2, axes=(1, 2))
        rgb = frames.astype(np.float64)
        saturation = rgb.max(-1) - rgb.min(-1)
        palette = OBJECT_COLOURS[colours].astype(np.float64)  # this video's target colours
        cos = rgb @ palette.T / (np.linalg.norm(rgb, axis=-1, keepdims=True) + 1e-6)
        cos = cos / np.linalg.norm(palette, axis=-1)
        return int((far & (saturation > 60) & (cos.max(-1) > 0.97)).sum())

    assert lookalike_pixels(frames, labels, colours) > 50  # distractors: target colours, label 0
    assert lookalike_pixels(*render(0), range(len(OBJECT_COLOURS))) == 0  # no saturated pixel


def test_object_colours_vary_from_video_to_video():
    # Object 1 was always OBJECT_COLOURS[0] (red, as DAVIS's palette draws label 1).
    firsts, pairs = [], set()
    for seed in range(20):
        d = Difficulty(min_objects=2, max_objects=2, num_distractors=0)
        rng = np.random.default_rng(seed)
        frames, labels = synthetic.render_video(
            rng, num_frames=4, height=48, width=48, difficulty=d
        )
        colours = _target_colours(frames, labels)
        firsts.append(colours[0])
        pairs.add(tuple(colours))
    assert len(set(firsts)) == len(OBJECT_COLOURS)  # 20 draws of 5: every colour comes up
    assert max(firsts.count(c) for c in set(firsts)) <= 10
    assert len(pairs) >= 8


def test_objects_leave_and_reenter_and_start_mid_video_when_asked():
    rng = np.random.default_rng(0)
    d = Difficulty(min_objects=3, max_objects=3, leave_prob=1.0, late_start_prob=1.0)
    _, labels = synthetic.render_video(
        rng, num_frames=30, height=64, width=64, difficulty=d, allow_late_start=True
    )
    present = np.stack([(labels == k).any(axis=(1, 2)) for k in (1, 2, 3)])  # [3, T]
    firsts = present.argmax(1)
    assert firsts[0] == 0 and (firsts[1:] > 0).all()  # objects 2, 3 appear mid-video
    reentered = [k for k in range(3) if (np.diff(present[k, firsts[k] :].astype(int)) == 1).any()]
    assert reentered  # some object is gone for a while and comes back


def test_the_documented_cli_commands_write_the_three_layouts_and_prepare_them(tmp_path):
    (command,) = [line.strip() for line in synthetic.__doc__.splitlines() if "python -m" in line]
    # then prepare's, on the folder that one wrote (in __doc__ its continued lines are one line)
    (prepare_command,) = re.findall(r"python -m .* --dataset synthetic .*", prepare.__doc__)
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}")
    for c in (command, prepare_command):
        subprocess.run(["bash", "-c", c], cwd=tmp_path, env=env, check=True, capture_output=True)
    out = tmp_path / "lcm_synth"  # --out lcm_synth --num_videos 8 --num_frames 24
    davis = video_io.davis_sequences(out / "DAVIS", "train")
    davis += video_io.davis_sequences(out / "DAVIS", "val")
    assert len(davis) == 8
    for seq in davis:
        frames, _ = video_io.davis_video(out / "DAVIS", seq)
        assert len(frames) == 24
    youtube = [
        p
        for split in ("train", "valid")
        for p in (out / "YouTube" / split / "JPEGImages").iterdir()
    ]
    assert len(youtube) == 8
    assert len(list((out / "static/masks").glob("*.png"))) == 16  # 2 * num_videos by default
    data_dir = str(tmp_path / "lcm_synth_tfds")  # --data_dir lcm_synth_tfds
    examples = {
        name: sum(
            s.num_examples for s in tfds_sets.get_builder(name, data_dir).info.splits.values()
        )
        for name in ("davis17", "youtube", "static")
    }
    assert examples == {"davis17": 8, "youtube": 8, "static": 16}


def test_cli_rejects_each_bad_flag_in_one_line_before_writing_anything(tmp_path, capsys):
    a_file = tmp_path / "a_file"
    a_file.write_text("mine")
    cases = [  # (flags, what the error names)
        (["--num_videos", "0"], "--num_videos"),
        (["--num_frames", "2"], "--num_frames"),
        (["--height", "4"], "--height"),
        (["--max_objects", "0"], "--max_objects"),
        (["--num_distractors", "-1"], "--num_distractors"),
        (["--num_static", "-3"], "--num_static"),  # was accepted
        (["--out", str(a_file)], str(a_file)),
        (["--out", str(a_file / "sub")], str(a_file / "sub")),
    ]
    small = ["--out", str(tmp_path / "out"), "--num_videos", "1", "--num_frames", "3",
             "--height", "16", "--width", "16"]  # fmt: skip
    for i, (flags, named) in enumerate(cases):  # one at a time: the first bad flag stops it
        # the first as a command, the others through the same main in this process (faster)
        assert named in one_line_error(synthetic, small + flags, capsys, command=i == 0), flags
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_file"]  # nothing written
    assert a_file.read_text() == "mine"


def test_bad_generator_arguments_are_rejected():
    with pytest.raises(ValueError, match="num_frames"):
        synthetic.generate("/nonexistent", num_videos=1, num_frames=2)
    with pytest.raises(ValueError, match="num_static must be >= 0, got -3"):
        synthetic.generate("/nonexistent", num_static=-3)
    with pytest.raises(ValueError, match="max_objects"):
        Difficulty(max_objects=6)


def _scene(seed=0, num_frames=16, **knobs):
    config = lookalikes.SceneConfig(**knobs)
    rng = np.random.default_rng(seed)
    return lookalikes.render_scene(rng, num_frames=num_frames, size=96, config=config)


def test_lookalikes_are_copies_of_the_target_and_the_control_differs_only_in_their_colour():
    scene = _scene(num_frames=40)  # long enough for look-alike 1 to move off the target
    frames, control, labels, others = (
        scene[k] for k in ("lookalike", "control", "labels", "others")
    )
    target = ndimage.binary_erosion(labels == 1, iterations=1, axes=(1, 2))
    copies = ndimage.binary_erosion(others > 0, iterations=1, axes=(1, 2))
    target_rgb = frames[target].astype(np.float64).mean(0)
    assert _cosine(frames[copies].astype(np.float64).mean(0), target_rgb) > 0.995
    assert _cosine(control[copies].astype(np.float64).mean(0), target_rgb) < 0.9
    # The target's pixels and everything outside the look-alikes are the same in both kinds.
    outside = others == 0
    assert (frames[outside] == control[outside]).all()
    # Same size: a look-alike alone (no overlap) covers the target's area, within 10%.
    alone = [
        t for t in range(len(labels))
        if not ndimage.binary_dilation(labels[t] == 1, iterations=2)[others[t] == 1].any()
    ]  # fmt: skip
    assert alone
    for t in alone:
        if (labels[t] == 1).sum() > 0.9 * np.median((labels == 1).sum((1, 2))):
            assert (others[t] == 1).sum() == pytest.approx((labels[t] == 1).sum(), rel=0.1)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_lookalikes_cross_the_target_once_in_front_and_once_behind(seed):
    scene = _scene(seed, miss=0.0, lookalike_wobble=0.0)
    labels, others, centres = scene["labels"], scene["others"], scene["centres"]
    area = lambda m: m.sum(axis=(1, 2))  # noqa: E731
    distance = np.linalg.norm(centres[1:] - centres[:1], axis=-1)  # [L, T]
    target, front, back = area(labels == 1), area(others == 1), area(others == 2)
    # Far from the target somewhere, then through its centre (within a few pixels).
    assert (distance.max(1) > 15).all() and (distance.min(1) < 3).all()
    t_front, t_back = distance.argmin(1)
    assert target[t_front] < 0.3 * np.median(target)  # look-alike 1 hides the target
    assert front[t_front] > 0.8 * np.median(front)
    assert back[t_back] < 0.3 * np.median(back)  # the target hides look-alike 2


@pytest.mark.parametrize("seed", [0, 4])
def test_lookalike_scenes_draw_their_colours_first_from_the_generators_palette(seed):
    # `lookalikes` reuses `synthetic`'s palette and helpers; a cached benchmark relies on its
    # scenes staying the same. The target's colour is OBJECT_COLOURS[p[0]] and the control's
    # OBJECT_COLOURS[p[1]], p the first draw (a permutation of the palette) of the scene's rng.
    p = np.random.default_rng(seed).permutation(len(OBJECT_COLOURS))
    scene = _scene(seed, num_frames=6)
    target = ndimage.binary_erosion(scene["labels"] == 1, iterations=1, axes=(1, 2))
    copies = ndimage.binary_erosion(scene["others"] > 0, iterations=1, axes=(1, 2))
    for frames, mask, index in (
        (scene["lookalike"], target, p[0]),
        (scene["lookalike"], copies, p[0]),
        (scene["control"], copies, p[1]),
    ):
        mean = frames[mask].astype(np.float64).mean(0)
        cosines = [_cosine(mean, c) for c in OBJECT_COLOURS]
        assert np.argmax(cosines) == index and max(cosines) > 0.99


def test_scene_set_has_twin_held_out_splits_and_a_mixed_training_split(tmp_path):
    davis = lookalikes.write_scene_set(
        tmp_path, num_train=4, num_val=2, num_test=3, num_frames=5, size=48, progress=False
    )
    split = lambda name: video_io.davis_sequences(davis, name)  # noqa: E731
    assert split("train") == [
        "train_lookalike_0000", "train_lookalike_0001", "train_control_0002", "train_control_0003"
    ]  # fmt: skip
    assert split("val") == [f"val_{k}_{i:04d}" for i in range(2) for k in lookalikes.KINDS]
    for name, count in (("val", 2), ("test", 3)):
        for kind in lookalikes.KINDS:
            assert split(f"{name}_{kind}") == [f"{name}_{kind}_{i:04d}" for i in range(count)]
    for i in range(3):  # twins: the same target masks and look-alike places
        a, b = (f"test_{kind}_{i:04d}" for kind in lookalikes.KINDS)
        masks = [video_io.davis_video(davis, s)[1] for s in (a, b)]
        for pa, pb in zip(*masks, strict=True):
            assert (video_io.read_label_png(pa) == video_io.read_label_png(pb)).all()
        assert (lookalikes.read_others(davis, a) == lookalikes.read_others(davis, b)).all()
        assert lookalikes.read_others(davis, a).shape == (5, 48, 48)
