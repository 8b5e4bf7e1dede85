"""Experiment configs: one `get_config(arg=None)` per module (ml_collections)."""
