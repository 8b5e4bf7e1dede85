"""LCM in plain PyTorch: the reference that the Flax model is checked against.

Written from the project's design spec and the paper (section 3), independently of
`lcm_jax.model`, so that a mistake on either side shows up as a parity failure. It has the
same switches (`use_grm`, `use_pgm`, `use_orm`) and [choice] fields as `configs/model.py`.

Layout: the public entry points take and return tensors in the Flax model's layout
(NHWC frames in [0, 1], object-major masks `[B, O, H, W]`, features `[B, (O,) h, w, C]`);
the modules compute in NCHW internally. Parameter names mirror torchvision's ResNet
(`conv1`, `bn1`, `layer1.0.conv1`, ..., `layer1.0.downsample.0/.1`) so a torchvision
state_dict loads into an encoder unchanged (layer4 and fc are not built: LCM reads res4),
and STM's decoder (`convFM`, `ResMM`, `RF3.convFS`, `RF3.ResFS`, `RF3.ResMM`, `RF2`, `pred2`).

    from lcm_jax.configs import model as model_configs
    net = LCMTorch(**model_configs.get_config("tiny"))
    logits = net(frames, masks, valid)          # [B, 2, 1+O, H, W], the training clip
"""

import inspect
import math
from collections.abc import Mapping
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
PADDED_LOGIT = -1e4  # logit of a padded object (softmax gives it 0)
PROB_CLAMP = 1e-7  # soft aggregation clamps probabilities to [PROB_CLAMP, 1 - PROB_CLAMP]
POS_TEMPERATURE = 10000.0

# backbone -> (block kind, blocks in layer1..layer3); layer4 is never used by LCM.
BACKBONES = {
    "resnet18": ("basic", (2, 2, 2)),
    "resnet34": ("basic", (3, 4, 6)),
    "resnet50": ("bottleneck", (3, 4, 6)),
}


class QueryFeatures(NamedTuple):
    """Query encoder outputs: k_g, k_l [B,h,w,Ck] (None when GRM / PGM is off),
    v [B,h,w,Cv], r3 [B,H/8,W/8,C3], r2 [B,H/4,W/4,C2]."""

    k_g: torch.Tensor | None
    k_l: torch.Tensor | None
    v: torch.Tensor
    r3: torch.Tensor
    r2: torch.Tensor


class MemoryFrame(NamedTuple):
    """One memory-encoded frame, per object: k_g, k_l [B,O,h,w,Ck] or None, v [B,O,h,w,Cv]."""

    k_g: torch.Tensor | None
    k_l: torch.Tensor | None
    v: torch.Tensor


class MemoryPool(NamedTuple):
    """GRM memory: k_g [B,O,T,h,w,Ck] (None with GRM off), v [B,O,T,h,w,Cv], valid [B,O,T]."""

    k_g: torch.Tensor | None
    v: torch.Tensor
    valid: torch.Tensor


class PrevFrame(NamedTuple):
    """PGM's frame t-1: memory local key k_l [B,O,h,w,Ck] (None with PGM off), mask [B,O,H,W]."""

    k_l: torch.Tensor | None
    mask: torch.Tensor


class Reference(NamedTuple):
    """ORM's reference frame per object: memory value v [B,O,h,w,Cv], mask [B,O,H,W]."""

    v: torch.Tensor
    mask: torch.Tensor


def _nhwc(x: torch.Tensor) -> torch.Tensor:
    return x.permute(0, 2, 3, 1)


def _nchw(x: torch.Tensor) -> torch.Tensor:
    return x.permute(0, 3, 1, 2).contiguous()


def _channels(c: int, width: float) -> int:
    return max(1, int(round(c * width)))


# ----------------------------------------------------------------------------------------
# Encoders: ResNet trunk (torchvision names), stem with conv1_m / conv1_o for the memory.
# ----------------------------------------------------------------------------------------


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, cin: int, planes: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = _downsample(cin, planes, stride)

    def forward(self, x):
        y = F.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return F.relu(y + (x if self.downsample is None else self.downsample(x)))


class Bottleneck(nn.Module):
    """torchvision's ResNet v1.5 bottleneck (stride on the 3x3 conv)."""

    expansion = 4

    def __init__(self, cin: int, planes: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.downsample = _downsample(cin, planes * 4, stride)

    def forward(self, x):
        y = F.relu(self.bn1(self.conv1(x)))
        y = F.relu(self.bn2(self.conv2(y)))
        y = self.bn3(self.conv3(y))
        return F.relu(y + (x if self.downsample is None else self.downsample(x)))


def _downsample(cin: int, cout: int, stride: int) -> nn.Sequential | None:
    if stride == 1 and cin == cout:
        return None
    return nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))


class Encoder(nn.Module):
    """ResNet stem + layer1..layer3. Input NCHW RGB in [0, 1] (normalised here with ImageNet
    mean/std); with `memory=True` the stem adds conv1_m(mask) + conv1_o(others), both
    [B,1,H,W]. Returns (r4 [B,C4,H/16,W/16], r3 [B,C3,H/8,W/8], r2 [B,C2,H/4,W/4])."""

    def __init__(self, backbone: str, width: float, memory: bool):
        super().__init__()
        kind, blocks = BACKBONES[backbone]
        block = Bottleneck if kind == "bottleneck" else BasicBlock
        c = _channels(64, width)
        self.conv1 = nn.Conv2d(3, c, 7, 2, 3, bias=False)
        if memory:
            self.conv1_m = nn.Conv2d(1, c, 7, 2, 3, bias=False)
            self.conv1_o = nn.Conv2d(1, c, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(c)
        self.memory = memory
        for i, (n, planes) in enumerate(zip(blocks, (64, 128, 256), strict=True)):
            planes = _channels(planes, width)
            layer = []
            for j in range(n):
                layer.append(block(c, planes, 2 if (j == 0 and i > 0) else 1))
                c = planes * block.expansion
            setattr(self, f"layer{i + 1}", nn.Sequential(*layer))
        self.channels = (
            _channels(64, width) * block.expansion,
            _channels(128, width) * block.expansion,
            c,
        )
        mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
        std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
        self.register_buffer("mean", mean, persistent=False)
        self.register_buffer("std", std, persistent=False)

    def forward(self, rgb, mask=None, others=None):
        x = self.conv1((rgb - self.mean) / self.std)
        if self.memory:
            x = x + self.conv1_m(mask) + self.conv1_o(others)
        x = F.max_pool2d(F.relu(self.bn1(x)), 3, 2, 1)
        r2 = self.layer1(x)
        r3 = self.layer2(r2)
        r4 = self.layer3(r3)
        return r4, r3, r2


class Projection(nn.Module):
    """3x3 conv heads on res4: key_g (GRM), key_l (PGM), value; NCHW in and out."""

    def __init__(self, cin: int, key_dim: int, value_dim: int, use_grm: bool, use_pgm: bool):
        super().__init__()
        if use_grm:
            self.key_g = nn.Conv2d(cin, key_dim, 3, 1, 1)
        if use_pgm:
            self.key_l = nn.Conv2d(cin, key_dim, 3, 1, 1)
        self.value = nn.Conv2d(cin, value_dim, 3, 1, 1)
        self.use_grm, self.use_pgm = use_grm, use_pgm

    def forward(self, r4):
        k_g = self.key_g(r4) if self.use_grm else None
        k_l = self.key_l(r4) if self.use_pgm else None
        return k_g, k_l, self.value(r4)


# ----------------------------------------------------------------------------------------
# GRM (eqs. 1-2), PGM (eqs. 3-6), ORM (eqs. 7-11). Tensors here are [B, O, N, C].
# ----------------------------------------------------------------------------------------


def grm_read(k_q, k_m, v_m, valid, scale_keys: bool):
    """Eqs. 1-2: s(i,j) = softmax_i(k_m(i).k_q(j) [/sqrt(Ck)]), y(j) = sum_i s(i,j) v_m(i).

    k_q [B,N,Ck]; k_m [B,O,M,Ck], v_m [B,O,M,Cv] with M = T*N pool positions; valid [B,O,M].
    Invalid slots take no part; an object with no valid slot reads zeros. Returns [B,O,N,Cv].
    """
    logits = torch.einsum("bomc,bnc->bomn", k_m, k_q)
    if scale_keys:
        logits = logits / math.sqrt(k_q.shape[-1])
    logits = logits.masked_fill(~valid[..., None], torch.finfo(logits.dtype).min)
    s = torch.softmax(logits, dim=2) * valid.any(dim=2)[:, :, None, None]
    return torch.einsum("bomn,bomc->bonc", s, v_m)


def position_encoding(h: int, w: int, channels: int) -> torch.Tensor:
    """DETR's 2D sine encoding, [h*w, channels]: channels/2 for y then channels/2 for x,
    coordinates (i+1)/h * 2pi in (0, 2pi], interleaved sin (even) / cos (odd) frequencies
    with temperature 10000."""
    f = channels // 2
    y = torch.arange(1, h + 1, dtype=torch.float64) / h * 2 * math.pi
    x = torch.arange(1, w + 1, dtype=torch.float64) / w * 2 * math.pi
    dim_t = POS_TEMPERATURE ** (2 * (torch.arange(f, dtype=torch.float64) // 2) / f)

    def enc(c):
        a = c[:, None] / dim_t
        return torch.where(torch.arange(f) % 2 == 0, torch.sin(a), torch.cos(a))

    pos_y = enc(y)[:, None, :].expand(h, w, f)
    pos_x = enc(x)[None, :, :].expand(h, w, f)
    return torch.cat([pos_y, pos_x], dim=-1).reshape(h * w, channels).float()


def pool_mask(mask, mode: str):
    """Masks [B,O,H,W] -> [B,O,N] on the stride-16 grid ("area" average or "max")."""
    b, o, hh, ww = mask.shape
    x = mask.reshape(b * o, 1, hh, ww)
    x = F.avg_pool2d(x, 16) if mode == "area" else F.max_pool2d(x, 16)
    return x.reshape(b, o, -1)


class PGM(nn.Module):
    """Eqs. 3-6. p = f_n(k_l + pos); S(i,j) = softmax_j(p_q(j).p_m(i)) * exp(M(i) - 1);
    P(j) = mean of the top-K of S(., j) over i (times N with position_map_scale "n");
    y_pgm(j) = P(j) * v_q(j)."""

    def __init__(self, key_dim: int, top_k: int, position_map_scale: str):
        super().__init__()
        self.f_n = nn.Conv2d(key_dim, key_dim, 1)
        self.top_k, self.position_map_scale = top_k, position_map_scale

    def embed(self, k, pos):
        """k [B,N,Ck] + pos [N,Ck] -> f_n(.) [B,N,Ck] (a 1x1 conv is a per-position matmul)."""
        x = k + pos
        weight = self.f_n.weight[:, :, 0, 0]
        return x @ weight.t() + self.f_n.bias

    def forward(self, k_q, k_m, mask_m, v_q, pos):
        """k_q [B,N,Ck], k_m [B,O,N,Ck], mask_m [B,O,N] (pooled), v_q [B,N,Cv] -> [B,O,N,Cv]."""
        n = k_q.shape[1]
        if self.top_k > n:
            raise ValueError(f"pgm_top_k={self.top_k} exceeds the {n} positions of the grid")
        p_q = self.embed(k_q, pos)
        p_m = self.embed(k_m, pos)
        a = torch.einsum("boic,bjc->boij", p_m, p_q)
        s = torch.softmax(a, dim=-1) * torch.exp(mask_m - 1.0)[..., None]
        pmap = torch.topk(s, self.top_k, dim=2).values.mean(dim=2)  # [B,O,N_j]
        if self.position_map_scale == "n":
            pmap = pmap * n
        return pmap[..., None] * v_q[:, None]


class ORM(nn.Module):
    """Eqs. 7-11 with F = w * v_f (w the pooled reference mask), d = N:
    F_Q(i) = 1/N sum_j (F(i).v_q(j)) g_q(v_q(j)); v_F(j) = 1/N sum_i w(i) (v_q(j).F(i)) g_f(F(i));
    v_q += v_F; F += F_Q; a = sigmoid(fc2(relu(fc1(GAP_w(F))))); y_orm = v_q * a."""

    def __init__(self, value_dim: int, reduction: int, shared_g: bool):
        super().__init__()
        hidden = value_dim // reduction
        if hidden < 1:
            raise ValueError(f"orm_reduction={reduction} leaves no channel of {value_dim}")
        if shared_g:
            self.g = nn.Conv2d(value_dim, value_dim, 1)
        else:
            self.g_q = nn.Conv2d(value_dim, value_dim, 1)
            self.g_f = nn.Conv2d(value_dim, value_dim, 1)
        self.fc1 = nn.Linear(value_dim, hidden)
        self.fc2 = nn.Linear(hidden, value_dim)
        self.shared_g = shared_g

    @staticmethod
    def _pointwise(conv, x):
        return x @ conv.weight[:, :, 0, 0].t() + conv.bias

    def forward(self, v_q, v_f, w):
        """v_q [B,N,Cv], v_f [B,O,N,Cv], w [B,O,N] in [0,1] -> y_orm [B,O,N,Cv]."""
        n = v_q.shape[1]
        g_q = self.g if self.shared_g else self.g_q
        g_f = self.g if self.shared_g else self.g_f
        f = w[..., None] * v_f
        r = torch.einsum("boic,bjc->boij", f, v_q)  # f(F(i), v_q(j))
        f_q = torch.einsum("boij,bjc->boic", r, self._pointwise(g_q, v_q)) / n  # eq. 7
        v_fq = torch.einsum("boij,boi,boic->bojc", r, w, self._pointwise(g_f, f)) / n  # eq. 8
        v = v_q[:, None] + v_fq  # eq. 9
        f = f + f_q  # eq. 10
        w_sum = w.sum(dim=2, keepdim=True)
        gap = (w[..., None] * f).sum(dim=2) / torch.where(w_sum > 0, w_sum, 1.0)
        a = torch.sigmoid(self.fc2(F.relu(self.fc1(gap))))
        return v * a[:, :, None, :]  # eq. 11


# ----------------------------------------------------------------------------------------
# STM decoder and soft aggregation.
# ----------------------------------------------------------------------------------------


class ResBlock(nn.Module):
    """STM's pre-activation block without normalisation: x + conv2(relu(conv1(relu(x))))."""

    def __init__(self, dim: int):
        super().__init__()
        self.conv1 = nn.Conv2d(dim, dim, 3, 1, 1)
        self.conv2 = nn.Conv2d(dim, dim, 3, 1, 1)

    def forward(self, x):
        return x + self.conv2(F.relu(self.conv1(F.relu(x))))


class Refine(nn.Module):
    """ResMM(ResFS(convFS(r)) + up2(m)), bilinear align_corners=False."""

    def __init__(self, cin: int, dim: int):
        super().__init__()
        self.convFS = nn.Conv2d(cin, dim, 3, 1, 1)
        self.ResFS = ResBlock(dim)
        self.ResMM = ResBlock(dim)

    def forward(self, r, m):
        s = self.ResFS(self.convFS(r))
        up = F.interpolate(m, size=s.shape[-2:], mode="bilinear", align_corners=False)
        return self.ResMM(s + up)


class Decoder(nn.Module):
    """x [B',2Cv,h,w], r3, r2 (NCHW) -> per-object logits [B',2,H,W] (bg, fg)."""

    def __init__(self, cin: int, c3: int, c2: int, dim: int):
        super().__init__()
        self.convFM = nn.Conv2d(cin, dim, 3, 1, 1)
        self.ResMM = ResBlock(dim)
        self.RF3 = Refine(c3, dim)
        self.RF2 = Refine(c2, dim)
        self.pred2 = nn.Conv2d(dim, 2, 3, 1, 1)

    def forward(self, x, r3, r2):
        m4 = self.ResMM(self.convFM(x))
        m3 = self.RF3(r3, m4)
        m2 = self.RF2(r2, m3)
        p2 = self.pred2(F.relu(m2))
        size = (r2.shape[-2] * 4, r2.shape[-1] * 4)
        return F.interpolate(p2, size=size, mode="bilinear", align_corners=False)


def soft_aggregate(logits, valid):
    """STM's soft aggregation. logits [B,O,2,H,W] per object, valid [B,O] ->
    [B,1+O,H,W]: p_o = softmax(logits)[fg], background prod(1 - p_o) over valid objects,
    logit log(p/(1-p)) with p clamped to [1e-7, 1-1e-7]; padded objects get PADDED_LOGIT."""
    vmask = valid[:, :, None, None]
    p = torch.softmax(logits, dim=2)[:, :, 1] * vmask
    bg = torch.prod(1.0 - p, dim=1, keepdim=True)
    em = torch.cat([bg, p], dim=1).clamp(PROB_CLAMP, 1.0 - PROB_CLAMP)
    out = torch.log(em / (1.0 - em))
    fg = torch.where(vmask, out[:, 1:], torch.full_like(out[:, 1:], PADDED_LOGIT))
    return torch.cat([out[:, :1], fg], dim=1)


# ----------------------------------------------------------------------------------------
# The network.
# ----------------------------------------------------------------------------------------


class LCMTorch(nn.Module):
    """LCM (section 3) with the fields of `configs/model.py`.

    The reference always computes in float32: `dtype` and `attention_dtype` are accepted so
    that a config loads unchanged, and `grm_chunk_size` too (the chunked read must equal the
    plain one, which is what this reference computes). `max_objects` bounds O.
    """

    def __init__(
        self,
        backbone: str = "resnet50",
        width: float = 1.0,
        frozen_bn: bool = True,
        zero_init_mask_stem: bool = True,
        use_grm: bool = True,
        use_pgm: bool = True,
        use_orm: bool = True,
        scale_keys: bool = True,
        grm_chunk_size: int = 0,
        pgm_top_k: int = 8,
        position_map_scale: str = "n",
        mask_pooling: str = "area",
        local_fusion: str = "replace",
        orm_shared_g: bool = False,
        orm_reduction: int = 16,
        max_objects: int = 3,
        dtype: str = "float32",
        attention_dtype: str = "float32",
    ):
        super().__init__()
        if backbone not in BACKBONES:
            raise ValueError(f"backbone must be one of {sorted(BACKBONES)}, got {backbone!r}")
        if position_map_scale not in ("n", "none"):
            raise ValueError(f"position_map_scale must be 'n' or 'none': {position_map_scale!r}")
        if mask_pooling not in ("area", "max"):
            raise ValueError(f"mask_pooling must be 'area' or 'max', got {mask_pooling!r}")
        if local_fusion not in ("replace", "residual"):
            raise ValueError(f"local_fusion must be 'replace' or 'residual': {local_fusion!r}")
        if dtype not in ("float32", "bfloat16"):
            raise ValueError(f"dtype must be 'float32' or 'bfloat16', got {dtype!r}")
        self.frozen_bn = frozen_bn
        self.use_grm, self.use_pgm, self.use_orm = use_grm, use_pgm, use_orm
        self.scale_keys, self.grm_chunk_size = scale_keys, grm_chunk_size
        self.mask_pooling, self.max_objects, self.dtype = mask_pooling, max_objects, dtype
        self.local_fusion = local_fusion
        self.key_dim = _channels(128, width)
        self.value_dim = _channels(512, width)
        self.query_encoder = Encoder(backbone, width, memory=False)
        self.memory_encoder = Encoder(backbone, width, memory=True)
        c2, c3, c4 = self.query_encoder.channels
        self.query_proj = Projection(c4, self.key_dim, self.value_dim, use_grm, use_pgm)
        self.memory_proj = Projection(c4, self.key_dim, self.value_dim, use_grm, use_pgm)
        if use_pgm:
            self.pgm = PGM(self.key_dim, pgm_top_k, position_map_scale)
        if use_orm:
            self.orm = ORM(self.value_dim, orm_reduction, orm_shared_g)
        self.decoder = Decoder(2 * self.value_dim, c3, c2, _channels(256, width))
        if zero_init_mask_stem:
            nn.init.zeros_(self.memory_encoder.conv1_m.weight)
            nn.init.zeros_(self.memory_encoder.conv1_o.weight)
        self.train(False)

    def train(self, mode: bool = True):
        """Frozen BN (the default) keeps every BatchNorm on its running statistics."""
        super().train(mode)
        if self.frozen_bn:
            for m in self.modules():
                if isinstance(m, nn.BatchNorm2d):
                    m.eval()
        return self

    # Entry points (Flax layout in and out).

    def encode_query(self, frame) -> QueryFeatures:
        """frame [B,H,W,3] in [0, 1] -> QueryFeatures (NHWC)."""
        r4, r3, r2 = self.query_encoder(_nchw(frame))
        k_g, k_l, v = self.query_proj(r4)
        opt = lambda x: None if x is None else _nhwc(x)
        return QueryFeatures(opt(k_g), opt(k_l), _nhwc(v), _nhwc(r3), _nhwc(r2))

    def encode_memory(self, frame, masks, valid) -> MemoryFrame:
        """frame [B,H,W,3], masks [B,O,H,W] soft, valid [B,O] -> MemoryFrame [B,O,h,w,C]."""
        b, o, hh, ww = masks.shape
        masks = masks * valid[:, :, None, None]
        others = (masks.sum(dim=1, keepdim=True) - masks).clamp(0.0, 1.0)
        rgb = _nchw(frame)[:, None].expand(b, o, 3, hh, ww).reshape(b * o, 3, hh, ww)
        r4, _, _ = self.memory_encoder(
            rgb, masks.reshape(b * o, 1, hh, ww), others.reshape(b * o, 1, hh, ww)
        )
        k_g, k_l, v = self.memory_proj(r4)
        opt = lambda x: None if x is None else _nhwc(x).reshape(b, o, *_nhwc(x).shape[1:])
        return MemoryFrame(opt(k_g), opt(k_l), opt(v))

    def segment(self, frame, memory: MemoryPool, prev: PrevFrame, reference: Reference, valid):
        """Eqs. 1-11 + decoder + soft aggregation for one query frame [B,H,W,3] -> logits
        [B,1+O,H,W] (background first)."""
        q = self.encode_query(frame)
        b, h, w, cv = q.v.shape
        n, o = h * w, valid.shape[1]
        if o > self.max_objects:
            raise ValueError(f"{o} objects exceed max_objects={self.max_objects}")
        v_q = q.v.reshape(b, n, cv)
        if self.use_grm:
            t = memory.k_g.shape[2]
            k_m = memory.k_g.reshape(b, o, t * n, -1)
            v_m = memory.v.reshape(b, o, t * n, cv)
            slot_valid = memory.valid[:, :, :, None].expand(b, o, t, n).reshape(b, o, t * n)
            y_grm = grm_read(q.k_g.reshape(b, n, -1), k_m, v_m, slot_valid, self.scale_keys)
        else:
            y_grm = v_q.new_zeros(b, o, n, cv)
        y_local = None
        if self.use_pgm:
            pos = position_encoding(h, w, self.key_dim).to(v_q)
            y_local = self.pgm(
                q.k_l.reshape(b, n, -1),
                prev.k_l.reshape(b, o, n, -1),
                pool_mask(prev.mask, self.mask_pooling),
                v_q,
                pos,
            )
        if self.use_orm:
            y_orm = self.orm(
                v_q,
                reference.v.reshape(b, o, n, cv),
                pool_mask(reference.mask, self.mask_pooling),
            )
            y_local = y_orm if y_local is None else y_local + y_orm
        stm_input = v_q[:, None].expand(b, o, n, cv)
        if y_local is None:
            y_local = stm_input
        elif self.local_fusion == "residual":
            y_local = y_local + stm_input
        x = torch.cat([y_grm, y_local], dim=-1).reshape(b * o, h, w, 2 * cv)
        rep = lambda r: _nchw(r)[:, None].expand(b, o, *_nchw(r).shape[1:]).flatten(0, 1)
        logits = self.decoder(_nchw(x), rep(q.r3), rep(q.r2))
        return soft_aggregate(logits.reshape(b, o, *logits.shape[1:]), valid)

    def forward(self, frames, masks, valid):
        """The training clip of section 3.5. frames [B,3,H,W,3], masks [B,3,O,H,W] (only
        frame 0 is read), valid [B,O] -> logits [B,2,1+O,H,W] for frames 1 and 2."""
        m0 = self.encode_memory(frames[:, 0], masks[:, 0], valid)
        reference = Reference(m0.v, masks[:, 0])
        pool = MemoryPool(
            None if m0.k_g is None else m0.k_g[:, :, None], m0.v[:, :, None], valid[:, :, None]
        )
        logits1 = self.segment(frames[:, 1], pool, PrevFrame(m0.k_l, masks[:, 0]), reference, valid)
        p1 = torch.softmax(logits1, dim=1)[:, 1:]
        m1 = self.encode_memory(frames[:, 1], p1, valid)
        pool = MemoryPool(
            None if m0.k_g is None else torch.stack([m0.k_g, m1.k_g], dim=2),
            torch.stack([m0.v, m1.v], dim=2),
            torch.stack([valid, valid], dim=2),
        )
        logits2 = self.segment(frames[:, 2], pool, PrevFrame(m1.k_l, p1), reference, valid)
        return torch.stack([logits1, logits2], dim=1)


@torch.no_grad()
def random_weights_(net: LCMTorch, seed: int) -> LCMTorch:
    """Re-draws every parameter and BN statistic of `net` in place from `seed`, so that no
    layer is an identity or a zero (parity tests, benchmarks): convs and linears with torch's
    default init (conv1_m / conv1_o included), BN scale and var U(0.5, 1.5), BN bias and mean
    N(0, 0.1)."""
    g = torch.Generator().manual_seed(seed)
    for m in net.modules():
        if isinstance(m, nn.Conv2d | nn.Linear):
            bound = 1.0 / math.sqrt(m.weight[0].numel())
            m.weight.copy_((torch.rand(m.weight.shape, generator=g) * 2 - 1) * bound)
            if m.bias is not None:
                m.bias.copy_((torch.rand(m.bias.shape, generator=g) * 2 - 1) * bound)
        elif isinstance(m, nn.BatchNorm2d):
            m.weight.copy_(torch.rand(m.weight.shape, generator=g) + 0.5)
            m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.1)
            m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)
    return net


def build_torch_model(config: Mapping) -> LCMTorch:
    """LCMTorch from a model config (ml_collections.ConfigDict or a plain mapping with the
    fields of `configs/model.py`); an unknown field is a ValueError."""
    fields = dict(config.items())
    known = set(inspect.signature(LCMTorch.__init__).parameters) - {"self"}
    unknown = sorted(set(fields) - known)
    if unknown:
        raise ValueError(f"unknown model config fields {unknown}; known: {sorted(known)}")
    return LCMTorch(**fields)
