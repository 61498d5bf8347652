"""Prediction on music files: the CLI (--mode=predict), the Python API and the figures."""

import json
import math
import re

from matplotlib.collections import PathCollection, PolyCollection
from matplotlib.text import Annotation
import numpy as np
import pytest
import soundfile as sf

from damer_audio import audio as audio_lib
from damer_jax import predict
from damer_jax import quadrants
from damer_jax import predict_plots
from input_pipeline import synthetic_music
from tests.conftest import run_main, tiny_config, tiny_flags

SR = 22050
DURATIONS = {'calm.wav': 4.5, 'nested/bright.flac': 3.2, 'nested/deeper/dark.ogg': 2.0}


@pytest.fixture(scope='module')
def music_folder(tmp_path_factory):
  """Three readable files (WAV, FLAC, OGG) in nested folders, a corrupt WAV, a text file."""
  folder = tmp_path_factory.mktemp('music')
  for number, (name, seconds) in enumerate(DURATIONS.items()):
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    track = synthetic_music.generate_track(50 + number, duration_s=seconds)
    sf.write(path, track.audio, SR, subtype='FLOAT' if name.endswith('.wav') else None)
  (folder / 'nested' / 'broken.wav').write_bytes(b'RIFF\x10\x00\x00\x00WAVEfmt garbage')
  (folder / 'notes.txt').write_text('not audio')
  return folder


@pytest.fixture(scope='module')
def cli_out(tmp_path_factory):
  """The folder that the CLI run writes its JSON lines and figures to."""
  return tmp_path_factory.mktemp('out')


@pytest.fixture(scope='module')
def cli_lines(trained_workdir, data_dir, music_folder, cli_out):
  """main.py --mode=predict --figures over the folder: (lines by file name, process)."""
  output = cli_out / 'predictions.jsonl'
  result = run_main(tiny_flags(trained_workdir, data_dir) +
                    ['--mode=predict', f'--audio={music_folder}', f'--output={output}',
                     f'--figures={cli_out}'])
  lines = [json.loads(line) for line in output.read_text().splitlines()]
  return {line['path'][len(str(music_folder)) + 1:]: line for line in lines}, result


def _check_result(line, seconds):
  assert set(line) == set(predict.RESULT_KEYS)
  assert line['duration_s'] == pytest.approx(seconds, abs=1e-3)
  assert line['task'] == 'classification' and line['step'] == 6
  segments = line['segments']
  assert len(segments) == max(1, math.floor(seconds))  # Whole 1 s segments, as in training.
  assert [s['start_s'] for s in segments] == [float(i) for i in range(len(segments))]
  for target in ('valence', 'arousal'):
    values = [s[target] for s in segments]
    assert all(0.0 <= v <= 1.0 for v in values)  # P(high) for a classification model.
    assert line[target] == pytest.approx(np.mean(values), abs=1e-4)
  assert line['quadrant'] == quadrants.quadrant(line['valence'] > 0.5, line['arousal'] > 0.5)


def test_cli_predicts_every_readable_file_and_flags_the_corrupt_one(cli_lines):
  lines, result = cli_lines
  assert result.returncode == 1, result.stderr[-3000:]  # One file failed.
  assert 'could not be predicted' in result.stderr
  assert sorted(lines) == sorted([*DURATIONS, 'nested/broken.wav'])  # No .txt line.
  assert 'notes.txt' in result.stderr  # The skipped non-audio file is reported.
  broken = lines['nested/broken.wav']
  assert set(broken) == {'path', 'error'} and 'broken.wav' in broken['error']
  for name, seconds in DURATIONS.items():
    _check_result(lines[name], seconds)


def test_python_api_gives_the_cli_results(cli_lines, trained_workdir, music_folder):
  lines, _ = cli_lines
  predictor = predict.Predictor.from_workdir(trained_workdir)  # Config from config.json.
  assert predictor.step == 6
  for name in DURATIONS:
    api = predictor.predict(music_folder / name)
    cli = lines[name]
    assert api['quadrant'] == cli['quadrant']
    for target in ('valence', 'arousal'):
      assert api[target] == pytest.approx(cli[target], abs=2e-4)
      np.testing.assert_allclose([s[target] for s in api['segments']],
                                 [s[target] for s in cli['segments']], atol=2e-4)
  # An array at the model's rate gives the file's result (the WAV holds float samples).
  samples, rate = sf.read(music_folder / 'calm.wav', dtype='float32')
  from_array = predictor.predict(np.stack([samples, samples], axis=1), sample_rate=rate)
  assert from_array['path'] == '<array>'
  assert from_array['valence'] == pytest.approx(lines['calm.wav']['valence'], abs=2e-4)


def test_short_and_resampled_arrays(trained_workdir):
  predictor = predict.Predictor.from_workdir(trained_workdir)
  short = predictor.predict(np.full(int(0.3 * 44100), 0.1, np.float32), sample_rate=44100)
  assert short['duration_s'] == pytest.approx(0.3, abs=1e-3)
  assert len(short['segments']) == 1  # Zero-padded to one segment.
  longer = predictor.predict(np.zeros((int(2.5 * 16000), 2), np.float32), sample_rate=16000)
  assert len(longer['segments']) == 2
  with pytest.raises(ValueError, match='sample_rate'):
    predictor.predict(np.zeros(100, np.float32))
  with pytest.raises(audio_lib.AudioError, match='NaN'):
    predictor.predict(np.full(SR, np.nan, np.float32), sample_rate=SR)
  with pytest.raises(audio_lib.AudioError, match='no such file'):
    predictor.predict('/nonexistent/song.mp3')


def test_clear_errors_for_missing_or_mismatched_checkpoints(tmp_path, trained_workdir):
  with pytest.raises(FileNotFoundError, match='Train first'):
    predict.Predictor.from_workdir(tmp_path, config=tiny_config())
  with pytest.raises(FileNotFoundError, match='config.json'):
    predict.Predictor.from_workdir(tmp_path)
  with pytest.raises(FileNotFoundError, match=r'step 5 .*\[3, 6\]'):
    predict.Predictor.from_workdir(trained_workdir, step=5)
  assert predict.Predictor.from_workdir(trained_workdir, step=3).step == 3
  with pytest.raises(ValueError, match='does not match the model'):
    predict.Predictor.from_workdir(trained_workdir, config=tiny_config(model__width=32))


def test_cli_names_a_missing_checkpoint_without_a_traceback(tmp_path, data_dir,
                                                            music_folder):
  result = run_main(tiny_flags(tmp_path / 'empty', data_dir) +
                    ['--mode=predict', f'--audio={music_folder / "calm.wav"}'])
  assert result.returncode == 1
  assert 'error: No checkpoint' in result.stderr and 'Traceback' not in result.stderr


def test_cli_figures_show_every_readable_file_and_list_the_corrupt_one(cli_lines, cli_out):
  lines, result = cli_lines
  assert result.returncode == 1  # The corrupt file still fails the command.
  assert (cli_out / 'overview.png').stat().st_size > 10_000
  figures = sorted(p.name for p in (cli_out / 'files').iterdir())
  assert figures == ['calm.wav.png', 'nested__bright.flac.png',
                     'nested__deeper__dark.ogg.png']
  page = (cli_out / predict_plots.PAGE).read_text()
  assert '![every file in the valence-arousal plane](overview.png)' in page
  assert '4 file(s): 3 predicted, 1 could not be read' in page
  assert '[predictions.jsonl](predictions.jsonl)' in page
  assert 'synthetic music' in page and 'P(high)' in page
  for name in DURATIONS:
    row = next(r for r in page.splitlines() if f'| {name} |' in r)
    assert f'{lines[name]["valence"]:.3f}' in row and lines[name]['quadrant'] in row
  broken = next(r for r in page.splitlines() if '| nested/broken.wav |' in r)
  assert 'could not be read' in broken and 'broken.wav' in broken


def test_predictor_write_figures(trained_workdir, music_folder, tmp_path):
  predictor = predict.Predictor.from_workdir(trained_workdir)
  info = predictor.figure_info()
  assert (info.task, info.step, info.dataset, info.synthetic) == (
      'classification', 6, 'synthetic_va', True)
  results = [predictor.predict(music_folder / 'calm.wav'),
             {'path': str(music_folder / 'gone.wav'), 'error': 'gone.wav: no such file'}]
  page = predictor.write_figures(results, tmp_path / 'figs', root=music_folder)
  assert page == tmp_path / 'figs' / 'index.md'
  assert [p.name for p in (tmp_path / 'figs' / 'files').iterdir()] == ['calm.wav.png']
  assert '| 2 | gone.wav |' in page.read_text()


INFO = predict_plots.ModelInfo(task='classification', step=600, dataset='synthetic_va')


def _result(name, valence, arousal, task='classification'):
  """A result dict as Predictor yields it, with the given segment scores."""
  cut = 0.5 if task == 'classification' else 0.0
  v, a = float(np.mean(valence)), float(np.mean(arousal))
  return {'path': f'/music/{name}', 'duration_s': len(valence) + 0.5, 'task': task,
          'step': 600, 'valence': v, 'arousal': a,
          'quadrant': quadrants.quadrant(v > cut, a > cut),
          'segments': [{'start_s': float(i), 'valence': x, 'arousal': y}
                       for i, (x, y) in enumerate(zip(valence, arousal))]}


def _texts(fig):
  return [t.get_text() for t in fig.findobj(lambda a: hasattr(a, 'get_text'))]


def test_file_figure_draws_every_segment_over_time_and_in_the_plane():
  valence, arousal = [0.9, 0.8, 0.2, 0.1, 0.15], [0.3, 0.4, 0.7, 0.9, 0.95]
  result = _result('song.flac', valence, arousal)
  fig = predict_plots.file_figure(result, INFO)
  over_time, plane = fig.axes[:2]
  lines = {line.get_label(): line for line in over_time.get_lines()}
  np.testing.assert_allclose(lines['valence, per segment'].get_xdata(),
                             [0.5, 1.5, 2.5, 3.5, 4.5])  # Segment centres.
  np.testing.assert_allclose(lines['valence, per segment'].get_ydata(), valence)
  np.testing.assert_allclose(lines['arousal, per segment'].get_ydata(), arousal)
  track = lines[f'valence, track value {result["valence"]:.2f}']
  np.testing.assert_allclose(track.get_ydata(), [result['valence']] * 2)
  np.testing.assert_allclose(lines['high / low (0.5)'].get_ydata(), [0.5, 0.5])
  low, high = over_time.get_ylim()
  assert -0.1 < low <= 0.0 and 1.0 <= high < 1.1  # P(high) axis.
  assert over_time.get_xlim() == (0.0, 5.5)
  dots = plane.collections[1]  # LineCollection (the path), then the segments.
  np.testing.assert_allclose(dots.get_offsets(), np.stack([valence, arousal], axis=1))
  star = [c for c in plane.collections if 'track value' in c.get_label()][0]
  np.testing.assert_allclose(star.get_offsets(), [[result['valence'], result['arousal']]])
  assert len(plane.collections[0].get_segments()) == 4  # Consecutive segments joined.
  for limits in (plane.get_xlim(), plane.get_ylim()):
    assert -0.1 < limits[0] <= 0.0 and 1.0 <= limits[1] < 1.1
  texts = _texts(fig)
  assert set(quadrants.QUADRANTS.values()) <= {t.replace('\n', ' ') for t in texts}
  note = next(t for t in texts if t.startswith('Numbers:'))
  assert 'P(high)' in note and 'synthetic music' in note and 'step 600' in note


def test_regression_figures_use_values_in_minus_one_to_one():
  info = predict_plots.ModelInfo(task='regression', step=9, dataset='memo2496')
  fig = predict_plots.file_figure(_result('a.wav', [-0.5, 0.5], [0.2, -0.9],
                                          task='regression'), info)
  for limits in (fig.axes[0].get_ylim(), fig.axes[1].get_xlim(), fig.axes[1].get_ylim()):
    assert -1.1 < limits[0] <= -1.0 and 1.0 <= limits[1] < 1.1
  note = next(t for t in _texts(fig) if t.startswith('Numbers:'))
  assert 'value in [-1, 1]' in note and 'synthetic' not in note and 'memo2496' in note
  one = predict_plots.file_figure(_result('b.wav', [0.1], [0.2], task='regression'), info)
  assert len(one.axes[1].collections[0].get_offsets()) == 1  # One segment: no path.


def _rows(count, failed=()):
  rng = np.random.default_rng(count)
  rows = []
  for i in range(count):
    segments = rng.uniform(0, 1, (2, int(rng.integers(1, 8))))
    result = (_result(f'track {i}.wav', *segments) if i not in failed else
              {'path': f'/music/track {i}.wav', 'error': f'track {i}.wav: corrupt'})
    rows.append(predict_plots.summarise(result, INFO, i + 1, f'track {i}.wav'))
  return rows


def _overview_parts(fig):
  """(plane axes, quadrant bar axes, the files' points, label texts, hidden labels)."""
  plane, bars = fig.axes[:2]
  points = [c for c in plane.collections if isinstance(c, PathCollection)][-1]
  labels = [t.get_text() for t in plane.texts if isinstance(t, Annotation)]
  hidden = re.search(r'(\d+) label\(s\) left out', plane.get_title())
  return plane, bars, points, labels, int(hidden.group(1)) if hidden else 0


def test_overview_labels_a_few_dozen_files_by_name_and_counts_the_failed():
  rows = _rows(12, failed={3})
  fig = predict_plots.overview_figure(rows, INFO, 'my music')
  plane, bars, points, labels, hidden = _overview_parts(fig)
  good = [r for r in rows if 'error' not in r]
  np.testing.assert_allclose(points.get_offsets(),
                             [[r['valence'], r['arousal']] for r in good])
  assert len(labels) + hidden == 11 and len(labels) >= 8
  assert set(labels) <= {r['name'][:-len('.wav')] for r in good}  # Names, not numbers.
  assert sum(p.get_width() for p in bars.patches) == 11
  assert '1 file(s) could not be read' in bars.get_title()
  assert plane.get_xlim()[0] <= 0.0 and plane.get_xlim()[1] >= 1.0


def test_overview_of_hundreds_shows_density_and_labels_only_the_extremes():
  rows = _rows(150)
  fig = predict_plots.overview_figure(rows, INFO)
  plane, bars, points, labels, _ = _overview_parts(fig)
  assert len(points.get_offsets()) == 150
  assert any(isinstance(c, PolyCollection) for c in plane.collections)  # The density.
  assert 4 <= len(labels) <= 4 * predict_plots.EXTREMES_PER_QUADRANT
  assert all(label.isdigit() for label in labels)  # Numbers of the table.
  assert sum(p.get_width() for p in bars.patches) == 150


def test_figure_writer_keeps_going_when_a_figure_fails(tmp_path):
  results = [_result('fine.wav', [0.9, 0.8], [0.1, 0.2]),
             _result('empty.wav', [0.5], [0.5]) | {'segments': []},
             {'path': '/music/bad.mp3', 'error': '/music/bad.mp3: not audio'}]
  page = predict_plots.write_figures(results, tmp_path, INFO)
  text = page.read_text()
  assert [p.name for p in (tmp_path / 'files').iterdir()] == ['fine.wav.png']
  assert '| 2 | empty.wav |' in text and 'failed: ' in text
  assert '| 3 | bad.mp3 |' in text and 'not audio' in text
  assert (tmp_path / 'overview.png').exists()
