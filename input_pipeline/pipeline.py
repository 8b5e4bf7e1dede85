"""The training input: host-local batches of section-3.5 clips as NumPy.

    from lcm_jax.configs import data
    it = create_train_iterator(data.get_config("davis,main"), stage="main", batch_size=4, seed=0)
    batch = next(it)  # frames [B, 3, H, W, 3], masks [B, 3, O, H, W], valid [B, O]

Each process reads a disjoint, contiguous share of the videos (as `tfds.split_for_jax_process`)
and the batch at step s is a function of (seed, s, process_index, process_count) only, so that
`start_step=s` resumes exactly (`input_pipeline/clips.py`, "Randomness").

`data_config.feed` picks how the clips are read and rendered (the same batches either way):
"tf.data" reads the prepared TFDS sets (`tfds_sets`) and renders in tf.data (`tf_clips`);
"numpy" reads the DAVIS / YouTube-VOS folders (`folder_source`) and renders with NumPy and
Pillow in threads (`numpy_clips`), and imports no TensorFlow. This module imports TensorFlow
only for the tf.data feed, when it is used.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from pathlib import Path

import ml_collections
import numpy as np

from lcm_jax.configs.data import FEEDS
from lcm_jax.input_pipeline import folder_source, sources, synthetic
from lcm_jax.input_pipeline.video_io import DatasetError

# dataset -> (folder in manual_dir, training split, fully annotated held-out split or None).
# YouTube-VOS's `valid` has only first-frame masks, so it cannot make training clips.
DATASETS = {
    "davis17": ("DAVIS", "train", "val"),
    "youtube": ("YouTube", "train", None),
    "static": ("static", "train", None),
}


def _datasets(config: ml_collections.ConfigDict) -> list[str]:
    if config.stage == "pretrain":
        return ["static"]
    if config.name == "synthetic":
        return ["davis17", "youtube"]
    return {"davis": ["davis17"], "youtube": ["youtube"], "davis+youtube": ["davis17", "youtube"]}[
        config.name
    ]


def load_source(
    config: ml_collections.ConfigDict, split: str = "train", *, prepare=True
) -> Sequence:
    """All records of `config`'s sets in `split` (every host sees the same list). split
    "train", or "val": the fully annotated held-out videos (DAVIS val).

    What is missing is generated (synthetic) and prepared when `config.prepare_if_missing`
    and `prepare` (False for the processes of a multi-process run: several writers would
    race); otherwise, and for every other data problem, a one-line DatasetError says what to
    run."""
    if split not in ("train", "val"):
        raise DatasetError(f"split must be 'train' or 'val', got {split!r}")
    if config.feed not in FEEDS:
        raise DatasetError(f"config.data.feed must be one of {FEEDS}, got {config.feed!r}")
    datasets = [d for d in _datasets(config) if split == "train" or DATASETS[d][2]]
    if not datasets:
        raise DatasetError(
            f"data {config.name!r} ({config.stage}) has no fully annotated held-out split; "
            f"use split 'train' (e.g. data.eval_split='train')"
        )
    if config.feed == "numpy":
        for dataset in datasets:
            if dataset == "davis17" and config.davis_builder == "davis" or dataset == "static":
                what = "tfds's own davis set" if dataset == "davis17" else "static image sets"
                raise DatasetError(
                    f"config.data.feed='numpy' reads DAVIS and YouTube-VOS folders, not {what} "
                    f"(data {config.name!r}, stage {config.stage}); use feed='tf.data'"
                )
    may_prepare = config.prepare_if_missing and prepare
    why_not = (
        "config.data.prepare_if_missing is False"
        if not config.prepare_if_missing
        else "a multi-process run prepares nothing"
    )
    manual = Path(config.manual_dir)
    if config.name == "synthetic" and not manual.is_dir():
        if not may_prepare:
            raise DatasetError(
                f"synthetic manual_dir {str(manual)!r} does not exist and {why_not}; write it "
                f"with python -m lcm_jax.input_pipeline.synthetic --out {manual}"
            )
        logging.info("generating synthetic data in %s", manual)
        knobs = config.synthetic.to_dict()
        difficulty = synthetic.Difficulty(**knobs.pop("difficulty"))
        synthetic.generate(manual, **knobs, difficulty=difficulty, progress=False)
    parts = []
    for dataset in datasets:
        folder, train_split, held_out = DATASETS[dataset]
        dataset_split = train_split if split == "train" else held_out
        if config.feed == "numpy":
            parts.append(_folder_split(config, dataset, dataset_split, manual / folder))
            continue
        from lcm_jax.input_pipeline import tfds_sets  # imports TensorFlow

        command = (
            f"python -m lcm_jax.input_pipeline.prepare --dataset "
            f"{'synthetic' if config.name == 'synthetic' else dataset} --manual_dir "
            f"{manual if config.name == 'synthetic' else manual / folder} --data_dir "
            f"{config.data_dir}"
        )
        parts.append(
            tfds_sets.open_split(
                config,
                dataset,
                dataset_split,
                manual_dir=manual / folder,
                prepare_command=command,
                why_not=None if may_prepare else why_not,
            )
        )
    return parts[0] if len(parts) == 1 else sources.ConcatSource(parts)


def _folder_split(config, dataset: str, split: str, root: Path) -> Sequence:
    """The NumPy feed's records of `split` of `dataset`, read from its folder `root`."""
    if dataset == "davis17":
        return folder_source.FolderSource.davis(root, split, config.davis_resolution)
    return folder_source.FolderSource.youtube(root, split)


def process_share(
    config: ml_collections.ConfigDict, split: str, process_index: int, process_count: int
) -> sources.SubsetSource:
    """Process `process_index`'s disjoint, contiguous share of `split`'s records (logged)."""
    source = load_source(config, split, prepare=process_count == 1)
    share = sources.shard(source, process_index, process_count)
    logging.info(
        "input %s: process %d of %d reads videos [%d, %d) of %d",
        split, process_index, process_count, share.indices[0], share.indices[-1] + 1, len(source),
    )  # fmt: skip
    return share


def create_train_iterator(
    data_config: ml_collections.ConfigDict,
    *,
    stage: str,
    batch_size: int,
    seed: int,
    start_step: int = 0,
    process_index: int | None = None,
    process_count: int | None = None,
    split: str = "train",
    share: Sequence | None = None,
) -> Iterator[dict[str, np.ndarray]]:
    """Yields host-local training batches forever.

    Args:
        data_config: `configs/data.py` config; its `stage` must equal `stage`.
        stage: "pretrain" | "main" | "sequence".
        batch_size: clips per batch on this host.
        seed: data seed (>= 0).
        start_step: first step; batch s holds the process-local examples
            [s * batch_size, (s + 1) * batch_size).
        process_index, process_count: default jax.process_index() / jax.process_count().
        split: "train", or "val" for clips of the held-out videos (see `load_source`).
        share: this process's records of `split` (`process_share`) when the caller opened them
            already (the trainer opens each split once: the NumPy feed reads every video of a
            folder to open it); by default they are opened here.
    Yields:
        {"frames": float32 [B, 3, H, W, 3] in [0, 1], "masks": float32 [B, 3, O, H, W] in
        {0, 1}, "valid": bool [B, O]} with (H, W) = data_config.crop, O = max_objects.
    """
    if stage != data_config.stage:
        raise ValueError(
            f"stage {stage!r} differs from data_config.stage {data_config.stage!r}; build the "
            f"data config with configs/data.py:<data>,{stage}"
        )
    if batch_size < 1 or start_step < 0:
        raise ValueError(
            f"need batch_size >= 1 and start_step >= 0, got {batch_size}, {start_step}"
        )
    if process_index is None or process_count is None:
        import jax

        process_index = jax.process_index() if process_index is None else process_index
        process_count = jax.process_count() if process_count is None else process_count
    if data_config.feed == "numpy":
        from lcm_jax.input_pipeline.numpy_clips import clip_batches
    else:
        from lcm_jax.input_pipeline.tf_clips import clip_batches  # imports TensorFlow
    if share is None:
        share = process_share(data_config, split, process_index, process_count)
    batches = clip_batches(
        share,
        data_config,
        batch_size=batch_size,
        seed=seed,
        start_index=start_step * batch_size,
        process_index=process_index,
    )
    return ({k: batch[k] for k in ("frames", "masks", "valid")} for batch in batches)
