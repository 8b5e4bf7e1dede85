"""lcm_jax.losses against NumPy float64 written from the definitions and hand-computed cases."""

import numpy as np
import pytest

from lcm_jax import losses

PADDED = -1e4  # lcm_jax.model.PADDED_LOGIT


def _np_log_softmax(x, axis):
    x = x - x.max(axis=axis, keepdims=True)
    return x - np.log(np.exp(x).sum(axis=axis, keepdims=True))


def test_labels_are_the_argmax_over_background_and_real_objects_only():
    # 1x4 image, 3 objects; object 3 is padded (invalid) but its mask is set everywhere.
    masks = np.zeros((1, 3, 1, 4), np.float32)
    masks[0, 0, 0, 1] = 1  # object 1 at x=1
    masks[0, 1, 0, 2] = 1  # object 2 at x=2
    masks[0, 0, 0, 3] = masks[0, 1, 0, 3] = 1  # overlap at x=3: the lower index wins
    masks[0, 2] = 1  # padded
    valid = np.array([[True, True, False]])
    labels = np.asarray(losses.labels_from_masks(masks, valid))
    np.testing.assert_array_equal(labels, [[[0, 1, 2, 1]]])


def test_cross_entropy_equals_numpy_and_ignores_padded_objects():
    rng = np.random.default_rng(0)
    b, o, h, w = 3, 3, 5, 4
    logits = rng.normal(size=(b, 2, 1 + o, h, w)).astype(np.float32) * 3
    logits[:, :, 3] = PADDED  # object 3 padded in every clip
    masks = (rng.random((b, 3, o, h, w)) > 0.6).astype(np.float32)
    valid = np.array([[True, True, False]] * b)
    loss, per_frame = losses.training_loss(logits, masks, valid)

    # Reference: softmax over [bg, obj1, obj2] only (the padded channel dropped), float64.
    real = logits[:, :, :3].astype(np.float64)
    m = masks[:, 1:, :2].astype(np.float64)
    target = np.argmax(np.concatenate([1 - m.max(axis=2, keepdims=True), m], axis=2), axis=2)
    logp = _np_log_softmax(real, axis=2)
    ce = -np.take_along_axis(logp, target[:, :, None], axis=2)[:, :, 0]
    ref_frames = ce.mean(axis=(0, 2, 3))
    np.testing.assert_allclose(np.asarray(per_frame), ref_frames, rtol=1e-6)
    np.testing.assert_allclose(float(loss), ref_frames.sum(), rtol=1e-6)


def test_a_perfect_prediction_has_near_zero_loss_and_a_uniform_one_log_classes():
    masks = np.zeros((1, 3, 2, 2, 2), np.float32)
    masks[0, :, 0, 0, :] = 1  # top row object 1
    masks[0, :, 1, 1, 0] = 1  # bottom-left object 2; bottom-right background
    valid = np.ones((1, 2), bool)
    labels = np.asarray(losses.labels_from_masks(masks[:, 1:], valid[:, None]))
    logits = 20.0 * np.eye(3)[labels].transpose(0, 1, 4, 2, 3)  # [1, 2, 3, 2, 2]
    loss, _ = losses.training_loss(logits.astype(np.float32), masks, valid)
    assert float(loss) < 1e-7
    loss, per_frame = losses.training_loss(np.zeros((1, 2, 3, 2, 2), np.float32), masks, valid)
    np.testing.assert_allclose(np.asarray(per_frame), [np.log(3)] * 2, rtol=1e-6)


@pytest.mark.parametrize("step, expected", [(0, 1.0), (10, 1.0), (15, 0.6), (20, 0.2), (1000, 0.2)])
def test_the_bootstrap_fraction_warms_up_linearly_as_stcn(step, expected):
    p = losses.bootstrap_fraction(np.int32(step), start_warm=10, end_warm=20, top_p=0.2)
    np.testing.assert_allclose(float(p), expected, rtol=1e-6)


def test_bootstrapped_cross_entropy_averages_each_clips_hardest_pixels():
    rng = np.random.default_rng(1)
    b, o, h, w = 2, 2, 4, 5
    logits = rng.normal(size=(b, 2, 1 + o, h, w)).astype(np.float32) * 2
    masks = (rng.random((b, 3, o, h, w)) > 0.5).astype(np.float32)
    valid = np.ones((b, o), bool)
    p = 0.3
    loss, per_frame = losses.training_loss(logits, masks, valid, bootstrap_p=p)

    m = masks[:, 1:].astype(np.float64)
    target = np.argmax(np.concatenate([1 - m.max(axis=2, keepdims=True), m], axis=2), axis=2)
    ce = -np.take_along_axis(_np_log_softmax(logits.astype(np.float64), 2), target[:, :, None], 2)
    ce = ce.reshape(b, 2, -1)
    k = int(np.ceil(p * h * w))  # 6 of 20 pixels
    hardest = -np.sort(-ce, axis=-1)[..., :k].mean(axis=-1)  # [B, 2]
    np.testing.assert_allclose(np.asarray(per_frame), hardest.mean(axis=0), rtol=1e-6)
    np.testing.assert_allclose(float(loss), hardest.mean(axis=0).sum(), rtol=1e-6)
    # Keeping the hardest pixels can only raise the mean.
    plain, _ = losses.training_loss(logits, masks, valid)
    assert float(loss) > float(plain)
