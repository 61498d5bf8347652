"""The real training loop learns an easy in-memory dataset, without TensorFlow (fast tier).

tests/fast/test_loop.py covers the loop's files, resumption and a non-finite step
(pmap driver); this runs it with the shard_map driver on data whose classes are written
into the inputs, and checks that it learns.
"""

import json

import jax
import numpy as np

from damer_data import dataset as data_lib
from damer_jax import config_lib
from damer_jax import models
from damer_jax import train
from tests.conftest import tiny_config


def _split(n, seed, config):
  """n examples whose views carry the classes: mel = +-1 by valence, coch by arousal."""
  (n_mels, frames), (n_coch, _) = config_lib.input_shapes(config)
  rng = np.random.default_rng(seed)
  valence = np.where(np.arange(n) % 2, 0.6, -0.6).astype(np.float32)
  arousal = np.where(np.arange(n) // 2 % 2, 0.6, -0.6).astype(np.float32)
  noise = lambda *shape: 0.1 * rng.standard_normal(shape).astype(np.float32)
  return {'mel': noise(n, n_mels, frames) + np.sign(valence)[:, None, None],
          'coch': noise(n, n_coch, frames) + np.sign(arousal)[:, None, None],
          'valence': valence, 'arousal': arousal,
          'track_id': np.arange(n, dtype=np.int32), 'style_id': np.zeros(n, np.int32),
          'start_s': np.zeros(n, np.float32), 'index': np.arange(n, dtype=np.int32)}


def test_the_loop_learns_an_easy_dataset_with_the_shard_map_driver(tmp_path):
  config = tiny_config(parallelism='shard_map', pcl__enabled=False, saml__enabled=False,
                       model__dropout=0.0, optimizer__learning_rate=1e-2,
                       optimizer__warmup_steps=0, num_train_steps=6, log_every_steps=1,
                       eval_every_steps=6, checkpoint_every_steps=6)
  data = data_lib.ArrayDataset({'train': _split(16, 0, config), 'test': _split(8, 1, config)})
  initial = train.create_train_state(config, models.create_model(config),
                                     jax.random.key(config.seed))
  state = train.train_and_evaluate(config, str(tmp_path), data)

  rows = [json.loads(line) for line in (tmp_path / 'train_metrics.jsonl').read_text()
          .splitlines()]
  assert [r['step'] for r in rows] == [1, 2, 3, 4, 5, 6]
  loss = np.array([r['loss'] for r in rows])
  assert np.isfinite(loss).all() and all(r['finite'] == 1.0 for r in rows)
  assert loss[-2:].mean() < 0.8 * loss[0], loss
  moved = jax.tree.map(lambda a, b: not np.allclose(a, b), jax.device_get(state.params),
                       initial.params)
  assert all(jax.tree.leaves(moved))  # Every parameter array was updated.
  (row,) = [json.loads(line) for line in (tmp_path / 'eval_metrics.jsonl').read_text()
            .splitlines()]
  assert row['step'] == 6 and row['split'] == 'test' and row['num_examples'] == 8
  assert row['valence/accuracy'] >= 0.75 and row['arousal/accuracy'] >= 0.75, row
  assert (tmp_path / 'checkpoints' / '6').is_dir()
