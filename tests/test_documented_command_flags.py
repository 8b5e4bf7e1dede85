"""Every shell command that a docstring of the package, the configs or the benchmarks shows is
accepted, as written, by the parser of the command it starts (argparse, or absl and
ml_collections for `lcm_jax.main`, whose config strings and `--config.<field>` overrides are
resolved against the config): a renamed flag or config field fails here.

Most of these commands are too big to run in a test (the paper's training stages, the
benchmarks at full size, real datasets); those that can run, run elsewhere, as written:
segment, evaluate, convert and export in tests/test_documented_commands.py, configs/lcm.py's
quick local run in tests/test_train.py. Here a synopsis's optional parts (`[--steps 400]`,
`[--resolution 480p|full_resolution]`) are parsed both left out and given (each alternative),
and a trailing `...` ("and the other flags") is left out."""

import argparse
import ast
import importlib
import itertools
import os
import re
import shlex
from pathlib import Path

import pytest

from lcm_jax import distributed

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = ("lcm_jax", "input_pipeline", "configs", "benchmarks")
# A command: optional VAR=value assignments, then `python -m module` or `python path.py`, with
# its continuation lines (ending in a backslash); at the start of a docstring line.
COMMAND = re.compile(
    r"^ *((?:[A-Z_]+=\S+ +(?:\\\n *)?)*python (?:-m [\w.]+|[\w/]+\.py)(?:[^\n]*\\\n)*[^\n]*)$",
    re.M,
)


def docstrings(path: Path) -> list[str]:
    tree = ast.parse(path.read_text())
    nodes = [tree] + [n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef | ast.ClassDef)]
    return [d for d in (ast.get_docstring(n, clean=True) for n in nodes) if d]


def documented_commands() -> list[tuple[str, str]]:
    """(file, command) of every command of every docstring, continuation lines joined and the
    trailing comment left out."""
    found = []
    for folder in FOLDERS:
        for path in sorted((ROOT / folder).rglob("*.py")):
            if any(p.is_symlink() for p in path.relative_to(ROOT).parents if p != Path(".")):
                continue
            for doc in docstrings(path):
                for command in COMMAND.findall(doc):
                    command = re.sub(r"\\\n\s*", "", command)
                    command = re.sub(r"\s+#.*$", "", command).strip()
                    found.append((str(path.relative_to(ROOT)), command))
    return found


def variants(words: list[str]) -> list[list[str]]:
    """The argvs a synopsis stands for: each `[...]` part left out or given (each `a|b`
    alternative of a value in it), a trailing `...` left out."""
    words = [w.replace("...", "") for w in words]
    words = [w for w in words if w]
    parts, i = [], 0  # fixed words, and the choices of each optional group
    while i < len(words):
        if words[i].startswith("["):
            j = next(k for k in range(i, len(words)) if words[k].endswith("]"))
            group = " ".join(words[i : j + 1])[1:-1].split()
            choices = [[]] + [
                [w.split("|")[a] if "|" in w else w for w in group]
                for a in range(max(len(w.split("|")) for w in group))
            ]
            parts.append(choices)
            i = j + 1
        else:
            parts.append([[words[i]]])
            i += 1
    return [sum(choice, []) for choice in itertools.product(*parts)]


class Parsed(Exception):
    pass


def argparse_accepts(module_name: str, argv: list[str], monkeypatch) -> argparse.Namespace:
    """The namespace the module's `main` gets from argparse for `argv` (main stops there)."""
    original = argparse.ArgumentParser.parse_args

    def parse_then_stop(self, args=None, namespace=None):
        raise Parsed(original(self, args, namespace))

    with monkeypatch.context() as m, pytest.raises(Parsed) as parsed:
        m.setattr(argparse.ArgumentParser, "parse_args", parse_then_stop)
        importlib.import_module(module_name).main(argv)
    return parsed.value.args[0]


def absl_accepts(argv: list[str], monkeypatch) -> dict:
    """The config `lcm_jax.main` reads from `argv` (its flags parsed as `main` does)."""
    from absl import flags

    from lcm_jax import main

    # ml_collections finds the --config.<field> overrides in sys.argv, not in the parsed list
    with monkeypatch.context() as m:
        m.setattr("sys.argv", ["lcm_jax.main", *argv])
        try:
            main.parse_flags(["lcm_jax.main", *argv])  # exits with status 2 on a bad flag
            return main._CONFIG.value.to_dict()
        finally:  # as before: the overrides' flags are defined anew by the next parse
            flags.FLAGS.unparse_flags()
            for name in [n for n in flags.FLAGS if n.startswith("config.")]:
                delattr(flags.FLAGS, name)


def target(command_words: list[str]) -> str:
    """The module a command runs: `python -m x.y` or `python x/y.py`."""
    if command_words[1] == "-m":
        return command_words[2]
    return command_words[1].removesuffix(".py").replace("/", ".")


def test_every_documented_command_parses(monkeypatch, tmp_path):
    monkeypatch.chdir(ROOT)  # the commands' config paths are relative to the repository
    monkeypatch.setenv("W", str(tmp_path))
    commands = documented_commands()
    assert len(commands) >= 40, commands
    seen = set()
    for where, command in commands:
        words = shlex.split(os.path.expandvars(command))
        env = {}
        while "=" in words[0]:
            name, value = words.pop(0).split("=", 1)
            env[name] = value
        module = target(words)
        seen.add(module)
        rest = words[3:] if words[1] == "-m" else words[2:]
        for argv in variants(rest):
            what = (where, command, argv)
            if module == "lcm_jax.main":
                config = absl_accepts(argv, monkeypatch)
                assert config["stage"] in ("pretrain", "main", "sequence"), what
            else:
                argparse_accepts(module, argv, monkeypatch)
        if env:  # a multi-process run's settings, from the environment
            with monkeypatch.context() as m:
                for name, value in env.items():
                    m.setenv(name, value)
                assert distributed.settings() == {
                    "coordinator_address": env["JAX_COORDINATOR_ADDRESS"],
                    "num_processes": int(env["JAX_NUM_PROCESSES"]),
                    "process_id": int(env["JAX_PROCESS_ID"]),
                }, what
    # every command-line entry point that docstrings show is among those parsed
    assert {"lcm_jax.main", "lcm_jax.demo", "lcm_jax.input_pipeline.prepare",
            "lcm_jax.input_pipeline.synthetic", "benchmarks.ablation",
            "benchmarks.memory_plan", "benchmarks.speed"} <= seen  # fmt: skip
