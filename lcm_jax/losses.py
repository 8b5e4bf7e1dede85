"""Training loss of section 3.5: cross-entropy on frames 1 and 2 of a 3-frame clip.

The model returns soft-aggregated logits over {background, objects} for the two predicted
frames (`LCM.__call__`: [B, 2, 1+O, H, W], padded objects at `PADDED_LOGIT` = -1e4, so they
take no probability). The target of a pixel is the argmax over [background, objects] of the
ground-truth masks, background being 1 - max over the real objects (a pixel no object covers
is background; padded objects' masks are zeroed first, so no label ever points at them).

Bootstrapped cross-entropy (STCN's "hard pixel mining") keeps, for each clip and frame, only
the top-p fraction of its pixels with the largest loss. p is 1 before `start_warm`, falls
linearly to `top_p` at `end_warm` and stays there. We select per clip rather than over the
whole batch (the spec leaves this open; fixed here, not a config field): the loss of a batch
is then the mean of per-clip losses, so it is the same on any number of devices and under
gradient accumulation.
"""

import jax
import jax.numpy as jnp


def labels_from_masks(masks: jax.Array, valid: jax.Array) -> jax.Array:
    """Per-pixel class index in {0 = background, 1..O = object}.

    Args:
      masks: [..., O, H, W] object masks in [0, 1] (hard in training data).
      valid: [..., O] bool, real (non-padded) objects.

    Returns:
      int32 [..., H, W]: argmax over [1 - max_o m_o, m_1, ..., m_O] (ties go to the lower index,
      so background wins when no object covers the pixel).
    """
    masks = jnp.where(valid[..., None, None], masks, 0.0)
    background = 1.0 - jnp.max(masks, axis=-3, keepdims=True, initial=0.0)
    return jnp.argmax(jnp.concatenate([background, masks], axis=-3), axis=-3).astype(jnp.int32)


def pixel_cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """-log softmax(logits)[label] per pixel, in float32.

    Args:
      logits: [..., C, H, W] (class axis -3, as the model's output).
      labels: int [..., H, W] in [0, C).

    Returns:
      float32 [..., H, W].
    """
    log_p = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-3)
    return -jnp.take_along_axis(log_p, labels[..., None, :, :], axis=-3)[..., 0, :, :]


def bootstrap_fraction(step: jax.Array, start_warm: int, end_warm: int, top_p: float) -> jax.Array:
    """Fraction of hardest pixels kept at `step`: 1 before start_warm, top_p after end_warm,
    linear in between."""
    if end_warm <= start_warm:
        return jnp.where(step < start_warm, 1.0, top_p)
    t = jnp.clip((step - start_warm) / (end_warm - start_warm), 0.0, 1.0)
    return 1.0 - t * (1.0 - top_p)


def top_fraction_mean(loss: jax.Array, fraction: jax.Array) -> jax.Array:
    """Mean of the ceil(fraction * n) largest values of each row of `loss` [..., n] (at least 1).

    `fraction` may be traced (it changes with the step), so the selection is a sort and a
    rank mask rather than `lax.top_k` with a static k.
    """
    n = loss.shape[-1]
    k = jnp.clip(jnp.ceil(fraction * n), 1, n)
    ranked = -jnp.sort(-loss, axis=-1)
    keep = jnp.arange(n) < k
    return jnp.sum(jnp.where(keep, ranked, 0.0), axis=-1) / k


def clip_losses(
    logits: jax.Array,
    masks: jax.Array,
    valid: jax.Array,
    *,
    bootstrap_p: jax.Array | float = 1.0,
) -> jax.Array:
    """Cross-entropy of each clip on its predicted frames 1 and 2.

    Args:
      logits: [B, 2, 1+O, H, W] model output for frames 1 and 2.
      masks: [B, 3, O, H, W] ground truth of the clip (frame 0 is the given mask, unused here).
      valid: [B, O] bool.
      bootstrap_p: fraction of each frame's hardest pixels that enter its mean (1 = plain CE).

    Returns:
      float32 [B, 2]: per clip and frame, the mean CE over the kept pixels.
    """
    labels = labels_from_masks(masks[:, 1:], valid[:, None, :])
    ce = pixel_cross_entropy(logits, labels)  # [B, 2, H, W]
    return top_fraction_mean(ce.reshape(*ce.shape[:2], -1), bootstrap_p)


def training_loss(
    logits: jax.Array,
    masks: jax.Array,
    valid: jax.Array,
    *,
    bootstrap_p: jax.Array | float = 1.0,
) -> tuple[jax.Array, jax.Array]:
    """The objective: sum over frames 1 and 2 of the batch-mean per-frame CE (as STCN sums
    its frames' losses).

    Returns:
      (loss scalar, per-frame losses [2]), float32.
    """
    per_frame = jnp.mean(clip_losses(logits, masks, valid, bootstrap_p=bootstrap_p), axis=0)
    return jnp.sum(per_frame), per_frame
