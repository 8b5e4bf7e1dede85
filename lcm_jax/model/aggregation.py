"""Soft aggregation of per-object predictions (STM, RGMP), over padded objects.

For each real object o, p_o = softmax(logits_o)[object]; the background is prod_o (1 - p_o).
Each probability p in {background, objects} is clamped to [1e-7, 1 - 1e-7] and turned into the
logit log(p / (1 - p)); a softmax over these logits gives the merged probabilities.

Padded objects take no part: their p_o is 0 in the background product and their logit is
PADDED_LOGIT (softmax weight exactly 0 in float32). STM instead keeps 11 channels and gives
unused ones the clamped logit; the real channels' logits are identical.

Shapes: logits [B, O, H, W, 2] (per object: background, object), valid [B, O] bool
-> [B, 1 + O, H, W] float32, channel 0 the background.
"""

import jax
import jax.numpy as jnp

PADDED_LOGIT = -1e4
EPS = 1e-7


def soft_aggregate(logits, valid):
    if logits.ndim != 5 or logits.shape[-1] != 2 or valid.shape != logits.shape[:2]:
        raise ValueError(
            "soft_aggregate expects logits [B, O, H, W, 2] and valid [B, O]; got "
            f"{tuple(logits.shape)} and {tuple(valid.shape)}"
        )
    keep = valid[:, :, None, None]
    p = jnp.where(keep, jax.nn.softmax(logits.astype(jnp.float32), axis=-1)[..., 1], 0.0)
    background = jnp.prod(1.0 - p, axis=1, keepdims=True)
    em = jnp.clip(jnp.concatenate([background, p], axis=1), EPS, 1.0 - EPS)
    logit = jnp.log(em / (1.0 - em))
    real = jnp.concatenate([jnp.ones_like(keep[:, :1]), keep], axis=1)
    return jnp.where(real, logit, PADDED_LOGIT)
