"""The two time-frequency views of a segment: Mel spectrogram and gammatone cochleagram.

The Mel view is librosa's Mel filterbank applied to the power spectrogram of a Hann
STFT (identical to `librosa.feature.melspectrogram` with the same parameters).

The cochleagram is a bank of 4th-order gammatone filters with centre frequencies
equally spaced on the ERB-number scale (Glasberg & Moore 1990) and bandwidths
b = 1.019 ERB(fc): the digital gammatone that time-domain implementations run (Slaney
1993: the Patterson-Holdsworth gammatone as four second-order sections, here with unit
gain at fc). `FeatureSpec.coch_method` chooses how a frame's channel energy is taken:

* 'stft': from the Mel view's STFT, as the power spectrum weighted by the filter's
  squared magnitude response |H(f)|^2: the output power of the filter for a signal
  that is stationary within the n_fft window (93 ms at the defaults), so the
  cochleagram has the Mel view's time resolution. Both views cost one STFT.
* 'gammatone': the same filters run on the audio in the time domain
  (`scipy.signal.sosfilt`), each channel's output delayed back by its envelope peak
  (3 / (2 pi b): the filters' onset responses line up across channels and with the
  Mel view), squared, and averaged over a periodic Hann window of 2 hops (23 ms at the
  defaults) centred on each frame. The time resolution is the filter's own: a click
  is 1-2 frames wide (-6 dB) above 500 Hz instead of 4. Low channels run on the audio
  decimated by 2, 4 or 8 (a 61-tap half-band FIR per halving, -82 dB stop band) where
  the channel's response above 0.4 times the lower rate is below -60 dB.

Both views are log-compressed (dB) and normalised with fixed constants, so that loudness
survives as a cue: a full-scale sine maps to about +2, the -100 dB floor to -2 (each
cochleagram method is referred to its own response to that sine).

Speed: the STFT is a float32 `scipy.fft.rfft` of strided frames; the filterbanks are
applied as dense blocks that skip the bins where their weights are zero (Mel) or below
-120 dB (gammatone, 'stft'). docs/features.md gives measured figures.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import librosa
import numpy as np
import scipy.fft
import scipy.signal

_FLOOR_DB = -100.0  # relative to a full-scale sine; everything below is clipped.
_SCALE_DB = 25.0    # (dB - centre) / scale; the range [-100, 0] maps to [-2, 2].
_CHUNK_FRAMES = 1024  # STFT frames per chunk in compute_views (~12 s of audio, ~13 MB).
_BLOCK_ROWS = 16      # Filterbank rows per dense block in compute_views.
_SKIP_BELOW = 1e-12   # Weights below this fraction of their row's peak are skipped.

COCH_METHODS = ('stft', 'gammatone')
_CHUNK_SAMPLES = 2**18  # Input samples per chunk of the time-domain filterbank (~12 s).
_MAX_DECIMATION = 8     # Lowest rate of the time-domain filterbank: sample_rate / 8.
_SKIRT_BANDWIDTHS = 5.5  # A gammatone is below -60 dB beyond fc + 5.5 b.
_DITHER = 1e-9          # -180 dB of noise keeps the IIR states out of float32 subnormals.


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
  coch_method: str = 'gammatone'  # or 'stft' (see the module docstring).

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
    """Builds the spec from a mapping such as `config.features`.

    A mapping without `coch_method` (a config saved before the field existed) means
    'stft', the only method there was then.
    """
    names = {f.name for f in dataclasses.fields(cls)}
    values = {k: config[k] for k in names if k in config}
    values.setdefault('coch_method', 'stft')
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
    _check_coch_method(self)


def _check_coch_method(spec: FeatureSpec) -> None:
  if spec.coch_method not in COCH_METHODS:
    raise ValueError(f'config.features.coch_method={spec.coch_method!r} is not one of '
                     f'{COCH_METHODS}: use \'stft\' (cochleagram from the Mel view\'s '
                     f'STFT) or \'gammatone\' (time-domain gammatone filterbank).')


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
  (normalised correlation 0.9999 at 100 Hz, 0.99 at 5 kHz); normalised to unit gain at
  fc. It is the filter `gammatone.filters` (`make_erb_filters`, `erb_filterbank`) runs
  in the time domain, and the one `gammatone_sos` gives as sections. Near fc it is the
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


def gammatone_sos(centres_hz: np.ndarray, sample_rate: float) -> np.ndarray:
  """Second-order sections [channels, 4, 6] (float64) of the digital 4th-order gammatones.

  The filters of `gammatone_response` (same poles and zeros, unit gain at fc), in the
  layout of `scipy.signal.sosfilt`; the gain is shared equally by the four sections.
  """
  fc = np.asarray(centres_hz, np.float64)
  step = 1.0 / sample_rate
  decay = np.exp(-2 * np.pi * 1.019 * erb_bandwidth(fc) * step)[:, None]
  arg = 2 * np.pi * fc * step
  cos, sin = np.cos(arg)[:, None], np.sin(arg)[:, None]
  roots = np.array([np.sqrt(3 + 2**1.5), -np.sqrt(3 + 2**1.5),
                    np.sqrt(3 - 2**1.5), -np.sqrt(3 - 2**1.5)])
  sos = np.zeros((len(fc), 4, 6))
  sos[..., 0] = 1.0
  sos[..., 1] = -decay * (cos + roots * sin)
  sos[..., 3] = 1.0
  sos[..., 4] = -2.0 * decay * cos
  sos[..., 5] = decay**2
  z1 = np.exp(-1j * arg)[:, None]
  gain = np.prod((sos[..., 0] + sos[..., 1] * z1) /
                 (1.0 + sos[..., 4] * z1 + sos[..., 5] * z1**2), axis=-1)
  sos[..., :3] *= (np.abs(gain)**-0.25)[:, None, None]
  return sos


@dataclasses.dataclass(frozen=True)
class _RateGroup:
  """Gammatone channels run at sample_rate / factor, with their filters and delays."""

  factor: int
  channels: np.ndarray  # [k] indices into the n_coch channels.
  sos: np.ndarray       # [k, 4, 6] float32, designed for sample_rate / factor.
  delays: np.ndarray    # [k] envelope-peak delays, samples at sample_rate / factor.


@functools.lru_cache(maxsize=8)
def _rate_groups(spec: FeatureSpec) -> tuple[_RateGroup, ...]:
  """The time-domain filterbank's channels grouped by the rate they run at.

  A channel runs at sample_rate / 2^k (k <= 3, 2^k dividing hop_length) if its
  response is below -60 dB above 0.4 times that rate (fc + 5.5 b <= 0.4 rate): there
  the half-band decimators pass it within 0.001 dB and keep aliases 82 dB down. Its
  filter is the same cascade designed for the lower rate; as b / rate grows the cascade
  departs a little from the full-rate one (docs/features.md: 0.08 dB mean frame
  difference on music, 0.14 dB in the lowest 13 channels), which is why k stops at 3.
  """
  centres = erb_space(spec.coch_fmin, spec.max_frequency, spec.n_coch)
  bandwidth = 1.019 * erb_bandwidth(centres)
  factors = np.ones(len(centres), int)
  factor = 2
  while factor <= _MAX_DECIMATION and spec.hop_length % factor == 0:
    fits = centres + _SKIRT_BANDWIDTHS * bandwidth <= 0.4 * spec.sample_rate / factor
    factors[fits] = factor
    factor *= 2
  groups = []
  for factor in sorted(set(factors.tolist())):
    channels = np.flatnonzero(factors == factor)
    rate = spec.sample_rate / factor
    sos = gammatone_sos(centres[channels], rate).astype(np.float32)
    delays = np.round(3.0 / (2 * np.pi * bandwidth[channels]) * rate).astype(int)
    groups.append(_RateGroup(factor, channels, sos, delays))
  return tuple(groups)


@functools.lru_cache(maxsize=1)
def _halfband() -> np.ndarray:
  """Decimate-by-2 low-pass [61], float32: flat to 0.4, -82 dB from 0.6 (x Nyquist)."""
  return scipy.signal.firwin(61, 0.5, window=('kaiser', 8.0)).astype(np.float32)


@functools.lru_cache(maxsize=8)
def _dither(num_samples: int) -> np.ndarray:
  """Fixed noise [num_samples], float32, at -180 dB re full scale."""
  noise = np.random.default_rng(0).standard_normal(num_samples)
  return (_DITHER * noise).astype(np.float32)


@functools.lru_cache(maxsize=16)
def _window_halves(hop: int) -> np.ndarray:
  """A periodic Hann window of 2 hops, weights summing to 1, as [hop, 2] halves."""
  window = np.hanning(2 * hop + 1)[:-1] / hop
  return np.stack([window[:hop], window[hop:]], axis=1).astype(np.float32)


def _frame_energy(power: np.ndarray, hop: int, num_frames: int) -> np.ndarray:
  """Hann-weighted means [..., num_frames] of power [..., (num_frames + 1) * hop].

  Frame t averages power[t * hop:(t + 2) * hop] with a periodic Hann window of 2 hops:
  centred on sample (t + 1) * hop of `power`. The windows overlap by half and their
  weights add up to 1 at every sample, so no sample's energy is lost or counted twice;
  the window's main lobe ends at the frame rate, which keeps envelope aliasing low.
  """
  blocks = power.reshape(power.shape[:-1] + (num_frames + 1, hop)) @ _window_halves(hop)
  return blocks[..., :-1, 0] + blocks[..., 1:, 1]


def _gammatone_chunk(batch: np.ndarray, spec: FeatureSpec, out: np.ndarray) -> None:
  """Fills out [S, n_coch, num_frames] with the channel powers of batch [S, samples]."""
  hop, num_frames = spec.hop_length, out.shape[-1]
  groups = _rate_groups(spec)
  lag = max(int(g.delays.max()) * g.factor for g in groups)
  length = -(-((num_frames + 1) * hop + lag) // _MAX_DECIMATION) * _MAX_DECIMATION
  # One hop of silence first: frame t is centred on sample t * hop of the segment.
  audio = np.broadcast_to(_dither(length), (len(batch), length)).copy()
  audio[:, hop:hop + batch.shape[1]] += batch
  factor = 1
  for group in groups:
    while factor < group.factor:
      audio = scipy.signal.resample_poly(audio, 1, 2, axis=-1, window=_halfband())
      factor *= 2
    group_hop = hop // factor
    needed = (num_frames + 1) * group_hop
    for channel, sos, delay in zip(group.channels, group.sos, group.delays):
      output = scipy.signal.sosfilt(sos, audio, axis=-1)[:, delay:delay + needed]
      out[:, channel] = _frame_energy(np.square(output), group_hop, num_frames)


def gammatone_power(segments: np.ndarray, spec: FeatureSpec) -> np.ndarray:
  """Time-domain gammatone channel powers [..., n_coch, 1 + samples // hop], float32.

  The 'gammatone' cochleagram before log compression (see the module docstring): a
  sine of amplitude A at a channel's centre frequency gives that channel A^2 / 2.
  Each segment is filtered on its own, starting from rest, with zeros after it (as
  the centred STFT pads), in chunks of about _CHUNK_SAMPLES samples.

  Args:
    segments: float [num_segments, samples] or [samples].
    spec: feature parameters.
  """
  segments = np.asarray(segments, np.float32)
  batch = segments.reshape(-1, segments.shape[-1])
  num_frames = 1 + batch.shape[1] // spec.hop_length
  out = np.empty((len(batch), spec.n_coch, num_frames), np.float32)
  chunk = max(1, _CHUNK_SAMPLES // batch.shape[1])
  for start in range(0, len(batch), chunk):
    _gammatone_chunk(batch[start:start + chunk], spec, out[start:start + chunk])
  return out.reshape(segments.shape[:-1] + out.shape[1:])


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


@functools.lru_cache(maxsize=8)
def _gammatone_full_scale_db(spec: FeatureSpec) -> float:
  """dB of the strongest time-domain gammatone channel for a full-scale 1 kHz sine."""
  t = np.arange(spec.segment_samples) / spec.sample_rate
  power = gammatone_power(np.sin(2 * np.pi * 1000.0 * t), spec)
  return float(10 * np.log10(np.median(power.max(axis=0))))


def log_normalise(power: np.ndarray, full_scale_db: float) -> np.ndarray:
  """dB relative to full scale, clipped at -100 dB, mapped affinely to about [-2, 2]."""
  db = 10.0 * np.log10(np.maximum(power, 1e-20)) - full_scale_db
  db = np.maximum(db, _FLOOR_DB)
  return ((db - _FLOOR_DB / 2) / _SCALE_DB).astype(np.float32)


@functools.lru_cache(maxsize=8)
def _view_blocks(spec: FeatureSpec) -> tuple[tuple[int, int, int, np.ndarray], ...]:
  """STFT filterbanks as dense blocks (first_bin, end_bin, first_row, weights [bins, rows]).

  Rows are the Mel bands, then (coch_method 'stft') the gammatone channels; each bank
  is cut into groups of
  _BLOCK_ROWS rows, and a group keeps only the bins where one of its weights exceeds
  _SKIP_BELOW times its row's peak. Mel weights are exactly zero outside their
  triangles; the gammatone weights skipped are below -120 dB (tests check that the
  result equals the dense product).
  """
  blocks = []
  banks = [(0, mel_filterbank(spec))]
  if spec.coch_method == 'stft':
    banks.append((spec.n_mels, gammatone_filterbank(spec)[0]))
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
  """Per-row offsets [rows of _view_blocks] that fold log_normalise into one affine map.

  normalised = 10 / _SCALE_DB * log10(power) - offset, then clipped at the floor.
  """
  mel_db, coch_db = _full_scale_db(spec)
  if spec.coch_method == 'stft':
    full_scale = np.repeat([mel_db, coch_db], [spec.n_mels, spec.n_coch])
  else:
    full_scale = np.full(spec.n_mels, mel_db)
  return _offsets(full_scale)


def _offsets(full_scale_db: np.ndarray) -> np.ndarray:
  return ((np.asarray(full_scale_db) + _FLOOR_DB / 2) / _SCALE_DB).astype(np.float32)


def _normalise_in_place(power: np.ndarray, offsets: np.ndarray) -> None:
  """log_normalise(power) in place, float32, with offsets from _offsets."""
  np.maximum(power, 1e-20, out=power)
  np.log10(power, out=power)
  power *= 10.0 / _SCALE_DB
  power -= offsets
  np.maximum(power, _FLOOR_DB / 2 / _SCALE_DB, out=power)  # the -100 dB floor: -2.


def compute_views(segments: np.ndarray, spec: FeatureSpec) -> tuple[np.ndarray, np.ndarray]:
  """Both views of a batch of segments.

  Each segment is analysed on its own (centred frames, zero padding at its edges), in
  chunks of about _CHUNK_FRAMES frames (STFT) or _CHUNK_SAMPLES samples (time-domain
  filterbank) so that memory stays small for long tracks. The Mel view equals
  log_normalise(mel_filterbank @ power_spectrogram(segments)); the cochleagram is made
  as spec.coch_method says: 'stft' from the same power spectrogram, 'gammatone' from
  gammatone_power(segments).

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
  _check_coch_method(spec)
  batch = segments[None] if segments.ndim == 1 else segments
  blocks, offsets = _view_blocks(spec), _view_offsets(spec)
  num_frames = 1 + batch.shape[1] // spec.hop_length
  out = np.empty((len(batch), num_frames, len(offsets)), np.float32)
  chunk = max(1, _CHUNK_FRAMES // num_frames)
  for start in range(0, len(batch), chunk):
    power = _frame_power(_frames(batch[start:start + chunk], spec), spec)
    power = power.reshape(-1, power.shape[-1])
    bands = out[start:start + chunk].reshape(-1, len(offsets))
    for first, end, row, weights in blocks:
      np.matmul(power[:, first:end], weights, out=bands[:, row:row + weights.shape[1]])
    _normalise_in_place(bands, offsets)
  views = np.swapaxes(out, 1, 2)
  mel = np.ascontiguousarray(views[:, :spec.n_mels])
  if spec.coch_method == 'stft':
    coch = np.ascontiguousarray(views[:, spec.n_mels:])
  else:
    coch = gammatone_power(batch, spec)
    _normalise_in_place(coch, _offsets(_gammatone_full_scale_db(spec)))
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
           'mel_filterbank', 'gammatone_filterbank', 'gammatone_response', 'gammatone_sos',
           'gammatone_power', 'power_spectrogram', 'log_normalise', 'num_segments',
           'COCH_METHODS']
