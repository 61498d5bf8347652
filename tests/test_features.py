"""The two views: Mel equals librosa's; the cochleagram is tuned like a cochlea."""

import librosa
import numpy as np
import pytest

from input_pipeline import features as F

SPEC = F.FeatureSpec()


def _sine(freq, amplitude=0.5, seconds=1.0, sr=SPEC.sample_rate):
  t = np.arange(int(seconds * sr)) / sr
  return (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def test_default_shapes_are_87_frames():
  mel, coch = F.compute_views(F.segment_audio(_sine(440, seconds=3.0), SPEC), SPEC)
  assert mel.shape == (3, 128, 87)
  assert coch.shape == (3, 84, 87)
  assert mel.dtype == coch.dtype == np.float32


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


def test_tone_at_a_centre_frequency_has_unit_gain():
  weights, centres = F.gammatone_filterbank(SPEC)
  bins = librosa.fft_frequencies(sr=SPEC.sample_rate, n_fft=SPEC.n_fft)
  for c in (20, 50, 80):
    nearest = int(np.argmin(np.abs(bins - centres[c])))
    expected = (1 + ((bins[nearest] - centres[c]) / (1.019 * F.erb_bandwidth(centres[c]))) ** 2) ** -4
    np.testing.assert_allclose(weights[c, nearest], expected, rtol=1e-5)
    assert weights[c].max() == pytest.approx(weights[c, nearest])


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
