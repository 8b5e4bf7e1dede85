"""What a results folder was made with: `<out>/manifest.json`, written before any result.

    {
     "format": 1,
     "command": "evaluate",
     "checkpoint": {"path": "/ckpt", "step": 2000, "weights_sha256": "9f2c..."},
     "model_config": {"backbone": "resnet50", "width": 1.0, ...},
     "inference": {"mem_every": 5, "max_memory_frames": null, "flip": false,
                   "shorter_side": null, "dtype": null, "soft_output": false},
     "data": {"dataset": "davis", "root": "/data/DAVIS", "split": "val", "resolution": "480p"}
    }

`checkpoint.weights_sha256` identifies the weights (`weights_sha256`), `model_config` is the
configs/model.py config they run with, `inference` the `InferenceOptions`, and `data` what was
segmented (`lcm_jax.evaluate`: the dataset, its root folder and split; `lcm_jax.segment`: the
frames' path and `frames_sha256` (own_video.py), the mask's path and SHA-256, the overlay's name
and frame rate).

A run into a folder resumes (keeps the finished videos) only when its manifest equals the one
there, the checkpoint's path and step aside (the same weights elsewhere give the same results);
otherwise `ManifestError` names each entry that differs, and `overwrite` empties the folder and
starts afresh. A non-empty folder without a manifest, or whose manifest.json is not one (not
a JSON object with "format" FORMAT and a "command" of COMMANDS: another program's file), is
never written into, nor emptied.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jax
import numpy as np

from lcm_jax import files

FILE = "manifest.json"
FORMAT = 1
COMMANDS = ("evaluate", "segment")  # the runs that write manifests
INFORMATIONAL = ("checkpoint.path", "checkpoint.step")  # entries that need not match


class ManifestError(ValueError):
    """The output folder holds results of another run, or files that are not results."""


def weights_sha256(variables: Mapping) -> str:
    """SHA-256 of the variables: every leaf's path, dtype, shape and bytes, in path order."""
    digest = hashlib.sha256()
    flat = jax.tree_util.tree_flatten_with_path(variables)[0]
    for path, leaf in sorted(flat, key=lambda item: jax.tree_util.keystr(item[0])):
        leaf = np.ascontiguousarray(leaf)
        digest.update(f"{jax.tree_util.keystr(path)}|{leaf.dtype}|{leaf.shape}|".encode())
        digest.update(leaf.tobytes())
    return digest.hexdigest()


def build(command: str, identity: Mapping, data: Mapping) -> dict:
    """The manifest of a run: `identity` is `Segmenter.identity()` (checkpoint, model_config,
    inference), `data` what it segments."""
    manifest = {"format": FORMAT, "command": command, **identity, "data": dict(data)}
    return json.loads(json.dumps(manifest))  # as it reads back from the file


def flatten(tree: Mapping, prefix: str = "") -> dict[str, Any]:
    """{"a.b": leaf, ...} of nested mappings (a manifest, a config's JSON)."""
    flat = {}
    for key, value in tree.items():
        if isinstance(value, Mapping):
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def differences(old: Mapping, new: Mapping) -> list[str]:
    """Each entry that differs, as "key: old -> new" (JSON values), informational ones aside;
    other weights are named by their checkpoints' paths and steps."""
    old, new = flatten(old), flatten(new)
    show = lambda flat, key: json.dumps(flat[key]) if key in flat else "(none)"  # noqa: E731
    where = lambda flat: f"{flat.get('checkpoint.path')} step {flat.get('checkpoint.step')}"  # noqa: E731
    out = []
    for key in sorted((set(old) | set(new)) - set(INFORMATIONAL)):
        if key in old and key in new and old[key] == new[key]:
            continue
        if key == "checkpoint.weights_sha256":
            out.append(f"checkpoint: other weights ({where(old)} -> {where(new)})")
        else:
            out.append(f"{key}: {show(old, key)} -> {show(new, key)}")
    return out


def _read(path: Path) -> tuple[dict | None, str]:
    """(the manifest of `path`, "") when it is one this version writes, else (None, why not)."""
    try:
        found = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        return None, f"unreadable: {type(e).__name__}"
    if not isinstance(found, dict):
        return None, f"a JSON {type(found).__name__}, not an object"
    if type(found.get("format")) is not int or found["format"] != FORMAT:  # not true, not 1.0
        return None, f'"format" is {json.dumps(found.get("format"))}, not {FORMAT}'
    if found.get("command") not in COMMANDS:
        return None, f'"command" is {json.dumps(found.get("command"))}, not one of {COMMANDS}'
    return found, ""


def check(out: str | os.PathLike, manifest: Mapping, overwrite: bool) -> None:
    """Raises ManifestError unless a run with `manifest` may write into `out` (reads only)."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ManifestError(f"{os.fspath(out)} is a file; the output must be a folder")
    if not out.is_dir() or not any(out.iterdir()):
        return
    if not (out / FILE).is_file():
        raise ManifestError(
            f"{os.fspath(out)} holds files but no {FILE}, so they are not results of this "
            "version of lcm-jax; choose a new output folder or empty it yourself"
        )
    found, why = _read(out / FILE)
    if found is None:  # another program's file, or another version's: never emptied
        raise ManifestError(
            f"{os.fspath(out / FILE)} is not a manifest of this version of lcm-jax ({why}), so "
            "the folder's files are not its results; choose a new output folder or empty it "
            "yourself"
        )
    diffs = differences(found, manifest)
    if diffs and not overwrite:
        raise ManifestError(
            f"{os.fspath(out)} holds results of another run ({'; '.join(diffs)}); rerun with "
            "--overwrite to replace them, or choose another output folder"
        )


def claim(out: str | os.PathLike, manifest: Mapping, overwrite: bool) -> None:
    """Readies `out` for the run after `check`: removes temporaries left by a killed run,
    empties the folder when `overwrite`, and writes the manifest."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    files.remove_temporaries(out)
    if overwrite:
        for child in out.iterdir():
            if child.is_dir() and not child.is_symlink():
                shutil.rmtree(child)
            else:
                child.unlink()
    files.write_text(out / FILE, json.dumps(manifest, indent=1, sort_keys=True) + "\n")


def prepare(out: str | os.PathLike, manifest: Mapping, overwrite: bool = False) -> None:
    """`check`, then `claim`: what a single process does before it writes any result."""
    check(out, manifest, overwrite)
    claim(out, manifest, overwrite)
