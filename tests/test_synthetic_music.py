"""Tests of the procedural demo dataset (input_pipeline/synthetic_music.py)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import signal

from input_pipeline import synthetic_music as sm

NUM_TRACKS = 40


@pytest.fixture(scope='module')
def tracks() -> list[sm.SyntheticTrack]:
  return [sm.generate_track(i) for i in range(NUM_TRACKS)]


def _section_audio(track: sm.SyntheticTrack, sec: dict) -> np.ndarray:
  sr = track.sample_rate
  return track.audio[int(sec['start_s'] * sr):int(sec['end_s'] * sr)].astype(np.float64)


def _sections(tracks):
  """(track, section) pairs over all tracks."""
  return [(t, s) for t in tracks for s in t.sections]


def test_deterministic():
  a = sm.generate_track(7, seed=3)
  b = sm.generate_track(7, seed=3)
  np.testing.assert_array_equal(a.audio, b.audio)
  np.testing.assert_array_equal(a.valence, b.valence)
  np.testing.assert_array_equal(a.arousal, b.arousal)
  assert a.sections == b.sections and a.style_id == b.style_id


def test_different_tracks_and_seeds_differ():
  a = sm.generate_track(7)
  assert not np.array_equal(a.audio, sm.generate_track(8).audio)
  assert not np.array_equal(a.audio, sm.generate_track(7, seed=1).audio)


@pytest.mark.parametrize('duration_s,sample_rate', [(8.0, 22050), (5.5, 16000), (0.5, 8000)])
def test_shapes_dtypes_ranges(duration_s, sample_rate):
  t = sm.generate_track(2, duration_s=duration_s, sample_rate=sample_rate)
  assert t.audio.dtype == np.float32 and t.audio.ndim == 1
  assert t.audio.shape == (int(round(duration_s * sample_rate)),)
  assert t.sample_rate == sample_rate
  assert np.all(np.isfinite(t.audio)) and np.abs(t.audio).max() <= 1.0
  for labels in (t.valence, t.arousal):
    assert labels.dtype == np.float32
    assert labels.shape == (math.floor(duration_s),)
    assert np.all(np.abs(labels) <= 1.0)
  assert 0 <= t.style_id < len(sm.STYLE_NAMES)
  assert t.sections[0]['start_s'] == 0.0 and t.sections[-1]['end_s'] == duration_s


def test_sections_cover_track_and_change_in_middle_third(tracks):
  num_two = 0
  for t in tracks:
    secs = t.sections
    assert len(secs) in (1, 2)
    if len(secs) == 2:
      num_two += 1
      cut = secs[0]['end_s']
      assert cut == secs[1]['start_s'] and 8 / 3 <= cut <= 16 / 3
  assert 0.25 * NUM_TRACKS <= num_two <= 0.75 * NUM_TRACKS


def test_audio_not_peak_normalised_and_no_clicks(tracks):
  peaks = np.array([np.abs(t.audio).max() for t in tracks])
  assert peaks.min() < 0.5  # quiet (low-arousal) tracks stay quiet
  for t in tracks:
    assert abs(float(t.audio[0])) < 1e-3 and abs(float(t.audio[-1])) < 1e-3


def test_both_classes_present(tracks):
  valence = np.concatenate([t.valence for t in tracks])
  arousal = np.concatenate([t.arousal for t in tracks])
  for labels in (valence, arousal):
    assert 0.3 < np.mean(labels > 0) < 0.7


def test_styles_cover_all_and_override():
  assert len(sm.STYLE_NAMES) >= 5
  ids = {sm.generate_track(i, duration_s=1.0).style_id for i in range(len(sm.STYLE_NAMES))}
  assert ids == set(range(len(sm.STYLE_NAMES)))
  assert sm.generate_track(0, duration_s=1.0, style_id=3).style_id == 3
  with pytest.raises(ValueError):
    sm.generate_track(0, style_id=len(sm.STYLE_NAMES))


def test_emotion_independent_of_style(tracks):
  # Exact: the latent emotion and labels do not depend on the style at all.
  base = sm.generate_track(11, duration_s=3.0, style_id=0)
  for style_id in range(1, len(sm.STYLE_NAMES)):
    other = sm.generate_track(11, duration_s=3.0, style_id=style_id)
    np.testing.assert_array_equal(base.valence, other.valence)
    np.testing.assert_array_equal(base.arousal, other.arousal)
    assert not np.array_equal(base.audio, other.audio)
  # Rough: every style gets both signs of both targets.
  for style_id in range(len(sm.STYLE_NAMES)):
    secs = [s for t in tracks if t.style_id == style_id for s in t.sections]
    for key in ('valence_target', 'arousal_target'):
      signs = {s[key] > 0 for s in secs}
      assert signs == {True, False}, (sm.STYLE_NAMES[style_id], key)


def test_labels_follow_section_targets(tracks):
  agree, total = 0, 0
  for t in tracks:
    for key, labels in (('valence_target', t.valence), ('arousal_target', t.arousal)):
      for second, label in enumerate(labels):
        sec = next(s for s in t.sections if s['start_s'] <= second < s['end_s'])
        assert abs(sec[key]) >= 0.25 and abs(sec[key]) <= 0.9
        agree += (label > 0) == (sec[key] > 0)
        total += 1
  assert agree / total > 0.93  # only seconds right after a change point may disagree


def test_cue_parameters_follow_targets(tracks):
  secs = [s for t in tracks for s in t.sections]
  v = np.array([s['valence_target'] for s in secs])
  a = np.array([s['arousal_target'] for s in secs])
  major = np.array([s['mode'] == 'major' for s in secs])
  assert np.mean(major == (v > 0)) > 0.8
  for key, target in (('dissonance', -v), ('register_midi', v), ('tempo_bpm', a),
                      ('notes_per_beat', a), ('loudness_db', a), ('brightness', a),
                      ('percussion_density', a)):
    values = np.array([s[key] for s in secs], dtype=float)
    assert np.corrcoef(values, target)[0, 1] > 0.8, key


def test_louder_when_aroused(tracks):
  level = {True: [], False: []}
  for t, s in _sections(tracks):
    level[s['arousal_target'] > 0].append(10 * np.log10(np.mean(_section_audio(t, s) ** 2)))
  assert np.mean(level[True]) > np.mean(level[False]) + 6.0
  assert np.median(level[True]) > np.max(level[False]) - 3.0


def test_brighter_when_aroused(tracks):
  centroid = {True: [], False: []}
  for t, s in _sections(tracks):
    f, p = signal.welch(_section_audio(t, s), t.sample_rate, nperseg=2048)
    centroid[s['arousal_target'] > 0].append(float((f * p).sum() / p.sum()))
  assert np.mean(centroid[True]) > 1.3 * np.mean(centroid[False])
  assert np.median(centroid[True]) > np.median(centroid[False])


def _third_log_ratio(track: sm.SyntheticTrack, sec: dict) -> float:
  """log(energy of major third / minor third above the tonic) in a 60-1500 Hz chroma."""
  f, p = signal.welch(_section_audio(track, sec), track.sample_rate, nperseg=4096)
  band = (f >= 60) & (f <= 1500)
  pitch_class = np.round(12 * np.log2(f[band] / 440) + 69).astype(int) % 12
  chroma = np.roll(np.bincount(pitch_class, np.sqrt(p[band]), 12), -sec['tonic_pc'])
  return float(np.log(chroma[4] / chroma[3]))


def test_major_sections_have_major_third(tracks):
  ratio = {True: [], False: []}
  for t, s in _sections(tracks):
    ratio[s['mode'] == 'major'].append(_third_log_ratio(t, s))
  assert np.mean(ratio[True]) > np.mean(ratio[False]) + 0.5
  correct = sum(r > 0 for r in ratio[True]) + sum(r <= 0 for r in ratio[False])
  assert correct / (len(ratio[True]) + len(ratio[False])) > 0.7


def test_karplus_strong_pitch():
  sr, freq = 22050, 330.0
  x = sm.karplus_strong(freq, sr // 2, sr, 0.8, 1.0, np.random.default_rng(0))
  spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x)), 8 * len(x)))
  peak_hz = np.argmax(spectrum) * sr / (8 * len(x))
  assert abs(1200 * np.log2(peak_hz / freq)) < 10  # cents
