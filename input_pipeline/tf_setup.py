"""Imports TensorFlow for the input pipeline and hides every GPU/TPU from it.

JAX owns the accelerators; tf.data runs on the host CPU only. Every input_pipeline module that
uses TensorFlow imports `tf` from here.
"""

import tensorflow as tf

for _kind in ("GPU", "TPU"):
    try:
        tf.config.set_visible_devices([], _kind)
    except (RuntimeError, ValueError):  # TF already initialised (then set earlier) / no such kind
        pass

__all__ = ["tf"]
