"""pmemo: PMEmo2019 chorus clips with 2 Hz dynamic and static valence/arousal.

Manual download; see MANUAL_DOWNLOAD_INSTRUCTIONS and docs/datasets.md. Builds on the
first training run with

    python main.py --config=configs/pmemo.py --config.dataset.manual_dir=DIR \
        --workdir=/tmp/damer_pmemo

Labels: PMEmo rates in [0, 1]; they are rescaled to [-1, 1] (x -> 2x - 1), so the
PMEmo convention "high when > 0.5" is `label_threshold = 0` here. Dynamic labels
(default): `frameTime` (seconds on the chorus clip's clock, 2 Hz) puts each rating in
segment floor(frameTime / segment_seconds); a segment's label is the mean of its
ratings (two per 1 s segment). Segments of the clip before the first rating hold none
and are dropped (counted) or, with `config.dataset.unlabelled='split'`, kept apart.
`config.dataset.labels='static'`: the clip's static rating on every segment.
"""

from __future__ import annotations

import os
import sys

from input_pipeline import build_report
from input_pipeline import download
from input_pipeline import manual_builder
from input_pipeline import tracks as tracks_lib

_ID = ('musicId', 'music_id', 'song_id', 'id')
_TIME = ('frameTime', 'frame_time', 'time', 'time_s')
_AROUSAL = ('Arousal(mean)', 'arousal_mean', 'mean_arousal', 'arousal')
_VALENCE = ('Valence(mean)', 'valence_mean', 'mean_valence', 'valence')


class Builder(manual_builder.ManualBuilder):
  """PMEmo2019 from its release layout."""

  HOMEPAGE = 'https://github.com/HuiZhangDB/PMEmo'
  AUDIO_FOLDER = 'chorus'
  BUILDER_CONFIGS = [manual_builder.make_config(sys.modules[__name__])]
  MANUAL_DOWNLOAD_INSTRUCTIONS = """
  Request and download PMEmo2019 (https://github.com/HuiZhangDB/PMEmo) and unpack it
  into the manual_dir (an extra top-level folder such as PMEmo2019/ is fine):

      <manual_dir>/metadata.csv                         (musicId, fileName, ...)
      <manual_dir>/chorus/<musicId>.mp3                 (any audio extension)
      <manual_dir>/annotations/dynamic_annotations.csv  (musicId, frameTime,
                                                         Arousal(mean), Valence(mean))
      <manual_dir>/annotations/static_annotations.csv   (musicId, Arousal(mean),
                                                         Valence(mean))
  Ratings in [0, 1]. See docs/datasets.md.
  """

  def load_tracks(self, index: download.FileIndex, report: build_report.BuildReport
                  ) -> list[tracks_lib.TrackJob]:
    static = self.builder_config.labels == 'static'
    name = 'static_annotations.csv' if static else 'dynamic_annotations.csv'
    table = download.read_csv(index.find(f'annotations/{name}'))
    id_col, a_col, v_col = (table.column(*_ID), table.column(*_AROUSAL),
                            table.column(*_VALENCE))
    files = _metadata(index, report)
    entries = []
    if static:
      rows = download.static_annotations(table, id_col, v_col, a_col, report)
      for music, (v, a) in sorted(rows.items(), key=lambda kv: download.sort_key(kv[0])):
        v, a = (download.rescale([x], 0.0, 1.0, what=f'{w} of music {music}',
                                 report=report)[0]
                for x, w in ((v, 'valence'), (a, 'arousal')))
        entries.append(dict(name=music, stems=[files.get(music), music], times_s=None,
                            valence=v, arousal=a))
    else:
      rows = download.long_annotations(table, id_col, table.column(*_TIME),
                                       [v_col, a_col], report)
      for music, (times, values) in sorted(rows.items(),
                                           key=lambda kv: download.sort_key(kv[0])):
        v = download.rescale(values[:, 0], 0.0, 1.0, what=f'valence of music {music}',
                             report=report)
        a = download.rescale(values[:, 1], 0.0, 1.0, what=f'arousal of music {music}',
                             report=report)
        entries.append(dict(name=music, stems=[files.get(music), music], times_s=times,
                            valence=v, arousal=a))
    annotated = {e['name'] for e in entries}
    for music in sorted(set(files) - annotated, key=download.sort_key):
      report.skip('metadata row', music, f'no row in {name}')
    audio = index.audio_files(self.AUDIO_FOLDER, report)
    return self.make_jobs(entries, audio, index, report)


def _metadata(index, report):
  """{musicId: audio stem} from metadata.csv (optional)."""
  path = index.find('metadata.csv', required=False)
  if path is None:
    report.note(f'{index.root}: no metadata.csv; clips are matched by musicId.')
    return {}
  table = download.read_csv(path)
  id_col = table.column(*_ID)
  file_col = table.column('fileName', 'file_name', 'filename', required=False)
  files = {}
  for row in table.rows:
    if id_col < len(row) and row[id_col]:
      stem = ''
      if file_col is not None and file_col < len(row):
        stem = os.path.splitext(os.path.basename(row[file_col]))[0]
      files[download.normalise_id(row[id_col])] = stem or row[id_col]
  return files
