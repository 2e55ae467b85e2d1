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


def start[T](task: Callable[[], T], *, beside: bool = True) -> Future[T]:
    """Run `task` on the pool; its result (or exception) comes from the future. With
    `beside=False`, run it here and now (a store in memory gains nothing from a thread)."""
    if beside:
        return _pool().submit(task)
    done: Future[T] = Future()
    try:
        done.set_result(task())
    except Exception as exc:
        done.set_exception(exc)
    return done


def both[A, B](
    first: Callable[[], A], second: Callable[[], B], *, beside: bool = True
) -> tuple[A, B]:
    """Run both at once (the second on the pool, the first here) and wait for both, so
    nothing outlives the request; an exception of either is raised once both are done.
    With `beside=False`, one after the other."""
    if not beside:
        return first(), second()
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
