"""Input pipeline: dataset folders (video_io), the synthetic generator, clip plans and two feeds.

Importing this package does not import TensorFlow. The NumPy feed (`clips`, `numpy_clips`,
`folder_source`, `pipeline` with `config.data.feed="numpy"`) never does; the tf.data feed
(`tf_clips`, `tfds_sets`, the TFDS builders) imports it and hides every GPU/TPU from it
(`lcm_jax.input_pipeline.tf_setup`).
"""
