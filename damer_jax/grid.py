"""The ablation grid on an in-memory dataset: variants x seeds, with statistics.

Each variant trains all its seeds at once (`multiseed.train_seeds`) and its predictions
on every evaluation split are saved to `<workdir>/<variant>.npz` (a finished variant
is skipped when the grid is run again). `analyse` then scores every variant against
the annotations and, where the dataset keeps them (`valence_clean`, ...), against the
clean latent labels, and gives each module's contribution (full minus the variant
without it) with a 95% bootstrap interval over test tracks and seeds (damer_jax/stats.py).

Needs no TensorFlow: the data are handed in (input_pipeline/sources.py makes them).
"""

from __future__ import annotations

import json
import time
from typing import Any, Sequence

from absl import logging
from etils import epath
import numpy as np

from damer_data import dataset as data_lib
from damer_jax import multiseed
from damer_jax import stats

# Variant -> (dsaf.enabled, pcl.enabled, saml.enabled).
VARIANTS = {
    'full': (True, True, True),
    'no_dsaf': (False, True, True),
    'no_pcl': (True, False, True),
    'no_saml': (True, True, False),
    'baseline': (False, False, False),
}
MODULE_OF = {'no_dsaf': 'DSAF', 'no_pcl': 'PCL', 'no_saml': 'SAML'}
EMBEDDING_VARIANTS = ('full', 'no_saml')  # Their embeddings are kept (drift numbers).


def variant_config(base: Any, variant: str) -> Any:
  """`base` with the variant's module switches."""
  config = base.copy_and_resolve_references()
  config.dsaf.enabled, config.pcl.enabled, config.saml.enabled = VARIANTS[variant]
  return config


def _save(path: epath.Path, run: multiseed.SeedRun, config: Any, data: Any) -> None:
  arrays = {}
  for split, heads in run.predictions.items():  # The fusion head (what is scored) and
    arrays[f'{split}/fusion'] = heads['fusion'].astype(np.float32)  # the embeddings.
    if 'embedding' in heads:
      arrays[f'{split}/embedding'] = heads['embedding'].astype(np.float16)
  if run.pcl_table is not None:
    arrays['pcl_table'] = run.pcl_table.astype(np.float16)
    arrays['pcl_seen'] = run.pcl_seen
  steps = [s for s, _ in run.history]
  for key in ('loss', 'loss_supervised', 'pcl/loss', 'pcl/overruled_fraction',
              'saml/loss', 'valence/accuracy', 'arousal/accuracy'):
    if run.history and key in run.history[0][1]:
      arrays[f'history/{key}'] = np.stack([np.asarray(m[key]) for _, m in run.history])
  arrays['history/step'] = np.asarray(steps)
  with path.open('wb') as f:
    np.savez_compressed(f, **arrays)
  meta = {'seeds': list(run.seeds), 'train_seconds': run.train_seconds,
          'compile_seconds': run.compile_seconds,
          'steps_per_second': config.num_train_steps / max(run.train_seconds, 1e-9),
          'nonfinite_steps': run.nonfinite_steps.tolist(),
          'num_train': data.num_train, 'num_unlabelled': data.num_unlabelled}
  path.with_suffix('.json').write_text(json.dumps(meta, indent=1))


def run_variants(base: Any, data: data_lib.ArrayDataset, workdir: epath.PathLike,
                 variants: Sequence[str], seeds: Sequence[int],
                 prefix: str = '') -> dict[str, dict[str, np.ndarray]]:
  """Trains every variant (all seeds at once) unless its results exist; loads them.

  Returns variant -> the arrays of `<workdir>/<prefix><variant>.npz`.
  """
  workdir = epath.Path(workdir)
  workdir.mkdir(parents=True, exist_ok=True)
  results = {}
  for variant in variants:
    path = workdir / f'{prefix}{variant}.npz'
    meta_path = path.with_suffix('.json')
    if path.exists() and meta_path.exists() and (
        json.loads(meta_path.read_text())['seeds'] == list(seeds)):
      logging.info('%s: results exist, skipped.', path)
    else:
      config = variant_config(base, variant)
      start = time.monotonic()
      logging.info('Training %s%s with seeds %s.', prefix, variant, list(seeds))
      run = multiseed.train_seeds(
          config, seeds, data,
          embedding_splits=data.eval_splits if variant in EMBEDDING_VARIANTS else ())
      _save(path, run, config, data)
      logging.info('%s%s: %.0f s (compile %.0f s, %.1f steps/s).', prefix, variant,
                   time.monotonic() - start, run.compile_seconds,
                   config.num_train_steps / max(run.train_seconds, 1e-9))
    with path.open('rb') as f:
      results[variant] = dict(np.load(f))
  return results


def merge_runs(parts: Sequence[epath.PathLike], out: epath.PathLike) -> None:
  """Joins single-seed (or several-seed) results of one variant into one result file.

  `parts` are `<name>.npz` files written by `run_variants` for the same config under
  different seeds (e.g. each trained by its own process); `out` (`<variant>.npz` and
  its `.json`) then reads exactly like a run that trained all of their seeds at once:
  every array's seed axis is joined (axis 0; axis 1 for the [steps, S] training
  curves), 'history/step' must agree, timings add up.

  Raises:
    ValueError: naming the part that does not fit (other arrays, steps or a seed twice).
  """
  parts = [epath.Path(p) for p in parts]
  if not parts:
    raise ValueError('merge_runs: no parts to merge.')
  arrays, metas = [], []
  for part in parts:
    with part.open('rb') as f:
      arrays.append(dict(np.load(f)))
    metas.append(json.loads(part.with_suffix('.json').read_text()))
  seeds = [s for m in metas for s in m['seeds']]
  if len(set(seeds)) != len(seeds):
    raise ValueError(f'merge_runs: seeds {seeds} repeat across {[str(p) for p in parts]}.')
  merged = {}
  for key in arrays[0]:
    for part, a in zip(parts, arrays):
      if set(a) != set(arrays[0]):
        raise ValueError(f'merge_runs: {part} holds {sorted(a)}, {parts[0]} holds '
                         f'{sorted(arrays[0])}; are they the same variant?')
    if key == 'history/step':
      for part, a in zip(parts, arrays):
        if not np.array_equal(a[key], arrays[0][key]):
          raise ValueError(f'merge_runs: {part} logged other steps than {parts[0]}.')
      merged[key] = arrays[0][key]
    else:
      merged[key] = np.concatenate([a[key] for a in arrays],
                                   axis=1 if key.startswith('history/') else 0)
  out = epath.Path(out)
  with out.open('wb') as f:
    np.savez_compressed(f, **merged)
  meta = dict(metas[0])
  meta.update(
      seeds=seeds, parts=[str(p) for p in parts],
      train_seconds=sum(m['train_seconds'] for m in metas),
      compile_seconds=sum(m['compile_seconds'] for m in metas),
      steps_per_second=float(np.mean([m['steps_per_second'] for m in metas])),
      nonfinite_steps=[n for m in metas for n in m['nonfinite_steps']])
  out.with_suffix('.json').write_text(json.dumps(meta, indent=1))


def choose_saml(base: Any, data: data_lib.ArrayDataset, workdir: epath.PathLike,
                settings: Sequence[tuple[float, float]], seeds: Sequence[int],
                split: str = 'validation') -> tuple[float, float]:
  """(weight, temperature) of SAML with the best annotated accuracy on `split`.

  Trains the full model once per setting (all `seeds` at once) and scores it against
  the annotations of the validation tracks (never the test splits, never the clean
  labels). Writes `<workdir>/saml_sweep.json`.
  """
  workdir = epath.Path(workdir)
  labels = _classes(data.splits[split], base, clean=False)
  rows = []
  for weight, temperature in settings:
    config = base.copy_and_resolve_references()
    config.saml.weight, config.saml.temperature = float(weight), float(temperature)
    result = run_variants(config, data, workdir, ['full'], seeds,
                          prefix=sweep_prefix(weight, temperature))['full']
    probs = result[f'{split}/fusion']
    accuracy = float((probs.argmax(-1) == labels[None]).mean())
    rows.append({'weight': weight, 'temperature': temperature, 'accuracy': accuracy})
    logging.info('SAML weight %g, temperature %g: %s accuracy %.4f', weight, temperature,
                 split, accuracy)
  best = max(rows, key=lambda r: r['accuracy'])
  (workdir / 'saml_sweep.json').write_text(json.dumps(
      {'split': split, 'seeds': list(seeds), 'rows': rows, 'chosen': best}, indent=1))
  return best['weight'], best['temperature']


def sweep_prefix(weight: float, temperature: float) -> str:
  """File-name prefix of a SAML sweep run: 'sweep_w0.5_t0.1_'."""
  return f'sweep_w{weight:g}_t{temperature:g}_'


def _classes(arrays: dict[str, np.ndarray], config: Any, clean: bool) -> np.ndarray:
  """int [N, T]: the high/low class of each target (clean latent or annotated)."""
  suffix = '_clean' if clean else ''
  return np.stack([arrays[t + suffix] > config.label_threshold for t in config.targets],
                  -1).astype(np.int64)


def analyse(base: Any, data: data_lib.ArrayDataset, results: dict[str, dict],
            splits: Sequence[str], num_samples: int = 10_000) -> dict[str, Any]:
  """Accuracies and full-minus-variant differences with 95% intervals.

  Returns {split: {labels: {'accuracy': {variant: {...}}, 'difference': {variant:
  {...}}}}} with labels 'annotated' and, when the data has them, 'clean'; each leaf
  holds lists per target (see stats.accuracy_interval / paired_difference).
  """
  report = {}
  for split in splits:
    arrays = data.splits[split]
    label_sets = {'annotated': _classes(arrays, base, clean=False)}
    if all(f'{t}_clean' in arrays for t in base.targets):
      label_sets['clean'] = _classes(arrays, base, clean=True)
    report[split] = {}
    for name, labels in label_sets.items():
      counts = {v: stats.track_counts(r[f'{split}/fusion'], labels, arrays['track_id'])
                for v, r in results.items()}
      segments = next(iter(counts.values()))[1]
      entry = {'accuracy': {}, 'difference': {}}
      for variant, (correct, _) in counts.items():
        entry['accuracy'][variant] = _lists(stats.accuracy_interval(
            correct, segments, num_samples))
        if variant != 'full' and 'full' in counts:
          entry['difference'][variant] = _lists(stats.paired_difference(
              counts['full'][0], correct, segments, num_samples))
      report[split][name] = entry
  return report


def _lists(values: dict[str, np.ndarray]) -> dict[str, list[float]]:
  return {k: np.asarray(v, np.float64).tolist() for k, v in values.items()}


def pcl_label_quality(base: Any, data: data_lib.ArrayDataset, result: dict[str, np.ndarray]
                      ) -> dict[str, Any] | None:
  """How well PCL's final EMA table knows the clean labels (mean over seeds).

  'train_noisy_corrected': of the train (segment, target) pairs whose annotation is on
  the wrong side of the clean label, the share whose table argmax is on the right side;
  'train_clean_kept': the same for correctly annotated pairs; 'unlabelled_accuracy':
  table argmax vs the clean label on the unlabelled rows that were seen.
  """
  if 'pcl_table' not in result or not all(
      f'{t}_clean' in data.splits[data.train_split] for t in base.targets):
    return None
  table, seen = result['pcl_table'].astype(np.float32), result['pcl_seen']
  train = data.splits[data.train_split]
  clean = _classes(train, base, clean=True)
  annotated = _classes(train, base, clean=False)
  guess = table[:, :data.num_train].argmax(-1)  # [S, N, T]
  wrong = annotated != clean
  seen_train = seen[:, :data.num_train, None]
  out = {
      'train_noise_rate': float(wrong.mean()),
      'train_noisy_corrected': float(((guess == clean) & wrong & seen_train).sum() /
                                     max((wrong & seen_train).sum(), 1)),
      'train_clean_kept': float(((guess == clean) & ~wrong & seen_train).sum() /
                                max((~wrong & seen_train).sum(), 1)),
  }
  if table.shape[1] > data.num_train and data.unlabelled_split:
    unl = data.splits[data.unlabelled_split]
    u_clean = _classes(unl, base, clean=True)
    u_guess = table[:, data.num_train:].argmax(-1)
    u_seen = seen[:, data.num_train:, None]
    out['unlabelled_accuracy'] = float(((u_guess == u_clean[None]) & u_seen).sum() /
                                       max(np.broadcast_to(u_seen, u_guess.shape).sum(), 1))
    out['unlabelled_seen'] = float(seen[:, data.num_train:].mean())
  return out


def drift_numbers(base: Any, data: data_lib.ArrayDataset, results: dict[str, dict],
                  split: str, k: int = 10) -> dict[str, dict[str, float]]:
  """stats.neighbour_drift of each kept embedding variant on `split` (mean over seeds),
  with the joint (quadrant) class of the clean labels where the data has them."""
  arrays = data.splits[split]
  clean = all(f'{t}_clean' in arrays for t in base.targets)
  classes = _classes(arrays, base, clean=clean)
  joint = (classes * (base.num_classes ** np.arange(classes.shape[1]))).sum(-1)
  out = {}
  for variant, result in results.items():
    key = f'{split}/embedding'
    if key not in result:
      continue
    per_seed = [stats.neighbour_drift(e.astype(np.float32), joint, arrays['track_id'], k)
                for e in result[key]]
    out[variant] = {m: float(np.mean([p[m] for p in per_seed])) for m in per_seed[0]}
  return out


def markdown(report: dict[str, Any], targets: Sequence[str], variants: Sequence[str],
             seeds: Sequence[int], header: str = '') -> str:
  """The grid's tables: accuracy per variant and full-minus-variant, with 95% CIs."""
  pct = lambda x: f'{100 * x:.1f}'
  lines = [header.rstrip(), ''] if header else []
  for split, by_labels in report.items():
    for labels, entry in by_labels.items():
      lines += [f'### {split}, against the {labels} labels ({len(seeds)} seeds)', '',
                '| variant | ' + ' | '.join(f'{t} accuracy [95% CI]' for t in targets) +
                ' | ' + ' | '.join(f'full − variant, {t} (points) [95% CI]'
                                   for t in targets) + ' |',
                '|---' * (1 + 2 * len(targets)) + '|']
      for variant in variants:
        if variant not in entry['accuracy']:
          continue
        acc = entry['accuracy'][variant]
        cells = [f'{pct(acc["mean"][i])} [{pct(acc["low"][i])}, {pct(acc["high"][i])}]'
                 for i in range(len(targets))]
        diff = entry['difference'].get(variant)
        cells += (['–'] * len(targets) if diff is None else [
            stats.summarise({k: diff[k][i] for k in ('mean', 'low', 'high')})
            for i in range(len(targets))])
        lines.append(f'| `{variant}` | ' + ' | '.join(cells) + ' |')
      lines.append('')
  return '\n'.join(lines)
