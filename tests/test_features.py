"""The two views: Mel equals librosa's; the cochleagram is a gammatone filterbank."""

import dataclasses

import librosa
import numpy as np
import pytest
import scipy.signal

from damer_audio import features as F
from input_pipeline import synthetic_music

SPEC = F.FeatureSpec(coch_method='stft')
GAMMATONE = F.FeatureSpec(coch_method='gammatone')
BOTH = pytest.mark.parametrize('spec', [SPEC, GAMMATONE], ids=['stft', 'gammatone'])


def _sine(freq, amplitude=0.5, seconds=1.0, sr=SPEC.sample_rate):
  t = np.arange(int(seconds * sr)) / sr
  return (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.float32)


@BOTH
def test_default_shapes_are_87_frames(spec):
  mel, coch = F.compute_views(F.segment_audio(_sine(440, seconds=3.0), spec), spec)
  assert mel.shape == (3, 128, 87)
  assert coch.shape == (3, 84, 87)
  assert mel.dtype == coch.dtype == np.float32
  mel_1d, coch_1d = F.compute_views(_sine(440), spec)
  assert mel_1d.shape == (128, 87) and coch_1d.shape == (84, 87)


def _music(seconds=3.0, track=1):
  return synthetic_music.generate_track(track, duration_s=seconds).audio


@BOTH
def test_a_segment_gives_the_same_views_alone_and_in_a_batch(spec):
  segments = F.segment_audio(_music(), spec)
  mel, coch = F.compute_views(segments, spec)
  mel_1, coch_1 = F.compute_views(segments[1:2], spec)
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


@BOTH
@pytest.mark.parametrize('freq', [110.0, 440.0, 1000.0, 3150.0, 8000.0])
def test_cochleagram_peaks_at_the_channel_tuned_to_a_pure_tone(freq, spec):
  centres = F.gammatone_filterbank(spec)[1]
  _, coch = F.compute_views(_sine(freq)[None], spec)
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


@BOTH
def test_loudness_survives_normalisation(spec):
  quiet = F.compute_views(_sine(1000, 0.05)[None], spec)
  loud = F.compute_views(_sine(1000, 0.5)[None], spec)
  # 20 dB more level -> +20/25 in the normalised view at the tone's band, both views.
  for quiet_view, loud_view in zip(quiet, loud):
    band = int(np.argmax(loud_view[0, :, 40]))
    assert loud_view[0, band, 40] - quiet_view[0, band, 40] == pytest.approx(0.8, abs=0.02)


@BOTH
def test_silence_maps_to_the_floor(spec):
  mel, coch = F.compute_views(np.zeros((1, spec.segment_samples), np.float32), spec)
  assert np.all(mel == -2.0) and np.all(coch == -2.0)


def test_segment_audio_drops_incomplete_tail():
  audio = np.zeros(int(2.5 * SPEC.sample_rate), np.float32)
  assert F.segment_audio(audio, SPEC).shape == (2, SPEC.segment_samples)


def test_invalid_spec_is_rejected_with_the_field_named():
  with pytest.raises(ValueError, match='fmax'):
    F.FeatureSpec(fmax=20000.0).validate()


def test_unknown_coch_method_fails_naming_the_config_field():
  spec = F.FeatureSpec(coch_method='gammatones')
  with pytest.raises(ValueError, match=r'config\.features\.coch_method.*gammatones'):
    spec.validate()
  with pytest.raises(ValueError, match=r'config\.features\.coch_method'):
    F.compute_views(_sine(440), spec)


def test_coch_method_comes_from_the_config_and_defaults_to_stft():
  assert F.FeatureSpec.from_config({'n_mels': 64}).coch_method == 'stft'
  assert F.FeatureSpec.from_config({'coch_method': 'gammatone'}) == GAMMATONE


def test_the_mel_view_does_not_depend_on_the_coch_method():
  segments = F.segment_audio(_music(2.0), SPEC)
  np.testing.assert_array_equal(F.compute_views(segments, GAMMATONE)[0],
                                F.compute_views(segments, SPEC)[0])


def test_gammatone_sections_are_the_filters_of_gammatone_response():
  centres = F.erb_space(50.0, SPEC.sample_rate / 2, 84)
  sos = F.gammatone_sos(centres, SPEC.sample_rate)
  frequencies = np.linspace(10.0, SPEC.sample_rate / 2 - 10.0, 300)
  expected = F.gammatone_response(centres, frequencies, SPEC.sample_rate)
  for channel in (0, 20, 50, 83):
    _, response = scipy.signal.sosfreqz(sos[channel], worN=frequencies, fs=SPEC.sample_rate)
    np.testing.assert_allclose(np.abs(response) ** 2, expected[channel], rtol=1e-6,
                               atol=1e-14)


def test_gammatone_scale_matches_the_stft_cochleagram():
  # A stationary full-scale tone gives +2 at its channel with both methods; on music the
  # two cochleagrams sit at the same level (both are filter output power re that tone).
  _, coch = F.compute_views(_sine(1000.0, amplitude=1.0), GAMMATONE)
  assert np.median(coch[:, 10:-10].max(axis=0)) == pytest.approx(2.0, abs=0.01)
  segments = F.segment_audio(_music(3.0, track=4), SPEC)
  difference_db = 25 * np.mean(F.compute_views(segments, GAMMATONE)[1] -
                               F.compute_views(segments, SPEC)[1])
  assert abs(difference_db) < 2.0, difference_db


def test_gammatone_chunks_do_not_change_the_result(monkeypatch):
  segments = F.segment_audio(_music(3.0), GAMMATONE)
  whole = F.gammatone_power(segments, GAMMATONE)
  monkeypatch.setattr(F, '_CHUNK_SAMPLES', GAMMATONE.segment_samples)  # one per chunk
  np.testing.assert_allclose(F.gammatone_power(segments, GAMMATONE), whole, rtol=1e-5)


@pytest.mark.parametrize('hop', [250, 220])  # decimation by 2 at most; none
def test_gammatone_works_at_hops_that_do_not_divide_by_8(hop):
  spec = dataclasses.replace(GAMMATONE, hop_length=hop)
  _, coch = F.compute_views(_sine(1000.0)[None], spec)
  assert coch.shape == (1, 84, 1 + spec.segment_samples // hop)
  centres = F.gammatone_filterbank(spec)[1]
  assert np.argmax(coch[0, :, 10:-10].mean(axis=1)) == np.argmin(np.abs(centres - 1000))


def _click_widths(spec, position):
  """-6 dB widths in frames [n_coch] of each channel's response to one click."""
  audio = np.zeros(spec.segment_samples, np.float32)
  audio[position] = 0.5
  _, coch = F.compute_views(audio, spec)
  widths = []
  for response in coch:
    peak = int(np.argmax(response))
    above = response >= response[peak] - 6 / 25
    left = right = peak
    while left > 0 and above[left - 1]:
      left -= 1
    while right + 1 < len(above) and above[right + 1]:
      right += 1
    widths.append(right - left + 1)
  return np.array(widths), coch


@pytest.mark.parametrize('position', [11025, 11025 + 100])  # on and off the hop grid
def test_a_click_is_sharper_in_the_gammatone_cochleagram(position):
  centres = F.gammatone_filterbank(SPEC)[1]
  high = centres >= 500
  stft_widths, _ = _click_widths(SPEC, position)
  widths, coch = _click_widths(GAMMATONE, position)
  # The STFT's 2048-sample Hann window spreads a click over 4 frames at every
  # frequency; above 500 Hz the gammatone's own response is shorter than a hop, so the
  # click fills 1 frame (on a frame centre) or 2 (between two).
  assert np.all(stft_widths[high] >= 4), stft_widths
  assert np.all(widths[high] <= 2), widths
  assert np.all(widths <= stft_widths - 2), (widths, stft_widths)
  # Envelope delays are removed: every channel peaks at the click's frame.
  frame = position / GAMMATONE.hop_length
  assert np.all(np.abs(np.argmax(coch, axis=1) - frame) <= 1), np.argmax(coch, axis=1)


def _filterbank_reference(segments):
  """The gammatone package's filterbank output (float64, full rate), framed like ours."""
  gtgram = pytest.importorskip('gammatone.gtgram')
  centres = F.gammatone_filterbank(SPEC)[1]
  ear = 9.26449 * 24.7  # The package spaces centres up to one ERB step below f_max.
  step = np.log((centres[-1] + ear) / (centres[0] + ear)) / (len(centres) - 1)
  f_max = (centres[-1] + ear) * np.exp(step) - ear
  delays = np.round(3 / (2 * np.pi * 1.019 * F.erb_bandwidth(centres)) *
                    SPEC.sample_rate).astype(int)
  hop = SPEC.hop_length
  window = np.hanning(2 * hop + 1)[:-1] / hop
  def power(segment):
    frames = 1 + len(segment) // hop
    padded = np.zeros((frames + 1) * hop + delays.max())
    padded[hop:hop + len(segment)] = segment
    squared = gtgram.gtgram_xe(padded, SPEC.sample_rate, SPEC.n_coch, SPEC.coch_fmin, f_max)
    out = np.empty((len(centres), frames))
    for channel, delay in enumerate(delays):
      blocks = squared[channel, delay:delay + (frames + 1) * hop].reshape(frames + 1, hop)
      out[channel] = blocks[:-1] @ window[:hop] + blocks[1:] @ window[hop:]
    return out
  return np.stack([power(s) for s in segments])


def test_gammatone_power_matches_the_reference_filterbank():
  # Same filters and framing, run by the `gammatone` package in float64 at full rate:
  # what remains is float32 and the decimated low channels (0.07 dB on average).
  segments = np.concatenate([F.segment_audio(_music(2.0, track), SPEC) for track in (0, 3)])
  ours = 10 * np.log10(F.gammatone_power(segments, GAMMATONE))
  reference = 10 * np.log10(_filterbank_reference(segments))
  audible = reference > reference.max() - 60
  difference = np.abs(ours - reference)[audible]
  assert np.mean(difference) < 0.1, np.mean(difference)
  assert np.corrcoef(ours[audible], reference[audible])[0, 1] > 0.999
  # A sine at a channel's centre frequency gives that channel A^2 / 2.
  centres = F.gammatone_filterbank(SPEC)[1]
  t = np.arange(SPEC.segment_samples) / SPEC.sample_rate
  for channel in (5, 30, 60):
    tone = (0.1 * np.sin(2 * np.pi * centres[channel] * t)).astype(np.float32)
    power = F.gammatone_power(tone, GAMMATONE)[channel, 20:-20]
    np.testing.assert_allclose(power, 0.005, rtol=0.02)
