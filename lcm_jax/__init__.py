"""lcm-jax: LCM (Hu et al., CVPR 2021) for semi-supervised video object segmentation in JAX.

from lcm_jax import Predictor   # interactive: masks on any frame, propagation both ways
"""

__version__ = "0.1.0"


def __getattr__(name: str):
    # Imported on first use, so that `import lcm_jax.configs` and the CLIs stay light.
    if name == "Predictor":
        from lcm_jax.inference.predictor import Predictor

        return Predictor
    raise AttributeError(f"module 'lcm_jax' has no attribute {name!r}")
