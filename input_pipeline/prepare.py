"""Prepares the TFDS sets (ArrayRecord files, for random access) from extracted folders.

    python -m lcm_jax.input_pipeline.prepare --dataset davis17 --manual_dir ~/data/vos/DAVIS \
        --data_dir ~/tensorflow_datasets [--resolution 480p|full_resolution]
    python -m lcm_jax.input_pipeline.prepare --dataset youtube --version 2019 \
        --manual_dir ~/vos/YouTube ...
    python -m lcm_jax.input_pipeline.prepare --dataset static --manual_dir ~/data/vos/static ...
    python -m lcm_jax.input_pipeline.prepare --dataset synthetic \
        --manual_dir /tmp/lcm_synthetic/raw ...

`synthetic` prepares all three from a folder written by `python -m lcm_jax.input_pipeline.synthetic`
(its DAVIS/, YouTube/ and static/ subfolders). TFDS shows progress bars while it builds.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import ml_collections

from lcm_jax.input_pipeline import pipeline, tfds_sets


def prepare(
    dataset: str,
    manual_dir: str,
    data_dir: str,
    *,
    resolution: str = "480p",
    version: str = "2019",
) -> list[str]:
    """Prepares `dataset` ("davis17" | "youtube" | "static" | "synthetic"); returns the names."""
    config = ml_collections.ConfigDict({"davis_resolution": resolution, "youtube_version": version})
    if dataset == "synthetic":
        jobs = [(d, Path(manual_dir) / sub) for d, (sub, *_) in pipeline.DATASETS.items()]
    elif dataset in pipeline.DATASETS:
        jobs = [(dataset, Path(manual_dir))]
    else:
        raise ValueError(
            f"--dataset must be one of {sorted(pipeline.DATASETS) + ['synthetic']}, got {dataset!r}"
        )
    names = []
    for name, folder in jobs:
        builder = tfds_sets.get_builder(name, data_dir, config)
        tfds_sets.prepare_builder(builder, folder)
        names.append(builder.info.full_name)
        print(f"{builder.info.full_name}: {builder.info.splits}")
    return names


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dataset", required=True, help="davis17 | youtube | static | synthetic")
    parser.add_argument("--manual_dir", required=True, help="extracted folders")
    parser.add_argument("--data_dir", required=True, help="TFDS data dir to write")
    parser.add_argument("--resolution", default="480p", help="davis17: 480p | full_resolution")
    parser.add_argument("--version", default="2019", help="youtube: 2018 | 2019")
    args = parser.parse_args(argv)
    prepare(
        args.dataset,
        args.manual_dir,
        args.data_dir,
        resolution=args.resolution,
        version=args.version,
    )


if __name__ == "__main__":
    main()
