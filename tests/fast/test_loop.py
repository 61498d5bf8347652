"""The real training loop, in process, on arrays in memory, without TensorFlow (fast tier)."""

import json

import numpy as np

from damer_jax import train
from tests.conftest import tiny_config
from tests.test_data import fake_dataset


def _rows(path):
  return [json.loads(line) for line in path.read_text().splitlines()]


def test_the_loop_trains_evaluates_checkpoints_and_resumes(tmp_path):
  config = tiny_config(num_train_steps=4, log_every_steps=2, eval_every_steps=4,
                       checkpoint_every_steps=2, batch_size=8,
                       pcl__unlabelled_batch_size=4, pcl__target_mode='pseudo',
                       pcl__warmup_steps=1)
  data = fake_dataset()
  state = train.train_and_evaluate(config, str(tmp_path), data)
  assert int(state.step) == 4
  logged = _rows(tmp_path / 'train_metrics.jsonl')
  assert [r['step'] for r in logged] == [2, 4]
  assert all(np.isfinite(r['loss']) and r['finite'] == 1.0 for r in logged)
  (row,) = _rows(tmp_path / 'eval_metrics.jsonl')
  assert row['step'] == 4 and row['split'] == 'test'
  assert {'valence/accuracy', 'arousal/auc', 'num_examples'} <= set(row)
  assert row['num_examples'] == 12  # Every test row once, padding dropped.
  assert sorted(p.name for p in (tmp_path / 'checkpoints').iterdir()
                if p.name.isdigit()) == ['2', '4']

  config.num_train_steps = 6  # Resumes at step 4; only steps 5 and 6 run.
  state = train.train_and_evaluate(config, str(tmp_path), data)
  assert int(state.step) == 6
  assert [r['step'] for r in _rows(tmp_path / 'train_metrics.jsonl')] == [2, 4, 6]
  assert [r['step'] for r in _rows(tmp_path / 'eval_metrics.jsonl')] == [4, 6]


def test_a_non_finite_step_ends_the_loop_naming_it(tmp_path):
  config = tiny_config(num_train_steps=4, log_every_steps=2, eval_every_steps=4,
                       checkpoint_every_steps=2, batch_size=8)
  data = fake_dataset()
  data.splits['train']['mel'][:] = np.nan  # Every batch poisons the gradient.
  try:
    train.train_and_evaluate(config, str(tmp_path), data)
  except FloatingPointError as error:
    assert 'step 1 ' in str(error) and 'last good checkpoint is none' in str(error)
  else:
    raise AssertionError('a NaN input did not stop the run')
  assert not (tmp_path / 'checkpoints' / '2').exists()
