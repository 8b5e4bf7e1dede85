"""The prepared TFDS sets: their builders by dataset name, preparing them, reading their records.

    builder = get_builder("davis17", data_dir)
    prepare_builder(builder, manual_dir)  # ArrayRecord files, for random access
    source = TfdsSource(builder, "train")  # records (`sources` module docstring)

This is the record source of the tf.data feed (`config.data.feed="tf.data"`); the NumPy feed
reads the same records from the folders (`folder_source`) and never imports this module.

A prepared set is reused, never rebuilt. So that it is not reused for another source, preparing
records beside it (`SOURCE_FILE`, in the builder's version folder) the resolved path of its
`manual_dir` and, for a folder of the synthetic generator, the generator's settings; asked for
the set again with a `manual_dir` that exists and differs in either, `prepare_builder` and
`open_split` stop with a DatasetError naming the difference. Files changed inside the same folder
are not detected (as `lcm_jax.evaluate` records the dataset's root, not its content). A set
without the record (prepared before it was kept, or by tfds itself) is used as it is.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import tempfile
import threading
import zlib
from collections.abc import Iterator, Sequence
from pathlib import Path

import ml_collections
import numpy as np
import tensorflow_datasets as tfds

from lcm_jax import files
from lcm_jax.input_pipeline import (
    davis,
    static_images,
    synthetic,
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


SOURCE_FILE = "lcm_source.json"  # beside a prepared set: what it was prepared from


def source_of(manual_dir: str | Path) -> dict:
    """What a set prepared from `manual_dir` records: the folder's resolved path and, where the
    synthetic generator wrote it (its parent holds the generator's settings), those settings."""
    folder = Path(manual_dir).resolve()
    record = {"manual_dir": str(folder)}
    settings = folder.parent / synthetic.SETTINGS_FILE
    if settings.is_file():
        record["synthetic"] = _read_json(settings)
    return record


def _read_json(path: Path):
    try:
        return json.loads(path.read_text())
    except ValueError as e:
        raise DatasetError(f"{path} is not valid JSON (damaged?): {e}") from e


def check_source(builder: tfds.core.DatasetBuilder, manual_dir: str | Path) -> None:
    """Raises DatasetError when `builder`'s prepared set records another source than
    `manual_dir`; nothing to compare when either the record or `manual_dir` is missing."""
    path = Path(builder.data_dir) / SOURCE_FILE
    if not path.is_file() or not Path(manual_dir).is_dir():
        return
    recorded, current = _read_json(path), source_of(manual_dir)
    if recorded == current:
        return
    if recorded.get("manual_dir") != current["manual_dir"]:
        what = f"from {recorded.get('manual_dir')}, not {current['manual_dir']}"
    else:
        old, new = recorded.get("synthetic") or {}, current.get("synthetic") or {}
        differing = [
            f"{k}: {json.dumps(old.get(k))} -> {json.dumps(new.get(k))}"
            for k in sorted(set(old) | set(new))
            if old.get(k) != new.get(k)
        ]
        what = f"from synthetic videos of other settings ({'; '.join(differing)})"
    raise DatasetError(
        f"{builder.info.full_name} in {str(builder.data_dir_root)!r} was prepared {what}; "
        f"prepare into another data_dir, or remove {builder.data_dir} to prepare it again"
    )


def prepare_builder(builder: tfds.core.DatasetBuilder, manual_dir: str | Path) -> None:
    """Builds the TFDS set from extracted folders in ArrayRecord format (random access), and
    records its source; a set prepared already is checked against `manual_dir` instead.

    Raises DatasetError (one line) when `manual_dir` is missing (with the download
    instructions), or the prepared set records another source; nothing is written then."""
    if not Path(manual_dir).is_dir():
        instructions = " ".join(builder.MANUAL_DOWNLOAD_INSTRUCTIONS.split())
        raise DatasetError(
            f"{builder.info.full_name} is not prepared in {str(builder.data_dir_root)!r} and its "
            f"manual_dir {str(manual_dir)!r} does not exist. {instructions}"
        )
    if builder.is_prepared():
        check_source(builder, manual_dir)
        return
    builder.download_and_prepare(
        download_config=tfds.download.DownloadConfig(manual_dir=str(manual_dir)),
        file_format="array_record",
    )
    source = json.dumps(source_of(manual_dir), indent=1, sort_keys=True) + "\n"
    files.write_text(Path(builder.data_dir) / SOURCE_FILE, source)


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
    DatasetError that says `why_not` and the `prepare_command` to run. A prepared set that
    records another source than `manual_dir` is a DatasetError (module docstring). With
    `config.davis_builder == "davis"`, tfds's own `davis` set (in memory)."""
    if dataset == "davis17" and config.davis_builder == "davis":
        return davis.tfds_davis_records(
            split, data_dir=config.data_dir, resolution=config.davis_resolution
        )
    builder = get_builder(dataset, config.data_dir, config)
    if builder.is_prepared():
        check_source(builder, manual_dir)
    elif why_not is not None:
        raise DatasetError(
            f"{builder.info.full_name} is not prepared in {config.data_dir!r} and "
            f"{why_not}; run {prepare_command}"
        )
    else:
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
