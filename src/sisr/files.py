"""Writing files so that nothing is ever half-written or silently replaced; lock files.

A file is written under a temporary name beside its target and renamed over it
on success: `.NAME.<pid>.<random>.tmp` (`.STEM.<pid>.<random>.tmp.SUFFIX` for
writers that pick a format from the extension); archives are unpacked into
temporary folders named the same way. A process killed outright (SIGKILL,
the out-of-memory killer, a power cut) cannot delete them, so the first
write of a process into a folder removes those whose writer is gone: no
process of that PID runs on this machine, and nobody holds the lock every
writer keeps on its temporary file or folder while it writes (the lock covers
writers on other machines sharing the folder, whose PIDs mean nothing here).

Without `overwrite`, the rename never replaces: the finished temporary file is
hard-linked to the target's name, which fails if that name exists, so of two
processes writing one output exactly one wins and the other gets
`OutputExistsError`. A check before the rename would leave a gap in which the
other process's output appears and is silently replaced.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import json
import logging
import os
import re
import shutil
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from .errors import OutputExistsError, SisrError

log = logging.getLogger("sisr")

# `.NAME.<pid>.<8 random characters of mkstemp>.tmp`, with the target's suffix after `.tmp` for atomic_path.
_TEMPORARY_NAME = re.compile(r"^\..+\.(?P<pid>[0-9]+)\.[a-z0-9_]{8}\.tmp(?:\.[^.]+)?$")
# The lock file of a folder that one process at a time may write into (a training run's --out).
FOLDER_LOCK_NAME = ".lock"

# Descriptors whose flock marks this process's claim (folder locks, temporary files being written).
_claims: set[int] = set()


def _drop_claims_in_child() -> None:
    """A forked child (a DataLoader worker) must not keep its parent's locks alive after the parent dies.

    flock belongs to the open file, which fork shares: a worker outliving a
    killed training process by a few seconds would otherwise hold its folder.
    The descriptor is pointed at /dev/null rather than closed, so that the
    child's copies of the file objects still close cleanly.
    """
    null = os.open(os.devnull, os.O_RDONLY)
    for fd in _claims:
        with contextlib.suppress(OSError):
            os.dup2(null, fd)
    os.close(null)
    _claims.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_drop_claims_in_child)


def check_writable(path: str | os.PathLike, overwrite: bool) -> Path:
    """Refuse to replace an existing file unless the user asked for it."""
    path = Path(path)
    if path.exists() and not overwrite:
        raise _exists(path)
    return path


def _exists(path: Path) -> OutputExistsError:
    # Read by CLI and library users alike, so it names the switch of both.
    return OutputExistsError(
        f"{path}: already exists; not overwritten (ask for it with --overwrite, or overwrite=True in Python)"
    )


@functools.lru_cache(maxsize=1)
def _default_mode() -> int:
    """The permissions a plainly created file gets (0o666 less the umask); mkstemp gives 0o600.

    Read once: os.umask can only be read by setting it, which other threads could see.
    """
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "wb", overwrite: bool = True) -> Iterator[IO]:
    """Open a temporary file beside `path`; rename it over `path` only on success.

    A crash or Ctrl-C leaves either the old file or the new one, never a torn one.
    Without `overwrite` the file is created exclusively (see the module's docstring).
    """
    path = check_writable(path, overwrite)
    with _temporary_beside(path, f".{path.name}.", ".tmp", overwrite) as (tmp, fd), _reopened(tmp, fd, mode) as handle:
        yield handle
        handle.flush()
        os.fsync(handle.fileno())


@contextlib.contextmanager
def _reopened(tmp: str, fd: int | None, mode: str) -> Iterator[IO]:
    """The temporary file as a file object: through a second descriptor, whose closing keeps the lock."""
    if fd is None:
        with open(tmp, mode) as handle:
            yield handle
        return
    with os.fdopen(os.dup(fd), mode) as handle:
        _claims.add(handle.fileno())  # it shares the lock, so forked children must not keep it
        try:
            yield handle
        finally:
            _claims.discard(handle.fileno())


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, overwrite: bool = True) -> Iterator[Path]:
    """Give a temporary path for libraries that insist on writing by name.

    The temporary name keeps the suffix of `path`, so writers that pick a format
    from the extension still do. Without `overwrite` the file is created
    exclusively: if `path` appears meanwhile, `OutputExistsError` is raised
    and the temporary file deleted.
    """
    path = check_writable(path, overwrite)
    with _temporary_beside(path, f".{path.stem}.", ".tmp" + path.suffix, overwrite) as (tmp, _):
        yield Path(tmp)


@contextlib.contextmanager
def temporary_folder(parent: str | os.PathLike, name: str) -> Iterator[Path]:
    """A new private folder `.NAME.<pid>.<random>.tmp` in `parent`, removed when the block ends.

    For work that is renamed into place when complete (an unpacked archive):
    in `parent`, so the rename stays on one file system. A folder renamed away
    in the block is left where it went.
    """
    parent = Path(parent)
    parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_temporaries_once(parent)
    folder = Path(tempfile.mkdtemp(prefix=f".{name}.{os.getpid()}.", suffix=".tmp", dir=parent))
    lock_fd = None
    if sys.platform != "win32":
        import fcntl

        lock_fd = os.open(folder, os.O_RDONLY)
        fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        _claims.add(lock_fd)
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)
        if lock_fd is not None:
            _claims.discard(lock_fd)
            os.close(lock_fd)


@contextlib.contextmanager
def _temporary_beside(path: Path, prefix: str, suffix: str, replace: bool) -> Iterator[tuple[str, int | None]]:
    """A new temporary file beside `path` (its name, and the locked descriptor that marks it as being written).

    Renamed to `path`, with a plain file's permissions, if the block ends
    well (over an existing file only if `replace`); deleted otherwise. The descriptor stays open until after the rename,
    so a sweeping process never takes a finished file for an abandoned one.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_temporaries_once(path.parent)
    fd, tmp = tempfile.mkstemp(prefix=f"{prefix}{os.getpid()}.", suffix=suffix, dir=path.parent)
    lock_fd: int | None = fd
    if sys.platform == "win32":  # an open file cannot be renamed there; nor is anything swept
        os.close(fd)
        lock_fd = None
    else:
        import fcntl

        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # a new file: nobody else has it open
        _claims.add(fd)
    try:
        yield tmp, lock_fd
        os.chmod(tmp, _default_mode())
        if replace:
            os.replace(tmp, path)
        else:
            rename_no_replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    finally:
        if lock_fd is not None:
            _claims.discard(lock_fd)
            os.close(lock_fd)


def rename_no_replace(source: str | os.PathLike, target: str | os.PathLike) -> None:
    """Rename `source` to `target` unless `target` exists, as one step; `OutputExistsError` if it does.

    A hard link is created only if its name is free, atomically on every local
    and network file system that has links; the source name is then dropped.
    (A process killed between the two steps leaves a temporary name beside a
    complete target, which the next sweep removes.) Where the file system has
    no hard links (FAT, some FUSE and SMB mounts), a check and a rename is the
    best there is.
    """
    target = Path(target)
    try:
        os.link(source, target)
    except FileExistsError:
        raise _exists(target) from None
    except OSError as error:
        if error.errno not in _NO_HARD_LINKS:
            raise
        if target.exists():
            raise _exists(target) from None
        os.replace(source, target)
        return
    os.unlink(source)


# Errors of os.link on file systems without hard links.
_NO_HARD_LINKS = {errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EMLINK, errno.ENOSYS}


# --- temporary files of killed processes ----------------------------------------------------


def temporary_file_writer(name: str) -> int | None:
    """The PID in a temporary name of `atomic_write`, `atomic_path` or `temporary_folder`; None for others."""
    match = _TEMPORARY_NAME.match(name)
    return int(match["pid"]) if match else None


_swept: set[tuple[int, str]] = set()
_swept_lock = threading.Lock()


def _remove_stale_temporaries_once(folder: Path) -> None:
    """Sweep `folder` on this process's first write into it: a folder of 10,000 outputs is listed once."""
    key = (os.getpid(), os.path.abspath(folder))
    with _swept_lock:
        if key in _swept:
            return
        _swept.add(key)
    remove_stale_temporaries(folder)


def remove_stale_temporaries(folder: str | os.PathLike) -> list[Path]:
    """Delete the temporary files and folders in `folder` that killed processes left; returns what was deleted.

    A file counts as abandoned only when no process of its writer's PID runs
    here and no process holds its lock; anything else (another run writing
    into the same folder) is left alone. Nothing is swept on Windows, where
    PIDs in names cannot be checked the same way.
    """
    folder = Path(folder)
    with _swept_lock:
        _swept.add((os.getpid(), os.path.abspath(folder)))
    if sys.platform == "win32":
        return []
    try:
        entries = list(os.scandir(folder))
    except OSError:  # no such folder (yet), or not readable: nothing of ours to clean
        return []
    removed = []
    for entry in entries:
        pid = temporary_file_writer(entry.name)
        if pid is None or _process_exists(pid) or entry.is_symlink():
            continue
        if _delete_unless_locked(Path(entry.path), entry.is_dir()):
            removed.append(Path(entry.path))
    if removed:
        log.info("%s: removed what killed processes left: %s", folder, ", ".join(path.name for path in removed))
    return removed


def _process_exists(pid: int) -> bool:
    """Whether a process of this PID runs on this machine (a reused PID counts: then nothing is deleted)."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    except (OverflowError, ValueError):  # not a PID at all
        return False
    return True


def _delete_unless_locked(path: Path, is_folder: bool) -> bool:
    """Delete `path` while holding its writer's lock; False when a writer holds it or it cannot be opened."""
    import fcntl

    try:
        fd = os.open(path, (os.O_RDONLY if is_folder else os.O_RDWR) | os.O_NOFOLLOW)
    except OSError:  # gone already, or another user's
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        if is_folder:
            shutil.rmtree(path)
        else:
            os.unlink(path)
    except OSError:  # locked: its writer lives (on another machine, or under another PID namespace)
        return False
    finally:
        os.close(fd)
    return True


# --- lock files --------------------------------------------------------------------------------


@contextlib.contextmanager
def exclusive_lock(path: str | os.PathLike, what: str) -> Iterator[None]:
    """Hold an advisory lock on the file `path` (created if missing) for the block.

    Two processes fetching the same file into one cache (the ranks of a
    `torchrun` job, two terminals) would otherwise append to the same `.part`
    file; the second waits here and then finds the finished file. The lock
    file is left in place: deleting it would let a third process lock a
    different file of the same name. `what` names the work in the waiting
    message.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+b") as handle:
        if not _try_lock(handle):
            log.info("waiting for another process %s (lock %s)", what, path)
            while not _try_lock(handle):
                time.sleep(0.2)
        try:
            yield
        finally:
            _unlock(handle)


@contextlib.contextmanager
def folder_lock(folder: str | os.PathLike, what: str, advice: str) -> Iterator[Path]:
    """Hold `folder/.lock` for the block, or refuse at once if another process holds it.

    For folders that one process at a time may write into: two training runs
    into one output folder would mix their checkpoints and logs. The lock file
    records the holder (PID, `what`, command line, start time, host) for the
    refusal, which ends with `advice`. The kernel drops a lock when its holder
    exits, however it ends, so the lock of a killed process is simply taken
    over. The file stays, emptied, when the block ends: deleting it would let
    two later processes lock two different files of that name.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / FOLDER_LOCK_NAME
    # Opened without truncating: while another process holds it, its record must survive this attempt.
    handle = os.fdopen(os.open(path, os.O_RDWR | os.O_CREAT, 0o666), "r+b")
    with handle:
        if not _try_lock(handle):
            raise SisrError(f"{folder} is in use by {_describe_holder(_read_holder(path))}; {advice}")
        _claims.add(handle.fileno())
        try:
            earlier = _read_holder(path)
            if earlier:  # emptied on a clean exit: its holder died while holding it
                log.info(
                    "%s: taking over the lock of %s, which ended without releasing it",
                    folder,
                    _describe_holder(earlier),
                )
            _write_record(handle, _holder_record(what))
            yield path
        finally:
            _claims.discard(handle.fileno())
            with contextlib.suppress(OSError):
                _write_record(handle, None)
            _unlock(handle)


def _holder_record(what: str) -> dict[str, Any]:
    return {
        "pid": os.getpid(),
        "what": what,
        "command": " ".join(sys.argv),
        "since": time.strftime("%Y-%m-%d %H:%M:%S"),
        "host": socket.gethostname(),
    }


def _write_record(handle: IO, record: dict[str, Any] | None) -> None:
    handle.seek(0)
    handle.truncate()
    if record is not None:
        handle.write((json.dumps(record) + "\n").encode())
    handle.flush()


def _read_holder(path: Path) -> dict[str, Any]:
    """The record a lock file holds; empty when it holds none (yet) or cannot be read."""
    try:
        record = json.loads(path.read_text(encoding="utf-8") or "{}")
    except (OSError, ValueError):
        return {}
    return record if isinstance(record, dict) else {}


def _describe_holder(record: dict[str, Any]) -> str:
    """`sisr train (pid 1234) since 2026-05-01 10:00:00`, as far as the record says."""
    if "pid" not in record:
        return "another process"
    host = record.get("host")
    where = f" on {host}" if host and host != socket.gethostname() else ""
    since = f" since {record['since']}" if record.get("since") else ""
    return f"{record.get('what') or 'another process'} (pid {record['pid']}{where}){since}"


def _try_lock(handle: IO) -> bool:
    try:
        if sys.platform == "win32":
            import msvcrt

            handle.seek(0)
            msvcrt.locking(handle.fileno(), msvcrt.LK_NBLCK, 1)
        else:
            import fcntl

            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:  # held by another process (BlockingIOError / PermissionError)
        return False
    return True


def _unlock(handle: IO) -> None:
    if sys.platform == "win32":
        import msvcrt

        handle.seek(0)
        msvcrt.locking(handle.fileno(), msvcrt.LK_UNLCK, 1)
    else:
        import fcntl

        fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
