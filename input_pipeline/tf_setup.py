"""Imports TensorFlow for the tf.data feed and the TFDS sets, and hides every GPU/TPU from it.

JAX owns the accelerators; tf.data runs on the host CPU only. Every input_pipeline module that
uses TensorFlow imports `tf` from here (the NumPy feed, `config.data.feed="numpy"`, imports
none). TensorFlow comes with the extras of pyproject.toml
(`pip install -e '.[cpu]'`, `[cuda12]`, `[tpu]`) or is already there (Colab: colab/install.py).
"""

try:
    import tensorflow as tf
except ModuleNotFoundError as e:
    if e.name != "tensorflow":
        raise
    raise ModuleNotFoundError(
        "the tf.data input pipeline needs TensorFlow (on the host CPU), which is not installed: "
        "pip install -e '.[cpu]' (or '.[cuda12]', '.[tpu]'), see the README's Installing; or "
        "train on DAVIS folders with config.data.feed='numpy'",
        name="tensorflow",
    ) from None

for _kind in ("GPU", "TPU"):
    try:
        tf.config.set_visible_devices([], _kind)
    except (RuntimeError, ValueError):  # TF already initialised (then set earlier) / no such kind
        pass

__all__ = ["tf"]
