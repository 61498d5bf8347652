"""Decoding audio (files or arrays) to mono float32 at the project's sample rate."""

from __future__ import annotations

import os
import warnings

import numpy as np
import soundfile as sf

# Extensions that a folder walk takes for audio (compare lower-cased), in order of
# preference: where a dataset has two files of one track (`12.mp3`, `12.wav`), the
# earlier extension wins. Prediction and the dataset builders use this one list; a
# file named explicitly is decoded whatever its extension.
AUDIO_EXTENSIONS = ('.mp3', '.wav', '.flac', '.ogg', '.m4a', '.aac', '.aiff', '.aif',
                    '.opus', '.wma', '.wave', '.oga', '.aifc', '.au', '.snd', '.caf',
                    '.w64', '.rf64', '.mp4', '.webm')


class AudioError(ValueError):
  """An audio file that cannot be used; the message names the file and the problem."""


def load_audio(path: str | os.PathLike, sample_rate: int) -> np.ndarray:
  """Decodes `path` to mono float32 [samples] at `sample_rate`.

  Any format libsndfile reads (WAV, FLAC, OGG, MP3 with libsndfile >= 1.1) is decoded
  with soundfile; other formats fall back to librosa's audioread path. The decoded
  audio then goes through `to_mono` (mix to mono, resample).

  Raises:
    AudioError: the file is missing, unreadable, empty or not finite.
  """
  path = os.fspath(path)
  if not os.path.exists(path):
    raise AudioError(f'{path}: no such file.')
  try:
    audio, file_rate = sf.read(path, dtype='float32', always_2d=True)  # [samples, ch]
  except Exception as sf_error:  # pylint: disable=broad-except
    try:
      import librosa  # Slow import; only for formats libsndfile does not read.
      with warnings.catch_warnings():  # librosa announces the audioread fallback.
        warnings.simplefilter('ignore', UserWarning)
        warnings.simplefilter('ignore', FutureWarning)
        audio, file_rate = librosa.load(path, sr=None, mono=True)
    except Exception as error:  # pylint: disable=broad-except
      fallback = str(error) or type(error).__name__
      raise AudioError(f'{path}: cannot decode audio (soundfile: {sf_error}; audioread: '
                       f'{fallback}). Convert it to WAV or FLAC, or check that the file '
                       'is complete.') from error
  return to_mono(audio, file_rate, sample_rate, source=path)


def to_mono(audio: np.ndarray, sample_rate: int, target_rate: int,
            source: str = '<array>') -> np.ndarray:
  """[samples] or [samples, channels] at `sample_rate` -> mono float32 [samples'].

  Channels are averaged; a `sample_rate` other than `target_rate` is resampled to it
  (soxr, high quality).

  Args:
    audio: the samples, any real dtype (taken as is, not rescaled).
    sample_rate: rate of `audio`, Hz.
    target_rate: rate of the result, Hz.
    source: what the audio is (a path), named in error messages.

  Raises:
    AudioError: the audio is not 1-D or 2-D, holds no samples or is not finite.
  """
  audio = np.asarray(audio)
  if audio.ndim not in (1, 2):
    raise AudioError(f'{source}: expected [samples] or [samples, channels] audio, got '
                     f'shape {audio.shape}.')
  if audio.size == 0:
    raise AudioError(f'{source}: the audio holds no samples.')
  audio = audio.astype(np.float32, copy=False)
  if audio.ndim == 2:
    # A matrix-vector product mixes to mono ~30x faster than mean(axis=1) here.
    audio = audio @ np.full(audio.shape[1], 1.0 / audio.shape[1], np.float32)
  if not np.all(np.isfinite(audio)):
    raise AudioError(f'{source}: the audio holds NaN or Inf samples.')
  if sample_rate != target_rate:
    import librosa  # pylint: disable=g-import-not-at-top
    audio = librosa.resample(audio, orig_sr=sample_rate, target_sr=target_rate,
                             res_type='soxr_hq')
  return np.ascontiguousarray(audio, dtype=np.float32)
