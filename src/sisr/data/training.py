"""Training data: LR/HR image pairs, decoded once, cut into random aligned patches.

Where the pairs come from:

* a folder of HR images (searched recursively): the LR image is made with
  MATLAB-exact bicubic downscaling of the HR image cropped to a multiple of the
  scale, the known degradation of the papers;
* an HR folder and an LR folder matched by name (`0001.png` with `0001.png` or
  `0001x4.png`): any degradation, e.g. DIV2K's "unknown" one.

Every image is checked before training starts (readable, partner present,
sizes agree with the scale, big enough for one patch) and all problems are
reported together. Decoded images are kept in memory or as uint8 `.npy` files
in a cache folder that are memory-mapped, so PNG decoding is paid once, not per
step.

The order of samples is a pure function of (seed, sample number): sample `n`
is position `n % len` of epoch `n // len`, the epoch's image order is a
permutation from a generator seeded with (seed, epoch), and the crop, flip and
rotation come from a generator seeded with (seed, n). Nothing depends on worker
processes or global random state, so a run resumes from one number (samples
consumed) and splits across processes exactly.

A degradation recipe (`sisr.data.degradations`, `data.degradation`) makes the
LR patch from the HR and LR crops in the loader workers, with its own
generator seeded with (seed, 2, n): the crops are the same whatever the recipe,
and the `bicubic` recipe leaves the LR crop untouched.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from ..errors import SisrError
from ..files import atomic_path
from ..image_io import IMAGE_SUFFIXES, read_image, to_rgb8

if TYPE_CHECKING:
    from .degradations import Recipe

log = logging.getLogger("sisr")

_SCALE_TAG = re.compile(r"^(?P<base>.+?)x(?P<scale>\d+)$")


@dataclass(frozen=True)
class TrainingPair:
    """One training image: its HR file and its LR file (None: made from HR by bicubic)."""

    name: str
    hr_path: Path
    lr_path: Path | None = None


# --- finding images ----------------------------------------------------------


def list_images(folder: str | os.PathLike) -> list[Path]:
    """Image files under `folder`, recursively, sorted by relative path; hidden files skipped."""
    folder = Path(folder)
    if not folder.is_dir():
        raise SisrError(f"{folder}: no such folder of training images")
    found = [
        path
        for path in folder.rglob("*")
        if path.suffix.lower() in IMAGE_SUFFIXES
        and path.is_file()
        and not any(part.startswith(".") for part in path.relative_to(folder).parts)
    ]
    return sorted(found, key=lambda path: path.relative_to(folder).as_posix())


def _relative_stem(path: Path, folder: Path) -> str:
    return path.relative_to(folder).with_suffix("").as_posix()


def _no_images(folder: Path) -> SisrError:
    return SisrError(
        f"{folder}: no training images found (looked for {', '.join(sorted(IMAGE_SUFFIXES))}, in subfolders too)"
    )


def hr_only_pairs(folder: str | os.PathLike) -> list[TrainingPair]:
    """Every image under `folder` as an HR image whose LR image is made by bicubic downscaling."""
    folder = Path(folder)
    paths = list_images(folder)
    if not paths:
        raise _no_images(folder)
    return [TrainingPair(_relative_stem(path, folder), path) for path in paths]


def paired_folders(hr_folder: str | os.PathLike, lr_folder: str | os.PathLike, scale: int) -> list[TrainingPair]:
    """Match LR files to HR files by name: `a.png` with `a.png` or `ax4.png` (DIV2K's naming).

    Every HR image without an LR partner and every LR image without an HR one is
    listed in one error; an LR name tagged with another scale (`ax3` for x4) is
    reported as a scale mismatch.
    """
    hr_folder, lr_folder = Path(hr_folder), Path(lr_folder)
    hr_paths, lr_paths = list_images(hr_folder), list_images(lr_folder)
    if not hr_paths:
        raise _no_images(hr_folder)
    if not lr_paths:
        raise _no_images(lr_folder)
    problems: list[str] = []
    hr_by_name: dict[str, Path] = {}
    for path in hr_paths:
        name = _relative_stem(path, hr_folder)
        if name in hr_by_name:
            problems.append(f"{path}: a second HR image named {name!r} (also {hr_by_name[name].name})")
        hr_by_name[name] = path
    lr_by_name: dict[str, Path] = {}
    for path in lr_paths:
        stem = _relative_stem(path, lr_folder)
        name, tagged_scale = stem, None
        match = _SCALE_TAG.match(stem)
        if stem not in hr_by_name and match and match["base"] in hr_by_name:
            name, tagged_scale = match["base"], int(match["scale"])
        if name not in hr_by_name:
            problems.append(f"{path}: LR image without an HR partner in {hr_folder}")
            continue
        if tagged_scale is not None and tagged_scale != scale:
            problems.append(f"{path}: the name says x{tagged_scale} but the model is x{scale} (scale mismatch)")
            continue
        if name in lr_by_name:
            problems.append(f"{path}: a second LR image for {name!r} (also {lr_by_name[name].name})")
        lr_by_name[name] = path
    for name, path in hr_by_name.items():
        if name not in lr_by_name:
            problems.append(f"{path}: no LR partner in {lr_folder} (looked for {name} and {name}x{scale})")
    raise_problems(problems, "training data")
    return [TrainingPair(name, path, lr_by_name[name]) for name, path in hr_by_name.items()]


def raise_problems(problems: Sequence[str], what: str) -> None:
    """One SisrError that lists every problem, so a user fixes them all in one go."""
    if not problems:
        return
    shown = list(problems[:50])
    more = f"\n  ... and {len(problems) - 50} more" if len(problems) > 50 else ""
    raise SisrError(
        f"{len(problems)} problem{'s' if len(problems) > 1 else ''} in the {what}:\n  " + "\n  ".join(shown) + more
    )


# --- decoding and caching ----------------------------------------------------


def bicubic_lr(hr: np.ndarray, scale: int) -> np.ndarray:
    """The standard degradation: MATLAB bicubic of HR cropped at the top-left to a multiple of `scale`."""
    from ..imaging import bicubic_downgrade

    return bicubic_downgrade(hr, scale)[1]


def _file_key(path: Path) -> str:
    """Names a decoded file after its source and the source's size and time: an edited file is decoded again."""
    stat = path.stat()
    text = f"{path.resolve()}\0{stat.st_size}\0{stat.st_mtime_ns}"
    return f"{path.stem[:40]}-{hashlib.sha256(text.encode()).hexdigest()[:20]}"


def _save_npy(path: Path, array: np.ndarray) -> None:
    with atomic_path(path, overwrite=True) as tmp:
        np.save(tmp, array)


def _npy_shape(path: Path) -> tuple[int, ...] | None:
    """The shape of a cached array from its header, or None when the file is missing or damaged."""
    try:
        return tuple(np.load(path, mmap_mode="r").shape)
    except (OSError, ValueError):
        return None


Stored = np.ndarray | Path  # an array in memory, or a .npy file memory-mapped on use


def _open_file_budget(wanted: int) -> int:
    """How many memory maps a process may keep open (each holds a file descriptor).

    Raises the soft limit on open files towards the hard one when the data set
    needs more, as DIV2K (1600 arrays) does under the common soft limit of 1024.
    """
    try:
        import resource
    except ImportError:  # not POSIX: no descriptor per map to worry about
        return wanted
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted + 256
    if soft != resource.RLIM_INFINITY and soft < target:
        new_soft = target if hard == resource.RLIM_INFINITY else min(hard, target)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (new_soft, hard))
            soft = new_soft
        except (ValueError, OSError):
            pass
    if soft == resource.RLIM_INFINITY:
        return wanted
    return max(16, min(wanted, soft - 256))


@dataclass
class TrainingImages:
    """The decoded training set: per image an HR and an LR array, HR exactly `scale` x LR."""

    names: list[str]
    hr: list[Stored]
    lr: list[Stored]
    lr_sizes: list[tuple[int, int]]
    scale: int

    def __post_init__(self) -> None:
        self._maps: dict[Path, np.ndarray] = {}
        self._map_budget: int | None = None

    def __len__(self) -> int:
        return len(self.names)

    def __getstate__(self) -> dict:
        # Worker processes open their own maps; pickling a map would copy the whole array.
        state = dict(self.__dict__)
        state["_maps"], state["_map_budget"] = {}, None
        return state

    def _load(self, stored: Stored) -> np.ndarray:
        """Arrays as they are; cached files memory-mapped once per process (opening costs far more than a crop)."""
        if not isinstance(stored, Path):
            return stored
        array = self._maps.get(stored)
        if array is None:
            if self._map_budget is None:
                self._map_budget = _open_file_budget(2 * len(self.names))
            if len(self._maps) >= self._map_budget:
                self._maps.pop(next(iter(self._maps)))  # the oldest map goes
            array = self._maps[stored] = np.load(stored, mmap_mode="r")
        return array

    def arrays(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """(HR, LR) of image `index`; cached files are memory-mapped, so only the crop is read."""
        hr, lr = self._load(self.hr[index]), self._load(self.lr[index])
        height, width = self.lr_sizes[index]
        return hr[: height * self.scale, : width * self.scale], lr


def _check_sizes(
    pair: TrainingPair, hr_shape: Sequence[int], lr_shape: Sequence[int], scale: int, lr_patch: int
) -> list[str]:
    problems = []
    expected = (hr_shape[0] // scale, hr_shape[1] // scale)
    if tuple(lr_shape[:2]) != expected:
        ratio = hr_shape[1] / max(lr_shape[1], 1)
        hint = f" (HR/LR is about x{ratio:.2f}: scale mismatch?)" if abs(ratio - scale) > 0.5 else ""
        problems.append(
            f"{pair.lr_path}: LR is {lr_shape[1]}x{lr_shape[0]} but HR {pair.hr_path.name} is "
            f"{hr_shape[1]}x{hr_shape[0]}, which at x{scale} needs {expected[1]}x{expected[0]}{hint}"
        )
    elif min(lr_shape[:2]) < lr_patch:
        problems.append(
            TooSmall(
                f"{pair.hr_path}: {hr_shape[1]}x{hr_shape[0]} is smaller than one training patch "
                f"({lr_patch * scale}x{lr_patch * scale} HR, {lr_patch}x{lr_patch} LR at x{scale})",
                f"leave it out, use --patch-size {min(lr_shape[:2]) * scale} or less, or --set data.skip_small=true",
            )
        )
    return problems


class TooSmall(str):
    """The one problem that `skip_small` turns into a warning; `fact` is the message without the advice."""

    fact: str

    def __new__(cls, fact: str, advice: str) -> TooSmall:
        problem = super().__new__(cls, f"{fact}: {advice}")
        problem.fact = fact
        return problem


def _prepare_one(
    pair: TrainingPair, scale: int, lr_patch: int, cache: str, cache_dir: Path | None
) -> tuple[tuple[Stored, Stored, tuple[int, int]] | None, list[str]]:
    """Decode (or find in the cache) one pair and check it; returns (stored arrays, problems)."""
    hr_file = lr_file = None
    if cache == "disk":
        assert cache_dir is not None
        hr_file = cache_dir / f"{_file_key(pair.hr_path)}.npy"
        lr_file = (
            cache_dir / f"{_file_key(pair.lr_path)}.npy"
            if pair.lr_path is not None
            else cache_dir / f"{_file_key(pair.hr_path)}-bicubic-x{scale}.npy"
        )
        hr_shape, lr_shape = _npy_shape(hr_file), _npy_shape(lr_file)
        if hr_shape is not None and lr_shape is not None:
            problems = _check_sizes(pair, hr_shape, lr_shape, scale, lr_patch)
            return (None if problems else (hr_file, lr_file, (lr_shape[0], lr_shape[1]))), problems
    try:
        hr = to_rgb8(read_image(pair.hr_path))
        if pair.lr_path is None:
            if min(hr.shape[:2]) < scale:
                return None, [f"{pair.hr_path}: {hr.shape[1]}x{hr.shape[0]} is too small for x{scale}"]
            lr = bicubic_lr(hr, scale)
        else:
            lr = to_rgb8(read_image(pair.lr_path))
    except SisrError as error:
        return None, [str(error)]
    problems = _check_sizes(pair, hr.shape, lr.shape, scale, lr_patch)
    if problems:
        return None, problems
    if cache == "disk":
        assert hr_file is not None and lr_file is not None
        _save_npy(hr_file, hr)
        _save_npy(lr_file, lr)
        return (hr_file, lr_file, lr.shape[:2]), []
    return (hr, lr, lr.shape[:2]), []


def default_decoded_cache() -> Path:
    from ..download import cache_dir

    return cache_dir() / "decoded"


def prepare_training_images(
    pairs: Sequence[TrainingPair],
    scale: int,
    hr_patch: int,
    *,
    cache: str = "disk",
    cache_dir: str | os.PathLike | None = None,
    threads: int | None = None,
    skip_small: bool = False,
) -> TrainingImages:
    """Decode and check every pair (in threads: PNG decoding releases the GIL) before training starts.

    `cache="disk"` keeps uint8 `.npy` files in `cache_dir` (default
    `<sisr cache>/decoded`), reused by later runs; `"memory"` keeps arrays in RAM.
    Raises one SisrError listing every unreadable file, missing partner, size
    mismatch and image smaller than a patch; with `skip_small`, images smaller
    than a patch are left out with a warning instead.
    """
    if cache not in ("disk", "memory"):
        raise SisrError(f"data.cache must be 'disk' or 'memory', not {cache!r}")
    if not pairs:
        raise SisrError("no training images found")
    if hr_patch % scale:
        raise SisrError(f"the HR patch size {hr_patch} is not a multiple of the scale {scale}")
    lr_patch = hr_patch // scale
    folder = None
    if cache == "disk":
        folder = Path(cache_dir) if cache_dir else default_decoded_cache()
        folder.mkdir(parents=True, exist_ok=True)
    threads = threads or min(8, os.cpu_count() or 1)
    log.info(
        "preparing %d training images (decoded once%s)",
        len(pairs),
        f", cached in {folder}" if folder else ", kept in memory",
    )
    results: list = [None] * len(pairs)
    problems: list[str] = []
    with ThreadPoolExecutor(max_workers=threads) as pool:
        jobs = pool.map(lambda pair: _prepare_one(pair, scale, lr_patch, cache, folder), pairs)
        for index, (stored, found) in enumerate(jobs):
            results[index] = stored
            problems.extend(found)
            if len(pairs) >= 50 and (index + 1) % max(1, len(pairs) // 10) == 0:
                log.info("  %d of %d images ready", index + 1, len(pairs))
    if skip_small:
        for problem in problems:
            if isinstance(problem, TooSmall):
                log.warning("left out (data.skip_small): %s", problem.fact)
        problems = [problem for problem in problems if not isinstance(problem, TooSmall)]
    raise_problems(problems, "training data")
    kept = [index for index, stored in enumerate(results) if stored is not None]
    if not kept:
        raise SisrError(f"every training image is smaller than one training patch ({hr_patch}x{hr_patch} HR)")
    return TrainingImages(
        names=[pairs[index].name for index in kept],
        hr=[results[index][0] for index in kept],
        lr=[results[index][1] for index in kept],
        lr_sizes=[results[index][2] for index in kept],
        scale=scale,
    )


# --- samples -----------------------------------------------------------------


@dataclass(frozen=True)
class SamplePlan:
    """Where sample `n` comes from: which image, LR crop corner, flip, quarter turns."""

    image: int
    top: int
    left: int
    flip: bool
    quarter_turns: int


def augment(patch: np.ndarray, flip: bool, quarter_turns: int) -> np.ndarray:
    """Horizontal flip then rotation by 90 degrees `quarter_turns` times: the 8 symmetries of a square."""
    if flip:
        patch = patch[:, ::-1]
    return np.rot90(patch, quarter_turns, axes=(0, 1))


class PatchSamples(Dataset):
    """Sample number -> (LR patch, HR patch) as uint8 CHW tensors; conversion to float is the trainer's."""

    def __init__(
        self,
        images: TrainingImages,
        hr_patch: int,
        seed: int = 0,
        augment: bool = True,
        degradation: Recipe | None = None,
    ) -> None:
        if hr_patch % images.scale:
            raise SisrError(f"the HR patch size {hr_patch} is not a multiple of the scale {images.scale}")
        self.images = images
        self.scale = images.scale
        self.hr_patch = hr_patch
        self.lr_patch = hr_patch // images.scale
        self.seed = int(seed)
        self.augment = augment
        # None and the identity recipe (`bicubic`) are the same thing; keeping None skips the recipe's call.
        self.degradation = None if degradation is None or degradation.is_identity else degradation
        self._order_cache: tuple[int, np.ndarray] | None = None

    @property
    def epoch_length(self) -> int:
        return len(self.images)

    def locate(self, sample: int) -> tuple[int, int]:
        """(epoch, position in the epoch) of a sample number."""
        return divmod(int(sample), self.epoch_length)

    def epoch_order(self, epoch: int) -> np.ndarray:
        """The images in the order epoch `epoch` visits them: reshuffled every epoch."""
        if self._order_cache is None or self._order_cache[0] != epoch:
            generator = np.random.default_rng([self.seed, epoch])
            self._order_cache = (epoch, generator.permutation(self.epoch_length))
        return self._order_cache[1]

    def plan(self, sample: int) -> SamplePlan:
        epoch, position = self.locate(sample)
        image = int(self.epoch_order(epoch)[position])
        height, width = self.images.lr_sizes[image]
        generator = np.random.default_rng([self.seed, 1, int(sample)])
        top = int(generator.integers(0, height - self.lr_patch + 1))
        left = int(generator.integers(0, width - self.lr_patch + 1))
        flip, turns = (bool(generator.integers(2)), int(generator.integers(4))) if self.augment else (False, 0)
        return SamplePlan(image, top, left, flip, turns)

    def __getitem__(self, sample: int) -> tuple[torch.Tensor, torch.Tensor]:
        plan = self.plan(sample)
        hr, lr = self.images.arrays(plan.image)
        p, s = self.lr_patch, self.scale
        lr_patch = lr[plan.top : plan.top + p, plan.left : plan.left + p]
        hr_patch = hr[plan.top * s : (plan.top + p) * s, plan.left * s : (plan.left + p) * s]
        lr_patch = augment(lr_patch, plan.flip, plan.quarter_turns)
        hr_patch = augment(hr_patch, plan.flip, plan.quarter_turns)
        if self.degradation is not None:
            generator = np.random.default_rng([self.seed, 2, int(sample)])
            lr_patch = self.degradation.degrade(hr_patch, lr_patch, generator)
        return _to_chw(lr_patch), _to_chw(hr_patch)


def _to_chw(patch: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(patch.transpose(2, 0, 1)))


class StepSampler(Sampler[int]):
    """Sample numbers for one process, without end: global batch k is samples
    [start + k*B*W, start + (k+1)*B*W), and rank r takes the r-th slice of B.

    Together the ranks see exactly what one process with batch B*W would see,
    which is what makes a DDP run equal to a single-process one.
    """

    def __init__(self, start_sample: int, batch_size: int, rank: int = 0, world_size: int = 1) -> None:
        self.start_sample = int(start_sample)
        self.batch_size = int(batch_size)
        self.rank = int(rank)
        self.world_size = int(world_size)

    def __iter__(self) -> Iterator[int]:
        base = self.start_sample + self.rank * self.batch_size
        while True:
            yield from range(base, base + self.batch_size)
            base += self.batch_size * self.world_size


def _ignore_interrupts(worker_id: int) -> None:
    """Ctrl-C and SIGTERM are for the training process, which finishes its step and saves a checkpoint;
    a worker killed by them first would turn that into a DataLoader error. Both reach the workers too when
    sent to the whole process group: a terminal's Ctrl-C, `timeout`, `kill -- -PGID`, a batch scheduler.
    The workers still end with the training process (PyTorch's watchdog notices a parent that is gone)."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


def patch_loader(
    samples: PatchSamples,
    batch_size: int,
    *,
    start_sample: int = 0,
    rank: int = 0,
    world_size: int = 1,
    workers: int = 0,
    pin_memory: bool = False,
) -> DataLoader:
    """An endless DataLoader of (LR, HR) uint8 batches starting at sample `start_sample`."""
    options: dict[str, Any] = {"prefetch_factor": 4, "worker_init_fn": _ignore_interrupts} if workers > 0 else {}
    return DataLoader(
        samples,
        batch_size=batch_size,
        sampler=StepSampler(start_sample, batch_size, rank, world_size),
        num_workers=workers,
        pin_memory=pin_memory,
        **options,
    )
