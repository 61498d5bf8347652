"""Training: state creation, the per-device train step and the loop.

The step is a pure per-device function with explicit collectives over the named axis
`AXIS`; `train_and_evaluate` maps it (and `evaluate.eval_step`, for the evaluations
during training) over the devices with the driver of config.parallelism. Evaluating a
finished checkpoint is `damer_jax.evaluate`.
"""

from __future__ import annotations

import collections
import functools
import os
import signal
import threading
from typing import Any, Iterator

from absl import logging
from etils import epath
import jax
from jax import lax
import jax.numpy as jnp
import numpy as np
import optax

from damer_data import dataset as data_lib
from damer_jax import checkpointing
from damer_jax import config_lib
from damer_jax import evaluate
from damer_jax import losses
from damer_jax import models
from damer_jax import parallel
from damer_jax import pcl
from damer_jax import reporting
from damer_jax import saml
from damer_jax.train_state import TrainState

AXIS = parallel.AXIS  # Name of the data-parallel device axis.


DEFAULT_COMPILATION_CACHE = '~/.cache/damer_jax/xla'


def use_compilation_cache(directory: str | None) -> str | None:
  """Turns JAX's persistent compilation cache on in `directory` (None or '': off).

  A restart, a resume or another run of the same model then loads its compiled steps
  instead of compiling them again. A cache the user set with the environment variable
  JAX_COMPILATION_CACHE_DIR wins over `directory`. Returns the directory in use.
  """
  if os.environ.get('JAX_COMPILATION_CACHE_DIR'):
    directory = os.environ['JAX_COMPILATION_CACHE_DIR']
  elif directory:
    directory = os.path.expanduser(str(directory))
  jax.config.update('jax_compilation_cache_dir', directory or None)
  logging.info('Persistent compilation cache: %s', directory or 'off')
  return directory or None


def learning_rate_schedule(config: Any) -> optax.Schedule:
  """Linear warm-up to the peak, then cosine decay to factor * peak at the last step."""
  opt = config.optimizer
  return optax.warmup_cosine_decay_schedule(
      init_value=0.0, peak_value=opt.learning_rate,
      warmup_steps=min(opt.warmup_steps, config.num_train_steps),
      decay_steps=max(config.num_train_steps, opt.warmup_steps + 1),
      end_value=opt.learning_rate * opt.end_learning_rate_factor)


def create_optimizer(config: Any) -> optax.GradientTransformation:
  """AdamW (decay on kernels only) after global-norm clipping."""
  opt = config.optimizer
  decay_mask = lambda params: jax.tree_util.tree_map_with_path(
      lambda path, _: _leaf_name(path) == 'kernel', params)
  adamw = optax.adamw(learning_rate_schedule(config), b1=opt.b1, b2=opt.b2,
                      weight_decay=opt.weight_decay, mask=decay_mask)
  if opt.grad_clip_norm > 0:
    return optax.chain(optax.clip_by_global_norm(opt.grad_clip_norm), adamw)
  return adamw


def _leaf_name(path: tuple[Any, ...]) -> str:
  """The last key of a pytree path ('kernel', 'bias', 'scale', 'pos_embedding', ...)."""
  last = path[-1]
  return str(getattr(last, 'key', getattr(last, 'name', last)))


def create_train_state(config: Any, model: models.DAMER, key: jax.Array,
                       num_train: int = 0, num_unlabelled: int = 0) -> TrainState:
  """Initialises parameters, batch statistics, optimiser and module state (unreplicated).

  Args:
    config: the experiment config.
    model: the network.
    key: typed root key.
    num_train: examples in the training split; needed only when config.pcl.enabled.
    num_unlabelled: examples in the unlabelled pool; the PCL table has num_train rows,
      plus num_unlabelled when the unlabelled stream is on (config.pcl.unlabelled_batch_size).
  """
  mel_shape, coch_shape = config_lib.input_shapes(config)
  init_key, train_key = jax.random.split(key)
  variables = jax.jit(functools.partial(model.init, train=False))(
      init_key, jnp.zeros((1,) + mel_shape), jnp.zeros((1,) + coch_shape))
  modules = {}
  num_targets = len(config.targets)
  if config.pcl.enabled:
    if num_train <= 0:
      raise ValueError('PCL needs the size of the training split (num_train > 0).')
    rows = num_train + (num_unlabelled if data_lib.unlabelled_batch_size(config) else 0)
    modules['pcl'] = pcl.init_state(rows, num_targets, config.num_classes)
  if config.saml.enabled:
    modules['saml'] = saml.init_state(config.saml.queue_size, config.saml.projection_dim,
                                      num_targets, config.num_classes,
                                      positives=config.saml.get('positives', 'joint'))
    if config.saml.key_encoder == 'ema':
      modules['ema_params'] = jax.tree.map(jnp.copy, variables['params'])
  return TrainState.create(params=variables['params'],
                           batch_stats=variables.get('batch_stats', {}),
                           tx=create_optimizer(config), rng=train_key, **modules)


def _saml_keys(state: TrainState, outputs: dict[str, jax.Array],
               batch: dict[str, jax.Array], model: models.DAMER, config: Any) -> jax.Array:
  """SAML keys [b, P]: from the momentum copy of the params, or the current projection."""
  if config.saml.key_encoder == 'current':
    return lax.stop_gradient(outputs['projection'])
  ema_out = model.apply({'params': state.ema_params, 'batch_stats': state.batch_stats},
                        batch['mel'], batch['coch'], train=False)
  return lax.stop_gradient(ema_out['projection'])


def train_step(state: TrainState, batch: dict[str, jax.Array], *, model: models.DAMER,
               config: Any, schedule: optax.Schedule, axis_name: str = AXIS
               ) -> tuple[TrainState, dict[str, jax.Array]]:
  """One update on one device's batch; gradients averaged over `axis_name`.

  loss = CE(fusion) + alpha (CE(mel) + CE(coch)) [+ beta PCL] [+ gamma SAML]; a module
  that is switched off is neither computed nor holds state. Every loss is a mean over
  the global batch (see `losses.global_mean`), and BatchNorm statistics are taken over
  it too, so the result does not depend on the number of devices (dropout draws aside).

  Args:
    state: this device's copy of the TrainState.
    batch: 'mel' [b, n_mels, T], 'coch' [b, n_coch, T], the targets [b], and for PCL
      'index' [b], for SAML 'track_id' [b]; optionally 'labelled' [b] (0 = a row of
      the unlabelled stream: no supervised loss, PCL pseudo labels only) and the
      raters' 'valence_std' / 'arousal_std' [b] (damer_data/dataset.py).
    model, config, schedule: bound with functools.partial.
    axis_name: the mapped device axis.

  Returns:
    The new state (identical on every device) and metrics averaged over devices.
  """
  key = jax.random.fold_in(jax.random.fold_in(state.key, state.step),
                           lax.axis_index(axis_name))

  def loss_fn(params):
    outputs, updates = model.apply(
        {'params': params, 'batch_stats': state.batch_stats}, batch['mel'], batch['coch'],
        train=True, rngs={'dropout': key}, mutable=['batch_stats'])
    new = {'batch_stats': updates['batch_stats']}
    weights = batch.get('labelled')  # [b] or None (every row annotated).
    metrics = {}
    if config.pcl.enabled:
      pcl_loss, new['pcl'], metrics, weights = pcl.pcl_step(
          state.pcl, outputs, batch, state.step, config, axis_name)
    loss, supervised_metrics = losses.supervised_loss(outputs, batch, config, weights,
                                                      axis_name)
    metrics.update(supervised_metrics)
    metrics['loss_supervised'] = loss
    if config.pcl.enabled:
      loss = loss + config.pcl.weight * pcl_loss
    if config.saml.enabled:
      keys = _saml_keys(state, outputs, batch, model, config)
      saml_loss, new['saml'], saml_metrics = saml.saml_step(
          state.saml, outputs['projection'], keys, batch, config, axis_name)
      loss = loss + config.saml.weight * saml_loss
      metrics.update(saml_metrics)
    metrics['loss'] = loss
    return loss, (metrics, new)

  grads, (metrics, new) = jax.grad(loss_fn, has_aux=True)(state.params)
  grads = lax.pmean(grads, axis_name)
  new['batch_stats'] = lax.pmean(new['batch_stats'], axis_name)
  metrics = lax.pmean(metrics, axis_name)
  metrics['grad_norm'] = optax.tree.norm(grads)
  metrics['learning_rate'] = schedule(state.step)
  # A non-finite loss or gradient leaves the whole state as it was (the same decision
  # on every device: both values are already averaged over the axis).
  finite = jnp.isfinite(metrics['loss']) & jnp.isfinite(metrics['grad_norm'])
  metrics['finite'] = finite.astype(jnp.float32)
  updated = state.apply_gradients(grads, **new)
  if config.saml.enabled and config.saml.key_encoder == 'ema':
    updated = updated.replace(ema_params=saml.ema_params(
        updated.ema_params, updated.params, config.saml.ema_momentum))
  return jax.tree.map(lambda a, b: jnp.where(finite, a, b), updated, state), metrics


def create_driver(config: Any, model: models.DAMER) -> Any:
  """The pmap or shard_map driver of the train and eval steps (config.parallelism)."""
  return parallel.create_driver(
      config.parallelism,
      functools.partial(train_step, model=model, config=config,
                        schedule=learning_rate_schedule(config)),
      functools.partial(evaluate.eval_step, model=model, config=config))


def _data_seed(config: Any) -> int:
  """The data-order seed of a run (the input stream is a function of it and the step)."""
  return int(np.random.SeedSequence([config.seed, 0xDA7A]).generate_state(1)[0])


class _StepMetrics:
  """The train steps' metrics, left on the devices until the host needs them.

  `add` keeps a step's device arrays and does no host work and no transfer; `summary`
  (at the log interval) fetches everything kept, all at once, and averages it;
  `check_finite` (before a checkpoint is written) fetches only the `finite` flags.
  `train_step` already skips a non-finite update on the device; a skipped step found by
  either ends the run with a FloatingPointError naming the first such step, before
  anything after it is saved.
  """

  def __init__(self, driver: Any, workdir: epath.Path, manager):
    self._driver, self._workdir, self._manager = driver, workdir, manager
    self._steps, self._metrics = [], []

  def add(self, step: int, metrics: dict[str, jax.Array]) -> None:
    self._steps.append(step)
    self._metrics.append(metrics)

  def check_finite(self) -> None:
    """Raises if a kept step was non-finite (fetches only the flags)."""
    if self._metrics:
      self._check(self._fetch([m['finite'] for m in self._metrics]))

  def summary(self) -> dict[str, float]:
    """Mean of every metric over the kept steps; forgets them."""
    host = self._fetch(self._metrics)
    self._check([m['finite'] for m in host])
    summary = {k: float(np.mean([m[k] for m in host])) for k in host[0]}
    self._steps, self._metrics = [], []
    return summary

  def _fetch(self, tree):
    return self._driver.host_metrics(jax.device_get(tree))

  def _check(self, finite: list[Any]) -> None:
    bad = [i for i, flag in enumerate(finite) if float(flag) <= 0]
    if not bad:
      return
    step = self._steps[bad[0]]
    metrics = self._fetch(self._metrics[bad[0]])
    self._manager.wait_until_finished()
    good = self._manager.latest_step()
    raise FloatingPointError(
        f'Non-finite training loss or gradient at step {step} (loss '
        f'{float(metrics["loss"])}, gradient norm {float(metrics["grad_norm"])}). The '
        f'update was skipped and nothing after it was saved; the last good checkpoint is '
        f'{"step " + str(good) if good is not None else "none"} in '
        f'{self._workdir / "checkpoints"}. Lower config.optimizer.learning_rate or check '
        'the data, then run again on this workdir to resume from it.')


def _on_device(batches: Iterator[dict[str, np.ndarray]], put: Any, size: int = 2
               ) -> Iterator[Any]:
  """Yields `put(batch)` for each batch, `size` batches ahead of the step reading them.

  `jax.device_put` returns at once, so each batch's host-to-device copy overlaps the
  steps before it instead of starting inside its own step.
  """
  queue = collections.deque()
  for batch in batches:
    queue.append(put(batch))
    if len(queue) == size:
      yield queue.popleft()
  while queue:
    yield queue.popleft()


class _Preemption:
  """Turns SIGTERM (what a preemption sends) into a request to checkpoint and stop.

  One process only: with several, JAX's preemption service catches the signal and
  Orbax's `reached_preemption` makes every process stop at the same step.
  """

  def __init__(self):
    self.requested = False
    self._previous = None

  def __enter__(self):
    if (jax.process_count() == 1 and
        threading.current_thread() is threading.main_thread()):
      self._previous = signal.signal(signal.SIGTERM, self._handle)
    return self

  def _handle(self, signum, frame):
    del signum, frame
    self.requested = True

  def __exit__(self, *exc):
    if self._previous is not None:
      signal.signal(signal.SIGTERM, self._previous)
    return False


def train_and_evaluate(config: Any, workdir: str, data: data_lib.Dataset) -> TrainState:
  """Trains, evaluates every `eval_every_steps` and checkpoints; resumes from workdir.

  `data` is what the run reads (damer_data/dataset.py), made by the entry point
  (`input_pipeline.sources.create_dataset`). SIGTERM makes the run save a checkpoint at the current step and
  return normally; a non-finite loss or gradient ends it with a FloatingPointError
  naming the step. Returns the final (host-side) TrainState.
  """
  config_lib.validate_config(config)
  logging.info('Data: train %d, unlabelled %d examples; evaluating %s.', data.num_train,
               data.num_unlabelled, ', '.join(data.eval_splits))
  with _Preemption() as preemption:
    return _train_loop(config, workdir, data, preemption)


def _train_loop(config: Any, workdir: str, data: data_lib.Dataset,
                preemption: _Preemption) -> TrainState:
  """The body of `train_and_evaluate`."""
  workdir = epath.Path(workdir)
  workdir.mkdir(parents=True, exist_ok=True)
  is_main = jax.process_index() == 0
  writer = reporting.create_writer(workdir, is_main)

  model = models.create_model(config, axis_name=AXIS)
  state = create_train_state(config, model, jax.random.key(config.seed), data.num_train,
                             data.num_unlabelled)
  manager = checkpointing.create_manager(workdir, config)
  state = checkpointing.restore_latest(manager, state)
  start_step = int(state.step)
  if start_step:
    logging.info('Resuming from step %d.', start_step)
  else:
    writer.write_hparams(config.to_dict())
  if is_main:  # Lets `Predictor.from_workdir` and the report rebuild the model alone.
    checkpointing.save_config(config, workdir)

  driver = create_driver(config, model)
  train_iter = data.train_batches(config, seed=_data_seed(config), start_step=start_step)
  report_progress = reporting.create_progress_reporter(config.num_train_steps, writer)

  state = driver.put_state(state)  # The sharding the step returns: one compile.
  train_iter = _on_device(train_iter, driver.put_batch)
  train_metrics = _StepMetrics(driver, workdir, manager)
  for step in range(start_step + 1, config.num_train_steps + 1):
    with jax.profiler.StepTraceAnnotation('train', step_num=step):
      state, metrics = driver.train_step_device(state, next(train_iter))
    train_metrics.add(step, metrics)
    report_progress(step)
    last = step == config.num_train_steps
    stop = (manager.reached_preemption(step) if jax.process_count() > 1
            else preemption.requested)
    if step % config.log_every_steps == 0 or last or stop:
      summary = train_metrics.summary()
      writer.write_scalars(step, {f'train/{k}': v for k, v in summary.items()})
      if is_main:
        reporting.append_jsonl(workdir, reporting.TRAIN_METRICS, {'step': step, **summary})
    if step % config.eval_every_steps == 0 or last:
      for split in data.eval_splits:
        result = evaluate.split_metrics(evaluate.collect(
            driver, evaluate.variables_of(state), data.eval_batches(config, split), config,
            heads=('fusion',), split=split), config)
        writer.write_scalars(step, {f'{split}/{k}': v for k, v in result.items()})
        if is_main:
          reporting.append_eval_metrics(workdir, {'step': step, 'split': split, **result})
        logging.info('eval of %s at step %d: %s', split, step, result)
    if step % config.checkpoint_every_steps == 0 or last or stop:
      train_metrics.check_finite()
      checkpointing.save(manager, driver.get_state(state))
    if stop:
      logging.warning('Preemption (SIGTERM) at step %d: checkpoint saved; stopping. Run '
                      'the same command again to resume.', step)
      break
  train_metrics.check_finite()
  manager.wait_until_finished()
  writer.flush()
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
    multihost_utils.sync_global_devices('train_and_evaluate:end')
  return driver.get_state(state)
