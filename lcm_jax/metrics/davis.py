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

Everything is vectorised NumPy/SciPy over leading axes ([..., H, W] masks); OpenCV is not used:
the disk dilation is a threshold of SciPy's exact Euclidean distance transform (`dilate_disk`),
which sets the same pixels as `cv2.dilate` with the disk footprint.
"""

import math
import warnings

import numpy as np
from scipy import ndimage

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
    """Dilation of binary maps bool [K, H, W] by a disk of `radius`, each map on its own.

    A pixel is set when a set pixel lies within Euclidean distance `radius`, i.e. at an
    integer offset with dy² + dx² <= r²: exactly the toolkit's
    `cv2.dilate(b, skimage.morphology.disk(r))` (squared distances are integers, so the float
    comparison is exact). A Euclidean distance transform: O(H·W) per map whatever the radius.
    """
    out = np.zeros_like(bmaps, dtype=bool)
    for k in np.flatnonzero(bmaps.any(axis=(1, 2))):
        out[k] = ndimage.distance_transform_edt(~bmaps[k]) <= radius
    return out


def boundary_f(gt: np.ndarray, pred: np.ndarray, bound_th: float = BOUND_TH) -> np.ndarray:
    """Boundary similarity F per mask: gt, pred bool [..., H, W] -> float64 [...].

    Precision P = |B_pred ∩ dilate(B_gt)| / |B_pred|, recall R = |B_gt ∩ dilate(B_pred)| /
    |B_gt|, F = 2PR / (P + R) (0 when P + R = 0). Empty boundaries, as the toolkit: none
    predicted but some in the ground truth -> P = 1, R = 0; the reverse -> P = 0, R = 1;
    both empty -> P = R = 1 (F = 1).
    """
    gt, pred = _check_pair(gt, pred)
    lead, (h, w) = gt.shape[:-2], gt.shape[-2:]
    b_pred = seg2bmap(pred).reshape(-1, h, w)
    b_gt = seg2bmap(gt).reshape(-1, h, w)
    radius = bound_pixels(h, w, bound_th)
    dil_pred = dilate_disk(b_pred, radius)
    dil_gt = dilate_disk(b_gt, radius)
    n_pred = b_pred.sum(axis=(1, 2)).astype(np.float64)
    n_gt = b_gt.sum(axis=(1, 2)).astype(np.float64)
    pred_match = (b_pred & dil_gt).sum(axis=(1, 2))
    gt_match = (b_gt & dil_pred).sum(axis=(1, 2))
    precision = np.where(n_pred == 0, 1.0, pred_match / np.maximum(n_pred, 1))
    recall = np.where(n_gt == 0, 1.0, gt_match / np.maximum(n_gt, 1))
    # Empty prediction with a non-empty gt: P = 1, R = 0 (R is already 0); the reverse: P = 0.
    total = precision + recall
    f = np.where(total == 0, 0.0, 2 * precision * recall / np.where(total == 0, 1, total))
    return f.reshape(lead)


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


def labels_to_masks(labels: np.ndarray, num_objects: int) -> np.ndarray:
    """Label maps int [N, H, W] (0 background, VOID_LABEL -> background) -> bool [O, N, H, W]."""
    labels = np.asarray(labels)
    labels = np.where(labels == VOID_LABEL, 0, labels)
    ids = np.arange(1, num_objects + 1).reshape(-1, 1, 1, 1)
    return labels[None] == ids


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
    gt_masks = labels_to_masks(gt, num_objects)
    pred_masks = labels_to_masks(pred, num_objects)
    return jaccard(gt_masks, pred_masks), boundary_f(gt_masks, pred_masks)


def _check_pair(gt: np.ndarray, pred: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    gt = np.asarray(gt).astype(bool)
    pred = np.asarray(pred).astype(bool)
    if gt.shape != pred.shape or gt.ndim < 2:
        raise ValueError(
            f"ground truth {gt.shape} and prediction {pred.shape} must be masks [..., H, W] "
            "of the same shape"
        )
    return gt, pred
