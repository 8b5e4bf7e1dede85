"""Convolutions with PyTorch's explicit padding, shared by every module of the network.

Flax's "SAME" padding differs from PyTorch's for stride 2 on even sizes; all layers here pad
`k // 2` on every side, exactly as the PyTorch reference (and STM, torchvision) does, so that
converted weights compute the same function. Parameters are float32, computation in `dtype`.
"""

import functools

import flax.linen as nn
import jax.numpy as jnp

# torchvision's ResNet initialisation (kaiming normal, fan_out, relu gain).
kaiming_fan_out = nn.initializers.variance_scaling(2.0, "fan_out", "normal")
# PyTorch's default for Conv2d and Linear weights, kaiming_uniform(a=sqrt(5)): U(±1/sqrt(fan_in)).
torch_default = nn.initializers.variance_scaling(1.0 / 3.0, "fan_in", "uniform")


def conv(
    features: int,
    kernel: int,
    *,
    stride: int = 1,
    bias: bool = True,
    dtype,
    name: str,
    kernel_init=torch_default,
):
    """A k×k convolution padded by k // 2 on each side (NHWC; kernel [k, k, in, out])."""
    pad = kernel // 2
    return nn.Conv(
        features,
        (kernel, kernel),
        strides=(stride, stride),
        padding=((pad, pad), (pad, pad)),
        use_bias=bias,
        dtype=dtype,
        param_dtype=jnp.float32,
        kernel_init=kernel_init,
        name=name,
    )


def batch_norm(*, use_running_average: bool, dtype, name: str):
    """BatchNorm with PyTorch's defaults (eps 1e-5, momentum 0.1 i.e. Flax momentum 0.9)."""
    return nn.BatchNorm(
        use_running_average=use_running_average,
        momentum=0.9,
        epsilon=1e-5,
        dtype=dtype,
        param_dtype=jnp.float32,
        name=name,
    )


max_pool_3x3_s2 = functools.partial(
    nn.max_pool, window_shape=(3, 3), strides=(2, 2), padding=((1, 1), (1, 1))
)
