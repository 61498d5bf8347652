"""Data-parallel drivers for the per-device steps: `jax.pmap` or `jax.jit(jax.shard_map)`.

Both take batches shaped [local_devices, per_device_batch, ...] and run the same
per-device functions, whose collectives name the axis `AXIS`:

* `PmapDriver` keeps one copy of the state per device (leading device axis).
* `ShardMapDriver` keeps one global state replicated over a 1-D device mesh and maps
  the step over the mesh axis with `jax.shard_map` under `jax.jit`.

Metrics come back as scalars and eval outputs as [local_devices, per_device, ...], so
the training loop does not care which driver runs. For the loop, both drivers also
offer `train_step_device` (metrics left as the device returned them, no host work per
step; `host_metrics` turns fetched ones into scalars), `put_batch` (a batch placed as
the step reads it, for prefetching) and a `put_state` that gives the state the very
sharding the step returns, so the step compiles once per start.

`gather_examples` collects evaluation outputs from every process; the cross-process
helpers the data sources need live in `damer_data.hosts`.
"""

from __future__ import annotations

from typing import Any, Callable

from flax import jax_utils
import jax
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
import numpy as np

AXIS = 'batch'  # Name of the data-parallel device axis.


class PmapDriver:
  """`jax.pmap` over the local devices; the state carries a leading device axis."""

  name = 'pmap'

  def __init__(self, train_step: Callable | None, eval_step: Callable):
    self._train = (jax.pmap(train_step, axis_name=AXIS, donate_argnums=(0,))
                   if train_step is not None else _evaluation_only)
    self._eval = jax.pmap(eval_step, axis_name=AXIS)
    self._batch_sharding = NamedSharding(Mesh(np.asarray(jax.local_devices()), (AXIS,)),
                                         P(AXIS))

  def put_state(self, state):
    # Sharded over a mesh axis named AXIS, as pmap's outputs are: with flax's default
    # axis name the step's second call (fed its own output) would compile it again.
    return jax_utils.replicate(state, axis_name=AXIS)

  def put_batch(self, batch):
    """A host batch [local_devices, ...] sharded over the local devices."""
    return jax.device_put(batch, self._batch_sharding)

  def train_step_device(self, state, batch):
    """`train_step` with the metrics left on the devices ([local_devices] each)."""
    return self._train(state, batch)

  @staticmethod
  def host_metrics(metrics):
    """Fetched `train_step_device` metrics [..., local_devices] -> [...] (all equal)."""
    return jax.tree.map(lambda m: np.asarray(m)[..., 0], metrics)

  def get_state(self, state):
    """One host-side-usable copy of the state (for checkpoints and inspection)."""
    return jax_utils.unreplicate(state)

  def train_step(self, state, batch):
    state, metrics = self._train(state, batch)
    return state, jax.tree.map(lambda m: m[0], metrics)

  def eval_step(self, state, batch):
    return self._eval(state, batch)


class ShardMapDriver:
  """`jax.jit(jax.shard_map(...))` over a 1-D mesh of the devices; state replicated."""

  name = 'shard_map'

  def __init__(self, train_step: Callable | None, eval_step: Callable):
    self.mesh = Mesh(np.asarray(jax.devices()), (AXIS,))
    self._replicated = NamedSharding(self.mesh, P())

    def per_device_train(state, batch):
      state, metrics = train_step(state, jax.tree.map(lambda x: x[0], batch))
      return state, metrics

    def per_device_eval(state, batch):
      out = eval_step(state, jax.tree.map(lambda x: x[0], batch))
      return jax.tree.map(lambda x: x[None], out)

    # check_vma=False: with shard_map's type checking, the gradient of the replicated
    # parameters comes back already summed over the devices, and the step's pmean of it
    # would leave N times the mean gradient (pmap, and this, give the mean).
    self._train = _evaluation_only if train_step is None else jax.jit(
        jax.shard_map(per_device_train, mesh=self.mesh, in_specs=(P(), P(AXIS)),
                      out_specs=(P(), P()), check_vma=False),
        donate_argnums=(0,))
    self._eval = jax.jit(jax.shard_map(per_device_eval, mesh=self.mesh,
                                       in_specs=(P(), P(AXIS)), out_specs=P(AXIS)))

  def put_state(self, state):
    return jax.device_put(state, self._replicated)

  def put_batch(self, batch):
    """A host batch [devices, ...] sharded over the mesh."""
    return jax.device_put(batch, NamedSharding(self.mesh, P(AXIS)))

  def train_step_device(self, state, batch):
    return self._train(state, batch)

  @staticmethod
  def host_metrics(metrics):
    return jax.tree.map(np.asarray, metrics)

  def get_state(self, state):
    return state

  def train_step(self, state, batch):
    return self._train(state, batch)

  def eval_step(self, state, batch):
    return self._eval(state, batch)


def _evaluation_only(*args):
  del args
  raise TypeError('This driver was made for evaluation only (train_step=None).')


def create_driver(parallelism: str, train_step: Callable | None, eval_step: Callable
                  ) -> Any:
  """The driver named by `config.parallelism` ('pmap' or 'shard_map').

  train_step(state, batch) -> (state, metrics) and eval_step(variables, batch) -> outputs
  are per-device functions; train_step None gives a driver that only evaluates.
  """
  if parallelism == 'pmap':
    return PmapDriver(train_step, eval_step)
  if parallelism == 'shard_map':
    if jax.process_count() > 1:
      raise NotImplementedError("config.parallelism='shard_map' runs on one process in "
                                "this release; use 'pmap' across hosts.")
    return ShardMapDriver(train_step, eval_step)
  raise ValueError(f"config.parallelism must be 'pmap' or 'shard_map', got "
                   f'{parallelism!r}.')


def gather_examples(arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
  """Concatenates per-process example arrays [n_p, ...] over processes, in process order.

  Every process gets the same result; the counts n_p may differ. One process: no-op.
  """
  if jax.process_count() == 1:
    return arrays
  from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
  counts = np.asarray(multihost_utils.process_allgather(
      np.int64(len(next(iter(arrays.values()))))))
  most = int(counts.max())
  result = {}
  for key, value in arrays.items():
    padded = np.zeros((most,) + value.shape[1:], value.dtype)
    padded[:len(value)] = value
    everyone = np.asarray(multihost_utils.process_allgather(padded))  # [P, most, ...]
    result[key] = np.concatenate([everyone[p, :counts[p]] for p in range(len(counts))])
  return result
