"""Region (J) and boundary (F) similarity exactly as the official DAVIS 2017 toolkit.

Follows `davis2017-evaluation` (davis2017/metrics.py, utils.py, evaluation.py):

- J (`db_eval_iou`): |pred ∩ gt| / |pred ∪ gt|, and 1 when the union is empty.
- F (`db_eval_boundary` / `f_measure`): one-pixel boundaries from `seg2bmap`, each dilated by
  a disk of radius `ceil(bound_th · ‖(H, W)‖)` (bound_th = 0.008 of the image diagonal;
  `skimage.morphology.disk(r)` = {x² + y² ≤ r²}, applied with `cv2.dilate`), precision =
  predicted boundary pixels near a ground-truth boundary / predicted boundary pixels, recall
  the other way round, F = 2PR / (P + R); the toolkit's special cases for empty boundaries.
- Statistics per object (`db_statistics`): Mean, Recall (fraction of frames > 0.5) and Decay
  (mean of the first of 4 bins minus the mean of the last).
- Semi-supervised: the first and the last frame are excluded from every sequence.
- The toolkit's loader maps the void label 255 to background, so void pixels never apply.

NumPy only (no OpenCV), exact to the bit and fast where the time goes, F at 480p:

- each object is scored inside the bounding box of its ground truth and prediction, one pixel
  wider on each side (`frame_scores`): outside it both masks and both boundaries are empty, so
  J's counts, the boundaries (`seg2bmap` of the box equals the image's there, the image's
  last-row and last-column rule included) and every boundary match stay the same;
- the disk dilation is an OR of the disk's rows (`dilate_disk`): row dy is a horizontal run of
  half-width isqrt(r² − dy²), found from row-wise prefix sums, so the pixel set is exactly
  `cv2.dilate(b, disk(r))`'s.
"""

import math
import warnings

import numpy as np

BOUND_TH = 0.008  # boundary tolerance as a fraction of the image diagonal (the toolkit's)
VOID_LABEL = 255  # mapped to background, as the toolkit's DAVIS loader does
N_DECAY_BINS = 4


def jaccard(gt: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """Region similarity J (IoU) per mask: gt, pred bool [..., H, W] -> float64 [...]."""
    gt, pred = _check_pair(gt, pred)
    inter = np.sum(gt & pred, axis=(-2, -1))
    union = np.sum(gt | pred, axis=(-2, -1))
    return np.where(union == 0, 1.0, inter / np.maximum(union, 1))


def seg2bmap(seg: np.ndarray) -> np.ndarray:
    """One-pixel-wide boundary map of binary masks [..., H, W] -> bool [..., H, W].

    A pixel is on the boundary when it differs from its east, south or south-east
    neighbour (pixels beyond the image count as background); in the last row only the east
    neighbour counts, in the last column only the south one, and the bottom-right corner is
    never a boundary pixel (the toolkit's `_seg2bmap`, boundaries offset half a pixel
    towards the origin).
    """
    seg = np.asarray(seg).astype(bool)
    e = np.zeros_like(seg)
    s = np.zeros_like(seg)
    se = np.zeros_like(seg)
    e[..., :, :-1] = seg[..., :, 1:]
    s[..., :-1, :] = seg[..., 1:, :]
    se[..., :-1, :-1] = seg[..., 1:, 1:]
    b = (seg ^ e) | (seg ^ s) | (seg ^ se)
    b[..., -1, :] = seg[..., -1, :] ^ e[..., -1, :]
    b[..., :, -1] = seg[..., :, -1] ^ s[..., :, -1]
    b[..., -1, -1] = False
    return b


def bound_pixels(height: int, width: int, bound_th: float = BOUND_TH) -> int:
    """Disk radius in pixels: `bound_th` itself when >= 1, else ceil(bound_th · diagonal)."""
    if bound_th >= 1:
        return int(bound_th)
    return int(math.ceil(bound_th * math.hypot(height, width)))


def dilate_disk(bmaps: np.ndarray, radius: int) -> np.ndarray:
    """Dilation of binary maps bool [..., H, W] by a disk of `radius`, each map on its own.

    A pixel is set when a set pixel lies at an integer offset with dy² + dx² <= r²: exactly
    the toolkit's `cv2.dilate(b, skimage.morphology.disk(r))` (pixels beyond the image add
    nothing). The disk is a stack of 2r + 1 horizontal runs, row dy of half-width
    isqrt(r² − dy²); each distinct run is a box sum of row-wise prefix sums, and the output
    ORs every row dy of the map dilated by its run, shifted by dy.
    """
    b = np.asarray(bmaps).astype(bool, copy=False)
    h, w = b.shape[-2:]
    r = int(radius)
    half = [math.isqrt(r * r - dy * dy) for dy in range(r + 1)]
    # cs[..., j]: the row's set pixels in columns < j − r (as if padded by r zeros on each
    # side), so a run [x − a, x + a] holds cs[x + r + a + 1] − cs[x + r − a]: no clipping.
    cs = np.zeros((*b.shape[:-1], w + 2 * r + 1), np.int32)
    np.cumsum(b, axis=-1, dtype=np.int32, out=cs[..., r + 1 : r + 1 + w])
    cs[..., r + 1 + w :] = cs[..., r + w : r + w + 1]
    runs = {a: cs[..., r + a + 1 : r + a + 1 + w] > cs[..., r - a : r - a + w] for a in set(half)}
    out = runs[half[0]].copy()
    for dy in range(1, min(r, h - 1) + 1):
        run = runs[half[dy]]
        out[..., :-dy, :] |= run[..., dy:, :]
        out[..., dy:, :] |= run[..., :-dy, :]
    return out


def frame_scores(gt: np.ndarray, pred: np.ndarray, radius: int) -> tuple[float, float]:
    """J and F of one mask pair: gt, pred bool [H, W]; `radius` from `bound_pixels(H, W)`.

    Both are computed in the box of rows and columns that hold a pixel of either mask, one
    pixel wider on each side (within the image). The toolkit's boundary pixel depends on
    itself and its east, south and south-east neighbours, so outside that box every boundary
    pixel is 0, and inside it `seg2bmap` of the box gives the image's: the box's last row or
    column is either the image's (the same rule) or one of background only (0 either way).
    """
    either = gt | pred
    rows = np.flatnonzero(either.any(axis=-1))
    if rows.size == 0:
        return 1.0, 1.0  # both empty: the toolkit's J = 1 and P = R = 1
    h, w = gt.shape
    y0, y1 = max(int(rows[0]) - 1, 0), min(int(rows[-1]) + 2, h)
    cols = np.flatnonzero(either[y0:y1].any(axis=0))
    x0, x1 = max(int(cols[0]) - 1, 0), min(int(cols[-1]) + 2, w)
    g, p = gt[y0:y1, x0:x1], pred[y0:y1, x0:x1]
    j = np.count_nonzero(g & p) / np.count_nonzero(either[y0:y1, x0:x1])
    return j, _f_measure(seg2bmap(g), seg2bmap(p), radius)


def _f_measure(b_gt: np.ndarray, b_pred: np.ndarray, radius: int) -> float:
    """F of two boundary maps bool [h, w], with the toolkit's special cases and operations
    (precision = matches / float(count), F = 2 · P · R / (P + R)), so every value is the same
    IEEE double."""
    n_gt, n_pred = np.count_nonzero(b_gt), np.count_nonzero(b_pred)
    if n_pred == 0 and n_gt > 0:
        precision, recall = 1, 0
    elif n_pred > 0 and n_gt == 0:
        precision, recall = 0, 1
    elif n_pred == 0 and n_gt == 0:
        precision, recall = 1, 1
    else:
        precision = np.count_nonzero(b_pred & dilate_disk(b_gt, radius)) / float(n_pred)
        recall = np.count_nonzero(b_gt & dilate_disk(b_pred, radius)) / float(n_gt)
    if precision + recall == 0:
        return 0.0
    return float(2 * precision * recall / (precision + recall))


def boundary_f(gt: np.ndarray, pred: np.ndarray, bound_th: float = BOUND_TH) -> np.ndarray:
    """Boundary similarity F per mask: gt, pred bool [..., H, W] -> float64 [...].

    Precision P = |B_pred ∩ dilate(B_gt)| / |B_pred|, recall R = |B_gt ∩ dilate(B_pred)| /
    |B_gt|, F = 2PR / (P + R) (0 when P + R = 0). Empty boundaries, as the toolkit: none
    predicted but some in the ground truth -> P = 1, R = 0; the reverse -> P = 0, R = 1;
    both empty -> P = R = 1 (F = 1).
    """
    gt, pred = _check_pair(gt, pred)
    lead, (h, w) = gt.shape[:-2], gt.shape[-2:]
    radius = bound_pixels(h, w, bound_th)
    pairs = zip(gt.reshape(-1, h, w), pred.reshape(-1, h, w), strict=True)
    f = [frame_scores(g, p, radius)[1] for g, p in pairs]
    return np.array(f, np.float64).reshape(lead)


def decay_bins(n: int) -> list[slice]:
    """The toolkit's 4 decay bins over n per-frame values (neighbouring bins share an end).

    ids = round(linspace(1, n, 5) + 1e-10) - 1, bin i = values[ids[i] : ids[i+1] + 1]. The
    toolkit casts ids to uint8, which wraps for n > 256; here they stay exact integers.
    """
    ids = (np.round(np.linspace(1, n, N_DECAY_BINS + 1) + 1e-10) - 1).astype(np.int64)
    return [slice(int(ids[i]), int(ids[i + 1]) + 1) for i in range(N_DECAY_BINS)]


def statistics(per_frame: np.ndarray) -> tuple[float, float, float]:
    """(Mean, Recall, Decay) of one object's per-frame J or F values [N] (db_statistics).

    Mean = nanmean, Recall = mean of (value > 0.5), Decay = nanmean(first bin) −
    nanmean(last bin) of `decay_bins(N)`.
    """
    v = np.asarray(per_frame, dtype=np.float64)
    if v.ndim != 1 or v.size == 0:
        raise ValueError(f"per-frame values must be a non-empty 1-D array, got shape {v.shape}")
    bins = decay_bins(v.size)
    with warnings.catch_warnings():  # all-NaN slices give NaN, as in the toolkit
        warnings.simplefilter("ignore", category=RuntimeWarning)
        mean = float(np.nanmean(v))
        recall = float(np.mean(v > 0.5))
        decay = float(np.nanmean(v[bins[0]]) - np.nanmean(v[bins[-1]]))
    return mean, recall, decay


def evaluate_sequence(
    gt_labels: np.ndarray, pred_labels: np.ndarray, name: str = "sequence"
) -> tuple[np.ndarray, np.ndarray]:
    """Per-object, per-frame J and F of one semi-supervised sequence.

    Args:
      gt_labels: int [N, H, W] ground-truth label maps of all N annotated frames (frame 0
        included); the number of objects is the largest label of frame 0 (the toolkit's).
      pred_labels: int [N, H, W] predicted label maps of the same frames.
      name: used in error messages.

    Returns:
      (J, F), each float64 [O, N - 2]: the first and the last frame are excluded. An object
      missing from the prediction scores as an empty mask; a predicted label above O is an
      error (the toolkit refuses it too).
    """
    gt_labels = np.asarray(gt_labels)
    pred_labels = np.asarray(pred_labels)
    if gt_labels.shape != pred_labels.shape or gt_labels.ndim != 3:
        raise ValueError(
            f"{name}: predicted labels {pred_labels.shape} and ground truth {gt_labels.shape} "
            "must both be [frames, H, W] of the same shape"
        )
    if gt_labels.shape[0] < 3:
        raise ValueError(f"{name}: needs at least 3 annotated frames, got {gt_labels.shape[0]}")
    first = np.where(gt_labels[0] == VOID_LABEL, 0, gt_labels[0])
    num_objects = int(first.max())
    gt, pred = gt_labels[1:-1], pred_labels[1:-1]
    if int(pred.max(initial=0)) > num_objects:
        raise ValueError(
            f"{name}: a predicted label ({int(pred.max())}) is higher than the number of "
            f"objects in the sequence ({num_objects})"
        )
    # Object ids are 1..O <= 254, so `labels == k` never takes a void (255) pixel: void is
    # background, as the toolkit's loader makes it.
    radius = bound_pixels(*gt.shape[-2:])
    j = np.empty((num_objects, gt.shape[0]), np.float64)
    f = np.empty_like(j)
    for t in range(gt.shape[0]):
        for k in range(num_objects):
            j[k, t], f[k, t] = frame_scores(gt[t] == k + 1, pred[t] == k + 1, radius)
    return j, f


def _check_pair(gt: np.ndarray, pred: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    gt = np.asarray(gt).astype(bool)
    pred = np.asarray(pred).astype(bool)
    if gt.shape != pred.shape or gt.ndim < 2:
        raise ValueError(
            f"ground truth {gt.shape} and prediction {pred.shape} must be masks [..., H, W] "
            "of the same shape"
        )
    return gt, pred
