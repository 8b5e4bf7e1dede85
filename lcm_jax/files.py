"""Files written whole or not at all, with the permissions of the user's umask.

    write_text(path, "a,b\\n")                   # or write_bytes(path, data)
    with atomic_path(path) as tmp:               # for writers that want a path (PIL, ffmpeg)
        image.save(tmp, format="PNG")
    with atomic_dir(path) as tmp:                # a directory the block creates (Orbax)
        checkpointer.save(tmp, variables)
    remove_temporaries(folder)                   # what a killed run (SIGKILL) left behind

Each output is first written to a temporary sibling named `.<stem>.<8 hex>.tmp<suffix>` (the
suffix kept, so that writers that read the format off the name still work) and renamed into
place once complete; on any exception (KeyboardInterrupt and the SystemExit of a SIGTERM
handler included) the temporary is removed. Temporary files are created with mode 0o666 and
the kernel applies the umask, so an output is 0644 under umask 022, as `open()` makes it
(`tempfile.mkstemp` would make it 0600 whatever the umask).

No TensorFlow, no JAX: the data generators, the inference outputs and the checkpoints use it.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path

_TEMPORARY = re.compile(r"^\..+\.[0-9a-f]{8}\.tmp(\.[^.]+)?$")


def _temporary_name(path: Path) -> Path:
    return path.with_name(f".{path.stem}.{secrets.token_hex(4)}.tmp{path.suffix}")


def is_temporary(path: str | os.PathLike) -> bool:
    """Whether `path` is named as this module names its temporaries."""
    return _TEMPORARY.match(Path(path).name) is not None


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yields an empty temporary file next to `path` (parents created) to write; renames it to
    `path` when the block ends without an exception, removes it otherwise."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    while True:
        tmp = _temporary_name(path)
        try:
            os.close(os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))
            break
        except FileExistsError:
            continue
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Yields a path for the block to create a directory at (e.g. by Orbax's save), inside a new
    temporary directory next to `path` (which must not exist); moves it to `path` when the block
    ends without an exception. The temporary directory (with whatever a writer put beside its
    output, as Orbax's own temporaries) is removed either way."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    holder = _temporary_name(path)
    holder.mkdir(0o777)
    try:
        yield holder / path.name
        (holder / path.name).rename(path)
    finally:
        shutil.rmtree(holder, ignore_errors=True)


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Writes `data` to `path` atomically (parents created)."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_text(path: str | os.PathLike, text: str) -> None:
    """Writes `text` (UTF-8) to `path` atomically (parents created)."""
    write_bytes(path, text.encode())


def remove_temporaries(folder: str | os.PathLike, name: str | None = None) -> list[Path]:
    """Removes the temporaries under `folder` (recursively), or only those of the output
    `folder/name` when `name` is given: what a run killed with SIGKILL left behind. Call it
    when no other process writes there. Returns what was removed."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    if name is None:
        found = [p for p in folder.rglob(".*") if is_temporary(p)]
    else:
        stem, suffix = os.path.splitext(name)
        found = [p for p in folder.glob(f".{stem}.*.tmp{suffix}") if is_temporary(p)]
    for path in found:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
    return found
