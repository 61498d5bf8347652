r"""Training-step throughput with in-memory batches (no TensorFlow needed).

    python benchmarks/train_throughput.py --config=configs/demo.py [--steps=50]
    python benchmarks/train_throughput.py --config=configs/memo2496.py \
        --config.model.dtype=bfloat16 --config.batch_size=256 --peak

Times the pmapped train step of the config's model and batch on the local devices,
after compilation, and reads the step's FLOPs from XLA's cost analysis of the compiled
per-device program. With --peak it also measures the device's dense matmul rate in
float32 and bfloat16 and reports the step's utilisation against the peak of the
dtype the model computes in. The last line printed is a JSON summary.
"""

import functools
import json
import time

from absl import app
from absl import flags
from flax import jax_utils
import jax
import numpy as np
from ml_collections import config_flags

from damer_jax import config_lib
from damer_jax import models
from damer_jax import train

_CONFIG = config_flags.DEFINE_config_file('config', None, 'Experiment config file.')
flags.mark_flags_as_required(['config'])
_STEPS = flags.DEFINE_integer('steps', 50, 'Timed steps (after 3 warm-up steps).')
_PEAK = flags.DEFINE_bool('peak', False, 'Also measure the matmul peak and utilisation.')


def matmul_peak(dtype, size: int, repeats: int = 10) -> float:
  """Measured FLOP/s of a [size, size] @ [size, size] matmul on the first device."""
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  a = jax.device_put(jnp.ones((size, size), dtype), jax.devices()[0])
  matmul = jax.jit(lambda x, y: x @ y)
  jax.block_until_ready(matmul(a, a))
  t0 = time.perf_counter()
  for _ in range(repeats):
    out = matmul(a, a)
  jax.block_until_ready(out)
  return 2.0 * size ** 3 * repeats / (time.perf_counter() - t0)


def _flops(compiled) -> float | None:
  """FLOPs of one execution of a compiled (per-device) program, from XLA; None if absent."""
  try:
    cost = compiled.cost_analysis()
  except Exception:  # pylint: disable=broad-except
    return None
  if isinstance(cost, (list, tuple)):
    cost = cost[0] if cost else None
  return float(cost['flops']) if cost and 'flops' in cost else None


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
  (mel_shape, coch_shape) = config_lib.input_shapes(config)
  rng = np.random.default_rng(0)
  shape = (devices, per_device)
  batch = {'mel': rng.standard_normal(shape + mel_shape, np.float32),
           'coch': rng.standard_normal(shape + coch_shape, np.float32),
           'valence': rng.uniform(-1, 1, shape).astype(np.float32),
           'arousal': rng.uniform(-1, 1, shape).astype(np.float32),
           'index': rng.integers(0, num_train, shape),
           'track_id': rng.integers(0, 50, shape)}
  t0 = time.perf_counter()
  flops = _flops(step.lower(state, batch).compile())  # Per device, per step.
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
      'dtype': config.model.get('dtype', 'float32'),
      'global_batch': config.batch_size, 'params': int(params),
      'compile_s': round(compile_s, 2), 'step_ms': round(1000 * seconds, 2),
      'steps_per_s': round(1 / seconds, 2),
      'examples_per_s': round(config.batch_size / seconds, 1),
      'flops_per_step_per_device': flops,
      'tflops_per_s_per_device': None if flops is None else round(flops / seconds / 1e12, 4)}


def main(argv):
  del argv
  result = measure(_CONFIG.value, _STEPS.value)
  if _PEAK.value:
    import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
    size = 8192 if jax.devices()[0].platform != 'cpu' else 1024
    peaks = {'float32': matmul_peak(jnp.float32, size),
             'bfloat16': matmul_peak(jnp.bfloat16, size)}
    result['matmul_peak_tflops'] = {k: round(v / 1e12, 3) for k, v in peaks.items()}
    if result['tflops_per_s_per_device'] is not None:
      achieved = result['tflops_per_s_per_device'] * 1e12
      result['utilisation_of_peak'] = round(achieved / peaks[result['dtype']], 4)
  print(json.dumps(result))


if __name__ == '__main__':
  app.run(main)
