"""Evaluation: a model run over a split, what it predicted, and what that scores.

Every job that asks a trained model about data goes through here:

* `restore_variables`: the one restore path for inference (the evaluate mode, the
  drift figure's embeddings, `predict.Predictor`): the model's variables of a
  checkpoint, checked against the model `config` builds. Neither the dataset (the PCL
  table's size) nor the optimiser is needed.
* `eval_step` / `model_outputs`: what the network says at inference, per device.
* `collect`: every example of a split through a driver's eval step, padding dropped,
  gathered from every process -> `Predictions`.
* `split_metrics`: the row training appends to eval_metrics.jsonl for each split.
* `evaluate`: `--mode=evaluate`: a checkpoint's report in `<workdir>/report/`.
* `embeddings`: the fused embeddings of a split, for the drift figure (ablation.py).

The report (`write_report`) holds:

| file                 | what it holds                                                     |
|----------------------|-------------------------------------------------------------------|
| metrics.json         | segment-level metrics of each head, track-level metrics of each head, counts, step |
| predictions.jsonl    | one line per segment: track, start_s, annotated and predicted values |
| confusion.png        | high/low confusion matrices per target, segments and tracks      |
| va_scatter.png       | predictions against annotations per target, and the valence-arousal plane per track |
| training_curves.png  | training losses and learning rate, test metrics against the step  |
| report.md            | one page that links the rest                                      |

Track level: a track's prediction is the mean of its segments' predictions (class
probabilities or values) and its annotation the mean of its segments' annotations.
The figures are drawn by `damer_jax.plots` (matplotlib is imported only to draw them).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
from typing import Any, Iterable, Sequence

from absl import logging
from etils import epath
import jax
import numpy as np
import orbax.checkpoint as ocp
from sklearn import metrics as skm

from damer_jax import checkpointing
from damer_jax import config_lib
from damer_jax import metrics as metrics_lib
from damer_jax import models
from damer_jax import parallel
from damer_jax import reporting

HEADS = ('fusion', 'mel', 'coch')
REPORT_FILES = ('metrics.json', 'predictions.jsonl', 'confusion.png', 'va_scatter.png',
                'training_curves.png', 'report.md')
REPORT_DIR = 'report'  # <workdir>/report/


# ---------------------------------------------------------------------------------------
# The model at inference.


def model_outputs(variables: dict[str, Any], mel: jax.Array, coch: jax.Array, *,
                  model: models.DAMER, task: str) -> dict[str, jax.Array]:
  """What the network says about a batch of segments (inference mode).

  Args:
    variables: {'params', 'batch_stats'} of the model.
    mel: [b, n_mels, frames]; coch: [b, n_coch, frames].
    model: the network; task: config.task.

  Returns:
    'fusion', 'mel', 'coch': class probabilities [b, targets, classes]
    (classification) or values [b, targets] (regression); 'embedding' [b, D].
  """
  outputs = model.apply(variables, mel, coch, train=False)
  if task == 'classification':
    result = {h: jax.nn.softmax(outputs[h], axis=-1) for h in HEADS}
  else:
    result = {h: outputs[h] for h in HEADS}
  result['embedding'] = outputs['embedding']
  return result


def eval_step(variables: dict[str, Any], batch: dict[str, jax.Array], *,
              model: models.DAMER, config: Any) -> dict[str, jax.Array]:
  """`model_outputs` of one device's batch ('mel' [b, F, T], 'coch' [b, F', T])."""
  return model_outputs(variables, batch['mel'], batch['coch'], model=model,
                       task=config.task)


def variables_of(state: Any) -> dict[str, Any]:
  """The model's variables {'params', 'batch_stats'} of a TrainState (placed as it is)."""
  return {'params': state.params, 'batch_stats': state.batch_stats}


def scores(outputs: np.ndarray, task: str) -> np.ndarray:
  """[N, T]: P(high) for classification outputs [N, T, C], the values otherwise."""
  return outputs[..., -1] if task == 'classification' else outputs


def create_eval_driver(config: Any, model: models.DAMER) -> Any:
  """A pmap or shard_map driver (config.parallelism) that only evaluates."""
  return parallel.create_driver(
      config.parallelism, None, functools.partial(eval_step, model=model, config=config))


def restore_variables(config: Any, workdir: epath.PathLike, step: int | None = None
                      ) -> tuple[dict[str, Any], int]:
  """({'params', 'batch_stats'} as host arrays, step) of a workdir's checkpoint.

  The latest checkpoint (or `step`'s); a damaged latest one falls back to the previous
  (`checkpointing.restore_with_fallback`). The variables are checked against the model
  built from `config`.

  Raises:
    FileNotFoundError: no checkpoint (or no such step) in the workdir.
    ValueError: the config does not run, or the checkpoint does not fit its model.
  """
  config_lib.validate_config(config)
  manager = checkpointing.create_manager(workdir, config, create=False)
  if step is None and manager.latest_step() is None:
    checkpointing.resolve_step(manager)  # Raises: no checkpoint, train first.
  restored, step = checkpointing.restore_with_fallback(
      manager, lambda s: manager.restore(s, args=ocp.args.StandardRestore()), step)
  variables = {'params': restored['params'], 'batch_stats': restored.get('batch_stats', {})}
  variables = jax.device_get(variables)
  model = models.create_model(config)
  mel_shape, coch_shape = config_lib.input_shapes(config)
  expected = jax.eval_shape(functools.partial(model.init, train=False), jax.random.key(0),
                            np.zeros((1,) + mel_shape, np.float32),
                            np.zeros((1,) + coch_shape, np.float32))
  expected = {'params': expected['params'], 'batch_stats': expected.get('batch_stats', {})}
  _check_shapes(expected, variables, f'{manager.directory / str(step)}')
  return variables, int(step)


def _check_shapes(expected: Any, restored: Any, where: str) -> None:
  want = {jax.tree_util.keystr(k): v.shape
          for k, v in jax.tree_util.tree_flatten_with_path(expected)[0]}
  have = {jax.tree_util.keystr(k): np.shape(v)
          for k, v in jax.tree_util.tree_flatten_with_path(restored)[0]}
  problems = [f'{k} missing from the checkpoint' for k in want if k not in have]
  problems += [f'{k} is not in the model' for k in have if k not in want]
  problems += [f'{k} has shape {have[k]} in the checkpoint, {want[k]} in the model'
               for k in want if k in have and tuple(have[k]) != tuple(want[k])]
  if problems:
    more = f' (and {len(problems) - 3} more)' if len(problems) > 3 else ''
    raise ValueError(
        f'Checkpoint {where} does not match the model built from this config: '
        f'{"; ".join(problems[:3])}{more}. Use the config it was trained with (training '
        f'saves it as config.json in the workdir).')


# ---------------------------------------------------------------------------------------
# Collecting a split's predictions.


@dataclasses.dataclass
class Predictions:
  """Every example of a split with what the model said about it (all processes).

  heads: name -> [N, T, C] class probabilities (classification) or [N, T] values; only
    the heads asked for.
  values: annotated values [N, T] in [-1, 1] (config.targets order); track_id [N];
  start_s [N]; embedding: fused embeddings [N, D], or None when not asked for.
  """
  heads: dict[str, np.ndarray]
  values: np.ndarray
  track_id: np.ndarray
  start_s: np.ndarray
  embedding: np.ndarray | None = None

  def __len__(self) -> int:
    return len(self.values)


def collect(driver: Any, variables: Any, batches: Iterable[dict[str, np.ndarray]],
            config: Any, *, heads: Sequence[str] = HEADS, embedding: bool = False,
            split: str = 'test') -> Predictions:
  """Runs every batch through `driver.eval_step` and gathers the outputs of all processes.

  Args:
    driver: a parallel driver; `variables` placed as its eval step reads them
      (`driver.put_state`), e.g. `variables_of(state)` of the training state.
    batches: [local_devices, per_device, ...] with a float 'mask' (1 = real example);
      padding rows are dropped before anything is kept.
    config: the experiment config (targets).
    heads: which heads' outputs to keep (only these leave the devices).
    embedding: keep the fused embeddings too.
    split: its name, for the error on an empty split.

  Returns:
    Predictions in batch order, process 0's examples first; every process gets all.
  """
  targets = tuple(config.targets)
  keys = tuple(heads) + (('embedding',) if embedding else ())
  kept = {k: [] for k in keys}
  values, tracks, starts = [], [], []
  for batch in batches:
    mask = np.asarray(batch['mask']).reshape(-1) > 0
    out = driver.eval_step(variables, {k: v for k, v in batch.items() if k != 'mask'})
    out = jax.device_get({k: out[k] for k in keys})
    flat = lambda x: np.asarray(x).reshape((-1,) + np.shape(x)[2:])[mask]
    for k in keys:
      kept[k].append(flat(out[k]).astype(np.float32))
    values.append(np.stack([flat(batch[t]) for t in targets], -1).astype(np.float32))
    tracks.append(flat(batch['track_id']))
    starts.append(flat(batch['start_s']) if 'start_s' in batch
                  else np.zeros(int(mask.sum()), np.float32))
  if not values:
    raise ValueError(f'The evaluation split {split!r} is empty: the dataset has too few '
                     'tracks for config.dataset.test_fraction; add data or raise the '
                     'fraction.')
  local = {f'out/{k}': np.concatenate(v) for k, v in kept.items()}
  local.update(values=np.concatenate(values), track_id=np.concatenate(tracks),
               start_s=np.concatenate(starts))
  everyone = parallel.gather_examples(local)  # All processes' examples, on each.
  return Predictions({h: everyone[f'out/{h}'] for h in heads}, everyone['values'],
                     everyone['track_id'], everyone['start_s'],
                     everyone['out/embedding'] if embedding else None)


def split_metrics(pred: Predictions, config: Any) -> dict[str, float]:
  """The fusion head's metrics, with `num_examples` and `num_tracks` (distinct tracks)."""
  row = metrics_lib.head_metrics(pred.heads['fusion'], pred.values, config)
  row.update(num_examples=len(pred), num_tracks=int(len(np.unique(pred.track_id))))
  return row


def track_means(pred: Predictions) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
  """(heads [K, ...], values [K, T], track ids [K]): per-track means, tracks ascending."""
  ids, inverse = np.unique(pred.track_id, return_inverse=True)
  counts = np.bincount(inverse, minlength=len(ids)).astype(np.float64)

  def mean(x):
    flat = x.reshape(len(x), -1).astype(np.float64)
    sums = np.zeros((len(ids), flat.shape[1]))
    np.add.at(sums, inverse, flat)
    return (sums / counts[:, None]).reshape((len(ids),) + x.shape[1:]).astype(np.float32)

  return {h: mean(v) for h, v in pred.heads.items()}, mean(pred.values), ids


def compute_metrics(pred: Predictions, config: Any, step: int,
                    split: str = 'test') -> dict[str, Any]:
  """The content of metrics.json (NaN, e.g. AUC with one class present, -> None)."""
  track_heads, track_values, track_ids = track_means(pred)
  result = {
      'step': int(step), 'split': split, 'task': config.task,
      'targets': list(config.targets), 'label_threshold': config.label_threshold,
      'num_segments': len(pred), 'num_tracks': int(len(track_ids)),
      'segment': {h: metrics_lib.head_metrics(pred.heads[h], pred.values, config)
                  for h in pred.heads},
      'track': {h: metrics_lib.head_metrics(track_heads[h], track_values, config)
                for h in pred.heads},
  }
  return _finite_or_none(result)


def _finite_or_none(tree):
  if isinstance(tree, dict):
    return {k: _finite_or_none(v) for k, v in tree.items()}
  if isinstance(tree, float) and not math.isfinite(tree):
    return None
  return tree


def confusion(outputs: np.ndarray, values: np.ndarray, config: Any) -> list[np.ndarray]:
  """Per target: counts [2, 2], rows annotated low/high, columns predicted low/high."""
  s = scores(outputs, config.task)
  cut = 0.5 if config.task == 'classification' else config.label_threshold
  return [skm.confusion_matrix(values[:, t] > config.label_threshold, s[:, t] > cut,
                               labels=[False, True])
          for t in range(values.shape[1])]


# ---------------------------------------------------------------------------------------
# The jobs.


def evaluate(config: Any, workdir: epath.PathLike, step: int | None, data: Any
             ) -> dict[str, Any]:
  """`--mode=evaluate`: a checkpoint on the first eval split, and `<workdir>/report/`.

  Appends the fusion head's segment-level row to eval_metrics.jsonl (as training does)
  and returns the report's metrics (metrics.json) on every process; process 0 writes.

  Args:
    config: the config the workdir was trained with.
    workdir: the training workdir.
    step: a checkpoint step; None: the latest.
    data: a damer_data.dataset.Dataset (its eval batches; no PCL table size needed).
  """
  variables, step = restore_variables(config, workdir, step)
  driver = create_eval_driver(config, models.create_model(config))
  split = data.eval_splits[0]
  pred = collect(driver, driver.put_state(variables), data.eval_batches(config, split),
                 config, split=split)
  metrics = compute_metrics(pred, config, step, split)
  if jax.process_index() != 0:
    return metrics
  reporting.append_eval_metrics(  # The fusion head's row, as training writes it.
      workdir, {'step': step, 'split': split, **metrics['segment']['fusion'],
                'num_examples': metrics['num_segments'],
                'num_tracks': metrics['num_tracks']})
  report_dir = epath.Path(workdir) / REPORT_DIR
  write_report(report_dir, workdir, pred, metrics, config)
  logging.info('Wrote the evaluation report of step %d to %s.', step,
               report_dir / 'report.md')
  return metrics


def embeddings(config: Any, workdir: epath.PathLike, data: Any, target: str = 'valence',
               split: str = 'test') -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """Fused embeddings of the latest checkpoint in `workdir` on one split of `data`.

  Returns (embeddings [N, D], class of `target` [N] (1 = value > config.label_threshold),
  track ids [N]), padding removed. Valence is the default target: it is the one the
  style drift hurts most (held-out style on the demo: valence accuracy 0.94 -> 0.60,
  arousal 0.98 -> 0.93; docs/ablations.md).
  """
  targets = tuple(config.targets)
  if target not in targets:
    raise ValueError(f'embeddings(target={target!r}): the model predicts only '
                     f'{", ".join(targets)} (config.targets).')
  variables, _ = restore_variables(config, workdir)
  driver = create_eval_driver(config, models.create_model(config))
  pred = collect(driver, driver.put_state(variables), data.eval_batches(config, split),
                 config, heads=(), embedding=True, split=split)
  classes = (pred.values[:, targets.index(target)] > config.label_threshold)
  return pred.embedding, classes.astype(np.int64), pred.track_id


# ---------------------------------------------------------------------------------------
# The report's files.


def write_report(report_dir: epath.PathLike, workdir: epath.PathLike, pred: Predictions,
                 metrics: dict[str, Any], config: Any) -> epath.Path:
  """Writes every file of the report (module docstring); returns report.md's path.

  `metrics` is `compute_metrics(pred, ...)`; the figures are drawn by damer_jax.plots.
  """
  from damer_jax import plots  # pylint: disable=g-import-not-at-top  # matplotlib.
  out = epath.Path(report_dir)
  out.mkdir(parents=True, exist_ok=True)
  targets, task, step = tuple(config.targets), config.task, metrics['step']
  (out / 'metrics.json').write_text(json.dumps(metrics, indent=2, sort_keys=True) + '\n')
  _write_predictions(out / 'predictions.jsonl', pred, targets, task)

  track_heads, track_values, _ = track_means(pred)
  seg_cm = confusion(pred.heads['fusion'], pred.values, config)
  trk_cm = confusion(track_heads['fusion'], track_values, config)
  binarised = '' if task == 'classification' else (
      f' (regression outputs split at {config.label_threshold})')
  panels = []
  for t, name in enumerate(targets):
    panels += [(f'{name}, segments', seg_cm[t]), (f'{name}, tracks (mean)', trk_cm[t])]
  plots.plot_confusion_matrices(
      panels, out / 'confusion.png',
      f'Fusion head, {metrics["split"]} split, step {step}: high = annotation > '
      f'{config.label_threshold:g}{binarised}')
  plots.plot_va_scatter(
      targets, pred.values, scores(pred.heads['fusion'], task), track_values,
      scores(track_heads['fusion'], task), task=task, threshold=config.label_threshold,
      path=out / 'va_scatter.png',
      title=f'Fusion head against annotations, {metrics["split"]} split, step {step}')
  metric_names = ('accuracy', 'auc') if task == 'classification' else ('ccc', 'rmse')
  plots.plot_training_curves(
      reporting.read_jsonl(workdir, reporting.TRAIN_METRICS),
      reporting.read_eval_metrics(workdir), targets, metric_names,
      out / 'training_curves.png', f'Training run in {epath.Path(workdir).name}')
  (out / 'report.md').write_text(_markdown(metrics, config, workdir))
  return out / 'report.md'


def _write_predictions(path: epath.Path, pred: Predictions, targets, task) -> None:
  s = scores(pred.heads['fusion'], task)
  lines = []
  for i in range(len(pred)):
    row = {'track_id': int(pred.track_id[i]), 'start_s': float(pred.start_s[i])}
    for t, name in enumerate(targets):
      row[name] = round(float(pred.values[i, t]), 5)
      row[f'predicted_{name}'] = round(float(s[i, t]), 5)
    lines.append(json.dumps(row))
  path.write_text('\n'.join(lines) + '\n')


def _fmt(x) -> str:
  return 'n/a' if x is None else f'{x:.3f}'


def _table(rows: dict[str, dict[str, float]], targets, names) -> list[str]:
  header = '| head | ' + ' | '.join(f'{t} {n}' for t in targets for n in names) + ' |'
  lines = [header, '|' + '---|' * (1 + len(targets) * len(names))]
  for head, values in rows.items():
    lines.append(f'| {head} | ' + ' | '.join(_fmt(values.get(f'{t}/{n}'))
                                            for t in targets for n in names) + ' |')
  return lines


def _markdown(metrics, config, workdir) -> str:
  targets = metrics['targets']
  names = (('accuracy', 'f1', 'auc') if config.task == 'classification'
           else ('ccc', 'r2', 'rmse'))
  modules = ', '.join(f'{m} {"on" if config[m].enabled else "off"}'
                      for m in ('dsaf', 'pcl', 'saml'))
  high = (f'annotation > {config.label_threshold:g}; predicted high = P(high) > 0.5'
          if config.task == 'classification' else
          f'value > {config.label_threshold:g} for both annotation and prediction')
  lines = [
      f'# DAMER evaluation report: {epath.Path(workdir).name}', '',
      f'- Workdir: `{workdir}`',
      f'- Checkpoint step: **{metrics["step"]}**',
      f'- Dataset: `{config.dataset.name}`, split `{metrics["split"]}`: '
      f'{metrics["num_segments"]} segments of {config.features.segment_seconds:g} s from '
      f'{metrics["num_tracks"]} tracks',
      f'- Model: task `{config.task}`, targets {", ".join(targets)}; {modules}',
      f'- High/low: {high}. AUC is n/a when only one class is present.', '',
      '## Segment level', '',
      *_table(metrics['segment'], targets, names), '',
      '## Track level (mean over each track\'s segments)', '',
      *_table(metrics['track'], targets, names), '',
      '## Figures', '',
      '**Confusion matrices** of the fusion head (rows: annotated, columns: predicted).',
      '', '![confusion matrices](confusion.png)', '',
      '**Predictions against annotations**: each segment (left panels) and each track '
      'in the valence-arousal plane (right; a line joins annotation and prediction).',
      '', '![valence-arousal scatter](va_scatter.png)', '',
      '**Training curves** from `train_metrics.jsonl` and `eval_metrics.jsonl`.', '',
      '![training curves](training_curves.png)', '',
      '## Files', '',
      '- [metrics.json](metrics.json): every number above, per head',
      '- [predictions.jsonl](predictions.jsonl): per segment, annotated and predicted',
      '',
  ]
  return '\n'.join(lines)
