"""PyTorch state_dicts <-> Flax variables for LCM, strict in both directions.

Layouts of the torch side (`layout=`):
- "lcm": the state_dict of `lcm_jax.interop.torch_lcm.LCMTorch` (same switches as the Flax model).
- "torchvision": an ImageNet ResNet state_dict (`conv1`, `bn1`, `layer1..4`, `fc`) loaded into
  BOTH encoders; `layer4.*` and `fc.*` are ignored (LCM reads res4 = layer3, by design);
  conv1_m / conv1_o are set to zero and every LCM-only layer (projections, PGM, ORM, decoder)
  is taken from the given freshly initialised variables.
- "stm": the official STM release (`module.Encoder_M.res2.0.conv1.weight`, `module.KV_M_r4.Key`,
  `module.Decoder.RF3.convFS`, ...; res2/res3/res4 = layer1/2/3, the encoders' mean/std buffers
  are checked to be ImageNet's and dropped) into a model with use_pgm=use_orm=False, which
  computes STM.

A DataParallel `module.` prefix (anywhere in a key) is stripped. Conversions are checked against
a template: every source key must be used, every template leaf filled, every shape equal;
otherwise one `ConversionError` lists the missing, unexpected and mismatched keys.

Tensor layouts: conv kernel Flax [kh,kw,in,out] <-> torch [out,in,kh,kw]; Dense [in,out] <->
Linear [out,in]; a Flax 2-D kernel may also stand for a torch 1x1 conv [out,in,1,1];
BatchNorm weight/bias <-> params scale/bias, running_mean/var <-> batch_stats mean/var
(num_batches_tracked is dropped; written as 0 towards torch).

    from lcm_jax.interop import LCMTorch
    template = abstract_variables(cfg)                    # shapes only (jax.eval_shape)
    variables = torch_to_flax(torch_net.state_dict(), template)
    state_dict = flax_to_torch(variables, LCMTorch(**cfg).state_dict())
"""

import re
from collections.abc import Mapping
from typing import Any

import jax
import numpy as np
import torch

from lcm_jax.interop.torch_lcm import IMAGENET_MEAN, IMAGENET_STD

LAYOUTS = ("lcm", "torchvision", "stm")
_TV_IGNORED = ("layer4.", "fc.")  # torchvision keys LCM does not use
_STM_PREFIXES = {
    "Encoder_M.": "memory_encoder.",
    "Encoder_Q.": "query_encoder.",
    "KV_M_r4.Key.": "memory_proj.key_g.",
    "KV_M_r4.Value.": "memory_proj.value.",
    "KV_Q_r4.Key.": "query_proj.key_g.",
    "KV_Q_r4.Value.": "query_proj.value.",
    "Decoder.": "decoder.",
}
_STM_RES = {"res2": "layer1", "res3": "layer2", "res4": "layer3"}
_MAX_LISTED = 25


class ConversionError(ValueError):
    """A state_dict or variables tree that does not fit the target model. `summary` says it in
    one line (for command lines); the message may list every key."""

    def __init__(self, message: str, summary: str | None = None):
        super().__init__(message)
        self.summary = summary or " ".join(message.split())


# ----------------------------------------------------------------------------------------
# Key and tensor mapping (torch names of LCMTorch <-> Flax paths).
# ----------------------------------------------------------------------------------------


def _torch_module_to_flax(parts: list[str]) -> tuple[str, ...]:
    """['query_encoder','layer1','0','downsample','1'] -> (..., 'layer1_0', 'downsample_bn')."""
    out, i = [], 0
    while i < len(parts):
        p = parts[i]
        nxt = parts[i + 1] if i + 1 < len(parts) else None
        if re.fullmatch(r"layer\d+", p) and nxt is not None and nxt.isdigit():
            out.append(f"{p}_{nxt}")
            i += 2
        elif p == "downsample" and nxt in ("0", "1"):
            out.append("downsample_conv" if nxt == "0" else "downsample_bn")
            i += 2
        else:
            out.append(p)
            i += 1
    return tuple(out)


def _flax_module_to_torch(path: tuple[str, ...]) -> str:
    parts = []
    for p in path:
        m = re.fullmatch(r"(layer\d+)_(\d+)", p)
        if m:
            parts += [m.group(1), m.group(2)]
        elif p in ("downsample_conv", "downsample_bn"):
            parts += ["downsample", "0" if p == "downsample_conv" else "1"]
        else:
            parts.append(p)
    return ".".join(parts)


def _is_bn(module: str, keys: Mapping) -> bool:
    return f"{module}.running_mean" in keys


def torch_key_to_flax(key: str, keys: Mapping) -> tuple[str, tuple[str, ...]] | None:
    """LCMTorch state_dict key -> (collection, Flax path); None for num_batches_tracked."""
    module, _, name = key.rpartition(".")
    path = _torch_module_to_flax(module.split("."))
    if name == "num_batches_tracked":
        return None
    if name in ("running_mean", "running_var"):
        return "batch_stats", path + ("mean" if name == "running_mean" else "var",)
    if name == "weight":
        return "params", path + ("scale" if _is_bn(module, keys) else "kernel",)
    if name == "bias":
        return "params", path + ("bias",)
    raise ConversionError(f"key {key!r}: unknown parameter kind {name!r}")


def _to_flax_array(t: np.ndarray, target_shape: tuple) -> np.ndarray:
    """torch layout -> Flax layout for a leaf of `target_shape` (None if it cannot fit)."""
    if t.ndim == 4 and len(target_shape) == 4:
        return np.transpose(t, (2, 3, 1, 0))
    if t.ndim == 4 and len(target_shape) == 2 and t.shape[2:] == (1, 1):
        return np.transpose(t[:, :, 0, 0])
    if t.ndim == 2:
        return np.transpose(t)
    return t


def _to_torch_array(a: np.ndarray, target_shape: tuple) -> np.ndarray:
    if a.ndim == 4:
        return np.transpose(a, (3, 2, 0, 1))
    if a.ndim == 2 and len(target_shape) == 4:
        return np.transpose(a)[:, :, None, None]
    if a.ndim == 2:
        return np.transpose(a)
    return a


def _shape(x) -> tuple:
    return tuple(x.shape)


def _report(what: str, missing, unexpected, mismatched, notes=()) -> None:
    if not (missing or unexpected or mismatched):
        return

    def listing(title, items):
        items = list(items)
        if not items:
            return ""
        shown = "\n    ".join(items[:_MAX_LISTED])
        more = f"\n    ... and {len(items) - _MAX_LISTED} more" if len(items) > _MAX_LISTED else ""
        return f"\n  {title} ({len(items)}):\n    {shown}{more}"

    def brief(kind, items, shown=3):  # "N parameter(s) KIND, e.g. a, b, c" (names only)
        items = list(items)
        if not items:
            return []
        names = [i if kind == "of another shape" else i.split(" ")[0] for i in items[:shown]]
        return [f"{len(items)} parameter(s) {kind}{', e.g.' if len(items) > shown else ':'} "
                + ", ".join(names)]  # fmt: skip

    msg = (
        f"{what} does not fit the target model"
        + listing("missing keys", missing)
        + listing("unexpected keys", unexpected)
        + listing("shape mismatches", mismatched)
        + "".join(f"\n  note: {n}" for n in notes)
    )
    summary = "; ".join(
        brief("missing", missing)
        + brief("unexpected", unexpected)
        + brief("of another shape", mismatched)
        + [f"note: {n}" for n in notes]
    )
    raise ConversionError(msg, f"{what} does not fit the target model: {summary}")


# ----------------------------------------------------------------------------------------
# Input hygiene and layout renames (all to LCMTorch names).
# ----------------------------------------------------------------------------------------


def clean_state_dict(state_dict: Any, source: str = "state_dict") -> dict[str, np.ndarray]:
    """Checks that `state_dict` maps str -> tensor, strips `module.` components, and returns
    float32/int NumPy copies."""
    if not isinstance(state_dict, Mapping):
        raise ConversionError(
            f"{source}: expected a state_dict (a mapping of names to tensors), got "
            f"{type(state_dict).__name__}"
        )
    out = {}
    for key, value in state_dict.items():
        if not isinstance(key, str) or not isinstance(value, torch.Tensor | np.ndarray):
            raise ConversionError(
                f"{source}: entry {key!r} is a {type(value).__name__}, not a tensor; "
                "expected a plain state_dict (if this is a training checkpoint, pass its "
                "model state_dict)"
            )
        name = ".".join(p for p in key.split(".") if p != "module")
        if name in out:
            raise ConversionError(f"{source}: key {key!r} collides with another after prefix strip")
        arr = value.detach().cpu().numpy() if isinstance(value, torch.Tensor) else value
        out[name] = np.array(arr)
    if not out:
        raise ConversionError(f"{source}: the state_dict is empty")
    return out


def _rename_stm(sd: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    out, unexpected = {}, []
    for key, value in sd.items():
        head, _, tail = key.partition(".")
        if head in ("Encoder_M", "Encoder_Q") and tail in ("mean", "std"):
            ref = np.asarray(IMAGENET_MEAN if tail == "mean" else IMAGENET_STD, np.float32)
            if value.size != 3 or not np.allclose(value.reshape(3), ref, atol=1e-6):
                raise ConversionError(
                    f"STM buffer {key!r} = {value.reshape(-1)[:3]} is not ImageNet's {ref}; "
                    "this model normalises with ImageNet statistics"
                )
            continue
        for src, dst in _STM_PREFIXES.items():
            if key.startswith(src):
                rest = key[len(src) :]
                if dst.endswith("encoder."):
                    first, _, more = rest.partition(".")
                    rest = f"{_STM_RES.get(first, first)}.{more}" if more else rest
                out[dst + rest] = value
                break
        else:
            unexpected.append(key)
    _report("STM state_dict", [], unexpected, [], [f"known STM prefixes: {list(_STM_PREFIXES)}"])
    return out


# ----------------------------------------------------------------------------------------
# Public conversions.
# ----------------------------------------------------------------------------------------


def _flat(tree: Mapping) -> dict[tuple[str, ...], Any]:
    return {
        tuple(getattr(k, "key", str(k)) for k in path): leaf
        for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]
    }


def _unflatten(flat: Mapping[tuple[str, ...], Any]) -> dict:
    out: dict = {}
    for path, leaf in flat.items():
        node = out
        for p in path[:-1]:
            node = node.setdefault(p, {})
        node[path[-1]] = leaf
    return out


def _template_leaves(template: Mapping) -> dict[tuple[str, ...], Any]:
    leaves = {}
    for col in ("params", "batch_stats"):
        for path, leaf in _flat(template.get(col, {})).items():
            leaves[(col, *path)] = leaf
    return leaves


def _torch_shape(leaf) -> list[int]:
    """The torch shape of a Flax leaf (kernels transposed), for messages."""
    shape = list(_shape(leaf))
    if len(shape) == 4:
        return [shape[3], shape[2], shape[0], shape[1]]
    return shape[::-1]


def _torch_name(col_path: tuple[str, ...]) -> str:
    col, *path = col_path
    module, name = _flax_module_to_torch(tuple(path[:-1])), path[-1]
    if col == "batch_stats":
        return f"{module}.running_{name}"
    return f"{module}.{ {'kernel': 'weight', 'scale': 'weight'}.get(name, name) }"


def torch_to_flax(
    state_dict: Any, template: Mapping, *, layout: str = "lcm", source: str = "state_dict"
) -> dict:
    """torch state_dict -> Flax {"params", "batch_stats"} shaped like `template`.

    template: Flax variables (arrays or jax.ShapeDtypeStruct) of the target model; for
    layout "torchvision" it must hold real arrays (the fresh initialisation kept for every
    LCM-only layer). Leaves of the result are float32 NumPy arrays.
    """
    if layout not in LAYOUTS:
        raise ConversionError(f"layout must be one of {LAYOUTS}, got {layout!r}")
    sd = clean_state_dict(state_dict, source)
    leaves = _template_leaves(template)
    notes = []
    if layout == "stm":
        if any(p[1] in ("pgm", "orm") for p in leaves):
            raise ConversionError(
                "the STM layout converts into a model with use_pgm=False and use_orm=False "
                "(STM has no PGM/ORM parameters); build the template with those switches off"
            )
        sd = _rename_stm(sd)
    if layout == "torchvision":
        return _torchvision_to_flax(sd, template, leaves, source)
    filled: dict[tuple[str, ...], np.ndarray] = {}
    unexpected, mismatched = [], []
    for key, value in sd.items():
        target = torch_key_to_flax(key, sd)
        if target is None:
            continue
        col_path = (target[0], *target[1])
        if col_path not in leaves:
            unexpected.append(f"{key} {list(value.shape)}")
            continue
        want = _shape(leaves[col_path])
        arr = _to_flax_array(value, want)
        if arr.shape != want:
            mismatched.append(
                f"{key}: {list(value.shape)}, expected {_torch_shape(leaves[col_path])}"
            )
            filled[col_path] = None  # reported as mismatched, not as missing
            continue
        filled[col_path] = arr.astype(np.float32)
    missing = [
        f"{_torch_name(p)} {_torch_shape(leaf)}" for p, leaf in leaves.items() if p not in filled
    ]
    filled = {p: v for p, v in filled.items() if v is not None}
    if layout == "stm":
        notes.append("STM keys were renamed to LCM names before matching (res2..4 = layer1..3)")
    if layout == "lcm" and any(k.startswith(("Encoder_M.", "KV_M_r4.")) for k in sd):
        notes.append("this looks like an STM release: use layout 'stm'")
    if layout == "lcm" and any(k.startswith(("layer1.", "fc.")) for k in sd):
        notes.append("this looks like a torchvision ResNet: use layout 'torchvision'")
    _report(f"{source} (layout {layout!r})", missing, unexpected, mismatched, notes)
    return _split(filled)


def _split(filled: Mapping[tuple[str, ...], np.ndarray]) -> dict:
    out = {"params": {}, "batch_stats": {}}
    for col in out:
        out[col] = _unflatten({p[1:]: v for p, v in filled.items() if p[0] == col})
    return out


def _torchvision_to_flax(sd, template, leaves, source) -> dict:
    ignored = sorted(k for k in sd if k.startswith(_TV_IGNORED))
    trunk = {k: v for k, v in sd.items() if not k.startswith(_TV_IGNORED)}
    filled = {}
    for p, leaf in leaves.items():
        if isinstance(leaf, jax.ShapeDtypeStruct):
            raise ConversionError(
                "layout 'torchvision' needs initialised variables as template (LCM-only layers "
                "are kept from it), not shapes"
            )
        filled[p] = np.asarray(leaf, np.float32)
    unexpected, mismatched, used = [], [], set()
    for encoder in ("query_encoder", "memory_encoder"):
        renamed = {f"{encoder}.{k}": v for k, v in trunk.items()}
        for key, value in renamed.items():
            target = torch_key_to_flax(key, renamed)
            if target is None:
                continue
            col_path = (target[0], *target[1])
            short = key.split(".", 1)[1]
            if col_path not in leaves:
                if encoder == "query_encoder":
                    unexpected.append(f"{short} {list(value.shape)}")
                continue
            want = _shape(leaves[col_path])
            arr = _to_flax_array(value, want)
            if arr.shape != want:
                if encoder == "query_encoder":
                    expected = _torch_shape(leaves[col_path])
                    mismatched.append(f"{short}: {list(value.shape)}, expected {expected}")
                used.add(col_path)  # reported as mismatched, not as missing
                continue
            filled[col_path] = arr.astype(np.float32)
            used.add(col_path)
    missing = [
        _torch_name(p).split(".", 1)[1] for p in leaves if p[1] == "query_encoder" and p not in used
    ]
    _report(
        f"{source} (layout 'torchvision')",
        missing,
        unexpected,
        mismatched,
        [f"ignored by design (LCM reads res4 = layer3): {len(ignored)} layer4/fc keys"],
    )
    for stem in ("conv1_m", "conv1_o"):
        p = ("params", "memory_encoder", stem, "kernel")
        filled[p] = np.zeros_like(filled[p])
    return _split(filled)


def flax_to_torch(variables: Mapping, template: Mapping[str, torch.Tensor]) -> dict:
    """Flax {"params", "batch_stats"} -> torch state_dict with exactly the keys and shapes of
    `template` (e.g. `LCMTorch(**cfg).state_dict()`); BN num_batches_tracked is written as 0."""
    if not isinstance(variables, Mapping) or "params" not in variables:
        raise ConversionError("variables: expected a dict with 'params' (and 'batch_stats')")
    leaves = _template_leaves(variables)
    out, unexpected, mismatched = {}, [], []
    for col_path, leaf in leaves.items():
        key = _torch_name(col_path)
        a = np.asarray(leaf)
        if key not in template:
            unexpected.append(f"{'/'.join(col_path)} {list(a.shape)} (torch name {key})")
            continue
        want = tuple(template[key].shape)
        t = _to_torch_array(a, want)
        if t.shape != want:
            mismatched.append(f"{'/'.join(col_path)}: {list(a.shape)} -> {key} {list(want)}")
            out[key] = None  # reported as mismatched, not as missing
            continue
        out[key] = torch.from_numpy(np.array(t, np.float32))  # a copy: JAX's arrays are read-only
    for key, value in template.items():
        if key.endswith("num_batches_tracked"):
            out[key] = torch.zeros_like(value)
    missing = [f"{k} {list(v.shape)}" for k, v in template.items() if k not in out]
    _report("Flax variables", missing, unexpected, mismatched)
    return {k: out[k] for k in template}


def infer_switches(names) -> dict[str, bool]:
    """use_grm / use_pgm / use_orm / orm_shared_g read off LCMTorch state_dict keys."""
    names = set(names)
    return {
        "use_grm": "query_proj.key_g.weight" in names,
        "use_pgm": "pgm.f_n.weight" in names,
        "use_orm": "orm.fc1.weight" in names,
        "orm_shared_g": "orm.g.weight" in names,
    }


def abstract_variables(config: Mapping) -> dict:
    """Shapes of the Flax model's variables (jax.eval_shape of init, nothing computed)."""
    from lcm_jax.model import init_variables

    return jax.eval_shape(lambda: init_variables(config, jax.random.key(0)))
