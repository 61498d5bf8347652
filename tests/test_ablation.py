"""ablation.py: the grid end to end on the tiny dataset, resume, failed cells, the figure."""

import csv
import json
import os
import subprocess
import sys
import time

import numpy as np
import pytest

from tests.conftest import ROOT, tiny_config, tiny_flags

PNG_MAGIC = b'\x89PNG\r\n\x1a\n'


def _ablation(args):
  start = time.monotonic()
  result = subprocess.run([sys.executable, 'ablation.py', *args], cwd=ROOT,
                          capture_output=True, text=True, env=dict(os.environ),
                          timeout=600, check=False)
  return result, time.monotonic() - start


def _read_csv(path):
  with open(path, newline='') as f:
    return list(csv.DictReader(f))


def _assert_png(path):
  assert path.exists(), f'{path} not written'
  assert path.read_bytes()[:8] == PNG_MAGIC
  from matplotlib import image  # pylint: disable=g-import-not-at-top
  pixels = image.imread(str(path))
  assert pixels.ndim == 3 and pixels.shape[0] > 200 and pixels.shape[1] > 400
  assert pixels.std() > 0.01  # Not a blank canvas.


def test_grid_writes_table_and_figure_then_skips_done_cells(tmp_path, data_dir):
  pytest.importorskip('tensorflow_datasets')
  workdir = tmp_path / 'grid'
  args = tiny_flags(workdir, data_dir, num_train_steps=4, eval_every_steps=4,
                    checkpoint_every_steps=4)
  args += ['--variants=full,no_saml', '--seeds=0,1', '--splits=track',
           '--override=pcl.warmup_steps=2', '--override=saml.queue_size=16']
  result, first_s = _ablation(args)
  assert result.returncode == 0, result.stderr[-4000:]

  rows = _read_csv(workdir / 'ablation.csv')
  assert [(r['split'], r['variant'], r['seed']) for r in rows] == [
      ('track', 'full', '0'), ('track', 'no_saml', '0'),
      ('track', 'full', '1'), ('track', 'no_saml', '1')]
  for row in rows:
    assert row['status'] == 'trained' and row['step'] == '4'
    for target in ('valence', 'arousal'):
      assert 0.0 <= float(row[f'{target}/accuracy']) <= 1.0
  for variant in ('full', 'no_saml'):
    cell = workdir / 'track' / variant / 'seed1'
    assert json.loads((cell / 'ablation_cell.json').read_text())['config']['seed'] == 1
  record = json.loads((workdir / 'track/no_saml/seed0/ablation_cell.json').read_text())
  assert record['config']['saml.enabled'] is False
  assert record['config']['pcl.warmup_steps'] == 2

  report = (workdir / 'ablation.md').read_text()
  assert '## Split `track`' in report
  header = next(line for line in report.splitlines() if line.startswith('| variant |'))
  table_rows = [line for line in report.splitlines() if line.startswith('| full |')]
  assert len(table_rows) == 1
  entries = dict(zip(header.split('|'), table_rows[0].split('|')))
  for column in ('valence/accuracy', 'valence/f1', 'arousal/accuracy', 'arousal/f1'):
    assert ' ± ' in entries[f' {column} '] and '(2)' in entries[f' {column} ']  # 2 seeds.
  # AUC may be '–' here: a tiny test split can hold a single class.
  assert 'ablation.py' in report and '--override pcl.warmup_steps=2' in report
  assert '--config.model.width=16' in report
  assert '## Split `track`' in result.stdout  # The table is printed too.
  _assert_png(workdir / 'drift_track.png')
  assert '](drift_track.png)' in report

  result, second_s = _ablation(args)
  assert result.returncode == 0, result.stderr[-4000:]
  assert result.stderr.count('skipped, its eval_metrics.jsonl already has step 4') == 4
  assert 'training in' not in result.stderr
  assert 'drift_track.png is up to date' in result.stderr
  assert '0 trained now, 4 already done' in (workdir / 'ablation.md').read_text()
  assert [r['status'] for r in _read_csv(workdir / 'ablation.csv')] == ['skipped'] * 4
  assert second_s < first_s


def test_failing_cells_are_recorded_and_the_grid_goes_on(tmp_path):
  import ablation  # pylint: disable=g-import-not-at-top
  from damer_jax import reporting  # pylint: disable=g-import-not-at-top

  base = tiny_config()
  cells = ablation.grid_cells(['track'], ['full', 'no_saml'], [0, 1])

  def train_fn(config, workdir):  # The full variant fails, no_saml writes its metrics.
    if config.saml.enabled:
      raise RuntimeError('simulated crash\nwith a second line')
    row = {'step': config.num_train_steps, 'split': 'test', 'valence/accuracy': 0.5 +
           config.seed / 10, 'valence/f1': 0.5, 'valence/auc': None,
           'arousal/accuracy': 0.75, 'arousal/f1': 0.7, 'arousal/auc': 0.8}
    reporting.append_eval_metrics(workdir, row)

  results = ablation.run_grid(base, tmp_path, cells, {}, train_fn=train_fn)
  assert [r.status for r in results] == ['failed', 'trained', 'failed', 'trained']
  assert results[0].error == 'RuntimeError: simulated crash'
  ablation.write_csv(results, tmp_path / 'ablation.csv')
  rows = _read_csv(tmp_path / 'ablation.csv')
  assert rows[0]['status'] == 'failed' and rows[0]['valence/accuracy'] == ''
  assert float(rows[3]['valence/accuracy']) == pytest.approx(0.6)
  report = ablation.markdown_report(
      results, config_file='configs/demo.py', command='python ablation.py',
      config_overrides={}, overrides={},
      columns=ablation.metric_columns('classification', base.targets), total_wall_s=1.0)
  assert '| full (2 failed) |' in report
  assert '| no_saml | DSAF + PCL | 0.550 ± 0.071 (2) |' in report
  assert '- `track/full/seed0`: RuntimeError: simulated crash' in report

  # A real training run that raises (invalid parallelism) is caught the same way.
  overrides = ablation.parse_overrides(base, ['parallelism=bogus'])
  results = ablation.run_grid(base, tmp_path / 'bogus', cells[:2], overrides)
  assert [r.status for r in results] == ['failed', 'failed']
  assert "config.parallelism must be 'pmap' or 'shard_map'" in results[0].error


def test_overrides_are_typed_like_the_config_and_leave_the_base_alone():
  import ablation  # pylint: disable=g-import-not-at-top

  base = tiny_config()
  overrides = ablation.parse_overrides(base, [
      'num_train_steps=300', 'optimizer.learning_rate=1e-3', 'pcl.class_balance=False',
      'model.conv_features=8,16', 'dataset.test_styles=fm_bell', 'config.batch_size=16'])
  assert overrides == {'num_train_steps': 300, 'optimizer.learning_rate': 1e-3,
                       'pcl.class_balance': False, 'model.conv_features': (8, 16),
                       'dataset.test_styles': 'fm_bell', 'batch_size': 16}
  for bad in ('num_train_steps=3.5', 'pcl.enabled=True', 'seed=3', 'no_such=1',
              'model=1', 'dsaf.enabled', 'pcl.class_balance=maybe'):
    with pytest.raises(ValueError):
      ablation.parse_overrides(base, [bad])

  cell = ablation.Cell('style', 'no_dsaf', 2)
  config = ablation.cell_config(base, cell, overrides)
  assert (config.seed, config.dsaf.enabled, config.pcl.enabled, config.saml.enabled,
          config.dataset.split_by) == (2, False, True, True, 'style')
  assert config.model.conv_features == (8, 16)
  assert base.to_dict() == tiny_config().to_dict()  # The base is never changed.


def test_plot_embedding_drift_writes_a_png(tmp_path):
  from damer_jax import plots  # pylint: disable=g-import-not-at-top
  from damer_jax import stats  # pylint: disable=g-import-not-at-top

  rng = np.random.default_rng(0)
  tracks = np.repeat(np.arange(6), 5)
  classes = rng.integers(0, 2, len(tracks))
  by_track = rng.normal(size=(6, 12))[tracks] * 3 + rng.normal(size=(30, 12))
  by_class = np.eye(12)[classes] * 4 + rng.normal(size=(30, 12)) * 0.3
  clustered = stats.neighbour_drift(by_track, classes, tracks, k=4)
  aligned = stats.neighbour_drift(by_class, classes, tracks, k=4)
  assert clustered['same_track_share'] > aligned['same_track_share']
  assert aligned['class_agreement'] > clustered['class_agreement']
  path = plots.plot_embedding_drift(
      [('full', by_class, classes, tracks, aligned),
       ('no_saml', by_track, classes, tracks, clustered)],
      tmp_path / 'sub' / 'drift.png', 'random embeddings')
  _assert_png(path)
  points, variance = plots.pca_2d(by_track)
  assert points.shape == (30, 2) and variance[0] >= variance[1] > 0
