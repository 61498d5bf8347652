"""One process of the two-process training test (tests/test_multiprocess.py).

    python -m tests.multiprocess_worker PROCESS_ID NUM_PROCESSES PORT OUT.npz STEPS WORKDIR

Sets up JAX's distributed runtime with one CPU device per process and CPU (gloo)
collectives, then runs `train_steps`: each process feeds only its own slice of every
global batch, checkpoints the state into WORKDIR from both processes and restores it.
Process 0 writes the restored state's arrays to OUT.npz.
"""

import json
import os
import sys


def train_steps(steps: int, workdir: str | None = None) -> dict:
  """`steps` pmapped train steps of the tiny full model (PCL and SAML on) on fixed
  global batches [2 devices, 4, ...]; returns {path: array} of params, SAML and PCL
  state and the last loss. With `workdir`, the state is checkpointed there after the
  steps and restored into a fresh state, which then replaces it."""
  import jax  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  from damer_jax import models, train  # pylint: disable=g-import-not-at-top
  from tests.conftest import tiny_config  # pylint: disable=g-import-not-at-top
  from tests.test_train_step import _fixed_batch  # pylint: disable=g-import-not-at-top

  assert jax.device_count() == 2, jax.devices()
  config = tiny_config(optimizer__warmup_steps=1, pcl__warmup_steps=1)
  model = models.create_model(config)
  driver = train.create_driver(config, model)
  state = driver.put_state(train.create_train_state(config, model, jax.random.key(0), 8))
  local = jax.local_device_count()
  first = jax.process_index() * local
  for step in range(steps):
    batch = _fixed_batch(2, 4, seed=step)
    state, metrics = driver.train_step(state, {k: v[first:first + local]
                                               for k, v in batch.items()})
  if workdir:
    from damer_jax import checkpointing  # pylint: disable=g-import-not-at-top
    manager = checkpointing.create_manager(workdir, config)
    assert not manager.reached_preemption(steps)  # The loop's multi-process SIGTERM check.
    checkpointing.save(manager, driver.get_state(state))
    manager.wait_until_finished()
    fresh = train.create_train_state(config, model, jax.random.key(5), 8)
    state = driver.put_state(checkpointing.restore_latest(
        checkpointing.create_manager(workdir, config), fresh))
  host = jax.device_get(driver.get_state(state))
  leaves = jax.tree_util.tree_flatten_with_path(
      {'params': host.params, 'saml': host.saml, 'pcl': host.pcl})[0]
  arrays = {jax.tree_util.keystr(k): np.asarray(v) for k, v in leaves}
  arrays['loss'] = np.asarray(metrics['loss'])
  arrays['step'] = np.asarray(host.step)
  return arrays


def evaluate_uneven() -> dict:
  """Fusion-head metrics of a fresh tiny model on 10 fixed examples, split unevenly over
  the processes (process 0: 6, process 1: 4, in batches of 4 per process with the last
  one padded, plus an all-padding batch where a process runs out first), as
  `pipeline.eval_batches` lays them out. One process: all 10 examples."""
  import jax  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  from damer_data import hosts  # pylint: disable=g-import-not-at-top
  from damer_jax import evaluate, models, parallel, train  # pylint: disable=g-import-not-at-top
  from tests.conftest import tiny_config  # pylint: disable=g-import-not-at-top
  from tests.test_train_step import _fixed_batch  # pylint: disable=g-import-not-at-top

  config = tiny_config()
  model = models.create_model(config)
  driver = train.create_driver(config, model)
  state = driver.put_state(train.create_train_state(config, model, jax.random.key(1), 8))
  return evaluate.split_metrics(evaluate.collect(
      driver, evaluate.variables_of(state), uneven_batches(), config, heads=('fusion',)),
      config)


def uneven_batches():
  """The 10 fixed evaluation examples of `evaluate_uneven`, this process's share."""
  import jax  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  from damer_data import hosts  # pylint: disable=g-import-not-at-top
  from damer_jax import parallel  # pylint: disable=g-import-not-at-top
  from tests.test_train_step import _fixed_batch  # pylint: disable=g-import-not-at-top

  everything = {k: v.reshape((-1,) + v.shape[2:]) for k, v in _fixed_batch(2, 5, 9).items()}
  bounds = [(0, 10)] if jax.process_count() == 1 else [(0, 6), (6, 10)]
  start, stop = bounds[jax.process_index()]
  local = {k: v[start:stop] for k, v in everything.items()}
  devices = jax.local_device_count()
  per_process = 4 * devices
  count = hosts.max_over_processes(-(-len(local['mel']) // per_process))

  def batches():
    for b in range(count):
      part = {k: v[b * per_process:(b + 1) * per_process] for k, v in local.items()}
      n = len(part['mel'])
      part = {k: np.concatenate([v, np.zeros((per_process - n,) + v.shape[1:], v.dtype)])
              for k, v in part.items()}
      part['mask'] = (np.arange(per_process) < n).astype(np.float32)
      yield {k: v.reshape((devices, 4) + v.shape[1:]) for k, v in part.items()}

  gathered = parallel.gather_examples({'x': np.arange(start, stop)})
  assert gathered['x'].tolist() == list(range(10)), gathered
  return batches()


class UnevenData:
  """A damer_data Dataset whose one eval split is `uneven_batches`."""

  num_train, num_unlabelled, eval_splits = 8, 0, ('test',)

  def eval_batches(self, config, split):
    del config, split
    return uneven_batches()


def evaluate_checkpoint(workdir: str) -> dict:
  """The evaluate mode (`evaluate.evaluate`) on the checkpoint `train_steps` wrote:
  its metrics.json content, as this process returns it."""
  from damer_jax import evaluate  # pylint: disable=g-import-not-at-top
  from tests.conftest import tiny_config  # pylint: disable=g-import-not-at-top
  config = tiny_config(optimizer__warmup_steps=1, pcl__warmup_steps=1)
  return evaluate.evaluate(config, workdir, None, UnevenData())


def main(process_id: int, num_processes: int, port: str, out: str, steps: int,
         workdir: str) -> None:
  from tests.conftest import COMPILE_FAST_FLAGS  # pylint: disable=g-import-not-at-top
  os.environ['XLA_FLAGS'] = COMPILE_FAST_FLAGS  # One CPU device per process, set below.
  os.environ['JAX_PLATFORMS'] = 'cpu'
  import jax  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
  jax.config.update('jax_num_cpu_devices', 1)
  jax.config.update('jax_cpu_collectives_implementation', 'gloo')
  jax.distributed.initialize(coordinator_address=f'localhost:{port}',
                             num_processes=num_processes, process_id=process_id,
                             initialization_timeout=120)
  arrays = train_steps(steps, workdir)  # Through a checkpoint written by both.
  metrics = evaluate_uneven()
  arrays.update({f'eval/{k}': np.asarray(v) for k, v in metrics.items()})
  with open(f'{out}.evaluate{jax.process_index()}.json', 'w') as f:
    json.dump(evaluate_checkpoint(workdir), f, sort_keys=True)
  if jax.process_index() == 0:
    np.savez(out, **arrays)
  multihost_utils.sync_global_devices('done')
  print('done', jax.process_index(), int(arrays['step']))


if __name__ == '__main__':
  main(int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4], int(sys.argv[5]),
       sys.argv[6])
