"""Deterministic procedural music with per-second valence/arousal labels (demo data).

`generate_track` renders a short mono instrumental piece (chords, bass, melody and an
optional percussion layer) from a latent emotion per section, and returns the audio with
per-second annotations that follow that emotion the way a human annotator would (lag and
noise). It needs only numpy and scipy.

Each track has one section, or (probability 0.5, tracks of >= 3 s) two sections that
change at a whole second in the middle third. Every section draws its target valence v*
and arousal a* independently, each uniform over +-[0.25, 0.9], and independently of the
instrumentation style. The targets set the musical cues below (N(0, s) is Gaussian
jitter drawn per section, so a cue can be slightly off; the cues together decide the sign
of both labels reliably):

| cue                | from | mapping                                 | range            |
|--------------------|------|-----------------------------------------|------------------|
| mode               | v*   | major if v* > 0 else minor; flip p=0.1  | major / minor    |
| dissonance d       | v*   | clip(0.5 - 1.2 v* + N(0, 0.06), 0, 1)   | 0 .. 1           |
|   chord additions  |      | ~3.5 d - 0.5 of m2/M2/tritone/m6/maj7   | 0 .. 3 per chord |
|   melody           |      | chromatic neighbour w.p. 0.5 d          | 0 .. 0.5         |
|   detuning         |      | chord voices +-30 d cents (beating)     | 0 .. 30 cents    |
| register_midi      | v*   | 62 + 8 v* + N(0, 1); chords -10, bass -22 | ~53 .. 71 (melody) |
| tempo_bpm          | a*   | 115 + 55 a* + N(0, 5)                   | ~60 .. 170       |
| notes_per_beat     | a*   | round(2.5 + 1.7 a* + N(0, 0.3))         | 1 .. 4           |
| loudness_db        | a*   | -21 + 10 a* + N(0, 1), section RMS dBFS | ~-31 .. -11      |
| brightness         | a*   | clip(0.5 + 0.5 a* + N(0, 0.06), 0, 1)   | 0 .. 1           |
| percussion_density | a*   | clip(0.45 + 0.55 a* + N(0, 0.06), .02, 1) | 0.02 .. 1      |
| articulation       | a*   | 0.95 - 0.2 (a* + 1): note length / step | 0.55 .. 0.95     |

Brightness sets the additive rolloff, the FM index, the pluck excitation and a one-pole
lowpass (1.2 kHz -> 11 kHz); percussion density is the hit probability per 16th slot.

Labels: the piecewise-constant section targets are sampled at 10 Hz, smoothed by a
one-pole filter with a 1 s time constant (annotator lag at change points), AR(1) noise
(std 0.08, 2 s correlation time) is added, and each second's label is the mean over that
second, clipped to [-1, 1].

Randomness: `np.random.SeedSequence([seed, track_number])` is split into three streams:
latents (emotion and cues), score (notes) and synthesis (noise in instruments). Latents
and labels therefore depend only on (seed, track_number, duration_s), never on the style
or the sample rate.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Callable, NamedTuple

import numpy as np
from scipy import signal

STYLE_NAMES: tuple[str, ...] = (
    'additive_organ', 'fm_keys', 'plucked_string', 'fm_bell', 'percussive_mallet')

# Instrumentation family per style: melody / chord / bass instruments and a drum kit.
_STYLE_KITS: dict[str, dict] = {
    'additive_organ': dict(melody='organ', chord='pad', bass='organ', perc=('kick', 'hat')),
    'fm_keys': dict(melody='fm_keys', chord='fm_keys', bass='fm_keys',
                    perc=('kick', 'snare', 'hat')),
    'plucked_string': dict(melody='pluck', chord='pluck', bass='pluck', perc=('tom', 'shaker')),
    'fm_bell': dict(melody='fm_bell', chord='pad', bass='organ', perc=('kick', 'shaker', 'hat')),
    'percussive_mallet': dict(melody='mallet', chord='pad', bass='mallet',
                              perc=('tom', 'kick', 'hat')),
}
_SUSTAINED = frozenset({'organ', 'pad'})  # held for the whole note; others decay.

SCALES = {'major': np.array([0, 2, 4, 5, 7, 9, 11]), 'minor': np.array([0, 2, 3, 5, 7, 8, 10])}
_NUMERALS = {'major': ('I', 'ii', 'iii', 'IV', 'V', 'vi', 'vii°'),
             'minor': ('i', 'ii°', 'III', 'iv', 'v', 'VI', 'VII')}
# Chord roots as 0-based scale degrees, one chord per bar of 4 beats.
PROGRESSIONS = {
    'major': ((0, 3, 4, 0), (0, 5, 3, 4), (0, 4, 5, 3), (1, 4, 0, 0)),
    'minor': ((0, 3, 4, 0), (0, 5, 2, 6), (0, 3, 6, 2), (0, 5, 3, 4)),
}
# Semitones above the chord root: m2, M2 (cluster), tritone, m6 (against the 5th), maj7.
_DISSONANT_ADDITIONS = (1, 2, 6, 8, 11)
_VOICE_GAIN = {'melody': 1.0, 'chord': 0.32, 'bass': 0.5,
               'kick': 0.9, 'snare': 0.45, 'hat': 0.22, 'tom': 0.7, 'shaker': 0.25}

LABEL_RATE_HZ = 10
LABEL_LAG_S = 1.0
LABEL_NOISE_STD = 0.08
LABEL_NOISE_CORR_S = 2.0


@dataclasses.dataclass(frozen=True)
class SyntheticTrack:
  """One generated track.

  Attributes:
    audio: float32 [num_samples], mono, peak <= 1.0 (not peak-normalised: section
      loudness is a cue).
    sample_rate: Hz.
    valence: float32 [num_seconds], per-second label in [-1, 1].
    arousal: float32 [num_seconds], per-second label in [-1, 1].
    style_id: index into STYLE_NAMES.
    sections: latent parameters of each section (see `_section_cues`), for docs/debugging.
  """
  audio: np.ndarray
  sample_rate: int
  valence: np.ndarray
  arousal: np.ndarray
  style_id: int
  sections: tuple[dict, ...]


class Note(NamedTuple):
  onset_s: float
  dur_s: float
  midi: float
  velocity: float
  voice: str  # 'melody', 'chord', 'bass' or a drum name.


# ----------------------------------------------------------------------------- latents


def _draw_target(rng: np.random.Generator) -> float:
  """Uniform over +-[0.25, 0.9]: the ambiguous middle is avoided."""
  return float(rng.choice([-1.0, 1.0]) * rng.uniform(0.25, 0.9))


def _section_bounds(rng: np.random.Generator, duration_s: float) -> list[tuple[float, float]]:
  """One section, or two split at a whole second in the middle third (prob. 0.5)."""
  candidates = [c for c in range(1, int(duration_s))
                if duration_s / 3 <= c <= 2 * duration_s / 3]
  if rng.uniform() < 0.5 and candidates:
    cut = float(rng.choice(candidates))
    return [(0.0, cut), (cut, float(duration_s))]
  return [(0.0, float(duration_s))]


def _section_cues(rng: np.random.Generator, v: float, a: float) -> dict:
  """Maps target valence v and arousal a to musical cues (table in module docstring)."""
  major = (v > 0) != (rng.uniform() < 0.1)
  mode = 'major' if major else 'minor'
  progression = PROGRESSIONS[mode][rng.integers(len(PROGRESSIONS[mode]))]
  return dict(
      valence_target=v, arousal_target=a, mode=mode,
      progression=tuple(_NUMERALS[mode][d] for d in progression),
      progression_degrees=tuple(int(d) for d in progression),
      dissonance=float(np.clip(0.5 - 1.2 * v + rng.normal(0, 0.06), 0, 1)),
      register_midi=float(62 + 8 * v + rng.normal(0, 1.0)),
      tempo_bpm=float(115 + 55 * a + rng.normal(0, 5)),
      notes_per_beat=int(np.clip(round(2.5 + 1.7 * a + rng.normal(0, 0.3)), 1, 4)),
      loudness_db=float(-21 + 10 * a + rng.normal(0, 1.0)),
      brightness=float(np.clip(0.5 + 0.5 * a + rng.normal(0, 0.06), 0, 1)),
      percussion_density=float(np.clip(0.45 + 0.55 * a + rng.normal(0, 0.06), 0.02, 1)),
      articulation=float(0.95 - 0.2 * (a + 1)),
  )


def _draw_sections(rng: np.random.Generator, duration_s: float) -> tuple[dict, ...]:
  """Section boundaries, emotion targets and cues; the tonic is shared by the track."""
  tonic_pc = int(rng.integers(12))
  sections = []
  for start, end in _section_bounds(rng, duration_s):
    v, a = _draw_target(rng), _draw_target(rng)
    cues = _section_cues(rng, v, a)
    sections.append(dict(start_s=start, end_s=end, tonic_pc=tonic_pc, **cues,
                         consonance=1.0 - cues['dissonance']))
  return tuple(sections)


# ----------------------------------------------------------------------------- labels


def annotate(sections: tuple[dict, ...], duration_s: float, rng: np.random.Generator,
             key: str) -> np.ndarray:
  """Annotator-like per-second labels for `key` ('valence_target' or 'arousal_target').

  Returns float32 [floor(duration_s)]: one-pole smoothed targets (LABEL_LAG_S time
  constant) plus AR(1) noise, averaged over each second and clipped to [-1, 1].
  """
  num_seconds = int(math.floor(duration_s))
  t = (np.arange(num_seconds * LABEL_RATE_HZ) + 0.5) / LABEL_RATE_HZ
  target = np.full(t.shape, sections[0][key])
  for sec in sections[1:]:
    target[t >= sec['start_s']] = sec[key]
  alpha = 1.0 - math.exp(-1.0 / (LABEL_RATE_HZ * LABEL_LAG_S))
  start = (1 - alpha) * target[:1].sum()  # the annotator starts on the first target
  smooth, _ = signal.lfilter([alpha], [1.0, alpha - 1.0], target, zi=[start])
  rho = math.exp(-1.0 / (LABEL_RATE_HZ * LABEL_NOISE_CORR_S))
  innov = rng.normal(0, LABEL_NOISE_STD * math.sqrt(1 - rho**2), t.shape)
  innov[:1] = rng.normal(0, LABEL_NOISE_STD, innov[:1].shape)  # stationary start
  noise = signal.lfilter([1.0], [1.0, -rho], innov)
  per_second = (smooth + noise).reshape(num_seconds, LABEL_RATE_HZ).mean(axis=1)
  return np.clip(per_second, -1, 1).astype(np.float32)


# ----------------------------------------------------------------------------- score


def degree_to_midi(degree: np.ndarray, scale: np.ndarray, tonic_midi: int) -> np.ndarray:
  """Scale degrees (any integers, 0 = tonic) -> MIDI pitches, same shape."""
  degree = np.asarray(degree)
  return tonic_midi + 12 * (degree // 7) + scale[degree % 7]


def _tonic_near(tonic_pc: int, midi: float) -> int:
  """The MIDI note of pitch class tonic_pc closest to `midi`."""
  return int(tonic_pc + 12 * round((midi - tonic_pc) / 12))


def _bar_starts(sec: dict) -> np.ndarray:
  """Onsets (s) of the bars (4 beats) covering the section."""
  bar_s = 4 * 60.0 / sec['tempo_bpm']
  return sec['start_s'] + bar_s * np.arange(math.ceil((sec['end_s'] - sec['start_s']) / bar_s))


def _place(pitch_classes: np.ndarray, low: float) -> np.ndarray:
  """Each pitch class placed in the octave window [low, low + 12): MIDI, same shape."""
  return low + (np.asarray(pitch_classes) - low) % 12


def _chord_pitches(sec: dict, degree: int, rng: np.random.Generator) -> tuple[list, float]:
  """Voicing of the chord on `degree`: close triad + root octave, plus dissonant additions.

  The triad is voiced in the octave centred 10 semitones below register_midi (so the
  chord register follows register_midi), the bass 22 semitones below it. Returns
  (list of MIDI pitches, detuned by +-30 x dissonance cents; bass MIDI pitch).
  """
  scale = SCALES[sec['mode']]
  centre = sec['register_midi'] - 10
  triad_pc = degree_to_midi(np.array([degree, degree + 2, degree + 4]), scale, sec['tonic_pc'])
  triad = _place(triad_pc, centre - 6)
  root = float(_place(triad_pc[0], centre - 6))
  pitches = list(triad) + [root + 12 if root + 12 < centre + 9 else root - 12]
  n_add = int(np.clip(3.5 * sec['dissonance'] - 0.5 + rng.uniform(), 0, 3))
  for extra in rng.choice(_DISSONANT_ADDITIONS, size=n_add, replace=False):
    pitches.append(float(_place(triad_pc[0] + extra, centre - 6)))
  cents = 30 * sec['dissonance'] * np.where(np.arange(len(pitches)) % 2 == 0, 1, -1)
  bass = float(_place(triad_pc[0], centre - 18))
  return list(np.asarray(pitches, dtype=float) + cents / 100), bass


def _chord_notes(sec: dict, instrument: str, rng: np.random.Generator) -> list[Note]:
  """Chord and bass notes: one chord per bar, re-struck per beat for decaying timbres."""
  beat_s = 60.0 / sec['tempo_bpm']
  hits_per_bar = 1 if instrument in _SUSTAINED else (2 if sec['notes_per_beat'] <= 2 else 4)
  notes = []
  for i, bar in enumerate(_bar_starts(sec)):
    degree = sec['progression_degrees'][i % 4]
    pitches, bass = _chord_pitches(sec, degree, rng)
    step = 4 * beat_s / hits_per_bar
    for h in range(hits_per_bar):
      onset = bar + h * step
      if onset >= sec['end_s']:
        break
      dur = min(step * 0.97, sec['end_s'] - onset)
      vel = 0.9 if h == 0 else 0.7
      strum = 0.012 if instrument == 'pluck' else 0.0
      notes += [Note(onset + k * strum, dur, p, vel, 'chord') for k, p in enumerate(pitches)]
      if h % 2 == 0:
        notes.append(Note(onset, min(2 * step, sec['end_s'] - onset) * 0.97, bass, 0.9, 'bass'))
  return notes


def _melody_notes(sec: dict, rng: np.random.Generator) -> list[Note]:
  """Random-walk melody on the scale within +-4 degrees of register_midi; chord tones on
  beats, chromatic neighbours with probability 0.5 x dissonance."""
  scale = SCALES[sec['mode']]
  tonic = _tonic_near(sec['tonic_pc'], sec['register_midi'] - 6)
  candidates = np.arange(-3, 12)
  centre = int(candidates[np.argmin(np.abs(degree_to_midi(candidates, scale, tonic)
                                           - sec['register_midi']))])
  step_s = 60.0 / sec['tempo_bpm'] / sec['notes_per_beat']
  bar_s = 4 * 60.0 / sec['tempo_bpm']
  n = int(math.ceil((sec['end_s'] - sec['start_s']) / step_s - 1e-9))
  moves = rng.choice([-2, -1, 0, 1, 2], size=n, p=[0.15, 0.3, 0.1, 0.3, 0.15])
  degree, notes = centre, []
  for i in range(n):
    degree = int(np.clip(degree + moves[i], centre - 4, centre + 4))
    onset = sec['start_s'] + i * step_s
    on_beat = i % sec['notes_per_beat'] == 0
    if on_beat and rng.uniform() < 0.6:  # snap to a chord tone of the current bar's chord
      root = sec['progression_degrees'][int((onset - sec['start_s']) // bar_s) % 4]
      tones = root + 7 * (degree // 7) + np.array([-7, -5, -3, 0, 2, 4, 7, 9, 11])
      degree = int(tones[np.argmin(np.abs(tones - degree))])
    midi = float(degree_to_midi(np.array(degree), scale, tonic))
    if rng.uniform() < 0.5 * sec['dissonance']:
      midi += float(rng.choice([-1, 1]))
    if rng.uniform() < 0.08:  # rest
      continue
    vel = (0.95 if on_beat else 0.75) + rng.uniform(-0.08, 0.08)
    dur = min(step_s * sec['articulation'], sec['end_s'] - onset)
    notes.append(Note(onset, dur, midi, vel, 'melody'))
  return notes


def _slot_probabilities(drum: str, density: float) -> np.ndarray:
  """Hit probability for each of the 16 sixteenth-note slots of a bar: [16]."""
  slots = np.arange(16)
  main = {'kick': (slots % 8 == 0), 'snare': (slots % 8 == 4), 'hat': (slots % 2 == 0),
          'tom': np.isin(slots, [0, 6, 10]), 'shaker': (slots % 4 == 0)}[drum]
  return np.where(main, min(1.0, 0.2 + density), 0.6 * density**2)


def _percussion_notes(sec: dict, kit: tuple[str, ...], rng: np.random.Generator) -> list[Note]:
  """Drum hits on a 16th grid; density and velocity grow with arousal."""
  density = sec['percussion_density']
  sixteenth = 60.0 / sec['tempo_bpm'] / 4
  notes = []
  for bar in _bar_starts(sec):
    onsets = bar + sixteenth * np.arange(16)
    for drum in kit:
      hits = rng.uniform(size=16) < _slot_probabilities(drum, density)
      vel = 0.35 + 0.6 * density + rng.uniform(-0.08, 0.08, 16)
      notes += [Note(float(o), 0.0, 0.0, float(v), drum)
                for o, v, h in zip(onsets, vel, hits) if h and o < sec['end_s']]
  return notes


def compose_section(sec: dict, style: str, rng: np.random.Generator) -> list[Note]:
  """All notes (melody, chords, bass, drums) of one section."""
  kit = _STYLE_KITS[style]
  return (_chord_notes(sec, kit['chord'], rng) + _melody_notes(sec, rng)
          + _percussion_notes(sec, kit['perc'], rng))


# ----------------------------------------------------------------------------- instruments


def midi_to_hz(midi: float) -> float:
  return 440.0 * 2.0 ** ((midi - 69.0) / 12.0)


def _envelope(n_hold: int, sr: int, attack_s: float, release_s: float,
              decay_s: float = math.inf) -> np.ndarray:
  """Raised-cosine attack, hold (with optional exponential decay), raised-cosine release.

  Returns [n_hold + release samples]; starts and ends at 0 (no clicks).
  """
  n_rel = max(1, int(release_s * sr))
  n = n_hold + n_rel
  env = np.ones(n)
  n_att = max(1, min(int(attack_s * sr), n_hold))
  env[:n_att] = np.sin(0.5 * np.pi * np.arange(n_att) / n_att) ** 2
  env[n_hold:] *= np.cos(0.5 * np.pi * np.arange(n_rel) / n_rel) ** 2
  if math.isfinite(decay_s):
    env *= np.exp(-np.arange(n) / (decay_s * sr))
  return env


@functools.lru_cache(maxsize=256)
def _wavetable(kind: str, brightness_step: int, size: int = 4096) -> np.ndarray:
  """One period [size] of an additive tone; brightness_step in 0..20 sets the rolloff."""
  b = brightness_step / 20
  k = np.arange(1, 13)
  if kind == 'organ':  # drawbar-like: all harmonics, octaves emphasised
    amps = k ** -(2.2 - 1.5 * b) * np.where(np.isin(k, [1, 2, 4, 8]), 1.0, 0.6)
  else:  # pad: softer, odd harmonics a little stronger
    amps = k ** -(2.6 - 1.4 * b) * np.where(k % 2 == 1, 1.0, 0.7)
  phase = np.arange(size) / size
  table = (amps[:, None] * np.sin(2 * np.pi * k[:, None] * phase)).sum(axis=0)
  return table / np.abs(table).max()


def _table_osc(table: np.ndarray, freq: float, n: int, sr: int) -> np.ndarray:
  """Wavetable oscillator (nearest-sample lookup): [n]. Harmonics above ~0.45 sr are cut."""
  max_harm = int(0.45 * sr / freq)
  if max_harm < 12:  # rebuild a band-limited table on the fly (rare: very high notes)
    spec = np.fft.rfft(table)
    spec[max_harm + 1:] = 0
    table = np.fft.irfft(spec, len(table))
  idx = (np.arange(n) * (freq * len(table) / sr)).astype(np.int64) % len(table)
  return table[idx]


def _organ(freq, n_hold, vel, bright, sr, rng):
  env = _envelope(n_hold, sr, 0.012, 0.08)
  return vel * env * _table_osc(_wavetable('organ', round(20 * bright)), freq, len(env), sr)


def _pad(freq, n_hold, vel, bright, sr, rng):
  env = _envelope(n_hold, sr, 0.15, 0.3)
  return vel * env * _table_osc(_wavetable('pad', round(20 * bright)), freq, len(env), sr)


def _fm(freq, n_hold, vel, sr, ratio, index, index_decay_s, decay_s, release_s):
  """Two-operator FM: sin(2 pi f t + I(t) sin(2 pi ratio f t)), I decays exponentially."""
  env = _envelope(n_hold, sr, 0.003, release_s, decay_s)
  t = np.arange(len(env)) / sr
  mod = index * np.exp(-t / index_decay_s) * np.sin(2 * np.pi * ratio * freq * t)
  return vel * env * np.sin(2 * np.pi * freq * t + mod)


def _fm_keys(freq, n_hold, vel, bright, sr, rng):
  return _fm(freq, n_hold, vel, sr, ratio=1.0, index=0.6 + 3.0 * bright,
             index_decay_s=0.25, decay_s=0.9, release_s=0.08)


def _fm_bell(freq, n_hold, vel, bright, sr, rng):
  n_hold = max(n_hold, int(0.25 * sr))  # bells ring on
  return _fm(freq, n_hold, vel, sr, ratio=3.5, index=0.8 + 3.5 * bright,
             index_decay_s=0.6, decay_s=0.8, release_s=0.15)


def _mallet(freq, n_hold, vel, bright, sr, rng):
  """Marimba-like: partials tuned to 1, 4 and 10 x f0, higher partials decay faster."""
  env = _envelope(max(n_hold, int(0.2 * sr)), sr, 0.002, 0.08)
  t = np.arange(len(env)) / sr
  out = np.zeros(len(env))
  for ratio, amp, decay in ((1.0, 1.0, 0.6), (4.0, 0.1 + 0.3 * bright, 0.15),
                            (10.0, 0.15 * bright, 0.05)):
    if ratio * freq < 0.45 * sr:
      out += amp * np.exp(-t / decay) * np.sin(2 * np.pi * ratio * freq * t)
  return vel * env * out


def karplus_strong(freq: float, n_out: int, sr: int, brightness: float, decay_s: float,
                   rng: np.random.Generator) -> np.ndarray:
  """Plucked string [n_out]: Karplus-Strong, vectorised one period at a time.

  The delay line has an integer length N; the loop filter (2-point average) adds half a
  sample, so the string is run at an internal rate (N + 0.5) * freq (exact pitch) and
  linearly resampled to `sr`.
  """
  period = max(2, int(round(sr / freq - 0.5)))
  rate = (period + 0.5) * freq
  n_int = int(math.ceil(n_out * rate / sr)) + 2
  n_blocks = n_int // period + 2
  width = 1 + int(round(4 * (1 - brightness)))  # duller excitation for low brightness
  exc = np.convolve(rng.uniform(-1, 1, period + width), np.ones(width) / width, 'valid')[:period]
  y = np.zeros(1 + n_blocks * period)
  y[1:1 + period] = exc - exc.mean()
  gain = 0.5 * math.exp(-1.0 / (freq * decay_s))
  for k in range(1, n_blocks):
    s = 1 + k * period
    y[s:s + period] = gain * (y[s - period:s] + y[s - period - 1:s - 1])
  return np.interp(np.arange(n_out) * (rate / sr), np.arange(len(y) - 1), y[1:])


def _pluck(freq, n_hold, vel, bright, sr, rng):
  env = _envelope(n_hold, sr, 0.002, 0.05)
  return 2.0 * vel * env * karplus_strong(freq, len(env), sr, bright, 0.8, rng)


def _membrane(vel, sr, f_start, f_end, sweep_s, decay_s, length_s):
  """Pitch-swept sine with exponential decay (kick / tom)."""
  n = int(length_s * sr)
  t = np.arange(n) / sr
  f = f_end + (f_start - f_end) * np.exp(-t / sweep_s)
  env = _envelope(n - int(0.01 * sr), sr, 0.001, 0.01, decay_s)
  return vel * env * np.sin(2 * np.pi * np.cumsum(f) / sr)


def _noise_hit(vel, sr, rng, decay_s, length_s, highpass_order):
  """Exponentially decaying noise burst, high-passed by repeated differencing."""
  n = int(length_s * sr)
  noise = rng.standard_normal(n + highpass_order)
  noise = np.diff(noise, highpass_order) / 2 ** highpass_order * 2
  env = _envelope(n - int(0.005 * sr), sr, 0.001, 0.005, decay_s)
  return vel * env * noise


def _drum(name: str, vel: float, bright: float, sr: int, rng: np.random.Generator):
  if name == 'kick':
    return _membrane(vel, sr, 150, 48, 0.035, 0.18, 0.35)
  if name == 'tom':
    return _membrane(vel, sr, 240, 110, 0.05, 0.15, 0.3)
  if name == 'snare':
    return 0.8 * _noise_hit(vel, sr, rng, 0.07, 0.2, 1) + 0.5 * _membrane(
        vel, sr, 220, 180, 0.02, 0.05, 0.2)
  if name == 'hat':
    return _noise_hit(vel * (0.5 + bright), sr, rng, 0.025, 0.08, 2)
  return _noise_hit(vel, sr, rng, 0.04, 0.1, 1)  # shaker


_INSTRUMENTS: dict[str, Callable] = {
    'organ': _organ, 'pad': _pad, 'fm_keys': _fm_keys, 'fm_bell': _fm_bell,
    'mallet': _mallet, 'pluck': _pluck}


# ----------------------------------------------------------------------------- rendering


def _render_note(note: Note, style: str, bright: float, sr: int,
                 rng: np.random.Generator) -> np.ndarray:
  """Samples of one note, starting at its onset, including its release tail."""
  gain = _VOICE_GAIN[note.voice]
  if note.voice not in ('melody', 'chord', 'bass'):
    return gain * _drum(note.voice, note.velocity, bright, sr, rng)
  instrument = _STYLE_KITS[style][note.voice]
  n_hold = max(1, int(note.dur_s * sr))
  return gain * _INSTRUMENTS[instrument](midi_to_hz(note.midi), n_hold, note.velocity,
                                         bright, sr, rng)


def _lowpass(x: np.ndarray, brightness: float, sr: int) -> np.ndarray:
  """One-pole lowpass, cutoff 1.2 kHz (dark) .. 11 kHz (bright), capped at 0.45 sr."""
  cutoff = min(1200.0 * 2.0 ** (3.2 * brightness), 0.45 * sr)
  pole = math.exp(-2 * math.pi * cutoff / sr)
  return signal.lfilter([1 - pole], [1, -pole], x)


def render_section(sec: dict, notes: list[Note], style: str, num_samples: int, sr: int,
                   rng: np.random.Generator) -> np.ndarray:
  """Mix of the section's notes over the whole track [num_samples], scaled so that the
  RMS inside [start_s, end_s) equals loudness_db (dBFS). Release tails spill over."""
  out = np.zeros(num_samples)
  for note in notes:
    i0 = int(round(note.onset_s * sr))
    if i0 >= num_samples:
      continue
    wave = _render_note(note, style, sec['brightness'], sr, rng)[:num_samples - i0]
    out[i0:i0 + len(wave)] += wave
  out = _lowpass(out, sec['brightness'], sr)
  span = out[int(sec['start_s'] * sr):int(sec['end_s'] * sr)]
  rms = math.sqrt(float(np.mean(span**2))) if span.size else 0.0
  return out * (10 ** (sec['loudness_db'] / 20) / rms if rms > 0 else 0.0)


def _finish(audio: np.ndarray, sr: int) -> np.ndarray:
  """10 ms fade at both ends; scale down only if the peak exceeds 0.99. float32."""
  n_fade = min(len(audio) // 2, int(0.01 * sr))
  if n_fade > 0:
    ramp = np.sin(0.5 * np.pi * np.arange(n_fade) / n_fade) ** 2
    audio[:n_fade] *= ramp
    audio[len(audio) - n_fade:] *= ramp[::-1]
  peak = float(np.abs(audio).max()) if audio.size else 0.0
  if peak > 0.99:
    audio = audio * (0.99 / peak)
  return audio.astype(np.float32)


def generate_track(track_number: int, *, seed: int = 0, sample_rate: int = 22050,
                   duration_s: float = 8.0, style_id: int | None = None) -> SyntheticTrack:
  """Generates one labelled track.

  Deterministic in (track_number, seed, sample_rate, duration_s, style_id); style_id None
  means style = track_number % len(STYLE_NAMES). Labels and latent sections depend only on
  (track_number, seed, duration_s).

  Returns:
    SyntheticTrack with audio [round(duration_s * sample_rate)] and valence/arousal
    [floor(duration_s)].
  """
  if duration_s <= 0:
    raise ValueError(f'duration_s must be positive, got {duration_s}')
  if style_id is None:
    style_id = track_number % len(STYLE_NAMES)
  if not 0 <= style_id < len(STYLE_NAMES):
    raise ValueError(f'style_id must be in [0, {len(STYLE_NAMES)}), got {style_id}')
  style = STYLE_NAMES[style_id]
  latent_ss, score_ss, synth_ss = np.random.SeedSequence([seed, track_number]).spawn(3)
  latent_rng = np.random.default_rng(latent_ss)
  score_rng, synth_rng = np.random.default_rng(score_ss), np.random.default_rng(synth_ss)

  sections = _draw_sections(latent_rng, duration_s)
  valence = annotate(sections, duration_s, latent_rng, 'valence_target')
  arousal = annotate(sections, duration_s, latent_rng, 'arousal_target')

  num_samples = int(round(duration_s * sample_rate))
  audio = np.zeros(num_samples)
  for sec in sections:
    notes = compose_section(sec, style, score_rng)
    audio += render_section(sec, notes, style, num_samples, sample_rate, synth_rng)
  return SyntheticTrack(audio=_finish(audio, sample_rate), sample_rate=sample_rate,
                        valence=valence, arousal=arousal, style_id=style_id,
                        sections=sections)
