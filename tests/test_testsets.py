"""sisr.data.testsets: finding test sets and reading them as HR/LR pairs."""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
import io
import re
import shutil
import sys
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from httpserver import closed_port_url, serve_directory
from sisr.data import testsets as benchmarks
from sisr.data.testsets import BENCHMARKS, find_spec, load_benchmark, load_folder, read_image
from sisr.download import Resource
from sisr.errors import SisrError


def save(path: Path, array: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)
    return path


def random_image(height: int, width: int, channels: int | None = 3, seed: int = 0) -> np.ndarray:
    shape = (height, width) if channels is None else (height, width, channels)
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def imresize_or_skip():
    try:
        from sisr.imaging import matlab_imresize  # noqa: F401
    except ImportError:
        pytest.skip("sisr.imaging.matlab_imresize is not available yet")


@pytest.fixture
def isolated_cache(tmp_path, monkeypatch) -> Path:
    cache = tmp_path / "cache"
    monkeypatch.setenv("SISR_CACHE", str(cache))
    return cache


# --- the registry ------------------------------------------------------------


def test_registry_names_aliases_and_checksums_are_well_formed():
    assert set(BENCHMARKS) == {"Set5", "Set14", "BSD100", "Urban100", "Manga109", "DIV2K-valid"}
    assert find_spec("b100").name == "BSD100"
    assert find_spec("div2k_valid").name == "DIV2K-valid"
    assert find_spec("SET5").name == "Set5"
    assert find_spec("Set6") is None
    for spec in BENCHMARKS.values():
        resources = [*spec.hr_archives, *spec.lr_archives.values()]
        assert resources or spec.manual_download, spec.name
        for resource in resources:
            assert resource.url.startswith("https://") and resource.url.endswith(resource.filename)
            assert resource.sha256 is None or re.fullmatch(r"[0-9a-f]{64}", resource.sha256)


# --- the shared benchmark folder (MATLAB-made LR images) -----------------------


def test_shared_set5_x4_has_five_pairs_with_matching_sizes(benchmarks_dir):
    test_set = load_benchmark("Set5", 4, root=benchmarks_dir)
    assert test_set.name == "Set5" and len(test_set) == 5
    assert [pair.name for pair in test_set.pairs] == ["baby", "bird", "butterfly", "head", "woman"]
    for name, hr, lr in test_set.iter_pairs():
        assert hr.dtype == np.uint8 and lr.dtype == np.uint8
        assert hr.shape == (lr.shape[0] * 4, lr.shape[1] * 4, 3), name
    # woman is 228x344: both sides already divide by 4, so nothing is cropped.
    stored = np.asarray(Image.open(benchmarks_dir / "Set5" / "HR" / "woman.png"))
    assert np.array_equal(hr, stored)


def test_shared_set14_x3_crops_hr_and_keeps_bridge_grayscale(benchmarks_dir):
    pairs = {name: (hr, lr) for name, hr, lr in load_benchmark(benchmarks_dir / "Set14", 3).iter_pairs()}
    assert len(pairs) == 14
    hr, lr = pairs["bridge"]  # 512x512 grayscale: 170x170 at x3, HR cropped to 510x510
    assert hr.shape == (510, 510) and lr.shape == (170, 170)
    stored = np.asarray(Image.open(benchmarks_dir / "Set14" / "HR" / "bridge.png"))
    assert np.array_equal(hr, stored[:510, :510])


def test_alias_finds_bsd100_under_the_data_root(benchmarks_dir):
    test_set = load_benchmark("B100", 2, root=benchmarks_dir)
    assert test_set.name == "BSD100" and len(test_set) == 100
    assert all(pair.lr_path is not None for pair in test_set.pairs)


def test_generated_lr_matches_the_matlab_made_lr(benchmarks_dir, tmp_path):
    imresize_or_skip()
    (tmp_path / "Set5").mkdir()
    shutil.copytree(benchmarks_dir / "Set5" / "HR", tmp_path / "Set5" / "HR")
    test_set = load_benchmark(tmp_path / "Set5", 3)
    assert all(pair.lr_path is None for pair in test_set.pairs)
    for name, hr, lr in test_set.iter_pairs():
        matlab = np.asarray(Image.open(benchmarks_dir / "Set5" / "LR_bicubic" / "X3" / f"{name}.png"))
        assert lr.shape == matlab.shape and hr.shape == (lr.shape[0] * 3, lr.shape[1] * 3, 3)
        assert np.abs(lr.astype(int) - matlab.astype(int)).max() <= 1, name


# --- local layouts -----------------------------------------------------------


def test_edsr_package_layout_with_scale_suffixed_lr_names(tmp_path):
    hr = random_image(10, 13)
    lr = random_image(5, 6, seed=1)
    save(tmp_path / "Mine" / "HR" / "a.png", hr)
    save(tmp_path / "Mine" / "LR_bicubic" / "X2" / "ax2.png", lr)
    test_set = load_benchmark(tmp_path / "Mine", 2)
    assert test_set.name == "Mine"
    ((name, got_hr, got_lr),) = list(test_set.iter_pairs())
    assert name == "a"
    assert np.array_equal(got_hr, hr[:10, :12])  # 13 columns -> 6 LR columns -> 12 HR columns
    assert np.array_equal(got_lr, lr)


def test_div2k_layout(tmp_path):
    hr = random_image(16, 12)
    lr = random_image(4, 3, seed=2)
    save(tmp_path / "DIV2K" / "DIV2K_valid_HR" / "0801.png", hr)
    save(tmp_path / "DIV2K" / "DIV2K_valid_LR_bicubic" / "X4" / "0801x4.png", lr)
    ((name, got_hr, got_lr),) = list(load_benchmark("DIV2K-valid", 4, root=tmp_path).iter_pairs())
    assert name == "0801"
    assert np.array_equal(got_hr, hr) and np.array_equal(got_lr, lr)


def test_a_plain_folder_holds_hr_only_and_lr_is_made(tmp_path):
    save(tmp_path / "photos" / "p.png", random_image(9, 11))
    test_set = load_folder(tmp_path / "photos", 2)
    assert test_set.pairs[0].lr_path is None
    imresize_or_skip()
    ((_, hr, lr),) = list(test_set.iter_pairs())
    assert hr.shape == (8, 10, 3) and lr.shape == (4, 5, 3)


def test_grayscale_lr_is_made_as_grayscale(tmp_path):
    save(tmp_path / "gray" / "HR" / "g.png", random_image(8, 8, channels=None))
    imresize_or_skip()
    ((_, hr, lr),) = list(load_benchmark(tmp_path / "gray", 2).iter_pairs())
    assert hr.shape == (8, 8) and lr.shape == (4, 4)


def test_a_data_root_is_searched_before_the_cache(tmp_path, isolated_cache, monkeypatch):
    unreachable = Resource(closed_port_url("benchmark.tar"), None, "benchmark.tar")
    spec = dataclasses.replace(BENCHMARKS["Set5"], hr_archives=(unreachable,))
    monkeypatch.setitem(BENCHMARKS, "Set5", spec)
    save(tmp_path / "root" / "benchmark" / "Set5" / "HR" / "baby.png", random_image(4, 4))
    save(tmp_path / "root" / "benchmark" / "Set5" / "LR_bicubic" / "X2" / "babyx2.png", random_image(2, 2))
    assert len(load_benchmark("set5", 2, root=tmp_path / "root")) == 1
    assert not isolated_cache.exists()


# --- image reading -----------------------------------------------------------


def test_palette_rgba_and_16_bit_images_become_8_bit(tmp_path):
    rgb = random_image(4, 5)
    palette = Image.fromarray(rgb).convert("P", palette=Image.Palette.ADAPTIVE, colors=8)
    palette.save(tmp_path / "p.png")
    assert np.array_equal(read_image(tmp_path / "p.png"), np.asarray(palette.convert("RGB")))

    rgba = np.dstack([rgb, np.full((4, 5), 7, np.uint8)])
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    assert np.array_equal(read_image(tmp_path / "a.png"), rgb)

    wide = np.array([[0, 257, 65535, 128 * 257 + 200]], dtype=np.uint16)
    Image.fromarray(wide).save(tmp_path / "w.png")
    assert read_image(tmp_path / "w.png").tolist() == [[0, 1, 255, 129]]


# --- errors ------------------------------------------------------------------


def test_a_missing_folder_or_unknown_name_is_an_error(tmp_path):
    with pytest.raises(SisrError, match="no such folder"):
        load_benchmark(tmp_path / "nowhere" / "Set5x", 4)
    with pytest.raises(SisrError, match="Set5, Set14, BSD100"):
        load_benchmark("Set6", 4, root=tmp_path)


def test_a_folder_without_images_is_an_error(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(SisrError, match="no test images"):
        load_benchmark(tmp_path / "empty", 2)


def test_mismatched_lr_size_names_both_files_and_sizes(tmp_path):
    hr_path = save(tmp_path / "S" / "HR" / "a.png", random_image(12, 12))
    lr_path = save(tmp_path / "S" / "LR_bicubic" / "X4" / "a.png", random_image(4, 3))
    test_set = load_benchmark(tmp_path / "S", 4)
    with pytest.raises(SisrError) as caught:
        list(test_set.iter_pairs())
    message = str(caught.value)
    assert str(hr_path) in message and str(lr_path) in message
    assert "3x4" in message and "12x12" in message


def test_a_missing_lr_file_in_an_existing_lr_folder_is_an_error(tmp_path):
    save(tmp_path / "S" / "HR" / "a.png", random_image(4, 4))
    save(tmp_path / "S" / "HR" / "b.png", random_image(4, 4))
    save(tmp_path / "S" / "LR_bicubic" / "X2" / "a.png", random_image(2, 2))
    with pytest.raises(SisrError, match=r"b\.png: no LR image"):
        load_benchmark(tmp_path / "S", 2)


def test_an_unreadable_image_is_named(tmp_path):
    save(tmp_path / "S" / "HR" / "a.png", random_image(4, 4))
    broken = tmp_path / "S" / "HR" / "b.png"
    broken.write_bytes(b"not a png")
    for name in ("a", "b"):
        save(tmp_path / "S" / "LR_bicubic" / "X2" / f"{name}.png", random_image(2, 2))
    test_set = load_benchmark(tmp_path / "S", 2)
    with pytest.raises(SisrError, match=re.escape(str(broken))):
        list(test_set.iter_pairs())


# --- downloading into the cache ----------------------------------------------


def tar_of_images(path: Path, images: dict[str, np.ndarray]) -> Path:
    with tarfile.open(path, "w") as bundle:
        for name, array in images.items():
            data = io.BytesIO()
            Image.fromarray(array).save(data, format="PNG")
            info = tarfile.TarInfo(name)
            info.size = data.tell()
            data.seek(0)
            bundle.addfile(info, data)
    return path


def zip_of_images(path: Path, images: dict[str, np.ndarray]) -> Path:
    with zipfile.ZipFile(path, "w") as bundle:
        for name, array in images.items():
            data = io.BytesIO()
            Image.fromarray(array).save(data, format="PNG")
            bundle.writestr(name, data.getvalue())
    return path


def served_resource(server, archive: Path) -> Resource:
    return Resource(server.url(archive.name), hashlib.sha256(archive.read_bytes()).hexdigest(), archive.name)


def test_a_set_is_downloaded_into_the_cache_once(tmp_path, isolated_cache, monkeypatch):
    site = tmp_path / "site"
    site.mkdir()
    hr, lr = random_image(8, 6), random_image(4, 3, seed=3)
    archive = tar_of_images(
        site / "benchmark.tar",
        {
            "benchmark/Set5/HR/baby.png": hr,
            "benchmark/Set5/LR_bicubic/X2/babyx2.png": lr,
        },
    )
    with serve_directory(site) as server:
        spec = dataclasses.replace(BENCHMARKS["Set5"], hr_archives=(served_resource(server, archive),))
        monkeypatch.setitem(BENCHMARKS, "Set5", spec)
        test_set = load_benchmark("Set5", 2, progress=False)
        assert test_set.folder == isolated_cache / "datasets" / "benchmark" / "Set5"
        ((name, got_hr, got_lr),) = list(test_set.iter_pairs())
        assert name == "baby" and np.array_equal(got_hr, hr) and np.array_equal(got_lr, lr)
        load_benchmark("Set5", 2, progress=False)
        assert len(server.requests) == 1


def test_div2k_valid_fetches_hr_and_only_the_lr_archive_of_the_scale(tmp_path, isolated_cache, monkeypatch):
    site = tmp_path / "site"
    site.mkdir()
    hr = random_image(12, 12)
    hr_zip = zip_of_images(site / "DIV2K_valid_HR.zip", {"DIV2K_valid_HR/0801.png": hr})
    lr_zips = {
        scale: zip_of_images(
            site / f"DIV2K_valid_LR_bicubic_X{scale}.zip",
            {f"DIV2K_valid_LR_bicubic/X{scale}/0801x{scale}.png": random_image(12 // scale, 12 // scale)},
        )
        for scale in (2, 3)
    }
    with serve_directory(site) as server:
        spec = dataclasses.replace(
            BENCHMARKS["DIV2K-valid"],
            hr_archives=(served_resource(server, hr_zip),),
            lr_archives={scale: served_resource(server, path) for scale, path in lr_zips.items()},
        )
        monkeypatch.setitem(BENCHMARKS, "DIV2K-valid", spec)
        assert load_benchmark("DIV2K", 2, progress=False).pairs[0].lr_path.name == "0801x2.png"
        assert load_benchmark("DIV2K", 3, progress=False).pairs[0].lr_path.name == "0801x3.png"
        assert [request.path for request in server.requests] == [
            "/DIV2K_valid_HR.zip",
            "/DIV2K_valid_LR_bicubic_X2.zip",
            "/DIV2K_valid_LR_bicubic_X3.zip",
        ]
    # Extracted into one folder, in DIV2K's own layout.
    assert sorted(p.name for p in (isolated_cache / "datasets" / "DIV2K").iterdir() if p.is_dir()) == [
        "DIV2K_valid_HR",
        "DIV2K_valid_LR_bicubic",
    ]


def test_offline_download_names_the_archive_path_to_fill_by_hand(isolated_cache, monkeypatch):
    url = closed_port_url("benchmark.tar")
    unreachable = Resource(url, "a" * 64, "benchmark.tar")
    spec = dataclasses.replace(BENCHMARKS["Urban100"], hr_archives=(unreachable,))
    monkeypatch.setitem(BENCHMARKS, "Urban100", spec)
    with pytest.raises(SisrError) as caught:
        load_benchmark("Urban100", 4, progress=False)
    message = str(caught.value)
    assert "offline" in message and url in message
    assert str(isolated_cache / "downloads" / "benchmark.tar") in message


def test_manga109_explains_where_to_get_it_and_where_to_put_it(isolated_cache):
    with pytest.raises(SisrError) as caught:
        load_benchmark("Manga109", 4)
    assert "manga109.org" in str(caught.value)
    assert str(isolated_cache / "datasets" / "Manga109" / "HR") in str(caught.value)


def test_manga109_put_in_the_cache_by_hand_is_used(isolated_cache):
    save(isolated_cache / "datasets" / "Manga109" / "HR" / "Akuhamu.png", random_image(8, 8))
    assert [pair.name for pair in load_benchmark("manga109", 4).pairs] == ["Akuhamu"]


def test_sets_with_lr_files_load_without_the_imaging_package(tmp_path, monkeypatch):
    """matlab_imresize is imported only when an LR image must be made."""
    save(tmp_path / "S" / "HR" / "a.png", random_image(4, 4))
    save(tmp_path / "S" / "LR_bicubic" / "X2" / "a.png", random_image(2, 2))
    monkeypatch.setitem(sys.modules, "sisr.imaging", None)  # any import of it now fails
    # A fresh copy of the module, executed while sisr.imaging cannot be imported.
    probe_name = "sisr.data._benchmarks_probe"
    spec = importlib.util.spec_from_file_location(probe_name, benchmarks.__file__)
    probe = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, probe_name, probe)
    spec.loader.exec_module(probe)
    assert len(list(probe.load_benchmark(tmp_path / "S", 2).iter_pairs())) == 1
