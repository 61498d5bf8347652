"""Memo2496 from the authors' processed arrays (the second accepted form).

    <manual_dir>/mel_spec.npy        [N, n_mels, frames] (or [N, frames, n_mels])
    <manual_dir>/cochlegram.npy      [N, n_coch, frames] (or transposed)
    <manual_dir>/labels/label_v.npy  [N] valence in [-1, 1]
    <manual_dir>/labels/label_a.npy  [N] arousal in [-1, 1]
    optional: song_ids.npy / labels/song_id.npy / track_ids.npy  [N] track of each row

The arrays are written to records as they are (the authors' own scaling, not
features.py's; do not mix with raw-built records). Without a track-id array no
track-level split is possible: the build then requires `split_by='segment'` (the
authors' stratified segment split, leaky) and gives each row its own track id.
"""

from __future__ import annotations


import numpy as np

from input_pipeline import build_report
from input_pipeline import download
from input_pipeline import records
from input_pipeline import splits

_IDS = ('song_ids.npy', 'song_id.npy', 'track_ids.npy', 'track_id.npy', 'ids.npy')


def present(index: download.FileIndex) -> bool:
  """Whether the download holds the processed arrays."""
  return index.find('mel_spec.npy', required=False) is not None


def _views(path, rows, bins, frames):
  array = np.load(path, mmap_mode='r')
  if array.ndim != 3 or array.shape[0] != rows:
    raise build_report.ManualDataError(
        f'{path}: shape {array.shape}, expected [{rows}, {bins}, {frames}] (one row per '
        'segment).')
  if array.shape[1:] == (bins, frames):
    return array, False
  if array.shape[1:] == (frames, bins):
    return array, True
  raise build_report.ManualDataError(
      f'{path}: rows of shape {array.shape[1:]}, but the config expects ({bins}, {frames}). '
      'Set config.features.n_mels / n_coch / hop_length / segment_seconds to match the '
      'arrays.')


def split_generators(builder, index: download.FileIndex,
                     report: build_report.BuildReport):
  """{'train': ..., 'test': ...} generators over the processed rows."""
  cfg = builder.builder_config
  spec = cfg.feature_spec
  valence = np.load(index.find('labels/label_v.npy')).astype(np.float64).reshape(-1)
  arousal = np.load(index.find('labels/label_a.npy')).astype(np.float64).reshape(-1)
  rows = len(valence)
  if len(arousal) != rows:
    raise build_report.ManualDataError(f'{index.root}: label_v.npy has {rows} rows but '
                                       f'label_a.npy {len(arousal)}.')
  mel, mel_t = _views(index.find('mel_spec.npy'), rows, spec.n_mels, spec.num_frames)
  coch, coch_t = _views(index.find('cochlegram.npy', alternatives=('cochleagram.npy',)),
                        rows, spec.n_coch, spec.num_frames)
  missing = ~(np.isfinite(valence) & np.isfinite(arousal))  # before range checks
  valence = download.rescale(valence, -1, 1, what='label_v.npy', report=report)
  arousal = download.rescale(arousal, -1, 1, what='label_a.npy', report=report)
  ids_path = next((p for p in (index.find(n, required=False) for n in _IDS) if p), None)
  report.note(f'{index.root}: processed arrays, {rows} rows'
              f'{"" if ids_path else ", no track ids"}.')
  if ids_path is not None:
    names = [download.normalise_id(x) for x in np.load(ids_path, allow_pickle=False)]
    if len(names) != rows:
      raise build_report.ManualDataError(f'{ids_path}: {len(names)} ids for {rows} rows.')
  elif cfg.split_by == 'track':
    raise build_report.ManualDataError(
        f'{index.root}: the processed arrays carry no track ids ({" / ".join(_IDS)}), so '
        'no track-level split is possible. Use the raw layout (audio + CSVs), add a '
        "track-id array, or pass --config.dataset.split_by=segment (the authors' "
        'segment split: leaky, one track in both splits).')
  else:
    names = [f'row{n:06d}' for n in range(rows)]
  ok = np.isfinite(valence) & np.isfinite(arousal)
  report.drop('rows without a label (NaN)', int(missing.sum()))
  order = sorted(set(names), key=download.sort_key)
  track_id = {name: i for i, name in enumerate(order)}
  position = np.zeros(rows, np.int64)
  seen: dict[str, int] = {}
  for n, name in enumerate(names):
    position[n] = seen.get(name, 0)
    seen[name] = position[n] + 1
  good = np.flatnonzero(ok)
  if cfg.split_by == 'track':
    chosen = splits.split_tracks(order, cfg.test_fraction, cfg.split_seed)
    test = set(chosen['test'])
    by_split = {'train': [n for n in good if names[n] not in test],
                'test': [n for n in good if names[n] in test]}
  else:
    report.note('split_by=segment (leaky): one track can be in both splits.')
    chosen = splits.split_segments_stratified(
        list(good), [(bool(valence[n] > 0), bool(arousal[n] > 0)) for n in good],
        cfg.test_fraction, cfg.split_seed)
    by_split = {s: sorted(v) for s, v in chosen.items()}

  def generate(split, rows_of_split):
    report.tracks[split] = len({names[n] for n in rows_of_split})
    report.segments[split] = len(rows_of_split)
    for i, n in enumerate(rows_of_split):
      m = np.asarray(mel[n], np.float32)
      c = np.asarray(coch[n], np.float32)
      yield f'{names[n]}_{int(position[n]):05d}', records.example(
          spec=spec, mel=m.T if mel_t else m, coch=c.T if coch_t else c,
          valence=valence[n], arousal=arousal[n], track_id=track_id[names[n]],
          track_name=names[n], style_id=-1, index=i,
          start_s=position[n] * spec.segment_seconds)

  return {split: generate(split, rows_of_split) for split, rows_of_split in by_split.items()}
