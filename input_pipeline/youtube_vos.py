"""TFDS builder for YouTube-VOS 2018/2019 (train, valid) from extracted folders.

    builder = YoutubeVos(config="2019", data_dir=DATA_DIR)
    builder.download_and_prepare(
        download_config=tfds.download.DownloadConfig(manual_dir=YOUTUBE_ROOT))

Examples follow `tfds_features.video_features()`. In `valid`, objects are annotated only on their
first frame (which may be late in the video): `annotated` marks those frames and
`first_frames` gives each object's reference frame.
"""

from __future__ import annotations

import tensorflow_datasets as tfds

from lcm_jax.input_pipeline import (
    folder_source,
    tf_setup,  # noqa: F401
    tfds_features,
    video_io,
)

_INSTRUCTIONS = """\
Download YouTube-VOS (2018 or 2019) from https://youtube-vos.org/dataset/vos/ and extract
train.zip and valid.zip so that `manual_dir` holds {train,valid}/JPEGImages/<vid>/00000.jpg,
{train,valid}/Annotations/<vid>/*.png and {train,valid}/meta.json.
"""


class YoutubeVos(tfds_features.FolderBuilder):
    """YouTube-VOS, one example per video (splits train, valid)."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Initial release."}
    MANUAL_DOWNLOAD_INSTRUCTIONS = _INSTRUCTIONS
    BUILDER_CONFIGS = [
        tfds.core.BuilderConfig(name="2018", description="YouTube-VOS 2018"),
        tfds.core.BuilderConfig(name="2019", description="YouTube-VOS 2019"),
    ]

    def _info(self) -> tfds.core.DatasetInfo:
        return self.dataset_info_from_configs(
            features=tfds_features.video_features(), homepage="https://youtube-vos.org/"
        )

    def _split_generators(self, dl_manager):
        root = dl_manager.manual_dir
        return {split: self._generate_examples(root, split) for split in ("train", "valid")}

    def _generate_examples(self, root, split):
        meta = video_io.youtube_meta(root, split)["videos"]
        for vid in sorted(meta):
            example = folder_source.youtube_example(root, split, vid, meta[vid]["objects"])
            if example is not None:
                yield vid, example
