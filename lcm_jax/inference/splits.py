"""The videos of a benchmark split, listed once per run (DAVIS 2017 and 2016, YouTube-VOS).

    split = list_davis("data/DAVIS", "val")      # or list_youtube("data/YouTube", "valid")
    split.videos     # VideoFiles of every video that could be listed, in the split's order
    split.unlisted   # (name, message) of those that could not (a missing folder, ...)

The folder layouts are `lcm_jax.input_pipeline.video_io`'s. A missing dataset folder, split file
or meta.json raises `video_io.DatasetError` (nothing can run), and so do `names` that hold a
name twice or one the dataset does not have at all (a typo); a problem of one video that is
there only makes it unlisted, and the others go on.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from lcm_jax.input_pipeline import video_io

DAVIS_RESOLUTIONS = {"2017": ("480p", "Full-Resolution"), "2016": ("480p", "1080p")}
DAVIS_DATASETS = {"2017": "davis", "2016": "davis2016"}  # the name in a Split's data


@dataclasses.dataclass(frozen=True)
class VideoFiles:
    """One video: its frames sorted by name, its annotation PNGs (fewer where only some frames
    are annotated; an annotation belongs to the frame of the same stem) from `annotations_dir`,
    and `wanted`, the frame names whose results the benchmark asks for (YouTube-VOS: those
    meta.json lists), None for every frame."""

    name: str
    frames: tuple[Path, ...]
    annotations: tuple[Path, ...]
    annotations_dir: Path
    wanted: frozenset[str] | None = None

    @property
    def frame_names(self) -> list[str]:
        return [p.stem for p in self.frames]

    @property
    def fully_annotated(self) -> bool:
        return len(self.annotations) == len(self.frames)


@dataclasses.dataclass(frozen=True)
class Split:
    """A split's listing: `data` (dataset, root, split, resolution) names it in a manifest."""

    data: Mapping[str, str]
    videos: tuple[VideoFiles, ...]
    unlisted: tuple[tuple[str, str], ...]


def _require_folder(root: Path, dataset: str) -> None:
    if not root.is_dir():
        raise video_io.DatasetError(f"{dataset} folder {os.fspath(root)!r} does not exist")


def _require_once(names: Sequence[str]) -> None:
    """Raises DatasetError when `names` holds a name twice (it would be segmented and scored
    twice)."""
    twice = sorted({name for name in names if names.count(name) > 1})
    if twice:
        raise video_io.DatasetError(f"the videos to segment name {_quoted(twice)} more than once")


def _quoted(names: Sequence[str]) -> str:
    return ", ".join(map(repr, names))


def list_davis(
    root: str | os.PathLike,
    split: str,
    resolution: str = "480p",
    names: Sequence[str] | None = None,
    year: str = "2017",
) -> Split:
    """The sequences of `ImageSets/2017/<split>.txt` (or `names`, each listed there or with a
    frame or annotation folder) of a DAVIS 2017 folder; with `year="2016"`, of a DAVIS 2016
    split (`video_io.davis2016_split_file`), one object a sequence: its masks' nonzero pixels."""
    root = Path(root).absolute()
    _require_folder(root, "DAVIS")
    if year not in DAVIS_RESOLUTIONS:
        raise ValueError(f"DAVIS year must be one of {tuple(DAVIS_RESOLUTIONS)}, got {year!r}")
    if resolution not in DAVIS_RESOLUTIONS[year]:
        raise video_io.DatasetError(
            f"DAVIS {year} resolution must be one of {DAVIS_RESOLUTIONS[year]}, got {resolution!r}"
        )
    if year == "2016":
        sequences = video_io.davis2016_sequences
        split_files = f"ImageSets/2016/{split}.txt or ImageSets/480p/{split}.txt"
    else:
        sequences, split_files = video_io.davis_sequences, f"ImageSets/2017/{split}.txt"
    if names:
        _require_once(names)
        try:
            listed = set(sequences(root, split))
        except video_io.DatasetError:  # no split file: names alone say what to segment
            listed = set()
        folders = (f"JPEGImages/{resolution}", f"Annotations/{resolution}")
        present = lambda seq: any((root / folder / seq).is_dir() for folder in folders)
        unknown = [seq for seq in names if seq not in listed and not present(seq)]
        if unknown:
            raise video_io.DatasetError(
                f"DAVIS folder {os.fspath(root)!r} has no sequence {_quoted(unknown)}: not in "
                f"{split_files}, no folder in {' or '.join(folders)}"
            )
    videos, unlisted = [], []
    for seq in names or sequences(root, split):
        try:
            frames, annotations = video_io.davis_video(root, seq, resolution)
        except video_io.DatasetError as e:
            unlisted.append((seq, str(e)))
            continue
        folder = root / "Annotations" / resolution / seq
        videos.append(VideoFiles(seq, tuple(frames), tuple(annotations), folder))
    dataset = DAVIS_DATASETS[year]
    data = {"dataset": dataset, "root": os.fspath(root), "split": split, "resolution": resolution}
    return Split(data, tuple(videos), tuple(unlisted))


def youtube_frames(meta: Mapping, vid: str) -> frozenset[str]:
    """Frame names (no suffix) that meta.json lists for video `vid`, over all its objects."""
    objects = meta["videos"][vid]["objects"].values()
    return frozenset(str(frame) for obj in objects for frame in obj["frames"])


def list_youtube(
    root: str | os.PathLike,
    split: str,
    names: Sequence[str] | None = None,
    all_frames: bool = False,
) -> Split:
    """The videos of `<split>/meta.json` (or `names`, each listed there) of a YouTube-VOS folder,
    each wanting the frames meta.json lists for it. With `all_frames`, a video's frames are all
    its frames (`video_io.youtube_all_frames`; `data["frames"]` names their folder), not every
    5th; the wanted frames and the annotations stay those of `<split>/`."""
    root = Path(root).absolute()
    _require_folder(root, "YouTube-VOS")
    meta = video_io.youtube_meta(root, split)
    frames_root = video_io.youtube_all_frames(root, split) if all_frames else None
    if names:
        _require_once(names)
        unknown = [vid for vid in names if vid not in meta["videos"]]
        if unknown:
            raise video_io.DatasetError(
                f"YouTube-VOS meta file {os.fspath(root / split / 'meta.json')!r} lists no video "
                f"{_quoted(unknown)}"
            )
    videos, unlisted = [], []
    for vid in names or sorted(meta["videos"]):
        try:
            frames, annotations = video_io.youtube_video(root, split, vid, frames_root)
            wanted = youtube_frames(meta, vid)
            missing = sorted(wanted - {p.stem for p in frames})
            if missing:
                raise video_io.DatasetError(
                    f"meta.json lists frames {missing[:3]} of {vid!r} that "
                    f"{os.fspath(frames[0].parent)!r} lacks"
                )
        except video_io.DatasetError as e:
            unlisted.append((vid, str(e)))
            continue
        folder = root / split / "Annotations" / vid
        videos.append(VideoFiles(vid, tuple(frames), tuple(annotations), folder, wanted))
    data = {"dataset": "youtube", "root": os.fspath(root), "split": split}
    if frames_root is not None:
        data["frames"] = os.fspath(frames_root)
    return Split(data, tuple(videos), tuple(unlisted))
