"""Result files, each written atomically (`lcm_jax.files`).

- DAVIS results layout: `<out>/<seq>/<frame>.png`, indexed PNGs with the DAVIS palette
  (pixel value = object id), what the DAVIS 2017 toolkit and its servers read; for DAVIS 2016
  (one object) greyscale PNGs, 255 the object, as its annotations and STCN's and XMem's results.
- YouTube-VOS layout: `<out>/Annotations/<vid>/<frame>.png` for exactly the frames that
  meta.json lists for the video (the union over its objects), and a submission zip whose top
  level is `Annotations/`.
- Soft probabilities (optional): `<frame>.npz` next to the PNG with `probs` uint8
  [1 + objects, H, W] (round(255 · p), background first) and `object_ids` int32 [objects].
- Confidence: one CSV per video, columns `frame,object_id,confidence` (the mean probability
  of the object over the pixels labelled with it; empty where it has none).
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import io
import math
import os
import zipfile
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np

from lcm_jax import files
from lcm_jax.inference.engine import FrameResult
from lcm_jax.input_pipeline import video_io

CONFIDENCE_COLUMNS = ("frame", "object_id", "confidence")
WRITERS = 2  # threads that encode and write PNG / .npz files while the engine runs


def write_labels(path: str | os.PathLike, labels: np.ndarray) -> None:
    """An object-id map uint8 [H, W] as an indexed PNG with the DAVIS palette."""
    video_io.write_label_png(path, labels)


def write_mask(path: str | os.PathLike, labels: np.ndarray) -> None:
    """One object's label map uint8 [H, W] (0 background) as a greyscale PNG, 255 the object."""
    video_io.write_label_png(path, np.where(labels > 0, 255, 0).astype(np.uint8), palette=None)


def write_probs(path: str | os.PathLike, probs: np.ndarray, object_ids: Iterable[int]) -> None:
    """Quantised probabilities uint8 [1 + objects, H, W] and their object ids as an .npz."""
    buffer = io.BytesIO()
    np.savez_compressed(buffer, probs=probs, object_ids=np.asarray(list(object_ids), np.int32))
    files.write_bytes(path, buffer.getvalue())


def confidence_csv(rows: Iterable[tuple[str, Mapping[int, float]]]) -> str:
    """CSV text from (frame name, {object id: confidence}) rows."""
    lines = [",".join(CONFIDENCE_COLUMNS)]
    for frame, scores in rows:
        for object_id, value in sorted(scores.items()):
            lines.append(f"{frame},{object_id},{'' if math.isnan(value) else f'{value:.4f}'}")
    return "\n".join(lines) + "\n"


def write_submission_zip(out_dir: str | os.PathLike, zip_path: str | os.PathLike) -> Path:
    """Zips `<out_dir>/Annotations/<vid>/*.png` with `Annotations/` at the top level."""
    root = Path(out_dir)
    pngs = sorted((root / "Annotations").glob("*/*.png"))
    if not pngs:
        raise ValueError(f"no PNG under {os.fspath(root / 'Annotations')!r} to zip")
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as z:
        for png in pngs:
            z.write(png, png.relative_to(root).as_posix())
    files.write_bytes(zip_path, buffer.getvalue())
    return Path(zip_path)


@dataclasses.dataclass(frozen=True)
class Layout:
    """Where one video's files go: `<labels_dir>/<frame>.png` (`write_mask`'s when
    `single_object`, else `write_labels`'), `<probs_dir>/<frame>.npz` (when soft probabilities
    are written) and its confidence CSV (written last)."""

    labels_dir: Path
    probs_dir: Path | None
    confidence_csv: Path
    single_object: bool = False

    @classmethod
    def davis(cls, out_dir: str | os.PathLike, seq: str, soft: bool) -> Layout:
        out = Path(out_dir)
        return cls(out / seq, out / seq if soft else None, out / "confidence" / f"{seq}.csv")

    @classmethod
    def davis2016(cls, out_dir: str | os.PathLike, seq: str, soft: bool) -> Layout:
        return dataclasses.replace(cls.davis(out_dir, seq, soft), single_object=True)

    @classmethod
    def youtube(cls, out_dir: str | os.PathLike, vid: str, soft: bool) -> Layout:
        out = Path(out_dir)
        probs = out / "Probabilities" / vid if soft else None
        return cls(out / "Annotations" / vid, probs, out / "confidence" / f"{vid}.csv")

    @classmethod
    def folder(cls, out_dir: str | os.PathLike, soft: bool) -> Layout:
        out = Path(out_dir)
        return cls(out, out if soft else None, out / "confidence.csv")

    def png(self, name: str) -> Path:
        return self.labels_dir / f"{name}.png"

    def npz(self, name: str) -> Path:
        return self.probs_dir / f"{name}.npz"

    def complete(self, names: Iterable[str]) -> bool:
        """Whether every file of these frames exists (an interrupted video is not complete)."""
        if not self.confidence_csv.is_file():
            return False
        for name in names:
            if not self.png(name).is_file():
                return False
            if self.probs_dir is not None and not self.npz(name).is_file():
                return False
        return True


class VideoWriter:
    """One video's files as its results come: each frame's PNG (and .npz) written in `pool`'s
    threads, then by `close` the confidence CSV, once every frame's file is written (a video
    without its CSV is incomplete).

    Args:
      pool: the threads that encode and write the files (several videos may share them).
      names: frame names by frame index.
      layout: where the files go.
      wanted: names of the frames to write (YouTube-VOS: those of meta.json); None = all.
    """

    def __init__(
        self,
        pool: concurrent.futures.Executor,
        names: Sequence[str],
        layout: Layout,
        wanted: Collection[str] | None = None,
    ):
        self.pool, self.names, self.layout, self.wanted = pool, names, layout, wanted
        self.rows: list[tuple[str, Mapping[int, float]]] = []
        self.pending: list[concurrent.futures.Future] = []

    def add(self, result: FrameResult) -> None:
        name = self.names[result.index]
        if self.wanted is not None and name not in self.wanted:
            return
        write = write_mask if self.layout.single_object else write_labels
        self.pending.append(self.pool.submit(write, self.layout.png(name), result.labels))
        if self.layout.probs_dir is not None:
            self.pending.append(
                self.pool.submit(
                    write_probs, self.layout.npz(name), result.probs, result.object_ids
                )
            )
        self.rows.append((name, result.confidence))

    def close(self) -> None:
        for future in self.pending:
            future.result()  # re-raises a failed write
        files.write_text(self.layout.confidence_csv, confidence_csv(self.rows))


def write_video(
    results: Iterable[FrameResult],
    names: Sequence[str],
    layout: Layout,
    wanted: Collection[str] | None = None,
    on_frame: Callable[[FrameResult], None] | None = None,
) -> None:
    """Writes each frame's PNG (and .npz) as it comes (in writer threads), then the CSV.

    Args:
      results: the engine's per-frame results, in order.
      names: frame names by frame index.
      layout: where the files go.
      wanted: names of the frames to write (YouTube-VOS: those of meta.json); None = all.
      on_frame: called with every result (progress, overlays).
    """
    with concurrent.futures.ThreadPoolExecutor(max_workers=WRITERS) as pool:
        writer = VideoWriter(pool, names, layout, wanted)
        for result in results:
            if on_frame is not None:
                on_frame(result)
            writer.add(result)
        writer.close()
