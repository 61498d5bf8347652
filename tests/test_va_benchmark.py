"""Tests of the in-memory benchmark (input_pipeline/va_benchmark.py), tiny sizes."""

from __future__ import annotations

import dataclasses
import os

import numpy as np
import pytest

from damer_audio import features as features_lib
from input_pipeline import synthetic_music
from input_pipeline import va_benchmark as vb

FEATURES = features_lib.FeatureSpec()
NOISELESS = dict(rater_bias_std=0.0, rater_lag_min_s=0.0, rater_lag_max_s=0.0,
                 rater_noise_min=0.0, rater_noise_max=0.0, rater_flip_prob=0.0,
                 shared_misjudge_prob=0.0)
FLOAT_KEYS = ('valence', 'arousal', 'valence_std', 'arousal_std', 'valence_clean',
              'arousal_clean', 'start_s')
INT_KEYS = ('track_id', 'style_id', 'chain_id', 'section', 'index')


@pytest.fixture(scope='module')
def tiny():
  return vb.generate(vb.BenchmarkSpec.tiny(), FEATURES, num_workers=1)


def _labels_only(**overrides):
  """Labels, clean labels and ids of a moderately sized benchmark, without audio."""
  spec = vb.BenchmarkSpec(num_train_tracks=300, num_unlabelled_tracks=10,
                          num_validation_tracks=10, num_test_tracks=100,
                          num_test_chain_tracks=100, generator_seed=3, **overrides)
  return vb.generate(spec, FEATURES, with_views=False)


def test_shapes_and_dtypes(tiny):
  assert set(tiny) == set(vb.SPLITS)
  frames = FEATURES.num_frames
  for split, arrays in tiny.items():
    n = len(arrays['track_id'])
    assert n > 0, split
    assert arrays['mel'].shape == (n, FEATURES.n_mels, frames)
    assert arrays['coch'].shape == (n, FEATURES.n_coch, frames)
    assert arrays['mel'].dtype == arrays['coch'].dtype == np.float32
    assert np.all(np.isfinite(arrays['mel'])) and np.all(np.isfinite(arrays['coch']))
    for key in FLOAT_KEYS:
      assert arrays[key].shape == (n,) and arrays[key].dtype == np.float32, (split, key)
    for key in INT_KEYS:
      assert arrays[key].shape == (n,) and arrays[key].dtype == np.int32, (split, key)
    np.testing.assert_array_equal(arrays['index'], np.arange(n))
    assert np.all(np.abs(arrays['valence_clean']) <= 1)


def test_views_match_features_of_the_rendered_track(tiny):
  spec = vb.BenchmarkSpec.tiny()
  track = next(t for t in vb.track_plan(spec) if t.split == 'test_track')
  audio, _ = vb.render_track(spec, track, FEATURES.sample_rate)
  segments = features_lib.segment_audio(audio, FEATURES)
  starts = np.arange(len(segments)) * FEATURES.segment_seconds
  mel, coch = features_lib.compute_views(segments[starts >= spec.lead_in_seconds], FEATURES)
  rows = tiny['test_track']['track_id'] == track.track_id
  # BLAS threading may change the last bit of the filterbank products.
  np.testing.assert_allclose(tiny['test_track']['mel'][rows], mel, atol=1e-5)
  np.testing.assert_allclose(tiny['test_track']['coch'][rows], coch, atol=1e-5)


def test_splits_are_disjoint_by_track(tiny):
  tracks = {s: set(tiny[s]['track_id'].tolist()) for s in vb.SPLITS}
  held_out = ('validation', 'test_track', 'test_chain')
  for i, a in enumerate(held_out):
    assert not tracks[a] & (tracks['train'] | tracks['unlabelled']), a
    for b in held_out[i + 1:]:
      assert not tracks[a] & tracks[b], (a, b)
  # The only tracks shared by train and unlabelled are train tracks' lead-ins.
  shared = np.isin(tiny['unlabelled']['track_id'], list(tracks['train']))
  assert np.all(tiny['unlabelled']['start_s'][shared] < vb.BenchmarkSpec.tiny().lead_in_seconds)
  assert np.all(tiny['train']['start_s'] >= vb.BenchmarkSpec.tiny().lead_in_seconds)


def test_unlabelled_holds_lead_ins_and_whole_tracks(tiny):
  spec = vb.BenchmarkSpec.tiny()
  pool = tiny['unlabelled']
  for key in ('valence', 'arousal', 'valence_std', 'arousal_std'):
    assert np.all(np.isnan(pool[key])), key
  assert np.all(np.isfinite(pool['valence_clean'])) and np.all(np.isfinite(pool['arousal_clean']))
  train_tracks = set(tiny['train']['track_id'].tolist())
  lead_in = np.isin(pool['track_id'], list(train_tracks))
  per_track = int(spec.track_seconds // FEATURES.segment_seconds)
  lead_in_count = int(spec.lead_in_seconds // FEATURES.segment_seconds)
  assert lead_in.sum() == lead_in_count * spec.num_train_tracks
  whole = pool['track_id'][~lead_in]
  assert len(set(whole.tolist())) == spec.num_unlabelled_tracks
  assert len(whole) == per_track * spec.num_unlabelled_tracks
  for split in ('train', 'validation', 'test_track', 'test_chain'):
    assert np.all(np.isfinite(tiny[split]['valence'])), split
    assert np.all(np.isfinite(tiny[split]['arousal_std'])), split


def test_deterministic_and_independent_of_workers(tiny):
  spec = vb.BenchmarkSpec.tiny()
  again = vb.generate(spec, FEATURES, num_workers=2)
  for split in vb.SPLITS:
    for key, value in tiny[split].items():
      np.testing.assert_array_equal(value, again[split][key], err_msg=f'{split}/{key}')
  other = vb.generate(dataclasses.replace(spec, generator_seed=1), FEATURES, num_workers=1)
  assert not np.array_equal(other['train']['mel'], tiny['train']['mel'])


def test_resizing_one_split_keeps_the_others():
  spec = dataclasses.replace(vb.BenchmarkSpec.tiny(), num_train_tracks=3)
  a = vb.generate(spec, FEATURES, with_views=False)
  b = vb.generate(dataclasses.replace(spec, num_train_tracks=6), FEATURES, with_views=False)
  for key in ('valence', 'arousal_std', 'valence_clean', 'start_s'):
    np.testing.assert_array_equal(a['test_chain'][key], b['test_chain'][key])


def test_test_chain_holds_only_held_out_style_and_chains(tiny):
  spec = vb.BenchmarkSpec.tiny()
  style = synthetic_music.STYLE_NAMES.index(spec.heldout_style)
  chains = {vb.CHAIN_NAMES.index(c) for c in spec.heldout_chains}
  assert set(tiny['test_chain']['style_id'].tolist()) == {style}
  assert set(tiny['test_chain']['chain_id'].tolist()) == chains  # both families present
  for split in ('train', 'unlabelled', 'validation', 'test_track'):
    assert style not in tiny[split]['style_id'], split
    assert not chains & set(tiny[split]['chain_id'].tolist()), split
    assert np.all(tiny[split]['chain_id'] >= 0), split


def test_label_noise_rate_in_band():
  data = _labels_only()
  report = vb.describe(data)
  for split in ('train', 'test_track', 'test_chain'):
    for target in vb.TARGETS:
      assert 0.10 <= report['noise_rate'][split][target] <= 0.28, (split, target)
      if split in vb.TEST_SPLITS:
        assert report['ceiling'][split][target] == pytest.approx(
            1 - report['noise_rate'][split][target])


def test_noiseless_raters_reproduce_the_clean_label():
  data = _labels_only(**NOISELESS)
  report = vb.describe(data)
  for split in ('train', 'validation', 'test_track', 'test_chain'):
    for target in vb.TARGETS:
      assert report['noise_rate'][split][target] == 0.0
      np.testing.assert_allclose(data[split][target], data[split][f'{target}_clean'],
                                 atol=1e-6)
      np.testing.assert_allclose(data[split][f'{target}_std'], 0.0, atol=1e-6)


def test_each_noise_source_adds_noise():
  """Shared misjudgements alone, lag alone: each gives wrong-side labels."""
  clean = dict(NOISELESS)
  for source in (dict(shared_misjudge_prob=0.1), dict(rater_lag_min_s=1.0,
                                                      rater_lag_max_s=2.0)):
    report = vb.describe(_labels_only(**{**clean, **source}))
    assert report['noise_rate']['train']['valence'] > 0.03, source


def test_std_flags_doubtful_labels():
  """Wrong-side labels are commoner among the segments whose raters disagree most."""
  arrays = _labels_only()['train']
  for target in vb.TARGETS:
    wrong = (arrays[target] > 0) != (arrays[f'{target}_clean'] > 0)
    std = arrays[f'{target}_std']
    top = std > np.quantile(std, 0.8)
    assert wrong[top].mean() > 1.5 * wrong[~top].mean(), target
    assert std[wrong].mean() > std[~wrong].mean(), target


def test_std_is_larger_where_raters_disagree():
  spec = dataclasses.replace(vb.BenchmarkSpec(), rater_flip_prob=0.2,
                             shared_misjudge_prob=0.0)
  raters = vb.rater_pool(spec)
  rng = np.random.default_rng(0)
  starts = np.arange(int(spec.track_seconds), dtype=np.float64)
  flipped_std, agreed_std = [], []
  for _ in range(200):
    sections = vb.draw_sections(rng, spec)
    who = rng.choice(spec.rater_pool_size, spec.raters_per_track, replace=False)
    notes = vb.annotate(sections, raters, who, starts, spec, 1.0, rng)
    for target in vb.TARGETS:
      std = notes[f'{target}_raters'].std(axis=0)
      disagree = notes[f'{target}_flipped'].any(axis=0)
      big = np.abs(vb.clean_labels(sections, f'{target}_target', starts, 1.0)) > 0.3
      flipped_std.append(std[disagree & big])
      agreed_std.append(std[~disagree & big])
  assert np.mean(np.concatenate(flipped_std)) > 2 * np.mean(np.concatenate(agreed_std))


def test_stored_std_and_mean_are_the_raters(tiny):
  """Train labels are the mean/std of the raters' per-segment values."""
  spec = vb.BenchmarkSpec.tiny()
  track = next(t for t in vb.track_plan(spec) if t.split == 'train')
  arrays = vb.track_arrays(spec, FEATURES, track, with_views=False)
  latent_rng, *_, rater_rng = vb._track_streams(spec, track)  # pylint: disable=protected-access
  sections = vb.draw_sections(latent_rng, spec)
  who = rater_rng.choice(spec.rater_pool_size, spec.raters_per_track, replace=False)
  starts = np.arange(int(spec.track_seconds), dtype=np.float64)
  notes = vb.annotate(sections, vb.rater_pool(spec), who, starts, spec, 1.0, rater_rng)
  keep = arrays['annotated']
  np.testing.assert_allclose(arrays['valence'][keep], notes['valence_raters'].mean(0)[keep],
                             rtol=1e-6)
  np.testing.assert_allclose(arrays['arousal_std'][keep], notes['arousal_raters'].std(0)[keep],
                             rtol=1e-5)
  rows = tiny['train']['track_id'] == track.track_id
  np.testing.assert_array_equal(tiny['train']['valence'][rows], arrays['valence'][keep])


def test_track_se_matches_a_bootstrap():
  rng = np.random.default_rng(0)
  track_id = np.repeat(np.arange(60), rng.integers(3, 12, 60))
  skill = rng.uniform(0.5, 1.0, 60)[track_id]
  correct = (rng.uniform(size=len(track_id)) < skill).astype(float)
  boot = []
  for _ in range(2000):
    pick = rng.integers(0, 60, 60)
    rows = np.concatenate([np.flatnonzero(track_id == t) for t in pick])
    boot.append(correct[rows].mean())
  assert vb.track_se(correct, track_id) == pytest.approx(np.std(boot), rel=0.1)


def test_describe_counts_and_standard_errors(tiny):
  report = vb.describe(tiny)
  assert report['counts']['unlabelled']['annotated'] == 0
  for split in vb.SPLITS:
    assert report['counts'][split]['segments'] == len(tiny[split]['track_id'])
  for split in vb.TEST_SPLITS:
    se = report['se_at_accuracy'][split]
    assert 0 < se['independent'] <= se['sections'] <= se['tracks']


def test_cache_round_trip(tmp_path):
  spec = dataclasses.replace(vb.BenchmarkSpec.tiny(), num_train_tracks=2)
  first = vb.generate(spec, FEATURES, num_workers=1, cache_dir=str(tmp_path))
  files = os.listdir(tmp_path)
  assert len(files) == 1 and files[0].endswith('.npz')
  second = vb.generate(spec, FEATURES, num_workers=1, cache_dir=str(tmp_path))
  for split in vb.SPLITS:
    assert set(first[split]) == set(second[split])
    for key, value in first[split].items():
      np.testing.assert_array_equal(value, second[split][key])
  vb.generate(dataclasses.replace(spec, generator_seed=4), FEATURES, num_workers=1,
              cache_dir=str(tmp_path), with_views=False)
  assert len(os.listdir(tmp_path)) == 2


def test_spec_from_config_matches_the_defaults():
  from configs import benchmark  # pylint: disable=g-import-not-at-top
  config = benchmark.get_config()
  assert config.dataset.name == 'va_benchmark'
  assert vb.BenchmarkSpec.from_config(config.dataset) == vb.BenchmarkSpec()
  config.dataset.heldout_chains = 'tape, room'
  config.dataset.num_test_tracks = 7
  spec = vb.BenchmarkSpec.from_config(config.dataset)
  assert spec.heldout_chains == ('tape', 'room') and spec.num_test_tracks == 7


def test_bad_spec_fails_with_a_message():
  with pytest.raises(ValueError, match='heldout_chains'):
    vb.track_plan(vb.BenchmarkSpec.tiny(heldout_chains=('garage',)))
  with pytest.raises(ValueError, match='heldout_style'):
    vb.track_plan(vb.BenchmarkSpec.tiny(heldout_style='banjo'))
