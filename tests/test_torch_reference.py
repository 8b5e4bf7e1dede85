"""The PyTorch reference against NumPy float64 written from the equations (eqs. 1-11, the
spec's soft aggregation and position encoding), and its torchvision/STM conventions."""

import math

import numpy as np
import pytest
import torch

from lcm_jax.configs import model as model_configs
from lcm_jax.interop import compare
from lcm_jax.interop import torch_lcm as tl
from lcm_jax.interop.compare import tensor_error

RNG = np.random.default_rng(0)


def t64(x) -> torch.Tensor:
    return torch.from_numpy(np.asarray(x, np.float64))


def softmax(x, axis):
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def test_grm_read_is_eqs_1_and_2_over_valid_slots_only():
    n, m, ck, cv = 5, 7, 4, 3
    k_q, k_m, v_m = (
        RNG.standard_normal((n, ck)),
        RNG.standard_normal((m, ck)),
        RNG.standard_normal((m, cv)),
    )
    valid = np.array([1, 1, 0, 1, 0, 1, 1], bool)
    expected = np.zeros((n, cv))
    for j in range(n):
        s = np.array([k_m[i] @ k_q[j] / math.sqrt(ck) for i in range(m) if valid[i]])
        expected[j] = softmax(s, 0) @ v_m[valid]
    got = tl.grm_read(
        t64(k_q)[None],
        t64(k_m)[None, None],
        t64(v_m)[None, None],
        t64(valid).bool()[None, None],
        True,
    )
    np.testing.assert_allclose(got[0, 0].numpy(), expected, rtol=1e-12)


def test_position_encoding_matches_hand_computed_detr_values():
    pos = tl.position_encoding(2, 4, 8).double().numpy().reshape(2, 4, 8)
    # y of row 0 is 2pi/2 = pi; channels 0..3 of y: sin(y), cos(y), sin(y/100), cos(y/100)
    y = math.pi
    np.testing.assert_allclose(
        pos[0, 3, :4], [math.sin(y), math.cos(y), math.sin(y / 100), math.cos(y / 100)], atol=1e-7
    )
    x = 2 * math.pi * 3 / 4  # column 2
    np.testing.assert_allclose(
        pos[1, 2, 4:], [math.sin(x), math.cos(x), math.sin(x / 100), math.cos(x / 100)], atol=1e-7
    )


def test_pgm_is_eqs_3_to_6_with_top_k_and_n_scaling():
    n, ck, cv, k = 6, 4, 3, 2
    pgm = tl.PGM(ck, k, "n").double()
    wt, bias = pgm.f_n.weight.detach().numpy()[:, :, 0, 0], pgm.f_n.bias.detach().numpy()
    k_q, k_m = RNG.standard_normal((n, ck)), RNG.standard_normal((n, ck))
    pos, mask, v_q = RNG.standard_normal((n, ck)), RNG.random(n), RNG.standard_normal((n, cv))
    p_q, p_m = (k_q + pos) @ wt.T + bias, (k_m + pos) @ wt.T + bias
    s = np.zeros((n, n))  # S[i, j]
    for i in range(n):
        s[i] = softmax(np.array([p_q[j] @ p_m[i] for j in range(n)]), 0) * math.exp(mask[i] - 1)
    pmap = np.array([np.sort(s[:, j])[-k:].mean() for j in range(n)]) * n
    with torch.no_grad():
        got = pgm(
            t64(k_q)[None], t64(k_m)[None, None], t64(mask)[None, None], t64(v_q)[None], t64(pos)
        )
    np.testing.assert_allclose(got[0, 0].numpy(), pmap[:, None] * v_q, rtol=1e-10)


def test_orm_is_eqs_7_to_11_with_weighted_target_set():
    n, cv = 5, 32
    orm = tl.ORM(cv, 16, shared_g=False).double()
    p = {k: v.detach().numpy() for k, v in orm.state_dict().items()}
    g_q = lambda x: x @ p["g_q.weight"][:, :, 0, 0].T + p["g_q.bias"]  # noqa: E731
    g_f = lambda x: x @ p["g_f.weight"][:, :, 0, 0].T + p["g_f.bias"]  # noqa: E731
    v_q, v_f, w = RNG.standard_normal((n, cv)), RNG.standard_normal((n, cv)), RNG.random(n)
    f = w[:, None] * v_f
    f_q = np.array([sum((f[i] @ v_q[j]) * g_q(v_q[j]) for j in range(n)) / n for i in range(n)])
    v_fq = np.array(
        [sum(w[i] * (v_q[j] @ f[i]) * g_f(f[i]) for i in range(n)) / n for j in range(n)]
    )
    v, f = v_q + v_fq, f + f_q
    gap = (w[:, None] * f).sum(0) / w.sum()
    hidden = np.maximum(p["fc1.weight"] @ gap + p["fc1.bias"], 0)
    a = 1 / (1 + np.exp(-(p["fc2.weight"] @ hidden + p["fc2.bias"])))
    with torch.no_grad():
        got = orm(t64(v_q)[None], t64(v_f)[None, None], t64(w)[None, None])
    np.testing.assert_allclose(got[0, 0].numpy(), v * a, rtol=1e-10)


def test_soft_aggregation_is_stm_with_padded_objects_at_the_padded_logit():
    logits = RNG.standard_normal((1, 3, 2, 2, 2)) * 3
    valid = np.array([[True, False, True]])
    p = softmax(logits, 2)[0, :, 1]  # [O, H, W]
    bg = (1 - p[0]) * (1 - p[2])
    em = np.clip(np.stack([bg, p[0], p[2]]), 1e-7, 1 - 1e-7)
    got = tl.soft_aggregate(t64(logits), torch.from_numpy(valid))[0].numpy()
    np.testing.assert_allclose(got[[0, 1, 3]], np.log(em / (1 - em)), rtol=1e-10)
    assert np.all(got[2] == tl.PADDED_LOGIT)


def test_resnet_parameter_names_are_torchvisions_and_frozen_bn_stays_in_eval():
    net = tl.build_torch_model(model_configs.get_config("paper"))
    names = set(net.query_encoder.state_dict())
    for key in (
        "conv1.weight",
        "bn1.running_var",
        "layer1.0.downsample.0.weight",
        "layer1.0.downsample.1.weight",
        "layer2.3.conv3.weight",
        "layer3.5.bn3.bias",
    ):
        assert key in names
    assert not any(k.startswith(("layer4.", "fc.")) for k in names)
    assert net.memory_encoder.conv1_m.weight.shape == (64, 1, 7, 7)
    assert not net.memory_encoder.conv1_o.weight.any()  # zero_init_mask_stem
    net.train()
    assert not any(m.training for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d))
    assert net.decoder.training


def test_unknown_config_fields_are_refused():
    with pytest.raises(ValueError, match="unknown model config fields"):
        tl.build_torch_model({**model_configs.get_config("tiny"), "use_xyz": True})


def test_compare_reports_every_tensor_and_finds_no_error_for_converted_weights():
    cfg = dict(model_configs.get_config("tiny"), zero_init_mask_stem=False)
    tnet = tl.random_weights_(tl.build_torch_model(cfg), 5)
    frames = RNG.random((1, 3, 64, 64, 3), dtype=np.float32)
    masks = (RNG.random((1, 3, 2, 64, 64)) > 0.5).astype(np.float32)
    valid = np.array([[True, False]])
    masks[:, :, 1] = 0
    report = compare(tnet, {"frames": frames, "masks": masks, "valid": valid}, config=cfg)
    assert {"encode_query.k_g", "encode_query.r2", "encode_memory.v", "clip.logits"} <= set(
        report.rows
    )
    assert report.rows["clip.logits"].shape == (1 * 2 * 2 * 64 * 64,)
    assert report.max_rel_err <= 1e-5 and "clip.logits" in str(report)
    err = tensor_error(np.array([1.0, -4.0]), torch.tensor([1.5, -2.0]))
    assert (err.max_abs_err, err.max_abs_ref, err.rel_err) == (2.0, 2.0, 1.0)
