r"""Training-step throughput with in-memory batches (no TensorFlow needed).

    python benchmarks/train_throughput.py --config=configs/demo.py [--steps=50]

Times the pmapped train step of the config's model and batch on the local devices,
after compilation. The last line printed is a JSON summary.
"""

import functools
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app  # pylint: disable=g-import-not-at-top,wrong-import-position
from absl import flags
from flax import jax_utils
import jax
import numpy as np
from ml_collections import config_flags

from damer_jax import models
from damer_jax import train

_CONFIG = config_flags.DEFINE_config_file('config', None, 'Experiment config file.')
_STEPS = flags.DEFINE_integer('steps', 50, 'Timed steps (after 3 warm-up steps).')


def measure(config, steps: int) -> dict:
  """Times the pmapped train step of `config` on random in-memory batches.

  Returns a summary dict (device, batch, params, compile time, step time, rates).
  """
  model = models.create_model(config)
  num_train = 1024  # Rows of the PCL table; its size does not change the step's cost much.
  state = jax_utils.replicate(train.create_train_state(config, model, jax.random.key(0),
                                                       num_train))
  step = jax.pmap(functools.partial(train.train_step, model=model, config=config,
                                    schedule=train.learning_rate_schedule(config)),
                  axis_name=train.AXIS, donate_argnums=(0,))
  devices = jax.local_device_count()
  per_device = config.batch_size // devices
  (mel_shape, coch_shape) = train.input_shapes(config)
  rng = np.random.default_rng(0)
  shape = (devices, per_device)
  batch = {'mel': rng.standard_normal(shape + mel_shape, np.float32),
           'coch': rng.standard_normal(shape + coch_shape, np.float32),
           'valence': rng.uniform(-1, 1, shape).astype(np.float32),
           'arousal': rng.uniform(-1, 1, shape).astype(np.float32),
           'index': rng.integers(0, num_train, shape),
           'track_id': rng.integers(0, 50, shape)}
  t0 = time.perf_counter()
  state, metrics = step(state, batch)
  jax.block_until_ready(metrics)
  compile_s = time.perf_counter() - t0
  for _ in range(2):
    state, metrics = step(state, batch)
  jax.block_until_ready(metrics)
  t0 = time.perf_counter()
  for _ in range(steps):
    state, metrics = step(state, batch)
  jax.block_until_ready(metrics)
  seconds = (time.perf_counter() - t0) / steps
  params = sum(x.size for x in jax.tree.leaves(jax_utils.unreplicate(state).params))
  return {
      'device': jax.devices()[0].device_kind, 'devices': devices,
      'global_batch': config.batch_size, 'params': int(params),
      'compile_s': round(compile_s, 2), 'step_ms': round(1000 * seconds, 2),
      'steps_per_s': round(1 / seconds, 2),
      'examples_per_s': round(config.batch_size / seconds, 1)}


def main(argv):
  del argv
  print(json.dumps(measure(_CONFIG.value, _STEPS.value)))


if __name__ == '__main__':
  app.run(main)
