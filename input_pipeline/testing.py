"""Tiny synthetic data for the tests: generated and prepared once per test session."""

from __future__ import annotations

from pathlib import Path

from lcm_jax.input_pipeline import synthetic

_CACHE: dict[tuple, Path] = {}

TINY = dict(num_videos=6, num_frames=10, height=64, width=96, seed=3, num_static=6)

# Python code to run first in a `python -c` subprocess: from then on TensorFlow and TFDS are as
# if not installed (the path finder does not find them; a finder that raised instead would also
# break `importlib.util.find_spec("tensorflow")`, which etils asks to learn whether TensorFlow is
# there), as on the GPU image.
WITHOUT_TENSORFLOW = """
import importlib.machinery, sys

class WithoutTensorFlow(importlib.machinery.PathFinder):
    @classmethod
    def find_spec(cls, name, path=None, target=None):
        if name.split(".")[0] in ("tensorflow", "tensorflow_datasets"):
            return None
        return super().find_spec(name, path, target)

sys.meta_path = [
    WithoutTensorFlow if f is importlib.machinery.PathFinder else f for f in sys.meta_path
]
"""


def tiny_synthetic(base: Path) -> Path:
    """`synthetic.generate(**TINY)` under `base/synthetic`, written once per `base`."""
    key = ("raw", Path(base))
    if key not in _CACHE:
        _CACHE[key] = synthetic.generate(Path(base) / "synthetic", **TINY, progress=False)
    return _CACHE[key]


def tiny_prepared(base: Path) -> tuple[Path, Path]:
    """(manual_dir, data_dir) with the three builders prepared from `tiny_synthetic(base)`."""
    key = ("tfds", Path(base))
    if key not in _CACHE:
        from lcm_jax.input_pipeline import prepare

        raw = tiny_synthetic(base)
        prepare.prepare("synthetic", str(raw), str(Path(base) / "tfds"))
        _CACHE[key] = Path(base) / "tfds"
    return tiny_synthetic(base), _CACHE[key]
