"""Work spread over processes or threads, results in order, memory bounded.

TensorFlow-free and JAX-free (standard library only), so that a worker process that
imports it (a record build's decoders, prediction's decoders) starts without either.

* `default_workers`: how many processes a build uses when asked for 'auto' (0).
* `WorkerPool`: forkserver processes, started on first use and kept until `close`.
* `ordered_map`: fn(item) for every item, in the items' order, with at most a window
  of items in flight, across a `WorkerPool` or any `concurrent.futures.Executor`.
"""

from __future__ import annotations

import collections
import concurrent.futures
import contextlib
import multiprocessing
import os
from typing import Any, Callable, Iterable, Iterator


def default_workers(num_workers: int) -> int:
  """`num_workers` if positive; else (auto) one per core on machines with 4 or more
  cores, and 1 (in-process) below that, where starting workers costs more than it
  saves (measured: docs/datasets.md)."""
  if num_workers and num_workers > 0:
    return int(num_workers)
  try:
    cores = len(os.sched_getaffinity(0))
  except AttributeError:
    cores = os.cpu_count() or 1
  return cores if cores >= 4 else 1


def single_threaded() -> contextlib.AbstractContextManager:
  """One BLAS/OpenMP thread from now on (the workers are the parallelism; nested
  thread pools would oversubscribe the cores). Also a context manager that restores
  the limits on exit, for work done in this process that must equal the workers'."""
  try:
    import threadpoolctl  # pylint: disable=g-import-not-at-top
    return threadpoolctl.threadpool_limits(1)
  except ImportError:
    return contextlib.nullcontext()


def _single_threaded() -> None:
  """Worker initializer: `single_threaded` for the worker's whole life."""
  single_threaded()


class WorkerPool:
  """Processes for `ordered_map`, started on first use and kept for the whole build.

  Workers come from a 'forkserver' context: never a fork of a process that runs
  TensorFlow or JAX threads. As with any non-fork start method, a script that builds
  must guard its entry point with `if __name__ == '__main__':`.
  """

  def __init__(self, num_workers: int):
    self.num_workers = num_workers
    self._executor: concurrent.futures.ProcessPoolExecutor | None = None

  def submit(self, fn, item) -> concurrent.futures.Future:
    """fn(item) in a worker (the pool starts on the first call)."""
    if self._executor is None:
      self._executor = concurrent.futures.ProcessPoolExecutor(
          self.num_workers, mp_context=multiprocessing.get_context('forkserver'),
          initializer=_single_threaded)
    return self._executor.submit(fn, item)

  def close(self) -> None:
    """Stops the workers, cancelling what has not started (a new submit restarts)."""
    if self._executor is not None:
      self._executor.shutdown(cancel_futures=True)
      self._executor = None


def ordered_map(fn: Callable[[Any], Any], items: Iterable[Any],
                pool: WorkerPool | concurrent.futures.Executor | None, *,
                window: int | None = None,
                progress: Callable[[int], None] | None = None) -> Iterator[Any]:
  """fn(item) for every item, in order, computed across `pool`.

  Args:
    fn: the work; picklable (a module-level function or a partial of one) for a
      `WorkerPool` or a process executor.
    items: the inputs, consumed lazily (only `window` ahead of what was yielded).
    pool: a `WorkerPool` (with fewer than 2 workers, or for fewer than 2 items, fn
      runs in this process), any `concurrent.futures.Executor` (every item goes
      through it), or None (in this process).
    window: the most items in flight at once, so memory stays bounded however long
      `items`; default 2 x num_workers for a `WorkerPool`; required for an Executor.
    progress: called with 1 per finished item.

  Returns:
    An iterator over fn(item), in the order of `items`. An exception raised by fn is
    raised when its result's turn comes.

  Raises:
    ValueError: `window` is missing for an Executor, or below 1.
  """
  if isinstance(pool, WorkerPool):
    sized = hasattr(items, '__len__')
    if pool.num_workers <= 1 or (sized and len(items) <= 1):
      pool = None
    elif window is None:
      window = 2 * pool.num_workers
  elif pool is not None and window is None:
    raise ValueError('ordered_map over an Executor needs window= (items in flight).')
  if pool is None:
    return _in_process(fn, items, progress)
  if window < 1:
    raise ValueError(f'ordered_map: window must be at least 1, got {window}.')
  return _windowed(fn, items, pool, window, progress)


def _in_process(fn, items, progress) -> Iterator[Any]:
  for item in items:
    yield fn(item)
    if progress:
      progress(1)


def _windowed(fn, items, pool, window: int, progress) -> Iterator[Any]:
  """ordered_map's parallel path: `window` futures ahead, refilled one per result."""
  pending: collections.deque = collections.deque()
  items_iter: Iterator[Any] = iter(items)
  for item in items_iter:
    pending.append(pool.submit(fn, item))
    if len(pending) >= window:
      break
  while pending:
    result = pending.popleft().result()
    for item in items_iter:
      pending.append(pool.submit(fn, item))
      break
    if progress:
      progress(1)
    yield result
