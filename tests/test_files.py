"""sisr.files: atomic writes, the temporary files and folders killed writers leave, and folder locks.

Writers and lock holders that must die or live beside the test are real
processes (`python -c`), killed with real signals.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from sisr.errors import SisrError
from sisr.files import (
    FOLDER_LOCK_NAME,
    atomic_path,
    atomic_write,
    folder_lock,
    remove_stale_temporaries,
    temporary_file_writer,
    temporary_folder,
)

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="PIDs in names and flock are POSIX")

# Writes a few bytes into TARGET through atomic_write, says so, then waits to be killed (or for a line on stdin).
WRITER = textwrap.dedent(
    """
    import sys
    from sisr.files import atomic_write
    with atomic_write(sys.argv[1]) as handle:
        handle.write(b"half of it")
        handle.flush()
        print("writing", flush=True)
        sys.stdin.readline()
    """
)


def start_writer(target: Path) -> subprocess.Popen:
    process = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(target)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert process.stdout is not None and process.stdout.readline() == "writing\n"
    return process


def temporaries(folder: Path) -> list[str]:
    return sorted(path.name for path in folder.iterdir() if temporary_file_writer(path.name) is not None)


def dead_pid() -> int:
    """The PID of a process that has ended (and been reaped)."""
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


# --- temporary names ---------------------------------------------------------------------------


def test_temporary_names_carry_the_writers_pid_and_keep_the_suffix(tmp_path):
    pid = os.getpid()
    with atomic_write(tmp_path / "a.bin") as handle:
        handle.write(b"x")
        (seen,) = temporaries(tmp_path)
        assert re.fullmatch(rf"\.a\.bin\.{pid}\.[a-z0-9_]{{8}}\.tmp", seen)
    with atomic_path(tmp_path / "photo.png") as tmp:
        assert re.fullmatch(rf"\.photo\.{pid}\.[a-z0-9_]{{8}}\.tmp\.png", tmp.name)
        assert temporary_file_writer(tmp.name) == pid
        tmp.write_bytes(b"y")
    assert sorted(path.name for path in tmp_path.iterdir()) == ["a.bin", "photo.png"]
    umask = os.umask(0o022)
    os.umask(umask)
    assert (tmp_path / "photo.png").stat().st_mode & 0o777 == 0o666 & ~umask  # a plain file's, not mkstemp's 0o600


@pytest.mark.parametrize("name", ["notes.tmp", ".notes.tmp", "a.123.abcdefgh.tmp", ".a.x.abcdefgh.tmp", ".a.123.tmp"])
def test_other_names_are_not_taken_for_temporary_files(name):
    assert temporary_file_writer(name) is None


def test_a_failed_write_leaves_nothing(tmp_path):
    with pytest.raises(RuntimeError), atomic_write(tmp_path / "a.bin") as handle:
        handle.write(b"x")
        raise RuntimeError("the writer failed")
    assert list(tmp_path.iterdir()) == []


# --- what killed writers leave ----------------------------------------------------------------


def test_the_temporary_file_of_a_killed_writer_is_removed_by_the_next_write_into_its_folder(tmp_path):
    killed = start_writer(tmp_path / "a.bin")
    left = temporaries(tmp_path)
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    assert temporaries(tmp_path) == left and temporary_file_writer(left[0]) == killed.pid  # nothing cleaned it

    with atomic_write(tmp_path / "b.bin") as handle:
        handle.write(b"y")
    assert sorted(path.name for path in tmp_path.iterdir()) == ["b.bin"]


def test_the_temporary_file_of_a_live_writer_is_left_alone_and_its_write_completes(tmp_path):
    live = start_writer(tmp_path / "a.bin")
    try:
        assert remove_stale_temporaries(tmp_path) == []
        with atomic_write(tmp_path / "b.bin") as handle:
            handle.write(b"y")
        assert len(temporaries(tmp_path)) == 1
    finally:
        live.communicate("\n", timeout=60)
    assert live.returncode == 0
    assert (tmp_path / "a.bin").read_bytes() == b"half of it" and temporaries(tmp_path) == []


def test_a_temporary_file_locked_by_a_live_process_is_left_even_when_its_pid_is_gone(tmp_path):
    """A writer on another machine sharing the folder: its PID means nothing here, its lock does."""
    stale_looking = tmp_path / f".a.bin.{dead_pid()}.abcdefgh.tmp"
    stale_looking.write_bytes(b"being written elsewhere")
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import fcntl, sys; f = open(sys.argv[1], 'rb'); fcntl.flock(f, fcntl.LOCK_EX); "
            "print('locked', flush=True); sys.stdin.readline()",
            str(stale_looking),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "locked\n"
        assert remove_stale_temporaries(tmp_path) == []
        assert stale_looking.exists()
    finally:
        holder.communicate("\n", timeout=60)
    assert remove_stale_temporaries(tmp_path) == [stale_looking]


def test_only_temporary_files_and_folders_are_swept(tmp_path):
    gone = dead_pid()
    kept = ["notes.tmp", f"a.{gone}.abcdefgh.tmp", "photo.png", f".link.{gone}.abcdefgh.tmp"]
    for name in kept[:3]:
        (tmp_path / name).write_bytes(b"mine")
    (tmp_path / kept[3]).symlink_to(tmp_path / "photo.png")  # a link is nobody's temporary file
    stale_file = tmp_path / f".photo.{gone}.abcdefgh.tmp.png"
    stale_file.write_bytes(b"half")
    stale_folder = tmp_path / f".data.zip.extracting.{gone}.abcdefgh.tmp"
    (stale_folder / "images").mkdir(parents=True)
    (stale_folder / "images" / "0001.png").write_bytes(b"half unpacked")
    assert sorted(remove_stale_temporaries(tmp_path)) == sorted([stale_file, stale_folder])
    assert sorted(path.name for path in tmp_path.iterdir()) == sorted(kept)
    assert remove_stale_temporaries(tmp_path / "missing") == []


KILLED_UNPACKER = textwrap.dedent(
    """
    import sys
    from sisr.files import temporary_folder
    with temporary_folder(sys.argv[1], "data.zip.extracting") as folder:
        (folder / "0001.png").write_bytes(b"half unpacked")
        print(folder, flush=True)
        sys.stdin.readline()
    """
)


def test_a_temporary_folder_is_removed_after_use_and_after_its_killed_owner(tmp_path):
    with temporary_folder(tmp_path, "data.zip.extracting") as folder:
        assert folder.parent == tmp_path and temporary_file_writer(folder.name) == os.getpid()
        (folder / "a.png").write_bytes(b"x")
    assert list(tmp_path.iterdir()) == []

    datasets = tmp_path / "datasets"  # a folder this process has not written into yet
    killed = subprocess.Popen(
        [sys.executable, "-c", KILLED_UNPACKER, str(datasets)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert killed.stdout is not None
    left = Path(killed.stdout.readline().strip())
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    assert (left / "0001.png").is_file()
    with temporary_folder(datasets, "other.zip.extracting"):
        assert not left.exists()


# --- folder locks -------------------------------------------------------------------------------

HOLDER = textwrap.dedent(
    """
    import sys
    from sisr.files import folder_lock
    with folder_lock(sys.argv[1], "sisr test", "wait"):
        print("holding", flush=True)
        sys.stdin.readline()
    """
)


def start_holder(folder: Path) -> subprocess.Popen:
    process = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(folder)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert process.stdout is not None and process.stdout.readline() == "holding\n"
    return process


def test_a_locked_folder_is_refused_naming_its_holder_and_free_again_after(tmp_path):
    folder = tmp_path / "runs" / "x"
    holder = start_holder(folder)
    try:
        with pytest.raises(SisrError) as refused, folder_lock(folder, "sisr train", "choose another --out"):
            pass
        message = str(refused.value)
        assert re.fullmatch(
            rf"{re.escape(str(folder))} is in use by sisr test \(pid {holder.pid}\) since "
            rf"\d{{4}}-\d\d-\d\d \d\d:\d\d:\d\d; choose another --out",
            message,
        ), message
    finally:
        holder.communicate("\n", timeout=60)
    assert (folder / FOLDER_LOCK_NAME).read_text() == ""  # emptied, and left for the next holder
    with folder_lock(folder, "sisr train", "wait") as lock:
        assert f'"pid": {os.getpid()}' in lock.read_text() and '"what": "sisr train"' in lock.read_text()


def test_the_lock_of_a_killed_holder_is_taken_over(tmp_path, caplog):
    holder = start_holder(tmp_path)
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    assert f'"pid": {holder.pid}' in (tmp_path / FOLDER_LOCK_NAME).read_text()
    with caplog.at_level("INFO", logger="sisr"), folder_lock(tmp_path, "sisr train", "wait"):
        pass
    assert f"taking over the lock of sisr test (pid {holder.pid})" in caplog.text


FORKING_HOLDER = textwrap.dedent(
    """
    import os, sys, time
    from sisr.files import atomic_write, folder_lock
    with folder_lock(sys.argv[1], "sisr test", "wait"), atomic_write(sys.argv[1] + "/a.bin") as handle:
        if os.fork() == 0:  # a child that outlives its parent, as a DataLoader worker briefly does
            print(os.getpid(), flush=True)  # forked, so its copies of the locks are dropped by now
            time.sleep(60)
            os._exit(0)
        sys.stdin.readline()
    """
)


def test_a_forked_child_does_not_keep_the_locks_of_its_killed_parent(tmp_path):
    parent = subprocess.Popen(
        [sys.executable, "-c", FORKING_HOLDER, str(tmp_path)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert parent.stdout is not None
    child = int(parent.stdout.readline())
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    try:
        os.kill(child, 0)  # still running, yet neither lock is held any more
        with folder_lock(tmp_path, "sisr train", "wait"):
            assert len(remove_stale_temporaries(tmp_path)) == 1
    finally:
        os.kill(child, signal.SIGKILL)
        parent.stdout.close()
    assert temporaries(tmp_path) == []


def test_one_process_cannot_hold_a_folder_twice(tmp_path):
    refused = pytest.raises(SisrError, match=f"in use by sisr train \\(pid {os.getpid()}\\)")
    with folder_lock(tmp_path, "sisr train", "wait"), refused, folder_lock(tmp_path, "sisr finetune", "wait"):
        pass
