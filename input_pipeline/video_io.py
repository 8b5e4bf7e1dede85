"""Reading and writing VOS datasets in their published folder layouts (NumPy + Pillow only).

This module never imports TensorFlow: inference and evaluation import it.

Layouts:
- DAVIS 2017: `<root>/JPEGImages/<res>/<seq>/00000.jpg`, `<root>/Annotations/<res>/<seq>/00000.png`
  (indexed palette PNGs, pixel value = object id, 0 background, 255 void),
  `<root>/ImageSets/2017/{train,val}.txt` (one sequence name a line); `<res>` is "480p" or
  "Full-Resolution".
- DAVIS 2016: the same folders (`<res>` "480p" or "1080p"), one object a sequence, its masks
  greyscale PNGs (255 the object, 0 background); the split is `<root>/ImageSets/480p/<split>.txt`,
  a frame and its mask a line (`/JPEGImages/480p/<seq>/00000.jpg /Annotations/480p/<seq>/
  00000.png`), or `<root>/ImageSets/2016/<split>.txt` (names, as the DAVIS 2017 trainval
  download lists the 2016 sequences).
- YouTube-VOS 2018/2019: `<root>/<split>/JPEGImages/<vid>/00000.jpg`,
  `<root>/<split>/Annotations/<vid>/00000.png` and `<root>/<split>/meta.json`
  (`{"videos": {vid: {"objects": {"1": {"category": str, "frames": ["00000", "00005", ...]}}}}}`);
  in `valid` each object is annotated only on the first frame it appears in. Those folders hold
  every 5th frame of a video; every frame is in `<root>/all_frames/<split>_all_frames/JPEGImages/
  <vid>/` (the layout STCN, XMem and Cutie use) or `<root>/<split>_all_frames/JPEGImages/<vid>/`
  (the download unzipped), the frames of the same names being the same images.

Frames come back as uint8 RGB `[H, W, 3]`, label maps as uint8 `[H, W]`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
from PIL import Image

from lcm_jax import files

VOID_LABEL = 255  # DAVIS/YouTube-VOS "void" pixels (object borders); ignored by the metrics.


class DatasetError(ValueError):
    """A dataset file is missing, unreadable or malformed; the message names the file."""


def _voc_palette() -> np.ndarray:
    """The PASCAL VOC / DAVIS palette: colour bits of the index interleaved, MSB first."""
    palette = np.zeros((256, 3), np.uint8)
    for index in range(256):
        c, r, g, b = index, 0, 0, 0
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        palette[index] = (r, g, b)
    return palette


DAVIS_PALETTE = _voc_palette()  # uint8 [256, 3]: 0 black, 1 (128, 0, 0), 2 (0, 128, 0), ...


def read_frame(path: str | os.PathLike) -> np.ndarray:
    """Reads an image file (JPEG, PNG, ...) as uint8 RGB `[H, W, 3]`.

    Raises:
        DatasetError: the file is missing, truncated or not an image.
    """
    try:
        with Image.open(path) as image:
            image.load()
            return np.asarray(image.convert("RGB"), dtype=np.uint8)
    except (OSError, SyntaxError, ValueError) as e:
        raise DatasetError(f"cannot read frame {os.fspath(path)!r}: {e}") from e


def read_label_png(path: str | os.PathLike) -> np.ndarray:
    """Reads a label map (pixel value = object id) from an indexed 'P' (or grey 'L') PNG.

    Returns:
        uint8 `[H, W]` object ids (0 background, 255 void).

    Raises:
        DatasetError: missing/corrupt file, or an RGB(A) PNG (colours are not object ids).
    """
    try:
        with Image.open(path) as image:
            image.load()
            mode = image.mode
            if mode in ("P", "L"):
                return np.array(image, dtype=np.uint8)
    except (OSError, SyntaxError, ValueError) as e:
        raise DatasetError(f"cannot read annotation {os.fspath(path)!r}: {e}") from e
    raise DatasetError(
        f"annotation {os.fspath(path)!r} has image mode {mode!r}: it must be an indexed palette "
        "PNG (mode 'P', pixel value = object id) or a greyscale 'L' PNG"
    )


def write_label_png(
    path: str | os.PathLike, labels: np.ndarray, palette: np.ndarray | None = DAVIS_PALETTE
) -> None:
    """Writes a uint8 `[H, W]` label map as an indexed PNG (a greyscale 'L' PNG when `palette`
    is None), atomically; creates parent folders."""
    labels = np.asarray(labels)
    if labels.ndim != 2 or labels.dtype != np.uint8:
        raise ValueError(
            f"labels for {os.fspath(path)!r} must be uint8 [H, W], got {labels.dtype} "
            f"{labels.shape}"
        )
    image = Image.fromarray(labels)
    if palette is not None:
        palette = np.asarray(palette, np.uint8)
        if palette.shape != (256, 3):
            raise ValueError(f"palette must be uint8 [256, 3], got {palette.shape}")
        image.putpalette(palette.reshape(-1).tolist())
    _save_atomically(image, Path(path), format="PNG")


def write_frame(path: str | os.PathLike, frame: np.ndarray, quality: int = 95) -> None:
    """Writes a uint8 RGB `[H, W, 3]` frame as JPEG (or PNG by suffix), atomically."""
    frame = np.asarray(frame)
    if frame.ndim != 3 or frame.shape[-1] != 3 or frame.dtype != np.uint8:
        raise ValueError(
            f"frame for {os.fspath(path)!r} must be uint8 [H, W, 3], got {frame.dtype} "
            f"{frame.shape}"
        )
    path = Path(path)
    if path.suffix.lower() == ".png":
        _save_atomically(Image.fromarray(frame), path, format="PNG")
    else:
        _save_atomically(Image.fromarray(frame), path, format="JPEG", quality=quality)


def _save_atomically(image: Image.Image, path: Path, **save_kwargs) -> None:
    with files.atomic_path(path) as tmp:
        image.save(tmp, **save_kwargs)


def spawn_ffmpeg_without_fork() -> None:
    """Call before imageio reads or writes a video file through ffmpeg (MP4, ...).

    imageio-ffmpeg starts ffmpeg with `preexec_fn=os.setpgrp` (to keep Ctrl-C from it), and a
    `preexec_fn` makes `subprocess` fork the whole multithreaded process (JAX then warns
    "os.fork() was called ... will likely lead to a deadlock"). Without it, ffmpeg is spawned
    without running Python in the child (vfork/posix_spawn); a Ctrl-C then stops ffmpeg too,
    and the callers remove the unfinished file anyway.
    """
    os.environ.setdefault("IMAGEIO_FFMPEG_NO_PREVENT_SIGINT", "1")


def _sorted_files(folder: Path, suffix: str) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() == suffix and p.is_file())


def davis_sequences(root: str | os.PathLike, split: str) -> list[str]:
    """Sequence names of a DAVIS 2017 split from `ImageSets/2017/{split}.txt`, in file order."""
    path = Path(root) / "ImageSets" / "2017" / f"{split}.txt"
    if not path.is_file():
        raise DatasetError(f"DAVIS split file {os.fspath(path)!r} does not exist")
    return _listed_sequences(path, lambda line: line)


def davis2016_split_file(root: str | os.PathLike, split: str) -> Path:
    """The file that lists a DAVIS 2016 split: `ImageSets/2016/{split}.txt` where it exists,
    else the DAVIS 2016 download's `ImageSets/480p/{split}.txt` (module docstring)."""
    names, frames = (Path(root) / "ImageSets" / d / f"{split}.txt" for d in ("2016", "480p"))
    if names.is_file() or frames.is_file():
        return names if names.is_file() else frames
    raise DatasetError(
        f"DAVIS 2016 split file: neither {os.fspath(names)!r} nor {os.fspath(frames)!r} exists"
    )


def davis2016_sequences(root: str | os.PathLike, split: str) -> list[str]:
    """Sequence names of a DAVIS 2016 split (`davis2016_split_file`), in order of first
    appearance."""
    path = davis2016_split_file(root, split)
    if path.parent.name == "2016":
        return _listed_sequences(path, lambda line: line)

    def sequence(line: str) -> str:  # "/JPEGImages/480p/<seq>/00000.jpg /Annotations/..."
        parts = line.split()[0].strip("/").split("/")
        if len(parts) != 4 or parts[0] != "JPEGImages":
            raise DatasetError(
                f"DAVIS 2016 split file {os.fspath(path)!r}: line {line!r} does not start with "
                "/JPEGImages/<resolution>/<sequence>/<frame>.jpg"
            )
        return parts[2]

    return _listed_sequences(path, sequence)


def _listed_sequences(path: Path, sequence) -> list[str]:
    """The distinct `sequence(line)` of a split file's non-empty lines, in file order."""
    lines = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    names = list(dict.fromkeys(sequence(line) for line in lines))
    if not names:
        raise DatasetError(f"DAVIS split file {os.fspath(path)!r} lists no sequence")
    return names


def davis_video(
    root: str | os.PathLike, seq: str, resolution: str = "480p"
) -> tuple[list[Path], list[Path]]:
    """Sorted frame paths and annotation paths of one DAVIS sequence.

    The annotation list may be shorter than the frame list (test-dev/challenge give only the
    first frame); annotation `k` belongs to the frame with the same file stem.
    """
    frames_dir = Path(root) / "JPEGImages" / resolution / seq
    if not frames_dir.is_dir():
        raise DatasetError(f"DAVIS frame folder {os.fspath(frames_dir)!r} does not exist")
    frames = _sorted_files(frames_dir, ".jpg")
    if not frames:
        raise DatasetError(f"DAVIS frame folder {os.fspath(frames_dir)!r} has no .jpg frame")
    return frames, davis_annotations(root, seq, resolution)


def davis_annotations(root: str | os.PathLike, seq: str, resolution: str = "480p") -> list[Path]:
    """Sorted annotation paths of one DAVIS sequence (none when it has no annotation folder)."""
    annotations_dir = Path(root) / "Annotations" / resolution / seq
    return _sorted_files(annotations_dir, ".png") if annotations_dir.is_dir() else []


def youtube_meta(root: str | os.PathLike, split: str) -> dict:
    """The parsed `<root>/<split>/meta.json` of YouTube-VOS (format in the module docstring)."""
    path = Path(root) / split / "meta.json"
    if not path.is_file():
        raise DatasetError(f"YouTube-VOS meta file {os.fspath(path)!r} does not exist")
    try:
        meta = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise DatasetError(f"YouTube-VOS meta file {os.fspath(path)!r} is not JSON: {e}") from e
    if not isinstance(meta, dict) or not isinstance(meta.get("videos"), dict):
        raise DatasetError(f"YouTube-VOS meta file {os.fspath(path)!r} has no 'videos' mapping")
    for vid, video in meta["videos"].items():
        objects = video.get("objects") if isinstance(video, dict) else None
        if not isinstance(objects, dict) or not all(
            isinstance(o, dict) and isinstance(o.get("frames"), list) for o in objects.values()
        ):
            raise DatasetError(
                f"YouTube-VOS meta file {os.fspath(path)!r}: video {vid!r} needs "
                "'objects' {id: {'frames': [...]}}"
            )
    return meta


def youtube_all_frames(root: str | os.PathLike, split: str) -> Path:
    """The JPEGImages folder of every frame of a YouTube-VOS split (module docstring)."""
    candidates = [
        Path(root) / "all_frames" / f"{split}_all_frames" / "JPEGImages",
        Path(root) / f"{split}_all_frames" / "JPEGImages",
    ]
    for folder in candidates:
        if folder.is_dir():
            return folder
    raise DatasetError(
        f"YouTube-VOS has no folder of all frames of {split!r}: neither "
        f"{os.fspath(candidates[0])!r} nor {os.fspath(candidates[1])!r} exists"
    )


def youtube_video(
    root: str | os.PathLike, split: str, vid: str, frames_root: str | os.PathLike | None = None
) -> tuple[list[Path], list[Path]]:
    """Sorted frame paths and annotation paths of one YouTube-VOS video (annotations sparse).
    The frames are those of `<frames_root>/<vid>` (e.g. `youtube_all_frames`), by default
    `<root>/<split>/JPEGImages/<vid>`."""
    frames_root = Path(root) / split / "JPEGImages" if frames_root is None else Path(frames_root)
    frames_dir = frames_root / vid
    if not frames_dir.is_dir():
        raise DatasetError(f"YouTube-VOS frame folder {os.fspath(frames_dir)!r} does not exist")
    frames = _sorted_files(frames_dir, ".jpg")
    if not frames:
        raise DatasetError(f"YouTube-VOS frame folder {os.fspath(frames_dir)!r} has no frame")
    annotations_dir = Path(root) / split / "Annotations" / vid
    annotations = _sorted_files(annotations_dir, ".png") if annotations_dir.is_dir() else []
    return frames, annotations
