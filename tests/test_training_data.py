"""Training data: pairing, checks before training, decoding cache, aligned patches, deterministic order."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

from sisr.data.training import (
    PatchSamples,
    StepSampler,
    TrainingPair,
    augment,
    hr_only_pairs,
    paired_folders,
    patch_loader,
    prepare_training_images,
)
from sisr.errors import SisrError
from sisr.image_io import read_image, write_image


def _noise(height: int, width: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def _subsampled_pairs(tmp_path: Path, scale: int, sizes: list[tuple[int, int]]) -> list[TrainingPair]:
    """HR noise images with LR = HR[::s, ::s]: an LR patch must equal its HR patch subsampled."""
    hr_dir, lr_dir = tmp_path / "hr", tmp_path / "lr"
    for index, (height, width) in enumerate(sizes):
        hr = _noise(height, width, index)
        write_image(hr_dir / f"img{index}.png", hr)
        write_image(lr_dir / f"img{index}x{scale}.png", hr[::scale, ::scale])
    return paired_folders(hr_dir, lr_dir, scale)


# --- finding and pairing -----------------------------------------------------


def test_hr_folder_is_searched_recursively_in_a_stable_order(tmp_path):
    write_image(tmp_path / "b" / "z.png", _noise(8, 8, 0))
    write_image(tmp_path / "a.bmp", _noise(8, 8, 1))
    write_image(tmp_path / ".hidden" / "x.png", _noise(8, 8, 2))
    (tmp_path / "notes.txt").write_text("not an image")
    pairs = hr_only_pairs(tmp_path)
    assert [pair.name for pair in pairs] == ["a", "b/z"]
    assert all(pair.lr_path is None for pair in pairs)


def test_no_images_is_an_error_naming_the_folder(tmp_path):
    with pytest.raises(SisrError, match="no training images found"):
        hr_only_pairs(tmp_path)
    with pytest.raises(SisrError, match="no such folder"):
        hr_only_pairs(tmp_path / "missing")


def test_pairs_match_plain_and_scale_tagged_names(tmp_path):
    for name in ("0001", "0002", "box2"):
        write_image(tmp_path / "hr" / f"{name}.png", _noise(8, 8, 0))
    write_image(tmp_path / "lr" / "0001x2.png", _noise(4, 4, 0))
    write_image(tmp_path / "lr" / "0002.png", _noise(4, 4, 0))
    write_image(tmp_path / "lr" / "box2x2.png", _noise(4, 4, 0))  # a name ending in a digit
    pairs = paired_folders(tmp_path / "hr", tmp_path / "lr", 2)
    assert {pair.name: pair.lr_path.name for pair in pairs} == {
        "0001": "0001x2.png",
        "0002": "0002.png",
        "box2": "box2x2.png",
    }


def test_every_missing_partner_is_listed_in_one_error(tmp_path):
    for name in ("a", "b", "c"):
        write_image(tmp_path / "hr" / f"{name}.png", _noise(8, 8, 0))
    write_image(tmp_path / "lr" / "a.png", _noise(4, 4, 0))
    write_image(tmp_path / "lr" / "orphan.png", _noise(4, 4, 0))
    with pytest.raises(SisrError) as error:
        paired_folders(tmp_path / "hr", tmp_path / "lr", 2)
    message = str(error.value)
    assert "3 problems" in message
    assert "b.png: no LR partner" in message and "c.png: no LR partner" in message
    assert "orphan.png: LR image without an HR partner" in message


def test_lr_names_of_another_scale_are_a_scale_mismatch(tmp_path):
    write_image(tmp_path / "hr" / "0001.png", _noise(8, 8, 0))
    write_image(tmp_path / "lr" / "0001x4.png", _noise(2, 2, 0))
    with pytest.raises(SisrError, match=r"0001x4.png: the name says x4 but the model is x2 \(scale mismatch\)"):
        paired_folders(tmp_path / "hr", tmp_path / "lr", 2)


# --- checks and decoding -----------------------------------------------------


def test_generated_lr_is_matlab_bicubic_as_in_the_published_sets(benchmarks_dir, tmp_path):
    """LR made from an HR-only folder equals the MATLAB-made LR images of Set5."""
    pairs = hr_only_pairs(benchmarks_dir / "Set5" / "HR")[:2]
    images = prepare_training_images(pairs, 3, 48, cache="disk", cache_dir=tmp_path)
    for index, pair in enumerate(pairs):
        hr, lr = images.arrays(index)
        matlab = read_image(benchmarks_dir / "Set5" / "LR_bicubic" / "X3" / f"{pair.name}.png")
        np.testing.assert_array_equal(lr, matlab)
        assert hr.shape == (matlab.shape[0] * 3, matlab.shape[1] * 3, 3)


def test_all_problems_are_reported_before_training(tmp_path):
    hr_dir, lr_dir = tmp_path / "hr", tmp_path / "lr"
    write_image(hr_dir / "good.png", _noise(64, 64, 0))
    write_image(lr_dir / "good.png", _noise(32, 32, 0))
    write_image(hr_dir / "wrong_size.png", _noise(64, 64, 1))
    write_image(lr_dir / "wrong_size.png", _noise(30, 32, 1))
    write_image(hr_dir / "tiny.png", _noise(20, 24, 2))
    write_image(lr_dir / "tiny.png", _noise(10, 12, 2))
    write_image(hr_dir / "broken.png", _noise(64, 64, 3))
    (lr_dir / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n this is not a PNG")
    pairs = paired_folders(hr_dir, lr_dir, 2)
    with pytest.raises(SisrError) as error:
        prepare_training_images(pairs, 2, 32, cache="memory")
    message = str(error.value)
    assert "3 problems" in message
    assert "broken.png" in message
    assert "wrong_size.png: LR is 32x30" in message and "needs 32x32" in message
    assert "tiny.png: 24x20 is smaller than one training patch (32x32 HR, 16x16 LR at x2)" in message
    assert "good.png" not in message


def test_images_are_made_rgb(tmp_path):
    gray = np.random.default_rng(0).integers(0, 256, (16, 16), dtype=np.uint8)
    write_image(tmp_path / "gray.png", gray)
    images = prepare_training_images(hr_only_pairs(tmp_path), 2, 8, cache="memory")
    hr, lr = images.arrays(0)
    assert hr.shape == (16, 16, 3) and lr.shape == (8, 8, 3)
    np.testing.assert_array_equal(hr[:, :, 1], gray)


def test_patch_size_must_divide_by_the_scale(tmp_path):
    write_image(tmp_path / "a.png", _noise(32, 32, 0))
    with pytest.raises(SisrError, match="HR patch size 10 is not a multiple of the scale 4"):
        prepare_training_images(hr_only_pairs(tmp_path), 4, 10, cache="memory")


def test_disk_cache_is_reused_and_refreshed_when_a_file_changes(tmp_path, monkeypatch):
    data, cache = tmp_path / "data", tmp_path / "cache"
    write_image(data / "a.png", _noise(32, 32, 0))
    pairs = hr_only_pairs(data)
    first = prepare_training_images(pairs, 2, 16, cache="disk", cache_dir=cache)
    assert sorted(p.suffix for p in cache.iterdir()) == [".npy", ".npy"]
    assert isinstance(first.arrays(0)[0], np.memmap)

    import sisr.data.training as training

    def no_decoding(path):
        raise AssertionError(f"{path} decoded again")

    monkeypatch.setattr(training, "read_image", no_decoding)
    again = prepare_training_images(pairs, 2, 16, cache="disk", cache_dir=cache)
    np.testing.assert_array_equal(again.arrays(0)[0], first.arrays(0)[0])

    monkeypatch.undo()
    write_image(data / "a.png", _noise(32, 32, 1), overwrite=True)
    os.utime(data / "a.png", ns=(1, 1))  # a different modification time for sure
    changed = prepare_training_images(pairs, 2, 16, cache="disk", cache_dir=cache)
    np.testing.assert_array_equal(changed.arrays(0)[0], _noise(32, 32, 1))


# --- samples -----------------------------------------------------------------


def test_lr_and_hr_patches_are_aligned_and_augmented_alike(tmp_path):
    pairs = _subsampled_pairs(tmp_path, 2, [(40, 52), (36, 36), (64, 44)])
    samples = PatchSamples(prepare_training_images(pairs, 2, 16, cache="memory"), 16, seed=3)
    symmetries = set()
    for n in range(200):
        lr, hr = samples[n]
        assert lr.dtype == torch.uint8 and lr.shape == (3, 8, 8) and hr.shape == (3, 16, 16)
        plan = samples.plan(n)
        lr_image, hr_image = (_undo_augment(t.numpy().transpose(1, 2, 0), plan) for t in (lr, hr))
        np.testing.assert_array_equal(lr_image, hr_image[::2, ::2])
        symmetries.add((plan.flip, plan.quarter_turns))
    assert len(symmetries) == 8


def _undo_augment(patch: np.ndarray, plan) -> np.ndarray:
    patch = np.rot90(patch, -plan.quarter_turns, axes=(0, 1))
    return patch[:, ::-1] if plan.flip else patch


def test_a_patch_is_the_planned_crop():
    image = np.arange(6 * 8 * 3, dtype=np.uint8).reshape(6, 8, 3)
    from sisr.data.training import TrainingImages

    images = TrainingImages(["x"], [np.repeat(np.repeat(image, 2, 0), 2, 1)], [image], [(6, 8)], 2)
    samples = PatchSamples(images, 4, seed=0, augment=False)
    plan = samples.plan(5)
    lr, _ = samples[5]
    expected = image[plan.top : plan.top + 2, plan.left : plan.left + 2].transpose(2, 0, 1)
    np.testing.assert_array_equal(lr.numpy(), expected)


def test_augment_is_a_flip_then_quarter_turns():
    patch = np.arange(4).reshape(2, 2, 1)
    np.testing.assert_array_equal(augment(patch, True, 0)[:, :, 0], [[1, 0], [3, 2]])
    np.testing.assert_array_equal(augment(patch, False, 1)[:, :, 0], [[1, 3], [0, 2]])  # counter-clockwise


def test_each_epoch_visits_every_image_once_in_a_new_order(tmp_path):
    sizes = [(16, 16)] * 7
    pairs = _subsampled_pairs(tmp_path, 2, sizes)
    samples = PatchSamples(prepare_training_images(pairs, 2, 8, cache="memory"), 8, seed=0)
    epochs = [[samples.plan(e * 7 + i).image for i in range(7)] for e in range(3)]
    assert all(sorted(order) == list(range(7)) for order in epochs)
    assert epochs[0] != epochs[1] != epochs[2]
    assert samples.locate(15) == (2, 1)


def test_order_depends_only_on_the_seed(tmp_path):
    pairs = _subsampled_pairs(tmp_path, 2, [(32, 32)] * 3)
    images = prepare_training_images(pairs, 2, 8, cache="memory")
    first, same, other = (PatchSamples(images, 8, seed=s) for s in (1, 1, 2))
    assert [first.plan(n) for n in range(30)] == [same.plan(n) for n in range(30)]
    assert [first.plan(n) for n in range(30)] != [other.plan(n) for n in range(30)]


def test_ranks_share_out_each_global_batch():
    def take(sampler, count):
        iterator = iter(sampler)
        return [next(iterator) for _ in range(count)]

    single = take(StepSampler(10, 4), 12)  # three global batches of 4
    rank0, rank1 = take(StepSampler(10, 2, 0, 2), 6), take(StepSampler(10, 2, 1, 2), 6)
    for k in range(3):
        assert single[4 * k : 4 * k + 4] == rank0[2 * k : 2 * k + 2] + rank1[2 * k : 2 * k + 2]


def test_loader_resumes_where_it_stopped_and_workers_change_nothing(tmp_path):
    pairs = _subsampled_pairs(tmp_path, 2, [(24, 24), (30, 40), (20, 28)])
    images = prepare_training_images(pairs, 2, 8, cache="disk", cache_dir=tmp_path / "cache")
    samples = PatchSamples(images, 8, seed=5)
    whole = iter(patch_loader(samples, 4))
    batches = [next(whole) for _ in range(5)]
    resumed = iter(patch_loader(samples, 4, start_sample=3 * 4, workers=2))
    for expected in batches[3:]:
        lr, hr = next(resumed)
        assert torch.equal(lr, expected[0]) and torch.equal(hr, expected[1])
    del resumed


# --- degradation recipes -----------------------------------------------------


def test_the_bicubic_recipe_gives_todays_patches_bit_for_bit(tmp_path):
    from sisr.data.degradations import training_recipe

    pairs = hr_only_pairs(_hr_folder_of_noise(tmp_path, [(40, 52), (64, 44)]))
    images = prepare_training_images(pairs, 2, 16, cache="memory")
    today, bicubic = PatchSamples(images, 16, seed=4), PatchSamples(images, 16, seed=4, degradation=training_recipe())
    for n in range(40):
        for a, b in zip(today[n], bicubic[n]):
            assert torch.equal(a, b)


def _hr_folder_of_noise(tmp_path, sizes):
    for index, (height, width) in enumerate(sizes):
        write_image(tmp_path / "hr" / f"img{index}.png", _noise(height, width, index))
    return tmp_path / "hr"


@pytest.mark.parametrize("recipe", ["jpeg", "realesrgan"])
def test_a_recipe_changes_only_the_lr_patch_and_resumes_exactly_in_workers(tmp_path, recipe):
    from sisr.data.degradations import training_recipe

    pairs = hr_only_pairs(_hr_folder_of_noise(tmp_path, [(40, 52), (64, 44), (48, 48)]))
    images = prepare_training_images(pairs, 4, 32, cache="disk", cache_dir=tmp_path / "cache")
    plain = PatchSamples(images, 32, seed=5)
    degraded = PatchSamples(images, 32, seed=5, degradation=training_recipe(recipe))
    changed = 0
    for n in range(12):
        (lr_plain, hr_plain), (lr, hr) = plain[n], degraded[n]
        assert torch.equal(hr, hr_plain) and lr.shape == lr_plain.shape == (3, 8, 8)
        changed += not torch.equal(lr, lr_plain)
    assert changed >= 6
    whole = iter(patch_loader(degraded, 4))
    batches = [next(whole) for _ in range(5)]
    resumed = iter(patch_loader(degraded, 4, start_sample=2 * 4, workers=2))
    for expected in batches[2:]:
        lr, hr = next(resumed)
        assert torch.equal(lr, expected[0]) and torch.equal(hr, expected[1])
    del resumed
