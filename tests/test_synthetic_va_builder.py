"""The synthetic_va TFDS builder: track-level split, labels, indices, shapes."""

import collections

import numpy as np
import pytest

from damer_audio import features as F
from input_pipeline import synthetic_music
from tests.conftest import tiny_config

tfds = pytest.importorskip('tensorflow_datasets')


@pytest.fixture(scope='module')
def built(data_dir):
  from input_pipeline import pipeline
  config = tiny_config(dataset__data_dir=data_dir)
  return config, pipeline.prepare(config)


def _examples(builder, split):
  return list(tfds.as_numpy(builder.as_dataset(split=split, shuffle_files=False)))


def test_no_track_is_in_two_splits(built):
  config, builder = built
  tracks = {s: {int(e['track_id']) for e in _examples(builder, s)} for s in ('train', 'test')}
  assert not tracks['train'] & tracks['test']
  assert tracks['train'] | tracks['test'] == set(range(config.dataset.num_tracks))
  assert len(tracks['test']) == 2  # 0.25 of 8 tracks.


def test_every_whole_second_is_one_example_with_the_generator_labels(built):
  config, builder = built
  spec = F.FeatureSpec.from_config(config.features)
  examples = _examples(builder, 'train') + _examples(builder, 'test')
  per_track = collections.Counter(int(e['track_id']) for e in examples)
  assert set(per_track.values()) == {3}
  example = next(e for e in examples if e['track_id'] == 5 and e['start_s'] == 2.0)
  track = synthetic_music.generate_track(5, seed=config.dataset.generator_seed,
                                         duration_s=config.dataset.track_seconds)
  assert example['valence'] == pytest.approx(track.valence[2])
  assert example['arousal'] == pytest.approx(track.arousal[2])
  assert example['style_id'] == track.style_id
  assert example['track_name'] == b'synth00005'
  mel, coch = F.compute_views(F.segment_audio(track.audio, spec)[2:3], spec)
  np.testing.assert_allclose(example['mel'], mel[0], atol=1e-5)
  np.testing.assert_allclose(example['coch'], coch[0], atol=1e-5)


def test_train_indices_are_a_dense_range(built):
  _, builder = built
  indices = sorted(int(e['index']) for e in _examples(builder, 'train'))
  assert indices == list(range(len(indices)))
  assert builder.info.splits['train'].num_examples == len(indices)


def test_style_ids_are_stored(built):
  _, builder = built
  styles = {int(e['style_id']) for e in _examples(builder, 'train')}
  assert styles <= set(range(len(synthetic_music.STYLE_NAMES)))
  assert len(styles) > 1


def test_style_split_holds_out_whole_instrumentation_families(data_dir):
  from input_pipeline import pipeline
  config = tiny_config(dataset__data_dir=data_dir, dataset__num_tracks=10,
                       dataset__track_seconds=1.0, dataset__split_by='style',
                       dataset__test_styles='fm_bell')
  builder = pipeline.prepare(config)
  test_styles = {int(e['style_id']) for e in _examples(builder, 'test')}
  train_styles = {int(e['style_id']) for e in _examples(builder, 'train')}
  assert test_styles == {synthetic_music.STYLE_NAMES.index('fm_bell')}
  assert test_styles.isdisjoint(train_styles) and len(train_styles) == 4


@pytest.mark.parametrize('start_step', [1, 2, 5])
def test_train_stream_resumes_exactly_where_it_was(built, start_step):
  # 18 train examples, batches of 8: epochs end mid-batch, so resuming crosses them.
  from input_pipeline import pipeline
  config, builder = built
  config = tiny_config(dataset__data_dir=config.dataset.data_dir, dataset__shuffle_buffer=7)
  whole = pipeline.train_iterator(builder, config, seed=3)
  batches = [next(whole) for _ in range(start_step + 4)]
  resumed = pipeline.train_iterator(builder, config, seed=3, start_step=start_step)
  for expected in batches[start_step:]:
    got = next(resumed)
    for key in ('index', 'track_id', 'start_s', 'mel'):
      np.testing.assert_array_equal(got[key], expected[key])
  indices = np.concatenate([b['index'].ravel() for b in batches])[:18]
  assert sorted(indices) == list(range(18))  # The first epoch holds every example once.
  other = next(pipeline.train_iterator(builder, config, seed=4))
  assert not np.array_equal(other['index'], batches[0]['index'])  # The seed matters.


def test_config_name_hashes_every_module_that_shapes_the_records(monkeypatch):
  """A change to any code the builder runs (segment labelling in records.py, splitting,
  the views, the worker pool, the generator) must not reuse records built by the old
  code; the modules are found through the imports, with no list to keep up."""
  import os  # pylint: disable=g-import-not-at-top
  from input_pipeline import digest  # pylint: disable=g-import-not-at-top
  from input_pipeline.datasets.synthetic_va import synthetic_va_dataset_builder as sv  # pylint: disable=g-import-not-at-top
  hashed = digest.module_closure(sv)
  assert {sv.__name__, 'input_pipeline.synthetic_music', 'input_pipeline.records',
          'input_pipeline.splits', 'damer_audio.features',
          'damer_data.workers'} <= set(hashed)
  assert {n.split('.')[0] for n in hashed} <= set(digest.PACKAGES)
  before = sv.make_config().name
  assert before.startswith('n240_s6_seed0_')
  real = digest.read_source
  for changed in ('input_pipeline/records.py', 'input_pipeline/splits.py',
                  'input_pipeline/synthetic_music.py', 'damer_audio/features.py',
                  'damer_data/workers.py', 'damer_data/__init__.py'):
    suffix = os.path.join(*changed.split('/'))
    monkeypatch.setattr(digest, 'read_source', lambda path, suffix=suffix: real(path) + (
        '\n# edit' if path.endswith(suffix) else ''))
    name = sv.make_config().name
    assert name != before and name.startswith('n240_s6_seed0_'), changed
  monkeypatch.setattr(digest, 'read_source', real)
  assert sv.make_config().name == before
  assert sv.make_config(generator_seed=1).name != before
