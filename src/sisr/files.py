"""Writing files so that nothing is ever half-written or silently replaced."""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from .errors import SisrError

log = logging.getLogger("sisr")


def check_writable(path: str | os.PathLike, overwrite: bool) -> Path:
    """Refuse to replace an existing file unless the user asked for it."""
    path = Path(path)
    if path.exists() and not overwrite:
        # Read by CLI and library users alike, so it names the switch of both.
        raise SisrError(
            f"{path}: already exists; not overwritten (ask for it with --overwrite, or overwrite=True in Python)"
        )
    return path


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
    """
    path = check_writable(path, overwrite)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    with _renamed_on_success(tmp, path), os.fdopen(fd, mode) as handle:
        yield handle
        handle.flush()
        os.fsync(handle.fileno())


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, overwrite: bool = True) -> Iterator[Path]:
    """Give a temporary path for libraries that insist on writing by name.

    The temporary name keeps the suffix of `path`, so writers that pick a format
    from the extension still do.
    """
    path = check_writable(path, overwrite)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=".tmp" + path.suffix, dir=path.parent)
    os.close(fd)
    with _renamed_on_success(tmp, path):
        yield Path(tmp)


@contextlib.contextmanager
def _renamed_on_success(tmp: str, path: Path) -> Iterator[None]:
    """Rename `tmp` over `path` (with a plain file's permissions) if the block ends well; else delete it."""
    try:
        yield
        os.chmod(tmp, _default_mode())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


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
