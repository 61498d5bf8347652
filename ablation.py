r"""Ablation grid: trains every (split, variant, seed) cell and writes the paper's table.

    python ablation.py --config=configs/demo.py --workdir=/tmp/damer_ablation
    python ablation.py --config=configs/demo.py --workdir=/tmp/damer_ablation \
        --seeds=0,1,2 --variants=full,no_dsaf,no_pcl,no_saml,baseline \
        --splits=track,style --override=num_train_steps=300 --override=pcl.warmup_steps=100

Each cell trains in-process (`train.train_and_evaluate`) in
`<workdir>/<split>/<variant>/seed<k>/`. A cell whose eval_metrics.jsonl already has a
row at config.num_train_steps is skipped, and a half-done one resumes from its
checkpoint, so rerunning the command after an interruption finishes the grid. A cell
that raises is logged, recorded as failed, and the grid goes on (exit status 1 at the
end). Then `<workdir>/ablation.csv` (one row per cell), `<workdir>/ablation.md` (mean ±
std over seeds per split and variant) and, where the grid has `full` and `no_saml` at
seed 0, `<workdir>/drift_<split>.png`. See docs/ablations.md.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import shlex
import sys
import time
from typing import Any, Callable, Iterable, Sequence

from absl import app
from absl import flags
from absl import logging
from etils import epath
import jax
import ml_collections
from ml_collections import config_flags
import numpy as np

from damer_jax import evaluate
from damer_jax import grid
from damer_jax import plots
from damer_jax import reporting
from damer_jax import stats as stats_lib
from damer_jax import train
from input_pipeline import sources

VARIANTS = grid.VARIANTS  # Variant -> (dsaf.enabled, pcl.enabled, saml.enabled).
SPLITS = {  # Split -> what its test set holds out.
    'track': 'held-out tracks',
    'style': 'held-out styles',
}
SPLIT_TEXT = {
    'track': 'Whole tracks held out, drawn from every style.',
    'style': ('Whole styles (instrumentation families) held out: timbres the model never '
              'heard, the cross-track/style drift SAML is meant to counter.'),
}
# Fields each cell sets itself; --override / --config.* may not touch them.
GRID_FIELDS = ('seed', 'dsaf.enabled', 'pcl.enabled', 'saml.enabled', 'dataset.split_by')
# Fields that may differ from the run a cell was trained with (they change no result).
IGNORED_ON_RESUME = ('log_every_steps', 'eval_every_steps', 'checkpoint_every_steps',
                     'max_checkpoints_to_keep', 'eval_batch_size', 'dataset.data_dir',
                     'dataset.manual_dir', 'dataset.cache')
TABLE_METRICS = {
    'classification': ('accuracy', 'f1', 'auc'),
    'regression': ('rmse', 'r2', 'ccc'),
}
CELL_RECORD = 'ablation_cell.json'  # Per cell: its config, status, wall time, error.
DRIFT_TARGET = 'valence'  # The target the style drift hurts most (docs/ablations.md).
DRIFT_NOTE = ('PCA per panel. The embedding carries arousal too, so one colour can form '
              'several clusters (high and low arousal).')

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file('config', None, 'Base experiment config file.',
                                lock_config=True)
flags.DEFINE_string('workdir', None, 'Root folder of the grid; one sub-folder per cell.')
flags.DEFINE_list('seeds', ['0', '1', '2'], 'Seeds (config.seed) of every variant.')
flags.DEFINE_list('variants', ['full', 'no_dsaf', 'no_pcl', 'no_saml'],
                  f'Variants, from: {", ".join(VARIANTS)}.')
flags.DEFINE_list('splits', ['track', 'style'], 'Test splits: track (held-out tracks), '
                  'style (held-out styles).')
flags.DEFINE_multi_string('override', [], 'key=value applied to every cell, typed like '
                          'the config field (e.g. num_train_steps=300, '
                          'model.conv_features=16,32); repeatable.')
flags.DEFINE_list('saml_sweep', [], 'In-memory datasets (va_benchmark): SAML settings '
                  'weight:temperature (e.g. 0.1:0.1,0.5:0.1): the full model is trained '
                  'with each (all --seeds) and scored on the validation tracks; the '
                  'best is used in every variant and its run is the full variant. '
                  'Empty: the config\'s own.')
flags.DEFINE_list('sweep_seeds', [], 'Seeds of the SAML sweep (default: --seeds). When '
                  'they differ from --seeds the chosen run is not reused as full.')
flags.mark_flags_as_required(['config', 'workdir'])


@dataclasses.dataclass(frozen=True)
class Cell:
  split: str
  variant: str
  seed: int

  @property
  def name(self) -> str:
    return f'{self.split}/{self.variant}/seed{self.seed}'


@dataclasses.dataclass
class CellResult:
  cell: Cell
  status: str  # 'trained', 'skipped' (already done) or 'failed'.
  wall_s: float  # Training wall time (for a skipped cell: when it was trained).
  metrics: dict[str, Any]  # The cell's eval row at num_train_steps ({} if failed).
  error: str = ''


# Overrides.


def _field(config: ml_collections.ConfigDict, dotted: str) -> Any:
  node = config
  for part in dotted.split('.'):
    if not isinstance(node, ml_collections.ConfigDict) or part not in node:
      raise KeyError(dotted)
    node = node[part]
  return node


def _set_field(config: ml_collections.ConfigDict, dotted: str, value: Any) -> None:
  *parents, leaf = dotted.split('.')
  node = config
  for part in parents:
    node = node[part]
  node[leaf] = value


def _parse_like(current: Any, raw: str) -> Any:
  """`raw` converted to the type of the field's current value (ValueError if it can't)."""
  raw = raw.strip()
  if isinstance(current, bool):
    if raw.lower() in ('true', 'false'):
      return raw.lower() == 'true'
    raise ValueError('the field is a bool; use True or False')
  if isinstance(current, tuple):
    element = current[0] if current else ''
    return tuple(_parse_like(element, item) for item in raw.split(',') if item.strip())
  for kind in (int, float):
    if isinstance(current, kind):
      try:
        return kind(raw)
      except ValueError:
        raise ValueError(f'{raw!r} is not an {kind.__name__}, as the field is') from None
  if isinstance(current, str):
    return raw
  raise ValueError(f'fields of type {type(current).__name__} cannot be set here')


def parse_overrides(config: ml_collections.ConfigDict, items: Iterable[str]
                    ) -> dict[str, Any]:
  """['num_train_steps=300', ...] -> {'num_train_steps': 300, ...}, typed by `config`.

  Raises ValueError naming the item when a key is unknown, a group, set by the grid,
  or when the value does not parse as the field's type.
  """
  parsed = {}
  for item in items:
    key, sep, raw = item.partition('=')
    key = key.strip().removeprefix('config.')
    if not sep or not key:
      raise ValueError(f'--override={item!r}: use key=value, e.g. num_train_steps=300.')
    if key in GRID_FIELDS:
      raise ValueError(f'--override {key}: the grid sets it per cell; use --seeds, '
                       '--variants or --splits.')
    try:
      current = _field(config, key)
    except KeyError:
      raise ValueError(f'--override {key}: the config has no field {key!r}.') from None
    if isinstance(current, ml_collections.ConfigDict):
      raise ValueError(f'--override {key}: is a group; set one of its fields.')
    try:
      parsed[key] = _parse_like(current, raw)
    except ValueError as error:
      raise ValueError(f'--override {key}={raw}: {error}.') from None
  return parsed


def cell_config(base: ml_collections.ConfigDict, cell: Cell,
                overrides: dict[str, Any]) -> ml_collections.ConfigDict:
  """A copy of `base` with `overrides` and the cell's switches (base is not changed)."""
  config = base.copy_and_resolve_references()
  for key, value in overrides.items():
    _set_field(config, key, value)
  config.seed = cell.seed
  config.dsaf.enabled, config.pcl.enabled, config.saml.enabled = VARIANTS[cell.variant]
  config.dataset.split_by = cell.split
  return config


# Running cells.


def cell_workdir(workdir: epath.PathLike, cell: Cell) -> epath.Path:
  return epath.Path(workdir) / cell.split / cell.variant / f'seed{cell.seed}'


def _flat(config: ml_collections.ConfigDict) -> dict[str, Any]:
  """{'dataset.name': ..., ...} with JSON types (tuples as lists)."""
  def walk(node, prefix):
    for key, value in node.items():
      if isinstance(value, dict):
        yield from walk(value, f'{prefix}{key}.')
      else:
        yield f'{prefix}{key}', value
  return json.loads(json.dumps(dict(walk(config.to_dict(), ''))))


def _check_same_config(directory: epath.Path, config: ml_collections.ConfigDict) -> None:
  """Raises if the cell folder was trained with a config that changes the result."""
  path = directory / CELL_RECORD
  has_state = ((directory / 'eval_metrics.jsonl').exists() or
               any((directory / 'checkpoints').glob('[0-9]*')))
  if not path.exists() or not has_state:  # Nothing to resume from or reuse.
    return
  before, now = json.loads(path.read_text()).get('config', {}), _flat(config)
  changed = sorted(k for k in set(before) | set(now)
                   if k not in IGNORED_ON_RESUME and before.get(k) != now.get(k))
  if changed:
    diff = ', '.join(f'{k}: {before.get(k)!r} -> {now.get(k)!r}' for k in changed[:5])
    raise ValueError(f'{directory} was trained with another config ({diff}); use a new '
                     '--workdir, or delete this cell to retrain it.')


def _final_row(directory: epath.Path, num_train_steps: int) -> dict[str, Any] | None:
  """The last eval row at step num_train_steps, or None if the cell has not got there."""
  rows = [r for r in reporting.read_eval_metrics(directory)
          if r.get('step') == num_train_steps]
  return rows[-1] if rows else None


def _write_record(directory: epath.Path, config, status: str, wall_s: float | None,
                  error: str = '') -> None:
  record = {'config': _flat(config), 'status': status, 'wall_s': wall_s, 'error': error,
            'written': time.strftime('%Y-%m-%d %H:%M:%S')}
  directory.mkdir(parents=True, exist_ok=True)
  (directory / CELL_RECORD).write_text(json.dumps(record, indent=1, sort_keys=True))


def run_cell(base: ml_collections.ConfigDict, workdir: epath.PathLike, cell: Cell,
             overrides: dict[str, Any],
             train_fn: Callable[[Any, str], Any] | None = None) -> CellResult:
  """Trains one cell, or skips it when done; a failure is returned, never raised."""
  train_fn = train_fn or (lambda config, workdir: train.train_and_evaluate(
      config, workdir, sources.create_dataset(config)))
  directory = cell_workdir(workdir, cell)
  start = time.monotonic()
  attempted = None  # The config once training has started (then its record is kept).
  try:
    config = cell_config(base, cell, overrides)
    _check_same_config(directory, config)
    row = _final_row(directory, config.num_train_steps)
    if row is not None:
      record = directory / CELL_RECORD
      wall = json.loads(record.read_text()).get('wall_s') if record.exists() else None
      wall = math.nan if wall is None else float(wall)
      logging.info('Cell %s: skipped, its eval_metrics.jsonl already has step %d.',
                   cell.name, config.num_train_steps)
      return CellResult(cell, 'skipped', wall, row)
    logging.info('Cell %s: training in %s.', cell.name, directory)
    attempted = config
    _write_record(directory, config, 'running', None)
    train_fn(config, str(directory))
    row = _final_row(directory, config.num_train_steps)
    if row is None:
      raise RuntimeError(f'training ended without an eval row at step '
                         f'{config.num_train_steps} in {directory / "eval_metrics.jsonl"}.')
  except Exception as error:  # pylint: disable=broad-except
    wall = time.monotonic() - start
    message = f'{type(error).__name__}: {error}'.splitlines()[0]
    logging.exception('Cell %s failed after %.1f s: %s', cell.name, wall, message)
    if attempted is not None:
      _write_record(directory, attempted, 'failed', wall, message)
    return CellResult(cell, 'failed', wall, {}, message)
  wall = time.monotonic() - start
  _write_record(directory, config, 'trained', wall)
  logging.info('Cell %s: trained in %.1f s.', cell.name, wall)
  return CellResult(cell, 'trained', wall, row)


def grid_cells(splits: Sequence[str], variants: Sequence[str], seeds: Sequence[int]
               ) -> list[Cell]:
  """Split, then seed, then variant: an interrupted grid has whole seeds done first."""
  return [Cell(split, variant, seed) for split in splits for seed in seeds
          for variant in variants]


def run_grid(base: ml_collections.ConfigDict, workdir: epath.PathLike,
             cells: Sequence[Cell], overrides: dict[str, Any],
             train_fn: Callable[[Any, str], Any] | None = None) -> list[CellResult]:
  results = []
  for i, cell in enumerate(cells):
    logging.info('Ablation cell %d/%d: %s', i + 1, len(cells), cell.name)
    results.append(run_cell(base, workdir, cell, overrides, train_fn))
    jax.clear_caches()  # Every cell compiles its own steps; do not keep the old ones.
  return results


# Tables.


def metric_columns(task: str, targets: Sequence[str]) -> list[str]:
  return [f'{t}/{m}' for t in targets for m in TABLE_METRICS[task]]


def write_csv(results: Sequence[CellResult], path: epath.PathLike) -> None:
  """One row per cell: split, variant, seed, status, wall_s, step, every metric, error."""
  skip = {'split', 'step'}
  metric_keys = sorted({k for r in results for k in r.metrics if k not in skip})
  fields = ['split', 'variant', 'seed', 'status', 'wall_s', 'step', *metric_keys, 'error']
  with epath.Path(path).open('w') as f:
    writer = csv.DictWriter(f, fieldnames=fields, lineterminator='\n')
    writer.writeheader()
    for r in results:
      row = {'split': r.cell.split, 'variant': r.cell.variant, 'seed': r.cell.seed,
             'status': r.status, 'wall_s': '' if math.isnan(r.wall_s) else f'{r.wall_s:.1f}',
             'step': r.metrics.get('step', ''), 'error': r.error}
      row.update({k: ('' if r.metrics.get(k) is None else r.metrics[k])
                  for k in metric_keys})
      writer.writerow(row)


def mean_std(values: Sequence[Any]) -> str:
  """'0.941 ± 0.012 (3)': mean and sample std (ddof=1) of the finite values."""
  x = np.array([v for v in values if v is not None and math.isfinite(v)], np.float64)
  if not len(x):
    return '–'
  std = f'{x.std(ddof=1):.3f}' if len(x) > 1 else '–'
  return f'{x.mean():.3f} ± {std} ({len(x)})'


def _flag_text(value: Any) -> str:
  """A value as it is written on the command line (tuples comma-separated)."""
  if isinstance(value, (tuple, list)):
    return ','.join(map(str, value))
  return str(value)


def _wall(seconds: float) -> str:
  return '–' if math.isnan(seconds) else f'{seconds:.0f} s'


def _switches(variant: str) -> str:
  on = [m for m, enabled in zip(('DSAF', 'PCL', 'SAML'), VARIANTS[variant]) if enabled]
  return ' + '.join(on) if on else 'none'


def markdown_report(results: Sequence[CellResult], *, config_file: str, command: str,
                    config_overrides: dict[str, Any], overrides: dict[str, Any],
                    columns: Sequence[str], total_wall_s: float,
                    drift: dict[str, dict[str, Any]] | None = None,
                    test_styles: dict[str, str] | None = None) -> str:
  """The ablation.md text: one table per split, the cells, the failures, the figures."""
  lines = [f'# Ablation grid: {config_file}', '',
           f'Command: `{command}`', '']
  lines.append('Config overrides applied to every cell:')
  items = [f'`--config.{k}={_flag_text(v)}`' for k, v in sorted(config_overrides.items())]
  items += [f'`--override {k}={_flag_text(v)}`' for k, v in overrides.items()]
  lines += [f'- {item}' for item in items] or ['- none']
  splits = list(dict.fromkeys(r.cell.split for r in results))
  variants = list(dict.fromkeys(r.cell.variant for r in results))
  seeds = list(dict.fromkeys(r.cell.seed for r in results))
  counts = {s: sum(r.status == s for r in results) for s in ('trained', 'skipped', 'failed')}
  lines += ['', f'{len(results)} cells: splits {", ".join(splits)}; variants '
            f'{", ".join(variants)}; seeds {", ".join(map(str, seeds))} '
            f'({counts["trained"]} trained now, {counts["skipped"]} already done, '
            f'{counts["failed"]} failed). Each entry is `mean ± std (n)` over the seeds '
            'that finished (sample std), from the last evaluation of each cell on its '
            'test split.']
  for split in splits:
    done_rows = [r.metrics for r in results if r.cell.split == split and r.metrics]
    size = (f'Test split: {done_rows[0].get("num_tracks", "?")} tracks, '
            f'{done_rows[0].get("num_examples", "?")} segments'
            if done_rows else 'No cell finished')
    if (test_styles or {}).get(split):
      size += f'; held-out styles: {test_styles[split]}'
    lines += ['', f'## Split `{split}`: {SPLITS.get(split, split)}', '',
              f'{SPLIT_TEXT.get(split, "")} {size}.'.strip(), '',
              '| variant | modules | ' + ' | '.join(columns) + ' | wall / cell |',
              '|---|---|' + '---:|' * (len(columns) + 1)]
    for variant in variants:
      mine = [r for r in results if r.cell.split == split and r.cell.variant == variant]
      done = [r for r in mine if r.status != 'failed']
      cells = [mean_std([r.metrics.get(c) for r in done]) for c in columns]
      walls = [r.wall_s for r in done if not math.isnan(r.wall_s)]
      failed = len(mine) - len(done)
      name = variant + (f' ({failed} failed)' if failed else '')
      lines.append(f'| {name} | {_switches(variant)} | ' + ' | '.join(cells) +
                   f' | {_wall(float(np.mean(walls)) if walls else math.nan)} |')
  lines += ['', '## Cells', '', '| cell | status | step | wall |', '|---|---|---:|---:|']
  for r in results:
    lines.append(f'| {r.cell.name} | {r.status} | {r.metrics.get("step", "–")} | '
                 f'{_wall(r.wall_s)} |')
  trained = [r.wall_s for r in results if not math.isnan(r.wall_s) and r.status != 'skipped']
  recorded = [r.wall_s for r in results if not math.isnan(r.wall_s)]
  lines += ['', f'Wall time: {sum(recorded):.0f} s of training over all cells '
            f'({sum(trained):.0f} s in this invocation, which took {total_wall_s:.0f} s '
            'in all).']
  failures = [r for r in results if r.status == 'failed']
  if failures:
    lines += ['', '## Failed cells', '']
    lines += [f'- `{r.cell.name}`: {r.error}' for r in failures]
  if drift:
    lines += ['', '## Embedding drift (seed 0)', '']
    for split, info in drift.items():
      if 'error' in info:
        lines.append(f'- `{split}`: no figure ({info["error"]})')
        continue
      lines += [f'![drift {split}]({info["file"]})', '']
      for label, stats in info['stats'].items():
        lines.append(f'- `{split}` {label}: of each test segment\'s {stats["k"]} nearest '
                     f'neighbours, {stats["same_track_share"]:.0%} are from its own track; '
                     f'of its nearest from other tracks, {stats["class_agreement"]:.0%} '
                     f'share its {DRIFT_TARGET} class.')
      lines.append('')
  return '\n'.join(lines).rstrip() + '\n'


# Drift figure.


def held_out_styles(config: ml_collections.ConfigDict) -> str:
  """Names of the styles in the test split of a synthetic_va config ('' if unknown)."""
  if config.dataset.name != 'synthetic_va':
    return ''
  from input_pipeline import pipeline  # pylint: disable=g-import-not-at-top  # TensorFlow.
  from input_pipeline import synthetic_music  # pylint: disable=g-import-not-at-top
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top

  test = pipeline.prepare(config).as_dataset(split='test').map(lambda e: e['style_id'])
  ids = sorted({int(i) for i in tfds.as_numpy(test)})
  return ', '.join(synthetic_music.STYLE_NAMES[i] for i in ids)


def styles_held_out(base: ml_collections.ConfigDict, results: Sequence[CellResult],
                   overrides: dict[str, Any]) -> dict[str, str]:
  """{'style': 'fm_bell'} from the first cell of the style split that finished."""
  for r in results:
    if r.cell.split == 'style' and r.status != 'failed':
      try:
        return {'style': held_out_styles(cell_config(base, r.cell, overrides))}
      except Exception as error:  # pylint: disable=broad-except
        logging.warning('Could not read the held-out styles: %s', error)
        return {}
  return {}


def drift_figures(base: ml_collections.ConfigDict, workdir: epath.PathLike,
                  results: Sequence[CellResult], overrides: dict[str, Any],
                  test_styles: dict[str, str] | None = None
                  ) -> dict[str, dict[str, Any]]:
  """drift_<split>.png for each split with `full` and `no_saml` done at seed 0."""
  test_styles = test_styles or {}
  ok = {(r.cell.split, r.cell.variant) for r in results
        if r.cell.seed == 0 and r.status != 'failed'}
  wanted = {(r.cell.split, r.cell.variant) for r in results if r.cell.seed == 0}
  drift = {}
  for split in dict.fromkeys(r.cell.split for r in results):
    pair = [(split, 'full'), (split, 'no_saml')]
    if not all(p in wanted for p in pair):
      continue
    if not all(p in ok for p in pair):
      drift[split] = {'error': 'full or no_saml failed at seed 0'}
      continue
    name = f'drift_{split}.png'
    png, saved = epath.Path(workdir) / name, epath.Path(workdir) / f'drift_{split}.json'
    held = f': {test_styles[split]}' if test_styles.get(split) else ''
    title = (f'Test-set embeddings, split "{split}" ({SPLITS.get(split, split)}{held}), '
             f'seed 0: colour = {DRIFT_TARGET} class, marker = track')
    # The figure is redrawn only when a cell's final evaluation, the title or the
    # neighbour measure (stats.neighbour_drift) changed.
    key = {'title': title, 'measure': 'neighbour_drift', 'rows': {v: next(r.metrics for r in results
                                             if r.cell == Cell(split, v, 0))
                                    for v in ('full', 'no_saml')}}
    try:
      if png.exists() and saved.exists() and json.loads(saved.read_text())['key'] == key:
        drift[split] = {'file': name, 'stats': json.loads(saved.read_text())['stats']}
        logging.info('%s is up to date.', png)
        continue
      panels, stats = [], {}
      for variant, label in (('full', 'full: DSAF + PCL + SAML'),
                             ('no_saml', 'no_saml: DSAF + PCL, SAML off')):
        cell = Cell(split, variant, 0)
        config = cell_config(base, cell, overrides)
        embeddings, classes, tracks = evaluate.embeddings(
            config, cell_workdir(workdir, cell), sources.create_dataset(config),
            DRIFT_TARGET)
        stats[variant] = stats_lib.neighbour_drift(embeddings, classes, tracks)
        panels.append((label, embeddings, classes, tracks, stats[variant]))
      plots.plot_embedding_drift(panels, png, title, target=DRIFT_TARGET, note=DRIFT_NOTE)
      saved.write_text(json.dumps({'key': key, 'stats': stats}, indent=1))
      drift[split] = {'file': name, 'stats': stats}
      logging.info('Wrote %s.', png)
    except Exception as error:  # pylint: disable=broad-except
      logging.exception('Drift figure for split %s failed.', split)
      drift[split] = {'error': f'{type(error).__name__}: {error}'.splitlines()[0]}
  return drift


# In-memory datasets (the generated benchmark): every seed of a variant at once.


def parse_saml_sweep(items: Sequence[str]) -> list[tuple[float, float]]:
  """--saml_sweep items 'weight:temperature' -> [(weight, temperature)]."""
  settings = []
  for item in items:
    weight, _, temperature = item.partition(':')
    try:
      settings.append((float(weight), float(temperature)))
    except ValueError:
      raise app.UsageError(f'--saml_sweep item {item!r}: use weight:temperature, '
                           'e.g. 0.5:0.1.') from None
  return settings


def in_memory_grid(base: ml_collections.ConfigDict, workdir: epath.Path,
                   variants: Sequence[str], seeds: Sequence[int],
                   overrides: dict[str, Any], config_overrides: dict[str, Any],
                   saml_sweep: Sequence[str] = (),
                   sweep_seeds: Sequence[int] | None = None,
                   data: Any = None) -> None:
  """Runs the grid of an in-memory dataset (damer_jax/grid.py) and writes its report.

  One training per variant serves every evaluation split (held-out tracks, held-out
  chains and styles); --splits does not apply. The SAML sweep trains under
  `sweep_seeds` (default: `seeds`); when they are the grid's seeds the chosen setting's
  run is reused as `full`. `data`: the dataset, when the caller already made it from
  `base` and `overrides` (default: made here). Writes <workdir>/ablation.md and
  ablation.json.
  """
  sweep_seeds = list(seeds if sweep_seeds is None else sweep_seeds)
  start = time.monotonic()
  config = base.copy_and_resolve_references()
  for key, value in overrides.items():
    _set_field(config, key, value)
  if data is None:
    data = sources.create_dataset(config)
  logging.info('Data ready in %.0f s: train %d, unlabelled %d.', time.monotonic() - start,
               data.num_train, data.num_unlabelled)
  if saml_sweep:
    settings = parse_saml_sweep(saml_sweep)
    config.saml.weight, config.saml.temperature = grid.choose_saml(
        config, data, workdir / 'sweep', settings, sweep_seeds)
    logging.info('SAML chosen on validation: weight %g, temperature %g.',
                 config.saml.weight, config.saml.temperature)
    if 'full' in variants and sweep_seeds == list(seeds):  # The chosen run is `full`.
      chosen = workdir / 'sweep' / grid.sweep_prefix(config.saml.weight,
                                                     config.saml.temperature)
      for suffix in ('npz', 'json'):
        (workdir / f'full.{suffix}').write_bytes(
            epath.Path(f'{chosen}full.{suffix}').read_bytes())
  results = grid.run_variants(config, data, workdir, variants, seeds)
  test_splits = [s for s in data.eval_splits if s != 'validation']
  report = {
      'seeds': list(seeds), 'variants': list(variants),
      'saml': {'weight': config.saml.weight, 'temperature': config.saml.temperature,
               'sweep_seeds': sweep_seeds if saml_sweep else None},
      'splits': grid.analyse(config, data, results, test_splits),
      'pcl_labels': {v: grid.pcl_label_quality(config, data, r)
                     for v, r in results.items() if VARIANTS[v][1]},
      'drift': {s: grid.drift_numbers(config, data, results, s) for s in test_splits},
      'timing': {v: json.loads((workdir / f'{v}.json').read_text()) for v in variants},
      'command': shlex.join(['python', *sys.argv]),
      'config_overrides': {k: _flag_text(v) for k, v in config_overrides.items()},
      'wall_s': time.monotonic() - start,
  }
  (workdir / 'ablation.json').write_text(json.dumps(report, indent=1))
  text = grid.markdown(report['splits'], config.targets, variants, seeds,
                       header=f'# Ablation on {config.dataset.name}\n\n'
                              f'`{report["command"]}`')
  (workdir / 'ablation.md').write_text(text)
  print(text)


# Main.


class _QuietLibraries(logging.logging.Filter):
  """Drops INFO records of orbax's per-save chatter; warnings and errors pass."""

  def filter(self, record):
    # absl's logging.WARNING is its verbosity (-1); records carry the stdlib level.
    return (record.levelno >= logging.logging.WARNING or
            '/orbax/' not in record.pathname)


def _unique(items: Iterable[str]) -> list[str]:
  return list(dict.fromkeys(i.strip() for i in items if i.strip()))


def main(argv):
  logging.get_absl_handler().addFilter(_QuietLibraries())
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  start = time.monotonic()
  variants, splits = _unique(FLAGS.variants), _unique(FLAGS.splits)
  for name, chosen, allowed in (('variants', variants, VARIANTS),
                                ('splits', splits, SPLITS)):
    unknown = [v for v in chosen if v not in allowed]
    if unknown or not chosen:
      raise app.UsageError(f'--{name}: unknown or empty {unknown}; choose from '
                           f'{", ".join(allowed)}.')
  try:
    seeds = [int(s) for s in _unique(FLAGS.seeds)]
  except ValueError:
    raise app.UsageError(f'--seeds must be integers, got {FLAGS.seeds}.') from None
  if not seeds:
    raise app.UsageError('--seeds is empty.')
  base = FLAGS.config
  config_overrides = config_flags.get_override_values(FLAGS['config'])
  clash = sorted(set(config_overrides) & set(GRID_FIELDS))
  if clash:
    raise app.UsageError(f'--config.{clash[0]}: the grid sets it per cell; use --seeds, '
                         '--variants or --splits.')
  try:
    overrides = parse_overrides(base, FLAGS.override)
  except ValueError as error:
    raise app.UsageError(str(error)) from None

  workdir = epath.Path(FLAGS.workdir)
  workdir.mkdir(parents=True, exist_ok=True)
  train.use_compilation_cache(str(workdir / 'jax_cache'))  # Seeds share compiled steps.
  if base.dataset.name in sources.IN_MEMORY:
    try:
      sweep_seeds = [int(s) for s in _unique(FLAGS.sweep_seeds)] or seeds
    except ValueError:
      raise app.UsageError(f'--sweep_seeds must be integers, got {FLAGS.sweep_seeds}.'
                           ) from None
    in_memory_grid(base, workdir, variants, seeds, overrides, config_overrides,
                   FLAGS.saml_sweep, sweep_seeds)
    return
  cells = grid_cells(splits, variants, seeds)
  logging.info('Ablation grid of %d cells in %s.', len(cells), workdir)
  results = run_grid(base, workdir, cells, overrides)
  write_csv(results, workdir / 'ablation.csv')
  test_styles = styles_held_out(base, results, overrides)
  drift = drift_figures(base, workdir, results, overrides, test_styles)
  probe = cell_config(base, cells[0], overrides)
  report = markdown_report(
      results, config_file=config_flags.get_config_filename(FLAGS['config']),
      command=shlex.join(['python', *sys.argv]), config_overrides=config_overrides,
      overrides=overrides, columns=metric_columns(probe.task, probe.targets),
      total_wall_s=time.monotonic() - start, drift=drift, test_styles=test_styles)
  (workdir / 'ablation.md').write_text(report)
  print(report)
  failed = [r.cell.name for r in results if r.status == 'failed']
  if failed:
    logging.error('%d of %d cells failed: %s (see %s).', len(failed), len(results),
                  ', '.join(failed), workdir / 'ablation.md')
    sys.exit(1)


if __name__ == '__main__':
  app.run(main)
