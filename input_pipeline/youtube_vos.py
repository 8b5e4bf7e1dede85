"""TFDS builder for YouTube-VOS 2018/2019 (train, valid) from extracted folders.

    builder = YoutubeVos(config="2019", data_dir=DATA_DIR)
    builder.download_and_prepare(
        download_config=tfds.download.DownloadConfig(manual_dir=YOUTUBE_ROOT))

Examples follow `vos_format.video_features()`. In `valid`, objects are annotated only on their
first frame (which may be late in the video): `annotated` marks those frames and
`first_frames` gives each object's reference frame.
"""

from __future__ import annotations

import logging

import tensorflow_datasets as tfds

from lcm_jax.input_pipeline import (
    tf_setup,  # noqa: F401
    video_io,
    vos_format,
)

_INSTRUCTIONS = """\
Download YouTube-VOS (2018 or 2019) from https://youtube-vos.org/dataset/vos/ and extract
train.zip and valid.zip so that `manual_dir` holds {train,valid}/JPEGImages/<vid>/00000.jpg,
{train,valid}/Annotations/<vid>/*.png and {train,valid}/meta.json.
"""


class YoutubeVos(vos_format.FolderBuilder):
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
            features=vos_format.video_features(), homepage="https://youtube-vos.org/"
        )

    def _split_generators(self, dl_manager):
        root = dl_manager.manual_dir
        return {split: self._generate_examples(root, split) for split in ("train", "valid")}

    def _generate_examples(self, root, split):
        meta = video_io.youtube_meta(root, split)
        for vid in sorted(meta["videos"]):
            frames, annotations = video_io.youtube_video(root, split, vid)
            by_frame = vos_format.index_annotations(frames, annotations)
            index = {p.stem: t for t, p in enumerate(frames)}
            required_first = {}
            if split != "train":  # valid: each object's first listed frame must be annotated
                for obj, info in meta["videos"][vid]["objects"].items():
                    if not info["frames"] or info["frames"][0] not in index:
                        raise video_io.DatasetError(
                            f"{root}/{split}/meta.json: video {vid!r} object {obj} lists first "
                            f"frame {info['frames'][:1]} that is not in JPEGImages/{vid}"
                        )
                    required_first[int(obj)] = index[info["frames"][0]]
            example = vos_format.video_example(vid, frames, by_frame, required_first=required_first)
            if not len(example["object_ids"]):
                logging.warning("YouTube-VOS %s/%s has no annotated object; skipped", split, vid)
                continue
            yield vid, example
