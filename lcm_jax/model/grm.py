"""Global Retrieval Module (section 3.2): STM's space-time memory read, eqs. 1-2.

    s(i, j)    = softmax_i( k_p(i) · k_q(j) / sqrt(d) )        (1)
    y_grm(j)   = sum_i s(i, j) v_p(i)                            (2)

i runs over the whole memory pool (T frames × h·w positions), j over the query positions.
The paper's eq. 1 has no 1/sqrt(d); STM's code (and its weights) do, so `scale_keys` is on by
default (spec [choice]). Invalid slots (padding of a fixed-capacity pool, frames before an object
joined) are masked out of the softmax; a query with no valid slot reads zeros, never NaN.

`grm_read` with `chunk_size > 0` is the same read as an online softmax over chunks of the pool
(lax.scan), so that memory stays O(chunk · N) for long pools; it equals the plain form to
float32 rounding. Scores and the softmax are computed in float32 whatever the compute dtype;
the weighted sum of values runs in the values' dtype with float32 accumulation.

Shapes: k_q [B, N, Ck], k_p [B, M, Ck], v_p [B, M, Cv], valid [B, M] bool -> [B, N, Cv].
"""

import jax
import jax.numpy as jnp

# Finite stand-in for -inf: exp(MASKED - max) is exactly 0, and no inf - inf can make a NaN.
MASKED = -1e30


def _scores(k_q, k_p, valid, scale):
    """Masked logits of eq. 1, [B, M, N] in float32."""
    s = jnp.einsum("bmc,bnc->bmn", k_p, k_q, preferred_element_type=jnp.float32) * scale
    return jnp.where(valid[:, :, None], s, MASKED)


def _weighted_values(p, v):
    """sum_i p(i, j) v(i) -> [B, N, Cv] float32; p is cast to v's dtype (bf16 on accelerators)."""
    return jnp.einsum("bmn,bmd->bnd", p.astype(v.dtype), v, preferred_element_type=jnp.float32)


def _check(k_q, k_p, v_p, valid):
    if k_q.ndim != 3 or k_p.ndim != 3 or v_p.ndim != 3:
        raise ValueError(
            "grm_read expects k_q [B, N, Ck], k_p [B, M, Ck], v_p [B, M, Cv]; got "
            f"{tuple(k_q.shape)}, {tuple(k_p.shape)}, {tuple(v_p.shape)}"
        )
    b, m = k_p.shape[:2]
    if k_q.shape[0] != b or k_q.shape[2] != k_p.shape[2] or v_p.shape[:2] != (b, m):
        raise ValueError(
            f"grm_read: mismatched shapes k_q {tuple(k_q.shape)}, k_p {tuple(k_p.shape)}, "
            f"v_p {tuple(v_p.shape)}"
        )
    if valid.shape != (b, m):
        raise ValueError(f"grm_read: valid must have shape {(b, m)}, got {tuple(valid.shape)}")


def grm_read(k_q, k_p, v_p, valid, *, scale_keys: bool = True, chunk_size: int = 0):
    """Memory read of eqs. 1-2 over the valid slots of the pool; see the module docstring."""
    _check(k_q, k_p, v_p, valid)
    scale = k_q.shape[-1] ** -0.5 if scale_keys else 1.0
    if chunk_size <= 0 or chunk_size >= k_p.shape[1]:
        s = _scores(k_q, k_p, valid, scale)
        p = jnp.exp(s - jax.lax.stop_gradient(s.max(axis=1, keepdims=True)))
        p = p * valid[:, :, None]
        num = _weighted_values(p, v_p)
        den = p.sum(axis=1)[..., None]
        return (num / jnp.maximum(den, 1e-30)).astype(v_p.dtype)
    return _grm_read_chunked(k_q, k_p, v_p, valid, scale, chunk_size)


def _grm_read_chunked(k_q, k_p, v_p, valid, scale, chunk_size):
    """Online-softmax form of `grm_read` over chunks of `chunk_size` pool slots."""
    b, m, _ = k_p.shape
    pad = -m % chunk_size
    if pad:  # pad the pool with invalid slots up to a whole number of chunks
        k_p = jnp.pad(k_p, ((0, 0), (0, pad), (0, 0)))
        v_p = jnp.pad(v_p, ((0, 0), (0, pad), (0, 0)))
        valid = jnp.pad(valid, ((0, 0), (0, pad)))
    chunks = (m + pad) // chunk_size
    split = lambda x: jnp.moveaxis(x.reshape(b, chunks, chunk_size, *x.shape[2:]), 1, 0)  # noqa: E731

    def step(carry, chunk):
        run_max, den, num = carry
        k_c, v_c, valid_c = chunk
        s = _scores(k_q, k_c, valid_c, scale)  # [B, chunk, N]
        new_max = jnp.maximum(run_max, jax.lax.stop_gradient(s.max(axis=1)))
        correction = jnp.exp(run_max - new_max)
        p = jnp.exp(s - new_max[:, None, :]) * valid_c[:, :, None]
        den = den * correction + p.sum(axis=1)
        num = num * correction[..., None] + _weighted_values(p, v_c)
        return (new_max, den, num), None

    n, cv = k_q.shape[1], v_p.shape[-1]
    init = (
        jnp.full((b, n), MASKED, jnp.float32),
        jnp.zeros((b, n), jnp.float32),
        jnp.zeros((b, n, cv), jnp.float32),
    )
    (_, den, num), _ = jax.lax.scan(step, init, (split(k_p), split(v_p), split(valid)))
    return (num / jnp.maximum(den, 1e-30)[..., None]).astype(v_p.dtype)
