"""A benchmark split segmented into a results folder, then scored (DAVIS) or zipped (YouTube-VOS).

    segmenter = Segmenter.from_checkpoint("workdir")
    result = evaluate(segmenter, splits.list_davis("/data/DAVIS", "val"), "results/davis_val")
    result.scores.global_scores()["J&F-Mean"], result.failures

Files (outputs.py): DAVIS `<out>/<seq>/<frame>.png`, then `global_results-<split>.csv` and
`per-sequence_results-<split>.csv` of the sequences whose every frame is annotated, as the DAVIS
2017 toolkit writes them; YouTube-VOS `<out>/Annotations/<vid>/<frame>.png` for the frames
meta.json lists, then `<out>/submission.zip`. Both: `<out>/confidence/<video>.csv`, and the
`.npz` probabilities with `soft_output`. `<out>/manifest.json` (manifest.py) comes first: a
run into a folder of another run's results stops before writing anything, unless `overwrite`.

A video whose files all exist is skipped (an interrupted run resumes); a video that fails is
reported and the others go on. With several processes (`lcm_jax.distributed.initialize`),
each segments a disjoint share of the videos into the same (shared) folder and process 0
writes the merged CSVs or zip: its scores are those of a single-process run.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Collection, Sequence
from pathlib import Path

import jax
import tqdm

from lcm_jax.inference import hosts, inputs, manifest, outputs
from lcm_jax.inference.engine import Engine, Video
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


def run_videos(
    engine: Engine,
    videos: Sequence[VideoFiles],
    read: Callable[[VideoFiles], tuple[Video, list[str]]],
    layout: Callable[[str], outputs.Layout],
    bar: tqdm.tqdm,
) -> Failures:
    """Segments each video into its `layout(name)` files, skipping the complete ones; returns
    the failures. `read` opens a video (inputs.py)."""
    failures = []
    for listed in videos:
        bar.set_postfix_str(listed.name)
        where = layout(listed.name)
        try:
            if where.complete(listed.wanted or listed.frame_names):
                bar.update(len(listed.frames))
                continue
            video, names = read(listed)
            outputs.write_video(
                engine.run(video), names, where, listed.wanted, on_frame=lambda _: bar.update(1)
            )
        except Exception as e:  # noqa: BLE001 - one bad video must not stop the run
            failures.append((listed.name, f"{type(e).__name__}: {e}"))
            bar.write(f"FAILED {listed.name}: {e}")
    return failures


def _score_davis(split: Split, out: Path, failed: Collection[str]):
    """J&F of the fully annotated sequences that did not fail (scored in parallel processes),
    and the toolkit's CSVs."""
    scored = [v for v in split.videos if v.name not in failed and v.fully_annotated]
    objects, failures = [], []
    results = report.score_sequences(out, [(v.name, v.annotations) for v in scored])
    for listed, result in zip(scored, results, strict=True):
        if isinstance(result, ValueError):  # DatasetError, or too few annotated frames
            failures.append((listed.name, f"{type(result).__name__}: {result}"))
        else:
            objects.extend(result)
    if not objects:
        return None, (), failures
    scores = report.DavisResults(tuple(objects))
    return scores, report.write_csvs(scores, out, split.data["split"]), failures


def _zip_youtube(split: Split, out: Path, failed: Collection[str]):
    """The submission zip, when any video was segmented."""
    if all(listed.name in failed for listed in split.videos):
        return None, (), []
    return None, (outputs.write_submission_zip(out, out / "submission.zip"),), []


@dataclasses.dataclass(frozen=True)
class Benchmark:
    read: Callable[[VideoFiles], tuple[Video, list[str]]]
    layout: Callable[[Path, str, bool], outputs.Layout]
    finish: Callable  # (split, out, failed names) -> (scores, written, more failures)


BENCHMARKS = {
    "davis": Benchmark(inputs.davis_video, outputs.Layout.davis, _score_davis),
    "youtube": Benchmark(inputs.youtube_video, outputs.Layout.youtube, _zip_youtube),
}


def evaluate(
    segmenter: Segmenter,
    split: Split,
    out: str | os.PathLike,
    *,
    overwrite: bool = False,
    progress: bool = True,
) -> Evaluation:
    """Segments `split`'s videos into `out` and scores or zips them (see the module docstring).

    Raises:
      manifest.ManifestError: `out` holds another run's results (and not `overwrite`), or
        files that are not results.
    """
    out = Path(out)
    benchmark = BENCHMARKS[split.data["dataset"]]
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
        )
    failures = [tuple(f) for share in hosts.gather(failures) for f in share]
    failures = list(split.unlisted) + failures
    if jax.process_index() != 0:
        return Evaluation(tuple(failures), None, ())
    scores, written, more = benchmark.finish(split, out, {name for name, _ in failures})
    return Evaluation(tuple(failures + more), scores, tuple(written))
