"""main.py end to end on the tiny synthetic dataset: metrics file, resume after a kill."""

import json
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import time

import pytest

from tests.conftest import ROOT, run_main as _main, tiny_flags

pytest.importorskip('tensorflow_datasets')


def _rows(workdir):
  path = pathlib.Path(workdir) / 'eval_metrics.jsonl'
  return [json.loads(line) for line in path.read_text().splitlines()]


def test_train_writes_metrics_and_checkpoints_then_evaluate(tmp_path, data_dir,
                                                           trained_workdir):
  workdir = tmp_path / 'run'
  shutil.copytree(trained_workdir, workdir)  # evaluate writes into it.
  rows = _rows(workdir)
  assert [r['step'] for r in rows] == [3, 6]
  for target in ('valence', 'arousal'):
    for metric in ('accuracy', 'f1', 'auc'):
      assert f'{target}/{metric}' in rows[-1]
    assert 0.0 <= rows[-1][f'{target}/accuracy'] <= 1.0
  assert rows[-1]['split'] == 'test' and rows[-1]['num_examples'] == 6  # 2 tracks x 3 s.
  assert sorted(os.listdir(workdir / 'checkpoints')) == ['3', '6']
  assert list(workdir.glob('events.out.tfevents.*')), 'no TensorBoard events written'
  train_rows = [json.loads(line) for line in
                (workdir / 'train_metrics.jsonl').read_text().splitlines()]
  assert [r['step'] for r in train_rows] == [2, 4, 6]
  assert all(r['loss'] > 0 and 'learning_rate' in r for r in train_rows)
  saved = json.loads((workdir / 'config.json').read_text())
  assert saved['model']['width'] == 16 and saved['dataset']['num_tracks'] == 8

  result = _main(tiny_flags(workdir, data_dir) + ['--mode=evaluate'])
  assert result.returncode == 0, result.stderr[-4000:]
  assert _rows(workdir)[-1] == rows[-1]  # Same checkpoint, same data -> same metrics.
  _check_report(workdir / 'report', step=6, last_row=rows[-1])

  result = _main(tiny_flags(workdir, data_dir) + ['--mode=evaluate', '--checkpoint_step=3'])
  assert result.returncode == 0, result.stderr[-4000:]
  assert _rows(workdir)[-1] == rows[0]  # The step-3 checkpoint gives the step-3 metrics.
  assert json.loads((workdir / 'report' / 'metrics.json').read_text())['step'] == 3


def _check_report(report, step, last_row):
  from damer_jax import report as report_lib  # pylint: disable=g-import-not-at-top
  for name in report_lib.FILES:
    assert (report / name).stat().st_size > 0, name
    if name.endswith('.png'):
      assert (report / name).read_bytes()[:8] == b'\x89PNG\r\n\x1a\n', name
  metrics = json.loads((report / 'metrics.json').read_text())
  assert metrics['step'] == step and metrics['num_segments'] == 6
  assert metrics['num_tracks'] == 2
  assert set(metrics['segment']) == set(metrics['track']) == {'fusion', 'mel', 'coch'}
  for key in ('valence/accuracy', 'arousal/f1'):
    assert metrics['segment']['fusion'][key] == pytest.approx(last_row[key])
  lines = (report / 'predictions.jsonl').read_text().splitlines()
  assert len(lines) == 6
  assert {'track_id', 'start_s', 'valence', 'predicted_valence'} <= set(json.loads(lines[0]))
  markdown = (report / 'report.md').read_text()
  for name in report_lib.FILES[:-1]:
    assert f']({name})' in markdown, name


def test_regression_task_reports_regression_metrics(tmp_path, data_dir):
  workdir = tmp_path / 'run'
  result = _main(tiny_flags(workdir, data_dir, task='regression', num_train_steps=3,
                                  pcl__enabled=False))
  assert result.returncode == 0, result.stderr[-4000:]
  row = _rows(workdir)[-1]
  assert {'valence/rmse', 'valence/r2', 'valence/ccc', 'arousal/ccc'} <= set(row)


def test_killed_run_resumes_from_its_last_checkpoint(tmp_path, data_dir):
  workdir = tmp_path / 'run'
  args = tiny_flags(workdir, data_dir, num_train_steps=400, checkpoint_every_steps=4,
                    eval_every_steps=1000, log_every_steps=4)
  process = subprocess.Popen([sys.executable, 'main.py', *args], cwd=ROOT,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
  checkpoints = workdir / 'checkpoints'
  deadline = time.monotonic() + 300
  while time.monotonic() < deadline and process.poll() is None:
    if checkpoints.exists() and any(p.name.isdigit() for p in checkpoints.iterdir()):
      break
    time.sleep(0.2)
  assert process.poll() is None, 'the run ended before it could be killed'
  process.send_signal(signal.SIGKILL)
  process.wait()
  saved = max(int(p.name) for p in checkpoints.iterdir() if p.name.isdigit())
  assert saved >= 4

  result = _main(tiny_flags(workdir, data_dir, num_train_steps=saved + 4,
                            checkpoint_every_steps=4, eval_every_steps=1000))
  assert result.returncode == 0, result.stderr[-4000:]
  assert f'Resuming from step {saved}.' in result.stderr
  assert [r['step'] for r in _rows(workdir)] == [saved + 4]
