"""Install lcm-jax where TensorFlow and JAX are installed already (Colab), keeping them.

    python colab/install.py PROJECT_DIR [EXTRA ...]

The notebooks' install cell runs it after cloning the repository. pip gets the installed
TensorFlow, Keras, protobuf, numpy, ml_dtypes, JAX, jaxlib, JAX's accelerator plugins and torch
as constraints (`name==installed version`): it adds lcm-jax's other requirements around them and
never swaps one for another build (tensorflow-cpu written over tensorflow breaks both; a new
jaxlib without its plugin leaves JAX on the CPU). Where no TensorFlow is installed (Colab's TPU
runtime), the `cpu` extra brings tensorflow-cpu. The `notebooks` extra is always added.

Exit codes: 2 when an installed package is older than lcm-jax needs (the message names the
minimum and how to upgrade), pip's own code when pip fails.
"""

import importlib.metadata
import re
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.version import Version

TENSORFLOW = ("tensorflow", "tensorflow-cpu", "tensorflow-tpu", "tensorflow-gpu", "tf-nightly")
KEPT = TENSORFLOW + ("keras", "protobuf", "numpy", "ml-dtypes", "jax", "jaxlib", "torch")
PLUGIN = re.compile(r"^(jax-cuda\d+-(plugin|pjrt)|jax-rocm\d+-(plugin|pjrt)|libtpu(-nightly)?)$")
# tensorflow-metadata 1.21 was generated with protobuf 6.31 and fails to import on an older
# protobuf runtime, but declares only protobuf>=4.25.2.
TFMD_PROTOBUF = (Version("6.31"), "tensorflow-metadata<1.21")


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def installed_versions() -> dict[str, str]:
    """Name -> version of what is installed, the first on sys.path as `import` would find it."""
    versions = {}
    for dist in importlib.metadata.distributions():
        if dist.metadata["Name"]:
            versions.setdefault(canonical(dist.metadata["Name"]), dist.version)
    return versions


def is_kept(name: str) -> bool:
    return name in KEPT or bool(PLUGIN.match(name))


def jax_upgrade(installed: dict[str, str]) -> str:
    """The `jax[...]` that upgrades JAX together with the plugin that is installed."""
    if any(name.startswith("libtpu") for name in installed):
        return "jax[tpu]"
    cuda = sorted(n for n in installed if re.match(r"^jax-cuda\d+-plugin$", n))
    return f"jax[{cuda[0].split('-')[1]}]" if cuda else "jax"


def too_old(project: dict, extras: list[str], installed: dict[str, str]) -> list[str]:
    """One line for each kept package whose installed version lcm-jax's requirements exclude."""
    optional = project["optional-dependencies"]
    requirements = [Requirement(r) for r in project["dependencies"]]
    requirements += [Requirement(r) for extra in extras for r in optional[extra]]
    (tf_cpu,) = [r for r in map(Requirement, optional["cpu"]) if r.name == "tensorflow-cpu"]
    problems = []
    for name in TENSORFLOW:  # whichever TensorFlow build is installed, the `cpu` extra's minimum
        if name in installed and not tf_cpu.specifier.contains(installed[name], prereleases=True):
            upgrade = f'"{name}{tf_cpu.specifier}"'
            problems.append(message(f"TensorFlow{tf_cpu.specifier}", name, installed, upgrade))
    for req in requirements:
        name = canonical(req.name)
        if is_kept(name) and name in installed:
            if not req.specifier.contains(installed[name], prereleases=True):
                package = jax_upgrade(installed) if name in ("jax", "jaxlib") else name
                upgrade = f'"{package}{req.specifier}"'
                problems.append(message(f"{name}{req.specifier}", name, installed, upgrade))
    return problems


def message(needed: str, name: str, installed: dict[str, str], upgrade: str) -> str:
    return (
        f"lcm-jax needs {needed}, this runtime has {name} {installed[name]}: upgrade it with"
        f" `pip install -U {upgrade}`, restart the runtime (Colab: Runtime > Restart session)"
        " and run the install again"
    )


def constraints(installed: dict[str, str]) -> list[str]:
    pins = [f"{name}=={version}" for name, version in sorted(installed.items()) if is_kept(name)]
    if "protobuf" in installed and Version(installed["protobuf"]) < TFMD_PROTOBUF[0]:
        pins.append(TFMD_PROTOBUF[1])
    return pins


def main(argv: list[str]) -> int:
    if len(argv) < 1:
        print("usage: python colab/install.py PROJECT_DIR [EXTRA ...]", file=sys.stderr)
        return 2
    project_dir, extras = Path(argv[0]), ["notebooks", *argv[1:]]
    project = tomllib.loads((project_dir / "pyproject.toml").read_text())["project"]
    installed = installed_versions()
    problems = too_old(project, extras, installed)
    if problems:
        print(*problems, sep="\n", file=sys.stderr)
        return 2
    if not any(name in installed for name in TENSORFLOW):
        extras.append("cpu")
    pins = constraints(installed)
    kept = [pin for pin in pins if "==" in pin]
    print("keeping this runtime's", ", ".join(kept) or "(none installed)")
    with tempfile.NamedTemporaryFile("w", suffix=".txt", prefix="lcm-jax-kept-") as file:
        file.write("\n".join(pins) + "\n")
        file.flush()
        target = f"{project_dir.resolve()}[{','.join(extras)}]"
        command = [sys.executable, "-m", "pip", "install", "-q", "-c", file.name, "-e", target]
        code = subprocess.run(command).returncode
    if code:
        print(
            f"pip could not install lcm-jax around the packages kept above (exit {code}): see"
            " pip's message above; connection errors there mean this runtime is offline",
            file=sys.stderr,
        )
        return code
    print(f"installed lcm-jax[{','.join(extras)}] from {project_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
