"""sisr.download: resumable, verified, atomic downloads and safe extraction.

Every transfer goes to a server on 127.0.0.1 started by the test.
"""

from __future__ import annotations

import hashlib
import importlib
import io
import logging
import os
import subprocess
import sys
import tarfile
import threading
import zipfile
from pathlib import Path

import pytest

from httpserver import closed_port_url, serve_directory
from sisr.download import (
    Resource,
    cache_dir,
    download,
    extract,
    extraction_marker,
    fetch_and_extract,
    recorded_sha256_path,
)
from sisr.errors import SisrError

# sisr.data re-exports the function `download`, which hides the module of that name.
download_module = importlib.import_module("sisr.download")

PAYLOAD = os.urandom(300_000)
PAYLOAD_SHA256 = hashlib.sha256(PAYLOAD).hexdigest()


@pytest.fixture
def served(tmp_path):
    """A server offering `payload.bin`, and a destination folder apart from it."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "payload.bin").write_bytes(PAYLOAD)
    with serve_directory(site) as server:
        yield server, tmp_path / "cache" / "payload.bin"


def part_of(dest: Path) -> Path:
    return dest.with_name(dest.name + ".part")


# --- cache location ----------------------------------------------------------


def test_cache_dir_prefers_sisr_cache_then_xdg_then_home(monkeypatch, tmp_path):
    monkeypatch.setenv("SISR_CACHE", str(tmp_path / "explicit"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "explicit"
    monkeypatch.delenv("SISR_CACHE")
    assert cache_dir() == tmp_path / "xdg" / "sisr"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_dir() == tmp_path / "home" / ".cache" / "sisr"


# --- downloading -------------------------------------------------------------


def test_download_writes_the_verified_file_and_no_part(served):
    server, dest = served
    assert download(server.url("payload.bin"), dest, PAYLOAD_SHA256) == dest
    assert dest.read_bytes() == PAYLOAD
    assert not part_of(dest).exists()
    assert [request.range for request in server.requests] == [None]


def test_a_verified_file_is_not_downloaded_again(served):
    server, dest = served
    download(server.url("payload.bin"), dest, PAYLOAD_SHA256)
    download(server.url("payload.bin"), dest, PAYLOAD_SHA256.upper())
    assert len(server.requests) == 1


def test_an_existing_file_with_the_wrong_hash_is_replaced(served):
    server, dest = served
    dest.parent.mkdir(parents=True)
    dest.write_bytes(b"stale")
    download(server.url("payload.bin"), dest, PAYLOAD_SHA256)
    assert dest.read_bytes() == PAYLOAD
    assert len(server.requests) == 1


def test_checksum_mismatch_names_url_and_both_hashes_and_leaves_no_file(served):
    server, dest = served
    wrong = "0" * 64
    with pytest.raises(SisrError) as caught:
        download(server.url("payload.bin"), dest, wrong)
    message = str(caught.value)
    assert server.url("payload.bin") in message
    assert wrong in message and PAYLOAD_SHA256 in message
    assert not dest.exists() and not part_of(dest).exists()


def test_malformed_checksum_is_refused_before_any_request(served):
    server, dest = served
    with pytest.raises(SisrError, match="not a sha256"):
        download(server.url("payload.bin"), dest, "abc123")
    assert server.requests == []


def test_interrupted_download_is_resumed_with_a_range_request(served):
    server, dest = served
    server.fail_after_bytes = 100_000
    download(server.url("payload.bin"), dest, PAYLOAD_SHA256)
    assert dest.read_bytes() == PAYLOAD
    assert [request.range for request in server.requests] == [None, "bytes=100000-"]


def test_interruption_keeps_the_part_file_and_the_next_call_resumes(served):
    server, dest = served
    server.fail_after_bytes, server.failures = 120_000, 1
    with pytest.raises(SisrError) as caught:
        download(server.url("payload.bin"), dest, PAYLOAD_SHA256, retries=0)
    assert str(part_of(dest)) in str(caught.value)
    assert part_of(dest).read_bytes() == PAYLOAD[:120_000]
    assert not dest.exists()

    download(server.url("payload.bin"), dest, PAYLOAD_SHA256)
    assert dest.read_bytes() == PAYLOAD
    assert server.requests[-1].range == "bytes=120000-"


def test_a_server_ignoring_range_makes_the_download_restart_from_zero(served):
    server, dest = served
    server.ignore_range = True
    dest.parent.mkdir(parents=True)
    # Not a prefix of the file: appending the full answer to it would fail the hash.
    part_of(dest).write_bytes(b"x" * 5000)
    download(server.url("payload.bin"), dest, PAYLOAD_SHA256)
    assert dest.read_bytes() == PAYLOAD
    assert server.requests[0].range == "bytes=5000-"


def test_a_part_file_longer_than_the_file_is_discarded(served):
    server, dest = served
    dest.parent.mkdir(parents=True)
    part_of(dest).write_bytes(b"y" * (len(PAYLOAD) + 10))
    download(server.url("payload.bin"), dest, PAYLOAD_SHA256)
    assert dest.read_bytes() == PAYLOAD
    assert [request.range for request in server.requests] == [f"bytes={len(PAYLOAD) + 10}-", None]


def test_offline_error_says_so_and_names_url_and_destination(tmp_path):
    url = closed_port_url("weights.safetensors")
    dest = tmp_path / "cache" / "weights.safetensors"
    with pytest.raises(SisrError) as caught:
        download(url, dest, PAYLOAD_SHA256, timeout=5)
    message = str(caught.value)
    assert "offline" in message and url in message and str(dest) in message
    assert PAYLOAD_SHA256 in message
    assert not dest.exists()


def test_a_server_that_never_answers_times_out_with_the_same_advice(served):
    server, dest = served
    server.delay_s = 3.0
    with pytest.raises(SisrError) as caught:
        download(server.url("payload.bin"), dest, PAYLOAD_SHA256, timeout=0.3)
    assert str(dest) in str(caught.value)


def test_http_error_names_the_status_and_the_destination(served):
    server, dest = served
    with pytest.raises(SisrError) as caught:
        download(server.url("missing.bin"), dest, PAYLOAD_SHA256)
    assert "404" in str(caught.value) and str(dest) in str(caught.value)


def test_without_checksum_the_first_hash_is_recorded_and_then_enforced(served, tmp_path):
    server, dest = served
    download(server.url("payload.bin"), dest, None)
    record = recorded_sha256_path(dest)
    assert record.read_text().split() == [PAYLOAD_SHA256, dest.name]

    # The file on the server changes: a new download must be refused.
    (tmp_path / "site" / "payload.bin").write_bytes(PAYLOAD[::-1])
    dest.unlink()
    with pytest.raises(SisrError) as caught:
        download(server.url("payload.bin"), dest, None)
    assert str(record) in str(caught.value) and PAYLOAD_SHA256 in str(caught.value)
    assert not dest.exists() and not part_of(dest).exists()


def test_without_checksum_an_existing_file_is_trusted_and_recorded(served):
    server, dest = served
    dest.parent.mkdir(parents=True)
    dest.write_bytes(b"copied by hand")
    download(server.url("payload.bin"), dest, None)
    assert server.requests == []
    assert recorded_sha256_path(dest).read_text().split()[0] == hashlib.sha256(b"copied by hand").hexdigest()


# --- replacing a cached file --------------------------------------------------


def test_a_failed_checksum_leaves_the_cached_file_as_it_was_and_says_so(served, tmp_path):
    server, dest = served
    dest.parent.mkdir(parents=True)
    dest.write_bytes(b"stale")
    (tmp_path / "site" / "payload.bin").write_bytes(b"corrupted on the server")
    with pytest.raises(SisrError) as caught:
        download(server.url("payload.bin"), dest, PAYLOAD_SHA256)
    message = str(caught.value)
    assert f"the download was deleted and {dest} is left as it was" in message
    assert "the next attempt downloads it again" in message
    assert dest.read_bytes() == b"stale" and not part_of(dest).exists()


def test_force_downloads_again_and_replaces_the_file_once_verified(served):
    server, dest = served
    download(server.url("payload.bin"), dest, PAYLOAD_SHA256)
    part_of(dest).write_bytes(PAYLOAD[:1000])  # an earlier attempt's rest: force starts afresh
    assert download(server.url("payload.bin"), dest, PAYLOAD_SHA256, force=True) == dest
    assert [request.range for request in server.requests] == [None, None]
    assert dest.read_bytes() == PAYLOAD and not part_of(dest).exists()


def test_force_keeps_a_good_file_when_the_new_download_fails_its_checksum(served, tmp_path):
    server, dest = served
    download(server.url("payload.bin"), dest, PAYLOAD_SHA256)
    (tmp_path / "site" / "payload.bin").write_bytes(b"corrupted on the server")
    with pytest.raises(SisrError, match="checksum mismatch"):
        download(server.url("payload.bin"), dest, PAYLOAD_SHA256, force=True)
    assert dest.read_bytes() == PAYLOAD and not part_of(dest).exists()


def test_force_keeps_a_trusted_file_when_the_new_download_differs_from_its_record(served, tmp_path):
    server, dest = served
    download(server.url("payload.bin"), dest, None)
    (tmp_path / "site" / "payload.bin").write_bytes(PAYLOAD[::-1])
    with pytest.raises(SisrError, match="changed since it was first downloaded"):
        download(server.url("payload.bin"), dest, None, force=True)
    assert dest.read_bytes() == PAYLOAD
    assert recorded_sha256_path(dest).read_text().split()[0] == PAYLOAD_SHA256


# --- checksum prefixes (torch.hub file names) ----------------------------------


def test_a_prefix_is_checked_before_the_file_is_put_in_place(served):
    server, dest = served
    wrong = "0000" if not PAYLOAD_SHA256.startswith("0000") else "1111"
    with pytest.raises(SisrError, match=f"sha256 {PAYLOAD_SHA256} does not start with {wrong}"):
        download(server.url("payload.bin"), dest, None, sha256_prefix=wrong)
    assert not dest.exists() and not part_of(dest).exists() and not recorded_sha256_path(dest).exists()

    download(server.url("payload.bin"), dest, None, sha256_prefix=PAYLOAD_SHA256[:8].upper())
    assert dest.read_bytes() == PAYLOAD
    assert recorded_sha256_path(dest).read_text().split()[0] == PAYLOAD_SHA256


def test_an_existing_file_that_fails_its_prefix_is_downloaded_again(served):
    server, dest = served
    dest.parent.mkdir(parents=True)
    dest.write_bytes(b"copied by hand, wrongly")
    download(server.url("payload.bin"), dest, None, sha256_prefix=PAYLOAD_SHA256[:8])
    assert dest.read_bytes() == PAYLOAD and len(server.requests) == 1


def test_a_sha256_and_a_prefix_that_disagree_are_refused_before_any_request(served):
    server, dest = served
    other = "0000" if not PAYLOAD_SHA256.startswith("0000") else "1111"
    with pytest.raises(SisrError, match="does not start with the prefix"):
        download(server.url("payload.bin"), dest, PAYLOAD_SHA256, sha256_prefix=other)
    with pytest.raises(SisrError, match="not the start of a sha256"):
        download(server.url("payload.bin"), dest, None, sha256_prefix="xyz")
    assert server.requests == []


def test_the_offline_advice_names_the_prefix_when_that_is_all_there_is(tmp_path):
    with pytest.raises(download_module.Unreachable) as caught:
        download(closed_port_url("w.pt"), tmp_path / "w.pt", None, sha256_prefix="abcd1234", timeout=5)
    assert "its sha256 must start with abcd1234" in str(caught.value)


@pytest.mark.parametrize(("value", "trusted"), [("", False), ("0", False), ("1", True), ("yes", True)])
def test_trusting_unpinned_downloads_is_read_from_the_environment(monkeypatch, value, trusted):
    monkeypatch.setenv("SISR_TRUST_UNPINNED", value)
    assert download_module.trust_unpinned_from_env() is trusted
    monkeypatch.setenv("SISR_TRUST_UNPINNED", "maybe")
    with pytest.raises(SisrError, match="SISR_TRUST_UNPINNED='maybe'"):
        download_module.trust_unpinned_from_env()


def test_progress_is_logged_in_lines_when_stderr_is_not_a_terminal(served, caplog):
    server, dest = served
    with caplog.at_level(logging.INFO, logger="sisr"):
        download(server.url("payload.bin"), dest, PAYLOAD_SHA256)
    text = caplog.text
    assert "downloading " + server.url("payload.bin") in text
    assert "100%" in text


def test_progress_is_a_bar_on_a_terminal(served, monkeypatch):
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    terminal = Terminal()
    monkeypatch.setattr("sys.stderr", terminal)
    server, dest = served
    download(server.url("payload.bin"), dest, PAYLOAD_SHA256)
    assert "payload.bin" in terminal.getvalue() and "100%" in terminal.getvalue()


def test_no_progress_output_when_disabled(served, caplog, monkeypatch):
    server, dest = served
    with caplog.at_level(logging.INFO, logger="sisr"):
        download(server.url("payload.bin"), dest, PAYLOAD_SHA256, progress=False)
    assert caplog.text == ""


# --- extracting --------------------------------------------------------------


def _at_once(count: int, work) -> list:
    """Run `work()` in `count` threads released together; their results, or the first error."""
    start = threading.Barrier(count)
    results: list = [None] * count
    errors: list[BaseException] = []

    def run(index: int) -> None:
        start.wait()
        try:
            results[index] = work()
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=run, args=(index,)) for index in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    if errors:
        raise errors[0]
    return results


@pytest.mark.parametrize("checksum", [PAYLOAD_SHA256, None], ids=["sha256", "trust-on-first-use"])
def test_simultaneous_downloads_of_one_file_fetch_it_once(served, checksum):
    """Two callers at once (a torchrun job's ranks): one transfer, and both get the whole file.

    Without the lock both would append to the same .part file (a corrupt file or a checksum error).
    """
    server, dest = served
    server.delay_s = 0.5  # both callers are surely waiting on the server, or on each other
    paths = _at_once(3, lambda: download(server.url("payload.bin"), dest, checksum, progress=False))
    assert paths == [dest] * 3
    assert dest.read_bytes() == PAYLOAD
    assert len(server.requests) == 1
    assert not part_of(dest).exists()


def test_simultaneous_extractions_into_one_folder_unpack_once(tmp_path, monkeypatch):
    archive = make_zip(tmp_path / "data.zip", {"top/a.txt": b"a" * 1000, "top/b.txt": b"b"})
    unpacked = []
    real_unpack = download_module._unpack

    def slow_unpack(archive_path, staging):
        unpacked.append(archive_path)
        real_unpack(archive_path, staging)
        threading.Event().wait(0.3)  # hold the lock long enough for the others to arrive

    monkeypatch.setattr(download_module, "_unpack", slow_unpack)
    dest = tmp_path / "out"
    assert _at_once(3, lambda: extract(archive, dest)) == [dest] * 3
    assert len(unpacked) == 1
    assert (dest / "top" / "a.txt").read_bytes() == b"a" * 1000
    assert (dest / "top" / "b.txt").read_bytes() == b"b"


def make_zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as bundle:
        for name, data in members.items():
            bundle.writestr(name, data)
    return path


def make_tar(path: Path, members: dict[str, bytes], mode: str = "w:gz") -> Path:
    with tarfile.open(path, mode) as bundle:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            bundle.addfile(info, io.BytesIO(data))
    return path


@pytest.mark.parametrize("maker, filename", [(make_zip, "set.zip"), (make_tar, "set.tar.gz")])
def test_extract_unpacks_zip_and_tar_into_the_destination(tmp_path, maker, filename):
    archive = maker(tmp_path / filename, {"Set/HR/a.png": b"A", "Set/HR/b.png": b"BB"})
    dest = tmp_path / "out"
    assert extract(archive, dest) == dest
    assert (dest / "Set" / "HR" / "a.png").read_bytes() == b"A"
    assert (dest / "Set" / "HR" / "b.png").read_bytes() == b"BB"
    assert extraction_marker(filename, dest).exists()
    assert [p.name for p in tmp_path.iterdir() if ".extracting." in p.name] == []  # the staging folder is gone


def test_extract_is_done_once(tmp_path):
    archive = make_zip(tmp_path / "set.zip", {"a.txt": b"A"})
    dest = extract(archive, tmp_path / "out")
    (dest / "a.txt").unlink()
    extract(archive, dest)
    assert not (dest / "a.txt").exists()


def test_an_extraction_removes_the_staging_folder_a_killed_extraction_left(tmp_path):
    ended = subprocess.Popen([sys.executable, "-c", "pass"])
    ended.wait()
    datasets = tmp_path / "datasets"
    left = datasets / f".set.zip.extracting.{ended.pid}.abcdefgh.tmp"  # as a SIGKILL during extraction leaves it
    (left / "Set").mkdir(parents=True)
    (left / "Set" / "a.png").write_bytes(b"half")
    extract(make_zip(tmp_path / "set.zip", {"Set/a.png": b"A"}), datasets / "Set5")
    assert sorted(path.name for path in datasets.iterdir()) == [".Set5.lock", "Set5"]


def test_archives_sharing_a_destination_are_merged(tmp_path):
    """DIV2K's HR and per-scale LR zips all extract into one folder."""
    hr = make_zip(tmp_path / "hr.zip", {"D_HR/0801.png": b"h"})
    lr2 = make_zip(tmp_path / "lr2.zip", {"D_LR/X2/0801x2.png": b"2"})
    lr4 = make_zip(tmp_path / "lr4.zip", {"D_LR/X4/0801x4.png": b"4"})
    dest = tmp_path / "DIV2K"
    for archive in (hr, lr2, lr4):
        extract(archive, dest)
    assert (dest / "D_HR" / "0801.png").read_bytes() == b"h"
    assert (dest / "D_LR" / "X2" / "0801x2.png").read_bytes() == b"2"
    assert (dest / "D_LR" / "X4" / "0801x4.png").read_bytes() == b"4"


@pytest.mark.parametrize("name", ["../evil.txt", "Set/../../evil.txt", "/tmp/sisr-evil.txt"])
@pytest.mark.parametrize("maker, filename", [(make_zip, "bad.zip"), (make_tar, "bad.tar")])
def test_extract_refuses_members_escaping_the_destination(tmp_path, maker, filename, name):
    archive = maker(tmp_path / filename, {"Set/ok.txt": b"ok", name: b"evil"})
    dest = tmp_path / "inner" / "out"
    with pytest.raises(SisrError, match="outside the destination"):
        extract(archive, dest)
    assert not dest.exists()
    assert not (tmp_path / "inner" / "evil.txt").exists() and not (tmp_path / "evil.txt").exists()
    assert not Path("/tmp/sisr-evil.txt").exists()


def test_extract_refuses_a_symlink_pointing_outside(tmp_path):
    archive = tmp_path / "link.tar"
    with tarfile.open(archive, "w") as bundle:
        link = tarfile.TarInfo("Set/escape")
        link.type = tarfile.SYMTYPE
        link.linkname = "../../outside"
        bundle.addfile(link)
    with pytest.raises(SisrError, match="outside the destination"):
        extract(archive, tmp_path / "out")


def test_extract_names_a_file_that_is_no_archive(tmp_path):
    bogus = tmp_path / "benchmark.tar"
    bogus.write_bytes(b"<html>Service unavailable</html>")
    with pytest.raises(SisrError, match="neither a zip nor a tar"):
        extract(bogus, tmp_path / "out")


def test_fetch_and_extract_downloads_into_the_cache_then_skips_the_archive(tmp_path, monkeypatch):
    site = tmp_path / "site"
    site.mkdir()
    archive = make_zip(site / "pack.zip", {"pack/a.txt": b"A"})
    monkeypatch.setenv("SISR_CACHE", str(tmp_path / "cache"))
    with serve_directory(site) as server:
        digest = hashlib.sha256(archive.read_bytes()).hexdigest()
        resource = Resource(server.url("pack.zip"), digest, "pack.zip")
        dest = fetch_and_extract(resource, tmp_path / "cache" / "datasets")
        assert (dest / "pack" / "a.txt").read_bytes() == b"A"
        assert (tmp_path / "cache" / "downloads" / "pack.zip").is_file()
        fetch_and_extract(resource, dest)
        assert len(server.requests) == 1


def test_every_published_file_sisr_downloads_outside_the_zoo_is_pinned_by_a_full_sha256():
    """VGG19, VGG16, LPIPS's lin layers, the benchmark archives and DIV2K: no trust on first use."""
    import re

    from sisr import lpips
    from sisr.data import div2k, testsets
    from sisr.models import vgg

    resources = [vgg.VGG19_WEIGHTS, lpips.VGG16_WEIGHTS, lpips.LPIPS_LIN_WEIGHTS]
    resources += [value for value in vars(testsets).values() if isinstance(value, Resource)]
    resources += list(testsets.DIV2K_VALID_LR_BICUBIC_ARCHIVES.values())
    full = re.compile(r"[0-9a-f]{64}")
    assert len(resources) >= 5
    for resource in resources:
        assert resource.sha256 is not None and full.fullmatch(resource.sha256), resource.url
    assert div2k.DIV2K_SHA256 and all(full.fullmatch(digest or "") for digest in div2k.DIV2K_SHA256.values())
