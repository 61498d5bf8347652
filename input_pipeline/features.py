"""The two time-frequency views of a segment: Mel spectrogram and gammatone cochleagram.

Both views come from one short-time Fourier transform of one decode of the audio:

* Mel: librosa's Mel filterbank applied to the power spectrogram (identical to
  `librosa.feature.melspectrogram` with the same parameters).
* Cochleagram: a bank of 4th-order gammatone filters with centre frequencies equally
  spaced on the ERB-number scale (Glasberg & Moore 1990). Each channel's energy per
  frame is the power spectrum weighted by the filter's squared magnitude response
  |H(f)|^2 = (1 + ((f - fc) / b)^2)^-4 with b = 1.019 ERB(fc), i.e. the output power of
  the gammatone filter for a stationary input within the frame.

Both are log-compressed (dB) and normalised with fixed constants, so that loudness
survives as a cue: a full-scale sine maps to about +2, the -100 dB floor to -2.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import librosa
import numpy as np

_FLOOR_DB = -100.0  # relative to a full-scale sine; everything below is clipped.
_SCALE_DB = 25.0    # (dB - centre) / scale; the range [-100, 0] maps to [-2, 2].


@dataclasses.dataclass(frozen=True)
class FeatureSpec:
  """Parameters of both views. Defaults: 22,050 Hz, 1 s, hop 256 -> 87 frames."""

  sample_rate: int = 22050
  segment_seconds: float = 1.0
  hop_length: int = 256
  n_fft: int = 2048
  n_mels: int = 128
  n_coch: int = 84
  mel_fmin: float = 0.0
  coch_fmin: float = 50.0
  fmax: float = 0.0  # 0 means the Nyquist frequency.

  @property
  def segment_samples(self) -> int:
    return int(round(self.segment_seconds * self.sample_rate))

  @property
  def num_frames(self) -> int:
    """Frames per segment (centred STFT): 1 + samples // hop."""
    return 1 + self.segment_samples // self.hop_length

  @property
  def max_frequency(self) -> float:
    return self.fmax if self.fmax > 0 else self.sample_rate / 2.0

  @classmethod
  def from_config(cls, config: Any) -> 'FeatureSpec':
    """Builds the spec from a mapping such as `config.features`."""
    names = {f.name for f in dataclasses.fields(cls)}
    values = {k: config[k] for k in names if k in config}
    return cls(**values)

  def validate(self) -> None:
    if self.sample_rate <= 0 or self.segment_seconds <= 0 or self.hop_length <= 0:
      raise ValueError(f'FeatureSpec needs positive sample_rate, segment_seconds and '
                       f'hop_length, got {self}.')
    if self.max_frequency > self.sample_rate / 2:
      raise ValueError(f'fmax={self.fmax} is above the Nyquist frequency '
                       f'{self.sample_rate / 2} Hz; lower it or raise the sample rate.')
    if not 0 <= self.coch_fmin < self.max_frequency:
      raise ValueError(f'coch_fmin={self.coch_fmin} must lie in [0, fmax).')


def erb_bandwidth(frequency_hz: np.ndarray) -> np.ndarray:
  """Equivalent rectangular bandwidth in Hz (Glasberg & Moore 1990)."""
  return 24.7 * (4.37 * np.asarray(frequency_hz) / 1000.0 + 1.0)


def erb_space(fmin: float, fmax: float, num: int) -> np.ndarray:
  """`num` centre frequencies [Hz], ascending, equally spaced on the ERB-number scale."""
  def to_erb(f):
    return 21.4 * np.log10(1.0 + 0.00437 * f)
  def from_erb(e):
    return (10.0 ** (e / 21.4) - 1.0) / 0.00437
  return from_erb(np.linspace(to_erb(fmin), to_erb(fmax), num))


@functools.lru_cache(maxsize=8)
def mel_filterbank(spec: FeatureSpec) -> np.ndarray:
  """Mel weights [n_mels, 1 + n_fft // 2] (librosa, Slaney normalisation)."""
  return librosa.filters.mel(sr=spec.sample_rate, n_fft=spec.n_fft, n_mels=spec.n_mels,
                             fmin=spec.mel_fmin, fmax=spec.max_frequency).astype(np.float32)


@functools.lru_cache(maxsize=8)
def gammatone_filterbank(spec: FeatureSpec) -> tuple[np.ndarray, np.ndarray]:
  """Squared gammatone magnitude responses [n_coch, 1 + n_fft // 2] and centres [n_coch].

  Each row has unit gain at its centre frequency, so a sine at fc of power P gives
  channel power P.
  """
  centres = erb_space(spec.coch_fmin, spec.max_frequency, spec.n_coch)
  bins = librosa.fft_frequencies(sr=spec.sample_rate, n_fft=spec.n_fft)
  b = 1.019 * erb_bandwidth(centres)[:, None]
  weights = (1.0 + ((bins[None, :] - centres[:, None]) / b) ** 2) ** -4
  return weights.astype(np.float32), centres


def power_spectrogram(audio: np.ndarray, spec: FeatureSpec) -> np.ndarray:
  """|STFT|^2 [..., 1 + n_fft // 2, frames] of audio [..., samples] (Hann, centred)."""
  stft = librosa.stft(np.asarray(audio, np.float32), n_fft=spec.n_fft,
                      hop_length=spec.hop_length, center=True, pad_mode='constant')
  return (np.abs(stft) ** 2).astype(np.float32)


@functools.lru_cache(maxsize=8)
def _full_scale_db(spec: FeatureSpec) -> tuple[float, float]:
  """dB of the strongest Mel band / channel for a full-scale 1 kHz sine."""
  t = np.arange(spec.segment_samples) / spec.sample_rate
  power = power_spectrogram(np.sin(2 * np.pi * 1000.0 * t), spec)
  mel = mel_filterbank(spec) @ power
  coch = gammatone_filterbank(spec)[0] @ power
  return (float(10 * np.log10(np.median(mel.max(axis=0)))),
          float(10 * np.log10(np.median(coch.max(axis=0)))))


def log_normalise(power: np.ndarray, full_scale_db: float) -> np.ndarray:
  """dB relative to full scale, clipped at -100 dB, mapped affinely to about [-2, 2]."""
  db = 10.0 * np.log10(np.maximum(power, 1e-20)) - full_scale_db
  db = np.maximum(db, _FLOOR_DB)
  return ((db - _FLOOR_DB / 2) / _SCALE_DB).astype(np.float32)


def compute_views(segments: np.ndarray, spec: FeatureSpec) -> tuple[np.ndarray, np.ndarray]:
  """Both views of a batch of segments from one STFT.

  Args:
    segments: float [num_segments, segment_samples] (or [segment_samples]).
    spec: feature parameters.

  Returns:
    mel [num_segments, n_mels, num_frames] and coch [num_segments, n_coch, num_frames],
    float32, log-compressed and normalised (see module docstring).
  """
  power = power_spectrogram(segments, spec)
  mel_db, coch_db = _full_scale_db(spec)
  mel = np.einsum('mf,...ft->...mt', mel_filterbank(spec), power)
  coch = np.einsum('cf,...ft->...ct', gammatone_filterbank(spec)[0], power)
  return log_normalise(mel, mel_db), log_normalise(coch, coch_db)


def segment_audio(audio: np.ndarray, spec: FeatureSpec) -> np.ndarray:
  """Cuts mono audio [samples] into whole segments [num_segments, segment_samples].

  Segment i starts at i * segment_seconds; an incomplete tail is not returned.
  """
  n = spec.segment_samples
  count = len(audio) // n
  return np.asarray(audio[:count * n], np.float32).reshape(count, n)


def num_segments(num_samples: int, spec: FeatureSpec) -> int:
  return num_samples // spec.segment_samples


__all__ = ['FeatureSpec', 'compute_views', 'segment_audio', 'erb_space', 'erb_bandwidth',
           'mel_filterbank', 'gammatone_filterbank', 'power_spectrogram', 'log_normalise',
           'num_segments']
