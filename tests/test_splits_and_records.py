"""Track-level splits and segment labelling (no TensorFlow needed)."""

import numpy as np
import pytest

from damer_audio import features as F
from input_pipeline import records
from input_pipeline import splits


def test_split_is_disjoint_complete_and_reproducible():
  ids = [f'track{i}' for i in range(50)]
  a = splits.split_tracks(ids, 0.2, seed=3)
  b = splits.split_tracks(list(reversed(ids)), 0.2, seed=3)
  assert a == b
  assert not set(a['train']) & set(a['test'])
  assert sorted(a['train'] + a['test']) == sorted(ids)
  assert len(a['test']) == 10
  assert splits.split_tracks(ids, 0.2, seed=4) != a


def test_split_keeps_one_track_each_side_and_rejects_bad_fraction():
  assert [len(v) for v in splits.split_tracks([1, 2], 0.1, 0).values()] == [1, 1]
  with pytest.raises(ValueError, match='test_fraction'):
    splits.split_tracks([1, 2, 3], 1.0, 0)


def test_group_split_holds_out_whole_groups():
  tracks = list(range(20))
  styles = [t % 5 for t in tracks]
  by_hand = splits.split_by_group(tracks, styles, 0.2, seed=0, test_groups=[3])
  assert by_hand['test'] == [3, 8, 13, 18]
  seeded = splits.split_by_group(tracks, styles, 0.2, seed=1)
  held = {t % 5 for t in seeded['test']}
  assert len(held) == 1 and not held & {t % 5 for t in seeded['train']}
  with pytest.raises(ValueError, match='leave at least one'):
    splits.split_by_group(tracks, styles, 0.2, 0, test_groups=[0, 1, 2, 3, 4])


def test_segment_labels_average_annotations_inside_each_segment():
  times = np.array([0.0, 0.5, 1.0, 1.5, 3.0, 3.5])  # 2 Hz, nothing in [2, 3).
  values = np.array([0.1, 0.3, -0.2, np.nan, 0.8, 0.6])
  labels = records.segment_labels(times, values, 1.0, num_segments=5)
  np.testing.assert_allclose(labels[:2], [0.2, -0.2], rtol=1e-6)
  assert np.isnan(labels[2])
  assert labels[3] == pytest.approx(0.7)
  assert np.isnan(labels[4])


def test_track_examples_skip_unlabelled_segments_and_count_indices():
  spec = F.FeatureSpec()
  audio = np.zeros(4 * spec.segment_samples + 100, np.float32)
  valence = np.array([0.5, np.nan, -0.5, 0.1, 0.9])  # 5 labels, only 4 segments.
  arousal = np.array([0.1, 0.2, 0.3, 0.4, 0.5])
  out = list(records.track_examples(audio, valence, arousal, spec=spec, track_id=7,
                                    track_name='t7', style_id=2, first_index=10))
  assert [k for k, _ in out] == ['t7_00000', 't7_00002', 't7_00003']
  assert [e['index'] for _, e in out] == [10, 11, 12]
  assert [e['start_s'] for _, e in out] == [0.0, 2.0, 3.0]
  assert out[1][1]['valence'] == pytest.approx(-0.5)
  assert out[0][1]['mel'].shape == (128, 87) and out[0][1]['coch'].shape == (84, 87)


def _record_values(spec, **changes):
  values = dict(mel=np.zeros((spec.n_mels, spec.num_frames), np.float32),
                coch=np.zeros((spec.n_coch, spec.num_frames), np.float32),
                valence=0.25, arousal=np.nan, track_id=3, track_name='song_3',
                style_id=-1, index=np.int64(7), start_s=2.0)
  values.update(changes)
  return values


def test_the_schema_holds_every_key_a_batch_carries():
  from damer_data import dataset  # pylint: disable=g-import-not-at-top
  assert set(dataset.MODEL_KEYS) <= set(records.SCHEMA)
  spec = F.FeatureSpec(n_mels=16, n_coch=8, hop_length=512)
  assert records.SCHEMA['mel'].shape(spec) == (16, spec.num_frames)
  assert records.SCHEMA['coch'].shape(spec) == (8, spec.num_frames)
  assert records.SCHEMA['valence'].shape(spec) == ()


def test_the_docstring_table_lists_the_schema():
  rows = [line.split('|')[1:4] for line in records.__doc__.splitlines()
          if line.startswith('| ') and not line.startswith('| key')]
  table = {key.strip(): dtype.strip() for key, dtype, _ in rows}
  assert table == {k: 'string' if f.dtype is str else np.dtype(f.dtype).name
                   for k, f in records.SCHEMA.items()}


def test_example_casts_to_the_schema_and_matches_the_tfds_features():
  spec = F.FeatureSpec()
  mel = np.ones((spec.n_mels, spec.num_frames), np.float32)
  example = records.example(spec=spec, **_record_values(spec, mel=mel))
  assert list(example) == list(records.SCHEMA)
  assert example['mel'] is mel  # No copy of a view that already has the dtype.
  assert example['valence'].dtype == np.float32 and example['valence'] == 0.25
  assert np.isnan(example['arousal'])
  assert example['track_id'].dtype == np.int64 and example['index'] == 7
  assert example['start_s'].dtype == np.float32 and example['track_name'] == 'song_3'
  tfds = pytest.importorskip('tensorflow_datasets')
  del tfds
  features = records.features_dict(spec)
  assert set(features.keys()) == set(example)
  features.encode_example(example)  # TFDS accepts every value as it is.


@pytest.mark.parametrize('changes, key', [
    (dict(mel=np.zeros((128, 86), np.float32)), 'mel'),
    (dict(coch=np.zeros((128, 87), np.float32)), 'coch'),
    (dict(valence=np.zeros(2)), 'valence'),
    (dict(track_id=1.5), 'track_id'),
    (dict(start_s='2 s'), 'start_s'),
    (dict(track_name=3), 'track_name'),
])
def test_example_names_the_key_of_a_wrong_value(changes, key):
  spec = F.FeatureSpec()
  with pytest.raises(ValueError, match=f'Record key {key!r}'):
    records.example(spec=spec, **_record_values(spec, **changes))


def test_example_names_an_unknown_key():
  spec = F.FeatureSpec()
  with pytest.raises(ValueError, match=r"got unknown key\(s\) \['segment'\]\.$"):
    records.example(spec=spec, **_record_values(spec, segment=4))


def test_example_names_a_missing_key():
  spec = F.FeatureSpec()
  values = _record_values(spec)
  del values['style_id']
  with pytest.raises(ValueError, match=r"missing key\(s\) \['style_id'\]"):
    records.example(spec=spec, **values)
