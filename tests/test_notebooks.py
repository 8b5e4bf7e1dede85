"""Every Colab notebook runs top to bottom on tiny settings (nbclient, the repo as cwd).

As papermill does, the test inserts a cell after the notebook's `parameters` cell that overrides
the parameters; the notebook's own asserts are the checks. Outside Colab the install cell only
says where JAX runs; its Colab side (clone REPO, colab/install.py) is checked here for its
messages, and run for real against a copy of Colab's runtime by `make colab-check`.
"""

import importlib.util
import subprocess
import sys
from pathlib import Path

import nbclient
import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "colab").glob("*.ipynb"))


def overrides(name: str, tmp_path: Path) -> str:
    common = f'WORKDIR = "{tmp_path}"\n'
    return common + {
        # 01, 02 and tests/test_demo.py train the same three stages (2 steps, 64x64 crops): the
        # session's compilation cache (conftest.py) compiles them once
        "01_quickstart": "STEPS = 2\nFRAMES, SIZE = 8, 64\n",
        "02_train": "STEPS = 2\nCROP = 64\nFRAMES, SIZE = 8, 64\nSHOW_TENSORBOARD = False\n",
        "03_compare_pytorch": 'MODEL = "tiny"\nHEIGHT, WIDTH = 32, 48\n',
        "04_benchmarks_data": 'MODEL = "tiny"\n',
        "05_interactive": "STEPS = 0\nFRAMES, SIZE = 8, 64\n",
    }.get(name, "")


def cell(nb, tag: str) -> int:
    (at,) = [i for i, c in enumerate(nb.cells) if tag in c.metadata.get("tags", [])]
    return at


def test_every_notebook_has_a_parameters_cell_and_no_saved_outputs():
    assert NOTEBOOKS, "no notebooks in colab/"
    for path in NOTEBOOKS:
        nb = nbformat.read(path, as_version=4)
        tags = [c.metadata.get("tags", []) for c in nb.cells]
        assert sum("parameters" in t for t in tags) == 1, path.name
        assert not any(c.get("outputs") for c in nb.cells if c.cell_type == "code"), path.name


def test_every_notebook_sets_repo_first_and_installs_right_after_its_parameters():
    installs = set()
    for path in NOTEBOOKS:
        nb = nbformat.read(path, as_version=4)
        at = cell(nb, "parameters")
        assert cell(nb, "install") == at + 1, path.name
        settings = [line for line in nb.cells[at].source.splitlines() if "=" in line]
        assert settings[0] == 'REPO = ""', path.name  # one obvious setting, unset
        installs.add(nb.cells[at + 1].source.replace(', "torch"]', "]"))
    assert len(installs) == 1  # the same cell everywhere, 03 adds the torch extra


def load(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "colab" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_install_cell_in_colab(path: Path, repo: str, cwd: Path) -> str:
    """The parameters and install cells, with `google.colab` importable as in Colab."""
    nb = nbformat.read(path, as_version=4)
    at = cell(nb, "parameters")
    cells = [nbformat.v4.new_code_cell(load("check_runtime").IN_COLAB), nb.cells[at]]
    cells += [nbformat.v4.new_code_cell(f"REPO = {repo!r}"), nb.cells[at + 1]]
    nb.cells = cells
    client = nbclient.NotebookClient(
        nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(cwd)}}
    )
    with pytest.raises(nbclient.exceptions.CellExecutionError) as failure:
        client.execute()
    return str(failure.value)


def test_install_cell_in_colab_with_repo_unset_says_to_set_it(tmp_path):
    error = run_install_cell_in_colab(NOTEBOOKS[0], "", tmp_path)
    assert "REPO is empty: set it in the first cell" in error
    assert not (tmp_path / "lcm-jax").exists()


def test_install_cell_in_colab_offline_says_the_clone_failed_and_why(tmp_path):
    # nothing listens on the discard port: the clone fails as on a runtime without internet
    error = run_install_cell_in_colab(NOTEBOOKS[0], "http://127.0.0.1:9/lcm-jax.git", tmp_path)
    assert "git clone http://127.0.0.1:9/lcm-jax.git failed: is REPO right, is this" in error
    assert "(exit 128)" in error


def fake_dists(path: Path, **versions: str) -> Path:
    for name, version in versions.items():
        info = path / f"{name}-{version}.dist-info"
        info.mkdir(parents=True)
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    return path


def test_install_on_a_runtime_with_an_old_tensorflow_names_the_minimum_and_the_upgrade(tmp_path):
    # TensorFlow 2.15 and JAX 0.5.3 with its CUDA plugin, found before this venv's own
    fakes = fake_dists(tmp_path, tensorflow="2.15.0", jax="0.5.3", jax_cuda12_plugin="0.5.3")
    result = subprocess.run(
        [sys.executable, str(ROOT / "colab" / "install.py"), str(ROOT)],
        env={"PYTHONPATH": str(fakes), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2, result.stderr
    lines = result.stderr.splitlines()
    assert lines == [
        "lcm-jax needs TensorFlow>=2.18, this runtime has tensorflow 2.15.0: upgrade it with"
        ' `pip install -U "tensorflow>=2.18"`, restart the runtime (Colab: Runtime > Restart'
        " session) and run the install again",
        "lcm-jax needs jax>=0.7, this runtime has jax 0.5.3: upgrade it with"
        ' `pip install -U "jax[cuda12]>=0.7"`, restart the runtime (Colab: Runtime > Restart'
        " session) and run the install again",
    ]


def test_install_keeps_what_is_installed_and_keeps_tfds_metadata_on_protobuf_5():
    install = load("install")
    colab = {"tensorflow": "2.19.0", "protobuf": "5.29.6", "jax": "0.7.2", "absl-py": "1.4.0"}
    colab |= {"jax-cuda12-plugin": "0.7.2", "jax-cuda12-pjrt": "0.7.2", "libtpu": "0.0.17"}
    assert install.constraints(colab) == [
        "jax==0.7.2",
        "jax-cuda12-pjrt==0.7.2",
        "jax-cuda12-plugin==0.7.2",
        "libtpu==0.0.17",
        "protobuf==5.29.6",
        "tensorflow==2.19.0",
        "tensorflow-metadata<1.21",
    ]
    assert install.constraints({"protobuf": "7.36.2"}) == ["protobuf==7.36.2"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_on_tiny_settings(path, tmp_path, monkeypatch):
    # The kernel on one CPU device, as a Colab CPU runtime (not the tests' eight: conftest.py)
    monkeypatch.setenv("XLA_FLAGS", "--xla_backend_optimization_level=0")
    nb = nbformat.read(path, as_version=4)
    at = next(i for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", []))
    nb.cells.insert(at + 1, nbformat.v4.new_code_cell(overrides(path.stem, tmp_path)))
    client = nbclient.NotebookClient(
        nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(ROOT)}}
    )
    client.execute()  # raises CellExecutionError with the failing cell's traceback
    said = "".join(o.get("text", "") for o in nb.cells[cell(nb, "install")].outputs)
    assert "JAX runs on the CPU" in said  # no GPU or TPU in the tests
