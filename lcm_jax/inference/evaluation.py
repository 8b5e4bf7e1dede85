"""A benchmark split segmented into a results folder, then scored (DAVIS) or zipped (YouTube-VOS).

    from lcm_jax.inference import splits
    segmenter = Segmenter.from_checkpoint("workdir")
    result = evaluate(segmenter, splits.list_davis("data/DAVIS", "val"), "results/davis_val")
    result.scores.global_scores()["J&F-Mean"], result.failures

Files (outputs.py): DAVIS `<out>/<seq>/<frame>.png`, then `global_results-<split>.csv` and
`per-sequence_results-<split>.csv` of the sequences whose every frame is annotated, as the DAVIS
2017 toolkit writes them (DAVIS 2016: greyscale PNGs, one object a sequence); YouTube-VOS
`<out>/Annotations/<vid>/<frame>.png` for the frames meta.json lists, then
`<out>/submission.zip`. All: `<out>/confidence/<video>.csv`, and the
`.npz` probabilities with `soft_output`. `<out>/manifest.json` (manifest.py) comes first: a
run into a folder of another run's results stops before writing anything, unless `overwrite`.

A video whose files all exist is skipped (an interrupted run resumes); a video that fails is
reported and the others go on. `batch_videos=N` segments up to N videos of one frame size,
object count and memory size at a time (`Engine.run_videos`), nothing padded: each computes
what it computes alone (`Engine.video_geometry`) but for float rounding (XLA's kernels may sum
in another order for another batch size, which can flip a pixel whose labels tie), so the batch
size is no part of the manifest. A batch that runs out of accelerator memory is redone in halves.
Each number of videos run together compiles its own step (the videos are its leading axis): a
geometry of k videos compiles for min(k, N) videos and, for k > N, for the k mod N left; a batch
redone in halves or one video at a time compiles for those numbers too.

With several processes (`lcm_jax.distributed.initialize`), each segments a disjoint share of
the videos into the same (shared) folder and process 0 writes the merged CSVs or zip: its
scores are those of a single-process run.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import functools
import os
import warnings
from collections.abc import Callable, Collection, Sequence
from pathlib import Path

import jax
import tqdm

from lcm_jax.inference import hosts, inputs, manifest, outputs
from lcm_jax.inference.engine import Engine, Geometry, Video
from lcm_jax.inference.segmenter import Segmenter
from lcm_jax.inference.splits import Split, VideoFiles
from lcm_jax.metrics import report

Failures = list[tuple[str, str]]  # (video, message)


@dataclasses.dataclass(frozen=True)
class Evaluation:
    """failures: every process's, with the videos that could not be listed or scored;
    scores: the DAVIS J&F (process 0, when a sequence was scored; else None); written: the
    merged files (CSVs or the submission zip) that process 0 wrote."""

    failures: tuple[tuple[str, str], ...]
    scores: report.DavisResults | None
    written: tuple[Path, ...]


def out_of_memory(error: BaseException) -> bool:
    """Whether `error` is XLA's out-of-memory error (`RESOURCE_EXHAUSTED: Out of memory ...`)."""
    return isinstance(error, jax.errors.JaxRuntimeError) and "RESOURCE_EXHAUSTED" in str(error)


def _first_line(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}".splitlines()[0]


@dataclasses.dataclass
class _Run:
    """The state of one `run_videos` call: its failures {video: message}, the batch size (halved
    when a batch runs out of memory) and the frames counted on the bar for each video."""

    engine: Engine
    read: Callable[[VideoFiles], tuple[Video, list[str]]]
    layout: Callable[[str], outputs.Layout]
    bar: tqdm.tqdm
    batch_videos: int
    failures: dict[str, str] = dataclasses.field(default_factory=dict)
    counted: dict[str, int] = dataclasses.field(default_factory=dict)

    def complete(self, listed: VideoFiles) -> bool:
        return self.layout(listed.name).complete(listed.wanted or listed.frame_names)

    def fail(self, listed: VideoFiles, error: Exception) -> None:
        self.failures[listed.name] = f"{type(error).__name__}: {error}"
        self.bar.write(f"FAILED {listed.name}: {error}")

    def geometry(self, listed: VideoFiles) -> Geometry:
        """The step geometry of the video alone, read off its first frame and its masks."""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # warned when the video is segmented
            video, _ = self.read(listed)
        frames = iter(video.frames)
        size = next(frames).shape[:2]
        if hasattr(frames, "close"):
            frames.close()  # a reader's generator: its read-ahead thread never starts
        return self.engine.video_geometry(video, size)

    def segment(self, batch: Sequence[VideoFiles]) -> None:
        """Segments the batch's incomplete videos together; a failure is the video's when it
        ran alone; otherwise an out-of-memory error halves the batch, and any other error has
        each video redone alone (so that a bad video fails alone)."""
        batch = [listed for listed in batch if not self.complete(listed)]
        for listed in batch:  # frames counted by an earlier, failed try
            self.bar.update(-self.counted.pop(listed.name, 0))
        if not batch:
            return
        try:
            self.together(batch)
        except Exception as e:  # noqa: BLE001 - one bad video must not stop the run
            if len(batch) == 1:
                self.fail(batch[0], e)
            elif out_of_memory(e):
                self.batch_videos = min(self.batch_videos, (len(batch) + 1) // 2)
                self.bar.write(
                    f"out of memory segmenting {len(batch)} videos at once ({_first_line(e)}); "
                    f"{self.batch_videos} at a time from now on"
                )
                for i in range(0, len(batch), self.batch_videos):
                    self.segment(batch[i : i + self.batch_videos])
            else:
                names = ", ".join(listed.name for listed in batch)
                self.bar.write(f"batch {names} failed ({_first_line(e)}); one at a time now")
                for listed in batch:
                    self.segment([listed])

    def together(self, batch: Sequence[VideoFiles]) -> None:
        """Segments the videos in one `Engine.run_videos` (one alone: `Engine.run`), writing
        each video's files as its frames come and its CSV as soon as it ends."""
        self.bar.set_postfix_str(", ".join(listed.name for listed in batch))
        opened = [self.read(listed) for listed in batch]
        videos = [video for video, _ in opened]
        if len(videos) == 1:
            frames = ([result] for result in self.engine.run(videos[0]))
        else:
            frames = self.engine.run_videos(videos)
        with concurrent.futures.ThreadPoolExecutor(max_workers=outputs.WRITERS) as pool:
            writers = [
                outputs.VideoWriter(pool, names, self.layout(listed.name), listed.wanted)
                for listed, (_, names) in zip(batch, opened, strict=True)
            ]
            running = [True] * len(batch)
            for results in frames:
                for i, result in enumerate(results):
                    if result is not None:
                        writers[i].add(result)
                        self.counted[batch[i].name] = self.counted.get(batch[i].name, 0) + 1
                        self.bar.update(1)
                    elif running[i]:  # ended: its files are complete now
                        writers[i].close()
                        running[i] = False
            for writer, on in zip(writers, running, strict=True):
                if on:
                    writer.close()


def run_videos(
    engine: Engine,
    videos: Sequence[VideoFiles],
    read: Callable[[VideoFiles], tuple[Video, list[str]]],
    layout: Callable[[str], outputs.Layout],
    bar: tqdm.tqdm,
    batch_videos: int = 1,
) -> Failures:
    """Segments each video into its `layout(name)` files, skipping the complete ones; returns
    the failures, in the order of `videos`. `read` opens a video (inputs.py).

    With `batch_videos` > 1 the videos of one step geometry (`Engine.video_geometry`: frame
    size, object slots, memory slots) run up to `batch_videos` at a time through
    `Engine.run_videos`, nothing padded, in the order of each geometry's first video. A batch
    that fails is redone one video at a time (a video that fails, fails alone); one that runs
    out of accelerator memory is redone in halves, and the later batches take the smaller size
    too (the bar says so).
    """
    run = _Run(engine, read, layout, bar, batch_videos)
    todo = []
    for listed in videos:
        if run.complete(listed):
            bar.update(len(listed.frames))
        else:
            todo.append(listed)
    if batch_videos == 1:
        groups = [[listed] for listed in todo]
    else:
        by_geometry: dict[Geometry, list[VideoFiles]] = {}
        for listed in todo:
            try:
                by_geometry.setdefault(run.geometry(listed), []).append(listed)
            except Exception as e:  # noqa: BLE001 - one bad video must not stop the run
                run.fail(listed, e)
        groups = list(by_geometry.values())
    for group in groups:
        while group:
            batch, group = group[: run.batch_videos], group[run.batch_videos :]
            run.segment(batch)
    return [(v.name, run.failures[v.name]) for v in videos if v.name in run.failures]


def _score_davis(
    split: Split,
    out: Path,
    failed: Collection[str],
    workers: int | None,
    single_object: bool = False,
):
    """J&F of the fully annotated sequences that did not fail (scored in `workers` parallel
    processes, `report.score_sequences`; `single_object`: DAVIS 2016), and the toolkit's CSVs."""
    scored = [v for v in split.videos if v.name not in failed and v.fully_annotated]
    objects, failures = [], []
    listed = [(v.name, v.annotations) for v in scored]
    results = report.score_sequences(out, listed, workers, single_object)
    for listed, result in zip(scored, results, strict=True):
        if isinstance(result, ValueError):  # DatasetError, or too few annotated frames
            failures.append((listed.name, f"{type(result).__name__}: {result}"))
        else:
            objects.extend(result)
    if not objects:
        return None, (), failures
    scores = report.DavisResults(tuple(objects))
    return scores, report.write_csvs(scores, out, split.data["split"]), failures


def _zip_youtube(split: Split, out: Path, failed: Collection[str], workers: int | None):
    """The submission zip, when any video was segmented."""
    if all(listed.name in failed for listed in split.videos):
        return None, (), []
    return None, (outputs.write_submission_zip(out, out / "submission.zip"),), []


@dataclasses.dataclass(frozen=True)
class Benchmark:
    read: Callable[[VideoFiles], tuple[Video, list[str]]]
    layout: Callable[[Path, str, bool], outputs.Layout]
    finish: Callable  # (split, out, failed names, scoring processes) -> (scores, written, more)


BENCHMARKS = {
    "davis": Benchmark(inputs.davis_video, outputs.Layout.davis, _score_davis),
    "davis2016": Benchmark(  # one object a sequence
        functools.partial(inputs.davis_video, single_object=True),
        outputs.Layout.davis2016,
        functools.partial(_score_davis, single_object=True),
    ),
    "youtube": Benchmark(inputs.youtube_video, outputs.Layout.youtube, _zip_youtube),
}


def evaluate(
    segmenter: Segmenter,
    split: Split,
    out: str | os.PathLike,
    *,
    overwrite: bool = False,
    progress: bool = True,
    batch_videos: int = 1,
    score_workers: int | None = None,
) -> Evaluation:
    """Segments `split`'s videos into `out` and scores or zips them (see the module docstring).

    `batch_videos` > 1 segments up to that many videos of one frame size, object count and
    memory size together (`run_videos`), for speed; the files are those of single runs but for
    float rounding. `score_workers` processes score DAVIS's sequences (None:
    `report.default_workers`); the scores do not depend on it.

    Raises:
      ValueError: `batch_videos` or `score_workers` < 1.
      manifest.ManifestError: `out` holds another run's results (and not `overwrite`), or
        files that are not results.
    """
    if batch_videos < 1:
        raise ValueError(f"batch_videos must be >= 1, got {batch_videos}")
    if score_workers is not None and score_workers < 1:
        raise ValueError(f"score_workers must be >= 1, got {score_workers}")
    out = Path(out)
    benchmark = BENCHMARKS[split.data["dataset"]]
    # Not `batch_videos`: it changes how fast the files come, not what they hold (but for float
    # rounding, as XLA's sums for another batch size), so a run resumed with another batch size
    # keeps the finished videos, as one with another number of processes does. Nor
    # `score_workers`: the scores do not depend on it.
    record = manifest.build("evaluate", segmenter.identity(), split.data)
    manifest.check(out, record, overwrite)
    hosts.barrier("lcm_jax.evaluation:checked")  # nobody reads the folder while it is claimed
    if jax.process_index() == 0:
        manifest.claim(out, record, overwrite)
    hosts.barrier("lcm_jax.evaluation:claimed")

    mine = hosts.share(split.videos)
    soft = segmenter.options.soft_output
    desc = split.data["dataset"]
    if jax.process_count() > 1:
        desc += f" [process {jax.process_index()}/{jax.process_count()}]"
    total = sum(len(listed.frames) for listed in mine)
    with tqdm.tqdm(
        total=total, unit="frame", desc=desc, dynamic_ncols=True, disable=not progress
    ) as bar:
        failures = run_videos(
            segmenter.engine,
            mine,
            benchmark.read,
            lambda name: benchmark.layout(out, name, soft),
            bar,
            batch_videos,
        )
    failures = [tuple(f) for share in hosts.gather(failures) for f in share]
    failures = list(split.unlisted) + failures
    if jax.process_index() != 0:
        return Evaluation(tuple(failures), None, ())
    failed = {name for name, _ in failures}
    scores, written, more = benchmark.finish(split, out, failed, score_workers)
    return Evaluation(tuple(failures + more), scores, tuple(written))
