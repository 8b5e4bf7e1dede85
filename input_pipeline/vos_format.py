"""The one example format shared by every video set (DAVIS 2017, YouTube-VOS, synthetic).

One example per video, T frames, K annotated objects:
    video_name     Text
    frame_names    Sequence(Text) [T]             file stems ("00000", "00005", ...)
    frames         Video uint8 [T, H, W, 3]        (JPEG bytes as in the source folder)
    segmentations  Video uint8 [T, H, W, 1]        object ids (0 background, 255 void); zeros
                                                   on frames without an annotation file
    annotated      bool [T]                        the frame has an annotation file
    object_ids     int32 [K]                       ids present in some annotation, sorted
    first_frames   int32 [K]                       per object, first frame index it is annotated in
    presence       bool [T, K]                     object k has pixels in frame t's annotation
    boxes          float32 [T, K, 4]               (y0, x0, y1, x1) pixel-edge box of object k in
                                                   frame t (y1, x1 exclusive); zeros when absent

`video_example` reads one video of a folder into this format (NumPy + Pillow; this module never
imports TensorFlow); the TFDS builders store it (`tfds_features.video_features()`) and
`folder_source` turns it into records directly. Static image sets use
`tfds_features.static_features()` (one image, one label map). The clip builders (`clips.py`)
read only `frames`/`segmentations` of the three frames of a clip, and sample from `annotated`,
`presence` and `boxes`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from lcm_jax.input_pipeline import video_io
from lcm_jax.input_pipeline.video_io import VOID_LABEL, DatasetError


def label_boxes(labels: np.ndarray, object_ids: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """Presence bool [K] and boxes float32 [K, 4] (y0, x0, y1, x1; pixel edges) of a label map."""
    presence = np.zeros(len(object_ids), bool)
    boxes = np.zeros((len(object_ids), 4), np.float32)
    for k, obj in enumerate(object_ids):
        rows = np.flatnonzero((labels == obj).any(axis=1))
        if rows.size:
            cols = np.flatnonzero((labels == obj).any(axis=0))
            presence[k] = True
            boxes[k] = (rows[0], cols[0], rows[-1] + 1, cols[-1] + 1)
    return presence, boxes


def object_ids_of(labels: np.ndarray) -> list[int]:
    """Object ids of a label map: its values other than 0 and VOID_LABEL (255)."""
    return [int(v) for v in np.unique(labels) if v not in (0, VOID_LABEL)]


def video_example(
    name: str,
    frame_paths: Sequence[Path],
    annotation_paths: Mapping[int, Path],
    *,
    required_first: Mapping[int, int] | None = None,
) -> dict:
    """Reads and checks one video; returns a `video_features()` example.

    Args:
        name: video name.
        frame_paths: T frame files, in order.
        annotation_paths: frame index -> annotation PNG (palette or grey), possibly sparse.
        required_first: object id -> frame index whose annotation must hold that object (its
            first frame, e.g. DAVIS frame 0 or YouTube-VOS meta.json); a missing file or an
            object missing from it raises.

    Raises:
        DatasetError: a corrupt frame, frames of different sizes, an RGB annotation, an
            annotation whose size differs from its frame, a missing first-frame annotation.
    """
    sizes = []
    for path in frame_paths:
        sizes.append(video_io.read_frame(path).shape[:2])
        if sizes[-1] != sizes[0]:
            raise DatasetError(
                f"frame {os.fspath(path)!r} is {sizes[-1]}, but {os.fspath(frame_paths[0])!r} is "
                f"{sizes[0]}: all frames of a video must have one size"
            )
    height, width = sizes[0]
    labels = {}
    for t, path in sorted(annotation_paths.items()):
        label = video_io.read_label_png(path)
        if label.shape != (height, width):
            raise DatasetError(
                f"annotation {os.fspath(path)!r} is {label.shape}, but its frame "
                f"{os.fspath(frame_paths[t])!r} is {(height, width)}"
            )
        labels[t] = label
    for obj, t in (required_first or {}).items():
        if t not in labels:
            raise DatasetError(
                f"video {name!r}: the first-frame annotation of object {obj} (frame "
                f"{Path(frame_paths[t]).stem}) is missing"
            )
        if not (labels[t] == obj).any():
            raise DatasetError(
                f"annotation {os.fspath(annotation_paths[t])!r} should hold object {obj} (its "
                "first frame) but has no pixel of it"
            )
    object_ids = sorted({obj for label in labels.values() for obj in object_ids_of(label)})
    num_frames = len(frame_paths)
    segmentations = np.zeros((num_frames, height, width, 1), np.uint8)
    presence = np.zeros((num_frames, len(object_ids)), bool)
    boxes = np.zeros((num_frames, len(object_ids), 4), np.float32)
    for t, label in labels.items():
        segmentations[t, ..., 0] = label
        presence[t], boxes[t] = label_boxes(label, object_ids)
    first_frames = [int(np.flatnonzero(presence[:, k])[0]) for k in range(len(object_ids))]
    return {
        "video_name": name,
        "frame_names": [Path(p).stem for p in frame_paths],
        "frames": [os.fspath(p) for p in frame_paths],
        "segmentations": segmentations,
        "annotated": np.array([t in labels for t in range(num_frames)], bool),
        "object_ids": np.array(object_ids, np.int32),
        "first_frames": np.array(first_frames, np.int32),
        "presence": presence,
        "boxes": boxes,
    }


def index_annotations(
    frame_paths: Sequence[Path], annotation_paths: Sequence[Path]
) -> dict[int, Path]:
    """Maps each annotation to the index of the frame with the same file stem."""
    index = {Path(p).stem: t for t, p in enumerate(frame_paths)}
    out = {}
    for path in annotation_paths:
        if path.stem not in index:
            raise DatasetError(f"annotation {os.fspath(path)!r} has no frame with the same name")
        out[index[path.stem]] = path
    return out
