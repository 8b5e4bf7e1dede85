"""Atomic writes: the umask's permissions, nothing left by a failure, temporaries swept."""

import os
import stat
import zipfile

import numpy as np
import pytest

from lcm_jax import files
from lcm_jax.inference import outputs
from lcm_jax.input_pipeline import video_io


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.fixture(params=[0o022, 0o027])
def umask(request):
    previous = os.umask(request.param)
    yield request.param
    os.umask(previous)


def test_every_writer_gives_what_open_gives_under_the_umask(tmp_path, umask):
    with open(tmp_path / "reference", "w"):  # the kernel's answer for a new file
        pass
    expected = mode(tmp_path / "reference")
    assert expected == 0o666 & ~umask  # 0644 under 022, 0640 under 027
    files.write_text(tmp_path / "a" / "b.csv", "x\n")
    files.write_bytes(tmp_path / "c.bin", b"\0")
    video_io.write_label_png(tmp_path / "Annotations/v/00000.png", np.ones((4, 5), np.uint8))
    video_io.write_frame(tmp_path / "frames" / "00000.jpg", np.zeros((4, 5, 3), np.uint8))
    outputs.write_submission_zip(tmp_path, tmp_path / "submission.zip")  # zips Annotations/
    written = ["a/b.csv", "c.bin", "frames/00000.jpg", "Annotations/v/00000.png", "submission.zip"]
    assert {name: mode(tmp_path / name) for name in written} == dict.fromkeys(written, expected)
    with zipfile.ZipFile(tmp_path / "submission.zip") as z:
        assert z.getinfo("Annotations/v/00000.png").external_attr >> 16 & 0o777 == expected
    with files.atomic_dir(tmp_path / "ckpt") as tmp:
        tmp.mkdir()
        (tmp / "x").write_text("1")
    assert mode(tmp_path / "ckpt") == 0o777 & ~umask and mode(tmp_path / "ckpt/x") == expected
    assert [p.name for p in tmp_path.rglob(".*")] == []  # no temporary left


def test_a_failed_write_leaves_neither_the_output_nor_a_temporary(tmp_path):
    files.write_text(tmp_path / "kept.csv", "old\n")
    for exception in (ValueError, KeyboardInterrupt):
        with pytest.raises(exception), files.atomic_path(tmp_path / "kept.csv") as tmp:
            tmp.write_text("half")
            raise exception
        with pytest.raises(exception), files.atomic_dir(tmp_path / "dir") as tmp:
            tmp.mkdir()
            raise exception
    assert sorted(os.listdir(tmp_path)) == ["kept.csv"]
    assert (tmp_path / "kept.csv").read_text() == "old\n"


def test_remove_temporaries_takes_only_what_a_killed_writer_left(tmp_path):
    left = [".00003.1a2b3c4d.tmp.png", "seq/.confidence.0f0f0f0f.tmp.csv", ".ckpt.deadbeef.tmp"]
    kept = [".hidden", "notes.tmp", "00001.png", "seq/.a.tmp.png", ".x.1234567.tmp.png"]
    for name in left + kept:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("")
    (tmp_path / ".ckpt.deadbeef.tmp").unlink()
    (tmp_path / ".ckpt.deadbeef.tmp" / "d").mkdir(parents=True)  # a half-saved checkpoint
    assert files.remove_temporaries(tmp_path / "seq", name="other.csv") == []
    removed = files.remove_temporaries(tmp_path)
    assert sorted(p.relative_to(tmp_path).as_posix() for p in removed) == sorted(left)
    remaining = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*"))
    assert remaining == sorted(kept + ["seq"])


def test_check_writable_raises_what_writing_would_and_describe_names_the_path(
    tmp_path, monkeypatch
):
    (tmp_path / "afile").write_text("x")
    (tmp_path / "adir").mkdir()
    files.check_writable(tmp_path / "new" / "deeper" / "out.csv")  # parents are created
    files.check_writable(tmp_path / "afile")  # a file is replaced
    files.check_writable(tmp_path / "adir", folder=True)  # a folder is written into
    cases = [
        (tmp_path / "afile" / "sub" / "out.csv", False, NotADirectoryError),
        (tmp_path / "afile", True, NotADirectoryError),
        (tmp_path / "adir", False, IsADirectoryError),
    ]
    for path, folder, error in cases:
        with pytest.raises(error) as e:
            files.check_writable(path, folder=folder)
        assert e.value.filename == str(path)
    under = tmp_path / "afile" / "sub" / "out.csv"
    with pytest.raises(NotADirectoryError) as e:
        files.check_writable(under)
    assert files.describe(e.value) == f"{under}: Not a directory ({tmp_path / 'afile'} is a file)"
    inside = tmp_path / "afile" / "out.csv"  # mkdir itself says "File exists" of afile
    with pytest.raises(NotADirectoryError) as e:
        files.write_text(inside, "x")
    assert files.describe(e.value) == f"{inside}: Not a directory ({tmp_path / 'afile'} is a file)"
    with pytest.raises(NotADirectoryError), files.atomic_dir(inside):
        pass
    assert files.describe(FileNotFoundError("no checkpoint at X")) == "no checkpoint at X"
    # root may write anywhere, so the permission check is seen through os.access
    monkeypatch.setattr(os, "access", lambda path, mode: path != tmp_path / "adir")
    with pytest.raises(PermissionError) as e:
        files.check_writable(tmp_path / "adir" / "out.csv")
    assert files.describe(e.value) == f"{tmp_path / 'adir' / 'out.csv'}: Permission denied"
    assert sorted(os.listdir(tmp_path)) == ["adir", "afile"]  # check_writable reads only
