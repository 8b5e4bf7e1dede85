"""TFDS builder for DAVIS 2017 (train/val, 480p and full resolution) from extracted folders.

    builder = Davis2017Vos(config="480p", data_dir=DATA_DIR)
    builder.download_and_prepare(
        download_config=tfds.download.DownloadConfig(manual_dir=DAVIS_ROOT))

Examples follow `tfds_features.video_features()`. tfds's own `davis` dataset, when a user has
prepared it, is converted to the same format by `from_tfds_davis`.
"""

from __future__ import annotations

import numpy as np
import tensorflow_datasets as tfds

from lcm_jax.input_pipeline import (
    folder_source,
    sources,
    tf_setup,  # noqa: F401
    tfds_features,
    video_io,
    vos_format,
)

_INSTRUCTIONS = """\
Download DAVIS-2017-trainval-480p.zip (and/or DAVIS-2017-trainval-Full-Resolution.zip) from
https://davischallenge.org/davis2017/code.html and extract it, so that `manual_dir` holds
JPEGImages/<480p|Full-Resolution>/<seq>/00000.jpg, Annotations/<480p|Full-Resolution>/<seq>/*.png
and ImageSets/2017/{train,val}.txt.
"""


class DavisConfig(tfds.core.BuilderConfig):
    """A DAVIS resolution: `resolution` is the folder name under JPEGImages/ and Annotations/."""

    def __init__(self, *, resolution: str, **kwargs):
        super().__init__(**kwargs)
        self.resolution = resolution


class Davis2017Vos(tfds_features.FolderBuilder):
    """DAVIS 2017 semi-supervised VOS, one example per sequence (splits train, val)."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Initial release."}
    MANUAL_DOWNLOAD_INSTRUCTIONS = _INSTRUCTIONS
    BUILDER_CONFIGS = [
        DavisConfig(
            name=name, resolution=folder_source.DAVIS_RESOLUTIONS[name], description=description
        )
        for name, description in (("480p", "480p frames"), ("full_resolution", "original size"))
    ]

    def _info(self) -> tfds.core.DatasetInfo:
        return self.dataset_info_from_configs(
            features=tfds_features.video_features(),
            homepage="https://davischallenge.org/davis2017/code.html",
        )

    def _split_generators(self, dl_manager):
        root = dl_manager.manual_dir
        return {split: self._generate_examples(root, split) for split in ("train", "val")}

    def _generate_examples(self, root, split):
        for seq in video_io.davis_sequences(root, split):
            yield seq, folder_source.davis_example(root, seq, self.builder_config.resolution)


def from_tfds_davis(example: dict) -> dict:
    """Converts a NumPy example of tfds's `davis` dataset to `vos_format` (decoded arrays).

    Args:
        example: {"metadata": {"video_name": bytes|str}, "video": {"frames": uint8 [T, H, W, 3],
            "segmentations": uint8 [T, H, W, 1]}} (as `tfds.as_numpy` yields it).
    Returns:
        A dict with the `vos_format` keys; `frames` and `segmentations` are decoded uint8 arrays
        (the clip builders accept encoded bytes or decoded arrays).
    """
    name = example["metadata"]["video_name"]
    name = name.decode() if isinstance(name, bytes) else str(name)
    frames = np.asarray(example["video"]["frames"], np.uint8)
    segmentations = np.asarray(example["video"]["segmentations"], np.uint8)
    object_ids = sorted(
        {
            obj
            for t in range(len(segmentations))
            for obj in vos_format.object_ids_of(segmentations[t])
        }
    )
    num_frames = len(frames)
    presence = np.zeros((num_frames, len(object_ids)), bool)
    boxes = np.zeros((num_frames, len(object_ids), 4), np.float32)
    for t in range(num_frames):
        presence[t], boxes[t] = vos_format.label_boxes(segmentations[t, ..., 0], object_ids)
    return {
        "video_name": name,
        "frame_names": [f"{t:05d}" for t in range(num_frames)],
        "frames": frames,
        "segmentations": segmentations,
        "annotated": np.ones(num_frames, bool),
        "object_ids": np.array(object_ids, np.int32),
        "first_frames": np.array(
            [np.flatnonzero(presence[:, k])[0] for k in range(len(object_ids))], np.int32
        ),
        "presence": presence,
        "boxes": boxes,
    }


def tfds_davis_records(split: str, *, data_dir: str | None, resolution: str = "480p") -> list:
    """Clip-builder records (`sources` module) of tfds's own `davis/<resolution>` set.

    The user prepares it (`tfds.builder("davis/480p").download_and_prepare()`); its splits are
    "train" and "validation". The videos are held in memory (JPEG frames, PNG label maps).
    """
    dataset = tfds.load(f"davis/{resolution}", split=split, data_dir=data_dir, download=False)
    return [sources.record_from_arrays(from_tfds_davis(e)) for e in tfds.as_numpy(dataset)]
