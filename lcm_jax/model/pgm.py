"""Position Guidance Module (section 3.3, eqs. 3-6).

    p_m(i) = f_n(k_l^M(i) + pos(i))                                          (3)
    p_q(j) = f_n(k_l^Q(j) + pos(j))                                          (4)
    S(i, j) = softmax_j( p_q(j) · p_m(i) ) · g(M_{t-1}(i)),  g(x) = exp(x) / e  (5)
    y_pgm(j) = ( (1/K) sum of the top-K of S(·, j) over i ) · v^Q(j)         (6)

i indexes the previous adjacent frame t-1 (memory), j the query frame; the softmax is over the
query index j. `pos` is a fixed DETR-style 2D sine encoding, the same grid for both frames;
`f_n` is one 1×1 convolution shared by query and memory. M_{t-1} is the object's previous soft
mask pooled to the stride-16 grid. With `position_map_scale="n"` (spec [choice]) the position
map P(j) is multiplied by N = h·w so that a uniform response equals 1.

The position map P [B, h, w] is sown into the "intermediates" collection as `position_map`
(the paper's Figure 4).

Shapes and dtypes: k_l_q, k_l_m [B, h, w, Ck] in `dtype` (the keys' dtype, float32 by
default); mask_m [B, h, w] in [0, 1]; v_q [B, h, w, Cv] -> y_pgm [B, h, w, Cv] in v_q's dtype.
The affinities, the softmax and the position map are float32.
"""

import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from lcm_jax.model.layers import conv


def sine_position_encoding(h: int, w: int, channels: int, temperature: float = 10000.0):
    """Fixed 2D sine/cosine encoding, [h, w, channels] float32 (DETR style).

    channels/2 features for y, then channels/2 for x. Coordinates are normalised to (0, 2π]:
    row r has y = 2π (r + 1) / h (likewise x). Feature k of a coordinate c is
    sin(c / T^(2⌊k/2⌋ / (channels/2))) for even k and cos(...) for odd k, T = temperature.
    """
    if channels % 4:
        raise ValueError(f"position encoding channels must be a multiple of 4, got {channels}")
    half = channels // 2
    dim_t = temperature ** (2 * (np.arange(half) // 2) / half)
    y = 2 * math.pi * np.arange(1, h + 1) / h
    x = 2 * math.pi * np.arange(1, w + 1) / w

    def encode(c):  # [L] -> [L, half], sin on even features, cos on odd
        a = c[:, None] / dim_t
        return np.where(np.arange(half) % 2 == 0, np.sin(a), np.cos(a))

    pos_y = np.broadcast_to(encode(y)[:, None, :], (h, w, half))
    pos_x = np.broadcast_to(encode(x)[None, :, :], (h, w, half))
    return jnp.asarray(np.concatenate([pos_y, pos_x], axis=-1), jnp.float32)


class PGM(nn.Module):
    key_dim: int
    top_k: int = 8
    position_map_scale: str = "n"
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, k_l_q, k_l_m, mask_m, v_q):
        b, h, w, _ = k_l_q.shape
        n = h * w
        if k_l_m.shape != k_l_q.shape or mask_m.shape != (b, h, w) or v_q.shape[:3] != (b, h, w):
            raise ValueError(
                "PGM expects k_l_q and k_l_m [B, h, w, Ck], mask_m [B, h, w], v_q [B, h, w, Cv]; "
                f"got {tuple(k_l_q.shape)}, {tuple(k_l_m.shape)}, {tuple(mask_m.shape)}, "
                f"{tuple(v_q.shape)}"
            )
        if not 1 <= self.top_k <= n:
            raise ValueError(f"PGM top_k must be in [1, h*w = {n}], got {self.top_k}")
        pos = sine_position_encoding(h, w, self.key_dim).astype(self.dtype)
        f_n = conv(self.key_dim, 1, dtype=self.dtype, name="f_n")
        p_q = f_n(k_l_q + pos).reshape(b, n, -1)  # eq. 4
        p_m = f_n(k_l_m + pos).reshape(b, n, -1)  # eq. 3
        logits = jnp.einsum("bjc,bic->bji", p_q, p_m, preferred_element_type=jnp.float32)
        s = jax.nn.softmax(logits, axis=1)  # over the query index j
        s = s * jnp.exp(mask_m.reshape(b, 1, n).astype(jnp.float32) - 1.0)  # eq. 5, g(M)
        position_map = jax.lax.top_k(s, self.top_k)[0].mean(axis=-1)  # [B, N], eq. 6
        if self.position_map_scale == "n":
            position_map = position_map * n
        position_map = position_map.reshape(b, h, w)
        self.sow("intermediates", "position_map", position_map)
        return position_map[..., None].astype(v_q.dtype) * v_q
