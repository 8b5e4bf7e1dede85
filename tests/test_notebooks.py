"""Every Colab notebook runs top to bottom on tiny settings (nbclient, the repo as cwd).

As papermill does, the test inserts a cell after the notebook's `parameters` cell that overrides
the parameters; the notebook's own asserts are the checks.
"""

from pathlib import Path

import nbclient
import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "colab").glob("*.ipynb"))


def overrides(name: str, tmp_path: Path) -> str:
    common = f'WORKDIR = "{tmp_path}"\n'
    return common + {
        "01_quickstart": "STEPS = 2\n",
        "02_train": "STEPS = 2\nCROP = 64\nSHOW_TENSORBOARD = False\n",
        "03_compare_pytorch": 'MODEL = "tiny"\nHEIGHT, WIDTH = 32, 48\n',
        "04_benchmarks_data": 'MODEL = "tiny"\n',
    }.get(name, "")


def test_every_notebook_has_a_parameters_cell_and_no_saved_outputs():
    assert NOTEBOOKS, "no notebooks in colab/"
    for path in NOTEBOOKS:
        nb = nbformat.read(path, as_version=4)
        tags = [c.metadata.get("tags", []) for c in nb.cells]
        assert sum("parameters" in t for t in tags) == 1, path.name
        assert not any(c.get("outputs") for c in nb.cells if c.cell_type == "code"), path.name


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_on_tiny_settings(path, tmp_path):
    nb = nbformat.read(path, as_version=4)
    at = next(i for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", []))
    nb.cells.insert(at + 1, nbformat.v4.new_code_cell(overrides(path.stem, tmp_path)))
    client = nbclient.NotebookClient(
        nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(ROOT)}}
    )
    client.execute()  # raises CellExecutionError with the failing cell's traceback
