"""Emotion of music files from a trained workdir: one call per file, or a whole folder.

    from damer_jax.predict import Predictor
    predictor = Predictor.from_workdir('/tmp/damer_demo')
    result = predictor.predict('song.flac')           # or an array + sample_rate=
    print(result['valence'], result['arousal'], result['quadrant'])

Audio is decoded (any format soundfile or librosa reads), mixed to mono, resampled to
the model's rate and cut into the training segments (`config.features`). Both views
come from one STFT per segment, exactly as in the records; the segments of many files
are packed into fixed-size batches that run on all local devices.

Each result is a JSON-ready dict:

| key        | meaning                                                              |
|------------|----------------------------------------------------------------------|
| path       | the file ('<array>' for an array)                                    |
| duration_s | length of the decoded audio, seconds                                 |
| task       | 'classification' or 'regression' (what the numbers below mean)       |
| valence, arousal | track level: mean over the segments. Regression: value in [-1, 1]. Classification: probability of the high class, in [0, 1]. |
| quadrant   | Russell quadrant of the track ('Q1 happy/excited' ...); needs both targets |
| segments   | [{start_s, valence, arousal}] per segment, same conventions           |
| step       | training step of the checkpoint that made the prediction             |

A file that cannot be used yields `{'path': ..., 'error': ...}` instead. Audio shorter
than one segment is zero-padded to one segment; a tail shorter than a segment after
the last whole one is not scored (as in training). No TensorFlow is imported here.

`Predictor.write_figures` (and `predict_to_jsonl(..., figures=DIR)`) draws the results:
one figure per file, an overview of all files and a page (damer_jax/predict_plots.py).
"""

from __future__ import annotations

import collections
import concurrent.futures
import dataclasses
import functools
import json
import math
import os
import re
import time
from typing import Any, Iterable, Iterator, Sequence

from absl import logging
from etils import epath
import jax
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
import numpy as np

from damer_jax import checkpointing
from damer_jax import config_lib
from damer_jax import evaluate
from damer_jax import models
from damer_jax import quadrants
from damer_audio import audio as audio_lib
from damer_audio import features as features_lib
from damer_data import workers as workers_lib

RESULT_KEYS = ('path', 'duration_s', 'task', 'step', 'valence', 'arousal', 'quadrant',
               'segments')


def find_audio_files(path: epath.PathLike) -> tuple[list[str], list[str]]:
  """(audio files, other files) under a folder, walked recursively in natural order.

  Audio files are those with an extension in `damer_audio.audio.AUDIO_EXTENSIONS`
  (any case); a path to a file gives ([path], []), whatever its extension. Raises
  FileNotFoundError if it does not exist.
  """
  path = os.fspath(path)
  if os.path.isfile(path):
    return [path], []
  if not os.path.isdir(path):
    raise FileNotFoundError(f'--audio={path}: no such file or folder.')
  audio, other = [], []
  for root, dirs, files in os.walk(path):
    dirs.sort()
    for name in files:
      full = os.path.join(root, name)
      if name.startswith('.'):
        other.append(full)
      elif os.path.splitext(name)[1].lower() in audio_lib.AUDIO_EXTENSIONS:
        audio.append(full)
      else:
        other.append(full)
  natural = lambda p: [int(t) if t.isdigit() else t.lower() for t in re.split(r'(\d+)', p)]
  return sorted(audio, key=natural), sorted(other, key=natural)


@dataclasses.dataclass
class _Track:
  """One decoded input on its way through the model."""
  path: str
  duration_s: float = 0.0
  mel: np.ndarray | None = None   # [segments, n_mels, frames]
  coch: np.ndarray | None = None  # [segments, n_coch, frames]
  error: str | None = None
  outputs: list[np.ndarray] = dataclasses.field(default_factory=list)
  pending: int = 0  # Segments not yet through the model.


class Predictor:
  """A trained DAMER ready to score audio (see the module docstring for the output).

  Attributes:
    config: the experiment config the model was built from.
    step: training step of the restored checkpoint.
    batch_size: segments per model call (a multiple of the local device count).
    workdir: the training workdir it was restored from ('' if built from variables).
  """

  def __init__(self, config: Any, variables: dict[str, Any], step: int = 0,
               batch_size: int | None = None):
    """Wraps restored `variables` ({'params', 'batch_stats'}) of the model of `config`."""
    config_lib.validate_config(config)
    self.config = config
    self.step = int(step)
    self.workdir = ''
    self.spec = features_lib.FeatureSpec.from_config(config.features)
    self.spec.validate()
    self.targets = tuple(config.targets)
    self.task = config.task
    devices = jax.local_devices()
    size = batch_size or config.eval_batch_size
    self.batch_size = int(math.ceil(size / len(devices)) * len(devices))
    mesh = Mesh(np.asarray(devices), ('batch',))
    replicated, sharded = NamedSharding(mesh, P()), NamedSharding(mesh, P('batch'))
    self._variables = jax.device_put(variables, replicated)
    model = models.create_model(config)
    self._apply = jax.jit(functools.partial(_scores, model=model, task=self.task),
                          in_shardings=(replicated, sharded, sharded),
                          out_shardings=sharded)
    self._sharded = sharded

  @classmethod
  def from_workdir(cls, workdir: epath.PathLike, config: Any = None,
                   step: int | None = None, batch_size: int | None = None
                   ) -> 'Predictor':
    """Restores the latest (or `step`'s) checkpoint of a training workdir.

    Args:
      workdir: the --workdir of a training run.
      config: the config it was trained with; default: `<workdir>/config.json`.
      step: a checkpoint step; default: the latest.
      batch_size: segments per model call; default: config.eval_batch_size.

    Raises:
      FileNotFoundError: no checkpoint (or the step is missing) in the workdir.
      ValueError: the checkpoint does not fit the model built from `config`.
    """
    config = config if config is not None else checkpointing.load_config(workdir)
    variables, step = evaluate.restore_variables(config, workdir, step)
    predictor = cls(config, variables, step, batch_size)
    predictor.workdir = os.fspath(workdir)
    return predictor

  def predict(self, audio: str | os.PathLike | np.ndarray,
              sample_rate: int | None = None) -> dict[str, Any]:
    """Scores one file (path) or one mono/multichannel array [samples(, channels)].

    An array needs `sample_rate` (Hz); it is mixed to mono and resampled like a file.
    Raises `damer_audio.audio.AudioError` when the audio cannot be used.
    """
    if isinstance(audio, (str, os.PathLike)):
      track = self._decode(os.fspath(audio))
    else:
      if sample_rate is None:
        raise ValueError('predict(array) needs sample_rate= (Hz) of the array.')
      track = self._views('<array>', audio_lib.to_mono(audio, sample_rate,
                                                       self.spec.sample_rate))
    if track.error:
      raise audio_lib.AudioError(track.error)
    return next(self._run([track]))

  def predict_files(self, paths: Sequence[str], num_workers: int | None = None,
                    progress: bool = True) -> Iterator[dict[str, Any]]:
    """Yields one result (or error) dict per path, in the order of `paths`.

    Decoding and feature computation run in `num_workers` threads (default: the CPU
    count) ahead of the model; a progress bar goes to stderr when `progress`.
    """
    workers = num_workers or os.cpu_count() or 1
    bar = _progress_bar(len(paths), progress)
    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
      decoded = workers_lib.ordered_map(self._decode, paths, pool, window=2 * workers)
      for result in self._run(decoded):
        bar.update(1)
        yield result
    bar.close()

  def write_figures(self, results: Iterable[dict[str, Any]], directory: epath.PathLike,
                    root: epath.PathLike | None = None,
                    output: epath.PathLike | None = None, title: str = '') -> epath.Path:
    """Draws `results` (of this predictor) into `directory`; returns its index.md.

    Writes files/<name>.png per file (valence and arousal over time, the path through
    the valence-arousal plane), overview.png (every file in the plane) and index.md (the
    figures and a table; failed files keep their error there). Names are relative to
    `root` (a folder); `output` is the JSON-lines file the page links to.
    """
    from damer_jax import predict_plots  # pylint: disable=g-import-not-at-top  # matplotlib.
    return predict_plots.write_figures(results, directory, self.figure_info(), root,
                                       output, title)

  def figure_info(self) -> Any:
    """What the figures say about this model (`predict_plots.ModelInfo`)."""
    from damer_jax import predict_plots  # pylint: disable=g-import-not-at-top  # matplotlib.
    return predict_plots.ModelInfo.from_config(self.config, self.step, self.workdir)

  def _decode(self, path: str) -> _Track:
    try:
      samples = audio_lib.load_audio(path, self.spec.sample_rate)
    except audio_lib.AudioError as error:
      return _Track(path, error=str(error))
    except Exception as error:  # pylint: disable=broad-except
      return _Track(path, error=f'{path}: {type(error).__name__}: {error}')
    return self._views(path, samples)

  def _views(self, path: str, samples: np.ndarray) -> _Track:
    duration = len(samples) / self.spec.sample_rate
    n = self.spec.segment_samples
    if len(samples) < n:
      samples = np.pad(samples, (0, n - len(samples)))
    mel, coch = features_lib.compute_views(features_lib.segment_audio(samples, self.spec),
                                           self.spec)
    return _Track(path, duration_s=duration, mel=mel, coch=coch, pending=len(mel))

  def _run(self, tracks: Iterable[_Track]) -> Iterator[dict[str, Any]]:
    """Packs the segments of consecutive tracks into full batches; yields in order."""
    waiting: collections.deque[_Track] = collections.deque()
    queue: collections.deque[tuple[_Track, int]] = collections.deque()  # (track, first)
    queued = 0
    for track in tracks:
      waiting.append(track)
      if not track.error:
        queue.append((track, 0))
        queued += track.pending
      while queued >= self.batch_size:
        queued -= self._run_batch(queue, self.batch_size)
        yield from self._finished(waiting)
      yield from self._finished(waiting)
    while queued:
      queued -= self._run_batch(queue, min(queued, self.batch_size))
    yield from self._finished(waiting)

  def _run_batch(self, queue: collections.deque, count: int) -> int:
    """Runs the next `count` queued segments (padded to a full batch); returns count."""
    owners, mels, cochs = [], [], []
    need = count
    while need:
      track, first = queue.popleft()
      take = min(need, len(track.mel) - first)
      mels.append(track.mel[first:first + take])
      cochs.append(track.coch[first:first + take])
      owners.append((track, take))
      if first + take < len(track.mel):
        queue.appendleft((track, first + take))
      need -= take
    mel, coch = np.concatenate(mels), np.concatenate(cochs)
    pad = self.batch_size - count
    if pad:
      mel = np.concatenate([mel, np.zeros((pad,) + mel.shape[1:], mel.dtype)])
      coch = np.concatenate([coch, np.zeros((pad,) + coch.shape[1:], coch.dtype)])
    scores = np.asarray(jax.device_get(self._apply(self._variables, mel, coch)))[:count]
    start = 0
    for track, take in owners:
      track.outputs.append(scores[start:start + take])
      track.pending -= take
      start += take
    return count

  def _finished(self, waiting: collections.deque) -> Iterator[dict[str, Any]]:
    while waiting and (waiting[0].error or waiting[0].pending == 0):
      track = waiting.popleft()
      yield ({'path': track.path, 'error': track.error} if track.error
             else self._result(track))

  def _result(self, track: _Track) -> dict[str, Any]:
    scores = np.concatenate(track.outputs).astype(np.float64)  # [segments, targets]
    mean = scores.mean(axis=0)
    result = {'path': track.path, 'duration_s': round(track.duration_s, 3),
              'task': self.task, 'step': self.step}
    for i, name in enumerate(self.targets):
      result[name] = round(float(mean[i]), 4)
    if {'valence', 'arousal'} <= set(self.targets):
      cut = 0.5 if self.task == 'classification' else self.config.label_threshold
      result['quadrant'] = quadrants.quadrant(result['valence'] > cut,
                                              result['arousal'] > cut)
    seconds = self.spec.segment_seconds
    result['segments'] = [
        {'start_s': round(i * seconds, 3),
         **{name: round(float(row[t]), 4) for t, name in enumerate(self.targets)}}
        for i, row in enumerate(scores)]
    return result


def _scores(variables, mel, coch, *, model, task):
  """Fusion-head scores [b, targets]: P(high) for classification, values otherwise."""
  fusion = evaluate.model_outputs(variables, mel, coch, model=model, task=task)['fusion']
  return evaluate.scores(fusion, task)


class _NoBar:
  def update(self, n):
    del n

  def close(self):
    pass


def _progress_bar(total: int, enabled: bool):
  """A tqdm bar on stderr (or nothing when disabled or tqdm is missing)."""
  if not enabled:
    return _NoBar()
  try:
    import tqdm  # pylint: disable=g-import-not-at-top
  except ImportError:
    return _NoBar()
  return tqdm.tqdm(total=total, unit='file', desc='predict', dynamic_ncols=True)


def predict_to_jsonl(predictor: Predictor, audio: str, output: str | None,
                     num_workers: int | None = None, figures: str | None = None
                     ) -> tuple[int, int]:
  """Scores a file or folder, writing one JSON line per file; returns (done, failed).

  `output` None writes to stdout. `figures`: a folder for the figures and their page
  (`Predictor.write_figures`), drawn as the results arrive. Logs a summary with the
  audio seconds per second.
  """
  paths, skipped = find_audio_files(audio)
  if skipped:
    logging.warning('Skipping %d file(s) without an audio extension under %s, e.g. %s.',
                    len(skipped), audio, ', '.join(skipped[:3]))
  if not paths:
    raise FileNotFoundError(f'--audio={audio}: no audio files found (extensions: '
                            f'{", ".join(sorted(audio_lib.AUDIO_EXTENSIONS))}).')
  writer = _figure_writer(predictor, audio, output, figures) if figures else None
  stream = (epath.Path(output).open('w') if output else None)
  done = failed = 0
  seconds = drawing = 0.0
  t0 = time.perf_counter()
  try:
    for result in predictor.predict_files(paths, num_workers=num_workers):
      if writer:
        t = time.perf_counter()
        writer.add(result)
        drawing += time.perf_counter() - t
      line = json.dumps(result)
      if stream:
        stream.write(line + '\n')
      else:
        print(line, flush=True)
      if 'error' in result:
        failed += 1
        logging.error('%s', result['error'])
      else:
        done += 1
        seconds += result['duration_s']
  finally:
    if stream:
      stream.close()
  if writer:
    t = time.perf_counter()
    page = writer.finish()
    drawing += time.perf_counter() - t
    logging.info('Figures of %d file(s) drawn in %.1f s: %s', done, drawing, page)
  wall = time.perf_counter() - t0
  logging.info('Predicted %d file(s), %d failed: %.1f s of audio in %.1f s (%.1f s of '
               'audio per second)%s.', done, failed, seconds, wall, seconds / max(wall, 1e-9),
               f'; wrote {output}' if output else '')
  return done, failed


def _figure_writer(predictor: Predictor, audio: str, output: str | None, figures: str):
  """A predict_plots.FigureWriter for the files under `audio`."""
  from damer_jax import predict_plots  # pylint: disable=g-import-not-at-top  # matplotlib.
  root = audio if os.path.isdir(audio) else os.path.dirname(os.path.abspath(audio))
  return predict_plots.FigureWriter(figures, predictor.figure_info(), root, output,
                                    title=os.path.basename(os.path.normpath(audio)))
