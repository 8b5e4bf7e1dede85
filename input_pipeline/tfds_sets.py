"""The prepared TFDS sets: their builders by dataset name, preparing them, reading their records.

    builder = get_builder("davis17", data_dir)
    prepare_builder(builder, manual_dir)  # ArrayRecord files, for random access
    source = TfdsSource(builder, "train")  # records (`sources` module docstring)

This is the record source of the tf.data feed (`config.data.feed="tf.data"`); the NumPy feed
reads the same records from the folders (`folder_source`) and never imports this module.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
import threading
import zlib
from collections.abc import Iterator, Sequence
from pathlib import Path

import ml_collections
import numpy as np
import tensorflow_datasets as tfds

from lcm_jax.input_pipeline import (
    davis,
    static_images,
    tf_setup,  # noqa: F401
    youtube_vos,
)
from lcm_jax.input_pipeline.video_io import DatasetError

# dataset -> builder of (config or None: the defaults, data_dir)
BUILDERS = {
    "davis17": lambda config, data_dir: davis.Davis2017Vos(
        config=config.davis_resolution if config is not None else "480p", data_dir=data_dir
    ),
    "youtube": lambda config, data_dir: youtube_vos.YoutubeVos(
        config=config.youtube_version if config is not None else "2019", data_dir=data_dir
    ),
    "static": lambda config, data_dir: static_images.StaticSegmentation(data_dir=data_dir),
}


_TEMPDIR_LOCK = threading.RLock()


@contextlib.contextmanager
def _own_tempdir() -> Iterator[None]:
    """Points `tempfile` at a folder of its own for the block, and removes that folder after.

    TFDS (4.9) leaves an empty /tmp/tmp*tfds folder behind each time it creates the builder of a
    set that is not prepared yet: `DatasetInfo.initialize_from_bucket` calls `tempfile.mkdtemp`
    before it learns that GCS lookups are disabled, and never removes it; no builder option
    skips the call. `tempfile.tempdir` is process-wide: the lock keeps the blocks of different
    threads from restoring each other's folder."""
    with _TEMPDIR_LOCK:
        previous = tempfile.tempdir
        folder = tempfile.mkdtemp(prefix="lcm_jax_tfds_")
        tempfile.tempdir = folder
        try:
            yield
        finally:
            tempfile.tempdir = previous
            shutil.rmtree(folder, ignore_errors=True)


def get_builder(dataset: str, data_dir: str, config: ml_collections.ConfigDict | None = None):
    """The TFDS builder of `dataset` ("davis17" | "youtube" | "static") in `data_dir`."""
    if dataset not in BUILDERS:
        raise ValueError(f"dataset must be one of {sorted(BUILDERS)}, got {dataset!r}")
    with _own_tempdir():  # no /tmp/tmp*tfds folder left behind
        return BUILDERS[dataset](config, data_dir)


def prepare_builder(builder: tfds.core.DatasetBuilder, manual_dir: str | Path) -> None:
    """Builds the TFDS set from extracted folders in ArrayRecord format (random access).

    Raises DatasetError (one line, with the download instructions) when `manual_dir` is
    missing; nothing is written then."""
    if not Path(manual_dir).is_dir():
        instructions = " ".join(builder.MANUAL_DOWNLOAD_INSTRUCTIONS.split())
        raise DatasetError(
            f"{builder.info.full_name} is not prepared in {str(builder.data_dir_root)!r} and its "
            f"manual_dir {str(manual_dir)!r} does not exist. {instructions}"
        )
    builder.download_and_prepare(
        download_config=tfds.download.DownloadConfig(manual_dir=str(manual_dir)),
        file_format="array_record",
    )


def open_split(
    config: ml_collections.ConfigDict,
    dataset: str,
    split: str,
    *,
    manual_dir: Path,
    prepare_command: str,
    why_not: str | None,
) -> Sequence:
    """The records of `split` of `dataset`'s prepared set in `config.data_dir`, prepared from
    `manual_dir` first when it is missing and `why_not` is None; otherwise a one-line
    DatasetError that says `why_not` and the `prepare_command` to run. With
    `config.davis_builder == "davis"`, tfds's own `davis` set (in memory)."""
    if dataset == "davis17" and config.davis_builder == "davis":
        return davis.tfds_davis_records(
            split, data_dir=config.data_dir, resolution=config.davis_resolution
        )
    builder = get_builder(dataset, config.data_dir, config)
    if not builder.is_prepared():
        if why_not is not None:
            raise DatasetError(
                f"{builder.info.full_name} is not prepared in {config.data_dir!r} and "
                f"{why_not}; run {prepare_command}"
            )
        prepare_builder(builder, manual_dir)
    return TfdsSource(builder, split)


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
