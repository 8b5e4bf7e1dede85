"""ResNet encoders of LCM (section 3.2): res2, res3 and res4 of a torchvision-style ResNet.

Query encoder (STM's Encoder_Q): ImageNet-normalised RGB -> stem (conv1 7×7/2, bn1, relu,
max-pool 3×3/2) -> layer1 (res2, stride 4) -> layer2 (res3, stride 8) -> layer3 (res4, stride 16).
layer4 is not used.

Memory encoder (STM's Encoder_M): the stem sums three 7×7/2 convolutions without bias,

    conv1(rgb) + conv1_m(this object's mask) + conv1_o(clip(sum of the other objects' masks, 0, 1)),

then the same trunk. conv1_m and conv1_o start at zero by default (spec [choice]), so that an
ImageNet initialisation starts as the plain ResNet.

Parameter names mirror torchvision's (`layer1_0/conv1` is `layer1.0.conv1`,
`layer1_0/downsample_conv` is `layer1.0.downsample.0`), so converted state_dicts map one to one.

Shapes: image [B, H, W, 3] in [0, 1] with H, W multiples of 16; masks [B, H, W] in [0, 1].
Returns res2 [B, H/4, W/4, C2], res3 [B, H/8, W/8, C3], res4 [B, H/16, W/16, C4], in `dtype`
(the compute dtype), where
(C2, C3, C4) = (256, 512, 1024)·width for ResNet-50 and (64, 128, 256)·width for ResNet-18/34.
"""

import functools
from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from lcm_jax.model.layers import batch_norm, conv, kaiming_fan_out, max_pool_3x3_s2

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# depth name -> (block type, blocks in layer1..layer3)
RESNET_LAYERS = {
    "resnet18": ("basic", (2, 2, 2)),
    "resnet34": ("basic", (3, 4, 6)),
    "resnet50": ("bottleneck", (3, 4, 6)),
}


def scaled(channels: int, width: float) -> int:
    """Channel count `channels` scaled by the width multiplier (at least 1)."""
    return max(1, round(channels * width))


def shortcut(x, features: int, stride: int, norm, **conv_kw):
    """x, or torchvision's `downsample` (1x1 strided conv + BN) where a block changes the shape.
    Call inside a block's compact method: the layers become the block's."""
    if stride == 1 and x.shape[-1] == features:
        return x
    x = conv(features, 1, stride=stride, name="downsample_conv", **conv_kw)(x)
    return norm(name="downsample_bn")(x)


class BasicBlock(nn.Module):
    """ResNet-18/34 block: relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x))."""

    planes: int
    stride: int
    norm: Callable[..., Any]
    dtype: Any

    @nn.compact
    def __call__(self, x):
        c = dict(bias=False, dtype=self.dtype, kernel_init=kaiming_fan_out)
        y = conv(self.planes, 3, stride=self.stride, name="conv1", **c)(x)
        y = nn.relu(self.norm(name="bn1")(y))
        y = self.norm(name="bn2")(conv(self.planes, 3, name="conv2", **c)(y))
        return nn.relu(shortcut(x, self.planes, self.stride, self.norm, **c) + y)


class Bottleneck(nn.Module):
    """ResNet-50 block (torchvision v1.5: the stride sits on the 3×3 convolution)."""

    planes: int
    stride: int
    norm: Callable[..., Any]
    dtype: Any

    @nn.compact
    def __call__(self, x):
        c = dict(bias=False, dtype=self.dtype, kernel_init=kaiming_fan_out)
        out = 4 * self.planes
        y = nn.relu(self.norm(name="bn1")(conv(self.planes, 1, name="conv1", **c)(x)))
        y = conv(self.planes, 3, stride=self.stride, name="conv2", **c)(y)
        y = nn.relu(self.norm(name="bn2")(y))
        y = self.norm(name="bn3")(conv(out, 1, name="conv3", **c)(y))
        return nn.relu(shortcut(x, out, self.stride, self.norm, **c) + y)


def check_image(name: str, image, *, channels: int | None = 3) -> None:
    """ValueError unless `image` is [B, H, W(, channels)] with H and W multiples of 16."""
    rank = 4 if channels else 3
    if image.ndim != rank or (channels and image.shape[-1] != channels):
        want = "[B, H, W, 3]" if channels else "[B, H, W]"
        raise ValueError(f"{name} must have shape {want}, got {tuple(image.shape)}")
    h, w = image.shape[1:3]
    if h % 16 or w % 16:
        raise ValueError(
            f"{name} height and width must be multiples of 16 (pad the frame first), "
            f"got {h}x{w} in shape {tuple(image.shape)}"
        )


class ResNetEncoder(nn.Module):
    """Query encoder, or with `mask_stem` the memory encoder; returns (res2, res3, res4)."""

    backbone: str = "resnet50"
    width: float = 1.0
    frozen_bn: bool = True
    mask_stem: bool = False
    zero_init_mask_stem: bool = True
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, image, mask=None, others=None, *, train: bool = False):
        check_image("image", image)
        if self.mask_stem:
            for name, m in (("mask", mask), ("others", others)):
                if m is None or m.shape != image.shape[:3]:
                    got = None if m is None else tuple(m.shape)
                    raise ValueError(
                        f"memory encoder {name} must have shape {tuple(image.shape[:3])} "
                        f"(the frame's [B, H, W]), got {got}"
                    )
        norm = functools.partial(
            batch_norm, use_running_average=self.frozen_bn or not train, dtype=self.dtype
        )
        stem = dict(stride=2, bias=False, dtype=self.dtype)
        mean, std = jnp.asarray(IMAGENET_MEAN), jnp.asarray(IMAGENET_STD)
        x = ((image - mean) / std).astype(self.dtype)
        x = conv(scaled(64, self.width), 7, name="conv1", kernel_init=kaiming_fan_out, **stem)(x)
        if self.mask_stem:
            init = nn.initializers.zeros if self.zero_init_mask_stem else kaiming_fan_out
            for name, m in (("conv1_m", mask), ("conv1_o", others)):
                m = m[..., None].astype(self.dtype)
                x = x + conv(scaled(64, self.width), 7, name=name, kernel_init=init, **stem)(m)
        x = max_pool_3x3_s2(nn.relu(norm(name="bn1")(x)))

        kind, blocks = RESNET_LAYERS[self.backbone]
        block = Bottleneck if kind == "bottleneck" else BasicBlock
        features = []
        for layer, (n, planes) in enumerate(zip(blocks, (64, 128, 256), strict=True), start=1):
            for i in range(n):
                stride = 2 if (i == 0 and layer > 1) else 1
                x = block(
                    scaled(planes, self.width), stride, norm, self.dtype, name=f"layer{layer}_{i}"
                )(x)
            features.append(x)
        return tuple(features)
