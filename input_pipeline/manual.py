"""Turning a manual download into labelled segments: tolerant, precise, counted.

TensorFlow-free (worker processes import it). The pieces every real-dataset builder
shares (see docs/datasets.md):

* `FileIndex`: finds the expected files of a download whatever the case, an extra
  top-level folder or the audio extension, and says exactly what is missing.
* `read_csv`, `Table.column`, `wide_annotations`, `long_annotations`: CSVs with a BOM,
  `;` or tab separators, reordered or extra columns, empty/NaN cells.
* `TrackJob` -> `process_track` (one decode, both views, labels aligned with the
  annotation clock) -> `TrackResult`, run across processes by `ordered_map`.
* `BuildReport`: every track, segment and skipped item counted, with reasons; written
  as `build_report.json` beside the records.
"""

from __future__ import annotations

import collections
import concurrent.futures
import csv
import dataclasses
import json
import math
import multiprocessing
import os
import re
from typing import Any, Callable, Iterator, Sequence

from absl import logging
from etils import epath
import numpy as np

from damer_audio import audio as audio_lib
from damer_audio import features as features_lib
from input_pipeline import records

SILENCE_PEAK_DBFS = -60.0  # A file whose loudest sample is below this is "silent".
RANGE_TOLERANCE = 1e-3  # Labels this far outside their range are clipped, not dropped.
_MISSING = {'', 'nan', 'na', 'n/a', 'none', 'null', '-', '?'}


class ManualDataError(ValueError):
  """A download that cannot be used at all; the message says what to fix."""


# ---------------------------------------------------------------------------------------
# The build report.


@dataclasses.dataclass
class BuildReport:
  """What a build produced and everything it left out, with reasons.

  `skipped` holds whole items (audio files, CSV rows, tracks) that contribute nothing;
  `dropped` counts segments (or annotations) left out of otherwise good
  tracks, by reason; `notes` are things worth knowing that dropped nothing (a file
  resampled from an unusual rate, extra CSV columns).
  """

  dataset: str
  manual_dir: str = ''
  settings: dict[str, Any] = dataclasses.field(default_factory=dict)
  tracks: dict[str, int] = dataclasses.field(default_factory=dict)
  segments: dict[str, int] = dataclasses.field(default_factory=dict)
  dropped: dict[str, int] = dataclasses.field(default_factory=dict)
  skipped: list[dict[str, str]] = dataclasses.field(default_factory=list)
  notes: list[str] = dataclasses.field(default_factory=list)

  def skip(self, kind: str, item: str, reason: str) -> None:
    """Records a whole item left out (kind: 'audio', 'annotations', 'track', ...)."""
    self.skipped.append({'kind': kind, 'item': str(item), 'reason': reason})
    logging.warning('Skipped %s %s: %s', kind, item, reason)

  def drop(self, reason: str, count: int = 1) -> None:
    if count:
      self.dropped[reason] = self.dropped.get(reason, 0) + int(count)

  def note(self, message: str) -> None:
    self.notes.append(message)
    logging.info('%s', message)

  def to_dict(self) -> dict[str, Any]:
    skipped_by_kind = collections.Counter(s['kind'] for s in self.skipped)
    return {
        'dataset': self.dataset, 'manual_dir': self.manual_dir, 'settings': self.settings,
        'tracks': dict(self.tracks), 'segments': dict(self.segments),
        'total_tracks': sum(self.tracks.values()),
        'total_segments': sum(self.segments.values()),
        'dropped': dict(sorted(self.dropped.items())),
        'skipped_counts': dict(sorted(skipped_by_kind.items())),
        'skipped': self.skipped, 'notes': self.notes,
    }

  def write(self, path: str | os.PathLike) -> None:
    """Writes the report as JSON (local or gs:// paths, through etils.epath)."""
    epath.Path(path).write_text(json.dumps(self.to_dict(), indent=1, sort_keys=False) + '\n')

  def summary_lines(self) -> list[str]:
    d = self.to_dict()
    lines = [f'{self.dataset} build report ({self.manual_dir}):']
    for split in sorted(self.segments):
      lines.append(f'  {split}: {self.tracks.get(split, 0)} tracks, '
                   f'{self.segments[split]} segments')
    for reason, count in d['dropped'].items():
      lines.append(f'  dropped {count}: {reason}')
    for kind, count in d['skipped_counts'].items():
      lines.append(f'  skipped {count} {kind} item(s)')
    for s in self.skipped[:20]:
      lines.append(f'    {s["kind"]} {s["item"]}: {s["reason"]}')
    if len(self.skipped) > 20:
      lines.append(f'    ... {len(self.skipped) - 20} more in build_report.json')
    if self.notes:
      lines.append(f'  {len(self.notes)} note(s), e.g. {self.notes[0]}')
    return lines


# ---------------------------------------------------------------------------------------
# Finding files.


def _norm(name: str) -> str:
  """'Arousal(mean)' -> 'arousalmean'; ' Song_ID' -> 'songid'."""
  return re.sub(r'[^0-9a-z]', '', str(name).lower())


class FileIndex:
  """Every file below a manual_dir, found by name whatever the case or nesting.

  Real downloads add a top-level folder (`PMEmo2019/...`), change case or move a CSV
  next to its folder; `find` accepts all of that but never guesses between two
  different files of the same name (the one whose path matches best, then the
  shallowest, wins, and the choice is logged).
  """

  def __init__(self, root: str | os.PathLike):
    self.root = os.path.abspath(os.fspath(root))
    if not os.path.isdir(self.root):
      raise ManualDataError(f'manual_dir {self.root} is not a folder. Pass the folder you '
                            'downloaded with --config.dataset.manual_dir=DIR (or '
                            '--manual_dir=DIR for tfds build).')
    self.files: list[str] = []
    for folder, dirs, names in os.walk(self.root, followlinks=True):
      dirs[:] = sorted(d for d in dirs if not d.startswith('.') and d != '__MACOSX')
      self.files.extend(os.path.join(folder, n) for n in sorted(names)
                        if not n.startswith('._'))

  def rel(self, path: str) -> str:
    return os.path.relpath(path, self.root)

  def find(self, relpath: str, *, alternatives: Sequence[str] = (),
           required: bool = True) -> str | None:
    """The file for `relpath` (e.g. 'annotations/static_annotations.csv')."""
    wanted = [relpath, *alternatives]
    for want in wanted:
      base = os.path.basename(want).lower()
      parts = [p.lower() for p in want.replace('\\', '/').split('/')]
      hits = [f for f in self.files if os.path.basename(f).lower() == base]
      if not hits:
        continue
      def score(f, parts=parts):
        rel = [p.lower() for p in self.rel(f).split(os.sep)]
        matched = sum(1 for a, b in zip(reversed(rel), reversed(parts)) if a == b)
        return (-matched, len(rel), f)
      hits.sort(key=score)
      if len(hits) > 1:
        logging.info('%s: %d files named %s; using %s.', self.root, len(hits),
                     os.path.basename(want), self.rel(hits[0]))
      return hits[0]
    if required:
      raise ManualDataError(
          f'{self.root}: cannot find {" or ".join(wanted)} (looked for a file of that name '
          'anywhere below the folder, any case). See MANUAL_DOWNLOAD_INSTRUCTIONS or '
          'docs/datasets.md for the expected layout.')
    return None

  def find_glob(self, pattern: str) -> list[str]:
    """Files whose base name matches the regex `pattern` (case-insensitive)."""
    regex = re.compile(pattern, re.IGNORECASE)
    return [f for f in self.files if regex.fullmatch(os.path.basename(f))]

  def audio_files(self, folder: str, report: BuildReport) -> dict[str, str]:
    """{normalised stem: path} of the audio files in `folder` (any depth, any case).

    Falls back to every audio file below the root when no such folder exists. Two
    files with one stem (`12.mp3`, `12.wav`): the first extension of
    `audio_lib.AUDIO_EXTENSIONS` wins and the other is reported.
    """
    folder_l = folder.lower().strip('/')
    audio = [f for f in self.files
             if os.path.splitext(f)[1].lower() in audio_lib.AUDIO_EXTENSIONS]
    inside = [f for f in audio if folder_l in
              [p.lower() for p in self.rel(f).split(os.sep)[:-1]]]
    if not inside:
      if audio:
        report.note(f'No folder named {folder!r} below {self.root}; using the '
                    f'{len(audio)} audio files found anywhere below it.')
      inside = audio
    rank = {e: i for i, e in enumerate(audio_lib.AUDIO_EXTENSIONS)}
    inside.sort(key=lambda f: (rank[os.path.splitext(f)[1].lower()], f))
    by_stem: dict[str, str] = {}
    for f in inside:
      stem = normalise_id(os.path.splitext(os.path.basename(f))[0])
      if stem in by_stem:
        report.skip('audio', self.rel(f), f'another file for the same track is used: '
                    f'{self.rel(by_stem[stem])}')
      else:
        by_stem[stem] = f
    return by_stem


def normalise_id(value: Any) -> str:
  """Track ids as text, comparable across files: ' 012 ' -> '12', '3.0' -> '3'."""
  text = str(value).strip().strip('"\'').strip()
  try:
    number = float(text)
  except ValueError:
    return text.lower()
  if math.isfinite(number) and number == int(number):
    return str(int(number))
  return text.lower()


def sort_key(track_id: str):
  """Numeric ids in numeric order, then the rest as text."""
  return (0, int(track_id), '') if track_id.isdigit() else (1, 0, track_id)


# ---------------------------------------------------------------------------------------
# CSVs.


@dataclasses.dataclass
class Table:
  """A CSV: `columns` as written (stripped), `rows` as lists of cells."""

  path: str
  columns: list[str]
  rows: list[list[str]]

  def column(self, *aliases: str, required: bool = True) -> int | None:
    """Index of the first column whose normalised name equals one of `aliases`."""
    names = [_norm(c) for c in self.columns]
    for alias in aliases:
      if _norm(alias) in names:
        return names.index(_norm(alias))
    if required:
      raise ManualDataError(f'{self.path}: no column {" / ".join(aliases)}; the columns '
                            f'are {self.columns}.')
    return None


def read_csv(path: str) -> Table:
  """Reads a CSV with or without a BOM; ',', ';' or tab separated; blank rows dropped."""
  try:
    with open(path, newline='', encoding='utf-8-sig') as f:
      text = f.read()
  except UnicodeDecodeError:
    with open(path, newline='', encoding='latin-1') as f:
      text = f.read()
  text = text.lstrip('\ufeff')
  if not text.strip():
    raise ManualDataError(f'{path}: the file is empty.')
  first = text.splitlines()[0]
  delimiter = max(',;\t', key=first.count)
  rows = [r for r in csv.reader(text.splitlines(), delimiter=delimiter)
          if any(c.strip() for c in r)]
  header = [c.strip().lstrip('\ufeff').strip('"').strip() for c in rows[0]]
  return Table(path, header, [[c.strip() for c in r] for r in rows[1:]])


def to_float(cell: str) -> float:
  """A cell as float; empty / 'NaN' / 'NA' / unparseable -> NaN."""
  if cell is None or cell.strip().lower() in _MISSING:
    return math.nan
  try:
    return float(cell)
  except ValueError:
    return math.nan


_SAMPLE_COLUMN = re.compile(r'sample_?(\d+(?:\.\d+)?)\s*(ms)?', re.IGNORECASE)


def wide_annotations(table: Table, id_aliases: Sequence[str], report: BuildReport
                     ) -> dict[str, tuple[np.ndarray, np.ndarray]]:
  """`song_id, sample_0ms, sample_1000ms, ...` -> {id: (times_s, values)}.

  Sample columns may come in any order (they are sorted by time) and other columns are
  ignored (reported once). Empty or NaN cells stay NaN (a song's tail after it ends).
  A song listed twice keeps its first row.
  """
  id_col = table.column(*id_aliases)
  times, cols, extra = [], [], []
  for i, name in enumerate(table.columns):
    match = _SAMPLE_COLUMN.fullmatch(name.strip())
    if match:
      times.append(float(match.group(1)) / 1000.0)
      cols.append(i)
    elif i != id_col:
      extra.append(name)
  if not cols:
    raise ManualDataError(f'{table.path}: no annotation columns named sample_<ms>ms; the '
                          f'columns are {table.columns[:8]}...')
  if extra:
    report.note(f'{os.path.basename(table.path)}: ignored column(s) {extra}.')
  order = np.argsort(times, kind='stable')
  times_s = np.asarray(times, np.float64)[order]
  cols = [cols[i] for i in order]
  out: dict[str, tuple[np.ndarray, np.ndarray]] = {}
  for line, row in enumerate(table.rows, start=2):
    if id_col >= len(row) or not row[id_col].strip():
      report.skip('annotations', f'{table.path}:{line}', 'row without a song id')
      continue
    song = normalise_id(row[id_col])
    if song in out:
      report.skip('annotations', f'{table.path}:{line}',
                  f'second row for song {row[id_col]}; the first one is used')
      continue
    out[song] = (times_s, np.array([to_float(row[c]) if c < len(row) else math.nan
                                    for c in cols], np.float64))
  return out


def long_annotations(table: Table, id_col: int, time_col: int,
                     value_cols: Sequence[int], report: BuildReport
                     ) -> dict[str, tuple[np.ndarray, np.ndarray]]:
  """Rows `id, time_s, v1, v2, ...` -> {id: (times_s [n], values [n, len(value_cols)])}."""
  grouped: dict[str, list[list[float]]] = collections.defaultdict(list)
  for line, row in enumerate(table.rows, start=2):
    need = max([id_col, time_col, *value_cols])
    if need >= len(row) or not row[id_col].strip():
      report.skip('annotations', f'{table.path}:{line}', 'incomplete row')
      continue
    time_s = to_float(row[time_col])
    if not math.isfinite(time_s):
      report.skip('annotations', f'{table.path}:{line}', f'no time in {row[time_col]!r}')
      continue
    grouped[normalise_id(row[id_col])].append(
        [time_s] + [to_float(row[c]) for c in value_cols])
  out = {}
  for song, items in grouped.items():
    arr = np.asarray(sorted(items, key=lambda r: r[0]), np.float64)
    out[song] = (arr[:, 0], arr[:, 1:])
  return out


def static_annotations(table: Table, id_col: int, valence_col: int, arousal_col: int,
                       report: BuildReport) -> dict[str, tuple[float, float]]:
  """One rating per clip: {id: (valence, arousal)} as written (first row wins)."""
  rows = {}
  for line, row in enumerate(table.rows, start=2):
    if max(id_col, valence_col, arousal_col) >= len(row) or not row[id_col]:
      report.skip('annotations', f'{table.path}:{line}', 'incomplete row')
      continue
    rows.setdefault(normalise_id(row[id_col]),
                    (to_float(row[valence_col]), to_float(row[arousal_col])))
  return rows


def rescale(values: np.ndarray, low: float, high: float, *, what: str,
            report: BuildReport) -> np.ndarray:
  """Maps [low, high] affinely to [-1, 1]; values outside (beyond a tolerance) -> NaN.

  Slightly-out values (rounding) are clipped; the rest are counted in the report as
  dropped annotations and never reach a label.
  """
  values = np.asarray(values, np.float64)
  span = high - low
  out = (values - low) / span * 2.0 - 1.0
  tol = 2.0 * RANGE_TOLERANCE
  bad = np.isfinite(out) & ((out < -1 - tol) | (out > 1 + tol))
  if bad.any():
    report.drop(f'annotations outside [{low:g}, {high:g}]', int(bad.sum()))
    report.note(f'{what}: {int(bad.sum())} annotation(s) outside [{low:g}, {high:g}] '
                f'(e.g. {values[bad][0]:g}) ignored.')
    out = np.where(bad, np.nan, out)
  return np.clip(out, -1.0, 1.0)


def merge_dynamic(valence: tuple[np.ndarray, np.ndarray],
                  arousal: tuple[np.ndarray, np.ndarray]
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """(times, values) of each dimension -> common times_s, valence, arousal (NaN-filled)."""
  times = np.union1d(valence[0], arousal[0])
  out = []
  for t, v in (valence, arousal):
    values = np.full(len(times), np.nan)
    values[np.searchsorted(times, t)] = v
    out.append(values)
  return times, out[0], out[1]


# ---------------------------------------------------------------------------------------
# One track: decode, check, segment, label, both views.


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


# ---------------------------------------------------------------------------------------
# Parallel, ordered.


def default_workers(num_workers: int) -> int:
  """`num_workers` if positive; else (auto) one per core on machines with 4 or more
  cores, and 1 (in-process) below that, where starting workers costs more than it
  saves (measured: docs/datasets.md)."""
  if num_workers and num_workers > 0:
    return int(num_workers)
  try:
    cores = len(os.sched_getaffinity(0))
  except AttributeError:
    cores = os.cpu_count() or 1
  return cores if cores >= 4 else 1


def _single_threaded() -> None:
  """Worker initializer: one BLAS/OpenMP thread per worker (the workers are the
  parallelism; nested thread pools would oversubscribe the cores)."""
  try:
    import threadpoolctl  # pylint: disable=g-import-not-at-top
    threadpoolctl.threadpool_limits(1)
  except ImportError:
    pass


class WorkerPool:
  """Processes for `ordered_map`, started on first use and kept for the whole build.

  Workers come from a 'forkserver' context: never a fork of a process that runs
  TensorFlow or JAX threads. As with any non-fork start method, a script that builds
  must guard its entry point with `if __name__ == '__main__':`.
  """

  def __init__(self, num_workers: int):
    self.num_workers = num_workers
    self._executor: concurrent.futures.ProcessPoolExecutor | None = None

  def submit(self, fn, item):
    if self._executor is None:
      self._executor = concurrent.futures.ProcessPoolExecutor(
          self.num_workers, mp_context=multiprocessing.get_context('forkserver'),
          initializer=_single_threaded)
    return self._executor.submit(fn, item)

  def close(self):
    if self._executor is not None:
      self._executor.shutdown(cancel_futures=True)
      self._executor = None


def ordered_map(fn: Callable[[Any], Any], items: Sequence[Any], pool: WorkerPool | None,
                *, progress: Callable[[int], None] | None = None) -> Iterator[Any]:
  """fn(item) for every item, in order; across `pool`'s processes if it has two or more.

  At most 2 x num_workers items are in flight, so memory stays bounded however long
  the list. `progress(1)` is called per finished item.
  """
  if pool is None or pool.num_workers <= 1 or len(items) <= 1:
    for item in items:
      yield fn(item)
      if progress:
        progress(1)
    return
  window = 2 * pool.num_workers
  pending: collections.deque = collections.deque()
  items_iter: Iterator[Any] = iter(items)
  for item in items_iter:
    pending.append(pool.submit(fn, item))
    if len(pending) >= window:
      break
  while pending:
    result = pending.popleft().result()
    for item in items_iter:
      pending.append(pool.submit(fn, item))
      break
    if progress:
      progress(1)
    yield result
