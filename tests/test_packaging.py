"""The installed package puts only its own name into site-packages.

`configs/` and `input_pipeline/` stay top-level folders of the repository (the layout users
read), but they are installed as `lcm_jax.configs` and `lcm_jax.input_pipeline` (symlinks in
`lcm_jax/`), so that no other project's `configs` or `input_pipeline` is shadowed.
"""

import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
IGNORED = shutil.ignore_patterns(
    ".git",
    ".venv",
    "build",
    "*.egg-info",
    "__pycache__",
    ".pytest_cache",
    ".ruff_cache",
    "demo_out",
)


def test_the_wheel_installs_only_the_lcm_jax_name_with_configs_and_input_pipeline_inside(
    tmp_path,
):
    source = tmp_path / "src"
    shutil.copytree(REPO, source, symlinks=True, ignore=IGNORED)
    wheels = tmp_path / "wheels"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation"]
        + ["-w", str(wheels), str(source)],
        check=True,
    )
    (wheel,) = wheels.glob("lcm_jax-*.whl")

    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    python = env_dir / "bin" / "python"
    site = Path(
        subprocess.run(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
    )
    before = set(os.listdir(site))
    subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel)],
        check=True,
    )
    added = set(os.listdir(site)) - before
    assert {name for name in added if not name.endswith(".dist-info")} == {"lcm_jax"}
    package = site / "lcm_jax"
    for module in ("configs/lcm.py", "configs/model.py", "input_pipeline/pipeline.py"):
        assert (package / module).is_file(), module  # real files, not links, in the wheel
        assert not (package / module).is_symlink()
