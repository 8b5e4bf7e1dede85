"""Frame geometry of inference: internal resolution and padding to a multiple of 16.

As STM's evaluation: the [0, 1] image (and each mask) is padded with zeros to a multiple of
16, `floor(diff / 2)` rows/columns on the top/left and the rest on the bottom/right; outputs are
cropped back. The internal resolution scales the frame so that its shorter side has a given
length (e.g. 480), or keeps it (None); outputs are resized back to the original size.
"""

import jax.numpy as jnp

MULTIPLE = 16  # stride of the model's res4 grid

Pads = tuple[tuple[int, int], tuple[int, int]]  # ((top, bottom), (left, right))


def internal_size(height: int, width: int, shorter_side: int | None) -> tuple[int, int]:
    """(H', W') with min(H', W') == shorter_side and the aspect ratio kept (rounded);
    (height, width) when shorter_side is None."""
    if shorter_side is None:
        return height, width
    if shorter_side < MULTIPLE:
        raise ValueError(f"internal shorter side must be >= {MULTIPLE}, got {shorter_side}")
    scale = shorter_side / min(height, width)
    return max(1, round(height * scale)), max(1, round(width * scale))


def pad_amounts(height: int, width: int, multiple: int = MULTIPLE) -> Pads:
    """((top, bottom), (left, right)) padding up to the next multiple; top/left = floor(diff/2)."""
    dh, dw = -height % multiple, -width % multiple
    return (dh // 2, dh - dh // 2), (dw // 2, dw - dw // 2)


def pad_hw(x, pads: Pads, channels_last: bool):
    """Zero-pads the spatial axes of x [..., H, W, C] (channels_last) or [..., H, W]."""
    spatial = [pads[0], pads[1]] + ([(0, 0)] if channels_last else [])
    return jnp.pad(x, [(0, 0)] * (x.ndim - len(spatial)) + spatial)


def crop_hw(x, pads: Pads, channels_last: bool):
    """Inverse of `pad_hw`."""
    (top, bottom), (left, right) = pads
    offset = 1 if channels_last else 0
    h, w = x.shape[x.ndim - 2 - offset], x.shape[x.ndim - 1 - offset]
    index = (Ellipsis, slice(top, h - bottom), slice(left, w - right))
    return x[index + ((slice(None),) if channels_last else ())]
