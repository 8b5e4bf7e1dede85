"""Test set-up: JAX on 8 fake CPU devices (sharding tests), float32 matmuls at full precision.

XLA's CPU backend compiles without LLVM optimisation (`--xla_backend_optimization_level=0`):
the tests compile many small programs and run each a few times, and this cuts their compile
time about four-fold (the tests' subprocesses inherit it). Results stay IEEE float32; speed is
measured in benchmarks/, never here.
"""

import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ["XLA_FLAGS"] = (
    os.environ.get("XLA_FLAGS", "")
    + " --xla_force_host_platform_device_count=8 --xla_backend_optimization_level=0"
).strip()

import jax  # noqa: E402
import pytest  # noqa: E402

from lcm_jax.input_pipeline import testing  # noqa: E402

jax.config.update("jax_default_matmul_precision", "highest")


@pytest.fixture(scope="session")
def prepared(tmp_path_factory):
    """The tiny synthetic videos, prepared as TFDS sets once per test session."""
    return testing.tiny_prepared(tmp_path_factory.getbasetemp())
