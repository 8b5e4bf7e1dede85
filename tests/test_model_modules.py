"""GRM, PGM, ORM and soft aggregation against NumPy float64 written from the paper's equations."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lcm_jax.model import PADDED_LOGIT, grm_read, soft_aggregate
from lcm_jax.model.orm import ORM
from lcm_jax.model.pgm import PGM, sine_position_encoding


def rel_err(got, want):
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    return np.linalg.norm(got - want) / np.linalg.norm(want)


def softmax(x, axis):
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


# -- GRM, eqs. 1-2 ---------------------------------------------------------------------------------


def grm_reference(k_q, k_p, v_p, valid, scale):
    """y(j) = sum_i softmax_i(k_p(i)·k_q(j)·scale) v_p(i) over the valid i, one batch element."""
    k_p, v_p = k_p[valid], v_p[valid]
    s = softmax(k_p @ k_q.T * scale, axis=0)  # [M, N]
    return s.T @ v_p


@pytest.fixture
def pool():
    rng = np.random.default_rng(0)
    b, n, m, ck, cv = 2, 12, 40, 16, 24
    k_q = rng.normal(size=(b, n, ck)).astype(np.float32)
    k_p = rng.normal(size=(b, m, ck)).astype(np.float32)
    v_p = rng.normal(size=(b, m, cv)).astype(np.float32)
    valid = rng.random((b, m)) < 0.7
    return k_q, k_p, v_p, valid


@pytest.mark.parametrize("scale_keys", [True, False])
def test_grm_read_matches_eqs_1_2_in_float64(pool, scale_keys):
    k_q, k_p, v_p, valid = pool
    got = grm_read(k_q, k_p, v_p, valid, scale_keys=scale_keys)
    scale = 1 / math.sqrt(k_q.shape[-1]) if scale_keys else 1.0
    f64 = lambda x: x.astype(np.float64)  # noqa: E731
    for b in range(k_q.shape[0]):
        want = grm_reference(f64(k_q[b]), f64(k_p[b]), f64(v_p[b]), valid[b], scale)
        assert rel_err(got[b], want) < 1e-5


@pytest.mark.parametrize("chunk_size", [7, 8, 39])
def test_chunked_grm_read_equals_the_plain_read(pool, chunk_size):
    k_q, k_p, v_p, valid = pool
    plain = grm_read(k_q, k_p, v_p, valid)
    chunked = jax.jit(lambda *a: grm_read(*a, chunk_size=chunk_size))(k_q, k_p, v_p, valid)
    np.testing.assert_allclose(chunked, plain, rtol=1e-5, atol=1e-6)


def test_invalid_memory_slots_change_nothing(pool):
    k_q, k_p, v_p, valid = pool
    rng = np.random.default_rng(1)

    def garbage(x):
        junk = 1e3 * rng.normal(size=(x.shape[0], 9, x.shape[2]))
        return np.concatenate([x, junk.astype(np.float32)], axis=1)

    padded_valid = np.concatenate([valid, np.zeros((valid.shape[0], 9), bool)], axis=1)
    want = grm_read(k_q, k_p, v_p, valid)
    for chunk in (0, 8):
        got = grm_read(k_q, garbage(k_p), garbage(v_p), padded_valid, chunk_size=chunk)
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_grm_read_of_an_empty_pool_is_zero_with_finite_gradients(pool):
    k_q, k_p, v_p, _ = pool
    none = np.zeros(k_p.shape[:2], bool)
    for chunk in (0, 8):
        read = lambda kq, kp, vp, c=chunk: grm_read(kq, kp, vp, none, chunk_size=c)  # noqa: E731
        np.testing.assert_array_equal(read(k_q, k_p, v_p), 0.0)
        grads = jax.grad(lambda *a, r=read: r(*a).sum(), argnums=(0, 1, 2))(k_q, k_p, v_p)
        assert all(np.isfinite(g).all() for g in grads)


# -- PGM, eqs. 3-6 ---------------------------------------------------------------------------------


def sine_reference(h, w, channels, temperature=10000.0):
    """The spec's DETR-style encoding, element by element."""
    half = channels // 2
    pos = np.zeros((h, w, channels))
    for r in range(h):
        for c in range(w):
            for k in range(half):
                dim = temperature ** (2 * (k // 2) / half)
                trig = math.sin if k % 2 == 0 else math.cos
                pos[r, c, k] = trig(2 * math.pi * (r + 1) / h / dim)
                pos[r, c, half + k] = trig(2 * math.pi * (c + 1) / w / dim)
    return pos


def test_sine_position_encoding_matches_the_spec():
    np.testing.assert_allclose(
        sine_position_encoding(3, 5, 16), sine_reference(3, 5, 16), atol=1e-6
    )


def pgm_reference(k_q, k_m, mask, v_q, kernel, bias, top_k, scale_n):
    """Eqs. 3-6 for one batch element; inputs [h, w, C] and mask [h, w]."""
    h, w, c = k_q.shape
    n = h * w
    pos = sine_reference(h, w, c).reshape(n, c)
    p_q = (k_q.reshape(n, c) + pos) @ kernel + bias  # eq. 4, f_n a 1x1 conv
    p_m = (k_m.reshape(n, c) + pos) @ kernel + bias  # eq. 3
    s = softmax(p_m @ p_q.T, axis=1)  # S[i, j], softmax over the query index j
    s = s * (np.exp(mask.reshape(n)) / math.e)[:, None]  # eq. 5
    position = np.sort(s, axis=0)[-top_k:].mean(axis=0)  # top-K over the memory index i
    if scale_n:
        position = position * n
    return position[:, None] * v_q.reshape(n, -1)  # eq. 6


@pytest.mark.parametrize("scale", ["n", "none"])
def test_pgm_matches_eqs_3_to_6_in_float64(scale):
    rng = np.random.default_rng(2)
    b, h, w, ck, cv, k = 2, 4, 5, 16, 8, 3
    k_q, k_m = (rng.normal(size=(b, h, w, ck)).astype(np.float32) for _ in range(2))
    mask = rng.random((b, h, w)).astype(np.float32)
    v_q = rng.normal(size=(b, h, w, cv)).astype(np.float32)
    pgm = PGM(key_dim=ck, top_k=k, position_map_scale=scale)
    y, variables = pgm.init_with_output(jax.random.key(0), k_q, k_m, mask, v_q)
    f_n = variables["params"]["f_n"]
    kernel = np.asarray(f_n["kernel"], np.float64)[0, 0]
    # The default bias init is zero; give it a value so that the test sees it.
    bias = rng.normal(size=ck)
    variables = {
        "params": {"f_n": {"kernel": f_n["kernel"], "bias": jnp.asarray(bias, jnp.float32)}}
    }
    y = pgm.apply(variables, k_q, k_m, mask, v_q)
    for i in range(b):
        want = pgm_reference(
            *(np.float64(a[i]) for a in (k_q, k_m, mask, v_q)),
            kernel,
            np.float64(np.float32(bias)),
            k,
            scale == "n",
        )
        assert rel_err(np.asarray(y[i]).reshape(h * w, cv), want) < 1e-5


def test_pgm_sows_the_position_map_of_a_uniform_response_as_one():
    """Equal keys everywhere and M = 1: S(i, j) = 1/N, so P·N = 1 (the spec's scaling)."""
    b, h, w, c = 1, 4, 4, 8
    zeros = jnp.zeros((b, h, w, c))
    pgm = PGM(key_dim=c, top_k=4)
    variables = pgm.init(jax.random.key(0), zeros, zeros, jnp.ones((b, h, w)), zeros)
    variables = jax.tree.map(jnp.zeros_like, variables)  # f_n = 0: every p is 0
    _, state = pgm.apply(
        variables, zeros, zeros, jnp.ones((b, h, w)), zeros + 1, mutable=["intermediates"]
    )
    np.testing.assert_allclose(state["intermediates"]["position_map"][0], 1.0, rtol=1e-6)


# -- ORM, eqs. 7-11 --------------------------------------------------------------------------------


def orm_reference(v_q, v_f, w, p):
    """Eqs. 7-11 for one batch element; v_q, v_f [N, C], w [N]; p the module's params in float64."""
    n = v_q.shape[0]
    conv = lambda x, name: x @ p[name]["kernel"][0, 0] + p[name]["bias"]  # noqa: E731
    f = v_f * w[:, None]
    g_q, g_f = conv(v_q, "g_q"), conv(f, "g_f")
    f_q = np.zeros_like(f)
    v_fq = np.zeros_like(v_q)
    for i in range(n):
        for j in range(n):
            f_q[i] += (f[i] @ v_q[j]) * g_q[j] / n  # eq. 7
            v_fq[j] += w[i] * (v_q[j] @ f[i]) * g_f[i] / n  # eq. 8
    v_q, f = v_q + v_fq, f + f_q  # eqs. 9, 10
    gap = (w[:, None] * f).sum(0) / w.sum() if w.sum() > 0 else np.zeros(f.shape[1])
    hidden = np.maximum(gap @ p["fc1"]["kernel"] + p["fc1"]["bias"], 0)
    a = 1 / (1 + np.exp(-(hidden @ p["fc2"]["kernel"] + p["fc2"]["bias"])))
    return v_q * a  # eq. 11 with SE attention


def test_orm_matches_eqs_7_to_11_in_float64():
    rng = np.random.default_rng(3)
    b, h, w, c = 3, 3, 4, 32
    v_q, v_f = (rng.normal(size=(b, h, w, c)).astype(np.float32) for _ in range(2))
    weights = rng.random((b, h, w)).astype(np.float32)
    weights[1] = 0.0  # an empty reference mask
    orm = ORM(value_dim=c, reduction=4)
    variables = orm.init(jax.random.key(0), v_q, v_f, weights)
    # Non-zero biases so that the test sees them.
    variables = jax.tree.map(
        lambda x: x + 0.1 * rng.normal(size=x.shape).astype(np.float32), variables
    )
    y = orm.apply(variables, v_q, v_f, weights)
    params = jax.tree.map(lambda x: np.asarray(x, np.float64), variables["params"])
    for i in range(b):
        v_qi, v_fi = (np.float64(x[i]).reshape(h * w, c) for x in (v_q, v_f))
        want = orm_reference(v_qi, v_fi, np.float64(weights[i]).reshape(-1), params)
        assert rel_err(np.asarray(y[i]).reshape(h * w, c), want) < 1e-5
        assert np.isfinite(np.asarray(y[i])).all()


def test_orm_gradients_are_finite_for_an_empty_reference_mask():
    rng = np.random.default_rng(4)
    v = rng.normal(size=(1, 2, 2, 16)).astype(np.float32)
    empty = np.zeros((1, 2, 2), np.float32)
    orm = ORM(value_dim=16)
    variables = orm.init(jax.random.key(0), v, v, empty)
    grads = jax.grad(lambda p, x: orm.apply(p, x, x, empty).sum(), argnums=(0, 1))(variables, v)
    assert all(np.isfinite(g).all() for g in jax.tree.leaves(grads))


# -- soft aggregation ------------------------------------------------------------------------------


def test_soft_aggregation_on_a_hand_computed_pixel():
    # Object 1: p = 3/4 (logits 0, ln 3); object 2: p = 1/2; object 3 padded; object 4: p = 1.
    logits = np.array([[0, math.log(3)], [0.0, 0.0], [5.0, -5.0], [-100.0, 100.0]], np.float32)
    valid = np.array([[True, True, False, True]])
    got = soft_aggregate(logits[None, :, None, None, :], valid)[0, :, 0, 0]
    # background = (1 - 3/4)(1 - 1/2)(1 - 1) = 0, clamped to 1e-7; object 4 clamped to 1 - 1e-7,
    # which float32 (as STM's float32 code) rounds to 1 - 2^-23 = 0.99999988.
    lo, hi = 1e-7, float(np.float32(1 - 1e-7))
    want = [math.log(lo / (1 - lo)), math.log(3), 0.0, PADDED_LOGIT, math.log(hi / (1 - hi))]
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=2e-5)
    probs = jax.nn.softmax(got)
    assert probs[3] == 0.0 and abs(float(probs.sum()) - 1) < 1e-6


def test_soft_aggregation_without_clamping():
    logits = np.array([[0, math.log(3)], [0.0, 0.0]], np.float32)
    got = soft_aggregate(logits[None, :, None, None, :], np.array([[True, True]]))[0, :, 0, 0]
    # background (1/4)(1/2) = 1/8 -> log(1/7); objects log 3 and 0.
    np.testing.assert_allclose(got, [math.log(1 / 7), math.log(3), 0.0], atol=1e-6)
