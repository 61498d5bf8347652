r"""Prediction throughput on a folder of audio files, in seconds of audio per second.

    python benchmarks/predict_throughput.py --config=configs/demo.py \
        [--workdir=/tmp/damer_demo] [--files=24] [--seconds=30] [--format=flac]

Writes `--files` synthetic music files of `--seconds` each into a temporary folder
(`--format`: wav, flac or ogg), then times, over the same files:
  * decode: `load_audio` (decode + resample to the model's rate) alone;
  * features: decode + segmenting + both views (what the decoding threads do);
  * model: the jitted model on precomputed views, full batches on all local devices;
  * predict: `Predictor.predict_files` end to end (threads decoding ahead of the model).
With --workdir the trained checkpoint is used, else freshly initialised parameters of
the config's model (the speed does not depend on the weights). The last line printed is
a JSON summary.
"""

import json
import os
import tempfile
import time

from absl import app
from absl import flags
import jax
from ml_collections import config_flags
import numpy as np
import soundfile as sf

from damer_audio import audio as audio_lib
from damer_audio import features as features_lib
from damer_jax import config_lib
from damer_jax import models
from damer_jax import predict
from damer_jax import train
from input_pipeline import synthetic_music

_CONFIG = config_flags.DEFINE_config_file('config', None, 'Experiment config file.')
_WORKDIR = flags.DEFINE_string('workdir', None, 'Trained workdir (default: random init).')
_FILES = flags.DEFINE_integer('files', 24, 'Number of audio files.')
_SECONDS = flags.DEFINE_float('seconds', 30.0, 'Length of each file, seconds.')
_FORMAT = flags.DEFINE_enum('format', 'flac', ['wav', 'flac', 'ogg'], 'File format.')
_FILE_RATE = flags.DEFINE_integer('file_rate', 44100, 'Sample rate of the files (Hz).')
_WORKERS = flags.DEFINE_integer('num_workers', None, 'Decoding threads (default: CPUs).')


def _write_files(folder: str) -> list[str]:
  paths = []
  for i in range(_FILES.value):
    track = synthetic_music.generate_track(i % 8, duration_s=_SECONDS.value,
                                           sample_rate=_FILE_RATE.value)
    path = os.path.join(folder, f'track{i:03d}.{_FORMAT.value}')
    sf.write(path, track.audio, _FILE_RATE.value)
    paths.append(path)
  return paths


def _predictor(config) -> predict.Predictor:
  if _WORKDIR.value:
    return predict.Predictor.from_workdir(_WORKDIR.value, config)
  model = models.create_model(config)
  mel_shape, coch_shape = config_lib.input_shapes(config)
  variables = jax.jit(model.init, static_argnames='train')(
      jax.random.key(0), np.zeros((1,) + mel_shape, np.float32),
      np.zeros((1,) + coch_shape, np.float32), train=False)
  return predict.Predictor(config, dict(variables))


def main(argv):
  del argv
  config = _CONFIG.value
  spec = features_lib.FeatureSpec.from_config(config.features)
  predictor = _predictor(config)
  with tempfile.TemporaryDirectory() as folder:
    paths = _write_files(folder)
    audio_seconds = _FILES.value * _SECONDS.value

    audio_lib.load_audio(paths[0], spec.sample_rate)  # Warm-up: imports, resampler.
    t0 = time.perf_counter()
    for p in paths:
      audio_lib.load_audio(p, spec.sample_rate)
    decode_s = time.perf_counter() - t0

    t0 = time.perf_counter()
    views = [predictor._views(p, audio_lib.load_audio(p, spec.sample_rate))  # pylint: disable=protected-access
             for p in paths]
    features_s = time.perf_counter() - t0

    mel = np.concatenate([v.mel for v in views])
    coch = np.concatenate([v.coch for v in views])
    b = predictor.batch_size
    batches = max(1, int(np.ceil(len(mel) / b)))
    order = np.arange(batches * b) % len(mel)  # Whole batches, cycling the segments.
    warm = order[:b]  # Compile outside the timing.
    jax.block_until_ready(predictor._apply(predictor._variables, mel[warm], coch[warm]))  # pylint: disable=protected-access
    t0 = time.perf_counter()
    for i in range(batches):
      idx = order[i * b:(i + 1) * b]
      out = predictor._apply(predictor._variables, mel[idx], coch[idx])  # pylint: disable=protected-access
    jax.block_until_ready(out)
    model_s = (time.perf_counter() - t0) * len(mel) / (batches * b)

    list(predictor.predict_files(paths[:2], num_workers=_WORKERS.value, progress=False))
    t0 = time.perf_counter()
    results = list(predictor.predict_files(paths, num_workers=_WORKERS.value,
                                           progress=False))
    predict_s = time.perf_counter() - t0
  assert not any('error' in r for r in results)
  summary = {
      'config': config.dataset.name, 'model_width': config.model.width,
      'devices': [str(d) for d in jax.local_devices()], 'cpus': os.cpu_count(),
      'files': _FILES.value, 'seconds_per_file': _SECONDS.value, 'format': _FORMAT.value,
      'file_rate': _FILE_RATE.value, 'segments': int(len(mel)), 'batch_size': b,
      'decode_audio_s_per_s': audio_seconds / decode_s,
      'decode_and_views_audio_s_per_s': audio_seconds / features_s,
      'model_audio_s_per_s': audio_seconds / model_s,
      'predict_audio_s_per_s': audio_seconds / predict_s,
      'predict_wall_s': predict_s,
  }
  for key, value in summary.items():
    if key.endswith('_per_s'):
      print(f'{key:34s} {value:10.1f} x real time')
  print(json.dumps(summary))


if __name__ == '__main__':
  flags.mark_flags_as_required(['config'])
  app.run(main)
