"""Run the Flax model and the PyTorch reference on the same inputs; report per-tensor errors.

    from lcm_jax.interop import compare
    report = compare(variables, {"frames": f, "masks": m, "valid": v}, config=cfg)
    print(report)                 # one row per tensor: shape, max |err|, max |ref|, rel err
    assert report.max_rel_err < 1e-5

`model` is either Flax variables (converted to an `LCMTorch`) or an `LCMTorch` (converted to
Flax variables); the other side is built with `lcm_jax.interop.convert`. Inputs are those of the
training clip: frames [B, 3, H, W, 3] in [0, 1], masks [B, 3, O, H, W], valid [B, O] (NumPy, JAX
or torch). Compared tensors: the query features of frame 1 (`encode_query.*`), the memory
features of frame 0 (`encode_memory.*`), the clip logits (`clip.logits`, real channels; padded
objects must be PADDED_LOGIT on both sides) and, with `gradients=True`, the gradient of the clip
cross-entropy (labels from masks[:, 1:]) for every parameter (`grad.<torch name>`).
The relative error of a tensor is max|flax - torch| / max|torch|; for gradients the denominator
is at least 1e-4 of the largest gradient of the model, because some gradients are zero by
construction and hold only rounding noise on both sides (memory_proj.key_g.bias: GRM's softmax
over the pool ignores a shift of the memory keys; query_proj.key_l.bias: likewise PGM's softmax
over the query).
"""

import dataclasses
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import torch

from lcm_jax.interop import convert
from lcm_jax.interop.torch_lcm import LCMTorch, build_torch_model


@dataclasses.dataclass(frozen=True)
class TensorError:
    shape: tuple
    max_abs_err: float
    max_abs_ref: float
    floor: float = 1e-30  # denominator floor (gradients: 1e-4 of the largest gradient)

    @property
    def rel_err(self) -> float:
        return self.max_abs_err / max(self.max_abs_ref, self.floor)


@dataclasses.dataclass(frozen=True)
class ErrorReport:
    """Per-tensor errors of Flax against the torch reference, in computation order."""

    rows: dict[str, TensorError]

    @property
    def max_rel_err(self) -> float:
        return max(r.rel_err for r in self.rows.values())

    def worst(self) -> tuple[str, TensorError]:
        return max(self.rows.items(), key=lambda kv: kv[1].rel_err)

    def __str__(self) -> str:
        width = max(len(k) for k in self.rows)
        lines = [
            f"{'tensor':<{width}}  {'shape':<22} {'max|err|':>10} {'max|ref|':>10} {'rel':>10}"
        ]
        for name, r in self.rows.items():
            lines.append(
                f"{name:<{width}}  {str(list(r.shape)):<22} {r.max_abs_err:10.3e} "
                f"{r.max_abs_ref:10.3e} {r.rel_err:10.3e}"
            )
        return "\n".join(lines)


def tensor_error(flax_value, torch_value) -> TensorError:
    """Max abs error and max abs reference value of two tensors of the same shape."""
    a = np.asarray(flax_value, np.float64)
    b = (
        torch_value.detach().double().numpy()
        if torch.is_tensor(torch_value)
        else np.asarray(torch_value, np.float64)
    )
    if a.shape != b.shape:
        raise ValueError(f"shape mismatch: flax {a.shape} vs torch {b.shape}")
    return TensorError(
        a.shape, float(np.abs(a - b).max(initial=0.0)), float(np.abs(b).max(initial=0.0))
    )


def clip_labels(masks) -> np.ndarray:
    """Integer labels [B, 2, H, W] of frames 1 and 2 from masks [B, 3, O, H, W] (0 = background,
    1 + argmax over objects where any mask > 0.5)."""
    m = np.asarray(masks)[:, 1:]
    fg = m.max(axis=2) > 0.5
    return np.where(fg, 1 + m.argmax(axis=2), 0).astype(np.int64)


def _to_numpy(x) -> np.ndarray:
    return x.detach().cpu().numpy() if torch.is_tensor(x) else np.asarray(x)


def compare(
    model: Mapping | LCMTorch,
    inputs: Mapping[str, Any],
    *,
    config: Mapping,
    gradients: bool = False,
) -> ErrorReport:
    """Runs both implementations on `inputs` and returns their per-tensor errors."""
    from lcm_jax.model import build_model

    frames, masks, valid = (_to_numpy(inputs[k]) for k in ("frames", "masks", "valid"))
    frames, masks, valid = frames.astype(np.float32), masks.astype(np.float32), valid.astype(bool)
    if isinstance(model, LCMTorch):
        torch_net = model
        variables = convert.torch_to_flax(model.state_dict(), convert.abstract_variables(config))
    elif isinstance(model, Mapping):
        variables = model
        torch_net = build_torch_model(config)
        torch_net.load_state_dict(convert.flax_to_torch(variables, torch_net.state_dict()))
    else:
        raise TypeError(f"model must be Flax variables or an LCMTorch, got {type(model).__name__}")
    torch_net.eval()
    net = build_model(config)
    tf, tm, tv = torch.from_numpy(frames), torch.from_numpy(masks), torch.from_numpy(valid)
    rows: dict[str, TensorError] = {}

    with torch.no_grad():
        tq = torch_net.encode_query(tf[:, 1])
        tmem = torch_net.encode_memory(tf[:, 0], tm[:, 0], tv)
        tlogits = torch_net(tf, tm, tv)
    labels = clip_labels(masks)

    def loss_and_tensors(params):  # the clip cross-entropy; the compared tensors as its aux
        v = {**variables, "params": params}
        fq = net.apply(v, frames[:, 1], method=net.encode_query)
        fmem = net.apply(v, frames[:, 0], masks[:, 0], valid, method=net.encode_memory)
        logits = net.apply(v, frames, masks, valid)
        logp = jax.nn.log_softmax(logits, axis=2)
        loss = -jnp.take_along_axis(logp, labels[:, :, None], axis=2).mean()
        return loss, (fq, fmem, logits)

    # One compiled program: the forward pass, and with `gradients` the backward pass too
    if gradients:
        run = jax.value_and_grad(loss_and_tensors, has_aux=True)
        (_, (fq, fmem, flogits)), grads = jax.jit(run)(variables["params"])
    else:
        _, (fq, fmem, flogits) = jax.jit(loss_and_tensors)(variables["params"])
    for prefix, f, t in (("encode_query", fq, tq), ("encode_memory", fmem, tmem)):
        for field in t._fields:
            if getattr(t, field) is not None:
                rows[f"{prefix}.{field}"] = tensor_error(getattr(f, field), getattr(t, field))
    real = np.concatenate([np.ones_like(valid[:, :1]), valid], axis=1)[:, None, :, None, None]
    real = np.broadcast_to(real, tlogits.shape)
    fl, tl = np.asarray(flogits), tlogits.numpy()
    rows["clip.logits"] = tensor_error(fl[real], tl[real])
    rows["clip.padded_logits"] = tensor_error(fl[~real], tl[~real])

    if gradients:
        rows.update(_gradient_errors(grads, variables, torch_net, (tf, tm, tv), labels))
    return ErrorReport(rows)


def _gradient_errors(grads, variables, torch_net, inputs, labels) -> dict[str, TensorError]:
    """The errors of the Flax parameter gradients `grads` against the torch reference's, for
    the clip cross-entropy of `inputs` (frames, masks, valid as torch tensors) and `labels`."""
    torch_net.zero_grad()
    logits = torch_net(*inputs)
    torch.nn.functional.cross_entropy(
        logits.flatten(0, 1), torch.from_numpy(labels).flatten(0, 1)
    ).backward()
    template = dict(torch_net.named_parameters())
    as_torch = convert.flax_to_torch(
        {"params": grads, "batch_stats": variables.get("batch_stats", {})}, torch_net.state_dict()
    )
    rows = {
        f"grad.{k}": tensor_error(
            as_torch[k].numpy(), torch.zeros_like(p) if p.grad is None else p.grad
        )
        for k, p in template.items()
    }
    floor = 1e-4 * max(r.max_abs_ref for r in rows.values())
    return {k: dataclasses.replace(r, floor=floor) for k, r in rows.items()}
