"""Read ahead of the network: an ordered, bounded, threaded map over batches of items.

The FVD feature pipeline spends its time in three places: decoding the video files, the TF1
resize, and the I3D. :class:`BatchPrefetcher` runs the first two on worker threads while the
caller runs the network on the previous batch. Decoders (decord, PyAV / FFmpeg) and torch
release the GIL while they work, so threads overlap for real and nothing is pickled.

Guarantees:

* **order**: batches come out in the order given, and the items of a batch in their order,
  whatever order the workers finish in;
* **bounded memory**: at most ``prefetch`` batches are prepared (or being prepared) ahead of the
  batch the caller holds, so at most ``(prefetch + 1) * batch_size`` prepared items are alive;
* **errors**: an exception raised by ``prepare`` is re-raised in the caller, unchanged, when its
  batch is reached; items known to fail belong in ``prepare``'s return value instead (the FVD
  loader returns a "bad video" record for a corrupt file, as the sequential loop did);
* **no stray threads**: leaving the ``with`` block (normally, by an exception in the caller or
  in a worker) cancels the batches not yet started and joins every worker before returning.

``workers=0`` runs ``prepare`` inline in the caller's thread, one batch at a time: the same
results, in the same order, with no threads (the reference the threaded path is tested against).

Worker threads run torch on one OpenMP thread each (:func:`one_openmp_thread_here`): the caller's
network already has every core, and a worker's small resize ops forking an OpenMP team of their
own cost 5x the CPU time on a busy 2-core machine (measured: 8 clips of 16x256x256, 0.2 s of CPU
on one thread, 1.0 s on two). Results do not depend on it (elementwise ops and gathers).
"""

from __future__ import annotations

import ctypes
import sys
import threading
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Callable, Generic, Iterator, Sequence, TypeVar

__all__ = ["BatchPrefetcher", "THREAD_NAME_PREFIX", "one_openmp_thread_here"]

T = TypeVar("T")
R = TypeVar("R")

THREAD_NAME_PREFIX = "scalecrafter-loader"


_OMP_LIBS: list | None = None
_OMP_LOCK = threading.Lock()


def _openmp_runtimes() -> list:
    """``omp_set_num_threads`` of every OpenMP runtime loaded in this process (Linux; else none)."""
    global _OMP_LIBS
    with _OMP_LOCK:
        if _OMP_LIBS is None:
            found = []
            if sys.platform.startswith("linux"):
                try:
                    with open("/proc/self/maps") as f:
                        paths = sorted({line.split()[-1] for line in f
                                        if any(n in line for n in ("libgomp", "libiomp", "libomp")) and ".so" in line})
                except OSError:
                    paths = []
                for path in paths:
                    try:
                        fn = ctypes.CDLL(path).omp_set_num_threads
                    except (OSError, AttributeError):
                        continue
                    fn.argtypes, fn.restype = [ctypes.c_int], None
                    found.append(fn)
            _OMP_LIBS = found
        return _OMP_LIBS


def one_openmp_thread_here() -> bool:
    """Make torch ops called from the current thread run on one OpenMP thread; other threads
    (the caller's network) keep their setting. Returns False where that cannot be done (no
    OpenMP runtime found): the worker then only competes harder for the cores.

    OpenMP's thread count is a per-thread setting; ``torch.set_num_threads`` would also change
    torch's process-wide default, so the runtime is called directly, after torch's own lazy
    per-thread initialisation (which would otherwise reset it on the first parallel op).
    """
    import torch

    if "OpenMP" not in torch.__config__.parallel_info().split("ATen parallel backend:")[-1]:
        return False
    try:
        torch.get_num_threads()  # torch's once-per-thread init happens now, not after our setting
        runtimes = _openmp_runtimes()
        for set_num_threads in runtimes:
            set_num_threads(1)
    except Exception:  # never let a tuning step break the loader
        return False
    return bool(runtimes) and torch.get_num_threads() == 1


class BatchPrefetcher(Generic[T, R]):
    """``prepare`` applied to every item of ``batches``, ``prefetch`` batches ahead, on ``workers`` threads.

    Use as a context manager and iterate: each step yields ``(batch, results)`` where ``results[k]``
    is ``prepare(batch[k])``.
    """

    def __init__(self, batches: Sequence[Sequence[T]], prepare: Callable[[T], R], workers: int = 2,
                 prefetch: int = 2, name: str = THREAD_NAME_PREFIX,
                 initializer: Callable[[], object] | None = one_openmp_thread_here):
        if workers < 0:
            raise ValueError(f"workers must be >= 0, got {workers}")
        if prefetch < 1 and workers > 0:
            raise ValueError(f"prefetch must be >= 1 with worker threads, got {prefetch}")
        self.batches = [list(b) for b in batches]
        self.prepare = prepare
        self.workers = workers
        self.prefetch = prefetch
        self.name = name
        self.initializer = initializer
        self._pool: ThreadPoolExecutor | None = None
        self._inflight: deque[tuple[list[T], list[Future]]] = deque()

    def __enter__(self) -> "BatchPrefetcher[T, R]":
        if self.workers > 0:
            self._pool = ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix=self.name,
                                            initializer=self.initializer)
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Cancel what has not started and join the workers (idempotent)."""
        pool, self._pool = self._pool, None
        if pool is not None:
            for _, futures in self._inflight:
                for f in futures:
                    f.cancel()
            pool.shutdown(wait=True, cancel_futures=True)
        self._inflight.clear()

    def __iter__(self) -> Iterator[tuple[list[T], list[R]]]:
        if self.workers == 0:
            for batch in self.batches:
                yield batch, [self.prepare(item) for item in batch]
            return
        if self._pool is None:
            raise RuntimeError("BatchPrefetcher: iterate inside its 'with' block")
        pending = iter(self.batches)

        def submit_next() -> None:
            batch = next(pending, None)
            if batch is not None:
                self._inflight.append((batch, [self._pool.submit(self.prepare, item) for item in batch]))

        for _ in range(self.prefetch):
            submit_next()
        while True:
            # The caller has let go of the previous batch: start one more, so `prefetch` batches
            # are in flight while it works on the next one.
            submit_next()
            if not self._inflight:
                return
            batch, futures = self._inflight[0]
            results = [f.result() for f in futures]  # re-raises a worker's exception here, in order
            self._inflight.popleft()
            yield batch, results
