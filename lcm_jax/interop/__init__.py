"""The PyTorch bridge: a torch reference of LCM, weight conversion, numerics comparison.

    from lcm_jax.interop import LCMTorch, compare, torch_to_flax, flax_to_torch

Needs torch (the `torch` extra); the rest of lcm_jax does not import this package.
"""

from lcm_jax.interop.compare import ErrorReport, TensorError, compare
from lcm_jax.interop.convert import ConversionError, flax_to_torch, torch_to_flax
from lcm_jax.interop.torch_lcm import LCMTorch, build_torch_model

__all__ = [
    "ConversionError",
    "ErrorReport",
    "LCMTorch",
    "TensorError",
    "build_torch_model",
    "compare",
    "flax_to_torch",
    "torch_to_flax",
]
