"""The whole LCM network: Table 4 variants, static shapes, empty masks, precision, bad input."""

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax.traverse_util import flatten_dict

from lcm_jax.configs import model as model_configs
from lcm_jax.model import PADDED_LOGIT, MemoryPool, PrevFrame, Reference, build_model
from lcm_jax.model.resnet import ResNetEncoder

B, K, H, W = 1, 3, 32, 48  # K objects, the last one padded
VALID = np.array([[True, True, False]])


def tiny(**overrides):
    config = model_configs.get_config("tiny")
    config.pgm_top_k = 2  # the 32x48 frames make a 2x3 grid
    config.update(overrides)
    return build_model(config)


@pytest.fixture(scope="module")
def clip():
    rng = np.random.default_rng(0)
    frames = rng.random((B, 3, H, W, 3)).astype(np.float32)
    masks = np.zeros((B, 3, K, H, W), np.float32)
    masks[:, :, 0, 4:20, 8:30] = 1.0
    masks[:, :, 1, 18:30, 30:44] = 1.0
    return frames, masks


@functools.cache
def initialised(**overrides):
    net = tiny(**overrides)
    rng = np.random.default_rng(0)
    frames = rng.random((B, 3, H, W, 3)).astype(np.float32)
    masks = (rng.random((B, 3, K, H, W)) > 0.5).astype(np.float32)
    return net, jax.jit(net.init)(jax.random.key(0), frames, masks, VALID)


def param_names(variables):
    return {"/".join(k) for k in flatten_dict(variables["params"])}


TABLE_4 = {  # (GRM, PGM, ORM) -> parameter groups that must (not) exist
    (True, True, True): ({"key_g", "key_l", "pgm/f_n", "orm/g_q", "orm/fc2"}, set()),
    (True, False, True): ({"key_g", "orm/g_q"}, {"key_l", "pgm/"}),
    (True, True, False): ({"key_g", "key_l", "pgm/f_n"}, {"orm/"}),
    (True, False, False): ({"key_g"}, {"key_l", "pgm/", "orm/"}),
    (False, True, True): ({"key_l", "pgm/f_n", "orm/g_q"}, {"key_g"}),
}


@pytest.mark.parametrize("switches", list(TABLE_4), ids=lambda s: "".join("TF"[not x] for x in s))
def test_each_table_4_variant_runs_and_has_exactly_its_parameters(switches, clip):
    use_grm, use_pgm, use_orm = switches
    net, variables = initialised(use_grm=use_grm, use_pgm=use_pgm, use_orm=use_orm)
    names = param_names(variables)
    present, absent = TABLE_4[switches]
    for part in present:
        assert any(part in n for n in names), f"{part} missing from {switches}"
    for part in absent:
        assert not any(part in n for n in names), f"{part} present in {switches}"
    for proj in ("query_proj", "memory_proj"):
        assert (f"{proj}/key_g/kernel" in names) == use_grm
        assert (f"{proj}/key_l/kernel" in names) == use_pgm
    logits = jax.jit(net.apply)(variables, *clip, VALID)
    assert logits.shape == (B, 2, 1 + K, H, W) and logits.dtype == jnp.float32
    probs = jax.nn.softmax(logits, axis=2)
    np.testing.assert_allclose(probs.sum(axis=2), 1.0, rtol=1e-5)
    np.testing.assert_array_equal(logits[:, :, 3], PADDED_LOGIT)  # the padded object
    np.testing.assert_array_equal(probs[:, :, 3], 0.0)


def test_table_4_variants_compute_different_functions(clip):
    """Switching a module off changes the output: the switches reach the computation."""
    outputs = {}
    for switches in TABLE_4:
        net, variables = initialised(
            **dict(zip(("use_grm", "use_pgm", "use_orm"), switches, strict=True))
        )
        outputs[switches] = np.asarray(jax.jit(net.apply)(variables, *clip, VALID))
    keys = list(outputs)
    for i, a in enumerate(keys):
        for b in keys[i + 1 :]:
            assert np.abs(outputs[a] - outputs[b]).max() > 1e-4, (a, b)


def segment_inputs(net, variables, clip, slots):
    """A memory pool of `slots` frames encoded from the clip's frames 0 and 1."""
    frames, masks = clip
    encode = jax.jit(functools.partial(net.apply, method=net.encode_memory))
    encoded = [encode(variables, frames[:, t], masks[:, t], VALID) for t in (0, 1)]
    stack = lambda f: jnp.stack([getattr(encoded[t % 2], f) for t in range(slots)], axis=2)  # noqa: E731
    pool = MemoryPool(k_g=stack("k_g"), v=stack("v"), valid=jnp.zeros((B, K, slots), bool))
    prev = PrevFrame(k_l=encoded[1].k_l, mask=jnp.asarray(masks[:, 1]))
    reference = Reference(v=encoded[0].v, mask=jnp.asarray(masks[:, 0]))
    return pool, prev, reference


def test_jitted_segment_is_traced_once_for_two_memory_fill_levels(clip):
    net, variables = initialised()
    pool, prev, reference = segment_inputs(net, variables, clip, slots=4)

    @jax.jit
    @chex.assert_max_traces(n=1)
    def segment(variables, frame, pool, prev, reference):
        return net.apply(variables, frame, pool, prev, reference, VALID, method=net.segment)

    frame = clip[0][:, 2]
    one = segment(
        variables, frame, pool.replace(valid=pool.valid.at[:, :, :1].set(True)), prev, reference
    )
    three = segment(
        variables, frame, pool.replace(valid=pool.valid.at[:, :, :3].set(True)), prev, reference
    )
    assert np.abs(np.asarray(one) - np.asarray(three))[:, :2].max() > 1e-5


def test_masked_memory_slots_change_nothing_in_segment(clip):
    """A 4-slot pool with slots {0, 1} valid equals a 2-slot pool of those frames."""
    net, variables = initialised()
    frame = clip[0][:, 2]
    run = jax.jit(functools.partial(net.apply, method=net.segment))
    big, prev, reference = segment_inputs(net, variables, clip, slots=4)
    big = big.replace(valid=big.valid.at[:, :, :2].set(True))
    small, _, _ = segment_inputs(net, variables, clip, slots=2)
    small = small.replace(valid=jnp.ones_like(small.valid))
    np.testing.assert_allclose(
        run(variables, frame, big, prev, reference, VALID),
        run(variables, frame, small, prev, reference, VALID),
        rtol=1e-5,
        atol=1e-5,
    )


def test_gradients_are_finite_for_empty_masks():
    net, variables = initialised()
    rng = np.random.default_rng(1)
    frames = rng.random((B, 3, H, W, 3)).astype(np.float32)
    empty = np.zeros((B, 3, K, H, W), np.float32)

    def loss(params):
        logits = net.apply({**variables, "params": params}, frames, empty, VALID)
        return -jax.nn.log_softmax(logits, axis=2)[:, :, 0].mean()

    value, grads = jax.jit(jax.value_and_grad(loss))(variables["params"])
    assert np.isfinite(value)
    leaves = jax.tree.leaves(grads)
    assert all(np.isfinite(g).all() for g in leaves)
    assert any(np.abs(g).max() > 0 for g in leaves)


def test_bfloat16_compute_keeps_float32_params_and_close_probabilities(clip):
    net32, variables = initialised()
    net16 = tiny(dtype="bfloat16")
    variables16 = jax.jit(net16.init)(jax.random.key(0), *clip, VALID)
    assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(variables16))
    p32 = jax.nn.softmax(jax.jit(net32.apply)(variables, *clip, VALID), axis=2)
    logits16 = jax.jit(net16.apply)(variables, *clip, VALID)
    assert logits16.dtype == jnp.float32
    p16 = jax.nn.softmax(logits16, axis=2)
    assert np.abs(np.asarray(p16) - np.asarray(p32)).mean() < 0.02


def test_a_bfloat16_model_keeps_its_keys_in_float32_unless_told_to_use_the_compute_dtype(clip):
    _, variables = initialised()
    frame = clip[0][:, 0]
    for attention_dtype, key_dtype in (("float32", jnp.float32), ("compute", jnp.bfloat16)):
        net = tiny(dtype="bfloat16", attention_dtype=attention_dtype)
        q = jax.jit(lambda v, f, net=net: net.apply(v, f, method=net.encode_query))(
            variables, frame
        )
        assert (q.k_g.dtype, q.k_l.dtype, q.v.dtype) == (key_dtype, key_dtype, jnp.bfloat16)


# -- bad input: a ValueError naming the argument and its shape, before any compilation ----------


def test_wrong_rank_frames_are_rejected_by_name(clip):
    net, variables = initialised()
    frames, masks = clip
    with pytest.raises(ValueError, match=r"frames must have shape \[B, 3, H, W, 3\], got \(3, 32"):
        jax.jit(net.apply)(variables, frames[0], masks, VALID)


def test_mismatched_frame_and_mask_sizes_are_rejected(clip):
    net, variables = initialised()
    frames, masks = clip
    with pytest.raises(ValueError, match=r"masks must have shape .*got \(1, 3, 3, 32, 32\)"):
        jax.jit(net.apply)(variables, frames, masks[..., :32], VALID)


def test_frame_sizes_not_divisible_by_16_are_rejected_by_the_low_level_modules():
    image = jnp.zeros((1, 40, 48, 3))
    with pytest.raises(ValueError, match=r"multiples of 16 .*40x48"):
        jax.eval_shape(
            ResNetEncoder(backbone="resnet18", width=0.125).init, jax.random.key(0), image
        )
    net, variables = initialised()
    with pytest.raises(ValueError, match=r"frame height and width must be multiples of 16"):
        net.apply(variables, image, method=net.encode_query)


def test_more_objects_than_max_objects_are_rejected(clip):
    net, variables = initialised()
    frames = clip[0]
    masks = np.zeros((B, 3, 4, H, W), np.float32)
    with pytest.raises(ValueError, match=r"4 objects, more than max_objects=3"):
        jax.jit(net.apply)(variables, frames, masks, np.ones((B, 4), bool))


def test_unknown_model_config_fields_are_rejected():
    config = model_configs.get_config("tiny")
    fields = dict(config)
    fields["use_gmr"] = True
    with pytest.raises(ValueError, match=r"unknown model config fields \['use_gmr'\]"):
        build_model(fields)
