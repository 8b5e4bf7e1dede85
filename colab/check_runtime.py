"""`make colab-check`: the notebooks' install cells in a copy of a Colab runtime.

Builds a fresh virtualenv holding colab/runtime-constraints.txt (what Colab ships), then:
1. runs each notebook's install cell (the cell tagged `install`) exactly as written, in a kernel
   of that virtualenv where `google.colab` is importable as in Colab and REPO is this checkout,
   each in a fresh folder as Colab's /content;
2. `pip check`, imports TensorFlow, tensorflow-datasets and JAX, and compares every listed
   version before and after: a listed package may only change where the list says
   `# changed: REASON`, and TensorFlow, Keras, protobuf, numpy, ml_dtypes, JAX, jaxlib, their
   plugins and torch never;
3. runs the README's `python colab/install.py .` there, and 01_quickstart top to bottom on tiny
   settings;
4. resolves the README's `pip install -e '.[...]'` lines with pip's dry run in a bare virtualenv
   (no GPU or TPU here to install them for; pip downloads the wheels to resolve them).
Writes colab/COMPATIBILITY.md; exits 1 if a step failed. The clone of REPO is a local one (no
GitHub here), of the checkout's HEAD commit.
"""

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
import tomllib
import venv
from datetime import UTC, datetime
from pathlib import Path

COLAB = Path(__file__).resolve().parent
ROOT = COLAB.parent
LIST = COLAB / "runtime-constraints.txt"
REPORT = COLAB / "COMPATIBILITY.md"
# Stands in for Colab's own module: `google.colab` and its `output`, which JAX imports when it sees
# `google.colab` in sys.modules.
IN_COLAB = """import sys, types
colab = types.ModuleType("google.colab")
colab.output = types.ModuleType("google.colab.output")
sys.modules.update({"google.colab": colab, "google.colab.output": colab.output})
"""
# The lines that colab/install.py and the install cell print, among pip's, TensorFlow's and JAX's.
OURS = re.compile(
    r"^(keeping this runtime's|installed lcm-jax|JAX runs on|lcm-jax needs|pip could)"
)
TINY = {"01_quickstart": "STEPS = 2\n"}
IMPORTS = (
    "import jax, tensorflow as tf, tensorflow_datasets as tfds; "
    "print(f'tensorflow {tf.__version__}, tensorflow-datasets {tfds.__version__}, "
    "jax {jax.__version__} (JAX backend: {jax.default_backend()})')"
)


def sh(command, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(command, capture_output=True, text=True, **kwargs)


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pinned() -> dict[str, tuple[str, str]]:
    """canonical name -> (version, reason it may change or "") from the runtime list."""
    pins = {}
    for line in LIST.read_text().splitlines():
        if match := re.match(r"^([A-Za-z0-9_.-]+)==(\S+)\s*(?:#\s*changed:\s*(.*))?$", line):
            name, version, reason = match.groups()
            pins[canonical(name)] = (version, reason or "")
    return pins


def versions(python: Path) -> dict[str, str]:
    listing = sh([str(python), "-m", "pip", "list", "--format=json"], check=True).stdout
    return {canonical(p["name"]): p["version"] for p in json.loads(listing)}


def run_notebook(python: Path, notebook: Path, cwd: Path, repo: str, whole: bool) -> str:
    """In the runtime: the install cell alone, or the whole notebook on tiny settings.

    Returns what the install cell printed; raises RuntimeError with the error's last line.
    """
    override = f"REPO = {repo!r}\nWORKDIR = {str(cwd / 'work')!r}\n" + TINY.get(notebook.stem, "")
    script = f"""
import nbclient, nbformat
nb = nbformat.read({str(notebook)!r}, as_version=4)
at = next(i for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", []))
cells = [nbformat.v4.new_code_cell(s) for s in ({IN_COLAB!r}, {override!r})]
cells.insert(1, nb.cells[at])
nb.cells = cells + (nb.cells[at + 1 :] if {whole} else [nb.cells[at + 1]])
client = nbclient.NotebookClient(
    nb, timeout=1200, kernel_name="python3", resources={{"metadata": {{"path": {str(cwd)!r}}}}}
)
client.execute()
install = next(c for c in nb.cells if "install" in c.metadata.get("tags", []))
print("".join(o.get("text", "") for o in install.outputs), end="")
"""
    result = sh([str(python), "-c", script])
    if result.returncode:
        last = (result.stderr.strip().splitlines() or ["no output"])[-1]
        raise RuntimeError(re.sub(r"\x1b\[[0-9;]*m", "", last))  # without IPython's colours
    return result.stdout


EXPECTED = {  # what each README extra must bring, besides lcm-jax's other requirements
    "cpu": {"tensorflow-cpu"},
    "cuda12": {"tensorflow-cpu", "jax-cuda12-plugin"},
    "tpu": {"tensorflow-cpu", "libtpu"},
}


def resolve_readme_installs(bare: Path) -> list[tuple[str, str, bool]]:
    """Each `pip install` line of the README's Installing section, as pip's dry run.

    PIP_DRY_RUN would also reach the pip that fills an isolated build environment, so the bare
    virtualenv gets the build requirements first and pip builds without isolation.
    """
    readme = (ROOT / "README.md").read_text()
    section = readme.split("\n## Installing\n", 1)[1].split("\n## ", 1)[0]
    lines = [line.split("  #")[0].strip() for line in section.splitlines()]
    venv.create(bare, with_pip=True, clear=True)
    build = tomllib.loads((ROOT / "pyproject.toml").read_text())["build-system"]["requires"]
    pip = [str(bare / "bin" / "python"), "-m", "pip", "install", "-q", *build, "wheel"]
    sh(pip, check=True)
    env = dict(os.environ, PATH=f"{bare / 'bin'}:{os.environ['PATH']}", PIP_DRY_RUN="1")
    env["PIP_NO_BUILD_ISOLATION"] = "0"
    results = []
    for command in [line for line in lines if line.startswith("pip install")]:
        result = sh(["bash", "-c", command], cwd=ROOT, env=env)
        would = [line for line in result.stdout.splitlines() if line.startswith("Would install")]
        names = {canonical(re.sub(r"-\d[^-]*$", "", w)) for w in " ".join(would).split()[2:]}
        extra = re.search(r"\[(\w+)\]", command).group(1)
        cuda = sorted(n for n in names if n.startswith("nvidia-"))
        ok = result.returncode == 0 and EXPECTED[extra] <= names and "tensorflow" not in names
        ok = ok and (extra == "cuda12" or not cuda)
        shown = sorted(n for n in names if re.match(r"(tensorflow|jax|libtpu)", n))
        shown += [f"{len(cuda)} nvidia-* CUDA wheels"] if cuda else []
        failure = (result.stderr.strip().splitlines() or ["no output"])[-1]
        results.append((command, ", ".join(shown) if result.returncode == 0 else failure, ok))
    return results


def kept(python: Path, names) -> set[str]:
    """The names that colab/install.py keeps (computed in the runtime, which has packaging)."""
    script = f"import sys; sys.path.insert(0, {str(COLAB)!r}); import install; "
    script += f"print(*[n for n in {sorted(names)!r} if install.is_kept(n)])"
    return set(sh([str(python), "-c", script], check=True).stdout.split())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", type=Path, default=Path("/tmp/lcm-jax-colab-check"))
    work = parser.parse_args().dir
    steps: list[tuple[str, bool, str]] = []  # (step, passed, detail)
    facts: dict = {}  # what the report shows besides the steps

    def step(name: str, passed: bool, detail: str = "") -> None:
        steps.append((name, passed, detail))
        print(f"[{'PASS' if passed else 'FAIL'}] {name}" + (f": {detail}" if detail else ""))

    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    runtime, python = work / "runtime", work / "runtime" / "bin" / "python"
    pins = pinned()
    print(f"building the Colab runtime in {runtime} from {LIST.relative_to(ROOT)}")
    venv.create(runtime, with_pip=True)
    build = sh([str(python), "-m", "pip", "install", "-q", f"pip=={pins['pip'][0]}"])
    if build.returncode == 0:
        build = sh([str(python), "-m", "pip", "install", "-q", "-r", str(LIST)])
    failure = (build.stderr.strip().splitlines() or [""])[-1] if build.returncode else ""
    step("runtime built from the list", build.returncode == 0, failure)
    if build.returncode:
        return write_report(steps, facts)
    before = versions(python)
    check_before = sh([str(python), "-m", "pip", "check"]).stdout.strip()

    commit = sh(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, check=True).stdout.strip()
    status = ["git", "status", "--porcelain", "--", ".", f":!{REPORT.relative_to(ROOT)}"]
    dirty = bool(sh(status, cwd=ROOT).stdout.strip())
    if dirty:
        print(f"note: the notebooks clone HEAD ({commit}); uncommitted changes are not checked")
    facts.update(commit=commit, dirty=dirty, pip_check_before=check_before)
    outputs = []
    for notebook in sorted(COLAB.glob("*.ipynb")):
        content = work / notebook.stem
        content.mkdir()
        start = time.monotonic()
        try:
            said = run_notebook(python, notebook, content, str(ROOT), whole=False)
            step(f"{notebook.stem}: install cell", True, f"{time.monotonic() - start:.0f} s")
        except RuntimeError as error:
            said = str(error)
            step(f"{notebook.stem}: install cell", False, said)
        outputs.append((notebook.stem, "\n".join(filter(OURS.match, said.splitlines()))))

    checked = sh([str(python), "-m", "pip", "check"])
    step("pip check", checked.returncode == 0, checked.stdout.strip().splitlines()[-1])
    imported = sh([str(python), "-c", IMPORTS], env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
    imports = imported.stdout.strip() or imported.stderr.strip().splitlines()[-1]
    after = versions(python)
    protected = kept(python, pins)
    problems = []
    for name, (version, reason) in pins.items():
        now = after.get(name)
        if now != version and (name in protected or not reason):
            problems.append(f"{name} {version} -> {now}")
    expected = [f"{m} {pins[m][0]}" for m in ("tensorflow", "tensorflow-datasets", "jax")]
    got = re.findall(r"(tensorflow|tensorflow-datasets|jax) (\S+?),? ", imports + " ")
    same = imported.returncode == 0 and [" ".join(g) for g in got] == expected
    step("TensorFlow, tensorflow-datasets and JAX import, versions as listed", same, imports)
    step("listed versions unchanged but where the list says why", not problems, "; ".join(problems))

    clone = work / "01_quickstart" / "lcm-jax"
    env = dict(os.environ, PATH=f"{python.parent}:{os.environ['PATH']}")
    readme = sh(["bash", "-c", "python colab/install.py ."], cwd=clone, env=env)
    said = [line for line in (readme.stdout + readme.stderr).splitlines() if OURS.match(line)]
    step(
        "README: `python colab/install.py .` in the runtime",
        readme.returncode == 0,
        (said or ["?"])[-1],
    )
    start = time.monotonic()
    content = work / "quickstart"
    content.mkdir()
    try:
        run_notebook(python, COLAB / "01_quickstart.ipynb", content, str(ROOT), whole=True)
        step("01_quickstart on tiny settings", True, f"{time.monotonic() - start:.0f} s")
    except RuntimeError as error:
        step("01_quickstart on tiny settings", False, str(error))

    resolved = resolve_readme_installs(work / "bare")
    for command, detail, ok in resolved:
        step(f"README: `{command}` resolves (dry run)", ok, detail)
    facts.update(before=before, after=after, pins=pins, kept=protected, outputs=outputs)
    facts.update(pip_check_after=checked.stdout.strip(), imports=imports, resolved=resolved)
    return write_report(steps, facts)


def write_report(steps: list[tuple[str, bool, str]], facts: dict) -> int:
    passed = all(ok for _, ok, _ in steps)
    mirrors = re.search(r"^# Mirrors: (.*?)\n#\n", LIST.read_text(), re.S | re.M).group(1)
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M")
    commit = facts.get("commit", "?") + (
        " (uncommitted changes not in the clone)" * facts.get("dirty", False)
    )
    out = [
        "# Colab compatibility",
        "",
        "The last output of `make colab-check` (colab/check_runtime.py), which writes this file.",
        "",
        f"**{'PASS' if passed else 'FAIL'}**: {when} UTC, commit {commit},"
        f" Python {sys.version.split()[0]}.",
        "",
        "The runtime is `colab/runtime-constraints.txt`, which mirrors "
        + re.sub(r"\s*\n# ?", " ", mirrors),
        "",
        "Not exercised: the clone from GitHub (REPO was this checkout's path, as GitHub is"
        " unreachable from the check's machine; `git clone` of it ran), a GPU or TPU (none"
        " there: JAX ran on the CPU, beside the CUDA plugin it could not load), Colab's Python"
        " 3.12 (see the list's header).",
        "",
        "## Steps",
        "",
        "| step | result | detail |",
        "| --- | --- | --- |",
    ]
    out += [
        f"| {name} | {'pass' if ok else '**FAIL**'} | {d.replace('|', '/')} |"
        for name, ok, d in steps
    ]
    if "after" in facts:
        before, after, pins, kept = facts["before"], facts["after"], facts["pins"], facts["kept"]
        out += ["", "## Versions before and after the install cells", ""]
        out += ["| package | Colab (the list) | after | |", "| --- | --- | --- | --- |"]
        same = 0
        for name, (version, reason) in sorted(pins.items()):
            now = after.get(name, "(removed)")
            if name in kept or now != version:
                note = "kept by colab/install.py" if name in kept else f"changed: {reason}"
                out.append(f"| {name} | {version} | {now} | {note} |")
            else:
                same += 1
        out += ["", f"The other {same} listed packages are unchanged. Added by the install: "]
        added = [f"{n} {v}" for n, v in sorted(after.items()) if n not in before]
        out[-1] += ", ".join(added) + "."
        moved = [
            f"{n} {before[n]} -> {v}"
            for n, v in sorted(after.items())
            if n in before and n not in pins and before[n] != v
        ]
        out += ["", "Unlisted packages changed: " + (", ".join(moved) or "none") + "."]
        out += ["", "## pip check", "", "```", "before: " + facts["pip_check_before"]]
        out += ["after: " + facts["pip_check_after"], "```", "", "## Imports after the install"]
        out += ["", "```", facts["imports"], "```", "", "## What the install cells printed", ""]
        out += [
            "Their own lines; besides them, each showed JAX's error for the CUDA plugin that"
            " cannot load without CUDA (`Unable to load CUDA. Is it installed?`), TensorFlow's"
            " `Could not find cuda drivers` and pip's notes on this machine's package mirrors.",
            "",
        ]
        for name, said in facts["outputs"]:
            out += [f"{name}:", "", "```", said, "```", ""]
        out += ["## README installs, resolved by pip's dry run in a bare virtualenv", ""]
        out += ["| command | would install (TensorFlow, JAX, plugins) | |", "| --- | --- | --- |"]
        out += [
            f"| `{c}` | {d} | {'pass' if ok else '**FAIL**'} |" for c, d, ok in facts["resolved"]
        ]
    REPORT.write_text("\n".join(out).rstrip() + "\n")
    print(
        f"{'PASS' if passed else 'FAIL'}: {sum(ok for _, ok, _ in steps)}/{len(steps)} steps;"
        f" report in {REPORT.relative_to(ROOT)}"
    )
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
