"""The record format every dataset builder writes, and the segmenting that fills it.

One example is one segment of one track. `SCHEMA` declares its keys once (dtype, shape
from the `FeatureSpec`, meaning); the TFDS features (`features_dict`) are derived from
it and every builder makes its examples with `example`, which checks them against it:

| key        | dtype   | shape                    | meaning                                  |
|------------|---------|--------------------------|------------------------------------------|
| mel        | float32 | [n_mels, num_frames]     | log-normalised Mel spectrogram           |
| coch       | float32 | [n_coch, num_frames]     | log-normalised gammatone cochleagram     |
| valence    | float32 | []                       | mean annotation inside the segment, [-1, 1] |
| arousal    | float32 | []                       | likewise                                 |
| track_id   | int64   | []                       | dense track number within the dataset    |
| track_name | string  | []                       | the dataset's own track identifier       |
| style_id   | int64   | []                       | style / instrumentation family (-1: unknown) |
| index      | int64   | []                       | position within its split (PCL table row for 'train') |
| start_s    | float32 | []                       | segment start in the track, seconds      |

TensorFlow-free at import (worker processes import it); only `features_dict` imports
TensorFlow Datasets.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Iterator

import numpy as np

from damer_audio import features as features_lib


@dataclasses.dataclass(frozen=True)
class Field:
  """One key of a record.

  Attributes:
    dtype: np.float32 or np.int64, or str for text (a TFDS Text feature).
    dims: the shape as `FeatureSpec` attribute names, e.g. ('n_mels', 'num_frames');
      () for a scalar.
    meaning: what the value holds.
  """

  dtype: Any
  dims: tuple[str, ...]
  meaning: str

  def shape(self, spec: features_lib.FeatureSpec) -> tuple[int, ...]:
    """The shape for `spec`, e.g. (128, 87) for the Mel view at the defaults."""
    return tuple(int(getattr(spec, d)) for d in self.dims)


# The one declaration of the record format (the module docstring's table).
SCHEMA: dict[str, Field] = {
    'mel': Field(np.float32, ('n_mels', 'num_frames'), 'log-normalised Mel spectrogram'),
    'coch': Field(np.float32, ('n_coch', 'num_frames'),
                  'log-normalised gammatone cochleagram'),
    'valence': Field(np.float32, (), 'mean annotation inside the segment, [-1, 1] '
                                     "(NaN in an 'unlabelled' split)"),
    'arousal': Field(np.float32, (), 'likewise'),
    'track_id': Field(np.int64, (), 'dense track number within the dataset'),
    'track_name': Field(str, (), "the dataset's own track identifier"),
    'style_id': Field(np.int64, (), 'style / instrumentation family (-1: unknown)'),
    'index': Field(np.int64, (), "position within its split (PCL table row for 'train')"),
    'start_s': Field(np.float32, (), 'segment start in the track, seconds'),
}


def features_dict(spec: features_lib.FeatureSpec):
  """The TFDS FeaturesDict of `SCHEMA` for `spec` (imports TensorFlow Datasets)."""
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  features = {}
  for key, field in SCHEMA.items():
    if field.dtype is str:
      features[key] = tfds.features.Text()
    else:
      features[key] = tfds.features.Tensor(shape=field.shape(spec), dtype=field.dtype)
  return tfds.features.FeaturesDict(features)


def example(*, spec: features_lib.FeatureSpec, **values: Any) -> dict[str, Any]:
  """One record, checked against `SCHEMA`.

  Args:
    spec: the feature parameters (they give the views' shapes).
    **values: every key of `SCHEMA` and no other: mel [n_mels, num_frames], coch
      [n_coch, num_frames], track_name text, the rest scalars.

  Returns:
    {key: value} in `SCHEMA`'s order: arrays as numpy arrays and scalars as numpy
    scalars of the schema's dtype (no copy of a view that already has it), text as
    given.

  Raises:
    ValueError: a key is missing or unknown, a value has the wrong shape, or it does
      not convert to its dtype (text for a number, a float for an integer); the
      message names the key.
  """
  unknown = sorted(set(values) - set(SCHEMA))
  missing = [k for k in SCHEMA if k not in values]
  if unknown or missing:
    problems = ([f'unknown key(s) {unknown}'] if unknown else []) + (
        [f'missing key(s) {missing}'] if missing else [])
    raise ValueError(f'A record holds exactly {", ".join(SCHEMA)}; got '
                     f'{" and ".join(problems)}.')
  out = {}
  for key, field in SCHEMA.items():
    value = values[key]
    if field.dtype is str:
      if not isinstance(value, (str, bytes)):
        raise ValueError(f'Record key {key!r} holds text, got {type(value).__name__} '
                         f'{value!r}.')
      out[key] = value
      continue
    try:
      array = np.asarray(value)
    except (TypeError, ValueError, OverflowError) as error:
      raise ValueError(f'Record key {key!r}: cannot read {value!r} as an array '
                       f'({error}).') from error
    if not np.can_cast(array.dtype, field.dtype, casting='same_kind'):
      given = (array.dtype.name if isinstance(value, (np.ndarray, np.generic))
               else type(value).__name__)
      raise ValueError(f'Record key {key!r} holds {np.dtype(field.dtype).name}, got '
                       f'{given} {value!r:.60}.')
    want = field.shape(spec)
    if array.shape != want:
      where = f' ({", ".join(field.dims)} of the FeatureSpec)' if field.dims else ''
      raise ValueError(f'Record key {key!r} has shape {list(want)}{where}, got '
                       f'{list(array.shape)}.')
    array = array.astype(field.dtype, copy=False)
    out[key] = array if array.ndim else array[()]
  return out


def segment_labels(times_s: np.ndarray, values: np.ndarray, segment_seconds: float,
                   num_segments: int) -> np.ndarray:
  """Mean of the annotations inside each segment.

  Args:
    times_s: annotation times [num_annotations], seconds from the track start.
    values: annotations [num_annotations]; NaN entries are ignored.
    segment_seconds: segment length; segment i covers [i * len, (i + 1) * len).
    num_segments: how many segments the audio has.

  Returns:
    float32 [num_segments]; NaN for a segment with no annotation inside it (such a
    segment is not labelled by guesswork: `track_examples` leaves it out).
  """
  times_s = np.asarray(times_s, np.float64)
  values = np.asarray(values, np.float64)
  keep = np.isfinite(values) & np.isfinite(times_s)
  which = np.floor(times_s[keep] / segment_seconds + 1e-9).astype(np.int64)
  inside = (which >= 0) & (which < num_segments)
  sums = np.bincount(which[inside], values[keep][inside], minlength=num_segments)
  counts = np.bincount(which[inside], minlength=num_segments)
  with np.errstate(invalid='ignore', divide='ignore'):
    return np.where(counts > 0, sums / np.maximum(counts, 1), np.nan).astype(np.float32)


def track_examples(audio: np.ndarray, valence: np.ndarray, arousal: np.ndarray, *,
                   spec: features_lib.FeatureSpec, track_id: int, track_name: str,
                   style_id: int = -1, first_index: int = 0
                   ) -> Iterator[tuple[str, dict[str, Any]]]:
  """Segments one decoded track and yields (key, example) for each labelled segment.

  Args:
    audio: mono float32 [samples] at spec.sample_rate.
    valence, arousal: per-segment labels [num_labels]; segment i gets label i.
      Segments beyond the labels, or with a NaN label, are not yielded.
    spec: feature parameters (both views come from one STFT of these samples).
    track_id, track_name, style_id: stored with every segment.
    first_index: `index` of the first yielded segment; later ones count up.
  """
  segments = features_lib.segment_audio(audio, spec)
  count = min(len(segments), len(valence), len(arousal))
  labelled = [i for i in range(count)
              if np.isfinite(valence[i]) and np.isfinite(arousal[i])]
  if not labelled:
    return
  mel, coch = features_lib.compute_views(segments[labelled], spec)
  for n, i in enumerate(labelled):
    yield f'{track_name}_{i:05d}', example(
        spec=spec, mel=mel[n], coch=coch[n], valence=valence[i], arousal=arousal[i],
        track_id=track_id, track_name=track_name, style_id=style_id,
        index=first_index + n, start_s=i * spec.segment_seconds)
