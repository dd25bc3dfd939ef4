"""Fetching data and weights into a local cache: resumable, verified, atomic.

Only the standard library's urllib is used, so downloading adds no dependency.
A file is streamed to `<dest>.part`, checked against its sha256 and renamed
into place, so `dest` is either absent or complete and verified. An
interrupted transfer keeps its `.part` file and the next attempt continues it
with an HTTP Range request. Processes that fetch or extract the same file
at once (the ranks of a `torchrun` job) take turns on a lock file beside it,
so the file is fetched once and the others find it done.

A file is only ever replaced by one that passed its checks: a corrupt or
changed download is deleted and the cached copy, if any, stays as it was.

Where no full checksum is recorded, `sha256=None` means *trust on first
use*: the hash of the first download is recorded beside the file
(`<dest>.sha256`) and every later download or reuse must match it. Callers
that must pin every download (the pretrained zoo) accept that only when the
user asks for it: `trust_unpinned_from_env()` reads that request from
`$SISR_TRUST_UNPINNED`.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import logging
import os
import re
import sys
import tarfile
import time
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from .errors import SisrError
from .files import atomic_write, exclusive_lock, temporary_folder

log = logging.getLogger("sisr")

CHUNK_BYTES = 1 << 20
DEFAULT_TIMEOUT_S = 30.0
DEFAULT_RETRIES = 3
# Some academic servers answer urllib's default agent with 403.
USER_AGENT = "sisr-downloader/0.1 (Python urllib)"
_SHA256_PATTERN = re.compile(r"^[0-9a-f]{64}$")
_PREFIX_PATTERN = re.compile(r"^[0-9a-f]{4,63}$")
TRUST_UNPINNED_ENV_VAR = "SISR_TRUST_UNPINNED"


class Unreachable(SisrError):
    """The file could not be fetched at all (offline, an HTTP error): copying it in by hand is the way on."""


@dataclass(frozen=True)
class Resource:
    """One downloadable file of a registry.

    `sha256` is None only where no checksum has been published anywhere; the
    first download's hash is then recorded and enforced (trust on first use).
    """

    url: str
    sha256: str | None
    filename: str


def cache_dir() -> Path:
    """`$SISR_CACHE`, else `$XDG_CACHE_HOME/sisr`, else `~/.cache/sisr`."""
    if explicit := os.environ.get("SISR_CACHE"):
        return Path(explicit).expanduser()
    if xdg := os.environ.get("XDG_CACHE_HOME"):
        return Path(xdg).expanduser() / "sisr"
    return Path.home() / ".cache" / "sisr"


def downloads_dir() -> Path:
    """Where archives and weight files are kept once downloaded."""
    return cache_dir() / "downloads"


def sha256_of_file(path: Path) -> str:
    hasher = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK_BYTES):
            hasher.update(chunk)
    return hasher.hexdigest()


def recorded_sha256_path(dest: Path) -> Path:
    """The trust-on-first-use record of `dest`, in `sha256sum` format."""
    return dest.with_name(dest.name + ".sha256")


def trust_unpinned_from_env() -> bool:
    """Whether `$SISR_TRUST_UNPINNED` allows downloads that no full sha256 pins (1/true/yes/on)."""
    value = os.environ.get(TRUST_UNPINNED_ENV_VAR, "").strip().lower()
    if value in ("", "0", "false", "no", "off"):
        return False
    if value in ("1", "true", "yes", "on"):
        return True
    raise SisrError(f"${TRUST_UNPINNED_ENV_VAR}={value!r}: give 1 (trust unpinned downloads) or 0")


def download(
    url: str,
    dest: str | os.PathLike,
    sha256: str | None = None,
    *,
    sha256_prefix: str | None = None,
    force: bool = False,
    progress: bool = True,
    timeout: float = DEFAULT_TIMEOUT_S,
    retries: int = DEFAULT_RETRIES,
) -> Path:
    """Fetch `url` to `dest` unless a verified copy is already there.

    An existing `dest` whose hash differs is downloaded again and replaced:
    this is a cache, and a file that fails its checksum is of no use.
    `sha256_prefix` (the leading hex digits some publishers put in file
    names) is checked as well, also when `sha256` is None. `force` downloads
    again even when `dest` is valid; either way `dest` is replaced only once
    the new file has passed its checks.

    An interrupted transfer is resumed (up to `retries` times within this call,
    and again by any later call, since the `.part` file is kept). Raises
    SisrError when the server cannot be reached (`Unreachable`), refuses the
    file, or sends bytes that do not hash to `sha256`.
    """
    dest = Path(dest)
    expected = _normalise_sha256(sha256, url)
    prefix = _normalise_prefix(sha256_prefix, url)
    if expected and prefix and not expected.startswith(prefix):
        raise SisrError(f"{url}: the sha256 {expected} does not start with the prefix {prefix} given with it")
    with exclusive_lock(_lock_path(dest), f"downloading {dest.name}"):
        # Checked under the lock: another process may have finished this file while this one waited.
        recorded = None if expected else _read_recorded_sha256(dest)
        if not force and dest.is_file() and _existing_file_is_valid(dest, expected or recorded, prefix):
            return dest
        part = dest.with_name(dest.name + ".part")
        if force:  # fresh bytes from the server, not the rest of an earlier attempt
            part.unlink(missing_ok=True)
        check = _Check(expected or recorded, prefix)
        actual = _fetch_with_retries(url, part, dest, progress, timeout, retries, check)
        _check_digest(url, part, expected, recorded, prefix, actual, dest)
        os.replace(part, dest)
        if expected is None and recorded is None:
            _record_sha256(dest, actual)
            log.info(
                "no published sha256 for %s: recorded %s in %s (trust on first use)",
                url,
                actual,
                recorded_sha256_path(dest),
            )
    return dest


def _lock_path(target: Path) -> Path:
    """The lock file that serialises the processes writing `target` (hidden, beside it)."""
    return target.with_name(f".{target.name}.lock")


def fetch(resource: Resource, directory: Path | None = None, *, progress: bool = True) -> Path:
    """Download a registry entry into `directory` (default: the downloads cache)."""
    directory = downloads_dir() if directory is None else Path(directory)
    return download(resource.url, directory / resource.filename, resource.sha256, progress=progress)


def extraction_marker(archive_name: str, dest_dir: Path) -> Path:
    """The file whose presence says `archive_name` was fully extracted into `dest_dir`."""
    return Path(dest_dir) / f".{archive_name}.extracted"


def fetch_and_extract(resource: Resource, dest_dir: Path, *, progress: bool = True) -> Path:
    """Make sure the archive `resource` is extracted into `dest_dir`.

    Once extracted, the archive is neither downloaded nor hashed again.
    """
    dest_dir = Path(dest_dir)
    if extraction_marker(resource.filename, dest_dir).exists():
        return dest_dir
    archive = fetch(resource, progress=progress)
    return extract(archive, dest_dir)


def extract(archive: str | os.PathLike, dest_dir: str | os.PathLike) -> Path:
    """Unpack a zip or tar(.gz/.bz2/.xz) archive into `dest_dir`, once.

    Members are unpacked into a staging folder beside `dest_dir` and then
    renamed into it, so a crash never leaves half-written files in `dest_dir`;
    a marker file written last records success. Several archives may share one
    `dest_dir` (DIV2K's HR and LR zips): their folders are merged. Members that
    would land outside `dest_dir` (absolute names, `..`, escaping links) are
    refused before anything is written.
    """
    archive, dest_dir = Path(archive), Path(dest_dir)
    marker = extraction_marker(archive.name, dest_dir)
    if marker.exists():
        return dest_dir
    if not archive.is_file():
        raise SisrError(f"{archive}: archive not found")
    with exclusive_lock(_lock_path(dest_dir), f"extracting into {dest_dir}"):
        if not marker.exists():  # another process may have extracted it while this one waited
            _extract_unlocked(archive, dest_dir, marker)
    return dest_dir


def _extract_unlocked(archive: Path, dest_dir: Path, marker: Path) -> None:
    with temporary_folder(dest_dir.parent, f"{archive.name}.extracting") as staging:
        _unpack(archive, staging)
        if dest_dir.exists():
            _merge_into(staging, dest_dir)
            marker.touch()
        else:
            extraction_marker(archive.name, staging).touch()
            os.replace(staging, dest_dir)
    log.info("extracted %s into %s", archive, dest_dir)


# --- downloading -------------------------------------------------------------


class _Interrupted(Exception):
    """The transfer started but stopped early; the `.part` file can be resumed."""


@dataclass(frozen=True)
class _Check:
    """What a file must hash to, as far as known: for the advice to users who copy it in by hand."""

    sha256: str | None
    prefix: str | None

    def advice(self) -> str:
        if self.sha256:
            return f" (its sha256 must be {self.sha256})"
        return f" (its sha256 must start with {self.prefix})" if self.prefix else ""


def _normalise_sha256(sha256: str | None, url: str) -> str | None:
    if sha256 is None:
        return None
    normalised = sha256.strip().lower()
    if not _SHA256_PATTERN.match(normalised):
        raise SisrError(f"{url}: {sha256!r} is not a sha256 checksum (64 hexadecimal digits)")
    return normalised


def _normalise_prefix(prefix: str | None, url: str) -> str | None:
    if prefix is None:
        return None
    normalised = prefix.strip().lower()
    if not _PREFIX_PATTERN.match(normalised):
        raise SisrError(f"{url}: {prefix!r} is not the start of a sha256 checksum (4 to 63 hexadecimal digits)")
    return normalised


def _read_recorded_sha256(dest: Path) -> str | None:
    record = recorded_sha256_path(dest)
    if not record.is_file():
        return None
    words = record.read_text(encoding="utf-8").split()
    if not words or not _SHA256_PATTERN.match(words[0].lower()):
        raise SisrError(f"{record}: not a sha256 record; delete it to record the file's hash again")
    return words[0].lower()


def _record_sha256(dest: Path, digest: str) -> None:
    with atomic_write(recorded_sha256_path(dest), "w", overwrite=True) as handle:
        handle.write(f"{digest}  {dest.name}\n")


def _existing_file_is_valid(dest: Path, expected: str | None, prefix: str | None) -> bool:
    actual = sha256_of_file(dest)
    if prefix and not actual.startswith(prefix):
        log.warning("%s: sha256 is %s, which does not start with %s; downloading it again", dest, actual, prefix)
        return False
    if expected is None:
        # A file put there by hand with nothing to check it against: trust it
        # from now on, exactly like a first download.
        _record_sha256(dest, actual)
        log.info("%s: no published sha256; recorded %s (trust on first use)", dest, actual)
        return True
    if actual == expected:
        return True
    log.warning("%s: sha256 is %s, expected %s; downloading it again", dest, actual, expected)
    return False


def _check_digest(
    url: str, part: Path, expected: str | None, recorded: str | None, prefix: str | None, actual: str, dest: Path
) -> None:
    """Delete the download and raise when it fails a check; `dest` is then left as it was."""
    if expected is not None and actual != expected:
        problem = f"checksum mismatch: expected sha256 {expected}, got {actual}"
    elif prefix is not None and not actual.startswith(prefix):
        problem = f"sha256 {actual} does not start with {prefix}, the checksum prefix in its name"
    elif expected is None and recorded is not None and actual != recorded:
        problem = (
            f"the file changed since it was first downloaded: sha256 {actual}, recorded {recorded} in "
            f"{recorded_sha256_path(dest)} (delete that record to trust the new file)"
        )
    else:
        return
    part.unlink(missing_ok=True)
    kept = f"{dest} is left as it was" if dest.exists() else "nothing was kept"
    raise SisrError(
        f"{url}: {problem}; the download was deleted and {kept} (a changed or corrupted file on the server?); "
        f"the next attempt downloads it again"
    )


def _fetch_with_retries(
    url: str, part: Path, dest: Path, progress: bool, timeout: float, retries: int, check: _Check
) -> str:
    for attempt in range(retries + 1):
        try:
            return _fetch_once(url, part, dest, progress, timeout, check)
        except _Interrupted as interruption:
            kept = part.stat().st_size if part.exists() else 0
            if attempt == retries:
                raise SisrError(
                    f"{url}: download interrupted ({interruption}); {kept} bytes are kept in {part} "
                    f"and the next attempt resumes from there"
                ) from None
            log.warning(
                "%s: download interrupted (%s); resuming from byte %d (retry %d of %d)",
                url,
                interruption,
                kept,
                attempt + 1,
                retries,
            )
            time.sleep(min(attempt, 5))
    raise AssertionError("unreachable")


def _fetch_once(url: str, part: Path, dest: Path, progress: bool, timeout: float, check: _Check) -> str:
    """One HTTP request; appends to `part` when the server honours Range."""
    offset = part.stat().st_size if part.exists() else 0
    response = _open(url, offset, dest, timeout, check)
    if response is None:  # 416: the part file is no prefix of the file; start over
        part.unlink()
        offset = 0
        response = _open(url, 0, dest, timeout, check)
        assert response is not None
    with response:
        if offset and response.status == 206 and not _resumes_at(response, offset):
            part.unlink()
            raise _Interrupted(f"asked to resume at byte {offset}, the server sent another range")
        if offset and response.status != 206:
            log.info("%s: the server ignores Range requests; downloading from the start", url)
            offset = 0
        hasher = hashlib.sha256()
        if offset:
            with open(part, "rb") as existing:
                while chunk := existing.read(CHUNK_BYTES):
                    hasher.update(chunk)
        length = _content_length(response)
        total = None if length is None else offset + length
        received = 0
        with open(part, "ab" if offset else "wb") as out, _progress(progress, dest.name, url, total, offset) as advance:
            while True:
                try:
                    chunk = response.read(CHUNK_BYTES)
                except (OSError, http.client.HTTPException) as error:
                    raise _Interrupted(f"{type(error).__name__}: {error}") from error
                if not chunk:
                    break
                out.write(chunk)
                hasher.update(chunk)
                received += len(chunk)
                advance(len(chunk))
            out.flush()
            os.fsync(out.fileno())
    if length is not None and received < length:
        raise _Interrupted(f"connection closed after {received} of {length} bytes")
    return hasher.hexdigest()


def _open(url: str, offset: int, dest: Path, timeout: float, check: _Check) -> http.client.HTTPResponse | None:
    """Start the request; None when the server rejects the range (HTTP 416)."""
    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
    if offset:
        request.add_header("Range", f"bytes={offset}-")
    try:
        return urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as error:
        error.close()
        if error.code == 416 and offset:
            return None
        raise Unreachable(
            f"{url}: the server answered HTTP {error.code} {error.reason}. {_by_hand(url, dest, check)}"
        ) from None
    except (urllib.error.URLError, OSError, http.client.HTTPException) as error:
        reason = getattr(error, "reason", error)
        host = urllib.parse.urlsplit(url).netloc or url
        raise Unreachable(
            f"cannot reach {host} ({reason}): this machine looks offline. {_by_hand(url, dest, check)}"
        ) from None


def _by_hand(url: str, dest: Path, check: _Check) -> str:
    return f"To continue without network, download {url} elsewhere and copy it to {dest}{check.advice()}."


def _resumes_at(response, offset: int) -> bool:
    """True when a 206 answer starts at `offset` (or does not say where it starts)."""
    content_range = response.headers.get("Content-Range", "")
    match = re.match(r"bytes\s+(\d+)-", content_range)
    return match is None or int(match.group(1)) == offset


def _content_length(response) -> int | None:
    value = response.headers.get("Content-Length")
    return int(value) if value is not None and value.strip().isdigit() else None


@contextlib.contextmanager
def _progress(enabled: bool, label: str, url: str, total: int | None, initial: int) -> Iterator:
    """A tqdm bar on a terminal, a few log lines otherwise (CI logs, redirects)."""
    if not enabled:
        yield lambda n: None
        return
    if sys.stderr.isatty():
        from tqdm import tqdm

        with tqdm(
            total=total, initial=initial, unit="B", unit_scale=True, unit_divisor=1024, desc=label, file=sys.stderr
        ) as bar:
            yield bar.update
        return
    log.info("downloading %s (%s)", url, "size unknown" if total is None else f"{total / 2**20:.1f} MiB")
    state = {"done": initial, "next_report": 0.1}

    def advance(n: int) -> None:
        state["done"] += n
        if total and state["done"] / total >= state["next_report"]:
            log.info("%s: %.0f%% of %.1f MiB", label, 100 * state["done"] / total, total / 2**20)
            state["next_report"] = (int(10 * state["done"] / total) + 1) / 10

    yield advance
    log.info("%s: downloaded %.1f MiB", label, state["done"] / 2**20)


# --- extracting --------------------------------------------------------------


def _unpack(archive: Path, staging: Path) -> None:
    try:
        if zipfile.is_zipfile(archive):
            with zipfile.ZipFile(archive) as bundle:
                for name in bundle.namelist():
                    _refuse_escape(archive, name, staging)
                bundle.extractall(staging)
        elif tarfile.is_tarfile(archive):
            with tarfile.open(archive) as bundle:
                members = bundle.getmembers()
                for member in members:
                    _check_tar_member(archive, member, staging)
                if hasattr(tarfile, "data_filter"):
                    bundle.extractall(staging, members=members, filter="data")
                else:  # Python < 3.10.12: the checks above are the only guard
                    bundle.extractall(staging, members=members)
        else:
            raise SisrError(
                f"{archive}: neither a zip nor a tar archive (a truncated download or an "
                f"error page?); delete it and run again"
            )
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, OSError) as error:
        raise SisrError(f"{archive}: cannot extract ({error}); delete it and run again") from None


def _refuse_escape(archive: Path, name: str, staging: Path) -> None:
    root = staging.resolve()
    target = (root / name).resolve()
    if os.path.isabs(name) or re.match(r"^[A-Za-z]:", name) or not target.is_relative_to(root):
        raise SisrError(
            f"{archive}: member {name!r} would be written outside the destination "
            f"folder; refusing to extract this archive"
        )


def _check_tar_member(archive: Path, member: tarfile.TarInfo, staging: Path) -> None:
    _refuse_escape(archive, member.name, staging)
    if member.issym():
        _refuse_escape(archive, str(Path(member.name).parent / member.linkname), staging)
    elif member.islnk():
        _refuse_escape(archive, member.linkname, staging)
    elif not (member.isfile() or member.isdir()):
        raise SisrError(f"{archive}: member {member.name!r} is a device or pipe; refusing to extract this archive")


def _merge_into(source: Path, target: Path) -> None:
    """Move the tree `source` into the existing folder `target`, folder by folder."""
    for entry in source.iterdir():
        destination = target / entry.name
        if entry.is_dir() and not entry.is_symlink() and destination.is_dir():
            _merge_into(entry, destination)
        elif destination.is_dir():
            raise SisrError(f"{destination}: a folder is in the way of a file from the archive")
        else:
            os.replace(entry, destination)
