"""Object Relation Module (section 3.4, eqs. 7-11).

The reference value v_f (memory-encoder value of the frame where the object is first annotated)
and its mask pooled to the grid give weights w(i) in [0, 1]; the target set is F = {f_i},
f_i = w(i) v_f(i) (static shapes, no gather). With d = N = h·w:

    F_Q(i)  = (1/N) sum_j (f_i · v_q(j)) g_q(v_q(j))                          (7)
    v_F(j)  = (1/N) sum_i w(i) (v_q(j) · f_i) g_f(f_i)                        (8)
    v_q    <- v_q + v_F                                                       (9)
    F      <- F + F_Q                                                         (10)
    y_orm(j) = v_q(j) · a,  a = sigmoid(FC2(relu(FC1(GAP_w(F)))))             (11)

g_q and g_f are two 1×1 convolutions (one shared `g` with `shared_g`, spec [choice]); the SE
reduction is `reduction` (16). GAP_w is the w-weighted mean over positions, a zero vector when
sum(w) = 0 (an empty reference mask), never NaN.

Shapes and dtypes: v_q, v_f [B, h, w, Cv] in `dtype` (the compute dtype); w [B, h, w] in
[0, 1] -> y_orm [B, h, w, Cv] in `dtype`. GAP_w is computed in float32.
"""

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from lcm_jax.model.layers import conv, torch_default


def weighted_mean(x, w):
    """sum_i w(i) x(i) / sum_i w(i) for x [B, N, C], w [B, N]; zeros where sum_i w(i) = 0."""
    total = w.sum(axis=1, keepdims=True)
    safe = jnp.where(total > 0, total, 1.0)
    return jnp.where(total > 0, jnp.einsum("bn,bnc->bc", w, x) / safe, 0.0)


class ORM(nn.Module):
    value_dim: int
    reduction: int = 16
    shared_g: bool = False
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, v_q, v_f, w):
        b, h, wd, c = v_q.shape
        if v_f.shape != v_q.shape or w.shape != (b, h, wd):
            raise ValueError(
                "ORM expects v_q and v_f [B, h, w, Cv] and w [B, h, w]; got "
                f"{tuple(v_q.shape)}, {tuple(v_f.shape)}, {tuple(w.shape)}"
            )
        n = h * wd
        if self.shared_g:
            g_q = g_f = conv(c, 1, dtype=self.dtype, name="g")
        else:
            g_q = conv(c, 1, dtype=self.dtype, name="g_q")
            g_f = conv(c, 1, dtype=self.dtype, name="g_f")
        f = v_f * w[..., None].astype(v_f.dtype)  # the target set F, [B, h, w, Cv]
        flat = lambda x: x.reshape(b, n, c)  # noqa: E731
        w = w.reshape(b, n).astype(v_q.dtype)
        relation = jnp.einsum("bic,bjc->bij", flat(f), flat(v_q))  # f_i · v_q(j)
        f_q = jnp.einsum("bij,bjc->bic", relation, flat(g_q(v_q))) / n  # eq. 7
        v_fq = jnp.einsum("bij,bi,bic->bjc", relation, w, flat(g_f(f))) / n  # eq. 8
        q, f = flat(v_q), flat(f)
        q = q + v_fq  # eq. 9
        f = f + f_q  # eq. 10
        squeeze = weighted_mean(f.astype(jnp.float32), w.astype(jnp.float32)).astype(self.dtype)
        hidden = max(1, c // self.reduction)
        dense = dict(dtype=self.dtype, param_dtype=jnp.float32, kernel_init=torch_default)
        a = nn.sigmoid(
            nn.Dense(c, name="fc2", **dense)(
                nn.relu(nn.Dense(hidden, name="fc1", **dense)(squeeze))
            )
        )
        return (q * a[:, None, :]).reshape(b, h, wd, c)  # eq. 11
