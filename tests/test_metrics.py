"""J and F against hand-computed cases, a per-pixel loop and, at 480p, an independent reference
written from the DAVIS 2017 toolkit's definition (its rules, formulas and disk footprint)."""

import csv
import math
import os

import numpy as np
import pytest
from scipy import ndimage

from lcm_jax.input_pipeline import video_io
from lcm_jax.metrics import davis, report


def box(h, w, r0, r1, c0, c1):
    """Bool [h, w] with rows r0..r1 and columns c0..c1 (inclusive) set."""
    m = np.zeros((h, w), bool)
    m[r0 : r1 + 1, c0 : c1 + 1] = True
    return m


def loop_boundary(seg):
    """The toolkit's seg2bmap written pixel by pixel (outside the image is background)."""
    h, w = seg.shape
    at = lambda y, x: bool(seg[y, x]) if y < h and x < w else False
    b = np.zeros((h, w), bool)
    for y in range(h):
        for x in range(w):
            if y == h - 1 and x == w - 1:
                continue
            if y == h - 1:
                b[y, x] = at(y, x) != at(y, x + 1)
            elif x == w - 1:
                b[y, x] = at(y, x) != at(y + 1, x)
            else:
                b[y, x] = any(at(y, x) != at(y + dy, x + dx) for dy, dx in ((0, 1), (1, 0), (1, 1)))
    return b


def loop_f(gt, pred, radius):
    """F with explicit loops: a boundary pixel matches when a pixel of the other boundary lies
    within Euclidean distance `radius` (the disk x^2 + y^2 <= r^2)."""
    bg, bp = loop_boundary(gt), loop_boundary(pred)
    pts_g, pts_p = list(zip(*np.nonzero(bg), strict=True)), list(zip(*np.nonzero(bp), strict=True))

    def matched(src, dst):
        return sum(any((y - v) ** 2 + (x - u) ** 2 <= radius**2 for v, u in dst) for y, x in src)

    n_p, n_g = len(pts_p), len(pts_g)
    if n_p == 0 and n_g > 0:
        p, r = 1.0, 0.0
    elif n_p > 0 and n_g == 0:
        p, r = 0.0, 1.0
    elif n_p == 0 and n_g == 0:
        p, r = 1.0, 1.0
    else:
        p, r = matched(pts_p, pts_g) / n_p, matched(pts_g, pts_p) / n_g
    return 0.0 if p + r == 0 else 2 * p * r / (p + r)


def test_empty_prediction_of_empty_ground_truth_scores_one():
    empty = np.zeros((30, 40), bool)
    assert davis.jaccard(empty, empty) == 1.0
    assert davis.boundary_f(empty, empty) == 1.0


def test_box_predicted_where_ground_truth_is_empty_scores_zero():
    empty = np.zeros((30, 40), bool)
    b = box(30, 40, 5, 14, 5, 14)
    assert davis.jaccard(empty, b) == 0.0
    assert davis.boundary_f(empty, b) == 0.0  # P = 0, R = 1 -> F = 0
    assert davis.boundary_f(b, empty) == 0.0  # P = 1, R = 0 -> F = 0


def test_all_ones_ground_truth_has_no_boundary_so_a_box_gets_f_zero_and_its_area_as_j():
    ones = np.ones((30, 40), bool)
    b = box(30, 40, 5, 14, 5, 14)
    assert not davis.seg2bmap(ones).any()  # every neighbour beyond the image is ignored
    assert davis.jaccard(ones, b) == pytest.approx(100 / 1200)
    assert davis.boundary_f(ones, b) == 0.0
    assert davis.jaccard(ones, ones) == 1.0 and davis.boundary_f(ones, ones) == 1.0


def test_boundary_of_a_box_is_the_outline_shifted_half_a_pixel_towards_the_origin():
    b = box(12, 12, 3, 6, 4, 8)  # rows 3..6, columns 4..8
    expected = np.zeros((12, 12), bool)
    expected[2:7, 3:9] = True  # rectangle rows 2..6, columns 3..8, its outline only
    expected[3:6, 4:8] = False
    np.testing.assert_array_equal(davis.seg2bmap(b), expected)


def test_box_shifted_by_one_pixel_keeps_f_one_and_loses_one_column_of_j():
    gt = box(40, 40, 10, 19, 10, 19)
    pred = box(40, 40, 10, 19, 11, 20)
    assert davis.bound_pixels(40, 40) == 1  # ceil(0.008 * 56.57)
    assert davis.jaccard(gt, pred) == pytest.approx(90 / 110)
    assert davis.boundary_f(gt, pred) == pytest.approx(1.0)


def test_box_shifted_by_three_pixels_matches_half_of_each_outline():
    # Outlines of 40 pixels each; within 1 px: 9 of the top row, 9 of the bottom row and the
    # 2 side pixels next to them (hand count) -> P = R = 20 / 40.
    gt = box(40, 40, 10, 19, 10, 19)
    pred = box(40, 40, 10, 19, 13, 22)
    assert davis.seg2bmap(gt).sum() == 40
    assert davis.boundary_f(gt, pred) == pytest.approx(0.5)
    assert davis.jaccard(gt, pred) == pytest.approx(70 / 130)


def test_boundary_tolerance_is_ceil_of_the_diagonal_fraction():
    assert davis.bound_pixels(480, 854) == math.ceil(0.008 * math.hypot(480, 854)) == 8
    assert davis.bound_pixels(64, 64) == 1
    assert davis.bound_pixels(64, 64, bound_th=3) == 3


@pytest.mark.parametrize("bound_th", [0.008, 3])
def test_vectorised_f_equals_a_per_pixel_loop_on_random_masks(bound_th):
    rng = np.random.default_rng(0)
    h, w = 23, 29
    # Noise, blobs (smoothed noise), and the edge cases empty and full.
    noise = rng.random((4, 2, h, w)) < 0.5
    k = np.ones(5) / 5
    smooth = rng.random((4, 2, h, w))
    smooth = np.apply_along_axis(np.convolve, -1, smooth, k, mode="same")
    smooth = np.apply_along_axis(np.convolve, -2, smooth, k, mode="same") > 0.5
    masks = np.concatenate([noise, smooth], axis=0)
    masks[0, 0] = False
    masks[1, 1] = True
    gt, pred = masks[:, 0], masks[:, 1]
    radius = davis.bound_pixels(h, w, bound_th)
    expected = [loop_f(g, p, radius) for g, p in zip(gt, pred, strict=True)]
    np.testing.assert_allclose(davis.boundary_f(gt, pred, bound_th), expected, rtol=0, atol=1e-12)
    for g in gt:
        np.testing.assert_array_equal(davis.seg2bmap(g), loop_boundary(g))


def star(h, w, cy, cx, radius, harmonics):
    """Bool [h, w]: the star-shaped blob rho <= radius * (1 + sum a cos(k theta + phi))."""
    yy, xx = np.mgrid[0:h, 0:w]
    theta = np.arctan2(yy - cy, xx - cx)
    r = radius * (1 + sum(a * np.cos(k * theta + phi) for k, a, phi in harmonics))
    return np.hypot(yy - cy, xx - cx) <= r


def toolkit_scores(gt, pred, bound_th=0.008):
    """J and F of one mask pair from the toolkit's definition, written out independently of
    davis.py: seg2bmap by padding, the disk skimage.morphology.disk(r) builds, SciPy's
    binary dilation by that footprint (cv2.dilate's pixel set), the toolkit's formulas."""

    def bmap(seg):
        pad = np.pad(seg, ((0, 1), (0, 1)))  # beyond the image: background
        e, s, se = pad[:-1, 1:], pad[1:, :-1], pad[1:, 1:]
        b = (seg != e) | (seg != s) | (seg != se)
        b[-1, :] = seg[-1, :] != e[-1, :]  # last row: the east neighbour only
        b[:, -1] = seg[:, -1] != s[:, -1]  # last column: the south neighbour only
        b[-1, -1] = False
        return b

    union = np.sum(gt | pred)
    j = 1.0 if union == 0 else np.sum(gt & pred) / union
    r = math.ceil(bound_th * np.linalg.norm(gt.shape))
    yy, xx = np.mgrid[-r : r + 1, -r : r + 1]
    disk = yy**2 + xx**2 <= r**2
    fg, bg = bmap(pred), bmap(gt)
    n_fg, n_gt = np.sum(fg), np.sum(bg)
    if n_fg == 0 and n_gt > 0:
        precision, recall = 1, 0
    elif n_fg > 0 and n_gt == 0:
        precision, recall = 0, 1
    elif n_fg == 0 and n_gt == 0:
        precision, recall = 1, 1
    else:
        precision = np.sum(fg & ndimage.binary_dilation(bg, disk)) / float(n_fg)
        recall = np.sum(bg & ndimage.binary_dilation(fg, disk)) / float(n_gt)
    f = 0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)
    return j, f


def test_480p_frames_score_bit_for_bit_as_the_toolkits_definition():
    # Two evaluated 480x854 frames, three objects: a large blob, a blob cut by the image's
    # bottom-right corner (the last-row and last-column rule), a small one predicted with a
    # far-away false blob, then lost on the second frame (P = 1, R = 0).
    h, w = 480, 854
    gt = np.zeros((4, h, w), np.uint8)
    pred = np.zeros_like(gt)
    shapes = [(2, 0.2, 0.3), (3, 0.1, 1.0), (5, 0.05, 2.0)]
    for t in range(4):
        jitter = [(k, a * (1 + 0.3 * t), phi + 0.2 * t) for k, a, phi in shapes]
        gt[t][star(h, w, 200 + 5 * t, 300, 120, shapes)] = 1
        pred[t][star(h, w, 203 + 5 * t, 296, 116, jitter)] = 1
        gt[t][star(h, w, 470, 840, 60 + t, shapes[:2])] = 2
        pred[t][star(h, w, 464, 836, 66, jitter[:2])] = 2
        gt[t][star(h, w, 100, 650, 30, shapes[1:])] = 3
        if t != 2:
            pred[t][star(h, w, 102, 652, 28, jitter[1:]) | star(h, w, 420, 60, 9, [])] = 3
    j, f = davis.evaluate_sequence(gt, pred)
    expected = np.array(
        [[toolkit_scores(gt[t] == k, pred[t] == k) for t in (1, 2)] for k in (1, 2, 3)]
    )  # [object, frame, (J, F)]
    np.testing.assert_array_equal(j, expected[..., 0])  # the same IEEE doubles
    np.testing.assert_array_equal(f, expected[..., 1])
    assert j[2, 1] == 0.0 and f[2, 1] == 0.0  # the lost object
    assert (0.3 < f[:2]).all() and (f[:2] < 1).all()  # real mismatches, not trivial cases


def test_disk_dilation_sets_the_pixels_of_a_dilation_by_the_disk_footprint():
    rng = np.random.default_rng(1)
    bmaps = rng.random((2, 30, 45)) < 0.02
    bmaps[1, 0, 0] = bmaps[1, -1, -1] = True  # at the image's corners
    for r in (0, 1, 3, 8, 35):  # 35: more than the height
        yy, xx = np.mgrid[-r : r + 1, -r : r + 1]
        disk = yy**2 + xx**2 <= r**2
        expected = [ndimage.binary_dilation(b, disk) for b in bmaps]
        np.testing.assert_array_equal(davis.dilate_disk(bmaps, r), expected)


def test_decay_bins_for_ten_frames_are_the_toolkits():
    # ids = round(linspace(1, 10, 5) + 1e-10) - 1 = [0, 2, 5, 7, 9]
    assert davis.decay_bins(10) == [slice(0, 3), slice(2, 6), slice(5, 8), slice(7, 10)]
    mean, recall, decay = davis.statistics(np.arange(10) / 10)
    assert mean == pytest.approx(0.45)
    assert recall == pytest.approx(0.4)  # 0.6, 0.7, 0.8, 0.9
    assert decay == pytest.approx(0.1 - 0.8)  # mean(0, .1, .2) - mean(.7, .8, .9)


def test_sequence_scores_exclude_the_first_and_last_frames():
    gt = np.zeros((5, 20, 20), np.uint8)
    gt[:, 2:8, 2:8] = 1
    gt[:, 10:16, 10:16] = 2
    gt[2, 0, 0] = davis.VOID_LABEL  # void counts as background, as in the toolkit's loader
    pred = gt.copy()
    pred[2, 0, 0] = 0
    pred[0] = 0  # wrong first and last frames do not count
    pred[4] = 1
    pred[3][pred[3] == 2] = 0  # object 2 lost on frame 3
    j, f = davis.evaluate_sequence(gt, pred)
    np.testing.assert_allclose(j, [[1, 1, 1], [1, 1, 0]])
    np.testing.assert_allclose(f, [[1, 1, 1], [1, 1, 0]])


def test_a_predicted_label_above_the_object_count_is_an_error():
    gt = np.zeros((3, 8, 8), np.uint8)
    gt[:, :2, :2] = 1
    pred = gt.copy()
    pred[1, 5, 5] = 2
    with pytest.raises(ValueError, match="clip: a predicted label"):
        davis.evaluate_sequence(gt, pred, name="clip")


def write_davis(root, sequences):
    """Writes a DAVIS folder: {seq: labels uint8 [N, H, W]} as frames and annotations."""
    (root / "ImageSets" / "2017").mkdir(parents=True)
    (root / "ImageSets" / "2017" / "val.txt").write_text("\n".join(sequences) + "\n")
    for seq, labels in sequences.items():
        for t, lab in enumerate(labels):
            frame = np.repeat(lab[..., None] * 60, 3, axis=-1).astype(np.uint8)
            video_io.write_frame(root / "JPEGImages" / "480p" / seq / f"{t:05d}.jpg", frame)
            video_io.write_label_png(root / "Annotations" / "480p" / seq / f"{t:05d}.png", lab)


def test_results_folder_gives_the_toolkits_csv_files(tmp_path):
    a = np.zeros((4, 20, 20), np.uint8)
    a[:, 2:12, 2:12] = 1
    b = np.zeros((4, 20, 20), np.uint8)
    b[:, 5:15, 5:15] = 1
    b[:, 0:3, 15:20] = 2
    write_davis(tmp_path / "davis", {"a": a, "b": b})
    results = tmp_path / "res"
    pa = a.copy()
    pa[1:3, 2:12, 2:12] = 0
    pa[1:3, 2:12, 3:13] = 1  # 1 px shift on both evaluated frames: J = 90/110, F = 1
    for t in range(4):
        video_io.write_label_png(results / "a" / f"{t:05d}.png", pa[t])
        video_io.write_label_png(results / "b" / f"{t:05d}.png", b[t] * (b[t] == 1))
    scores = report.evaluate_davis(tmp_path / "davis", results, ["a", "b"])
    g, s = report.write_csvs(scores, tmp_path / "res", "val")
    assert g.name == "global_results-val.csv" and s.name == "per-sequence_results-val.csv"
    rows = list(csv.reader(g.open()))
    assert rows[0] == list(report.GLOBAL_COLUMNS)
    # Objects a_1 (J 9/11, F 1), b_1 (1, 1), b_2 (lost: J 0, F 0).
    j_mean, f_mean = (9 / 11 + 1 + 0) / 3, 2 / 3
    expected = [(j_mean + f_mean) / 2, j_mean, 2 / 3, 0.0, f_mean, 2 / 3, 0.0]
    assert rows[1] == [f"{v:.3f}" for v in expected]
    assert list(csv.reader(s.open())) == [
        ["Sequence", "J-Mean", "F-Mean"],
        ["a_1", f"{9 / 11:.3f}", "1.000"],
        ["b_1", "1.000", "1.000"],
        ["b_2", "0.000", "0.000"],
    ]


def test_missing_result_png_is_an_error_naming_the_file(tmp_path):
    labels = np.zeros((3, 8, 8), np.uint8)
    labels[:, 2:5, 2:5] = 1
    write_davis(tmp_path / "davis", {"s": labels})
    video_io.write_label_png(tmp_path / "res" / "s" / "00000.png", labels[0])
    with pytest.raises(video_io.DatasetError, match=r"res/s/00001\.png"):
        report.evaluate_davis(tmp_path / "davis", tmp_path / "res", ["s"])


def test_sequences_scored_in_two_processes_equal_those_scored_here_in_order(tmp_path):
    # Four sequences of different lengths (the longest go first to the processes), one of
    # them missing a result: each process's values, in the listed order, with the error in
    # its place.
    rng = np.random.default_rng(2)
    davis_root, results = tmp_path / "davis", tmp_path / "res"
    listed = []
    for n, seq in zip((3, 7, 4, 6), "abcd", strict=True):
        labels = np.zeros((n, 24, 32), np.uint8)
        for t in range(n):
            y, x = rng.integers(2, 12, 2)
            labels[t, y : y + 10, x : x + 14] = 1
            labels[t, y + 3 : y + 8, x + 4 : x + 20] = 2
        pred = np.roll(labels, rng.integers(-2, 3, 2), axis=(1, 2))
        for t in range(n):
            video_io.write_label_png(davis_root / seq / f"{t:05d}.png", labels[t])
            if not (seq == "b" and t == 5):
                video_io.write_label_png(results / seq / f"{t:05d}.png", pred[t])
        listed.append((seq, sorted((davis_root / seq).glob("*.png"))))
    here = report.score_sequences(results, listed, workers=1)
    there = report.score_sequences(results, listed, workers=2)
    assert isinstance(here[1], video_io.DatasetError) and "b/00005.png" in str(here[1])
    assert type(there[1]) is video_io.DatasetError and str(there[1]) == str(here[1])
    del here[1], there[1]
    assert there == here  # the same floats (dataclass equality), in the same order
    assert [o.name for s in here for o in s] == ["a_1", "a_2", "c_1", "c_2", "d_1", "d_2"]
    assert 0 < here[1][0].j[0] < 1  # real scores, not the trivial cases


def test_default_workers_are_capped_by_cpus_sequences_and_frames():
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    assert report.default_workers(frames=2010, sequences=30) == min(cpus, 21)
    assert report.default_workers(frames=60, sequences=30) == 1  # a process would not pay
    assert report.default_workers(frames=5000, sequences=1) == 1
    with pytest.raises(ValueError, match="workers must be at least 1"):
        report.score_sequences("res", [("a", [])], workers=0)
