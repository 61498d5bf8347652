"""Prediction on music files: the CLI (--mode=predict) and the Python API."""

import json
import math

import numpy as np
import pytest
import soundfile as sf

from damer_jax import predict
from input_pipeline import audio as audio_lib
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
def cli_lines(trained_workdir, data_dir, music_folder, tmp_path_factory):
  """main.py --mode=predict over the folder: (lines by file name, CompletedProcess)."""
  output = tmp_path_factory.mktemp('out') / 'predictions.jsonl'
  result = run_main(tiny_flags(trained_workdir, data_dir) +
                    ['--mode=predict', f'--audio={music_folder}', f'--output={output}'])
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
  assert line['quadrant'] == predict.quadrant(line['valence'] > 0.5, line['arousal'] > 0.5)


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
