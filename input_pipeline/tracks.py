"""One track of a download: decode, check, segment, label, both views.

TensorFlow-free (the build's worker processes import it and run `process_track`).

* `TrackJob`: a track to build (audio path, annotations on the audio's clock in
  [-1, 1], or one static rating).
* `process_track`: one decode, the checks (missing, empty, silent file; unusual rate or
  channels; audio shorter than its annotations), segment labels on the annotation
  clock (`records.segment_labels`), both views -> `TrackResult`. Never raises for a
  bad file: one bad track cannot stop a build.
* `annotated_segments`, `last_annotated_segment`: the labels per segment and the last
  annotated one, also used to split by segment before anything is decoded.
* `synthetic_track_examples`: one generated track of synthetic_va, as records.

Run across processes by `damer_data.workers.ordered_map` (manual_builder.py).
"""

from __future__ import annotations

import dataclasses
import math
import os

import numpy as np

from damer_audio import audio as audio_lib
from damer_audio import features as features_lib
from input_pipeline import records
from input_pipeline import synthetic_music

SILENCE_PEAK_DBFS = -60.0  # A file whose loudest sample is below this is "silent".


@dataclasses.dataclass(frozen=True)
class TrackJob:
  """One track to turn into segments.

  `times_s` are annotation times on the audio's clock (seconds from the file start);
  `valence` and `arousal` the values there, already in [-1, 1] (NaN = none). With
  `times_s` None the labels are per clip (static): every segment gets them.
  `segments`, if given, limits the segments yielded (segment-level splits).
  """

  track_id: int
  name: str
  audio_path: str
  times_s: np.ndarray | None
  valence: np.ndarray
  arousal: np.ndarray
  style_id: int = -1
  segments: tuple[int, ...] | None = None


@dataclasses.dataclass
class TrackResult:
  """What `process_track` made of a job (arrays in segment order)."""

  job: TrackJob
  error: str | None = None
  notes: list[str] = dataclasses.field(default_factory=list)
  file_rate: int | None = None
  file_channels: int | None = None
  seconds: float = 0.0
  labelled: np.ndarray | None = None  # segment numbers with a label
  unlabelled: np.ndarray | None = None  # segment numbers without annotation
  valence: np.ndarray | None = None  # [len(labelled)]
  arousal: np.ndarray | None = None
  mel: np.ndarray | None = None  # views of the segments asked for (`want`)
  coch: np.ndarray | None = None
  dropped: dict[str, int] = dataclasses.field(default_factory=dict)


def audio_file_info(path: str) -> tuple[int | None, int | None]:
  """(sample rate, channels) from the file header, or (None, None) if unknown."""
  try:
    import soundfile as sf  # pylint: disable=g-import-not-at-top
    info = sf.info(path)
    return int(info.samplerate), int(info.channels)
  except Exception:  # pylint: disable=broad-except
    return None, None


def check_file(path: str) -> None:
  """Raises AudioError for a missing or zero-length file (before any decoder runs)."""
  if not os.path.isfile(path):
    raise audio_lib.AudioError(f'{path}: no such file.')
  if os.path.getsize(path) == 0:
    raise audio_lib.AudioError(f'{path}: zero-length file (an interrupted download?).')


def check_not_silent(audio: np.ndarray, path: str) -> None:
  """Raises AudioError if the loudest sample is below SILENCE_PEAK_DBFS."""
  peak = float(np.max(np.abs(audio))) if audio.size else 0.0
  if peak < 10.0 ** (SILENCE_PEAK_DBFS / 20.0):
    level = f'{20 * math.log10(peak):.0f} dBFS' if peak > 0 else 'all zeros'
    raise audio_lib.AudioError(f'{path}: the audio is silent (peak {level}).')


def check_rate_and_channels(path: str, rate: int | None, channels: int | None,
                            spec: features_lib.FeatureSpec) -> list[str]:
  """Notes on a file whose rate is below the feature rate or has > 2 channels."""
  notes = []
  if rate is not None and rate < spec.sample_rate:
    notes.append(f'{path}: {rate} Hz is below the feature rate {spec.sample_rate} Hz; '
                 f'upsampled, so nothing above {rate / 2:g} Hz.')
  if channels is not None and channels > 2:
    notes.append(f'{path}: {channels} channels, averaged to mono.')
  return notes


def annotated_segments(job: TrackJob, spec: features_lib.FeatureSpec,
                       num_segments: int) -> tuple[np.ndarray, np.ndarray]:
  """Per-segment mean valence and arousal [num_segments]; NaN where none."""
  if job.times_s is None:
    return (np.full(num_segments, job.valence, np.float32),
            np.full(num_segments, job.arousal, np.float32))
  return (records.segment_labels(job.times_s, job.valence, spec.segment_seconds,
                                 num_segments),
          records.segment_labels(job.times_s, job.arousal, spec.segment_seconds,
                                 num_segments))


def last_annotated_segment(job: TrackJob, spec: features_lib.FeatureSpec) -> int:
  """Index of the last segment holding an annotation (-1: none, or static labels)."""
  if job.times_s is None:
    return -1
  ok = np.isfinite(job.valence) & np.isfinite(job.arousal) & np.isfinite(job.times_s)
  if not ok.any():
    return -1
  return int(np.floor(job.times_s[ok].max() / spec.segment_seconds + 1e-9))


def process_track(job: TrackJob, spec: features_lib.FeatureSpec,
                  want: str = 'labelled') -> TrackResult:
  """Decodes `job` once, labels its segments on the annotation clock, computes views.

  Args:
    job: the track.
    spec: feature parameters.
    want: 'labelled' computes the views of the segments with an annotation inside
      (the rest are counted in `dropped`); 'unlabelled' those of the segments without.

  Never raises for a bad file: the problem goes to `TrackResult.error`, so one bad
  track cannot stop a build.
  """
  result = TrackResult(job)
  try:
    check_file(job.audio_path)
    result.file_rate, result.file_channels = audio_file_info(job.audio_path)
    result.notes += check_rate_and_channels(job.audio_path, result.file_rate,
                                            result.file_channels, spec)
    audio = audio_lib.load_audio(job.audio_path, spec.sample_rate)
    check_not_silent(audio, job.audio_path)
    result.seconds = len(audio) / spec.sample_rate
    count = features_lib.num_segments(len(audio), spec)
    if count == 0:
      raise audio_lib.AudioError(f'{job.audio_path}: {result.seconds:.2f} s is shorter '
                                 f'than one segment ({spec.segment_seconds:g} s).')
    last = last_annotated_segment(job, spec)
    if last >= count:
      result.dropped['annotated segments beyond the end of the audio'] = last + 1 - count
    # One segment beyond is normal: a rating inside the final partial second (PMEmo's
    # last one always is). More than one means the audio is not what was annotated.
    if last > count:
      result.notes.append(
          f'{job.audio_path}: the audio ends at {result.seconds:.1f} s but its annotations '
          f'run to segment {last} ({(last + 1) * spec.segment_seconds:g} s): a truncated '
          'or different file? Only the segments inside the audio are used.')
    valence, arousal = annotated_segments(job, spec, count)
    has_label = np.isfinite(valence) & np.isfinite(arousal)
    wanted = np.ones(count, bool)
    if job.segments is not None:
      wanted[:] = False
      wanted[[s for s in job.segments if s < count]] = True
    labelled = np.flatnonzero(has_label & wanted)
    unlabelled = np.flatnonzero(~has_label & wanted)
    result.labelled, result.unlabelled = labelled, unlabelled
    result.valence, result.arousal = valence[labelled], arousal[labelled]
    if len(unlabelled):
      result.dropped['segments without annotations'] = len(unlabelled)
    take = labelled if want == 'labelled' else unlabelled
    if len(take):
      result.mel, result.coch = features_lib.compute_views(
          features_lib.segment_audio(audio, spec)[take], spec)
  except audio_lib.AudioError as error:
    result.error = str(error)
  except Exception as error:  # pylint: disable=broad-except
    result.error = f'{job.audio_path}: {type(error).__name__}: {error}'
  return result


def synthetic_track_examples(track_number: int, *, generator_seed: int,
                             track_seconds: float, spec: features_lib.FeatureSpec
                             ) -> list[tuple[str, dict]]:
  """All (key, example) of one generated synthetic_va track; `index` is the caller's.

  The labels are per second (label i covers second i), averaged per segment like a
  download's annotations (`records.segment_labels`).
  """
  track = synthetic_music.generate_track(
      track_number, seed=generator_seed, sample_rate=spec.sample_rate,
      duration_s=track_seconds)
  count = features_lib.num_segments(len(track.audio), spec)
  seconds = np.arange(len(track.valence), dtype=np.float64)  # label i: second i.
  valence = records.segment_labels(seconds, track.valence, spec.segment_seconds, count)
  arousal = records.segment_labels(seconds, track.arousal, spec.segment_seconds, count)
  return list(records.track_examples(
      track.audio, valence, arousal, spec=spec, track_id=track_number,
      track_name=f'synth{track_number:05d}', style_id=track.style_id))
