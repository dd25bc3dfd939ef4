"""Overlapping a batch's codecs with its network: decode the next images and encode the last while the network runs.

Each image of a batch passes three stages: decode the file, run the network,
encode the result. Run in turn, the network idles while Pillow decodes and
zlib encodes, which for small images is a fifth of the time or more. Here
reading runs in one thread and writing in another, with the network on the
calling thread (where CUDA's current stream and torch.compile's caches
live). Threads suffice: torch releases the GIL in its kernels, Pillow's
decoders and zlib (sisr's PNG writer) in their work.

On a CPU the codecs compete with the network for the same cores, so the
overlap pays only where cores are spare (a GPU runs the network; a machine
with more cores than torch uses). `ConsumerThread` is the single-image form:
one image's rows of tiles handed to its encoder while the network computes
the next ones.

The queues between the stages are short (`prefetch` decoded images waiting
for the network, `pending` results waiting to be written), so a batch holds
a few images in memory whatever its length.

Every job comes out once, in the order of the jobs, with its value or the
error of the stage that failed; a failed job skips its later stages and the
others go on. Stopping early (the caller leaves the loop, or an interrupt)
writes nothing more than the result being written at that moment.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

J = TypeVar("J")


@dataclass
class Outcome(Generic[J]):
    """What became of one job: the value its write returned, or the error that stopped it."""

    job: J
    value: Any = None
    error: Exception | None = None
    seconds: float = 0.0  # spent in its stages, not waiting in the queues


_END = object()  # the end of a queue's items
_POLL = 0.1  # seconds between looks at whether to stop, while waiting on a full queue


def overlapped(
    jobs: Iterable[J],
    read: Callable[[J], Any],
    compute: Callable[[J, Any], Any],
    write: Callable[[J, Any], Any],
    *,
    prefetch: int = 2,
    pending: int = 2,
) -> Iterator[Outcome[J]]:
    """`write(job, compute(job, read(job)))` for each job, reading and writing in threads; outcomes in job order.

    `compute` runs on the calling thread, between the caller's handling of
    outcomes: a caller may log, count and raise there as in a plain loop.
    """
    stop = threading.Event()
    decoded: queue.Queue[Any] = queue.Queue(maxsize=max(prefetch, 1))
    results: queue.Queue[Any] = queue.Queue(maxsize=max(pending, 1))
    finished: queue.Queue[Any] = queue.Queue()  # bounded by the two above
    failures: list[BaseException] = []

    def reader() -> None:
        try:
            for job in jobs:
                if stop.is_set() or not _put(decoded, _run(Outcome(job), read, job), stop):
                    return
        except BaseException as error:  # the listing itself failed: the caller raises it
            failures.append(error)
        _put(decoded, _END, stop)

    def writer() -> None:
        while (outcome := results.get()) is not _END:
            if outcome.error is None and not stop.is_set():
                outcome = _run(outcome, write, outcome.job, outcome.value)
            finished.put(outcome)
        finished.put(_END)

    threads = [threading.Thread(target=reader, name="sisr-read"), threading.Thread(target=writer, name="sisr-write")]
    for thread in threads:
        thread.daemon = True
        thread.start()
    writer_told = False
    try:
        while (outcome := decoded.get()) is not _END:
            if outcome.error is None:
                outcome = _run(outcome, compute, outcome.job, outcome.value)
            results.put(outcome)  # waits while the writer is `pending` results behind
            yield from _drain(finished)
        if failures:
            raise failures[0]
        results.put(_END)
        writer_told = True
        while (outcome := finished.get()) is not _END:
            yield outcome
    finally:
        stop.set()
        if not writer_told:
            _put(results, _END, threading.Event())  # the writer drains the queue, skipping writes
        for thread in threads:
            thread.join()


def _run(outcome: Outcome[J], stage: Callable[..., Any], *args: Any) -> Outcome[J]:
    start = time.perf_counter()
    try:
        value, error = stage(*args), None
    except Exception as caught:  # one image's failure is its outcome; the batch goes on
        value, error = None, caught
    return Outcome(outcome.job, value, error, outcome.seconds + time.perf_counter() - start)


def _put(into: queue.Queue[Any], item: Any, stop: threading.Event) -> bool:
    """Put `item`, waiting for room unless `stop` is set meanwhile; whether it was put."""
    while not stop.is_set():
        try:
            into.put(item, timeout=_POLL)
            return True
        except queue.Full:
            continue
    return False


def _drain(finished: queue.Queue[Any]) -> Iterator[Outcome[Any]]:
    """The outcomes finished so far, without waiting for more."""
    while True:
        try:
            outcome = finished.get_nowait()
        except queue.Empty:
            return
        if outcome is _END:  # only after results' _END, which the loop above has not sent
            raise AssertionError("the writer ended early")
        yield outcome


class _Abandoned(Exception):
    """Raised inside a consumer whose producer gave up: its output is to be thrown away."""


_ABANDON = object()


class ConsumerThread:
    """`consume(items)` in a thread, where `items` yields what the caller `put`s: one image encoded as it is computed.

    At most `depth` items wait in the queue, so a producer faster than its
    consumer waits instead of piling results up in memory. A consumer's
    failure comes back to the producer at its next `put` (or at `finish`),
    so the network stops instead of computing for an encoder that is gone;
    `abandon` makes `items` raise inside the consumer, which lets it clean
    up (an atomic write deletes its temporary file).
    """

    def __init__(self, consume: Callable[[Iterator[Any]], Any], depth: int = 2, name: str = "sisr-encode") -> None:
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=max(depth, 1))
        self._done = threading.Event()
        self.error: BaseException | None = None
        self.value: Any = None
        self._thread = threading.Thread(target=self._run, args=(consume,), name=name, daemon=True)
        self._thread.start()

    def _items(self) -> Iterator[Any]:
        while (item := self._queue.get()) is not _END:
            if item is _ABANDON:
                raise _Abandoned()
            yield item

    def _run(self, consume: Callable[[Iterator[Any]], Any]) -> None:
        try:
            self.value = consume(self._items())
        except BaseException as error:  # handed to the producer
            self.error = error
        finally:
            self._done.set()

    def _put(self, item: Any) -> None:
        while not self._done.is_set():
            try:
                self._queue.put(item, timeout=_POLL)
                return
            except queue.Full:
                continue

    def put(self, item: Any) -> None:
        """Hand `item` on, waiting while `depth` items wait; raises the consumer's error if it failed."""
        self._put(item)
        if self._done.is_set():
            self._raise_error("ended before its last item")

    def finish(self) -> Any:
        """Tell the consumer there is no more, wait for it, and give what it returned (or raise its error)."""
        self._put(_END)
        self._thread.join()
        self._raise_error(None)
        return self.value

    def abandon(self) -> None:
        """Stop the consumer, discarding its work; waits until it has cleaned up."""
        self._put(_ABANDON)
        self._thread.join()

    def _raise_error(self, otherwise: str | None) -> None:
        if self.error is not None:
            raise self.error
        if otherwise is not None:
            raise RuntimeError(f"the consumer {otherwise}")
