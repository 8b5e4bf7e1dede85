"""DAVIS 2017 semi-supervised evaluation of a results folder, and the toolkit's CSV reports.

Reads the ground truth from `<root>/Annotations/<res>/<seq>/*.png` (every annotated frame)
and the results from `<results>/<seq>/<frame>.png` (indexed PNGs, the DAVIS results layout),
scores each object with `davis.evaluate_sequence` (sequences in parallel processes,
`score_sequences`), and writes, like the toolkit's `evaluation_method.py`:

- `global_results-<set>.csv`: one row, columns
  `J&F-Mean,J-Mean,J-Recall,J-Decay,F-Mean,F-Recall,F-Decay` (means over all objects);
- `per-sequence_results-<set>.csv`: columns `Sequence,J-Mean,F-Mean`, one row per object
  named `<seq>_<object id>`;

values with 3 decimals (pandas' `float_format="%.3f"`, NaN as an empty field).

DAVIS 2016 (`single_object`) is the same protocol on one object a sequence: every nonzero pixel
of an annotation or a result (255 in its greyscale PNGs), as STCN, XMem and Cutie score it.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import math
import multiprocessing
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from lcm_jax import files
from lcm_jax.input_pipeline import video_io
from lcm_jax.metrics import davis

GLOBAL_COLUMNS = ("J&F-Mean", "J-Mean", "J-Recall", "J-Decay", "F-Mean", "F-Recall", "F-Decay")
SEQUENCE_COLUMNS = ("Sequence", "J-Mean", "F-Mean")
# Starting a scoring process (forkserver, then NumPy, Pillow and this module imported) costs
# about as much as scoring this many 480p frames: fewer frames a process and it does not pay.
FRAMES_PER_PROCESS = 100


@dataclasses.dataclass(frozen=True)
class ObjectScores:
    """One object's statistics: (Mean, Recall, Decay) of J and of F."""

    name: str  # "<sequence>_<object id>"
    j: tuple[float, float, float]
    f: tuple[float, float, float]


@dataclasses.dataclass(frozen=True)
class DavisResults:
    """Per-object scores of a whole split and their global means (the toolkit's)."""

    objects: tuple[ObjectScores, ...]

    def global_scores(self) -> dict[str, float]:
        """Means over all objects; J&F-Mean = (J-Mean + F-Mean) / 2."""
        if not self.objects:
            raise ValueError("no object was evaluated")
        j = np.array([o.j for o in self.objects], np.float64)  # [objects, (M, R, D)]
        f = np.array([o.f for o in self.objects], np.float64)
        j_mean, j_recall, j_decay = j.mean(axis=0)
        f_mean, f_recall, f_decay = f.mean(axis=0)
        values = ((j_mean + f_mean) / 2, j_mean, j_recall, j_decay, f_mean, f_recall, f_decay)
        return dict(zip(GLOBAL_COLUMNS, map(float, values), strict=True))


def score_sequence(name: str, gt_labels: np.ndarray, pred_labels: np.ndarray) -> list[ObjectScores]:
    """Scores one sequence: gt_labels, pred_labels int [N, H, W] -> one entry per object."""
    j, f = davis.evaluate_sequence(gt_labels, pred_labels, name=name)
    return [
        ObjectScores(f"{name}_{k + 1}", davis.statistics(j[k]), davis.statistics(f[k]))
        for k in range(j.shape[0])
    ]


def read_sequence(
    results_dir: str | os.PathLike,
    seq: str,
    annotation_paths: Sequence[Path],
    single_object: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Ground-truth and result label maps uint8 [N, H, W] of one sequence's annotated frames:
    `annotation_paths` and `<results_dir>/<seq>/<the same stem>.png`; with `single_object`,
    1 where a PNG is nonzero.

    Raises:
        video_io.DatasetError: a missing or unreadable PNG, or a size mismatch (names the file).
    """
    if not annotation_paths:
        raise video_io.DatasetError(f"sequence {seq!r} has no annotation")
    gt, pred = [], []
    for path in annotation_paths:
        result_path = Path(results_dir) / seq / f"{path.stem}.png"
        if not result_path.is_file():
            raise video_io.DatasetError(f"result {os.fspath(result_path)!r} does not exist")
        gt.append(video_io.read_label_png(path))
        pred.append(video_io.read_label_png(result_path))
        if pred[-1].shape != gt[-1].shape:
            raise video_io.DatasetError(
                f"result {os.fspath(result_path)!r} is {pred[-1].shape[::-1]} (W, H) but its "
                f"annotation is {gt[-1].shape[::-1]}"
            )
    gt, pred = np.stack(gt), np.stack(pred)
    if single_object:
        return (gt != 0).astype(np.uint8), (pred != 0).astype(np.uint8)
    return gt, pred


def score_files(
    results_dir: str | os.PathLike,
    seq: str,
    annotation_paths: Sequence[Path],
    single_object: bool = False,
) -> list[ObjectScores] | ValueError:
    """One sequence read (`read_sequence`) and scored (`score_sequence`), or the ValueError that
    stopped it: a missing, unreadable or mis-sized PNG, too few frames, a label too high."""
    try:
        read = read_sequence(results_dir, seq, annotation_paths, single_object)
        return score_sequence(seq, *read)
    except ValueError as e:  # DatasetError is one
        return e


def default_workers(frames: int, sequences: int) -> int:
    """Scoring processes for `sequences` sequences of `frames` annotated frames in all: one per
    CPU this process may use, at most one per sequence and per `FRAMES_PER_PROCESS` frames."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, min(cpus or 1, sequences, math.ceil(frames / FRAMES_PER_PROCESS)))


def score_sequences(
    results_dir: str | os.PathLike,
    sequences: Sequence[tuple[str, Sequence[Path]]],
    workers: int | None = None,
    single_object: bool = False,
) -> list[list[ObjectScores] | ValueError]:
    """Scores `(name, annotation paths)` sequences of a results folder (`score_files`), in order.

    Args:
      results_dir: the DAVIS results folder, `<results_dir>/<seq>/<frame>.png`.
      sequences: each sequence's name and the paths of its annotated frames.
      workers: processes scoring sequences at the same time, the longest sequences first; 1
        scores here, without a process; None: `default_workers`. The values do not depend on it.
      single_object: DAVIS 2016, one object a sequence (`read_sequence`).

    Returns:
      Per sequence, its objects' scores or the ValueError that stopped it.
    """
    if workers is None:
        workers = default_workers(sum(len(paths) for _, paths in sequences), len(sequences))
    if workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    if workers == 1 or len(sequences) <= 1:
        return [score_files(results_dir, seq, paths, single_object) for seq, paths in sequences]
    # forkserver: safe beside JAX's threads (fork is not); the workers import only NumPy,
    # Pillow and lcm_jax.metrics.
    context = multiprocessing.get_context("forkserver")
    longest_first = sorted(range(len(sequences)), key=lambda i: -len(sequences[i][1]))
    with concurrent.futures.ProcessPoolExecutor(workers, mp_context=context) as pool:
        futures = {
            i: pool.submit(score_files, results_dir, *sequences[i], single_object)
            for i in longest_first
        }
        try:
            return [futures[i].result() for i in range(len(sequences))]
        except BaseException:
            pool.shutdown(cancel_futures=True)
            raise


def evaluate_davis(
    davis_root: str | os.PathLike,
    results_dir: str | os.PathLike,
    sequences: Sequence[str],
    resolution: str = "480p",
    workers: int | None = None,
    single_object: bool = False,
) -> DavisResults:
    """Semi-supervised J&F of `sequences` (in order) of a DAVIS results folder against the
    annotations of the DAVIS folder `davis_root`; `workers` and `single_object` (DAVIS 2016)
    as `score_sequences`'s.

    Raises:
        video_io.DatasetError: a missing or unreadable annotation or result (the first
          sequence's, in order); ValueError: a sequence that cannot be scored.
    """
    listed = [(seq, video_io.davis_annotations(davis_root, seq, resolution)) for seq in sequences]
    objects: list[ObjectScores] = []
    for scores in score_sequences(results_dir, listed, workers, single_object):
        if isinstance(scores, ValueError):
            raise scores
        objects.extend(scores)
    return DavisResults(tuple(objects))


def write_csvs(results: DavisResults, out_dir: str | os.PathLike, split: str) -> tuple[Path, Path]:
    """Writes `global_results-<split>.csv` and `per-sequence_results-<split>.csv` atomically."""
    out_dir = Path(out_dir)
    scores = results.global_scores()
    global_path = out_dir / f"global_results-{split}.csv"
    files.write_text(
        global_path,
        ",".join(GLOBAL_COLUMNS) + "\n" + ",".join(_fmt(scores[c]) for c in GLOBAL_COLUMNS) + "\n",
    )
    rows = [",".join(SEQUENCE_COLUMNS)]
    rows += [f"{o.name},{_fmt(o.j[0])},{_fmt(o.f[0])}" for o in results.objects]
    sequence_path = out_dir / f"per-sequence_results-{split}.csv"
    files.write_text(sequence_path, "\n".join(rows) + "\n")
    return global_path, sequence_path


def _fmt(value: float) -> str:
    return "" if np.isnan(value) else f"{value:.3f}"
