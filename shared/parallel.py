"""Independent store requests side by side: on the hot path, each round trip to the store
is time the caller waits (issue 14 keeps SendSms to four sequential ones).

One small pool per process, made on first use. A task run here never submits another,
so the pool cannot deadlock: when all its threads are busy a task waits its turn.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

POOL_THREADS = 16


def start[T](task: Callable[[], T]) -> Future[T]:
    """Run `task` on the pool; its result (or exception) comes from the future."""
    return _pool().submit(task)


def both[A, B](first: Callable[[], A], second: Callable[[], B]) -> tuple[A, B]:
    """Run both at once (the second on the pool, the first here) and wait for both, so
    nothing outlives the request; an exception of either is raised once both are done."""
    later = start(second)
    try:
        a = first()
    except BaseException:
        later.exception()
        raise
    return a, later.result()


@functools.cache
def _pool() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=POOL_THREADS, thread_name_prefix="store")
