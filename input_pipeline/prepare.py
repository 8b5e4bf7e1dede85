"""Prepares the TFDS sets (ArrayRecord files, for random access) from extracted folders.

    python -m lcm_jax.input_pipeline.prepare --dataset davis17 --manual_dir ~/data/vos/DAVIS \
        --data_dir ~/tensorflow_datasets [--resolution 480p|full_resolution]
    python -m lcm_jax.input_pipeline.prepare --dataset youtube --version 2019 \
        --manual_dir ~/data/vos/YouTube --data_dir ~/tensorflow_datasets
    python -m lcm_jax.input_pipeline.prepare --dataset static --manual_dir ~/data/vos/static \
        --data_dir ~/tensorflow_datasets
    python -m lcm_jax.input_pipeline.prepare --dataset synthetic \
        --manual_dir lcm_synth --data_dir lcm_synth_tfds

`synthetic` prepares all three from a folder written by `python -m lcm_jax.input_pipeline.synthetic`
(its DAVIS/, YouTube/ and static/ subfolders; `lcm_synth` is the one its docstring's command
writes). TFDS shows progress bars while it builds.

A bad flag or a missing folder is one line "error: ..." on stderr with exit status 2, before
anything is written (`lcm_jax.cli`). No temporary folder is left behind (`tfds_sets`).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import ml_collections

from lcm_jax import files
from lcm_jax.input_pipeline import folder_source, pipeline


def prepare(
    dataset: str,
    manual_dir: str,
    data_dir: str,
    *,
    resolution: str = "480p",
    version: str = "2019",
) -> list[str]:
    """Prepares `dataset` ("davis17" | "youtube" | "static" | "synthetic"); returns the names.

    Raises ValueError (a DatasetError for a missing folder) naming the flag or the folder, before
    anything is written: every folder is checked before the first set is prepared."""
    config = ml_collections.ConfigDict({"davis_resolution": resolution, "youtube_version": version})
    if dataset == "synthetic":
        jobs = [(d, Path(manual_dir) / sub) for d, (sub, *_) in pipeline.DATASETS.items()]
    elif dataset in pipeline.DATASETS:
        jobs = [(dataset, Path(manual_dir))]
    else:
        raise ValueError(
            f"--dataset must be one of {sorted(pipeline.DATASETS) + ['synthetic']}, got {dataset!r}"
        )
    if resolution not in folder_source.DAVIS_RESOLUTIONS:  # the davis17 builder's configs
        raise ValueError(
            f"--resolution must be one of {sorted(folder_source.DAVIS_RESOLUTIONS)}, "
            f"got {resolution!r}"
        )
    if "://" not in data_dir:  # a local folder (TFDS also writes to gs:// and other URLs)
        files.check_writable(data_dir, folder=True)
    from lcm_jax.input_pipeline import tfds_sets, youtube_vos  # imports TensorFlow

    versions = [c.name for c in youtube_vos.YoutubeVos.BUILDER_CONFIGS]
    if version not in versions:
        raise ValueError(f"--version must be one of {versions}, got {version!r}")
    builders = [(tfds_sets.get_builder(name, data_dir, config), folder) for name, folder in jobs]
    for builder, folder in builders:
        if not Path(folder).is_dir():  # DatasetError naming it, with the download instructions
            tfds_sets.prepare_builder(builder, folder)
    names = []
    for builder, folder in builders:
        tfds_sets.prepare_builder(builder, folder)
        names.append(builder.info.full_name)
        print(f"{builder.info.full_name}: {builder.info.splits}")
    return names


def main(argv: list[str] | None = None) -> int:
    """The CLI; returns its exit status (`lcm_jax.cli`: 2 and one line "error: ..." on stderr
    for a bad flag or a missing folder, before anything is written)."""
    from lcm_jax import cli

    parser = argparse.ArgumentParser(
        prog="python -m lcm_jax.input_pipeline.prepare", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--dataset", required=True, help="davis17 | youtube | static | synthetic")
    parser.add_argument("--manual_dir", required=True, help="extracted folders")
    parser.add_argument("--data_dir", required=True, help="TFDS data dir to write")
    parser.add_argument("--resolution", default="480p", help="davis17: 480p | full_resolution")
    parser.add_argument("--version", default="2019", help="youtube: 2018 | 2019")
    args = parser.parse_args(argv)
    return cli.run(lambda: _prepare(args))


def _prepare(args: argparse.Namespace) -> int:
    prepare(
        args.dataset,
        args.manual_dir,
        args.data_dir,
        resolution=args.resolution,
        version=args.version,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
