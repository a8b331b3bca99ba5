"""How inference uses the cores: independent batches on parallel single-threaded streams.

The default network is small (16 channels): splitting one convolution over two cores (PyTorch's intra-op threads)
cost more in synchronisation and shared cache than it gained, while two threads each running whole batches
single-threaded kept each batch's activations in its own core's L2 cache. ``benchmarks/bench_model.py`` measures
both.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import platform
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor, wait
from typing import TypeVar

import torch

T = TypeVar("T")
R = TypeVar("R")

logger = logging.getLogger(__name__)

# glibc's mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
_retaining = False


def retain_freed_memory(mmap_threshold: int = 32 << 20, trim_threshold: int = 64 << 20) -> bool:
    """Let glibc keep freed feature maps for the next forward pass instead of handing them back to the kernel.

    Every pass frees and reallocates megabyte-sized maps; with glibc's defaults many are unmapped or trimmed and
    then page-faulted back in, hundreds of faults per batch, most in the worker threads' arenas. Allocations under
    ``mmap_threshold`` come from the heap, and up to ``trim_threshold`` of free heap is kept. Process-wide, once; a
    no-op off glibc or where ``MALLOC_MMAP_THRESHOLD_`` / ``MALLOC_TRIM_THRESHOLD_`` already chose. Returns whether
    the settings are in effect."""
    global _retaining
    if _retaining:
        return True
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    if "MALLOC_MMAP_THRESHOLD_" in os.environ or "MALLOC_TRIM_THRESHOLD_" in os.environ:
        return False
    try:
        libc = ctypes.CDLL(None)
        _retaining = bool(libc.mallopt(_M_MMAP_THRESHOLD, mmap_threshold)) and bool(
            libc.mallopt(_M_TRIM_THRESHOLD, trim_threshold)
        )
    except (OSError, AttributeError):  # no mallopt in this process
        logger.debug("mallopt unavailable: freed memory goes back to the kernel as usual")
    return _retaining


@contextlib.contextmanager
def num_threads(n: int | None) -> Iterator[None]:
    """PyTorch's intra-op thread count set to ``n`` (None: unchanged) inside the block. Process-wide."""
    if n is None:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


_pools: dict[tuple[int, int], ThreadPoolExecutor] = {}
_pools_lock = threading.Lock()


def _pool(streams: int) -> ThreadPoolExecutor:
    """A thread pool kept for the life of the process (its threads keep their buffers and oneDNN caches warm
    between calls); a forked child (gunicorn, RQ work horses) makes its own, its parent's threads being gone."""
    key = (os.getpid(), streams)
    with _pools_lock:
        if key not in _pools:
            _pools[key] = ThreadPoolExecutor(streams, thread_name_prefix="inference")
        return _pools[key]


def map_in_streams(fn: Callable[[T], R], items: Iterable[T], streams: int) -> Iterator[R]:
    """``map(fn, items)`` in order, computed on ``streams`` threads with PyTorch single-threaded meanwhile.

    At most ``2 * streams`` items are in flight, so a long input never queues all its results. ``fn`` runs in
    worker threads: thread-local state (``torch.inference_mode``, autocast) must be entered inside it. With one
    stream, ``fn`` runs in the calling thread and the thread count is left alone."""
    if streams <= 1:
        yield from map(fn, items)
        return
    pool = _pool(streams)
    pending: deque = deque()
    with num_threads(1):
        try:
            for item in items:
                pending.append(pool.submit(fn, item))
                if len(pending) >= 2 * streams:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:  # on an error or an early stop: nothing of this call keeps running
            for future in pending:
                future.cancel()
            wait(pending)
