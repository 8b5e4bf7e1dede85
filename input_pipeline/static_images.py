"""TFDS builder for static image/mask pairs (ECSSD, MSRA10K, DUTS, HKU-IS style; pretraining).

    builder = StaticSegmentation(data_dir=DATA_DIR)
    builder.download_and_prepare(
        download_config=tfds.download.DownloadConfig(manual_dir=STATIC_ROOT))

Pairing rule (covers the published layouts of these sets and the synthetic generator's):
- a mask is a `.png` in a folder whose name contains mask/gt/ground/annot/label/segment, or a
  `.png` beside a `.jpg` of the same stem (MSRA10K keeps both in one folder);
- an image is any other `.jpg`/`.jpeg`/`.png`/`.bmp`;
- image and mask pair when they share a stem and a dataset: the first folder under
  `manual_dir` when the file sits two folders deep or more (`manual_dir/ECSSD/images/x.jpg`),
  otherwise the whole of `manual_dir` (`manual_dir/images/x.jpg`).
Images without a mask are skipped with one counted warning.

Masks: a palette ('P') PNG is a label map (pixel value = object id, 255 void; COCO-instance
style); a grey ('L' or '1') PNG is a saliency mask, object 1 where the value is >= 128. An RGB
mask, or one whose size differs from its image, raises a DatasetError naming the file.
Examples follow `lcm_jax.input_pipeline.tfds_features.static_features()`.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path

import numpy as np
import tensorflow_datasets as tfds
from PIL import Image

from lcm_jax.input_pipeline import (
    tf_setup,  # noqa: F401
    tfds_features,
    video_io,
    vos_format,
)
from lcm_jax.input_pipeline.video_io import DatasetError

_MASK_FOLDER = re.compile(r"mask|gt|ground|annot|label|segment", re.IGNORECASE)
_IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")

_INSTRUCTIONS = """\
Extract any of ECSSD, MSRA10K, DUTS-TR, HKU-IS (or COCO instance masks rendered as palette
PNGs) under `manual_dir`, one folder per set, keeping each set's image and mask folders (see
`input_pipeline/static_images.py` for the pairing rule).
"""


def read_static_mask(path: str | os.PathLike) -> np.ndarray:
    """Reads a static-set mask as uint8 [H, W] object ids (see the module docstring)."""
    try:
        with Image.open(path) as image:
            image.load()
            mode = image.mode
            if mode == "P":
                return np.array(image, np.uint8)
            if mode in ("L", "1"):
                return (np.array(image.convert("L"), np.uint8) >= 128).astype(np.uint8)
    except (OSError, SyntaxError, ValueError) as e:
        raise DatasetError(f"cannot read mask {os.fspath(path)!r}: {e}") from e
    raise DatasetError(
        f"mask {os.fspath(path)!r} has image mode {mode!r}: it must be a palette label map "
        "('P') or a grey saliency mask ('L')"
    )


def find_pairs(root: str | os.PathLike) -> tuple[list[tuple[str, Path, Path]], int]:
    """Returns ([(name, image path, mask path)] sorted by name, number of unpaired images)."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"static image folder {os.fspath(root)!r} does not exist")
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in _IMAGE_SUFFIXES)
    jpg_stems = {(p.parent, p.stem) for p in files if p.suffix.lower() in (".jpg", ".jpeg")}

    def dataset(path: Path) -> str:
        parts = path.relative_to(root).parts
        return parts[0] if len(parts) >= 3 else ""

    images, masks = {}, {}
    for p in files:
        is_mask = p.suffix.lower() == ".png" and (
            _MASK_FOLDER.search(p.parent.name) or (p.parent, p.stem) in jpg_stems
        )
        (masks if is_mask else images)[(dataset(p), p.stem)] = p
    pairs = [
        (f"{d}/{stem}" if d else stem, images[(d, stem)], masks[(d, stem)])
        for d, stem in sorted(images)
        if (d, stem) in masks
    ]
    return pairs, len(images) - len(pairs)


class StaticSegmentation(tfds_features.FolderBuilder):
    """Static image/mask pairs for the pretraining stage (split train)."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Initial release."}
    MANUAL_DOWNLOAD_INSTRUCTIONS = _INSTRUCTIONS

    def _info(self) -> tfds.core.DatasetInfo:
        return self.dataset_info_from_configs(features=tfds_features.static_features())

    def _split_generators(self, dl_manager):
        return {"train": self._generate_examples(dl_manager.manual_dir)}

    def _generate_examples(self, root):
        pairs, unpaired = find_pairs(root)
        if unpaired:
            logging.warning(
                "static images: %d images under %s have no mask; skipped", unpaired, root
            )
        if not pairs:
            raise DatasetError(f"no image/mask pair found under {os.fspath(root)!r}")
        for name, image_path, mask_path in pairs:
            image = video_io.read_frame(image_path)
            labels = read_static_mask(mask_path)
            if labels.shape != image.shape[:2]:
                raise DatasetError(
                    f"mask {os.fspath(mask_path)!r} is {labels.shape}, but its image "
                    f"{os.fspath(image_path)!r} is {image.shape[:2]}"
                )
            object_ids = vos_format.object_ids_of(labels)
            if not object_ids:
                logging.warning("static mask %s has no object; skipped", mask_path)
                continue
            _, boxes = vos_format.label_boxes(labels, object_ids)
            jpeg = image_path.suffix.lower() in (".jpg", ".jpeg")
            yield (
                name,
                {
                    "image_name": name,
                    "image": os.fspath(image_path) if jpeg else image,
                    "segmentation": labels[..., None],
                    "object_ids": np.array(object_ids, np.int32),
                    "boxes": boxes,
                },
            )
