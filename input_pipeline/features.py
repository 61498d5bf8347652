"""The two time-frequency views of a segment: Mel spectrogram and gammatone cochleagram.

Both views come from one short-time Fourier transform of one decode of the audio:

* Mel: librosa's Mel filterbank applied to the power spectrogram (identical to
  `librosa.feature.melspectrogram` with the same parameters).
* Cochleagram: a bank of 4th-order gammatone filters with centre frequencies equally
  spaced on the ERB-number scale (Glasberg & Moore 1990) and bandwidths b = 1.019 ERB(fc).
  Each channel's energy per frame is the power spectrum weighted by the squared magnitude
  response |H(f)|^2 of the digital gammatone filter that time-domain implementations run
  (Slaney 1993: the Patterson-Holdsworth gammatone as four second-order sections), with
  unit gain at fc: the output power of that filter for a signal that is stationary within
  the frame. Near fc it is the analog gammatone (1 + ((f - fc) / b)^2)^-4; it differs
  only where the analog formula ignores the negative-frequency image and aliasing (low
  and very high channels), which is where a time-domain filterbank differs too.

Both are log-compressed (dB) and normalised with fixed constants, so that loudness
survives as a cue: a full-scale sine maps to about +2, the -100 dB floor to -2.

Speed: the STFT is a float32 `scipy.fft.rfft` of strided frames; both filterbanks are
applied as dense blocks that skip the bins where their weights are zero (Mel) or below
-120 dB (gammatone). docs/features.md gives measured figures.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import librosa
import numpy as np
import scipy.fft

_FLOOR_DB = -100.0  # relative to a full-scale sine; everything below is clipped.
_SCALE_DB = 25.0    # (dB - centre) / scale; the range [-100, 0] maps to [-2, 2].
_CHUNK_FRAMES = 1024  # STFT frames per chunk in compute_views (~12 s of audio, ~13 MB).
_BLOCK_ROWS = 16      # Filterbank rows per dense block in compute_views.
_SKIP_BELOW = 1e-12   # Weights below this fraction of their row's peak are skipped.


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


def gammatone_response(centres_hz: np.ndarray, frequencies_hz: np.ndarray,
                       sample_rate: float) -> np.ndarray:
  """Squared magnitude responses [channels, frequencies] of digital 4th-order gammatones.

  The filter is the standard digital gammatone (Slaney 1993, Apple TR #35): four
  second-order sections sharing the poles exp(-B T +- i w) with B = 2 pi 1.019 ERB(fc),
  w = 2 pi fc T, T = 1 / sample_rate, each with one zero at
  exp(-B T) (cos w +- sqrt(3 +- 2^1.5) sin w), so that the cascade's impulse response is
  close to the sampled 4th-order gammatone t^3 exp(-B t) cos(2 pi fc t + phase)
  (normalised correlation 0.9999 at 100 Hz, 0.99 at 5 kHz); normalised to unit gain at fc. It is the filter `gammatone.filters`
  (`make_erb_filters`, `erb_filterbank`) runs in the time domain. Near fc it is the
  analog response (1 + ((f - fc) / b)^2)^-4.

  Args:
    centres_hz: centre frequencies [channels], in (0, sample_rate / 2].
    frequencies_hz: where to evaluate the response [frequencies].
    sample_rate: Hz.
  """
  fc = np.asarray(centres_hz, np.float64)[:, None]
  step = 1.0 / sample_rate
  decay = np.exp(-2 * np.pi * 1.019 * erb_bandwidth(fc) * step)  # pole radius
  arg = 2 * np.pi * fc * step
  cos, sin = np.cos(arg), np.sin(arg)

  def response(omega):
    """Complex response [channels, len(omega)] before normalisation."""
    z1 = np.exp(-1j * omega)  # z^-1 on the unit circle
    poles = 1.0 - 2.0 * decay * cos * z1 + decay**2 * z1**2
    zeros = np.ones_like(poles)
    for root in (np.sqrt(3 + 2**1.5), -np.sqrt(3 + 2**1.5),
                 np.sqrt(3 - 2**1.5), -np.sqrt(3 - 2**1.5)):
      zeros = zeros * (1.0 - decay * (cos + root * sin) * z1)
    return zeros / poles**4

  omega = 2 * np.pi * np.asarray(frequencies_hz, np.float64)[None, :] * step
  power = np.abs(response(omega))**2
  return power / np.abs(response(arg))**2


@functools.lru_cache(maxsize=8)
def gammatone_filterbank(spec: FeatureSpec) -> tuple[np.ndarray, np.ndarray]:
  """Squared gammatone magnitude responses [n_coch, 1 + n_fft // 2] and centres [n_coch].

  Each row has unit gain at its centre frequency, so a sine at fc of power P gives
  channel power P (see `gammatone_response`).
  """
  centres = erb_space(spec.coch_fmin, spec.max_frequency, spec.n_coch)
  bins = librosa.fft_frequencies(sr=spec.sample_rate, n_fft=spec.n_fft)
  weights = gammatone_response(centres, bins, spec.sample_rate)
  return weights.astype(np.float32), centres


@functools.lru_cache(maxsize=8)
def _stft_window(n_fft: int) -> np.ndarray:
  """Periodic Hann window [n_fft], float32: the one librosa.stft uses."""
  return librosa.filters.get_window('hann', n_fft, fftbins=True).astype(np.float32)


def _frames(audio: np.ndarray, spec: FeatureSpec) -> np.ndarray:
  """Centred, zero-padded frames [..., 1 + samples // hop, n_fft] (a strided view)."""
  pad = spec.n_fft // 2
  padded = np.pad(audio, [(0, 0)] * (audio.ndim - 1) + [(pad, pad)])
  frames = np.lib.stride_tricks.sliding_window_view(padded, spec.n_fft, axis=-1)
  return frames[..., ::spec.hop_length, :]


def _frame_power(frames: np.ndarray, spec: FeatureSpec) -> np.ndarray:
  """|rfft(window * frames)|^2 [..., 1 + n_fft // 2] in float32."""
  spectrum = scipy.fft.rfft(frames * _stft_window(spec.n_fft), axis=-1)
  return np.square(spectrum.real) + np.square(spectrum.imag)


def power_spectrogram(audio: np.ndarray, spec: FeatureSpec) -> np.ndarray:
  """|STFT|^2 [..., 1 + n_fft // 2, frames] of audio [..., samples] (Hann, centred).

  Equals `np.abs(librosa.stft(audio, n_fft, hop_length, center=True,
  pad_mode='constant'))**2` to float32 rounding.
  """
  audio = np.asarray(audio, np.float32)
  return np.swapaxes(_frame_power(_frames(audio, spec), spec), -1, -2)


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


@functools.lru_cache(maxsize=8)
def _view_blocks(spec: FeatureSpec) -> tuple[tuple[int, int, int, np.ndarray], ...]:
  """Both filterbanks as dense blocks (first_bin, end_bin, first_row, weights [bins, rows]).

  Rows are the Mel bands, then the gammatone channels; each bank is cut into groups of
  _BLOCK_ROWS rows, and a group keeps only the bins where one of its weights exceeds
  _SKIP_BELOW times its row's peak. Mel weights are exactly zero outside their
  triangles; the gammatone weights skipped are below -120 dB (tests check that the
  result equals the dense product).
  """
  blocks = []
  banks = ((0, mel_filterbank(spec)), (spec.n_mels, gammatone_filterbank(spec)[0]))
  for offset, bank in banks:
    keep = bank > _SKIP_BELOW * bank.max(axis=1, keepdims=True)
    for row in range(0, len(bank), _BLOCK_ROWS):
      used = np.flatnonzero(keep[row:row + _BLOCK_ROWS].any(axis=0))
      first, end = (int(used[0]), int(used[-1]) + 1) if used.size else (0, 1)
      block = np.ascontiguousarray(bank[row:row + _BLOCK_ROWS, first:end].T)
      blocks.append((first, end, offset + row, block))
  return tuple(blocks)


@functools.lru_cache(maxsize=8)
def _view_offsets(spec: FeatureSpec) -> np.ndarray:
  """Per-row offsets [n_mels + n_coch] that fold log_normalise into one affine map.

  normalised = 10 / _SCALE_DB * log10(power) - offset, then clipped at the floor.
  """
  mel_db, coch_db = _full_scale_db(spec)
  full_scale = np.repeat([mel_db, coch_db], [spec.n_mels, spec.n_coch])
  return ((full_scale + _FLOOR_DB / 2) / _SCALE_DB).astype(np.float32)


def compute_views(segments: np.ndarray, spec: FeatureSpec) -> tuple[np.ndarray, np.ndarray]:
  """Both views of a batch of segments from one STFT.

  Each segment is analysed on its own (centred frames, zero padding at its edges), in
  chunks of about _CHUNK_FRAMES frames so that memory stays small for long tracks. The
  result equals log_normalise(filterbank @ power_spectrogram(segments)) for each view.

  Args:
    segments: float [num_segments, segment_samples] (or [segment_samples]).
    spec: feature parameters.

  Returns:
    mel [num_segments, n_mels, num_frames] and coch [num_segments, n_coch, num_frames],
    float32, log-compressed and normalised (see module docstring). With a 1-D input
    the leading axis is absent.
  """
  segments = np.asarray(segments, np.float32)
  if segments.ndim not in (1, 2):
    raise ValueError(f'compute_views expects segments [num_segments, samples] or '
                     f'[samples], got shape {segments.shape}; cut audio with segment_audio.')
  batch = segments[None] if segments.ndim == 1 else segments
  blocks, offsets = _view_blocks(spec), _view_offsets(spec)
  floor = _FLOOR_DB / 2 / _SCALE_DB  # the -100 dB floor after normalisation: -2.
  num_frames = 1 + batch.shape[1] // spec.hop_length
  out = np.empty((len(batch), num_frames, len(offsets)), np.float32)
  chunk = max(1, _CHUNK_FRAMES // num_frames)
  for start in range(0, len(batch), chunk):
    power = _frame_power(_frames(batch[start:start + chunk], spec), spec)
    power = power.reshape(-1, power.shape[-1])
    bands = out[start:start + chunk].reshape(-1, len(offsets))
    for first, end, row, weights in blocks:
      np.matmul(power[:, first:end], weights, out=bands[:, row:row + weights.shape[1]])
    np.maximum(bands, 1e-20, out=bands)
    np.log10(bands, out=bands)
    bands *= 10.0 / _SCALE_DB
    bands -= offsets
    np.maximum(bands, floor, out=bands)
  views = np.swapaxes(out, 1, 2)
  mel = np.ascontiguousarray(views[:, :spec.n_mels])
  coch = np.ascontiguousarray(views[:, spec.n_mels:])
  if segments.ndim == 1:
    return mel[0], coch[0]
  return mel, coch


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
           'mel_filterbank', 'gammatone_filterbank', 'gammatone_response',
           'power_spectrogram', 'log_normalise', 'num_segments']
