"""Training and evaluation: state creation, the per-device steps and the loop.

The steps are pure per-device functions with explicit collectives over the named axis
`AXIS`; `train_and_evaluate` maps them with `jax.pmap` over the local devices.
"""

from __future__ import annotations

import functools
import time
from typing import Any, Callable, Iterable, Iterator

from absl import logging
from etils import epath
from flax import jax_utils
import jax
from jax import lax
import jax.numpy as jnp
import numpy as np
import optax

from damer_jax import checkpointing
from damer_jax import losses
from damer_jax import metrics as metrics_lib
from damer_jax import models
from damer_jax import reporting
from damer_jax.train_state import TrainState

AXIS = 'batch'  # Name of the data-parallel device axis.


def validate_config(config: Any) -> None:
  """Fails fast on settings this release cannot run."""
  for module in ('pcl', 'saml'):
    if config[module].enabled:
      raise NotImplementedError(
          f'config.{module}.enabled=True: {module.upper()} is not part of this release '
          f'yet. Run with --config.{module}.enabled=False.')
  if config.parallelism != 'pmap':
    raise NotImplementedError(
        f"config.parallelism={config.parallelism!r}: only 'pmap' is available in this "
        'release.')
  for name in config.targets:
    if name not in ('valence', 'arousal'):
      raise ValueError(f'config.targets holds {name!r}; use valence and/or arousal.')


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
  decay_mask = lambda params: jax.tree.map(lambda p: p.ndim > 1, params)
  adamw = optax.adamw(learning_rate_schedule(config), b1=opt.b1, b2=opt.b2,
                      weight_decay=opt.weight_decay, mask=decay_mask)
  if opt.grad_clip_norm > 0:
    return optax.chain(optax.clip_by_global_norm(opt.grad_clip_norm), adamw)
  return adamw


def input_shapes(config: Any) -> tuple[tuple[int, int], tuple[int, int]]:
  """(mel [n_mels, frames], coch [n_coch, frames]) shapes of one example."""
  f = config.features
  frames = 1 + int(round(f.segment_seconds * f.sample_rate)) // f.hop_length
  return (f.n_mels, frames), (f.n_coch, frames)


def create_train_state(config: Any, model: models.DAMER, key: jax.Array) -> TrainState:
  """Initialises parameters, batch statistics and the optimiser (unreplicated)."""
  mel_shape, coch_shape = input_shapes(config)
  init_key, train_key = jax.random.split(key)
  variables = jax.jit(functools.partial(model.init, train=False))(
      init_key, jnp.zeros((1,) + mel_shape), jnp.zeros((1,) + coch_shape))
  return TrainState.create(params=variables['params'],
                           batch_stats=variables.get('batch_stats', {}),
                           tx=create_optimizer(config), rng=train_key)


def train_step(state: TrainState, batch: dict[str, jax.Array], *, model: models.DAMER,
               config: Any, schedule: optax.Schedule, axis_name: str = AXIS
               ) -> tuple[TrainState, dict[str, jax.Array]]:
  """One update on one device's batch; gradients averaged over `axis_name`.

  Args:
    state: this device's copy of the TrainState.
    batch: 'mel' [b, n_mels, T], 'coch' [b, n_coch, T] and the targets [b].
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
    loss, metrics = losses.supervised_loss(outputs, batch, config)
    return loss, (metrics, updates['batch_stats'])

  grads, (metrics, batch_stats) = jax.grad(loss_fn, has_aux=True)(state.params)
  grads = lax.pmean(grads, axis_name)
  batch_stats = lax.pmean(batch_stats, axis_name)
  metrics = lax.pmean(metrics, axis_name)
  metrics['grad_norm'] = optax.tree.norm(grads)
  metrics['learning_rate'] = schedule(state.step)
  return state.apply_gradients(grads, batch_stats=batch_stats), metrics


def eval_step(state: TrainState, batch: dict[str, jax.Array], *, model: models.DAMER,
              config: Any) -> dict[str, jax.Array]:
  """Predictions of the three heads for one device's batch.

  Returns 'fusion', 'mel', 'coch': class probabilities [b, targets, classes]
  (classification) or values [b, targets] (regression).
  """
  outputs = model.apply({'params': state.params, 'batch_stats': state.batch_stats},
                        batch['mel'], batch['coch'], train=False)
  heads = ('fusion', 'mel', 'coch')
  if config.task == 'classification':
    return {h: jax.nn.softmax(outputs[h], axis=-1) for h in heads}
  return {h: outputs[h] for h in heads}


def evaluate_batches(p_eval_step: Callable, state: TrainState,
                     batches: Iterable[dict[str, np.ndarray]], config: Any
                     ) -> dict[str, float]:
  """Runs the eval step over all batches and computes metrics of the fusion head.

  Padding (mask == 0) is dropped before the metrics; `num_examples` counts the rest.
  """
  preds, values = [], []
  for batch in batches:
    mask = batch.pop('mask').reshape(-1) > 0
    out = jax.device_get(p_eval_step(state, batch))
    flat = out['fusion'].reshape((-1,) + out['fusion'].shape[2:])
    preds.append(flat[mask])
    values.append(np.stack([batch[t].reshape(-1)[mask] for t in config.targets], -1))
  if not preds:
    raise ValueError('The evaluation split is empty; lower config.dataset.test_fraction '
                     'only if the dataset has enough tracks, or add data.')
  preds, values = np.concatenate(preds), np.concatenate(values)
  if config.task == 'classification':
    result = metrics_lib.classification_metrics(preds, values, config.targets,
                                                config.label_threshold)
  else:
    result = metrics_lib.regression_metrics(preds, values, config.targets)
  result['num_examples'] = int(len(values))
  return result


def _average(metrics_list: list[dict[str, Any]]) -> dict[str, float]:
  stacked = jax.device_get(metrics_list)
  return {k: float(np.mean([m[k][0] for m in stacked])) for k in stacked[0]}


def _data_seed(config: Any, start_step: int) -> int:
  """A data-order seed per (seed, start step), so a resumed run does not replay data."""
  return int(np.random.SeedSequence([config.seed, start_step]).generate_state(1)[0])


def train_and_evaluate(config: Any, workdir: str) -> TrainState:
  """Trains, evaluates every `eval_every_steps` and checkpoints; resumes from workdir.

  Returns the final (unreplicated) TrainState.
  """
  from input_pipeline import pipeline  # TensorFlow enters only here.

  validate_config(config)
  workdir = epath.Path(workdir)
  workdir.mkdir(parents=True, exist_ok=True)
  is_main = jax.process_index() == 0
  writer = reporting.create_writer(workdir, is_main)

  t0 = time.monotonic()
  builder = pipeline.prepare(config)
  logging.info('Records ready in %.1f s: %s (train %d, test %d examples).',
               time.monotonic() - t0, builder.data_dir,
               pipeline.num_examples(builder, 'train'), pipeline.num_examples(builder, 'test'))

  model = models.create_model(config)
  state = create_train_state(config, model, jax.random.key(config.seed))
  manager = checkpointing.create_manager(workdir, config)
  state = checkpointing.restore_latest(manager, state)
  start_step = int(state.step)
  if start_step:
    logging.info('Resuming from step %d.', start_step)
  else:
    writer.write_hparams(config.to_dict())

  schedule = learning_rate_schedule(config)
  p_train_step = jax.pmap(
      functools.partial(train_step, model=model, config=config, schedule=schedule),
      axis_name=AXIS, donate_argnums=(0,))
  p_eval_step = jax.pmap(functools.partial(eval_step, model=model, config=config),
                         axis_name=AXIS)
  train_iter = pipeline.train_iterator(builder, config, seed=_data_seed(config, start_step))
  report_progress = reporting.create_progress_reporter(config.num_train_steps, writer)

  state = jax_utils.replicate(state)
  train_metrics = []
  for step in range(start_step + 1, config.num_train_steps + 1):
    with jax.profiler.StepTraceAnnotation('train', step_num=step):
      state, metrics = p_train_step(state, next(train_iter))
    train_metrics.append(metrics)
    report_progress(step)
    last = step == config.num_train_steps
    if step % config.log_every_steps == 0 or last:
      summary = _average(train_metrics)
      train_metrics = []
      if not np.isfinite(summary['loss']):
        raise FloatingPointError(
            f'Training loss is {summary["loss"]} at step {step}; the last good checkpoint '
            f'is in {workdir / "checkpoints"}. Lower config.optimizer.learning_rate.')
      writer.write_scalars(step, {f'train/{k}': v for k, v in summary.items()})
    if step % config.eval_every_steps == 0 or last:
      result = evaluate_batches(p_eval_step, state, pipeline.eval_batches(builder, config),
                                config)
      writer.write_scalars(step, {f'test/{k}': v for k, v in result.items()})
      if is_main:
        reporting.append_eval_metrics(workdir, {'step': step, 'split': 'test', **result})
      logging.info('eval at step %d: %s', step, result)
    if step % config.checkpoint_every_steps == 0 or last:
      checkpointing.save(manager, jax_utils.unreplicate(state))
  manager.wait_until_finished()
  writer.flush()
  return jax_utils.unreplicate(state)


def evaluate(config: Any, workdir: str) -> dict[str, float]:
  """Evaluates the latest checkpoint in workdir on the test split; appends the row."""
  from input_pipeline import pipeline  # TensorFlow enters only here.

  validate_config(config)
  manager = checkpointing.create_manager(workdir, config)
  if manager.latest_step() is None:
    raise FileNotFoundError(f'No checkpoint in {epath.Path(workdir) / "checkpoints"}; '
                            'train first (--mode=train) with this --workdir.')
  builder = pipeline.prepare(config)
  model = models.create_model(config)
  state = checkpointing.restore_latest(
      manager, create_train_state(config, model, jax.random.key(config.seed)))
  p_eval_step = jax.pmap(functools.partial(eval_step, model=model, config=config),
                         axis_name=AXIS)
  result = evaluate_batches(p_eval_step, jax_utils.replicate(state),
                            pipeline.eval_batches(builder, config), config)
  if jax.process_index() == 0:
    reporting.append_eval_metrics(workdir, {'step': int(state.step), 'split': 'test',
                                            **result})
  return result
