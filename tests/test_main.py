"""main.py end to end on the tiny synthetic dataset: metrics file, resume after a kill."""

import json
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
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
  from damer_jax import evaluate  # pylint: disable=g-import-not-at-top
  for name in evaluate.REPORT_FILES:
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
  for name in evaluate.REPORT_FILES[:-1]:
    assert f']({name})' in markdown, name


def test_regression_task_reports_regression_metrics(tmp_path, data_dir):
  workdir = tmp_path / 'run'
  result = _main(tiny_flags(workdir, data_dir, task='regression', num_train_steps=3,
                                  pcl__enabled=False))
  assert result.returncode == 0, result.stderr[-4000:]
  row = _rows(workdir)[-1]
  assert {'valence/rmse', 'valence/r2', 'valence/ccc', 'arousal/ccc'} <= set(row)


def _start(args):
  return subprocess.Popen([sys.executable, 'main.py', *args], cwd=ROOT,
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def _wait_for(condition, process, what):
  deadline = time.monotonic() + 300
  while time.monotonic() < deadline and process.poll() is None and not condition():
    time.sleep(0.1)
  assert process.poll() is None, f'the run ended before {what}'


def _checkpoint_steps(workdir):
  folder = pathlib.Path(workdir) / 'checkpoints'
  return sorted(int(p.name) for p in folder.iterdir() if p.name.isdigit()) if \
      folder.exists() else []


def _final_arrays(workdir, step):
  import orbax.checkpoint as ocp  # pylint: disable=g-import-not-at-top
  import jax  # pylint: disable=g-import-not-at-top
  with ocp.CheckpointManager(pathlib.Path(workdir) / 'checkpoints') as manager:
    tree = manager.restore(step, args=ocp.args.StandardRestore())
  return {jax.tree_util.keystr(k): np.asarray(v)
          for k, v in jax.tree_util.tree_flatten_with_path(tree)[0]}


def test_killed_then_preempted_run_ends_bit_identical_to_an_uninterrupted_one(
    tmp_path, data_dir):
  steps = 120
  flags = lambda w: tiny_flags(w, data_dir, num_train_steps=steps, checkpoint_every_steps=10,
                               eval_every_steps=1000, log_every_steps=10)
  straight = tmp_path / 'straight'
  result = _main(flags(straight))
  assert result.returncode == 0, result.stderr[-4000:]

  workdir = tmp_path / 'interrupted'
  process = _start(flags(workdir))  # 1. SIGKILL once the first checkpoint exists.
  _wait_for(lambda: _checkpoint_steps(workdir), process, 'it could be killed')
  process.send_signal(signal.SIGKILL)
  process.wait()
  killed_at = _checkpoint_steps(workdir)[-1]

  process = _start(flags(workdir))  # 2. SIGTERM (preemption) a little later.
  metrics = workdir / 'train_metrics.jsonl'
  rows = lambda: [json.loads(l) for l in metrics.read_text().splitlines()] if \
      metrics.exists() else []
  # The killed run may have logged past its last checkpoint: wait for a row of this run.
  logged_before = len(rows())
  _wait_for(lambda: len(rows()) > logged_before, process, 'SIGTERM')
  process.send_signal(signal.SIGTERM)
  _, stderr = process.communicate(timeout=300)
  assert process.returncode == 0, stderr[-4000:]  # A clean exit.
  assert f'Resuming from step {killed_at}.' in stderr
  assert 'Preemption (SIGTERM) at step' in stderr
  preempted_at = _checkpoint_steps(workdir)[-1]
  assert killed_at < preempted_at < steps  # Saved where it stopped, between periods.

  result = _main(flags(workdir))  # 3. To the end.
  assert result.returncode == 0, result.stderr[-4000:]
  assert f'Resuming from step {preempted_at}.' in result.stderr

  expected, got = _final_arrays(straight, steps), _final_arrays(workdir, steps)
  assert sorted(expected) == sorted(got)
  for key, value in expected.items():  # Params, optimiser, PCL table, SAML queue, rng.
    np.testing.assert_array_equal(got[key], value, err_msg=key)


def test_train_throughput_without_config_prints_usage():
  result = subprocess.run([sys.executable, 'benchmarks/train_throughput.py'], cwd=ROOT,
                          capture_output=True, text=True, timeout=300, check=False)
  assert result.returncode != 0
  assert '--config' in result.stderr and 'AttributeError' not in result.stderr


def test_evaluate_on_a_process_other_than_0_prints_nothing_and_succeeds(tmp_path):
  # In a multi-process evaluate only process 0 writes the report and prints; main.py
  # must not touch the result elsewhere. (A subprocess: main.py's flags cannot be
  # defined twice in one process.)
  script = (
      'import sys\n'
      'from absl import app\n'
      'import main\n'
      'main.evaluate.evaluate = lambda *args, **kwargs: {}\n'
      'main.sources.create_dataset = lambda config: None\n'
      'main.jax.process_index = lambda: 1\n'
      f'sys.argv = ["main.py", "--config={ROOT}/configs/demo.py", "--workdir={tmp_path}",'
      ' "--mode=evaluate"]\n'
      'app.run(main.main)\n')
  result = subprocess.run([sys.executable, '-c', script], cwd=ROOT, capture_output=True,
                          text=True, timeout=300, check=False)
  assert result.returncode == 0, result.stderr[-3000:]
  assert result.stdout == ''
