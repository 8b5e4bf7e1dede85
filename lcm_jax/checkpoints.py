"""Model variables on disk (Orbax, no TensorFlow), each with the model config that made them.

    save_variables("lcm_vars", variables, model_config)  # {"params": ..., "batch_stats": ...}
    variables = load_variables("lcm_vars")          # or a training workdir
    model_config = load_model_config("lcm_vars")    # dict, or None for an older checkpoint

`load_variables` reads (a) a directory written by `save_variables` and (b) a training workdir
managed by an Orbax `CheckpointManager` (its latest step, item "state", a dict with "step",
"params", "batch_stats", "opt_state"; only params and batch_stats are returned). Leaves come
back as NumPy arrays.

The training loop's side (`lcm_jax.train`): `training_manager` opens a workdir's checkpoints,
`restore_training_state` resumes from its latest step, `save_training_state` writes one, and
`load_init_from` reads the weights a new stage starts from (a workdir, a `save_variables`
directory or a torchvision `.pth`). Each checks the shapes against the configured model first
(`tree_mismatches`) and raises CheckpointError listing the differences.

A checkpoint describes itself: `save_variables` writes the model config (configs/model.py's
fields) as `model_config.json` beside the Orbax files, and the training loop saves it with every
step as the JSON item "model_config", and the whole training config as the item "config" (a
resumed run is checked against it: `stored_training_configs`). Checkpoints written before
configs were stored have neither; `load_model_config` returns None for them and the caller
must be told the model.
"""

import json
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp

from lcm_jax import files

STATE_ITEM = "state"  # the CheckpointManager item that the training loop saves
DATA_ITEM = "data"  # its JSON item holding the input position (the step, the data seed, ...)
MODEL_CONFIG_ITEM = "model_config"  # its JSON item holding the model config
CONFIG_ITEM = "config"  # its JSON item holding the whole training config (JSON types)
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
    variables = jax.tree.map(np.asarray, variables)
    with files.atomic_dir(path) as tmp:
        checkpointer = ocp.StandardCheckpointer()
        checkpointer.save(tmp, variables)
        checkpointer.wait_until_finished()
        files.write_text(
            tmp / MODEL_CONFIG_FILE, json.dumps(dict(model_config), indent=1, sort_keys=True) + "\n"
        )
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
        source = where / MODEL_CONFIG_FILE
        if not source.is_file():
            return None
        read = lambda: json.loads(source.read_text())  # noqa: E731
    else:
        source = where / MODEL_CONFIG_ITEM
        if not source.is_dir():
            return None
        read = lambda: ocp.Checkpointer(ocp.JsonCheckpointHandler()).restore(source)  # noqa: E731
    try:
        config = read()
    except ValueError as e:  # JSONDecodeError, UnicodeDecodeError
        raise CheckpointError(f"{source} is not valid JSON (damaged?): {e}") from e
    if not isinstance(config, dict):
        raise CheckpointError(
            f"{source} holds a JSON {type(config).__name__}, not a model config (an object of "
            "configs/model.py's fields); damaged?"
        )
    return config


def checkpoint_step(path: str | os.PathLike) -> int | None:
    """The training step of the checkpoint at `path` (a workdir's latest), None for a
    `save_variables` directory."""
    where, root = _locate(path)
    return None if root is None else int(where.name)


# ---------------------------------------------------------------- Which model a checkpoint holds

MODEL_NAMES = ("paper", "tiny")  # configs/model.py's get_config arguments: `--model` choices
# Fields of configs/model.py that decide which variables the model has and their shapes; the
# others (PGM's top-k, the dtypes, GRM's chunking, ...) only change how the same ones are used.
WEIGHT_FIELDS = (
    "backbone",
    "width",
    "use_grm",
    "use_pgm",
    "use_orm",
    "orm_shared_g",
    "orm_reduction",
)


class ModelMismatchError(CheckpointError):
    """A model config (a `--model` override, or the stored one) that does not fit the weights."""


def switches_of(params: Mapping) -> dict[str, bool]:
    """use_grm / use_pgm / use_orm / orm_shared_g read off a checkpoint's params: the five
    rows of Table 4 (GRM alone is STM) differ only in these."""
    return {
        "use_grm": "key_g" in params.get("query_proj", {}),
        "use_pgm": "pgm" in params,
        "use_orm": "orm" in params,
        "orm_shared_g": "g" in params.get("orm", {}),
    }


def _misfits(config: Mapping, variables: Mapping) -> list[str]:
    """`tree_mismatches` between `config`'s model and `variables`."""
    from lcm_jax.model import init_variables  # the model is only needed for this check

    model = jax.eval_shape(lambda: init_variables(dict(config), jax.random.key(0)))
    return tree_mismatches(model, variables)


def _preset(name: str, params: Mapping | None = None) -> dict:
    """configs/model.py's config `name`, with the switches read off `params` when given."""
    from lcm_jax.configs import model as model_configs

    return {**model_configs.get_config(name).to_dict(), **(switches_of(params) if params else {})}


def resolve_model_config(path: str | os.PathLike, variables: Mapping, model: str | None) -> dict:
    """The model config to run the checkpoint at `path`, whose `variables` are given, with.

    `model` None: the config stored with the checkpoint. A name of MODEL_NAMES: that config of
    configs/model.py instead (an override), which must agree with the stored one on
    WEIGHT_FIELDS. A checkpoint written before configs were stored needs `model`, and its
    Table 4 switches are read off the weights (so STM and ablation checkpoints load). Either
    way the config must fit the weights' names and shapes.

    Raises:
      CheckpointError: no stored config and no `model`.
      ModelMismatchError: `model`, or the stored config, does not fit; the message lists the
        differing fields (or parameters, for an old checkpoint).
    """
    stored = load_model_config(path)
    params = variables["params"]
    if model is None and stored is None:
        raise CheckpointError(
            f"{os.fspath(path)} stores no model config (written before checkpoints did): "
            f"name the model it holds with --model (or model=): {' or '.join(MODEL_NAMES)}"
        )
    if model is not None and model not in MODEL_NAMES:
        raise CheckpointError(f"--model must be one of {MODEL_NAMES}, got {model!r}")
    if model is not None and stored is not None:
        chosen = _preset(model)
        differing = [f for f in WEIGHT_FIELDS if chosen.get(f) != stored.get(f)]
        if differing:
            listing = "; ".join(
                f"{f}: {chosen.get(f)!r} in --model {model}, {stored.get(f)!r} in the checkpoint"
                for f in differing
            )
            raise ModelMismatchError(
                f"--model {model} does not fit the weights in {os.fspath(path)} ({listing}); "
                "leave --model out to use the checkpoint's own model config"
            )
    config = stored if model is None else _preset(model, None if stored else params)
    misfits = _misfits(config, variables)
    if misfits:
        what = f"--model {model}" if model else "the model config stored with it"
        hint = ""
        if stored is None:
            fits = [n for n in MODEL_NAMES if not _misfits(_preset(n, params), variables)]
            hint = f"; the weights fit --model {fits[0]}" if fits else ""
        raise ModelMismatchError(
            f"{what} does not fit the weights in {os.fspath(path)}: {len(misfits)} "
            f"parameter(s) differ, e.g. {misfits[0]}{hint}"
        )
    return dict(config)


def load_model(path: str | os.PathLike, model: str | None = None) -> tuple[dict, dict]:
    """(model config, variables) of the checkpoint at `path` (see `resolve_model_config`)."""
    variables = load_variables(path)
    return resolve_model_config(path, variables, model), variables


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
    # The handler, not a Checkpointer: a training step's item directory has no checkpoint
    # metadata of its own (the step has), and a Checkpointer warns about it on every load.
    handler = ocp.PyTreeCheckpointHandler()
    try:
        metadata = handler.metadata(path)
        tree = getattr(metadata, "tree", metadata)
        restore_args = jax.tree.map(lambda _: ocp.RestoreArgs(restore_type=np.ndarray), tree)
        restored = handler.restore(path, args=ocp.args.PyTreeRestore(restore_args=restore_args))
    except Exception as e:  # orbax raises many types for foreign or damaged directories
        raise CheckpointError(f"cannot restore an Orbax checkpoint from {path}: {e}") from e
    return jax.tree.map(np.asarray, restored)


# ---------------------------------------------------------------- Training checkpoints


def tree_mismatches(expected: Any, found: Any) -> list[str]:
    """Paths whose shape differs, or which one of the two trees lacks ("path: expected X,
    found Y"), params first. Leaves need a `.shape` (arrays, ShapeDtypeStructs, Orbax array
    metadata)."""

    def shapes(tree):
        flat = jax.tree_util.tree_flatten_with_path(tree)[0]
        return {
            jax.tree_util.keystr(path, simple=True, separator="/"): tuple(leaf.shape)
            for path, leaf in flat
        }

    want, have = shapes(expected), shapes(found)

    def describe(p):
        if p not in have:
            return f"{p}: expected {want[p]}, found nothing"
        if p not in want:
            return f"{p}: not in the model, found {have[p]}"
        return f"{p}: expected {want[p]}, found {have[p]}"

    paths = sorted(set(want) | set(have), key=lambda p: (not p.startswith("params"), p))
    return [describe(p) for p in paths if want.get(p) != have.get(p)]


def check_matches(expected: Any, found: Any, where: str) -> None:
    """Raises CheckpointError listing `tree_mismatches` (at most 50) when there are any."""
    bad = tree_mismatches(expected, found)
    if bad:
        listing = "\n  ".join(bad[:50]) + ("\n  ..." if len(bad) > 50 else "")
        raise CheckpointError(
            f"{where} does not match the configured model "
            f"({len(bad)} mismatched parameters):\n  {listing}"
        )


def training_manager(directory: str, keep: int) -> ocp.CheckpointManager:
    """The CheckpointManager of a training run's checkpoints in the absolute path or URL
    `directory` (items "state", "data", "model_config", "config"), saving asynchronously and
    keeping the last `keep` steps. It creates `directory` only with its first save, so a run
    that fails its checks leaves no trace."""
    return ocp.CheckpointManager(
        directory,
        item_handlers={
            STATE_ITEM: ocp.StandardCheckpointHandler(),
            DATA_ITEM: ocp.JsonCheckpointHandler(),
            MODEL_CONFIG_ITEM: ocp.JsonCheckpointHandler(),
            CONFIG_ITEM: ocp.JsonCheckpointHandler(),
        },
        options=ocp.CheckpointManagerOptions(
            max_to_keep=keep, create=False, enable_async_checkpointing=True
        ),
    )


def stored_training_configs(
    manager: ocp.CheckpointManager, step: int
) -> tuple[dict | None, dict | None]:
    """(training config, model config) saved with step `step`; None for an item the
    checkpoint lacks (the training config was not saved before it was stored with every
    step, the model config before that)."""
    items = [k for k in (CONFIG_ITEM, MODEL_CONFIG_ITEM) if k in dict(manager.item_metadata(step))]
    if not items:
        return None, None
    where = f"checkpoint {step} in {manager.directory}"
    try:
        restored = manager.restore(
            step, args=ocp.args.Composite(**{k: ocp.args.JsonRestore() for k in items})
        )
    except Exception as e:  # orbax raises many types for damaged items
        raise CheckpointError(f"{where}: cannot read its stored config (damaged?): {e}") from e
    found = [restored[k] if k in items else None for k in (CONFIG_ITEM, MODEL_CONFIG_ITEM)]
    for k, value in zip((CONFIG_ITEM, MODEL_CONFIG_ITEM), found, strict=True):
        if value is not None and not isinstance(value, dict):
            raise CheckpointError(f"{where}: its {k!r} item is not a JSON object (damaged?)")
    return found[0], found[1]


def restore_training_state(
    manager: ocp.CheckpointManager, abstract_state: Mapping
) -> tuple[dict, dict] | None:
    """(state, data position) of the manager's latest step, or None when it has none.

    `abstract_state` gives the shapes, dtypes and shardings (ShapeDtypeStructs) the state is
    restored into; its params and batch_stats are checked against the checkpoint's first.
    """
    latest = manager.latest_step()
    if latest is None:
        return None
    where = f"checkpoint {latest} in {manager.directory}"
    found = dict(manager.item_metadata(latest)).get(STATE_ITEM)
    if found is None:
        raise CheckpointError(f"{where} has no {STATE_ITEM!r} item")
    check_matches(
        {k: abstract_state[k] for k in ("params", "batch_stats")},
        {k: found[k] for k in ("params", "batch_stats") if k in found},
        f"{where} (a workdir of another model?)",
    )
    try:
        restored = manager.restore(
            latest,
            args=ocp.args.Composite(
                **{
                    STATE_ITEM: ocp.args.StandardRestore(abstract_state),
                    DATA_ITEM: ocp.args.JsonRestore(),
                }
            ),
        )
    except Exception as e:  # e.g. an optimizer state of another optimizer; a damaged step
        detail = " ".join(str(e).split())[:300]
        raise CheckpointError(
            f"cannot resume from {where} (a workdir of another optimizer or stage?): "
            f"{type(e).__name__}: {detail}"
        ) from e
    return restored[STATE_ITEM], restored[DATA_ITEM]


def save_training_state(
    manager: ocp.CheckpointManager,
    step: int,
    state: Mapping,
    data_position: Mapping,
    model_config: Mapping,
    config: Mapping,
) -> None:
    """Starts saving step `step` with the input position, the model config and the training
    config (JSON types) that produced it (asynchronously; `manager.wait_until_finished()`
    waits)."""
    manager.save(
        step,
        args=ocp.args.Composite(
            **{
                STATE_ITEM: ocp.args.StandardSave(state),
                DATA_ITEM: ocp.args.JsonSave(dict(data_position)),
                MODEL_CONFIG_ITEM: ocp.args.JsonSave(dict(model_config)),
                CONFIG_ITEM: ocp.args.JsonSave(dict(config)),
            }
        ),
        force=True,
    )


def load_init_from(
    path: str, abstract_variables: Mapping, fresh_variables: Callable[[], dict]
) -> dict:
    """{"params", "batch_stats"} as NumPy arrays from the weights a stage starts from, checked
    against `abstract_variables`: a previous stage's workdir or a `save_variables` directory
    (`load_variables`), or a torchvision ResNet `.pth` state_dict converted into both encoders
    of `fresh_variables()` (`lcm_jax.interop.convert`, layout "torchvision": LCM-only layers
    keep their fresh initialisation). Error messages start with `repr(path)`."""
    if not os.path.exists(path):
        raise CheckpointError(f"{path!r} does not exist")
    try:
        if path.endswith(".pth"):
            from lcm_jax.interop import convert

            variables = convert.torch_to_flax(
                load_torch_state_dict(path), fresh_variables(), layout="torchvision", source=path
            )
        else:
            variables = load_variables(path)
    except ValueError as e:  # CheckpointError, ConversionError (in one line): what is wrong
        raise CheckpointError(f"{path!r} cannot be used: {getattr(e, 'summary', e)}") from e
    except OSError as e:  # an unreadable file or folder
        raise CheckpointError(f"{path!r} cannot be used: {files.describe(e)}") from e
    check_matches(abstract_variables, variables, repr(path))
    return jax.tree.map(np.asarray, dict(variables))


def load_torch_state_dict(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """The state_dict in the `.pth` file at `path` as NumPy arrays: `torch.load(weights_only=True)`,
    then `lcm_jax.interop.convert.clean_state_dict`. A file that is missing or unreadable
    raises its OSError; one that is truncated, not a torch file, holds other Python objects or
    is no state_dict raises ConversionError (a ValueError) naming the file."""
    import pickle

    import torch  # torch is an optional dependency: only .pth files need it

    from lcm_jax.interop import convert

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise convert.ConversionError(
            f"{path}: holds Python objects other than tensors, refused by "
            f"torch.load(weights_only=True): {str(e).splitlines()[0]}"
        ) from e
    except OSError:
        raise
    except Exception as e:  # torch raises many types for foreign files (KeyError for text)
        detail = (str(e).splitlines() or [""])[0]
        raise convert.ConversionError(
            f"{path}: cannot be read as a torch checkpoint (truncated or not a .pth file): "
            f"{type(e).__name__}: {detail}"
        ) from e
    return convert.clean_state_dict(obj, str(path))
