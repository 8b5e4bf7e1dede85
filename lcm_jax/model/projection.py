"""Key and value projections on res4 (sections 3.2 and 3.3).

Separate heads for the query and the memory encoder, each a 3×3 convolution with bias:
global key `k_g` (Key-G, C/8 = 128 channels, GRM), local key `k_l` (Key-L, 128 channels, PGM)
and value `v` (C/2 = 512 channels); 128 and 512 are scaled by the width multiplier for small
models. A key is absent (None, and no parameters) when the module that reads it is switched off.
The keys compute in `key_dtype` (float32 by default, also in a bf16 model), the value in `dtype`.

Shapes: res4 [B, h, w, C4] -> k_g [B, h, w, Ck] | None, k_l [B, h, w, Ck] | None, v [B, h, w, Cv].
"""

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from lcm_jax.model.layers import conv


class Projection(nn.Module):
    key_dim: int
    value_dim: int
    global_key: bool = True
    local_key: bool = True
    dtype: Any = jnp.float32
    key_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, r4):
        key = lambda name: conv(self.key_dim, 3, dtype=self.key_dtype, name=name)(r4)  # noqa: E731
        k_g = key("key_g") if self.global_key else None
        k_l = key("key_l") if self.local_key else None
        v = conv(self.value_dim, 3, dtype=self.dtype, name="value")(r4)
        return k_g, k_l, v
