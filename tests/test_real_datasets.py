"""Memo2496, PMEmo and emoMusic builders on tiny generated downloads (with faults)."""

import collections
import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

from damer_audio import features as F
from damer_audio.audio import load_audio
from input_pipeline import build_report
from input_pipeline import download
from input_pipeline import tracks as tracks_lib
from tests import real_dataset_fixtures as fx
from tests.conftest import ROOT, tiny_config, tiny_flags

tfds = pytest.importorskip('tensorflow_datasets')


def _config(name, manual_dir, data_dir, **overrides):
  config = tiny_config(dataset__data_dir=str(data_dir), **overrides)
  config.dataset.name = name
  config.dataset.manual_dir = str(manual_dir)
  return config


def _build(name, manual_dir, data_dir, **overrides):
  from input_pipeline import manual_builder, pipeline  # pylint: disable=g-import-not-at-top
  builder = pipeline.prepare(_config(name, manual_dir, data_dir, **overrides))
  examples = {s: list(tfds.as_numpy(builder.as_dataset(split=s, shuffle_files=False)))
              for s in builder.info.splits}
  return builder, examples, manual_builder.read_report(builder)


def _by_segment(examples):
  return {(e['track_name'].decode(), float(e['start_s'])): e
          for split in examples.values() for e in split}


def _check_splits(examples):
  tracks = {s: {e['track_name'] for e in ex} for s, ex in examples.items()}
  assert tracks['train'] and tracks['test']
  assert not tracks['train'] & tracks['test']
  for split, ex in examples.items():
    assert sorted(int(e['index']) for e in ex) == list(range(len(ex))), split


def _train(config_file, manual_dir, tmp_path, num_train_steps=2):
  """One short main.py run; returns the rows of eval_metrics.jsonl."""
  workdir, data_dir = tmp_path / 'run', tmp_path / 'records'
  args = tiny_flags(workdir, data_dir, num_train_steps=num_train_steps,
                    eval_every_steps=num_train_steps,
                    checkpoint_every_steps=num_train_steps, dataset__num_workers=1,
                    pcl__enabled=False)  # No PCL table: the three runs share one compile.
  args[0] = f'--config={config_file}'
  args.append(f'--config.dataset.manual_dir={manual_dir}')
  result = subprocess.run([sys.executable, 'main.py', *args], cwd=ROOT,
                          capture_output=True, text=True, env=dict(os.environ),
                          timeout=600, check=False)
  assert result.returncode == 0, result.stderr[-4000:]
  reports = list(data_dir.glob('*/*/*/build_report.json'))
  assert len(reports) == 1, 'the first training run builds the records and a report'
  path = workdir / 'eval_metrics.jsonl'
  return [json.loads(line) for line in path.read_text().splitlines()]


# ---------------------------------------------------------------------------------------
# Memo2496.


@pytest.fixture(scope='module')
def memo_dir(tmp_path_factory):
  root = tmp_path_factory.mktemp('memo_download')
  fx.write_memo2496(str(root))
  return root


@pytest.fixture(scope='module')
def memo(memo_dir, tmp_path_factory):
  return _build('memo2496', memo_dir, tmp_path_factory.mktemp('memo_records'),
                dataset__num_workers=2)


def test_memo2496_segments_and_labels_follow_the_1hz_clock(memo):
  _, examples, _ = memo
  _check_splits(examples)
  segments = _by_segment(examples)
  per_track = collections.Counter(name for name, _ in segments)
  assert per_track == {'1': 5, '2': 3, '3': 5, '4': 3, '5': 4, '9': 5}
  for name, second in [('1', 0), ('1', 4), ('2', 2), ('9', 3), ('5', 2)]:
    e = segments[(name, float(second))]
    assert e['valence'] == pytest.approx(fx.value(int(name), second, 'valence'))
    assert e['arousal'] == pytest.approx(fx.value(int(name), second, 'arousal'))
  assert ('5', 1.0) not in segments  # Its valence (1.7) was out of range.
  assert ('2', 3.0) not in segments  # NaN tail: no guessing.
  styles = {name: int(e['style_id']) for (name, _), e in segments.items()}
  assert styles['1'] == styles['3'] != styles['2']  # 'piano' vs 'strings'


def test_memo2496_views_come_from_one_decode_of_the_file(memo, memo_dir):
  _, examples, _ = memo
  spec = F.FeatureSpec.from_config(tiny_config().features)
  for name, path in [('4', 'song_4.wav'), ('5', 'song_5.wav')]:  # 5: 16 kHz stereo.
    audio = load_audio(os.path.join(memo_dir, 'MusicRawData', path), spec.sample_rate)
    mel, coch = F.compute_views(F.segment_audio(audio, spec)[2:3], spec)
    e = _by_segment(examples)[(name, 2.0)]
    np.testing.assert_allclose(e['mel'], mel[0], atol=1e-5)
    np.testing.assert_allclose(e['coch'], coch[0], atol=1e-5)


def test_memo2496_report_counts_every_problem(memo):
  builder, examples, report = memo
  assert report['tracks'] == {s: len({e['track_name'] for e in ex})
                              for s, ex in examples.items()}
  assert report['segments'] == {s: len(ex) for s, ex in examples.items()}
  assert report['total_segments'] == 25
  assert report['dropped'] == {
      'annotated segments beyond the end of the audio': 2,  # song 4, truncated
      'annotations outside [-1, 1]': 1,  # song 5
      'segments without annotations': 3}  # song 2: 2, song 5: 1
  skipped = {(s['kind'], s['item']): s['reason'] for s in report['skipped']}
  assert 'cannot decode' in skipped[('audio', '6')] and 'song_6.mp3' in skipped[('audio', '6')]
  assert 'silent' in skipped[('audio', '8')]
  assert 'no audio file' in skipped[('annotations', '7')]
  assert 'no annotations' in skipped[('audio', os.path.join('MusicRawData', 'extra.wav'))]
  assert 'no annotations' in skipped[('songs_info row', '10')]
  notes = ' '.join(report['notes'])
  assert 'song_5.wav: 16000 Hz' in notes and "ignored column(s) ['comment']" in notes
  assert 'song_4.wav: the audio ends at 3.4 s' in notes
  assert builder.info.metadata['build_report']['total_tracks'] == 6


def test_memo2496_trains_through_main(memo_dir, tmp_path):
  rows = _train('configs/memo2496.py', memo_dir, tmp_path)
  assert rows[-1]['split'] == 'test' and 'valence/accuracy' in rows[-1]


def test_tolerant_csv_reading(tmp_path):
  path = tmp_path / 'a.csv'
  path.write_text('\ufeff Song_ID ;sample_1000ms;sample_0ms;note\n3;0.5;NaN;x\n\n',
                  encoding='utf-8')
  report = build_report.BuildReport('t')
  table = download.read_csv(str(path))
  assert table.columns[0] == 'Song_ID'
  times, values = download.wide_annotations(table, ('song_id',), report)['3']
  np.testing.assert_allclose(times, [0.0, 1.0])
  assert np.isnan(values[0]) and values[1] == 0.5
  with pytest.raises(build_report.ManualDataError, match="no column musicId.*'Song_ID'"):
    table.column('musicId')


# ---------------------------------------------------------------------------------------
# PMEmo2019.


@pytest.fixture(scope='module')
def pmemo_dir(tmp_path_factory):
  root = tmp_path_factory.mktemp('pmemo_download')
  fx.write_pmemo(str(root))
  return root


def _mean(track, times, dim):
  return np.mean([fx.value(track, t, dim) for t in times])


def test_config_names_hash_all_the_code_a_manual_builder_reaches(monkeypatch):
  from input_pipeline import digest, manual_builder  # pylint: disable=g-import-not-at-top
  from input_pipeline.datasets.memo2496 import memo2496_dataset_builder as memo  # pylint: disable=g-import-not-at-top
  from input_pipeline.datasets.pmemo import pmemo_dataset_builder as pmemo  # pylint: disable=g-import-not-at-top
  hashed = digest.module_closure(pmemo)
  assert {pmemo.__name__, 'input_pipeline.manual_builder', 'input_pipeline.download',
          'input_pipeline.tracks', 'input_pipeline.build_report', 'input_pipeline.records',
          'input_pipeline.splits', 'damer_audio.audio', 'damer_audio.features',
          'damer_data.workers'} <= set(hashed)
  assert 'input_pipeline.datasets.memo2496.processed' in digest.module_closure(memo)
  before = manual_builder.make_config(pmemo).name
  assert before == pmemo.Builder.BUILDER_CONFIGS[0].name
  assert before.startswith('dynamic_track_')
  real = digest.read_source
  # Modules pmemo's builder reaches only through others: decoding, segment labelling.
  for changed in (os.path.join('damer_audio', 'audio.py'),
                  os.path.join('input_pipeline', 'records.py')):
    monkeypatch.setattr(digest, 'read_source', lambda path, changed=changed: real(path) + (
        '\n# edit' if path.endswith(changed) else ''))
    assert manual_builder.make_config(pmemo).name != before, changed
  monkeypatch.setattr(digest, 'read_source', real)
  assert manual_builder.make_config(pmemo, split_seed=1).name != before


def test_pmemo_2hz_ratings_rescaled_and_averaged_per_second(pmemo_dir, tmp_path):
  builder, examples, report = _build('pmemo', pmemo_dir, tmp_path,
                                     dataset__unlabelled='split', dataset__num_workers=1)
  labelled = {s: examples[s] for s in ('train', 'test')}
  _check_splits(labelled)
  segments = _by_segment(labelled)
  assert collections.Counter(n for n, _ in segments) == {str(m): 4 for m in range(1, 6)}
  for music, second in [(1, 1), (3, 2), (5, 4)]:
    e = segments[(str(music), float(second))]
    assert e['valence'] == pytest.approx(_mean(music, [second, second + .5], 'valence'),
                                         abs=1e-5)
    assert e['arousal'] == pytest.approx(_mean(music, [second, second + .5], 'arousal'),
                                         abs=1e-5)
  # Segment 0 has no rating: kept apart, unlabelled, for the training tracks only.
  unlabelled = examples['unlabelled']
  train_tracks = {e['track_name'] for e in labelled['train']}
  assert {e['track_name'] for e in unlabelled} == train_tracks
  assert {float(e['start_s']) for e in unlabelled} == {0.0}
  assert all(np.isnan(e['valence']) for e in unlabelled)
  assert report['segments']['unlabelled'] == len(train_tracks)
  assert 'segments without annotations' not in report['dropped']
  # Training reads them as a second stream: rows after the labelled ones, on every
  # device, labels zeroed, PCL rows after the training split's.
  from input_pipeline import pipeline  # pylint: disable=g-import-not-at-top
  config = _config('pmemo', pmemo_dir, tmp_path, dataset__unlabelled='split',
                   batch_size=4, pcl__unlabelled_batch_size=2)
  data = pipeline.TfdsDataset(builder, config)
  assert (data.num_train, data.num_unlabelled) == (len(labelled['train']), len(unlabelled))
  batch = next(data.train_batches(config, seed=0))
  np.testing.assert_array_equal(batch['labelled'], [[1, 1, 0]] * 2)
  assert (batch['index'][:, 2] >= data.num_train).all()
  assert (batch['valence'][:, 2] == 0).all() and np.isfinite(batch['valence']).all()
  skipped = {(s['kind'], s['item']): s['reason'] for s in report['skipped']}
  assert 'zero-length' in skipped[('audio', '6')]
  assert 'no audio file' in skipped[('annotations', '7')]
  assert ('audio', os.path.join('PMEmo2019', 'chorus', '8.mp3')) in skipped


def test_pmemo_trains_through_main(pmemo_dir, tmp_path):
  rows = _train('configs/pmemo.py', pmemo_dir, tmp_path)
  assert rows[-1]['split'] == 'test' and 'arousal/accuracy' in rows[-1]


# ---------------------------------------------------------------------------------------
# emoMusic / 1000songs.


@pytest.fixture(scope='module')
def emomusic_dir(tmp_path_factory):
  root = tmp_path_factory.mktemp('emomusic_download')
  fx.write_emomusic(str(root))
  return root


def test_emomusic_annotation_clock_starts_at_15s(emomusic_dir, tmp_path):
  _, examples, report = _build('emomusic', emomusic_dir, tmp_path, dataset__num_workers=1)
  _check_splits(examples)
  segments = _by_segment(examples)
  assert collections.Counter(n for n, _ in segments) == {
      str(s): 2 for s in (2, 3, 5, 7, 11)}
  assert {second for _, second in segments} == {15.0, 16.0}
  e = segments[('11', 16.0)]  # The FLAC clip.
  assert e['valence'] == pytest.approx(_mean(11, [16.0, 16.5], 'valence'), abs=1e-6)
  assert e['arousal'] == pytest.approx(_mean(11, [16.0, 16.5], 'arousal'), abs=1e-6)
  assert report['dropped'] == {'segments without annotations': 5 * 15}
  skipped = {(s['kind'], s['item']) for s in report['skipped']}
  assert {('audio', '13'), ('annotations', '17'),
          ('audio', os.path.join('clips_45seconds', '19.mp3'))} <= skipped


def test_emomusic_static_labels_cover_every_segment(emomusic_dir, tmp_path):
  _, examples, _ = _build('emomusic', emomusic_dir, tmp_path, dataset__labels='static',
                          dataset__num_workers=1)
  segments = _by_segment(examples)
  assert len(segments) == 5 * 17
  e = segments[('7', 3.0)]
  assert e['valence'] == pytest.approx((7 - 7 % 5 - 5) / 4)
  assert e['arousal'] == pytest.approx((3 + 7 % 5 - 5) / 4)


def test_emomusic_trains_through_main(emomusic_dir, tmp_path):
  rows = _train('configs/emomusic.py', emomusic_dir, tmp_path)
  assert rows[-1]['split'] == 'test' and 'valence/accuracy' in rows[-1]


# ---------------------------------------------------------------------------------------
# Memo2496, processed arrays; the leaky segment split.


def test_memo2496_processed_arrays_split_by_track(tmp_path):
  fx.write_memo2496_processed(str(tmp_path / 'download'))
  _, examples, report = _build('memo2496', tmp_path / 'download', tmp_path / 'records')
  _check_splits(examples)
  segments = _by_segment(examples)
  assert len(segments) == 23 and ('101', 1.0) not in segments  # Row 5: arousal 3.0.
  e = segments[('102', 3.0)]  # Row 11.
  assert e['mel'].shape == (128, 87) and np.all(e['mel'] == 11) and np.all(e['coch'] == -11)
  assert e['valence'] == pytest.approx(fx.value(102, 3, 'valence'))
  assert report['dropped']['annotations outside [-1, 1]'] == 1


def test_processed_arrays_without_track_ids_need_the_leaky_segment_split(tmp_path):
  fx.write_memo2496_processed(str(tmp_path / 'download'), with_ids=False)
  with pytest.raises(build_report.ManualDataError, match='split_by=segment'):
    _build('memo2496', tmp_path / 'download', tmp_path / 'records')
  _, examples, report = _build('memo2496', tmp_path / 'download', tmp_path / 'records',
                               dataset__split_by='segment')
  assert len(examples['train']) + len(examples['test']) == 23
  assert len(examples['test']) == 6  # 0.25 of each quadrant, rounded.
  assert any('leaky' in n for n in report['notes'])


def test_raw_segment_split_is_stratified_and_marked_leaky(memo_dir, tmp_path):
  _, examples, report = _build('memo2496', memo_dir, tmp_path, dataset__split_by='segment',
                               dataset__num_workers=1)
  keys = {s: {(e['track_name'], float(e['start_s'])) for e in ex}
          for s, ex in examples.items()}
  assert not keys['train'] & keys['test']
  assert len(keys['train'] | keys['test']) == 25  # Same segments as the track split.
  tracks = {s: {k[0] for k in v} for s, v in keys.items()}
  assert tracks['train'] & tracks['test']  # Leaky by design.
  assert any('leaky' in n for n in report['notes'])


def test_tfds_build_command_builds_what_training_reads(emomusic_dir, tmp_path):
  from configs import emomusic  # pylint: disable=g-import-not-at-top
  from input_pipeline import pipeline  # pylint: disable=g-import-not-at-top
  data_dir = tmp_path / 'records'
  result = subprocess.run(
      [sys.executable, '-m', 'input_pipeline.tfds_cli', 'build',
       'input_pipeline/datasets/emomusic', f'--manual_dir={emomusic_dir}',
       f'--data_dir={data_dir}'],
      cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)
  assert result.returncode == 0, result.stderr[-4000:]
  config = emomusic.get_config()
  config.dataset.data_dir = str(data_dir)
  builder = pipeline.get_builder(config)
  assert builder.is_prepared()  # configs/emomusic.py reuses the CLI's records.
  assert pathlib.Path(builder.data_dir, 'build_report.json').exists()
  assert builder.info.splits['train'].num_examples + builder.info.splits[
      'test'].num_examples == 10


@pytest.mark.parametrize('beyond, noted', [(1, False), (2, True)])
def test_annotations_one_segment_past_the_audio_are_dropped_without_a_note(
    tmp_path, beyond, noted):
  # PMEmo's last rating falls inside the audio's final partial second: its segment is
  # one past the last whole one. Only more than that says the file is not the annotated one.
  import soundfile  # pylint: disable=g-import-not-at-top
  spec = F.FeatureSpec.from_config(tiny_config().features)
  seconds = 3.5 * spec.segment_seconds  # 3 whole segments and half of a fourth.
  rng = np.random.default_rng(0)
  path = str(tmp_path / 'clip.wav')
  soundfile.write(path, 0.1 * rng.standard_normal(int(seconds * spec.sample_rate)),
                  spec.sample_rate)
  last = 3 + beyond - 1  # Segment index of the last annotation.
  times = np.arange(0.5, last + 1, 0.5) * spec.segment_seconds
  job = tracks_lib.TrackJob(track_id=0, name='clip', audio_path=path, times_s=times,
                            valence=np.full(len(times), 0.5),
                            arousal=np.full(len(times), -0.5))
  result = tracks_lib.process_track(job, spec)
  assert result.error is None
  assert result.dropped['annotated segments beyond the end of the audio'] == beyond
  assert len(result.labelled) == 3
  assert any('annotations run to segment' in n for n in result.notes) == noted
