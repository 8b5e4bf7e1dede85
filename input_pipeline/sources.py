"""Random-access sources of videos for the clip builders (prepared TFDS sets or in-memory lists).

A source is a sequence of *records*; a record is a dict (NumPy / Python values):
    name           str
    frames         list[bytes] [T]      encoded JPEG/PNG frames
    segmentations  list[bytes] [T]      encoded grey ('L') PNG label maps (object ids, 255 void;
                                        never palette PNGs: TF would decode their colours)
    annotated      bool [T]
    object_ids     int32 [K]
    presence       bool [T, K]
    boxes          float32 [T, K, 4]    (y0, x0, y1, x1) pixel edges
A static image is a one-frame record. Only the three frames of a clip are ever decoded; the
records of a TFDS set are read with random access from its ArrayRecord files, so prepare the
builders with `file_format="array_record"` (as `lcm_jax.input_pipeline.prepare` does).
"""

from __future__ import annotations

import io
import zlib
from collections.abc import Sequence

import numpy as np
import tensorflow_datasets as tfds
from PIL import Image

from lcm_jax.input_pipeline import tf_setup  # noqa: F401
from lcm_jax.input_pipeline.video_io import DatasetError


def _zlib_tensor(feature, key: str, dtype, inner_shape: tuple[int, ...] = ()) -> np.ndarray:
    """A ZLIB-encoded tfds Tensor: `key/value` + `key/shape` (several unknown dimensions) or
    `key` alone (one unknown leading dimension, `inner_shape` the rest)."""
    if f"{key}/shape" in feature:
        shape = list(feature[f"{key}/shape"].int64_list.value)
        raw = zlib.decompress(feature[f"{key}/value"].bytes_list.value[0])
    else:
        shape = [-1, *inner_shape]
        raw = zlib.decompress(feature[key].bytes_list.value[0])
    return np.frombuffer(raw, dtype).reshape(shape)


def parse_video_proto(example) -> dict:
    """A serialized `vos_format.video_features()` tf.train.Example (parsed proto) -> record."""
    f = example.features.feature
    return {
        "name": f["video_name"].bytes_list.value[0].decode(),
        "frames": list(f["frames"].bytes_list.value),
        "segmentations": list(f["segmentations"].bytes_list.value),
        "annotated": np.array(f["annotated"].int64_list.value, bool),
        "object_ids": np.array(f["object_ids"].int64_list.value, np.int32),
        "presence": _zlib_tensor(f, "presence", np.bool_),
        "boxes": _zlib_tensor(f, "boxes", np.float32),
    }


def parse_static_proto(example) -> dict:
    """A serialized `vos_format.static_features()` example -> one-frame record."""
    f = example.features.feature
    object_ids = np.array(f["object_ids"].int64_list.value, np.int32)
    return {
        "name": f["image_name"].bytes_list.value[0].decode(),
        "frames": [f["image"].bytes_list.value[0]],
        "segmentations": [f["segmentation"].bytes_list.value[0]],
        "annotated": np.ones(1, bool),
        "object_ids": object_ids,
        "presence": np.ones((1, len(object_ids)), bool),
        "boxes": _zlib_tensor(f, "boxes", np.float32, (4,))[None],
    }


class TfdsSource(Sequence):
    """Records of one split of a prepared builder (ArrayRecord format), random access."""

    def __init__(self, builder: tfds.core.DatasetBuilder, split: str):
        try:
            self._data = builder.as_data_source(
                split, deserialize_method=tfds.decode.DeserializeMethod.DESERIALIZE_NO_DECODE
            )
        except NotImplementedError as e:
            raise DatasetError(
                f"{builder.info.full_name} in {builder.data_dir!r} is not in ArrayRecord format; "
                "prepare it with `python -m lcm_jax.input_pipeline.prepare` "
                "(file_format=array_record)"
            ) from e
        static = "image" in builder.info.features
        self._parse = parse_static_proto if static else parse_video_proto
        self.name = f"{builder.info.full_name}:{split}"

    def __len__(self) -> int:
        return len(self._data)

    def __getitem__(self, index: int) -> dict:
        return self._parse(self._data[int(index)])


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
