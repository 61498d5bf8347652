"""Reading a manual download: its files, its CSVs, its annotations on [-1, 1].

TensorFlow-free. The pieces every real-dataset builder uses to turn a download into
`tracks.TrackJob`s (see docs/datasets.md):

* `FileIndex`: finds the expected files of a download whatever the case, an extra
  top-level folder or the audio extension, and says exactly what is missing.
* `normalise_id`, `sort_key`: track ids comparable across files, in natural order.
* `read_csv`, `Table.column`, `to_float`: CSVs with a BOM, `;` or tab separators,
  reordered or extra columns, empty/NaN cells.
* `wide_annotations`, `long_annotations`, `static_annotations`: the three annotation
  layouts of the datasets, as (times_s, values) per track or one rating per clip.
* `rescale`, `merge_dynamic`: labels mapped to [-1, 1] (out-of-range ones dropped and
  counted) and valence and arousal on one clock.

Problems go to a `build_report.BuildReport`; a download that cannot be used at all
raises `build_report.ManualDataError`.
"""

from __future__ import annotations

import collections
import csv
import dataclasses
import math
import os
import re
from typing import Any, Sequence

from absl import logging
import numpy as np

from damer_audio import audio as audio_lib
from input_pipeline import build_report

RANGE_TOLERANCE = 1e-3  # Labels this far outside their range are clipped, not dropped.
_MISSING = {'', 'nan', 'na', 'n/a', 'none', 'null', '-', '?'}


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
      raise build_report.ManualDataError(
          f'manual_dir {self.root} is not a folder. Pass the folder you downloaded with '
          '--config.dataset.manual_dir=DIR (or --manual_dir=DIR for tfds build).')
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
      raise build_report.ManualDataError(
          f'{self.root}: cannot find {" or ".join(wanted)} (looked for a file of that name '
          'anywhere below the folder, any case). See MANUAL_DOWNLOAD_INSTRUCTIONS or '
          'docs/datasets.md for the expected layout.')
    return None

  def find_glob(self, pattern: str) -> list[str]:
    """Files whose base name matches the regex `pattern` (case-insensitive)."""
    regex = re.compile(pattern, re.IGNORECASE)
    return [f for f in self.files if regex.fullmatch(os.path.basename(f))]

  def audio_files(self, folder: str, report: build_report.BuildReport
                  ) -> dict[str, str]:
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
      raise build_report.ManualDataError(
          f'{self.path}: no column {" / ".join(aliases)}; the columns are '
          f'{self.columns}.')
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
    raise build_report.ManualDataError(f'{path}: the file is empty.')
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


def wide_annotations(table: Table, id_aliases: Sequence[str],
                     report: build_report.BuildReport
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
    raise build_report.ManualDataError(
        f'{table.path}: no annotation columns named sample_<ms>ms; the columns are '
        f'{table.columns[:8]}...')
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
                     value_cols: Sequence[int], report: build_report.BuildReport
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
                       report: build_report.BuildReport
                       ) -> dict[str, tuple[float, float]]:
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
            report: build_report.BuildReport) -> np.ndarray:
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
