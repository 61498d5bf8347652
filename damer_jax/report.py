"""The evaluation report: metrics at segment and track level, figures and report.md.

`python main.py --mode=evaluate` writes `<workdir>/report/`:

| file                 | what it holds                                                     |
|----------------------|-------------------------------------------------------------------|
| metrics.json         | segment-level metrics of each head, track-level metrics of the fusion head, counts, step |
| predictions.jsonl    | one line per segment: track, start_s, annotated and predicted values |
| confusion.png        | high/low confusion matrices per target, segments and tracks      |
| va_scatter.png       | predictions against annotations per target, and the valence-arousal plane per track |
| training_curves.png  | training losses and learning rate, test metrics against the step  |
| report.md            | one page that links the rest                                      |

Track level: a track's prediction is the mean of its segments' predictions (class
probabilities or values) and its annotation the mean of its segments' annotations.
"""

from __future__ import annotations

import dataclasses
import json
import math
from typing import Any, Iterable

from etils import epath
import numpy as np
from sklearn import metrics as skm

from damer_jax import metrics as metrics_lib
from damer_jax import parallel
from damer_jax import plots
from damer_jax import reporting

HEADS = ('fusion', 'mel', 'coch')
FILES = ('metrics.json', 'predictions.jsonl', 'confusion.png', 'va_scatter.png',
         'training_curves.png', 'report.md')


@dataclasses.dataclass
class Predictions:
  """Every segment of a split with the three heads' outputs.

  heads: name -> [N, T, C] class probabilities (classification) or [N, T] values.
  values: annotated values [N, T] in [-1, 1]; track_id [N]; start_s [N].
  """
  heads: dict[str, np.ndarray]
  values: np.ndarray
  track_id: np.ndarray
  start_s: np.ndarray

  def __len__(self) -> int:
    return len(self.values)


def collect(batches: Iterable[tuple[dict[str, np.ndarray], dict[str, np.ndarray]]],
            targets: tuple[str, ...]) -> Predictions:
  """Gathers `train.predict_batches` output (padding already removed) of every process."""
  heads = {h: [] for h in HEADS}
  values, tracks, starts = [], [], []
  for batch, out in batches:
    for h in HEADS:
      heads[h].append(np.asarray(out[h], np.float32))
    values.append(np.stack([batch[t] for t in targets], -1).astype(np.float32))
    tracks.append(batch['track_id'])
    starts.append(batch['start_s'])
  if not values:
    raise ValueError('The evaluation split is empty: the dataset has too few tracks for '
                     'config.dataset.test_fraction; add data or raise the fraction.')
  local = {f'head/{h}': np.concatenate(v) for h, v in heads.items()}
  local.update(values=np.concatenate(values), track_id=np.concatenate(tracks),
               start_s=np.concatenate(starts))
  everyone = parallel.gather_examples(local)  # All processes' segments, on each.
  return Predictions({h: everyone[f'head/{h}'] for h in HEADS}, everyone['values'],
                     everyone['track_id'], everyone['start_s'])


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


def scores(outputs: np.ndarray, task: str) -> np.ndarray:
  """[N, T]: P(high) for classification outputs [N, T, C], the values otherwise."""
  return outputs[..., -1] if task == 'classification' else outputs


def compute_metrics(pred: Predictions, config: Any, step: int) -> dict[str, Any]:
  """The content of metrics.json (NaN, e.g. AUC with one class present, -> None)."""
  track_heads, track_values, track_ids = track_means(pred)
  result = {
      'step': int(step), 'split': 'test', 'task': config.task,
      'targets': list(config.targets), 'label_threshold': config.label_threshold,
      'num_segments': len(pred), 'num_tracks': int(len(track_ids)),
      'segment': {h: metrics_lib.head_metrics(pred.heads[h], pred.values, config)
                  for h in HEADS},
      'track': {h: metrics_lib.head_metrics(track_heads[h], track_values, config)
                for h in HEADS},
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


def write_report(report_dir: epath.PathLike, workdir: epath.PathLike, pred: Predictions,
                 config: Any, step: int) -> dict[str, Any]:
  """Writes every file of the report (see the module docstring); returns the metrics."""
  out = epath.Path(report_dir)
  out.mkdir(parents=True, exist_ok=True)
  targets, task = tuple(config.targets), config.task
  metrics = compute_metrics(pred, config, step)
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
      f'Fusion head, test split, step {step}: high = annotation > '
      f'{config.label_threshold:g}{binarised}')
  plots.plot_va_scatter(
      targets, pred.values, scores(pred.heads['fusion'], task), track_values,
      scores(track_heads['fusion'], task), task=task, threshold=config.label_threshold,
      path=out / 'va_scatter.png',
      title=f'Fusion head against annotations, test split, step {step}')
  metric_names = ('accuracy', 'auc') if task == 'classification' else ('ccc', 'rmse')
  plots.plot_training_curves(
      reporting.read_jsonl(workdir, reporting.TRAIN_METRICS),
      reporting.read_eval_metrics(workdir), targets, metric_names,
      out / 'training_curves.png', f'Training run in {epath.Path(workdir).name}')
  (out / 'report.md').write_text(_markdown(metrics, config, workdir))
  return metrics


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
