"""Several seeds of one config trained at once on one device, from arrays in memory.

The ablation grid trains every variant under many seeds. A small DAMER leaves a GPU
mostly idle, so `train_seeds` runs S seeds as one program: `jax.vmap` over the seeds of
the very `train.train_step` the training loop runs (itself vmapped over a device axis of
size 1, so its collectives have their axis). The whole dataset sits on the device and
each step gathers its batch there, so the host only sends row numbers. Seed s reads
the stream `ArrayDataset.train_rows(config, data seed of s, step)` -- the same batches a
`train.train_and_evaluate` run with config.seed = s reads -- and starts from the same
initial state, so a cell here is that run without checkpoints (up to float rounding of
the vmapped program).

Needs no TensorFlow; used by ablation.py on the generated benchmark.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from typing import Any, Sequence

from absl import logging
import jax
import jax.numpy as jnp
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
import numpy as np

from damer_data import dataset as data_lib
from damer_jax import config_lib
from damer_jax import evaluate
from damer_jax import models
from damer_jax import train

AXIS = train.AXIS
BATCH_KEYS = (*data_lib.MODEL_KEYS, *data_lib.STD_KEYS, 'labelled')


@dataclasses.dataclass
class SeedRun:
  """What `train_seeds` returns.

  Attributes:
    seeds: the seeds, in the order of every leading S axis below.
    predictions: split -> head ('fusion', 'mel', 'coch', and 'embedding' where asked)
      -> float32 [S, N, T, C] class probabilities (regression: [S, N, T]) or
      [S, N, D] embeddings, in the split's row order.
    history: (step, metric -> [S]) every config.log_every_steps and at the end.
    pcl_table: float32 [S, rows, T, C] final PCL table (None when PCL is off); rows
      num_train + j are unlabelled row j when the unlabelled stream is on.
    pcl_seen: bool [S, rows] (None when PCL is off).
    nonfinite_steps: int [S] steps whose update was skipped as non-finite.
    train_seconds: wall time of the training steps (after compilation).
    compile_seconds: wall time of the first step (tracing and compilation).
  """
  seeds: tuple[int, ...]
  predictions: dict[str, dict[str, np.ndarray]]
  history: list[tuple[int, dict[str, np.ndarray]]]
  pcl_table: np.ndarray | None
  pcl_seen: np.ndarray | None
  nonfinite_steps: np.ndarray
  train_seconds: float
  compile_seconds: float


def _device_fields(data: data_lib.ArrayDataset, split: str, unlabelled: bool
                   ) -> dict[str, jax.Array]:
  """A split's rows in the layout of a training batch, on the default device."""
  arrays = data.splits[split]
  fields = {k: arrays[k] for k in (*data_lib.MODEL_KEYS, *data_lib.STD_KEYS)
            if k in arrays}
  if unlabelled:
    fields = data_lib.unlabelled_part(fields, data.num_train)
  else:
    fields = data_lib.labelled_part(fields)
  return {k: jnp.asarray(fields[k]) for k in BATCH_KEYS}


def _MESH() -> Mesh:  # pylint: disable=invalid-name
  """The one-device mesh the seeds run on."""
  return Mesh(np.asarray(jax.devices()[:1]), (AXIS,))


def _one_device(per_device_fn):
  """`per_device_fn(state, batch [b, ...])` as a function of (state, batch [1, b, ...])
  under `jax.shard_map` over a one-device mesh, so its collectives have their axis.

  (shard_map rather than vmap with an axis name: the step's all_gather(to='invarying')
  has no vmap rule.)
  """
  mesh = _MESH()
  return jax.shard_map(lambda state, batch: per_device_fn(
      state, jax.tree.map(lambda x: x[0], batch)), mesh=mesh, in_specs=(P(), P(AXIS)),
                       out_specs=(P(), P()))


def _init_states(config: Any, model: models.DAMER, seeds: Sequence[int],
                 data: data_lib.ArrayDataset) -> Any:
  """TrainStates of every seed stacked [S, ...] (as config.seed = s would make)."""
  create = lambda seed: train.create_train_state(
      config, model, jax.random.key(seed), data.num_train, data.num_unlabelled)
  return jax.vmap(create)(jnp.asarray(seeds, jnp.uint32))


def _with_seed(config: Any, seed: int) -> Any:
  config = config.copy_and_resolve_references()
  config.seed = int(seed)
  return config


def train_seeds(config: Any, seeds: Sequence[int], data: data_lib.ArrayDataset,
                eval_splits: Sequence[str] | None = None,
                embedding_splits: Sequence[str] = ()) -> SeedRun:
  """Trains `config` under every seed in `seeds` at once; predicts the eval splits.

  Args:
    config: the experiment config (config.seed is ignored; `seeds` replace it).
    seeds: S seeds.
    data: the in-memory dataset.
    eval_splits: splits to predict after the last step (default data.eval_splits).
    embedding_splits: splits whose fused embeddings are returned too.

  Returns:
    A SeedRun.
  """
  config_lib.validate_config(config)
  seeds = tuple(int(s) for s in seeds)
  eval_splits = tuple(data.eval_splits if eval_splits is None else eval_splits)
  model = models.create_model(config, axis_name=AXIS)
  step_fn = functools.partial(train.train_step, model=model, config=config,
                              schedule=train.learning_rate_schedule(config))
  multi_step = jax.vmap(_one_device(step_fn))
  u_size = data_lib.unlabelled_batch_size(config)
  labelled = _device_fields(data, data.train_split, unlabelled=False)
  unlabelled = (_device_fields(data, data.unlabelled_split, unlabelled=True)
                if u_size else None)

  @functools.partial(jax.jit, donate_argnums=(0,))
  def run_step(states, nonfinite, labelled, unlabelled, rows, u_rows):
    batch = {k: v[rows] for k, v in labelled.items()}  # [S, b, ...]
    if unlabelled is not None:
      batch = {k: jnp.concatenate([v, unlabelled[k][u_rows].astype(v.dtype)], axis=1)
               for k, v in batch.items()}
    batch = jax.tree.map(lambda x: x[:, None], batch)  # [S, 1 device, b, ...]
    states, metrics = multi_step(states, batch)
    return states, nonfinite + (metrics['finite'] < 0.5), metrics

  states = _init_states(config, model, seeds, data)
  # The state already sharded the way run_step returns it: one compilation, not two.
  states = jax.device_put(states, NamedSharding(_MESH(), P()))
  data_seeds = [train._data_seed(_with_seed(config, s)) for s in seeds]  # pylint: disable=protected-access

  def rows_of(step):
    pairs = [data.train_rows(config, s, step) for s in data_seeds]
    rows = np.stack([p[0] for p in pairs]).astype(np.int32)
    u_rows = np.stack([p[1] for p in pairs]).astype(np.int32) if u_size else None
    return rows, u_rows

  history = []
  nonfinite = jax.device_put(jnp.zeros(len(seeds), jnp.int32), NamedSharding(_MESH(), P()))
  start = time.monotonic()
  compile_seconds = 0.0
  for step in range(1, config.num_train_steps + 1):
    states, nonfinite, metrics = run_step(states, nonfinite, labelled, unlabelled,
                                          *rows_of(step))
    if step == 1:
      jax.block_until_ready(metrics)
      compile_seconds = time.monotonic() - start
      start = time.monotonic()
    if step % config.log_every_steps == 0 or step == config.num_train_steps:
      host = jax.device_get(metrics)
      history.append((step, host))
      logging.info('seeds %s step %d: loss %s', seeds, step, np.round(host['loss'], 4))
  jax.block_until_ready(states)
  train_seconds = time.monotonic() - start

  predictions = {split: _predict(model, config, states, data, split,
                                 split in embedding_splits) for split in eval_splits}
  table = seen = None
  if config.pcl.enabled:
    table = np.asarray(states.pcl.table)
    seen = np.asarray(states.pcl.seen)
  return SeedRun(seeds=seeds, predictions=predictions, history=history, pcl_table=table,
                 pcl_seen=seen, nonfinite_steps=np.asarray(nonfinite),
                 train_seconds=train_seconds, compile_seconds=compile_seconds)


def _predict(model: models.DAMER, config: Any, states: Any, data: data_lib.ArrayDataset,
             split: str, with_embedding: bool) -> dict[str, np.ndarray]:
  """Every seed's head outputs on `split`, [S, N, ...] in row order."""
  eval_fn = functools.partial(evaluate.eval_step, model=model, config=config)
  per_seed = jax.jit(jax.vmap(eval_fn, in_axes=(0, None)))
  arrays = {k: v for k, v in data.splits[split].items() if k in ('mel', 'coch')}
  keys = ('fusion', 'mel', 'coch') + (('embedding',) if with_embedding else ())
  chunks = {k: [] for k in keys}
  for batch in data_lib.pad_batches(arrays, config.eval_batch_size):
    real = batch.pop('mask') > 0
    out = jax.device_get(per_seed(evaluate.variables_of(states), batch))
    for k in keys:
      chunks[k].append(np.asarray(out[k], np.float32)[:, real])
  return {k: np.concatenate(v, axis=1) for k, v in chunks.items()}
