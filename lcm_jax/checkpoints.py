"""Model variables on disk (Orbax, no TensorFlow), each with the model config that made them.

    save_variables("/tmp/lcm_vars", {"params": ..., "batch_stats": ...}, model_config)
    variables = load_variables("/tmp/lcm_vars")      # or a training workdir
    model_config = load_model_config("/tmp/lcm_vars")  # dict, or None for an older checkpoint

`load_variables` reads (a) a directory written by `save_variables` and (b) a training workdir
managed by an Orbax `CheckpointManager` (its latest step, item "state", a dict with "step",
"params", "batch_stats", "opt_state"; only params and batch_stats are returned). Leaves come
back as NumPy arrays.

A checkpoint describes itself: `save_variables` writes the model config (configs/model.py's
fields) as `model_config.json` beside the Orbax files, and the training loop saves it with every
step as the JSON item "model_config". Checkpoints written before configs were stored have
neither; `load_model_config` returns None for them and the caller must be told the model.
"""

import json
import os
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp

STATE_ITEM = "state"  # the CheckpointManager item that the training loop saves
MODEL_CONFIG_ITEM = "model_config"  # its JSON item holding the model config
MODEL_CONFIG_FILE = "model_config.json"  # the model config beside save_variables' weights
_ORBAX_MARKERS = ("_CHECKPOINT_METADATA", "_METADATA")


class CheckpointError(ValueError):
    """A path that holds no LCM variables, or variables of the wrong form."""


def _check_variables(variables: Any, where: str) -> dict:
    if not isinstance(variables, Mapping) or "params" not in variables:
        keys = list(variables) if isinstance(variables, Mapping) else type(variables).__name__
        raise CheckpointError(
            f"{where}: expected a dict with 'params' (and 'batch_stats'), got {keys}"
        )
    extra = sorted(set(variables) - {"params", "batch_stats"})
    if extra:
        raise CheckpointError(
            f"{where}: unexpected collections {extra}; expected params, batch_stats"
        )
    return {"params": variables["params"], "batch_stats": variables.get("batch_stats", {})}


def save_variables(path: str | os.PathLike, variables: Mapping, model_config: Mapping) -> Path:
    """Writes {"params", "batch_stats"} and their model config (configs/model.py fields) to the
    new directory `path` atomically: into a temporary sibling first, renamed into place only
    once complete. Returns the path."""
    path = Path(path).absolute()
    variables = _check_variables(variables, "save_variables")
    if path.exists():
        raise FileExistsError(f"{path} already exists; refusing to overwrite it")
    path.parent.mkdir(parents=True, exist_ok=True)
    variables = jax.tree.map(np.asarray, variables)
    tmp_root = Path(tempfile.mkdtemp(prefix=f".{path.name}.tmp-", dir=path.parent))
    try:
        checkpointer = ocp.StandardCheckpointer()
        checkpointer.save(tmp_root / "variables", variables)
        checkpointer.wait_until_finished()
        (tmp_root / "variables" / MODEL_CONFIG_FILE).write_text(
            json.dumps(dict(model_config), indent=1, sort_keys=True) + "\n"
        )
        os.replace(tmp_root / "variables", path)
    finally:
        shutil.rmtree(tmp_root, ignore_errors=True)
    return path


def _is_orbax_dir(path: Path) -> bool:
    return any((path / m).exists() for m in _ORBAX_MARKERS)


def _manager_root(path: Path) -> Path | None:
    """The CheckpointManager directory at `path` or `path/checkpoints`, if any."""
    for root in (path, path / "checkpoints"):
        if root.is_dir() and any(p.name.isdigit() and p.is_dir() for p in root.iterdir()):
            return root
    return None


def _locate(path: str | os.PathLike) -> tuple[Path, Path | None]:
    """(the checkpoint directory, None) for a `save_variables` directory, or (the latest
    complete step directory, its manager root) for a training workdir."""
    path = Path(path).absolute()
    if not path.exists():
        raise FileNotFoundError(f"no checkpoint at {path}")
    if not path.is_dir():
        raise CheckpointError(f"{path} is a file; expected an Orbax checkpoint directory")
    if _is_orbax_dir(path):
        return path, None
    root = _manager_root(path)
    if root is None:
        raise CheckpointError(
            f"{path} holds neither variables written by save_variables nor a training "
            "workdir (numbered step directories)"
        )
    step = ocp.CheckpointManager(root).latest_step()
    if step is None:
        raise CheckpointError(f"{root} has no complete checkpoint step")
    return root / str(step), root


def load_model_config(path: str | os.PathLike) -> dict | None:
    """The model config stored with the checkpoint at `path` (a `save_variables` directory or a
    training workdir's latest step), or None for a checkpoint written before configs were
    stored."""
    where, root = _locate(path)
    if root is None:
        file = where / MODEL_CONFIG_FILE
        return json.loads(file.read_text()) if file.is_file() else None
    item = where / MODEL_CONFIG_ITEM
    if not item.is_dir():
        return None
    return ocp.Checkpointer(ocp.JsonCheckpointHandler()).restore(item)


def load_variables(path: str | os.PathLike) -> dict:
    """Reads {"params": ..., "batch_stats": ...} (NumPy leaves) from a `save_variables`
    directory or from the latest step of a training workdir."""
    where, root = _locate(path)
    if root is None:
        return _check_variables(_restore(where), str(where))
    step = int(where.name)
    item = where / STATE_ITEM
    if not item.is_dir():
        raise CheckpointError(f"step {step} in {root} has no {STATE_ITEM!r} item")
    state = _restore(item)
    if not isinstance(state, Mapping) or "params" not in state:
        raise CheckpointError(f"{item} holds no 'params'")
    return _check_variables(
        {"params": state["params"], "batch_stats": state.get("batch_stats", {})}, str(item)
    )


def _restore(path: Path) -> Any:
    """Restores every leaf as a host NumPy array, whatever devices and sharding it was saved
    from (a checkpoint of an 8-GPU run loads on a laptop)."""
    checkpointer = ocp.PyTreeCheckpointer()
    try:
        metadata = checkpointer.metadata(path)
        tree = getattr(metadata, "item_metadata", metadata)
        tree = getattr(tree, "tree", tree)
        restore_args = jax.tree.map(lambda _: ocp.RestoreArgs(restore_type=np.ndarray), tree)
        restored = checkpointer.restore(
            path, args=ocp.args.PyTreeRestore(restore_args=restore_args)
        )
    except Exception as e:  # orbax raises many types for foreign or damaged directories
        raise CheckpointError(f"cannot restore an Orbax checkpoint from {path}: {e}") from e
    return jax.tree.map(np.asarray, restored)
