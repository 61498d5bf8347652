"""emomusic: 1000songs / emoMusic, 45 s clips with 2 Hz valence/arousal from 15 s.

Manual download; see MANUAL_DOWNLOAD_INSTRUCTIONS and docs/datasets.md. Builds on the
first training run with

    python main.py --config=configs/emomusic.py --config.dataset.manual_dir=DIR \
        --workdir=/tmp/damer_emomusic

Labels: `*_cont_average.csv` columns `sample_15000ms` ... `sample_44500ms` are times on
the clip's clock, in [-1, 1]; the rating at t s belongs to segment floor(t /
segment_seconds) and a segment's label is the mean of its ratings (two per 1 s). The
first 15 s carry no rating, so segments 0-14 are dropped (counted in the report) or,
with `config.dataset.unlabelled='split'`, kept apart. `config.dataset.labels='static'`:
the clip's static rating (1-9 scale, rescaled (x - 5) / 4 to [-1, 1]) on every segment.
"""

from __future__ import annotations

import sys

from input_pipeline import build_report
from input_pipeline import download
from input_pipeline import manual_builder
from input_pipeline import tracks as tracks_lib

_ID = ('song_id', 'songid', 'song', 'id')


class Builder(manual_builder.ManualBuilder):
  """emoMusic (MediaEval 2013 "Emotion in Music", 1000songs) from its release layout."""

  HOMEPAGE = 'https://cvml.unige.ch/databases/emoMusic/'
  AUDIO_FOLDER = 'clips_45seconds'
  BUILDER_CONFIGS = [manual_builder.make_config(sys.modules[__name__])]
  MANUAL_DOWNLOAD_INSTRUCTIONS = """
  Download 1000songs / emoMusic (https://cvml.unige.ch/databases/emoMusic/): the 45 s
  clips and the annotations, unpacked into the manual_dir:

      <manual_dir>/clips_45seconds/<song_id>.mp3          (any audio extension)
      <manual_dir>/annotations/arousal_cont_average.csv   (song_id, sample_15000ms, ...,
      <manual_dir>/annotations/valence_cont_average.csv    sample_44500ms; 2 Hz, [-1, 1])
      <manual_dir>/annotations/static_annotations.csv     (song_id, mean_arousal, ...,
                                                           mean_valence, ...; 1-9 scale)
  See docs/datasets.md.
  """

  def load_tracks(self, index: download.FileIndex, report: build_report.BuildReport
                  ) -> list[tracks_lib.TrackJob]:
    entries = []
    if self.builder_config.labels == 'static':
      table = download.read_csv(index.find('annotations/static_annotations.csv'))
      rows = download.static_annotations(
          table, table.column(*_ID), table.column('mean_valence', 'valence_mean'),
          table.column('mean_arousal', 'arousal_mean'), report)
      for song, (v, a) in rows.items():
        v, a = (download.rescale([x], 1.0, 9.0, what=f'{w} of song {song}',
                                 report=report)[0]
                for x, w in ((v, 'static valence'), (a, 'static arousal')))
        entries.append(dict(name=song, stems=[song], times_s=None, valence=v, arousal=a))
    else:
      valence = _wide(index, 'valence', report)
      arousal = _wide(index, 'arousal', report)
      for song in sorted(set(valence) | set(arousal), key=download.sort_key):
        if song not in valence or song not in arousal:
          missing = 'valence' if song not in valence else 'arousal'
          report.skip('annotations', song, f'no row in {missing}_cont_average.csv')
          continue
        times, v, a = download.merge_dynamic(valence[song], arousal[song])
        v = download.rescale(v, -1.0, 1.0, what=f'valence of song {song}', report=report)
        a = download.rescale(a, -1.0, 1.0, what=f'arousal of song {song}', report=report)
        entries.append(dict(name=song, stems=[song], times_s=times, valence=v, arousal=a))
    audio = index.audio_files(self.AUDIO_FOLDER, report)
    return self.make_jobs(entries, audio, index, report)


def _wide(index, dimension, report):
  path = index.find(f'annotations/{dimension}_cont_average.csv',
                    alternatives=(f'{dimension}_cont_avg.csv',))
  return download.wide_annotations(download.read_csv(path), _ID, report)
