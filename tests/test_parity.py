"""The Flax model computes the PyTorch reference's function (float32, CPU, tiny config).

Random torch weights are converted to Flax; every module, the whole 3-frame clip (2 objects
+ 1 padded) and the gradients of the clip loss must match, for every Table 4 variant.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from lcm_jax.configs import model as model_configs
from lcm_jax.interop import convert
from lcm_jax.interop import torch_lcm as tl
from lcm_jax.model import build_model, grm_read, pool_to_grid, soft_aggregate

torch.backends.mkldnn.allow_tf32 = False
torch.backends.cudnn.allow_tf32 = False
torch.set_default_dtype(torch.float32)

B, O, H, W = 2, 3, 64, 64  # noqa: E741
h, w = H // 16, W // 16
VALID = np.array([[True, True, False], [True, True, False]])
FWD_TOL, GRAD_TOL = 1e-5, 1e-4
# Gradients that are 0 by construction, so hold only rounding noise on both sides: a bias on the
# memory global key shifts every score of a query by the same amount (GRM's softmax over the
# pool ignores it); a bias on the query local key likewise for PGM's softmax over the query.
ZERO_GRADIENT = {"memory_proj.key_g.bias", "query_proj.key_l.bias"}


def tiny_config(**overrides) -> dict:
    cfg = dict(model_configs.get_config("tiny"))
    cfg.update(overrides)
    return cfg


def rel_err(flax_value, torch_value) -> float:
    a = np.asarray(flax_value, np.float64)
    b = torch_value.detach().double().numpy() if torch.is_tensor(torch_value) else torch_value
    assert a.shape == b.shape, (a.shape, b.shape)
    return float(np.abs(a - b).max() / np.abs(b).max())


def nchw(x: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(np.moveaxis(x, -1, 1)))


def pair(seed: int = 0, **overrides):
    """(torch reference with random weights, Flax module, converted variables)."""
    cfg = tiny_config(zero_init_mask_stem=False, **overrides)
    tnet = tl.random_weights_(tl.build_torch_model(cfg), seed)
    variables = convert.torch_to_flax(tnet.state_dict(), convert.abstract_variables(cfg))
    return tnet, build_model(cfg), variables


def clip_inputs(seed: int = 1):
    rng = np.random.default_rng(seed)
    frames = rng.random((B, 3, H, W, 3), dtype=np.float32)
    masks = (rng.random((B, 3, O, H, W)) > 0.6).astype(np.float32)
    masks[:, :, 1, : H // 2] = 0.0  # objects differ in extent
    masks *= VALID[:, None, :, None, None]
    return frames, masks, VALID.copy()


@pytest.fixture(scope="module")
def model_pair():
    return pair()


def apply(net, variables, fn, *args):
    return net.apply(variables, *args, method=fn)


def test_query_and_memory_encoders_match_the_torch_resnet(model_pair):
    tnet, net, variables = model_pair
    rng = np.random.default_rng(2)
    image = rng.random((B, H, W, 3), dtype=np.float32)
    mask = rng.random((B, H, W), dtype=np.float32)
    others = rng.random((B, H, W), dtype=np.float32)
    fq = apply(net, variables, lambda m, x: m.query_encoder(x), image)
    fm = apply(net, variables, lambda m, *a: m.memory_encoder(*a), image, mask, others)
    with torch.no_grad():
        tq = tnet.query_encoder(nchw(image))[::-1]  # (r2, r3, r4)
        tm = tnet.memory_encoder(
            nchw(image), torch.from_numpy(mask[:, None]), torch.from_numpy(others[:, None])
        )[::-1]
    for f, t in zip(fq + fm, tq + tm, strict=True):
        assert rel_err(f, t.permute(0, 2, 3, 1)) <= FWD_TOL


def test_projection_heads_match_torch(model_pair):
    tnet, net, variables = model_pair
    c4 = tnet.query_encoder.channels[2]
    r4 = np.random.default_rng(3).standard_normal((B, h, w, c4)).astype(np.float32)
    for name in ("query_proj", "memory_proj"):
        f = apply(net, variables, lambda m, x, n=name: getattr(m, n)(x), r4)
        with torch.no_grad():
            t = getattr(tnet, name)(nchw(r4))
        assert len(f) == len(t) == 3
        for fx, tx in zip(f, t, strict=True):
            assert rel_err(fx, tx.permute(0, 2, 3, 1)) <= FWD_TOL


@pytest.mark.parametrize("chunk_size", [0, 5])
def test_grm_read_matches_torch_with_masked_slots(chunk_size):
    rng = np.random.default_rng(4)
    n, t, ck, cv = 16, 3, 16, 64
    k_q = rng.standard_normal((B, n, ck)).astype(np.float32)
    k_p = rng.standard_normal((B, t * n, ck)).astype(np.float32)
    v_p = rng.standard_normal((B, t * n, cv)).astype(np.float32)
    valid = np.repeat(np.array([[True, True, False], [False, False, False]]), n, axis=1)
    f = grm_read(k_q, k_p, v_p, valid, scale_keys=True, chunk_size=chunk_size)
    tr = tl.grm_read(
        torch.from_numpy(k_q),
        torch.from_numpy(k_p)[:, None],
        torch.from_numpy(v_p)[:, None],
        torch.from_numpy(valid)[:, None],
        scale_keys=True,
    )[:, 0]
    assert rel_err(f[0], tr[0]) <= FWD_TOL
    assert np.all(np.asarray(f[1]) == 0.0) and torch.all(tr[1] == 0.0)  # no valid slot: zeros


def test_mask_pooling_to_the_grid_matches_torch():
    masks = np.random.default_rng(5).random((B, O, H, W), dtype=np.float32)
    for how in ("area", "max"):
        f = pool_to_grid(masks, how).reshape(B, O, -1)
        assert rel_err(f, tl.pool_mask(torch.from_numpy(masks), how)) <= FWD_TOL


@pytest.mark.parametrize("scale", ["n", "none"])
def test_pgm_matches_torch(scale):
    tnet, net, variables = pair(seed=6, position_map_scale=scale)
    rng = np.random.default_rng(6)
    kd, vd = tnet.key_dim, tnet.value_dim
    k_q = rng.standard_normal((B, h, w, kd)).astype(np.float32)
    k_m = rng.standard_normal((B, h, w, kd)).astype(np.float32)
    mask = rng.random((B, h, w), dtype=np.float32)
    v_q = rng.standard_normal((B, h, w, vd)).astype(np.float32)
    f = apply(net, variables, lambda m, *a: m.pgm(*a), k_q, k_m, mask, v_q)
    flat = lambda x: torch.from_numpy(x.reshape(B, h * w, -1))  # noqa: E731
    with torch.no_grad():
        t = tnet.pgm(
            flat(k_q),
            flat(k_m)[:, None],
            torch.from_numpy(mask.reshape(B, 1, -1)),
            flat(v_q),
            tl.position_encoding(h, w, kd),
        )[:, 0]
    assert rel_err(np.asarray(f).reshape(B, h * w, vd), t) <= FWD_TOL


@pytest.mark.parametrize("shared_g", [False, True])
def test_orm_matches_torch_also_for_an_empty_reference_mask(shared_g):
    tnet, net, variables = pair(seed=7, orm_shared_g=shared_g)
    rng = np.random.default_rng(7)
    vd = tnet.value_dim
    v_q = rng.standard_normal((B, h, w, vd)).astype(np.float32)
    v_f = rng.standard_normal((B, h, w, vd)).astype(np.float32)
    wgt = rng.random((B, h, w), dtype=np.float32)
    wgt[1] = 0.0  # the second example's object has an empty reference mask
    f = apply(net, variables, lambda m, *a: m.orm(*a), v_q, v_f, wgt)
    flat = lambda x: torch.from_numpy(x.reshape(B, h * w, -1))  # noqa: E731
    with torch.no_grad():
        t = tnet.orm(flat(v_q), flat(v_f)[:, None], torch.from_numpy(wgt.reshape(B, 1, -1)))[:, 0]
    assert np.all(np.isfinite(np.asarray(f)))
    assert rel_err(np.asarray(f).reshape(B, h * w, vd), t) <= FWD_TOL


def test_decoder_matches_torch(model_pair):
    tnet, net, variables = model_pair
    rng = np.random.default_rng(8)
    x = rng.standard_normal((B, h, w, 2 * tnet.value_dim)).astype(np.float32)
    r3 = rng.standard_normal((B, 2 * h, 2 * w, tnet.query_encoder.channels[1])).astype(np.float32)
    r2 = rng.standard_normal((B, 4 * h, 4 * w, tnet.query_encoder.channels[0])).astype(np.float32)
    f = apply(net, variables, lambda m, *a: m.decoder(*a), x, r3, r2)
    with torch.no_grad():
        t = tnet.decoder(nchw(x), nchw(r3), nchw(r2))
    assert rel_err(f, t.permute(0, 2, 3, 1)) <= FWD_TOL


def test_soft_aggregation_matches_torch_and_zeroes_padded_objects():
    logits = np.random.default_rng(9).standard_normal((B, O, H, W, 2)).astype(np.float32) * 4
    f = np.asarray(soft_aggregate(logits, VALID))
    t = tl.soft_aggregate(torch.from_numpy(np.moveaxis(logits, -1, 2)), torch.from_numpy(VALID))
    real = np.concatenate([np.ones((B, 1), bool), VALID], axis=1)
    assert rel_err(f[real], t.numpy()[real]) <= FWD_TOL
    assert np.all(f[~real] == tl.PADDED_LOGIT) and np.all(t.numpy()[~real] == tl.PADDED_LOGIT)


def clip_loss_flax(net, variables, frames, masks, valid, labels):
    """(loss, logits), d loss / d params of the Flax clip."""

    def loss(params):
        logits = net.apply({**variables, "params": params}, frames, masks, valid)
        logp = jax.nn.log_softmax(logits, axis=2)
        return -jnp.take_along_axis(logp, labels[:, :, None], axis=2).mean(), logits

    return jax.jit(jax.value_and_grad(loss, has_aux=True))(variables["params"])


def labels_of(masks: np.ndarray) -> np.ndarray:
    m = masks[:, 1:]
    return np.where(m.max(axis=2) > 0.5, 1 + m.argmax(axis=2), 0).astype(np.int32)


@pytest.mark.parametrize(
    "switches, fusion",
    [("TTT", "replace"), ("TFT", "replace"), ("TTF", "replace"), ("TFF", "replace"),
     ("FTT", "replace"), ("TTT", "residual"), ("TTF", "residual")],
)  # fmt: skip
def test_clip_logits_and_loss_gradients_match_torch_for_table4_variant(switches, fusion):
    grm, pgm, orm = (s == "T" for s in switches)
    tnet, net, variables = pair(seed=10, use_grm=grm, use_pgm=pgm, use_orm=orm, local_fusion=fusion)
    frames, masks, valid = clip_inputs()
    labels = labels_of(masks)
    tf, tm, tv = map(torch.from_numpy, (frames, masks, valid))
    t_logits = tnet(tf, tm, tv)
    t_loss = torch.nn.functional.cross_entropy(
        t_logits.flatten(0, 1), torch.from_numpy(labels).long().flatten(0, 1)
    )
    t_loss.backward()
    (f_loss, f_logits), grads = clip_loss_flax(net, variables, frames, masks, valid, labels)
    f_logits = np.asarray(f_logits)
    real = np.concatenate([np.ones((B, 1), bool), valid], axis=1)[:, None, :, None, None]
    real = np.broadcast_to(real, f_logits.shape)
    assert rel_err(f_logits[real], t_logits.detach().numpy()[real]) <= FWD_TOL
    assert np.all(f_logits[~real] == tl.PADDED_LOGIT)
    assert abs(float(f_loss) - t_loss.item()) <= FWD_TOL * abs(t_loss.item())
    as_torch = convert.flax_to_torch(
        {"params": grads, "batch_stats": variables["batch_stats"]}, tnet.state_dict()
    )
    params = dict(tnet.named_parameters())
    scale = max(p.grad.abs().max().item() for p in params.values())
    assert scale > 0
    for name, p in params.items():
        if name in ZERO_GRADIENT:
            assert as_torch[name].abs().max() <= 1e-5 * scale and p.grad.abs().max() <= 1e-5 * scale
            continue
        err = (as_torch[name] - p.grad).abs().max().item()
        assert err / p.grad.abs().max().item() <= GRAD_TOL, (name, err)


def test_flax_to_torch_to_flax_round_trip_is_bit_exact():
    cfg = tiny_config()
    rng = np.random.default_rng(3)
    variables = jax.tree.map(
        lambda s: rng.standard_normal(s.shape).astype(np.float32), convert.abstract_variables(cfg)
    )
    tnet = tl.build_torch_model(cfg)
    sd = convert.flax_to_torch(variables, tnet.state_dict())
    tnet.load_state_dict(sd, strict=True)
    back = convert.torch_to_flax(tnet.state_dict(), convert.abstract_variables(cfg))
    flat_a = jax.tree_util.tree_leaves_with_path(variables)
    flat_b = dict(jax.tree_util.tree_leaves_with_path(back))
    assert len(flat_a) == len(flat_b) > 100
    for path, leaf in flat_a:
        other = flat_b[path]
        assert other.dtype == np.float32 and np.array_equal(np.asarray(leaf), other), path


def test_unfrozen_batchnorm_in_training_normalises_with_batch_statistics_as_torch():
    tnet, net, variables = pair(seed=14, frozen_bn=False)
    frames, masks, valid = clip_inputs(seed=14)
    tnet.train()
    assert all(m.training for m in tnet.modules() if isinstance(m, torch.nn.BatchNorm2d))
    with torch.no_grad():
        t_logits = tnet(*map(torch.from_numpy, (frames, masks, valid))).numpy()
    f_logits, _ = jax.jit(lambda v, *a: net.apply(v, *a, train=True, mutable=["batch_stats"]))(
        variables, frames, masks, valid
    )
    real = np.concatenate([np.ones((B, 1), bool), valid], axis=1)[:, None, :, None, None]
    real = np.broadcast_to(real, t_logits.shape)
    assert rel_err(np.asarray(f_logits)[real], t_logits[real]) <= FWD_TOL
    with torch.no_grad():  # running statistics would give other logits: the check has teeth
        eval_logits = tnet.eval()(*map(torch.from_numpy, (frames, masks, valid))).numpy()
    assert rel_err(eval_logits[real], t_logits[real]) > 1e-3
