"""The record format every dataset builder writes, and the segmenting that fills it.

One example is one segment of one track:

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
"""

from __future__ import annotations

from typing import Any, Iterator

import numpy as np

from damer_audio import features as features_lib


def features_dict(spec: features_lib.FeatureSpec):
  """The TFDS FeaturesDict for `spec` (imports TensorFlow Datasets)."""
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  tensor = tfds.features.Tensor
  return tfds.features.FeaturesDict({
      'mel': tensor(shape=(spec.n_mels, spec.num_frames), dtype=np.float32),
      'coch': tensor(shape=(spec.n_coch, spec.num_frames), dtype=np.float32),
      'valence': tensor(shape=(), dtype=np.float32),
      'arousal': tensor(shape=(), dtype=np.float32),
      'track_id': tensor(shape=(), dtype=np.int64),
      'track_name': tfds.features.Text(),
      'style_id': tensor(shape=(), dtype=np.int64),
      'index': tensor(shape=(), dtype=np.int64),
      'start_s': tensor(shape=(), dtype=np.float32),
  })


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
    yield f'{track_name}_{i:05d}', {
        'mel': mel[n], 'coch': coch[n],
        'valence': np.float32(valence[i]), 'arousal': np.float32(arousal[i]),
        'track_id': track_id, 'track_name': track_name, 'style_id': style_id,
        'index': first_index + n, 'start_s': np.float32(i * spec.segment_seconds),
    }
