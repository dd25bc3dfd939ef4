"""Which of sisr's CPU paths runs fastest here: timed once per network shape, remembered per machine.

Why measure instead of a rule: the same choice goes different ways on CPUs
that a rule about instruction sets cannot tell apart. sisr's AVX2 kernels
(`sisr.inference.native`) ran a WDSR-B faster than PyTorch's on one AVX-512
CPU and slower on another; bf16 barely paid on a CPU with AVX512_BF16 and
paid several times over on one with AMX (docs/benchmarks.md). So on first
use of a network's shape class `prepare_model` builds the candidates its
settings allow (`Candidate`: a precision, where "auto" allows more than one,
and a form of the fused layers), times them against each other on a small
random input, keeps the fastest, and stores the decision.

A lower precision must be `LOWER_PRECISION_MARGIN` faster than fp32 to be
chosen: it costs a little accuracy, which a tie does not repay. The timing
is best-of-`ROUNDS`, candidates taking turns, so that other work slows all
of them alike, within `TUNING_BUDGET_SECONDS`; the input is sized so that
one fp32 run is about `TUNING_FLOPS` (first use of default-x4 well under
2 s: docs/benchmarks.md). Runs that got under half their
threads' CPU time were starved by other work: that decision is used for the
rest of the process but not stored, and a later process measures again.

Decisions are kept in `cache_dir()/tuning/<fingerprint>.json`, one file per
machine fingerprint (CPU model, a hash of its flags, torch version, thread
count, the kernels' sources and this module's `TUNING_VERSION`): a new torch
or another CPU finds no decision and measures again, and machines sharing a
home directory each keep their own. The file is written atomically; two
processes tuning at once at worst both measure.

Environment: SISR_AUTOTUNE=0 measures nothing and takes the first candidate
(the rule: bf16 where the CPU has it natively, the native kernels where they
load); SISR_NATIVE_KERNELS and SISR_CPU_BF16 narrow the candidates before
anything is timed (see `prepare_model`).
"""

from __future__ import annotations

import datetime
import hashlib
import json
import logging
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

log = logging.getLogger("sisr")

# Bump when the candidates or how they are timed change: old decisions are then measured again.
TUNING_VERSION = 1
# Timed rounds after one warm-up call each; the best round of each candidate counts.
ROUNDS = 3
# FLOPs of one fp32 run on the tuning input (default-x4: 128x128), tens of milliseconds on two cores.
TUNING_FLOPS = 1e10
# Sides of the square tuning input, in LR pixels: large enough that feature maps leave the L2
# cache as they do on real images, small enough to be quick.
TUNING_SIDE_MIN, TUNING_SIDE_MAX = 64, 160
# Timing stops after this many seconds (warm-ups included), one round at least.
TUNING_BUDGET_SECONDS = 5.0
# Runs that got less CPU than this share of their threads' time were starved by other work: their
# decision is used in this process but not kept, so that a quieter moment measures again.
BUSY_UTILISATION = 0.7
# A lower precision than fp32 must take at most 1 / (1 + margin) of fp32's time to be chosen.
LOWER_PRECISION_MARGIN = 0.10
# The forms of the fused layers (`sisr.inference.fast.select_paths`).
PATHS = ("pytorch", "native", "onednn")


# Decisions measured on a busy machine, not stored: kept for the rest of this process only.
_unkept: dict[tuple[str, str, tuple[Candidate, ...]], Decision] = {}


@dataclass(frozen=True)
class Candidate:
    """One way to run a network: its precision and the form of its fused layers.

    `path`: "pytorch" (PyTorch's layers and products), "native" (float32
    parts in sisr's compiled kernels) or "onednn" (WDSR-B's bf16 blocks as
    oneDNN's fused convolutions).
    """

    precision: str
    path: str = "pytorch"

    @property
    def label(self) -> str:
        return f"{self.precision} {self.path}"

    @classmethod
    def from_label(cls, label: str) -> Candidate:
        precision, _, path = label.partition(" ")
        return cls(precision, path or "pytorch")


@dataclass(frozen=True)
class Decision:
    """What was chosen for a shape class, and how: measured now, read from the cache, or not measured."""

    shape_class: str
    chosen: Candidate
    how: str  # "measured", "cached", "one candidate", "SISR_AUTOTUNE=0", "not measured: <why>", or busy
    seconds: dict[str, float] = field(default_factory=dict)  # best time of each candidate, by label
    side: int | None = None  # the tuning input's side
    tuning_seconds: float | None = None  # what the measurement cost, warm-ups included
    date: str | None = None  # when it was measured
    path: Path | None = None  # the file it is kept in

    def summary(self) -> str:
        """One line for `sisr bench`: the choice and the times behind it."""
        if not self.seconds:
            return f"{self.chosen.label} ({self.how})"
        times = ", ".join(f"{label} {seconds * 1e3:.1f} ms" for label, seconds in sorted(self.seconds.items()))
        when = f", {self.date}" if self.date else ""
        cost = f" in {self.tuning_seconds:.2f} s" if self.tuning_seconds is not None else ""
        return f"{self.chosen.label} ({self.how}{cost} on {self.side}x{self.side}{when}: {times})"

    def as_dict(self) -> dict[str, Any]:
        return {
            "shape_class": self.shape_class,
            "chosen": self.chosen.label,
            "how": self.how,
            "seconds": self.seconds,
            "side": self.side,
            "tuning_seconds": self.tuning_seconds,
            "date": self.date,
            "file": str(self.path) if self.path else None,
        }


def machine_fingerprint() -> dict[str, str]:
    """What a decision depends on besides the network: the CPU, its flags, torch, threads, the kernels."""
    from ..speed import cpu_name
    from . import native

    flags = " ".join(sorted(native.cpu_flags()))
    return {
        "cpu": cpu_name(),
        "cpu_flags_sha256": hashlib.sha256(flags.encode()).hexdigest()[:16],
        "torch": torch.__version__,
        "threads": str(torch.get_num_threads()),
        "kernels": native.sources_digest(),
        "tuning_version": str(TUNING_VERSION),
    }


def tuning_file(fingerprint: Mapping[str, str] | None = None) -> Path:
    """The file that keeps this machine's decisions (`cache_dir()/tuning/<hash of the fingerprint>.json`)."""
    from ..download import cache_dir

    fingerprint = machine_fingerprint() if fingerprint is None else fingerprint
    key = hashlib.sha256(json.dumps(dict(fingerprint), sort_keys=True).encode()).hexdigest()[:16]
    return cache_dir() / "tuning" / f"{key}.json"


def shape_class(arch: str, network: torch.nn.Module) -> str:
    """The architecture and its distinct convolution shapes: what decides which path is fastest.

    The depth is left out on purpose (32 blocks or 16 of the same widths
    choose alike), so default-x4 and wdsr-b-16-x4 share one decision.
    """
    shapes = sorted(
        {
            f"{m.in_channels}>{m.out_channels}k{'x'.join(map(str, m.kernel_size))}"
            for m in network.modules()
            if isinstance(m, torch.nn.Conv2d)
        }
    )
    return f"{arch}:{','.join(shapes)}"


def tuning_side(flops_per_pixel: float) -> int:
    """The tuning input's side: one fp32 run about `TUNING_FLOPS`, a multiple of 8 within the limits."""
    side = (TUNING_FLOPS / max(flops_per_pixel, 1.0)) ** 0.5
    side = int(round(side / 8) * 8)
    return max(TUNING_SIDE_MIN, min(TUNING_SIDE_MAX, side))


@dataclass(frozen=True)
class Timing:
    """A candidate's best run: its wall seconds and the process CPU seconds it took (all threads)."""

    seconds: float
    cpu_seconds: float


def time_interleaved(
    runs: Mapping[Candidate, Callable[[], object]],
    rounds: int = ROUNDS,
    clock: Callable[[], float] = time.perf_counter,
    cpu_clock: Callable[[], float] = time.process_time,
    budget: float = TUNING_BUDGET_SECONDS,
) -> dict[Candidate, Timing]:
    """The best run of each candidate: one warm-up call each, then rounds in which they take turns.

    Stops after `rounds`, or earlier once `budget` seconds have gone by
    (after one round at least): on a crowded machine a run can take many
    times its usual time.
    """
    started = clock()
    for run in runs.values():
        run()  # first calls: oneDNN primitives, packed weights, page faults
    best = {candidate: Timing(float("inf"), float("inf")) for candidate in runs}
    for _ in range(rounds):
        for candidate, run in runs.items():
            wall, cpu = clock(), cpu_clock()
            run()
            wall, cpu = clock() - wall, cpu_clock() - cpu
            if wall < best[candidate].seconds:
                best[candidate] = Timing(wall, cpu)
        if clock() - started > budget:
            break
    return best


def busy_machine(timings: Mapping[Candidate, Timing], threads: int) -> bool:
    """Whether the runs were starved of CPU: they got under `BUSY_UTILISATION` of `threads` cores.

    Then threads wait at every barrier for one switched out, and the times
    say more about the other work than about the paths (on a 2-core machine
    loaded several times over, a WDSR-B on 2 threads took many times its
    usual time, whichever path).
    """
    shares = sorted(t.cpu_seconds / (t.seconds * threads) for t in timings.values() if t.seconds > 0)
    return bool(shares) and shares[len(shares) // 2] < BUSY_UTILISATION


def fastest(seconds: Mapping[Candidate, float]) -> Candidate:
    """The quickest candidate, a lower precision than fp32 only with `LOWER_PRECISION_MARGIN` to spare."""

    def cost(candidate: Candidate) -> float:
        handicap = 1.0 if candidate.precision == "fp32" else 1.0 + LOWER_PRECISION_MARGIN
        return seconds[candidate] * handicap

    return min(seconds, key=cost)  # ties: the earlier, i.e. the rule's, candidate


def _read(path: Path) -> dict[str, Any]:
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as error:
        log.debug("ignoring the tuning file %s: %s", path, error)
        return {}
    return document if isinstance(document, dict) else {}


def cached_decisions(fingerprint: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The decisions stored for this machine, by shape class (empty where none)."""
    decisions = _read(tuning_file(fingerprint)).get("decisions")
    return decisions if isinstance(decisions, dict) else {}


def _store(path: Path, fingerprint: Mapping[str, str], shape: str, entry: dict[str, Any]) -> None:
    from ..files import atomic_write

    document = _read(path)
    decisions = document.get("decisions")
    decisions = decisions if isinstance(decisions, dict) else {}
    decisions[shape] = entry
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_write(path, "w") as handle:
            json.dump({"fingerprint": dict(fingerprint), "decisions": decisions}, handle, indent=1, sort_keys=True)
    except OSError as error:  # a read-only cache costs a measurement per process, nothing else
        log.info("could not keep the tuning decision in %s: %s", path, error)


def _from_cache(entry: Any, candidates: Sequence[Candidate]) -> dict[Candidate, float] | None:
    """The stored times of exactly these candidates' labels, or None where any is missing."""
    if not isinstance(entry, dict) or not isinstance(entry.get("seconds"), dict):
        return None
    stored = entry["seconds"]
    if not all(isinstance(stored.get(c.label), (int, float)) for c in candidates):
        return None
    return {candidate: float(stored[candidate.label]) for candidate in candidates}


def choose(
    shape: str,
    candidates: Sequence[Candidate],
    runner: Callable[[Candidate], Callable[[], object]],
    *,
    side: int | Callable[[], int],
    retune: bool = False,
    clock: Callable[[], float] = time.perf_counter,
    cpu_clock: Callable[[], float] = time.process_time,
    label: str = "",
) -> Decision:
    """The candidate to run `shape` with: from the cache, or measured now (`runner(c)` gives one call of c).

    The cache answers when it holds times for every candidate (a narrower
    set, say with SISR_NATIVE_KERNELS=0, picks among the stored times);
    `retune` measures again anyway. `side`, the tuning input's, is only
    recorded here (a function: asked for only when measuring). A measurement
    starved of CPU by other work (`busy_machine`) is used but not kept.
    `clock` and `cpu_clock` (wall and process CPU seconds) are for tests.
    """
    if not candidates:
        raise ValueError("no candidates to choose from")
    if len(candidates) == 1:
        return Decision(shape, candidates[0], "one candidate")
    if os.environ.get("SISR_AUTOTUNE", "").strip() == "0":
        return Decision(shape, candidates[0], "SISR_AUTOTUNE=0")
    fingerprint = machine_fingerprint()
    path = tuning_file(fingerprint)
    remembered = _unkept.get((str(path), shape, tuple(candidates)))
    if remembered is not None and not retune:
        return remembered  # measured on a busy machine by this process: not again for every image
    entry = cached_decisions(fingerprint).get(shape)
    stored = None if retune else _from_cache(entry, candidates)
    if stored is not None and isinstance(entry, dict):
        return Decision(
            shape,
            fastest(stored),
            "cached",
            {c.label: s for c, s in stored.items()},
            side=entry.get("side"),
            tuning_seconds=entry.get("tuning_seconds"),
            date=entry.get("date"),
            path=path,
        )
    side = side() if callable(side) else side
    started = time.perf_counter()
    try:
        timings = time_interleaved(
            {candidate: runner(candidate) for candidate in candidates}, clock=clock, cpu_clock=cpu_clock
        )
    except Exception as error:  # a network that cannot run on the tuning input: the rule, not a failure
        log.info(
            "%scould not time the candidate paths (%s); running %s",
            f"{label}: " if label else "",
            error,
            candidates[0].label,
        )
        return Decision(shape, candidates[0], f"not measured: {error}")
    spent = time.perf_counter() - started
    measured = {candidate: timing.seconds for candidate, timing in timings.items()}
    chosen = fastest(measured)
    seconds = {c.label: s for c, s in measured.items()}
    date = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
    busy = busy_machine(timings, torch.get_num_threads())
    if busy:
        how, kept = "measured on a busy machine, not kept", "not kept: the machine was too busy to tell"
    else:
        entry = {"chosen": chosen.label, "seconds": seconds, "side": side, "tuning_seconds": spent, "date": date}
        _store(path, fingerprint, shape, entry)
        how, kept = "measured", f"kept in {path}"
    log.info(
        "%stimed %s on %dx%d in %.2f s to pick this machine's fastest: %s (%s)",
        f"{label}: " if label else "",
        ", ".join(f"{c.label} {s * 1e3:.1f} ms" for c, s in measured.items()),
        side,
        side,
        spent,
        chosen.label,
        kept,
    )
    decision = Decision(
        shape, chosen, how, seconds, side=side, tuning_seconds=spent, date=date, path=None if busy else path
    )
    if busy:
        _unkept[(str(path), shape, tuple(candidates))] = decision
    return decision
