"""STM's decoder (LCM section 3.4, last paragraph): refine res4-level features with res3 and res2.

    m4 = ResMM(convFM(x))                                   x = concat(y_grm, y_local)
    Refine(r, m) = ResMM(ResFS(convFS(r)) + up2(m))          with res3 (RF3), then res2 (RF2)
    logits = up4(pred2(relu(m2)))                           2 channels: background, object

`Res` is STM's pre-activation block without normalisation, x + conv2(relu(conv1(relu(x)))), all
convolutions 3×3 with bias; up2/up4 are bilinear with align_corners=False (half-pixel centres).

The skip branch ResFS(convFS(r)) depends on the frame only, not on the object: it is computed
once per frame and shared by the frame's O objects (STM repeats the frame's features per object
first; the result is the same).

Shapes: x [B·O, h, w, 2·Cv] (frame b's objects in rows b·O ... b·O + O − 1), r3 [B, 2h, 2w, C3],
r2 [B, 4h, 4w, C2], all in `dtype` (the compute dtype) -> logits float32 [B·O, 16h, 16w, 2].
"""

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from lcm_jax.model.layers import conv


def upsample_bilinear(x, height: int, width: int):
    """Bilinear resize of [B, h, w, C] to [B, height, width, C] (align_corners=False)."""
    return jax.image.resize(x, (x.shape[0], height, width, x.shape[-1]), "bilinear")


class ResBlock(nn.Module):
    dim: int
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x):
        r = conv(self.dim, 3, dtype=self.dtype, name="conv1")(nn.relu(x))
        r = conv(self.dim, 3, dtype=self.dtype, name="conv2")(nn.relu(r))
        return x + r


class Refine(nn.Module):
    dim: int
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, skip, m):
        """skip [B, H, W, C] of the frames, m [B·O, H/2, W/2, dim] of their objects."""
        s = ResBlock(self.dim, self.dtype, name="ResFS")(
            conv(self.dim, 3, dtype=self.dtype, name="convFS")(skip)
        )
        s = jnp.repeat(s, m.shape[0] // skip.shape[0], axis=0)  # the frame's, per object
        m = s + upsample_bilinear(m, *skip.shape[1:3])
        return ResBlock(self.dim, self.dtype, name="ResMM")(m)


class Decoder(nn.Module):
    dim: int
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, r3, r2):
        m4 = ResBlock(self.dim, self.dtype, name="ResMM")(
            conv(self.dim, 3, dtype=self.dtype, name="convFM")(x)
        )
        m3 = Refine(self.dim, self.dtype, name="RF3")(r3, m4)
        m2 = Refine(self.dim, self.dtype, name="RF2")(r2, m3)
        p2 = conv(2, 3, dtype=self.dtype, name="pred2")(nn.relu(m2))
        return upsample_bilinear(p2.astype(jnp.float32), 4 * p2.shape[1], 4 * p2.shape[2])
