"""va_benchmark: a generated valence/arousal benchmark held in numpy arrays in memory.

The design (and why each piece is there) is in docs/benchmark.md; this module is its
implementation. In short: music from `input_pipeline.synthetic_music` with emotion
targets nearer the ambiguous middle and more cue jitter; a clean latent label per
segment (analysis only); annotations from R simulated raters per track (personal bias,
lag, AR(1) noise, misjudgements mostly shared by a track's raters), stored as their mean
and std; unannotated lead-ins and whole unannotated tracks in an 'unlabelled' split;
a per-track recording chain (room, EQ, saturation, gain, noise floor, hum) drawn from
a few families; held-out chain families and a held-out style only in 'test_chain'.

Needs numpy, scipy and librosa only (no TensorFlow anywhere in the import chain):

    spec = va_benchmark.BenchmarkSpec.from_config(config.dataset)
    data = va_benchmark.generate(spec, features.FeatureSpec.from_config(config.features))
    data['train']['mel']      # float32 [N, n_mels, T]
    va_benchmark.describe(data)

Arrays per split (N segments of the split, in track order, then time order):

| key                          | dtype   | shape          | meaning                            |
|------------------------------|---------|----------------|------------------------------------|
| mel, coch                    | float32 | [N, n_*, T]    | features.compute_views             |
| valence, arousal             | float32 | [N]            | raters' mean; NaN if unannotated   |
| valence_std, arousal_std     | float32 | [N]            | raters' std (ddof 0); NaN likewise |
| valence_clean, arousal_clean | float32 | [N]            | latent target, segment mean (*)    |
| track_id                     | int32   | [N]            | unique over the whole benchmark    |
| style_id                     | int32   | [N]            | synthetic_music.STYLE_NAMES index  |
| chain_id                     | int32   | [N]            | CHAIN_NAMES index (-1: no chain)   |
| section                      | int32   | [N]            | section of its track (analysis)    |
| start_s                      | float32 | [N]            | segment start in its track, s      |
| index                        | int32   | [N]            | 0..N-1 within the split            |

(*) For analysis only: the ceiling and the label-noise rate; never train on it.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
import os
import sys
from typing import Any, Sequence

import numpy as np
from scipy import signal

from damer_audio import features as features_lib
from damer_data import workers as workers_lib
from input_pipeline import digest
from input_pipeline import synthetic_music

SPLITS = ('train', 'unlabelled', 'validation', 'test_track', 'test_chain')
TEST_SPLITS = ('test_track', 'test_chain')
TARGETS = ('valence', 'arousal')
NEAR_THRESHOLD = 0.2  # |clean label| below this counts as near the threshold (describe).
LABEL_RATE_HZ = 10  # Rater trajectories are simulated at this rate.

# Recording-chain families: each parameter is drawn per track, uniform in (low, high).
# tilt: EQ slope around 1 kHz; highpass/lowpass: Butterworth-like magnitude (orders 2/4;
# a cutoff >= 0.45 x sample rate is skipped); rt60/wet: exponentially decaying noise
# reverb and its level against the dry signal; drive: tanh(d x) / d saturation (<= 1:
# bypass); gain; noise: floor RMS and its spectral slope (0 white, 1 pink, 2 brown);
# hum: 50/60 Hz mains hum with 5 harmonics (<= -120 dBFS: none).
CHAIN_FAMILIES: dict[str, dict[str, tuple[float, float]]] = {
    'studio': dict(tilt_db_per_octave=(-1.0, 1.0), highpass_hz=(20, 40),
                   lowpass_hz=(20000, 20000), rt60_s=(0.05, 0.2), wet=(0.0, 0.1),
                   drive=(1.0, 1.0), gain_db=(-3, 3), noise_dbfs=(-80, -70),
                   noise_slope=(0.0, 0.0), hum_dbfs=(-120, -120)),
    'room': dict(tilt_db_per_octave=(-2.0, 0.0), highpass_hz=(30, 60),
                 lowpass_hz=(20000, 20000), rt60_s=(0.3, 0.8), wet=(0.2, 0.45),
                 drive=(1.0, 1.0), gain_db=(-6, 0), noise_dbfs=(-62, -52),
                 noise_slope=(0.8, 1.2), hum_dbfs=(-120, -120)),
    'lofi': dict(tilt_db_per_octave=(-1.0, 1.0), highpass_hz=(150, 300),
                 lowpass_hz=(3000, 5500), rt60_s=(0.05, 0.2), wet=(0.0, 0.1),
                 drive=(1.5, 3.0), gain_db=(-3, 3), noise_dbfs=(-48, -40),
                 noise_slope=(0.8, 1.2), hum_dbfs=(-120, -120)),
    'broadcast': dict(tilt_db_per_octave=(0.5, 2.0), highpass_hz=(60, 120),
                      lowpass_hz=(10000, 14000), rt60_s=(0.1, 0.3), wet=(0.05, 0.15),
                      drive=(2.0, 4.0), gain_db=(0, 6), noise_dbfs=(-70, -62),
                      noise_slope=(0.0, 0.0), hum_dbfs=(-120, -120)),
    'hall': dict(tilt_db_per_octave=(-1.5, 0.5), highpass_hz=(30, 60),
                 lowpass_hz=(12000, 16000), rt60_s=(1.2, 2.2), wet=(0.35, 0.6),
                 drive=(1.0, 1.0), gain_db=(-4, 2), noise_dbfs=(-66, -56),
                 noise_slope=(0.8, 1.2), hum_dbfs=(-120, -120)),
    'tape': dict(tilt_db_per_octave=(-1.0, 0.5), highpass_hz=(40, 80),
                 lowpass_hz=(6000, 9000), rt60_s=(0.1, 0.3), wet=(0.05, 0.2),
                 drive=(1.5, 3.0), gain_db=(-3, 3), noise_dbfs=(-54, -46),
                 noise_slope=(0.0, 0.3), hum_dbfs=(-54, -44)),
}
CHAIN_NAMES: tuple[str, ...] = tuple(CHAIN_FAMILIES)
_SPLIT_CODES = {name: code for code, name in enumerate(SPLITS)}
_RATER_POOL_ENTROPY = 7919  # Seed stream of the rater pool: [generator_seed, this].


def _names(value: Any) -> tuple[str, ...]:
  """'hall, tape' or ('hall', 'tape') -> ('hall', 'tape')."""
  items = value.split(',') if isinstance(value, str) else list(value)
  return tuple(str(v).strip() for v in items if str(v).strip())


@dataclasses.dataclass(frozen=True)
class BenchmarkSpec:
  """Every generation parameter; field names equal the config.dataset field names.

  Defaults are the full-size benchmark of docs/benchmark.md; `tiny()` is the test size.
  """

  # Sizes (tracks per split) and track layout.
  num_train_tracks: int = 400
  num_unlabelled_tracks: int = 100  # Whole tracks without annotations.
  num_validation_tracks: int = 60
  num_test_tracks: int = 160  # 'test_track': held-out tracks, seen styles and chains.
  num_test_chain_tracks: int = 160  # 'test_chain': held-out style and chain families.
  track_seconds: float = 10.0
  lead_in_seconds: float = 2.0  # Unannotated start of every track.
  generator_seed: int = 0
  # Music: section targets sign x U(target_min, target_max); cue jitter x synthetic_music's.
  target_min: float = 0.05
  target_max: float = 0.9
  cue_jitter: float = 3.5
  mode_flip_prob: float = 0.15
  min_section_seconds: float = 3.0
  section_count_probs: tuple[float, ...] = (0.25, 0.45, 0.3)  # P(1, 2, 3 sections).
  heldout_style: str = 'fm_bell'
  # Recording chains.
  recording_chains: bool = True
  heldout_chains: tuple[str, ...] = ('hall', 'tape')
  # Raters: a pool; each track is annotated by raters_per_track of them.
  rater_pool_size: int = 12
  raters_per_track: int = 5
  rater_bias_std: float = 0.12  # Personal offset per rater and target, N(0, this).
  rater_lag_min_s: float = 0.5  # One-pole lag time constant, U(min, max) per rater;
  rater_lag_max_s: float = 2.5  # 0 = no lag.
  rater_noise_min: float = 0.05  # AR(1) noise std, U(min, max) per rater.
  rater_noise_max: float = 0.2
  rater_noise_corr_s: float = 2.0  # AR(1) correlation time.
  rater_flip_prob: float = 0.04  # One rater hears a section's target mirrored.
  shared_misjudge_prob: float = 0.18  # A section's target is misjudged on the track ...
  misjudge_follow_prob: float = 0.6  # ... by each of its raters with this probability.

  @classmethod
  def from_config(cls, config: Any) -> 'BenchmarkSpec':
    """The spec from a mapping such as `config.dataset` (missing fields: defaults)."""
    values = {}
    for field in dataclasses.fields(cls):
      if field.name not in config:
        continue
      value = config[field.name]
      if field.name == 'heldout_chains':
        value = _names(value)
      elif field.name == 'section_count_probs':
        value = tuple(float(v) for v in (value.split(',') if isinstance(value, str)
                                         else value))
      values[field.name] = value
    return cls(**values)

  @classmethod
  def tiny(cls, **overrides) -> 'BenchmarkSpec':
    """Seconds on one core: 4 + 2 + 2 + 3 + 3 tracks of 4 s (lead-in 1 s)."""
    values = dict(num_train_tracks=4, num_unlabelled_tracks=2, num_validation_tracks=2,
                  num_test_tracks=3, num_test_chain_tracks=3, track_seconds=4.0,
                  lead_in_seconds=1.0, min_section_seconds=1.0)
    values.update(overrides)
    return cls(**values)

  def validate(self) -> None:
    """Raises ValueError with an actionable message for an unusable spec."""
    styles = synthetic_music.STYLE_NAMES
    if self.heldout_style not in styles:
      raise ValueError(f'heldout_style={self.heldout_style!r} is not one of {styles}.')
    unknown = [c for c in self.heldout_chains if c not in CHAIN_FAMILIES]
    if unknown or not self.heldout_chains or len(self.heldout_chains) >= len(CHAIN_NAMES):
      raise ValueError(f'heldout_chains={self.heldout_chains} must name 1 to '
                       f'{len(CHAIN_NAMES) - 1} of {CHAIN_NAMES}.')
    if not 0 < self.raters_per_track <= self.rater_pool_size:
      raise ValueError(f'raters_per_track={self.raters_per_track} must be in '
                       f'[1, rater_pool_size={self.rater_pool_size}].')
    if not 0 <= self.target_min <= self.target_max <= 1:
      raise ValueError(f'Need 0 <= target_min <= target_max <= 1, got '
                       f'{self.target_min}, {self.target_max}.')
    if not 0 <= self.lead_in_seconds < self.track_seconds:
      raise ValueError(f'lead_in_seconds={self.lead_in_seconds} must be in '
                       f'[0, track_seconds={self.track_seconds}).')
    if abs(sum(self.section_count_probs) - 1) > 1e-6 or min(self.section_count_probs) < 0:
      raise ValueError(f'section_count_probs={self.section_count_probs} must be '
                       f'probabilities summing to 1.')
    sizes = [self.num_train_tracks, self.num_unlabelled_tracks, self.num_validation_tracks,
             self.num_test_tracks, self.num_test_chain_tracks]
    if min(sizes) < 0 or sum(sizes) == 0:
      raise ValueError(f'Track counts must be >= 0 and not all 0, got {sizes}.')

  def split_sizes(self) -> dict[str, int]:
    return dict(zip(SPLITS, (self.num_train_tracks, self.num_unlabelled_tracks,
                             self.num_validation_tracks, self.num_test_tracks,
                             self.num_test_chain_tracks)))


# ----------------------------------------------------------------------------- plan


@dataclasses.dataclass(frozen=True)
class TrackPlan:
  """Where a track goes and what it is made of."""
  track_id: int  # Unique over the benchmark: tracks are numbered split by split.
  split: str
  number: int  # Position within its split; with the split it seeds the track.
  style_id: int
  chain_id: int  # CHAIN_NAMES index; -1 when recording chains are off.


def track_plan(spec: BenchmarkSpec) -> list[TrackPlan]:
  """Every track of the benchmark, split by split (the order of SPLITS).

  Styles and chain families are assigned round-robin, so every (style, family)
  combination of a split is equally common: seen styles x seen families outside
  test_chain, the held-out style x held-out families inside it.
  """
  spec.validate()
  heldout_style = synthetic_music.STYLE_NAMES.index(spec.heldout_style)
  seen_styles = [s for s in range(len(synthetic_music.STYLE_NAMES)) if s != heldout_style]
  heldout = [CHAIN_NAMES.index(c) for c in spec.heldout_chains]
  seen_chains = [c for c in range(len(CHAIN_NAMES)) if c not in heldout]
  plan = []
  for split, size in spec.split_sizes().items():
    styles = [heldout_style] if split == 'test_chain' else seen_styles
    chains = heldout if split == 'test_chain' else seen_chains
    for j in range(size):
      chain = chains[(j // len(styles)) % len(chains)] if spec.recording_chains else -1
      plan.append(TrackPlan(len(plan), split, j, styles[j % len(styles)], chain))
  return plan


def _track_streams(spec: BenchmarkSpec, track: TrackPlan) -> list[np.random.Generator]:
  """Independent streams (latents, score, synthesis, chain, raters) of one track.

  Seeded by (generator_seed, split, position in split): a track does not change when
  another split is resized.
  """
  seq = np.random.SeedSequence([spec.generator_seed, _SPLIT_CODES[track.split],
                                track.number])
  return [np.random.default_rng(s) for s in seq.spawn(5)]


# ----------------------------------------------------------------------------- latents


def _section_bounds(rng: np.random.Generator, spec: BenchmarkSpec) -> list[tuple[float, float]]:
  """1..len(section_count_probs) sections cut at whole seconds, each >= min_section_seconds."""
  duration = spec.track_seconds
  count = int(rng.choice(len(spec.section_count_probs), p=spec.section_count_probs)) + 1
  options = []
  while not options:
    options = [c for c in itertools.combinations(range(1, math.ceil(duration)), count - 1)
               if count == 1
               or min(np.diff((0.0,) + c + (duration,))) >= spec.min_section_seconds]
    count -= 1
  cuts = (0.0,) + tuple(float(c) for c in options[rng.integers(len(options))]) + (duration,)
  return list(zip(cuts[:-1], cuts[1:]))


def _draw_target(rng: np.random.Generator, spec: BenchmarkSpec) -> float:
  return float(rng.choice([-1.0, 1.0]) * rng.uniform(spec.target_min, spec.target_max))


def section_cues(rng: np.random.Generator, v: float, a: float, jitter: float,
                 mode_flip_prob: float) -> dict:
  """synthetic_music's cue table (docs/synthetic_data.md) with every jitter std x jitter."""
  major = (v > 0) != (rng.uniform() < mode_flip_prob)
  mode = 'major' if major else 'minor'
  progressions = synthetic_music.PROGRESSIONS[mode]
  progression = progressions[rng.integers(len(progressions))]
  k = jitter
  return dict(
      valence_target=v, arousal_target=a, mode=mode,
      progression_degrees=tuple(int(d) for d in progression),
      dissonance=float(np.clip(0.5 - 1.2 * v + rng.normal(0, 0.06 * k), 0, 1)),
      register_midi=float(62 + 8 * v + rng.normal(0, 1.0 * k)),
      tempo_bpm=float(np.clip(115 + 55 * a + rng.normal(0, 5 * k), 40, 200)),
      notes_per_beat=int(np.clip(round(2.5 + 1.7 * a + rng.normal(0, 0.3 * k)), 1, 4)),
      loudness_db=float(-21 + 10 * a + rng.normal(0, 1.0 * k)),
      brightness=float(np.clip(0.5 + 0.5 * a + rng.normal(0, 0.06 * k), 0, 1)),
      percussion_density=float(np.clip(0.45 + 0.55 * a + rng.normal(0, 0.06 * k), .02, 1)),
      articulation=float(0.95 - 0.2 * (a + 1)),
  )


def draw_sections(rng: np.random.Generator, spec: BenchmarkSpec) -> tuple[dict, ...]:
  """Section bounds, targets and cues of one track (keys as synthetic_music's sections)."""
  tonic_pc = int(rng.integers(12))
  sections = []
  for start, end in _section_bounds(rng, spec):
    v, a = _draw_target(rng, spec), _draw_target(rng, spec)
    cues = section_cues(rng, v, a, spec.cue_jitter, spec.mode_flip_prob)
    sections.append(dict(start_s=start, end_s=end, tonic_pc=tonic_pc, **cues))
  return tuple(sections)


def clean_labels(sections: Sequence[dict], key: str, starts_s: np.ndarray,
                 segment_seconds: float) -> np.ndarray:
  """Section target `key` averaged over each segment [starts, starts + len): float32."""
  ends = starts_s + segment_seconds
  total = np.zeros(len(starts_s))
  for sec in sections:
    overlap = np.clip(np.minimum(ends, sec['end_s']) - np.maximum(starts_s, sec['start_s']),
                      0, None)
    total += overlap * sec[key]
  return (total / segment_seconds).astype(np.float32)


def section_of(sections: Sequence[dict], starts_s: np.ndarray) -> np.ndarray:
  """Index of the section each segment starts in: int32 [len(starts_s)]."""
  bounds = np.array([sec['start_s'] for sec in sections[1:]])
  return np.searchsorted(bounds, starts_s + 1e-9, side='right').astype(np.int32)


# ----------------------------------------------------------------------------- raters


def rater_pool(spec: BenchmarkSpec) -> dict[str, np.ndarray]:
  """The raters' personal parameters: bias [pool, 2] (valence, arousal), lag_s [pool],
  noise_std [pool]. Shared by all tracks; seeded by generator_seed alone."""
  rng = np.random.default_rng(np.random.SeedSequence([spec.generator_seed,
                                                      _RATER_POOL_ENTROPY]))
  n = spec.rater_pool_size
  return dict(bias=rng.normal(0, 1, (n, 2)) * spec.rater_bias_std,
              lag_s=rng.uniform(spec.rater_lag_min_s, spec.rater_lag_max_s, n),
              noise_std=rng.uniform(spec.rater_noise_min, spec.rater_noise_max, n))


def _trajectory(perceived: np.ndarray, lag_s: float, noise_std: float, corr_s: float,
                rng: np.random.Generator) -> np.ndarray:
  """One rater's slider [samples] at LABEL_RATE_HZ: lagged from 0 (neutral start) towards
  the perceived value [samples], plus stationary AR(1) noise, clipped to [-1, 1]."""
  smooth = perceived
  if lag_s > 0:
    alpha = 1.0 - math.exp(-1.0 / (LABEL_RATE_HZ * lag_s))
    smooth = signal.lfilter([alpha], [1.0, alpha - 1.0], perceived)
  rho = math.exp(-1.0 / (LABEL_RATE_HZ * corr_s))
  innov = rng.normal(0, 1, perceived.shape) * noise_std * math.sqrt(1 - rho**2)
  innov[0] = rng.normal(0, 1) * noise_std
  return np.clip(smooth + signal.lfilter([1.0], [1.0, -rho], innov), -1, 1)


def annotate(sections: Sequence[dict], raters: dict[str, np.ndarray], who: np.ndarray,
             starts_s: np.ndarray, spec: BenchmarkSpec, segment_seconds: float,
             rng: np.random.Generator) -> dict[str, np.ndarray]:
  """Simulated annotations of one track by the raters `who` (indices into the pool).

  Per target: a section may be misjudged (p = shared_misjudge_prob); each rater then
  hears it on the wrong side, at -sign(target) x U(0.1, 0.6) (one value per section),
  with probability misjudge_follow_prob, so most misjudged sections split the raters.
  Independently, a single rater may hear a section's target mirrored (rater_flip_prob).
  Each rater adds their bias, follows with their lag and noise (`_trajectory`), and
  their segment value is the mean over the segment.

  Returns per target ('valence', 'arousal'): '<target>_raters' float32 [R, segments]
  and '<target>_flipped' bool [R, segments] (that rater misjudged the segment's
  section alone), '<target>_shared' bool [segments] (shared misjudgement).
  """
  num_samples = int(round(spec.track_seconds * LABEL_RATE_HZ))
  times = (np.arange(num_samples) + 0.5) / LABEL_RATE_HZ
  sample_section = section_of(sections, times)
  segment_section = section_of(sections, starts_s)
  which = np.floor(times / segment_seconds + 1e-9).astype(np.int64)
  counts = np.bincount(which, minlength=len(starts_s))[:len(starts_s)]
  num_raters, num_sections = len(who), len(sections)
  out = {}
  for t, target in enumerate(TARGETS):
    value = np.array([sec[f'{target}_target'] for sec in sections])
    shared = rng.uniform(size=num_sections) < spec.shared_misjudge_prob
    wrong = -np.sign(value) * rng.uniform(0.1, 0.6, num_sections)
    follows = rng.uniform(size=(num_raters, num_sections)) < spec.misjudge_follow_prob
    heard = np.where(shared[None] & follows, wrong[None], value[None])  # [R, sections]
    flipped = rng.uniform(size=(num_raters, num_sections)) < spec.rater_flip_prob
    heard = np.where(flipped, -heard, heard)
    per_rater = np.empty((num_raters, len(starts_s)), np.float32)
    for r, k in enumerate(who):
      slider = _trajectory(heard[r, sample_section] + raters['bias'][k, t],
                           raters['lag_s'][k], raters['noise_std'][k],
                           spec.rater_noise_corr_s, rng)
      sums = np.bincount(which, slider, minlength=len(starts_s))[:len(starts_s)]
      per_rater[r] = sums / np.maximum(counts, 1)
    out[f'{target}_raters'] = per_rater
    out[f'{target}_flipped'] = flipped[:, segment_section]
    out[f'{target}_shared'] = shared[segment_section]
  return out


# ----------------------------------------------------------------------------- chain


def draw_chain(family: str, rng: np.random.Generator) -> dict[str, float]:
  """One track's chain parameters, uniform within the family's ranges."""
  params = {k: float(rng.uniform(lo, hi)) for k, (lo, hi) in CHAIN_FAMILIES[family].items()}
  params['hum_hz'] = float(rng.choice([50.0, 60.0]))
  return params


def _coloured_noise(n: int, slope: float, rng: np.random.Generator) -> np.ndarray:
  """Unit-RMS noise [n] with power spectrum ~ f^-slope."""
  spectrum = np.fft.rfft(rng.standard_normal(n))
  f = np.maximum(np.arange(len(spectrum)), 1.0)
  noise = np.fft.irfft(spectrum * f ** (-slope / 2), n)
  return noise / max(float(np.sqrt(np.mean(noise**2))), 1e-12)


def _room(x: np.ndarray, rt60_s: float, wet: float, sr: int,
          rng: np.random.Generator) -> np.ndarray:
  """Dry signal + wet x (unit-energy exponentially decaying noise IR, 10 ms pre-delay)."""
  n = max(1, int(rt60_s * sr))
  tail = rng.standard_normal(n) * np.exp(-6.91 * np.arange(n) / n)
  tail = np.concatenate([np.zeros(int(0.01 * sr)), tail / np.sqrt(np.sum(tail**2))])
  return x + wet * signal.fftconvolve(x, tail)[:len(x)]


def _equalise(x: np.ndarray, chain: dict[str, float], sr: int) -> np.ndarray:
  """Zero-phase EQ in the frequency domain: tilt around 1 kHz (capped at +-15 dB),
  2nd-order highpass, 4th-order lowpass (skipped at or above 0.45 x sr)."""
  f = np.fft.rfftfreq(len(x), 1.0 / sr)
  octaves = np.log2(np.maximum(f, 20.0) / 1000.0)
  gain_db = np.clip(chain['tilt_db_per_octave'] * octaves, -15, 15)
  response = 10 ** (gain_db / 20)
  response /= np.sqrt(1 + (chain['highpass_hz'] / np.maximum(f, 1e-3)) ** 4)
  if chain['lowpass_hz'] < 0.45 * sr:
    response /= np.sqrt(1 + (f / chain['lowpass_hz']) ** 8)
  return np.fft.irfft(np.fft.rfft(x) * response, len(x))


def _hum(n: int, hz: float, sr: int, rng: np.random.Generator) -> np.ndarray:
  """Unit-RMS mains hum [n]: harmonics 1..5 at 1/k amplitude, random phases."""
  t = np.arange(n) / sr
  hum = sum(np.sin(2 * np.pi * k * hz * t + rng.uniform(0, 2 * np.pi)) / k
            for k in range(1, 6) if k * hz < sr / 2)
  return hum / max(float(np.sqrt(np.mean(hum**2))), 1e-12)


def apply_chain(audio: np.ndarray, chain: dict[str, float], sr: int,
                rng: np.random.Generator) -> np.ndarray:
  """Room -> EQ -> saturation -> gain -> + noise floor and hum: float64 [samples]."""
  x = _room(np.asarray(audio, np.float64), chain['rt60_s'], chain['wet'], sr, rng)
  x = _equalise(x, chain, sr)
  if chain['drive'] > 1:
    x = np.tanh(chain['drive'] * x) / chain['drive']
  x = x * 10 ** (chain['gain_db'] / 20)
  x = x + 10 ** (chain['noise_dbfs'] / 20) * _coloured_noise(len(x), chain['noise_slope'], rng)
  if chain['hum_dbfs'] > -120:
    x = x + 10 ** (chain['hum_dbfs'] / 20) * _hum(len(x), chain['hum_hz'], sr, rng)
  return x


def _finish(audio: np.ndarray, sr: int) -> np.ndarray:
  """10 ms fades at both ends, then the converter's hard clip at +-1: float32."""
  n_fade = min(len(audio) // 2, int(0.01 * sr))
  if n_fade:
    ramp = np.sin(0.5 * np.pi * np.arange(n_fade) / n_fade) ** 2
    audio[:n_fade] *= ramp
    audio[len(audio) - n_fade:] *= ramp[::-1]
  return np.clip(audio, -1, 1).astype(np.float32)


# ----------------------------------------------------------------------------- one track


def render_track(spec: BenchmarkSpec, track: TrackPlan, sample_rate: int
                 ) -> tuple[np.ndarray, tuple[dict, ...]]:
  """Audio float32 [round(track_seconds x sample_rate)] and the latent sections."""
  latent_rng, score_rng, synth_rng, chain_rng, _ = _track_streams(spec, track)
  sections = draw_sections(latent_rng, spec)
  style = synthetic_music.STYLE_NAMES[track.style_id]
  num_samples = int(round(spec.track_seconds * sample_rate))
  audio = np.zeros(num_samples)
  for sec in sections:
    notes = synthetic_music.compose_section(sec, style, score_rng)
    audio += synthetic_music.render_section(sec, notes, style, num_samples, sample_rate,
                                            synth_rng)
  if track.chain_id >= 0:
    chain = draw_chain(CHAIN_NAMES[track.chain_id], chain_rng)
    audio = apply_chain(audio, chain, sample_rate, chain_rng)
  return _finish(audio, sample_rate), sections


def _segment_starts(spec: BenchmarkSpec, feature_spec: features_lib.FeatureSpec) -> np.ndarray:
  num_samples = int(round(spec.track_seconds * feature_spec.sample_rate))
  count = features_lib.num_segments(num_samples, feature_spec)
  return np.arange(count) * feature_spec.segment_seconds


def track_arrays(spec: BenchmarkSpec, feature_spec: features_lib.FeatureSpec,
                 track: TrackPlan, with_views: bool = True) -> dict[str, np.ndarray]:
  """The segments one track contributes to its split(s), with 'annotated' bool [n].

  A train track yields all its segments (lead-in ones not annotated: they go to
  'unlabelled'); an unlabelled track yields all, none annotated; a held-out track
  yields its annotated segments only. Labels of unannotated segments are NaN.
  """
  latent_rng, *_, rater_rng = _track_streams(spec, track)
  sections = draw_sections(latent_rng, spec)
  starts = _segment_starts(spec, feature_spec)
  annotated = starts >= spec.lead_in_seconds - 1e-9
  if track.split == 'unlabelled':
    annotated[:] = False
  keep = np.ones_like(annotated) if track.split in ('train', 'unlabelled') else annotated
  raters = rater_pool(spec)
  who = rater_rng.choice(spec.rater_pool_size, spec.raters_per_track, replace=False)
  notes = annotate(sections, raters, who, starts, spec, feature_spec.segment_seconds,
                   rater_rng)
  n = int(keep.sum())
  out = dict(annotated=annotated[keep], start_s=starts[keep].astype(np.float32),
             section=section_of(sections, starts)[keep],
             track_id=np.full(n, track.track_id, np.int32),
             style_id=np.full(n, track.style_id, np.int32),
             chain_id=np.full(n, track.chain_id, np.int32))
  for target in TARGETS:
    values = notes[f'{target}_raters'][:, keep]
    out[target] = np.where(out['annotated'], values.mean(axis=0), np.nan).astype(np.float32)
    out[f'{target}_std'] = np.where(out['annotated'], values.std(axis=0),
                                    np.nan).astype(np.float32)
    out[f'{target}_clean'] = clean_labels(sections, f'{target}_target', starts[keep],
                                          feature_spec.segment_seconds)
  if with_views:
    audio, _ = render_track(spec, track, feature_spec.sample_rate)
    segments = features_lib.segment_audio(audio, feature_spec)[keep]
    out['mel'], out['coch'] = features_lib.compute_views(segments, feature_spec)
  return out


# ----------------------------------------------------------------------------- all tracks


def _track_job(job: tuple) -> dict[str, np.ndarray]:
  return track_arrays(*job)


def _map_tracks(jobs: list[tuple], num_workers: int) -> list[dict[str, np.ndarray]]:
  """track_arrays over jobs, in order; forkserver processes (damer_data.workers) when
  num_workers > 1 (0 = one per core), in-process otherwise."""
  if num_workers <= 0:
    num_workers = os.cpu_count() or 1
  workers = min(num_workers, len(jobs))
  if workers <= 1:
    with workers_lib.single_threaded():
      return [_track_job(job) for job in jobs]
  pool = workers_lib.WorkerPool(workers)  # Its workers run single-threaded too.
  try:
    return list(workers_lib.ordered_map(_track_job, jobs, pool))
  finally:
    pool.close()


def _assemble(plan: list[TrackPlan], parts: list[dict[str, np.ndarray]]
              ) -> dict[str, dict[str, np.ndarray]]:
  """Per-track arrays -> split -> concatenated arrays.

  Train tracks' lead-ins go to 'unlabelled', ahead of the whole unannotated tracks
  (the plan lists train tracks first).
  """
  pieces: dict[str, list[dict[str, np.ndarray]]] = {s: [] for s in SPLITS}
  for track, part in zip(plan, parts):
    annotated = part['annotated']
    part = {k: v for k, v in part.items() if k != 'annotated'}
    if track.split == 'train':
      pieces['unlabelled'].append({k: v[~annotated] for k, v in part.items()})
      pieces['train'].append({k: v[annotated] for k, v in part.items()})
    else:
      pieces[track.split].append(part)
  template = {k: v[:0] for k, v in parts[0].items() if k != 'annotated'}
  data = {}
  for split, items in pieces.items():
    data[split] = {k: np.concatenate([v] + [p[k] for p in items])
                   for k, v in template.items()}
    data[split]['index'] = np.arange(len(data[split]['track_id']), dtype=np.int32)
  return data


def _digest(spec: BenchmarkSpec, feature_spec: features_lib.FeatureSpec,
            with_views: bool) -> str:
  """The cache key: the settings and all the code this module reaches (input_pipeline.digest)."""
  return digest.builder_digest(sys.modules[__name__], dict(
      spec=dataclasses.asdict(spec), features=dataclasses.asdict(feature_spec),
      with_views=with_views))


def _load(path: str) -> dict[str, dict[str, np.ndarray]]:
  data: dict[str, dict[str, np.ndarray]] = {s: {} for s in SPLITS}
  with np.load(path, allow_pickle=False) as archive:
    for name in archive.files:
      split, key = name.split('/', 1)
      data[split][key] = archive[name]
  return data


def _save(data: dict[str, dict[str, np.ndarray]], path: str) -> None:
  tmp = f'{path}.{os.getpid()}.tmp.npz'
  np.savez(tmp, **{f'{s}/{k}': v for s, arrays in data.items() for k, v in arrays.items()})
  os.replace(tmp, path)


def generate(spec: BenchmarkSpec, feature_spec: features_lib.FeatureSpec,
             num_workers: int = 0, cache_dir: str | None = None, *,
             with_views: bool = True) -> dict[str, dict[str, np.ndarray]]:
  """The whole benchmark: split name -> arrays (table in the module docstring).

  Deterministic in (spec, feature_spec), whatever num_workers.

  Args:
    spec: what to generate.
    feature_spec: segment length and both views (features.compute_views).
    num_workers: processes over tracks; 0 = one per core, 1 = in-process.
    cache_dir: if given, the result is kept there as an .npz named by a digest of
      the specs and the source of this module, synthetic_music and features, and
      read back from there on the next call.
    with_views: False skips rendering and features ('mel' and 'coch' absent): labels,
      clean labels and ids only, in milliseconds per track.
  """
  feature_spec.validate()
  path = None
  if cache_dir:
    path = os.path.join(cache_dir, f'va_benchmark_{_digest(spec, feature_spec, with_views)}.npz')
    if os.path.exists(path):
      return _load(path)
  plan = track_plan(spec)
  parts = _map_tracks([(spec, feature_spec, t, with_views) for t in plan],
                      num_workers if with_views else 1)
  data = _assemble(plan, parts)
  if path:
    os.makedirs(cache_dir, exist_ok=True)
    _save(data, path)
  return data


# ----------------------------------------------------------------------------- analysis


def track_se(values: np.ndarray, track_id: np.ndarray) -> float:
  """Standard error of mean(values) under a bootstrap over tracks (delta method).

  values: per-segment numbers [N] (1/0 correctness for an accuracy, or the difference
  of two models' correctness for a paired difference); track_id [N]. With C_t the sum
  and n_t the count of track t, A = sum C_t / sum n_t and T tracks:
      SE^2 = T / (T - 1) x sum_t (C_t - A n_t)^2 / (sum_t n_t)^2.
  """
  values = np.asarray(values, np.float64)
  _, track = np.unique(track_id, return_inverse=True)
  sums, counts = np.bincount(track, values), np.bincount(track)
  num_tracks = len(counts)
  if num_tracks < 2:
    return float('nan')
  mean = sums.sum() / counts.sum()
  return float(math.sqrt(num_tracks / (num_tracks - 1) * np.sum((sums - mean * counts)**2))
               / counts.sum())


def _clustered_se(accuracy: float, cluster_sizes: np.ndarray) -> float:
  """SE of an accuracy whose errors come in whole clusters (each wrong w.p. 1 - acc)."""
  n, k = cluster_sizes.sum(), len(cluster_sizes)
  if k < 2:
    return float('nan')
  return float(math.sqrt(k / (k - 1) * accuracy * (1 - accuracy)
                         * np.sum(cluster_sizes.astype(np.float64)**2)) / n)


def _counts(arrays: dict[str, np.ndarray], annotated: np.ndarray) -> dict[str, int]:
  return dict(segments=int(len(arrays['track_id'])), annotated=int(annotated.sum()),
              tracks=int(len(np.unique(arrays['track_id']))))


def describe(data: dict[str, dict[str, np.ndarray]], accuracy: float = 0.8) -> dict:
  """Counts, label-noise rate, ceiling, near-threshold share and standard errors.

  - noise_rate[split][target]: share of annotated segments whose annotated side
    (label > 0) differs from the clean label's side.
  - ceiling[test split][target]: accuracy of the clean label's side against the
    annotations (= 1 - noise rate), with its track-bootstrap SE.
  - near_threshold[split][target]: share of segments with |clean label| < NEAR_THRESHOLD.
  - se_at_accuracy[test split]: SE of an accuracy of `accuracy` if errors were
    independent per segment, clustered by (track, section), or by whole track.
  """
  out: dict[str, Any] = dict(counts={}, noise_rate={}, ceiling={}, near_threshold={},
                             se_at_accuracy={}, accuracy_for_se=accuracy)
  for split, arrays in data.items():
    if 'track_id' not in arrays:
      continue
    annotated = np.isfinite(arrays['valence'])
    out['counts'][split] = _counts(arrays, annotated)
    if not len(annotated):
      continue
    out['near_threshold'][split] = {
        t: float(np.mean(np.abs(arrays[f'{t}_clean']) < NEAR_THRESHOLD)) for t in TARGETS}
    if not annotated.any():
      continue
    agree = {t: (arrays[t][annotated] > 0) == (arrays[f'{t}_clean'][annotated] > 0)
             for t in TARGETS}
    out['noise_rate'][split] = {t: float(1 - agree[t].mean()) for t in TARGETS}
    if split in TEST_SPLITS:
      tracks = arrays['track_id'][annotated]
      out['ceiling'][split] = {t: float(agree[t].mean()) for t in TARGETS}
      out['ceiling'][split].update(
          {f'{t}_se': track_se(agree[t], tracks) for t in TARGETS})
      sections = tracks.astype(np.int64) * 1000 + arrays['section'][annotated]
      out['se_at_accuracy'][split] = dict(
          independent=math.sqrt(accuracy * (1 - accuracy) / annotated.sum()),
          sections=_clustered_se(accuracy, np.unique(sections, return_counts=True)[1]),
          tracks=_clustered_se(accuracy, np.unique(tracks, return_counts=True)[1]))
  return out
