"""Input pipeline: dataset folders (video_io), the synthetic generator, TFDS builders and tf.data.

Importing this package does not import TensorFlow; the tf.data modules (`clips`, `pipeline`, the
TFDS builders) import it and hide every GPU/TPU from it (`lcm_jax.input_pipeline.tf_setup`).
"""
