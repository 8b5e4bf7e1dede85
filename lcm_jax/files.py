"""Files written whole or not at all, with the permissions of the user's umask.

    write_text(csv_path, "a,b\\n")               # or write_bytes(csv_path, data)
    with atomic_path(png_path) as tmp:           # for writers that want a path (PIL, ffmpeg)
        image.save(tmp, format="PNG")
    with atomic_dir(checkpoint_dir) as tmp:      # a directory the block creates (Orbax)
        checkpointer.save(tmp, variables)
    remove_temporaries(folder)                   # what a killed run (SIGKILL) left behind
    check_writable(csv_path)                     # before the work: the error writing would give
    describe(error)                              # an OSError as "PATH: reason", for error lines

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
import errno
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


def _os_error(code: int, path: str | os.PathLike) -> OSError:
    """The OSError (its subclass for `code`) that the system raises for `path`."""
    return OSError(code, os.strerror(code), os.fspath(path))


def _make_parents(path: Path) -> None:
    """Creates the folders above `path`; NotADirectoryError naming `path` when one of them is a
    file (mkdir would say "File exists" of that file)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except FileExistsError as e:
        raise _os_error(errno.ENOTDIR, path) from e


def check_writable(path: str | os.PathLike, folder: bool = False) -> None:
    """Raises the OSError that writing the output `path` (a file, or a folder when `folder`)
    would raise, so that a command fails before its work: NotADirectoryError when a folder above
    `path` (or the folder `path`) is a file, IsADirectoryError when the file `path` is a folder,
    PermissionError when the folder it is created in (or the folder `path`) is not writable.
    Reads only."""
    path = Path(path)
    if path.is_dir():
        if not folder:
            raise _os_error(errno.EISDIR, path)
        where = path
    elif path.exists():  # a file
        if folder:
            raise _os_error(errno.ENOTDIR, path)
        where = path.absolute().parent
    else:
        where = next(p for p in path.absolute().parents if p.exists())  # "/" at least
        if not where.is_dir():
            raise _os_error(errno.ENOTDIR, path)
    if not os.access(where, os.W_OK | os.X_OK):
        raise _os_error(errno.EACCES, path)


def describe(error: OSError) -> str:
    """An OSError as one line "PATH: reason" ("out/sub: Not a directory (out is a file)"); its
    message when it names no path (this codebase's own, e.g. "no checkpoint at PATH")."""
    if error.filename is None or not error.strerror:
        return str(error)
    where = os.fsdecode(error.filename)
    if error.filename2 is not None:
        where += f" -> {os.fsdecode(error.filename2)}"
    reason = error.strerror
    if error.errno == errno.ENOTDIR:
        above = _file_above(Path(os.fsdecode(error.filename)))
        reason += f" ({above} is a file)" if above else ""
    return f"{where}: {reason}"


def _file_above(path: Path) -> Path | None:
    """The first existing path above `path` when it is a file, else None."""
    try:
        above = next((p for p in path.parents if p.exists()), None)
        return above if above is not None and not above.is_dir() else None
    except OSError:
        return None


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yields an empty temporary file next to `path` (parents created) to write; renames it to
    `path` when the block ends without an exception, removes it otherwise."""
    path = Path(path)
    _make_parents(path)
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
    """Yields an absolute path (Orbax takes no other) for the block to create a directory at (e.g.
    by Orbax's save), inside a new temporary directory next to `path` (which must not exist);
    moves it to `path` when the block ends without an exception. The temporary directory (with
    whatever a writer put beside its output, as Orbax's own temporaries) is removed either way."""
    path = Path(path).absolute()
    _make_parents(path)
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
