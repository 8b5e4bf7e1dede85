"""The TFDS features of the `vos_format` examples, and the base class of the folder builders.

`video_features()` stores a `vos_format.video_example` (frames as the source JPEG bytes, label
maps as PNG); `static_features()` a static image and its label map.
"""

from __future__ import annotations

import inspect

import numpy as np
import tensorflow_datasets as tfds
from etils import epath

from lcm_jax.input_pipeline import tf_setup  # noqa: F401  (hides GPUs/TPUs before tfds loads TF)


def video_features() -> tfds.features.FeaturesDict:
    """Features of a video example (`vos_format` module docstring)."""
    zlib = tfds.features.Encoding.ZLIB
    return tfds.features.FeaturesDict(
        {
            "video_name": tfds.features.Text(),
            "frame_names": tfds.features.Sequence(tfds.features.Text()),
            "frames": tfds.features.Video(shape=(None, None, None, 3), encoding_format="jpeg"),
            "segmentations": tfds.features.Video(
                shape=(None, None, None, 1), encoding_format="png"
            ),
            "annotated": tfds.features.Sequence(np.bool_),
            "object_ids": tfds.features.Sequence(np.int32),
            "first_frames": tfds.features.Sequence(np.int32),
            "presence": tfds.features.Tensor(shape=(None, None), dtype=np.bool_, encoding=zlib),
            "boxes": tfds.features.Tensor(shape=(None, None, 4), dtype=np.float32, encoding=zlib),
        }
    )


def static_features() -> tfds.features.FeaturesDict:
    """Features of a static image example: image uint8 [H, W, 3], segmentation [H, W, 1],
    object_ids int32 [K], boxes float32 [K, 4] (y0, x0, y1, x1)."""
    return tfds.features.FeaturesDict(
        {
            "image_name": tfds.features.Text(),
            "image": tfds.features.Image(encoding_format="jpeg"),
            "segmentation": tfds.features.Image(shape=(None, None, 1), encoding_format="png"),
            "object_ids": tfds.features.Sequence(np.int32),
            "boxes": tfds.features.Tensor(
                shape=(None, 4), dtype=np.float32, encoding=tfds.features.Encoding.ZLIB
            ),
        }
    )


class FolderBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
    """Base of this package's builders (which read extracted folders from `manual_dir`).

    tfds 4.9's `code_path` needs the `importlib_resources` backport on Python >= 3.9 for a
    builder defined in a package; the builder's own file is what it looks for, so give it that.
    """

    @tfds.core.utils.classproperty
    @classmethod
    def code_path(cls) -> epath.Path:
        return epath.Path(inspect.getfile(cls))
