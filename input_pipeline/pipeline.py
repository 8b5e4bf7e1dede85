"""The training input: host-local batches of section-3.5 clips as NumPy.

    from lcm_jax.configs import data
    it = create_train_iterator(data.get_config("davis,main"), stage="main", batch_size=4, seed=0)
    batch = next(it)  # frames [B, 3, H, W, 3], masks [B, 3, O, H, W], valid [B, O]

Each process reads a disjoint, contiguous share of the videos (as `tfds.split_for_jax_process`)
and the batch at step s is a function of (seed, s, process_index, process_count) only, so that
`start_step=s` resumes exactly (`input_pipeline/clips.py`, "Randomness").
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from pathlib import Path

import ml_collections
import numpy as np
import tensorflow_datasets as tfds

from lcm_jax.input_pipeline import clips, davis, sources, static_images, synthetic, youtube_vos
from lcm_jax.input_pipeline.video_io import DatasetError

# dataset key -> (subfolder of manual_dir, training split)
# dataset -> (folder in manual_dir, training split, fully annotated held-out split or None).
# YouTube-VOS's `valid` has only first-frame masks, so it cannot make training clips.
DATASETS = {
    "davis17": ("DAVIS", "train", "val"),
    "youtube": ("YouTube", "train", None),
    "static": ("static", "train", None),
}


def get_builder(dataset: str, data_dir: str, config: ml_collections.ConfigDict | None = None):
    """The TFDS builder of `dataset` ("davis17" | "youtube" | "static") in `data_dir`."""
    if dataset == "davis17":
        resolution = config.davis_resolution if config is not None else "480p"
        return davis.Davis2017Vos(config=resolution, data_dir=data_dir)
    if dataset == "youtube":
        version = config.youtube_version if config is not None else "2019"
        return youtube_vos.YoutubeVos(config=version, data_dir=data_dir)
    if dataset == "static":
        return static_images.StaticSegmentation(data_dir=data_dir)
    raise ValueError(f"dataset must be one of {sorted(DATASETS)}, got {dataset!r}")


def prepare_builder(builder: tfds.core.DatasetBuilder, manual_dir: str | Path) -> None:
    """Builds the TFDS set from extracted folders in ArrayRecord format (random access).

    Raises DatasetError (one line, with the download instructions) when `manual_dir` is
    missing; nothing is written then."""
    if not Path(manual_dir).is_dir():
        instructions = " ".join(builder.MANUAL_DOWNLOAD_INSTRUCTIONS.split())
        raise DatasetError(
            f"{builder.info.full_name} is not prepared in {str(builder.data_dir_root)!r} and its "
            f"manual_dir {str(manual_dir)!r} does not exist. {instructions}"
        )
    builder.download_and_prepare(
        download_config=tfds.download.DownloadConfig(manual_dir=str(manual_dir)),
        file_format="array_record",
    )


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
    datasets = [d for d in _datasets(config) if split == "train" or DATASETS[d][2]]
    if not datasets:
        raise DatasetError(
            f"data {config.name!r} ({config.stage}) has no fully annotated held-out split; "
            f"use split 'train' (e.g. data.eval_split='train')"
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
        tfds_split = train_split if split == "train" else held_out
        if dataset == "davis17" and config.davis_builder == "davis":
            parts.append(
                davis.tfds_davis_records(
                    tfds_split, data_dir=config.data_dir, resolution=config.davis_resolution
                )
            )
            continue
        builder = get_builder(dataset, config.data_dir, config)
        if not builder.is_prepared():
            if not may_prepare:
                raise DatasetError(
                    f"{builder.info.full_name} is not prepared in {config.data_dir!r} and "
                    f"{why_not}; run python -m lcm_jax.input_pipeline.prepare --dataset "
                    f"{'synthetic' if config.name == 'synthetic' else dataset} --manual_dir "
                    f"{manual if config.name == 'synthetic' else manual / folder} --data_dir "
                    f"{config.data_dir}"
                )
            prepare_builder(builder, manual / folder)
        parts.append(sources.TfdsSource(builder, tfds_split))
    return parts[0] if len(parts) == 1 else sources.ConcatSource(parts)


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
    batches = clips.clip_batches(
        process_share(data_config, split, process_index, process_count),
        data_config,
        batch_size=batch_size,
        seed=seed,
        start_index=start_step * batch_size,
        process_index=process_index,
    )
    return ({k: batch[k] for k in ("frames", "masks", "valid")} for batch in batches)
