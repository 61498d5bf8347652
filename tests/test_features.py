"""The two views: Mel equals librosa's; the cochleagram is a gammatone filterbank."""

import librosa
import numpy as np
import pytest

from input_pipeline import features as F
from input_pipeline import synthetic_music

SPEC = F.FeatureSpec()


def _sine(freq, amplitude=0.5, seconds=1.0, sr=SPEC.sample_rate):
  t = np.arange(int(seconds * sr)) / sr
  return (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def test_default_shapes_are_87_frames():
  mel, coch = F.compute_views(F.segment_audio(_sine(440, seconds=3.0), SPEC), SPEC)
  assert mel.shape == (3, 128, 87)
  assert coch.shape == (3, 84, 87)
  assert mel.dtype == coch.dtype == np.float32
  mel_1d, coch_1d = F.compute_views(_sine(440), SPEC)
  assert mel_1d.shape == (128, 87) and coch_1d.shape == (84, 87)


def _music(seconds=3.0, track=1):
  return synthetic_music.generate_track(track, duration_s=seconds).audio


def test_a_segment_gives_the_same_views_alone_and_in_a_batch():
  segments = F.segment_audio(_music(), SPEC)
  mel, coch = F.compute_views(segments, SPEC)
  mel_1, coch_1 = F.compute_views(segments[1:2], SPEC)
  np.testing.assert_allclose(mel_1[0], mel[1], atol=1e-5)
  np.testing.assert_allclose(coch_1[0], coch[1], atol=1e-5)


def test_power_spectrogram_matches_librosa_stft():
  audio = _music(1.0)
  ref = np.abs(librosa.stft(audio, n_fft=SPEC.n_fft, hop_length=SPEC.hop_length,
                            center=True, pad_mode='constant')) ** 2
  ours = F.power_spectrogram(audio, SPEC)
  assert ours.shape == ref.shape and ours.dtype == np.float32
  np.testing.assert_allclose(ours, ref, rtol=1e-4, atol=1e-6 * ref.max())


@pytest.mark.parametrize('kind', ['music', 'full_scale_noise'])
def test_compute_views_equals_the_dense_filterbank_products(kind):
  rng = np.random.default_rng(1)
  if kind == 'music':
    segments = F.segment_audio(_music(), SPEC)
  else:
    segments = rng.uniform(-1, 1, (2, SPEC.segment_samples)).astype(np.float32)
  mel, coch = F.compute_views(segments, SPEC)
  power = F.power_spectrogram(segments, SPEC)
  mel_db, coch_db = F._full_scale_db(SPEC)
  dense_mel = F.log_normalise(np.matmul(F.mel_filterbank(SPEC), power), mel_db)
  dense_coch = F.log_normalise(np.matmul(F.gammatone_filterbank(SPEC)[0], power), coch_db)
  np.testing.assert_allclose(mel, dense_mel, atol=1e-5)  # 1e-5 = 0.00025 dB
  np.testing.assert_allclose(coch, dense_coch, atol=1e-5)


def test_mel_matches_librosa():
  rng = np.random.default_rng(0)
  audio = (0.1 * rng.standard_normal(SPEC.segment_samples)).astype(np.float32)
  ours = F.mel_filterbank(SPEC) @ F.power_spectrogram(audio, SPEC)
  ref = librosa.feature.melspectrogram(
      y=audio, sr=SPEC.sample_rate, n_fft=SPEC.n_fft, hop_length=SPEC.hop_length,
      center=True, pad_mode='constant', power=2.0, n_mels=SPEC.n_mels, fmin=SPEC.mel_fmin,
      fmax=SPEC.sample_rate / 2)
  np.testing.assert_allclose(ours, ref, rtol=1e-4, atol=1e-8)
  mel, _ = F.compute_views(audio[None], SPEC)
  np.testing.assert_allclose(mel[0], F.log_normalise(ref, F._full_scale_db(SPEC)[0]),
                             atol=1e-4)


def test_erb_centres_ascend_and_span_the_range():
  centres = F.gammatone_filterbank(SPEC)[1]
  assert len(centres) == 84
  assert np.all(np.diff(centres) > 0)
  np.testing.assert_allclose([centres[0], centres[-1]], [50.0, SPEC.sample_rate / 2])
  erb_numbers = 21.4 * np.log10(1 + 0.00437 * centres)
  np.testing.assert_allclose(np.diff(erb_numbers), np.diff(erb_numbers)[0], rtol=1e-6)


@pytest.mark.parametrize('freq', [110.0, 440.0, 1000.0, 3150.0, 8000.0])
def test_cochleagram_peaks_at_the_channel_tuned_to_a_pure_tone(freq):
  centres = F.gammatone_filterbank(SPEC)[1]
  _, coch = F.compute_views(_sine(freq)[None], SPEC)
  profile = coch[0, :, 10:-10].mean(axis=1)
  peak = int(np.argmax(profile))
  assert peak == int(np.argmin(np.abs(np.log(centres / freq)))), (freq, centres[peak])
  # A gammatone is a band-pass filter: channels 10 away respond far less (> 20 dB).
  far = [c for c in (peak - 10, peak + 10) if 0 <= c < len(centres)]
  assert all(profile[peak] - profile[c] > 20 / 25 for c in far)


def test_gammatone_has_unit_gain_at_its_centre_and_the_analog_shape_near_it():
  centres = F.erb_space(50.0, SPEC.sample_rate / 2, 84)
  gain = F.gammatone_response(centres, centres, SPEC.sample_rate).diagonal()
  np.testing.assert_allclose(gain, 1.0, rtol=1e-6)
  # Away from DC and Nyquist, the digital gammatone is the analog 4th-order response
  # (1 + ((f - fc) / b)^2)^-4 with b = 1.019 ERB(fc), within 0.2 dB over fc +- 2b.
  for fc in (200.0, 500.0, 1000.0, 3000.0, 5000.0):
    b = 1.019 * F.erb_bandwidth(fc)
    f = np.linspace(fc - 2 * b, fc + 2 * b, 41)
    digital = F.gammatone_response(np.array([fc]), f, SPEC.sample_rate)[0]
    analog = (1 + ((f - fc) / b) ** 2) ** -4
    np.testing.assert_array_less(np.abs(10 * np.log10(digital / analog)), 0.2)
  weights, _ = F.gammatone_filterbank(SPEC)
  assert weights.shape == (84, 1 + SPEC.n_fft // 2) and weights.dtype == np.float32


def _gtgram_cochleagram(segments):
  """gammatone.gtgram (time domain) on zero-padded segments, frames aligned with ours."""
  gtgram = pytest.importorskip('gammatone.gtgram')
  centres = F.gammatone_filterbank(SPEC)[1]
  ear = 9.26449 * 24.7  # The package spaces centres up to one ERB step below f_max.
  step = np.log((centres[-1] + ear) / (centres[0] + ear)) / (len(centres) - 1)
  f_max = (centres[-1] + ear) * np.exp(step) - ear
  def power(segment):
    amplitude = gtgram.gtgram(
        np.pad(segment.astype(np.float64), SPEC.n_fft // 2), SPEC.sample_rate,
        SPEC.n_fft / SPEC.sample_rate, SPEC.hop_length / SPEC.sample_rate,
        SPEC.n_coch, SPEC.coch_fmin, f_max)
    return amplitude ** 2
  tone = _sine(1000.0, amplitude=1.0)
  full_scale_db = 10 * np.log10(np.median(power(tone).max(axis=0)))
  return F.log_normalise(np.stack([power(s) for s in segments]), full_scale_db)


def test_cochleagram_correlates_with_the_time_domain_gammatone_reference():
  segments = np.concatenate([F.segment_audio(_music(2.0, track), SPEC) for track in (0, 2)])
  _, coch = F.compute_views(segments, SPEC)
  reference = _gtgram_cochleagram(segments)
  assert reference.shape == coch.shape
  correlation = np.corrcoef(coch.ravel(), reference.ravel())[0, 1]
  assert correlation >= 0.98, correlation


def test_loudness_survives_normalisation():
  quiet, _ = F.compute_views(_sine(1000, 0.05)[None], SPEC)
  loud, _ = F.compute_views(_sine(1000, 0.5)[None], SPEC)
  # 20 dB more level -> +20/25 in the normalised view at the tone's band.
  band = int(np.argmax(loud[0, :, 40]))
  assert loud[0, band, 40] - quiet[0, band, 40] == pytest.approx(0.8, abs=0.02)


def test_silence_maps_to_the_floor():
  mel, coch = F.compute_views(np.zeros((1, SPEC.segment_samples), np.float32), SPEC)
  assert np.all(mel == -2.0) and np.all(coch == -2.0)


def test_segment_audio_drops_incomplete_tail():
  audio = np.zeros(int(2.5 * SPEC.sample_rate), np.float32)
  assert F.segment_audio(audio, SPEC).shape == (2, SPEC.segment_samples)


def test_invalid_spec_is_rejected_with_the_field_named():
  with pytest.raises(ValueError, match='fmax'):
    F.FeatureSpec(fmax=20000.0).validate()
