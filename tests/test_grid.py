"""The unlabelled stream in the step, the multi-seed engine, the grid's statistics."""

import functools
import json

from etils import epath
from flax import jax_utils
import jax
import numpy as np
import pytest

from damer_jax import evaluate
from damer_jax import grid
from damer_jax import models
from damer_jax import multiseed
from damer_jax import reporting
from damer_jax import stats
from damer_jax import train
from tests.conftest import tiny_config
from tests.test_data import fake_dataset


def _pcl_config(**overrides):
  base = dict(batch_size=8, pcl__unlabelled_batch_size=4, pcl__warmup_steps=0,
              pcl__target_mode='pseudo', pcl__coverage_start=1.0, pcl__coverage_end=1.0,
              pcl__reliability_floor=0.0, saml__enabled=False, model__dropout=0.0,
              optimizer__warmup_steps=0)
  base.update(overrides)
  return tiny_config(**base)


def test_the_unlabelled_stream_reaches_the_loss():
  config = _pcl_config()
  data = fake_dataset()
  model = models.create_model(config, axis_name=train.AXIS)
  state = train.create_train_state(config, model, jax.random.key(0), data.num_train,
                                   data.num_unlabelled)
  # Every row seen, with a confident EMA: every unlabelled row is a candidate.
  table = np.zeros(state.pcl.table.shape, np.float32)
  table[..., 0] = 0.95
  table[..., 1] = 0.05
  state = state.replace(pcl=state.pcl.replace(table=table, seen=np.ones_like(state.pcl.seen)))
  step = jax.pmap(functools.partial(train.train_step, model=model, config=config,
                                    schedule=train.learning_rate_schedule(config)),
                  axis_name=train.AXIS)
  batch = next(data.train_batches(config, seed=0))
  new, metrics = step(jax_utils.replicate(state), batch)
  assert float(metrics['pcl/unlabelled_selected_fraction'][0]) > 0
  changed = dict(batch)
  unlabelled = (batch['labelled'] == 0)[..., None, None]
  changed['mel'] = np.where(unlabelled, batch['mel'] + 1.0, batch['mel'])
  other, _ = step(jax_utils.replicate(state), changed)
  # Only the unlabelled rows differ, and the update differs: they are trained on.
  head = lambda s: np.asarray(s.params['fusion_head']['Dense_0']['kernel'][0])
  assert np.abs(head(new) - head(other)).max() > 1e-6
  # The table rows of the unlabelled examples were updated.
  rows = batch['index'][batch['labelled'] == 0]
  assert not np.allclose(np.asarray(new.pcl.table[0])[rows], table[rows])


def test_multiseed_matches_one_run_per_seed_on_two_devices(tmp_path):
  """Each seed of train_seeds (one device, vmapped) equals train_and_evaluate with that
  seed on two devices: the engine is faithful and the step is device-count free."""
  config = _pcl_config(num_train_steps=4, eval_every_steps=4, checkpoint_every_steps=4,
                       log_every_steps=2, saml__enabled=True, pcl__warmup_steps=1,
                       saml__key_encoder='current')
  data = fake_dataset()
  run = multiseed.train_seeds(config, [0, 3], data, eval_splits=('test',))
  assert np.abs(run.predictions['test']['fusion'][0] -
                run.predictions['test']['fusion'][1]).max() > 1e-3  # Seeds differ.
  for i, seed in ((1, 3),):  # The second seed of the vmapped run (one run: suite time).
    single = config.copy_and_resolve_references()
    single.seed = seed
    state = train.train_and_evaluate(single, str(tmp_path / f'seed{seed}'), data)
    driver = train.create_driver(single, models.create_model(single))
    pred = evaluate.collect(driver, driver.put_state(evaluate.variables_of(state)),
                            data.eval_batches(single, 'test'), single, heads=('fusion',))
    np.testing.assert_allclose(run.predictions['test']['fusion'][i],
                               pred.heads['fusion'], atol=2e-4)
    row = reporting.read_eval_metrics(tmp_path / f'seed{seed}')[-1]
    assert row['split'] == 'test' and row['step'] == 4


def test_paired_bootstrap_finds_a_real_difference_and_not_a_null_one():
  rng = np.random.default_rng(0)
  seeds, tracks, per_track = 5, 60, 10
  labels = rng.integers(0, 2, (tracks * per_track, 1))
  track_id = np.repeat(np.arange(tracks), per_track)

  def probs(accuracy, seed):
    right = np.random.default_rng(seed).random(labels.shape) < accuracy
    cls = np.where(right, labels, 1 - labels)
    return np.eye(2)[cls][None].repeat(1, 0)

  a = np.concatenate([probs(0.85, s) for s in range(seeds)])
  b = np.concatenate([probs(0.75, 100 + s) for s in range(seeds)])
  c = np.concatenate([probs(0.85, 200 + s) for s in range(seeds)])
  ca, segments = stats.track_counts(a, labels, track_id)
  cb, _ = stats.track_counts(b, labels, track_id)
  cc, _ = stats.track_counts(c, labels, track_id)
  real = stats.paired_difference(ca, cb, segments)
  null = stats.paired_difference(ca, cc, segments)
  assert real['low'][0] > 0.05 and abs(real['mean'][0] - 0.10) < 0.02
  assert null['low'][0] < 0 < null['high'][0]
  acc = stats.accuracy_interval(ca, segments)
  assert acc['low'][0] < acc['mean'][0] < acc['high'][0] and 0 < acc['se'][0] < 0.02


def test_neighbour_drift_tells_class_clusters_from_track_clusters():
  rng = np.random.default_rng(1)
  tracks = np.repeat(np.arange(20), 5)
  classes = rng.integers(0, 4, 20)[tracks]
  by_class = np.eye(4)[classes] + 0.05 * rng.normal(size=(100, 4))
  by_track = np.eye(20)[tracks] + 0.05 * rng.normal(size=(100, 20))
  good = stats.neighbour_drift(by_class, classes, tracks, k=4)
  bad = stats.neighbour_drift(by_track, classes, tracks, k=4)
  assert good['class_agreement'] > 0.95 and bad['same_track_share'] > 0.95
  assert bad['class_agreement'] < good['class_agreement']


def test_grid_markdown_lists_every_variant_with_intervals():
  report = {'test_chain': {'clean': {
      'accuracy': {'full': {'mean': [0.8, 0.7], 'low': [0.78, 0.68], 'high': [0.82, 0.72]},
                   'no_pcl': {'mean': [0.75, 0.7], 'low': [0.73, 0.68], 'high': [0.77, 0.72]}},
      'difference': {'no_pcl': {'mean': [0.05, 0.0], 'low': [0.03, -0.01],
                                'high': [0.07, 0.01]}}}}}
  text = grid.markdown(report, ('valence', 'arousal'), ('full', 'no_pcl'), (0, 1))
  assert '| `no_pcl` | 75.0 [73.0, 77.0]' in text and '+5.0 [+3.0, +7.0]' in text


def _benchmark_like(num=24, tracks=6, seed=0):
  from tests.test_data import fake_split  # pylint: disable=g-import-not-at-top
  from damer_data import dataset as data_lib  # pylint: disable=g-import-not-at-top
  splits = {}
  for i, name in enumerate(('train', 'unlabelled', 'validation', 'test_track',
                            'test_chain')):
    arrays = fake_split(num, tracks, seed + i, labelled=name != 'unlabelled',
                        n_mels=4, n_coch=4, frames=3)
    for target in ('valence', 'arousal'):
      arrays[f'{target}_clean'] = np.random.default_rng(i).uniform(-1, 1, num).astype(
          np.float32)
    splits[name] = arrays
  return data_lib.ArrayDataset(splits, eval_splits=('validation', 'test_track',
                                                    'test_chain'),
                               unlabelled_split='unlabelled')


def test_in_memory_grid_sweeps_on_validation_reuses_the_chosen_run_and_reports(
    tmp_path, monkeypatch):
  """ablation.py's benchmark path, with training replaced by seeded fake predictions."""
  import ablation  # pylint: disable=g-import-not-at-top
  from input_pipeline import sources  # pylint: disable=g-import-not-at-top
  data = _benchmark_like()
  monkeypatch.setattr(sources, 'create_dataset', lambda config: data)
  trained = []

  def fake_train(config, seeds, data, eval_splits=None, embedding_splits=()):
    trained.append((config.saml.weight, config.saml.temperature, config.pcl.enabled))
    # SAML weight 0.5 predicts the validation annotations; everything else guesses.
    rng = np.random.default_rng(len(trained))
    predictions = {}
    for split in data.eval_splits:
      arrays = data.splits[split]
      truth = np.stack([arrays[t] > 0 for t in config.targets], -1).astype(int)
      guess = rng.integers(0, 2, (len(seeds),) + truth.shape)
      cls = truth[None].repeat(len(seeds), 0) if config.saml.weight == 0.5 else guess
      predictions[split] = {'fusion': np.eye(2)[cls].astype(np.float32)}
      if split in embedding_splits:
        predictions[split]['embedding'] = rng.normal(size=(len(seeds), len(truth), 8))
    rows = data.num_train + data.num_unlabelled
    return multiseed.SeedRun(
        seeds=tuple(seeds), predictions=predictions, history=[],
        pcl_table=np.full((len(seeds), rows, 2, 2), 0.5, np.float32) if
        config.pcl.enabled else None,
        pcl_seen=np.ones((len(seeds), rows), bool) if config.pcl.enabled else None,
        nonfinite_steps=np.zeros(len(seeds), int), train_seconds=1.0, compile_seconds=1.0)

  monkeypatch.setattr(multiseed, 'train_seeds', fake_train)
  config = tiny_config()
  ablation.in_memory_grid(config, epath.Path(tmp_path), ['full', 'no_pcl'], [0, 1], {}, {},
                          saml_sweep=['0.1:0.1', '0.5:0.2'])
  sweep = json.loads((tmp_path / 'sweep' / 'saml_sweep.json').read_text())
  assert sweep['chosen']['weight'] == 0.5 and sweep['split'] == 'validation'
  # Two sweep runs, then only no_pcl: the chosen sweep run is the full variant.
  assert trained == [(0.1, 0.1, True), (0.5, 0.2, True), (0.5, 0.2, False)]
  report = json.loads((tmp_path / 'ablation.json').read_text())
  assert set(report['splits']) == {'test_track', 'test_chain'}
  clean = report['splits']['test_chain']['clean']
  assert set(clean['accuracy']) == {'full', 'no_pcl'} and set(clean['difference']) == {
      'no_pcl'}
  assert report['saml'] == {'weight': 0.5, 'temperature': 0.2, 'sweep_seeds': [0, 1]}
  assert report['pcl_labels']['full']['unlabelled_seen'] == 1.0
  assert set(report['drift']['test_chain']) == {'full'}
  text = (tmp_path / 'ablation.md').read_text()
  assert '### test_chain, against the clean labels (2 seeds)' in text


def test_merge_runs_joins_one_seed_cells_like_one_run_of_all_seeds(tmp_path):
  def part(name, seed, steps=(50, 100)):
    arrays = {'test/fusion': np.full((1, 4, 2, 2), seed, np.float32),
              'pcl_table': np.full((1, 6, 2, 2), seed, np.float16),
              'history/loss': np.full((len(steps), 1), seed, np.float32),
              'history/step': np.asarray(steps)}
    path = tmp_path / f'{name}.npz'
    with path.open('wb') as f:
      np.savez(f, **arrays)
    path.with_suffix('.json').write_text(json.dumps(
        {'seeds': [seed], 'train_seconds': 10.0, 'compile_seconds': 2.0,
         'steps_per_second': 5.0, 'nonfinite_steps': [0], 'num_train': 6}))
    return path

  parts = [part('a', 3), part('b', 1)]
  grid.merge_runs(parts, tmp_path / 'full.npz')
  merged = dict(np.load(tmp_path / 'full.npz'))
  meta = json.loads((tmp_path / 'full.json').read_text())
  assert meta['seeds'] == [3, 1] and meta['train_seconds'] == 20.0
  assert meta['nonfinite_steps'] == [0, 0] and meta['num_train'] == 6
  np.testing.assert_array_equal(merged['test/fusion'][:, 0, 0, 0], [3, 1])  # Seed axis 0.
  np.testing.assert_array_equal(merged['history/loss'][0], [3, 1])  # [steps, S].
  np.testing.assert_array_equal(merged['history/step'], [50, 100])
  with pytest.raises(ValueError, match='repeat'):
    grid.merge_runs([parts[0], part('c', 3)], tmp_path / 'x.npz')
  with pytest.raises(ValueError, match='other steps'):
    grid.merge_runs([parts[0], part('d', 5, steps=(50, 90))], tmp_path / 'y.npz')
