"""Mutation fuzzing of sisr's file loaders: real files made small, then broken in the ways files break.

A loader passes when every mutated file either loads or raises `SisrError`
(one line naming the file): any other exception is a traceback a user would
see. Test modules declare what to fuzz in a module-level `FUZZ_TARGETS`:

    FUZZ_TARGETS = {"png": (make_seeds, load)}

where `make_seeds(folder)` writes a few valid files and returns their paths
and `load(path)` is the loader under test. The test suite runs each target
with a small fixed budget and seed; `benchmarks/fuzz_loaders.py` runs the
same targets longer and reports counts and peak memory.
"""

from __future__ import annotations

import random
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from sisr.errors import SisrError

SeedMaker = Callable[[Path], list[Path]]
Loader = Callable[[Path], object]

# Values that break size fields: zero, one, the edges of signed and unsigned widths.
EXTREMES = [0, 1, 0x7F, 0x80, 0xFF, 0x7FFF, 0x8000, 0xFFFF, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF]


def truncate(data: bytes, rng: random.Random) -> bytes:
    return data[: rng.randrange(len(data))] if data else data


def flip_bits(data: bytes, rng: random.Random) -> bytes:
    out = bytearray(data)
    for _ in range(rng.randint(1, 8)):
        if out:
            out[rng.randrange(len(out))] ^= 1 << rng.randrange(8)
    return bytes(out)


def extreme_field(data: bytes, rng: random.Random) -> bytes:
    """A 1, 2 or 4 byte field near the start (where headers are) set to an extreme value."""
    if len(data) < 4:
        return data
    out = bytearray(data)
    width = rng.choice((1, 2, 4))
    start = rng.randrange(min(len(out) - width, 512) + 1)
    value = rng.choice(EXTREMES) & ((1 << (8 * width)) - 1)
    order = rng.choice("<>")
    out[start : start + width] = struct.pack(f"{order}{'BHI'[width // 2]}", value)
    return bytes(out)


def splice(data: bytes, rng: random.Random) -> bytes:
    """A run of the file repeated or dropped: lengths and offsets stop agreeing."""
    if len(data) < 2:
        return data
    start = rng.randrange(len(data))
    stop = min(len(data), start + rng.randint(1, 64))
    if rng.random() < 0.5:
        return data[:start] + data[start:stop] * rng.randint(2, 4) + data[stop:]
    return data[:start] + data[stop:]


def garbage(data: bytes, rng: random.Random) -> bytes:
    """The right first bytes (the format is still recognised), random bytes after."""
    keep = min(len(data), rng.randint(4, 64))
    return data[:keep] + rng.randbytes(rng.randint(0, 256))


MUTATIONS = [truncate, flip_bits, extreme_field, splice, garbage]


def mutants(data: bytes, rng: random.Random, count: int) -> Iterator[tuple[str, bytes]]:
    for _ in range(count):
        mutation = rng.choice(MUTATIONS)
        yield mutation.__name__, mutation(data, rng)


@dataclass
class FuzzReport:
    files: int = 0
    loaded: int = 0
    refused: int = 0
    tracebacks: list[str] = field(default_factory=list)


def fuzz(make_seeds: SeedMaker, load: Loader, folder: Path, count: int, seed: int) -> FuzzReport:
    """`count` mutants of each seed file through `load`; anything but success or SisrError is recorded."""
    rng = random.Random(seed)
    report = FuzzReport()
    seeds = make_seeds(folder / "seeds")
    work = folder / "mutants"
    work.mkdir(parents=True, exist_ok=True)
    for seed_path in seeds:
        data = seed_path.read_bytes()
        for index, (how, mutated) in enumerate(mutants(data, rng, count)):
            path = work / f"{index}-{how}{seed_path.suffix}"
            path.write_bytes(mutated)
            report.files += 1
            try:
                load(path)
            except SisrError as error:
                report.refused += 1
                if "\n" in str(error):
                    report.tracebacks.append(f"{path.name} ({how}): a message of several lines: {error!r}")
            except Exception as error:  # the point: nothing else may escape
                report.tracebacks.append(f"{path.name} ({how}): {type(error).__name__}: {error}")
            else:
                report.loaded += 1
            path.unlink()
    return report
