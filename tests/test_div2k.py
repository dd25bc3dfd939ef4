"""DIV2K: archives fetched from a local server, verified, extracted once, paired by name."""

from __future__ import annotations

import hashlib
import re
import zipfile
from pathlib import Path

import numpy as np
import pytest

from httpserver import closed_port_url, serve_directory
from sisr.data import div2k
from sisr.data.div2k import DIV2K_SHA256, Div2kSource, div2k_pairs, ensure_div2k
from sisr.errors import SisrError
from sisr.image_io import write_image


def _png_bytes(tmp: Path, array: np.ndarray) -> bytes:
    path = tmp / "scratch.png"
    write_image(path, array, overwrite=True)
    return path.read_bytes()


def _make_archives(folder: Path, scale: int = 2, ids=(1, 2, 3)) -> dict[str, str]:
    """Small zips in the real archives' layout; returns their sha256 sums."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    hr_zip = folder / "DIV2K_train_HR.zip"
    lr_zip = folder / f"DIV2K_train_LR_bicubic_X{scale}.zip"
    with zipfile.ZipFile(hr_zip, "w") as hr_archive, zipfile.ZipFile(lr_zip, "w") as lr_archive:
        for number in ids:
            hr = rng.integers(0, 256, (24, 32, 3), dtype=np.uint8)
            hr_archive.writestr(f"DIV2K_train_HR/{number:04d}.png", _png_bytes(folder, hr))
            lr_archive.writestr(
                f"DIV2K_train_LR_bicubic/X{scale}/{number:04d}x{scale}.png", _png_bytes(folder, hr[::scale, ::scale])
            )
    (folder / "scratch.png").unlink()
    return {path.name: hashlib.sha256(path.read_bytes()).hexdigest() for path in (hr_zip, lr_zip)}


def test_published_checksums_cover_every_archive():
    for subset in ("train", "valid"):
        assert re.fullmatch(r"[0-9a-f]{64}", DIV2K_SHA256[div2k.hr_archive(subset)])
        for downgrade in div2k.DOWNGRADES:
            for scale in div2k.SCALES:
                assert re.fullmatch(r"[0-9a-f]{64}", DIV2K_SHA256[div2k.lr_archive(subset, downgrade, scale)])
    assert len(set(DIV2K_SHA256.values())) == len(DIV2K_SHA256)


def test_download_verify_extract_once_and_pair(tmp_path):
    served = tmp_path / "server"
    sums = _make_archives(served)
    root = tmp_path / "data"
    with serve_directory(served) as server:
        source = Div2kSource(server.base_url + "/", sums)
        pairs = div2k_pairs("train", 2, "bicubic", root, progress=False, source=source)
        assert [pair.name for pair in pairs] == ["0001", "0002", "0003"]
        assert pairs[0].hr_path == root / "DIV2K" / "DIV2K_train_HR" / "0001.png"
        assert pairs[0].lr_path == root / "DIV2K" / "DIV2K_train_LR_bicubic" / "X2" / "0001x2.png"
        assert sorted(request.path for request in server.requests) == [
            "/DIV2K_train_HR.zip",
            "/DIV2K_train_LR_bicubic_X2.zip",
        ]
        assert (root / "downloads" / "DIV2K_train_HR.zip").is_file()

        again = div2k_pairs("train", 2, "bicubic", root, limit=2, progress=False, source=source)
        assert [pair.name for pair in again] == ["0001", "0002"]
        assert len(server.requests) == 2  # neither downloaded nor extracted again


def test_a_wrong_checksum_stops_before_extracting(tmp_path):
    served = tmp_path / "server"
    sums = _make_archives(served)
    sums["DIV2K_train_HR.zip"] = "0" * 64
    with serve_directory(served) as server, pytest.raises(SisrError, match="checksum mismatch"):
        ensure_div2k("train", 2, data_root=tmp_path / "data", progress=False, source=Div2kSource(server.base_url, sums))
    assert not (tmp_path / "data" / "DIV2K" / "DIV2K_train_HR").exists()


def test_folders_unpacked_by_hand_are_used_without_network(tmp_path):
    root = tmp_path / "mine"
    write_image(root / "DIV2K_train_HR" / "0001.png", np.zeros((8, 8, 3), np.uint8))
    write_image(root / "DIV2K_train_LR_unknown" / "X4" / "0001x4.png", np.zeros((2, 2, 3), np.uint8))
    offline = Div2kSource(closed_port_url("").rstrip("/"), {})
    hr, lr = ensure_div2k("train", 4, "unknown", root, progress=False, source=offline)
    assert hr == root / "DIV2K_train_HR" and lr == root / "DIV2K_train_LR_unknown" / "X4"


def test_missing_data_without_download_names_the_folder_and_archive(tmp_path):
    with pytest.raises(SisrError, match=r"DIV2K_valid_HR: DIV2K images not found.*DIV2K_valid_HR.zip"):
        ensure_div2k("valid", 3, data_root=tmp_path, download=False)


def test_unknown_subset_downgrade_or_scale(tmp_path):
    with pytest.raises(SisrError, match="subset"):
        ensure_div2k("test", 2, data_root=tmp_path)
    with pytest.raises(SisrError, match="downgrade"):
        ensure_div2k("train", 2, "mild", data_root=tmp_path)
    with pytest.raises(SisrError, match="x2, x3 and x4, not x8"):
        ensure_div2k("train", 8, data_root=tmp_path)
