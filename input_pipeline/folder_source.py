"""Records read straight from the published folder layouts (NumPy + Pillow; no TensorFlow).

    source = FolderSource.davis(root, "train", "480p")  # DAVIS 2017 folders (video_io)
    record = source[0]  # a record (`sources` module docstring)

`davis_example` and `youtube_example` read one video of a folder as a `vos_format` example; the
TFDS builders (`davis.Davis2017Vos`, `youtube_vos.YoutubeVos`) store the same examples, so a
`FolderSource` holds the records that `tfds_sets.TfdsSource` reads from the prepared set, at the
same indices: TFDS writes the examples of a split sorted by the MD5 hash of the split name and
their key (`tensorflow_datasets.core.hashing`), and so does `FolderSource`. The frames are the
folder's file bytes; the label maps are re-encoded as grey PNGs.

Every video of the split is read once when the source is made (its frames decoded to check their
sizes, its label maps kept as PNG bytes, in a thread pool); a record reads its frame files again.
Bad input raises a DatasetError naming the file (`vos_format.video_example`).
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Callable, Sequence
from concurrent import futures
from pathlib import Path

import numpy as np

from lcm_jax.input_pipeline import sources, video_io, vos_format
from lcm_jax.input_pipeline.video_io import DatasetError

# DAVIS builder config (`configs/data.py` davis_resolution) -> its folder under JPEGImages/.
DAVIS_RESOLUTIONS = {"480p": "480p", "full_resolution": "Full-Resolution"}


def davis_example(root: str | os.PathLike, seq: str, resolution: str) -> dict:
    """The `vos_format` example of DAVIS sequence `seq`; `resolution` is the folder name
    ("480p" | "Full-Resolution"). Every DAVIS object is annotated in frame 0: a missing
    first-frame annotation raises."""
    frames, annotations = video_io.davis_video(root, seq, resolution)
    by_frame = vos_format.index_annotations(frames, annotations)
    if 0 not in by_frame:
        raise DatasetError(
            f"DAVIS sequence {seq!r}: first-frame annotation "
            f"{os.fspath(root)}/Annotations/{resolution}/{seq}/{frames[0].stem}.png is missing"
        )
    return vos_format.video_example(seq, frames, by_frame)


def youtube_example(root: str | os.PathLike, split: str, vid: str, objects: dict) -> dict | None:
    """The `vos_format` example of YouTube-VOS video `vid` (None when it has no annotated
    object). `objects` is the video's meta.json entry; in splits other than train each
    object's first listed frame must be annotated."""
    frames, annotations = video_io.youtube_video(root, split, vid)
    by_frame = vos_format.index_annotations(frames, annotations)
    index = {p.stem: t for t, p in enumerate(frames)}
    required_first = {}
    if split != "train":
        for obj, info in objects.items():
            if not info["frames"] or info["frames"][0] not in index:
                raise DatasetError(
                    f"{root}/{split}/meta.json: video {vid!r} object {obj} lists first "
                    f"frame {info['frames'][:1]} that is not in JPEGImages/{vid}"
                )
            required_first[int(obj)] = index[info["frames"][0]]
    example = vos_format.video_example(vid, frames, by_frame, required_first=required_first)
    if not len(example["object_ids"]):
        logging.warning("YouTube-VOS %s/%s has no annotated object; skipped", split, vid)
        return None
    return example


def tfds_order(keys: Sequence[str], split: str) -> list[int]:
    """The order in which TFDS writes examples with these keys to `split` (indices of keys)."""
    salt = hashlib.md5(split.encode())

    def hashed(key: str) -> int:
        md5 = salt.copy()
        md5.update(key.encode())
        return int(md5.hexdigest(), 16)

    return sorted(range(len(keys)), key=lambda i: hashed(keys[i]))


class FolderSource(Sequence):
    """The records of one split of a folder, in TFDS's order (module docstring)."""

    def __init__(self, keys: Sequence[str], read: Callable[[str], dict | None], split: str):
        """keys: the TFDS keys of the split's videos; read: key -> its `vos_format` example
        (None: left out, as the builder leaves it out)."""
        with futures.ThreadPoolExecutor(os.cpu_count() or 1) as pool:
            stored = list(pool.map(lambda key: _stored(read(key)), keys))
        kept = [(key, r) for key, r in zip(keys, stored, strict=True) if r is not None]
        self._records = [kept[i][1] for i in tfds_order([key for key, _ in kept], split)]

    @classmethod
    def davis(cls, root: str | os.PathLike, split: str, resolution: str) -> FolderSource:
        """DAVIS 2017 folders; `resolution` is the builder config ("480p" | "full_resolution")."""
        if resolution not in DAVIS_RESOLUTIONS:
            raise DatasetError(
                f"davis_resolution must be one of {sorted(DAVIS_RESOLUTIONS)}, got {resolution!r}"
            )
        folder = DAVIS_RESOLUTIONS[resolution]
        seqs = video_io.davis_sequences(root, split)
        return cls(seqs, lambda seq: davis_example(root, seq, folder), split)

    @classmethod
    def youtube(cls, root: str | os.PathLike, split: str) -> FolderSource:
        """YouTube-VOS folders (videos without an annotated object are left out)."""
        meta = video_io.youtube_meta(root, split)["videos"]
        return cls(
            sorted(meta), lambda vid: youtube_example(root, split, vid, meta[vid]["objects"]), split
        )

    def __len__(self) -> int:
        return len(self._records)

    def __getitem__(self, index: int) -> dict:
        stored = self._records[int(index)]
        frames = [Path(p).read_bytes() for p in stored["frame_paths"]]
        return {"frames": frames, **{k: v for k, v in stored.items() if k != "frame_paths"}}


def _stored(example: dict | None) -> dict | None:
    """A `vos_format` example -> a record whose frames are still file paths ("frame_paths")."""
    if example is None:
        return None
    return {
        "name": example["video_name"],
        "frame_paths": example["frames"],
        "segmentations": [sources.encode_png(s) for s in example["segmentations"]],
        "annotated": np.asarray(example["annotated"], bool),
        "object_ids": np.asarray(example["object_ids"], np.int32),
        "presence": np.asarray(example["presence"], bool),
        "boxes": np.asarray(example["boxes"], np.float32),
    }
