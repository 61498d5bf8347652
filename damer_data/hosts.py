"""Cross-process helpers for data sources that read one shard per process.

Plain JAX process collectives on host values; one process needs no communication.
"""

from __future__ import annotations

import jax
import numpy as np


def max_over_processes(value: int) -> int:
  """The largest `value` any process holds (itself on one process)."""
  if jax.process_count() == 1:
    return int(value)
  from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
  return int(np.max(multihost_utils.process_allgather(np.int64(value))))
