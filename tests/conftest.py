"""Test set-up: JAX on 8 fake CPU devices (sharding tests), float32 matmuls at full precision.

XLA's CPU backend compiles without LLVM optimisation (`--xla_backend_optimization_level=0`):
the tests compile many small programs and run each a few times, and this cuts their compile
time (the tests' subprocesses inherit it). Results stay IEEE float32; speed is
measured in benchmarks/, never here.

Every temporary file of the session goes into one folder, removed at its end (`SESSION_TMP`,
the TMPDIR of xdist's workers and of every process a test starts): the TFDS builds in the
tests' processes and multiprocessing's forkserver left theirs in /tmp, a few each run. It also
holds the session's JAX compilation cache (JAX_COMPILATION_CACHE_DIR, JAX's default of caching
programs that take 1 s or more to compile): processes that compile the same programs share
them (tests/test_demo.py and the notebooks 01 and 02 train the same three stages).
"""

import os
import shutil
import tempfile

SESSION_TMP = None  # the folder this process made (the controller's; workers inherit TMPDIR)
if "PYTEST_XDIST_WORKER" not in os.environ:
    SESSION_TMP = tempfile.mkdtemp(prefix="lcm-jax-tests-")
    os.environ["TMPDIR"] = SESSION_TMP
    tempfile.tempdir = None  # gettempdir() reads TMPDIR again
    os.environ["JAX_COMPILATION_CACHE_DIR"] = os.path.join(SESSION_TMP, "jax_cache")

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

# The test modules in the order xdist hands them to its workers (pyproject.toml: --dist
# loadscope --no-loadscope-reorder): the longest first (seconds measured on 2 CPU cores), so that
# the workers end together instead of one running a long module alone at the end; the modules
# not named, each under 20 s, follow in collection order.
SLOWEST_FIRST = (
    "test_train.py",  # 263
    "test_documented_commands.py",  # 158
    "test_notebooks.py",  # 151
    "test_multiprocess.py",  # 147
    "test_evaluate.py",  # 123
    "test_ablation.py",  # 102
    "test_benchmarks.py",  # 97
    "test_parity.py",  # 90
    "test_demo.py",  # 86
    "test_lcm.py",  # 75
    "test_segment.py",  # 74
    "test_inference.py",  # 52
    "test_convert.py",  # 44
    "test_export.py",  # 40
    "test_numpy_feed.py",  # 26
)


def pytest_collection_modifyitems(items):
    rank = {name: i for i, name in enumerate(SLOWEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable within a module


@pytest.fixture(scope="session")
def prepared(tmp_path_factory):
    """The tiny synthetic videos, prepared as TFDS sets once per test session."""
    return testing.tiny_prepared(tmp_path_factory.getbasetemp())


@pytest.fixture(scope="module")
def compilation_cache(tmp_path_factory):
    """JAX's persistent compilation cache for one test module (every program cached, however fast
    it compiled): its folder, for the module's subprocesses too (JAX_COMPILATION_CACHE_DIR)."""
    names = (
        "jax_compilation_cache_dir",
        "jax_persistent_cache_min_compile_time_secs",
        "jax_persistent_cache_min_entry_size_bytes",
    )
    old = {n: getattr(jax.config, n) for n in names}
    folder = str(tmp_path_factory.mktemp("jax_cache"))
    jax.config.update(names[0], folder)
    jax.config.update(names[1], 0)
    jax.config.update(names[2], 0)
    yield folder
    for n, v in old.items():
        jax.config.update(n, v)


def pytest_unconfigure(config):
    if SESSION_TMP is not None:
        shutil.rmtree(SESSION_TMP, ignore_errors=True)
