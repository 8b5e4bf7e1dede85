"""lcm-jax: LCM (Hu et al., CVPR 2021) for semi-supervised video object segmentation in JAX."""

__version__ = "0.1.0"
