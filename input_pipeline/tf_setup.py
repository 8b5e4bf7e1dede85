"""Imports TensorFlow for the input pipeline and hides every GPU/TPU from it.

JAX owns the accelerators; tf.data runs on the host CPU only. Every input_pipeline module that
uses TensorFlow imports `tf` from here. TensorFlow comes with the extras of pyproject.toml
(`pip install -e '.[cpu]'`, `[cuda12]`, `[tpu]`) or is already there (Colab: colab/install.py).
"""

try:
    import tensorflow as tf
except ModuleNotFoundError as e:
    if e.name != "tensorflow":
        raise
    raise ModuleNotFoundError(
        "the input pipeline needs TensorFlow (tf.data on the host CPU), which is not installed: "
        "pip install -e '.[cpu]' (or '.[cuda12]', '.[tpu]'), see the README's Installing",
        name="tensorflow",
    ) from None

for _kind in ("GPU", "TPU"):
    try:
        tf.config.set_visible_devices([], _kind)
    except (RuntimeError, ValueError):  # TF already initialised (then set earlier) / no such kind
        pass

__all__ = ["tf"]
