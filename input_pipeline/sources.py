"""Random-access sources of videos for the clip builders: the record format, and sources of them.

A source is a sequence of *records*; a record is a dict (NumPy / Python values):
    name           str
    frames         list[bytes] [T]      encoded JPEG/PNG frames
    segmentations  list[bytes] [T]      encoded grey ('L') PNG label maps (object ids, 255 void;
                                        never palette PNGs: TF would decode their colours)
    annotated      bool [T]
    object_ids     int32 [K]
    presence       bool [T, K]
    boxes          float32 [T, K, 4]    (y0, x0, y1, x1) pixel edges
A static image is a one-frame record. Only the three frames of a clip are ever decoded. Records
come from a prepared TFDS set (`tfds_sets.TfdsSource`, random access to its ArrayRecord files),
straight from the folders (`folder_source.FolderSource`), or from memory (`record_from_arrays`).
This module never imports TensorFlow.
"""

from __future__ import annotations

import io
from collections.abc import Sequence

import numpy as np
from PIL import Image

from lcm_jax.input_pipeline.video_io import DatasetError


class ConcatSource(Sequence):
    """Several sources as one (index space: the first source's records, then the next, ...)."""

    def __init__(self, sources: Sequence[Sequence]):
        self._sources = list(sources)
        self._offsets = np.cumsum([0] + [len(s) for s in self._sources])

    def __len__(self) -> int:
        return int(self._offsets[-1])

    def __getitem__(self, index: int) -> dict:
        s = int(np.searchsorted(self._offsets, index, side="right")) - 1
        return self._sources[s][int(index - self._offsets[s])]


class SubsetSource(Sequence):
    """The records `indices` of a source (a host's shard)."""

    def __init__(self, source: Sequence, indices: np.ndarray):
        self._source = source
        self.indices = np.asarray(indices, np.int64)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index: int) -> dict:
        return self._source[int(self.indices[index])]


def shard(source: Sequence, process_index: int, process_count: int) -> SubsetSource:
    """Process `process_index`'s contiguous, disjoint share of the records (as
    `tfds.split_for_jax_process`: even splits, the first ones one record longer)."""
    if not 0 <= process_index < process_count:
        raise ValueError(f"process_index {process_index} not in [0, {process_count})")
    if len(source) < process_count:
        raise DatasetError(
            f"{len(source)} videos cannot be shared among {process_count} processes; "
            "every process needs one"
        )
    return SubsetSource(
        source, np.array_split(np.arange(len(source)), process_count)[process_index]
    )


def encode_png(array: np.ndarray) -> bytes:
    """uint8 [H, W] or [H, W, 1|3] -> PNG bytes."""
    array = np.asarray(array, np.uint8)
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def encode_jpeg(frame: np.ndarray, quality: int = 95) -> bytes:
    """uint8 [H, W, 3] -> JPEG bytes."""
    buffer = io.BytesIO()
    Image.fromarray(np.asarray(frame, np.uint8)).save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def record_from_arrays(video: dict) -> dict:
    """A decoded `vos_format` example (e.g. `davis.from_tfds_davis`) -> record (JPEG frames,
    grey PNG label maps)."""
    return {
        "name": video["video_name"],
        "frames": [encode_jpeg(f) for f in video["frames"]],
        "segmentations": [encode_png(s) for s in video["segmentations"]],
        "annotated": np.asarray(video["annotated"], bool),
        "object_ids": np.asarray(video["object_ids"], np.int32),
        "presence": np.asarray(video["presence"], bool),
        "boxes": np.asarray(video["boxes"], np.float32),
    }


def image_size(encoded: bytes) -> tuple[int, int]:
    """(H, W) of an encoded image, from its header."""
    with Image.open(io.BytesIO(encoded)) as image:
        return image.height, image.width
