"""damer_data.workers: results in order, a bounded window, processes or threads."""

import concurrent.futures
import operator
import os

import pytest

from damer_data import workers


def test_default_workers_keeps_a_positive_count():
  assert workers.default_workers(3) == 3
  assert workers.default_workers(0) >= 1


def test_no_pool_or_a_single_worker_runs_in_process():
  done = []
  for pool in (None, workers.WorkerPool(1)):
    # A lambda cannot be pickled: these calls never leave the process.
    assert list(workers.ordered_map(lambda x: 2 * x, range(5), pool,
                                    progress=done.append)) == [0, 2, 4, 6, 8]
  assert done == [1] * 10


def test_worker_processes_keep_the_order():
  pool = workers.WorkerPool(2)
  try:
    done = []
    out = workers.ordered_map(operator.neg, list(range(20)), pool, progress=done.append)
    assert list(out) == [-i for i in range(20)]
    assert done == [1] * 20
    if os.path.exists('/proc/self'):  # Linux: which process ran each item.
      ran_in = set(workers.ordered_map(os.readlink, ['/proc/self'] * 4, pool))
      assert str(os.getpid()) not in ran_in
  finally:
    pool.close()


def test_an_executor_holds_at_most_window_items_in_flight():
  taken = []

  def items():
    for i in range(30):
      taken.append(i)
      yield i

  with concurrent.futures.ThreadPoolExecutor(4) as executor:
    in_flight = []
    for n, result in enumerate(workers.ordered_map(lambda x: x * x, items(), executor,
                                                   window=3)):
      assert result == n * n
      in_flight.append(len(taken) - (n + 1))
  assert max(in_flight) == 3
  assert len(taken) == 30


def test_an_error_is_raised_in_its_turn():
  def fn(x):
    if x == 3:
      raise RuntimeError('item 3')
    return x

  with concurrent.futures.ThreadPoolExecutor(2) as executor:
    out = workers.ordered_map(fn, range(6), executor, window=2)
    assert [next(out) for _ in range(3)] == [0, 1, 2]
    with pytest.raises(RuntimeError, match='item 3'):
      next(out)


def test_an_executor_needs_a_window():
  with concurrent.futures.ThreadPoolExecutor(1) as executor:
    with pytest.raises(ValueError, match='window'):
      workers.ordered_map(abs, [1, 2], executor)
    with pytest.raises(ValueError, match='at least 1'):
      workers.ordered_map(abs, [1, 2], executor, window=0)
