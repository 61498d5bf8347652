"""memo2496: 2,496 expert-annotated instrumental tracks, 1 Hz valence/arousal.

Manual download (figshare); see MANUAL_DOWNLOAD_INSTRUCTIONS and docs/datasets.md.
Builds on the first training run with

    python main.py --config=configs/memo2496.py --config.dataset.manual_dir=DIR \
        --workdir=/tmp/damer_memo2496

Labels: `valence_all_average.csv` / `arousal_all_average.csv` hold one value per second
(`sample_0ms`, `sample_1000ms`, ...) in [-1, 1]; the cell for time t belongs to segment
floor(t / segment_seconds), and a segment's label is the mean of its cells. Cells left
empty or NaN after a song ends label nothing; such segments are dropped (counted in
build_report.json) or, with `config.dataset.unlabelled='split'`, kept apart.
"""

from __future__ import annotations

import os
import sys

from input_pipeline import build_report
from input_pipeline import download
from input_pipeline import manual_builder
from input_pipeline import tracks as tracks_lib
from input_pipeline.datasets.memo2496 import processed

_ID = ('song_id', 'songid', 'song', 'id', 'music_id', 'track_id')
_FILE = ('file_name', 'filename', 'file', 'audio', 'path', 'mp3')
_STYLE = ('style', 'genre', 'category', 'type')


class Builder(manual_builder.ManualBuilder):
  """Memo2496 from the figshare raw layout or the authors' processed arrays."""

  HOMEPAGE = 'https://arxiv.org/abs/2512.13998'
  AUDIO_FOLDER = 'MusicRawData'
  BUILDER_CONFIGS = [manual_builder.make_config(sys.modules[__name__])]
  MANUAL_DOWNLOAD_INSTRUCTIONS = """
  Download Memo2496 from figshare (linked from arXiv 2512.13998) and unpack it into
  one folder, the manual_dir:

      <manual_dir>/MusicRawData/<file_name>.mp3     (any audio extension)
      <manual_dir>/songs_info_all.csv               (song_id, file_name, ...)
      <manual_dir>/valence_all_average.csv          (song_id, sample_0ms, sample_1000ms, ...)
      <manual_dir>/arousal_all_average.csv          (same shape)
      <manual_dir>/*_all_std.csv                    (optional, unused)

  Or the authors' processed arrays (config.dataset.source='processed'):

      <manual_dir>/mel_spec.npy, cochlegram.npy, labels/label_v.npy, labels/label_a.npy

  Files may sit one folder deeper and differ in case. See docs/datasets.md.
  """

  def generate_prebuilt(self, index, report):
    source = self.builder_config.source
    if source not in ('auto', 'raw', 'processed'):
      raise ValueError(f"config.dataset.source must be 'auto', 'raw' or 'processed', "
                       f'got {source!r}.')
    raw = index.find('valence_all_average.csv', required=False) is not None
    if source == 'raw' or (source == 'auto' and (raw or not processed.present(index))):
      return None
    return processed.split_generators(self, index, report)

  def load_tracks(self, index: download.FileIndex, report: build_report.BuildReport
                  ) -> list[tracks_lib.TrackJob]:
    valence = _wide(index, 'valence', report)
    arousal = _wide(index, 'arousal', report)
    info = index.find('songs_info_all.csv', alternatives=('songs_info.csv',),
                      required=False)
    files, styles = {}, {}
    if info is None:
      report.note(f'{index.root}: no songs_info_all.csv; audio files are matched to '
                  'the annotations by song id.')
    else:
      files, styles = _songs_info(download.read_csv(info), report)
    entries = []
    for song in sorted(set(valence) | set(arousal), key=download.sort_key):
      if song not in valence or song not in arousal:
        missing = 'valence' if song not in valence else 'arousal'
        report.skip('annotations', song, f'no row in the {missing} CSV')
        continue
      if info is not None and song not in files:
        report.note(f'song {song}: annotated but not listed in songs_info_all.csv; its '
                    'audio is looked up by song id.')
      times, v, a = download.merge_dynamic(valence[song], arousal[song])
      v = download.rescale(v, -1.0, 1.0, what=f'valence of song {song}', report=report)
      a = download.rescale(a, -1.0, 1.0, what=f'arousal of song {song}', report=report)
      entries.append(dict(name=song, stems=[files.get(song), song], times_s=times,
                          valence=v, arousal=a, style_id=styles.get(song, -1)))
    for song in sorted(set(files) - set(valence) - set(arousal), key=download.sort_key):
      report.skip('songs_info row', song, 'no annotations for this song')
    audio = index.audio_files(self.AUDIO_FOLDER, report)
    return self.make_jobs(entries, audio, index, report)


def _wide(index, dimension, report):
  path = index.find(f'{dimension}_all_average.csv',
                    alternatives=(f'{dimension}_average.csv', f'{dimension}_all_avg.csv',
                                  f'{dimension}_cont_average.csv'))
  return download.wide_annotations(download.read_csv(path), _ID, report)


def _songs_info(table, report):
  """{song id: audio stem}, {song id: style id} from songs_info_all.csv."""
  id_col = table.column(*_ID)
  file_col = table.column(*_FILE, required=False)
  style_col = table.column(*_STYLE, required=False)
  files, style_names = {}, {}
  for line, row in enumerate(table.rows, start=2):
    if id_col >= len(row) or not row[id_col]:
      report.skip('songs_info row', f'{table.path}:{line}', 'no song id')
      continue
    song = download.normalise_id(row[id_col])
    stem = ''
    if file_col is not None and file_col < len(row):
      stem = os.path.splitext(os.path.basename(row[file_col].replace('\\', '/')))[0]
    files[song] = stem or song
    if style_col is not None and style_col < len(row) and row[style_col]:
      style_names[song] = row[style_col].strip().lower()
  names = sorted(set(style_names.values()))
  return files, {s: names.index(n) for s, n in style_names.items()}
