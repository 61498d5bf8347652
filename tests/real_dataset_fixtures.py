"""Tiny manual downloads of Memo2496, PMEmo and emoMusic, written for the tests.

Real audio files (soundfile; MP3 and WAV), CSVs in the documented shapes, and the
faults real downloads have: NaN tails, a BOM, reordered rows and columns, an extra
column, a corrupt file, a silent file, a truncated file, a file at another rate,
audio without rows, rows without audio, a label out of range.

Label values follow `value(track, t)`, so a test can say what second t must read.
"""

from __future__ import annotations

import os

import numpy as np
import soundfile as sf

RATE = 22050


def value(track: int, t: float, dim: str) -> float:
  """The annotation of `track` at time t (s) for 'valence' or 'arousal', in [-1, 1]."""
  offset = 0 if dim == 'valence' else 5
  return round(((track * 7 + int(round(t * 2)) * 3 + offset) % 17) / 8.0 - 1.0, 4)


def tone(track: int, seconds: float, rate: int = RATE, channels: int = 1) -> np.ndarray:
  """A different chord for each track, at a clearly audible level."""
  t = np.arange(int(round(seconds * rate))) / rate
  f = 110.0 * (1 + track % 5)
  audio = 0.3 * np.sin(2 * np.pi * f * t) + 0.2 * np.sin(2 * np.pi * 1.5 * f * t)
  audio *= 0.6 + 0.4 * np.sin(2 * np.pi * 0.5 * t) ** 2
  audio = audio.astype(np.float32)
  return np.stack([audio] * channels, axis=1) if channels > 1 else audio


def _write_csv(path, header, rows, bom=False):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, 'w', encoding='utf-8-sig' if bom else 'utf-8', newline='') as f:
    f.write(','.join(header) + '\n')
    for row in rows:
      f.write(','.join('' if (isinstance(c, float) and np.isnan(c)) else str(c)
                       for c in row) + '\n')


def _corrupt(path):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, 'wb') as f:
    f.write(b'ID3\x03\x00\x00\x00' + bytes(range(256)) * 8)


# ---------------------------------------------------------------------------------------
# Memo2496: 1 Hz wide CSVs, sample_0ms, sample_1000ms, ...

MEMO_COLUMNS = 8  # sample_0ms ... sample_7000ms


def write_memo2496(root: str) -> dict:
  """Writes the figshare raw layout; returns what a correct build must find.

  Songs (5.4 s of audio each unless said; annotations at seconds 0..4, NaN after):
    1, 3: clean MP3.        2: annotated at 0..2 only (segments 3, 4 unlabelled).
    4: WAV truncated to 3.4 s (annotations run to 4: segments 3, 4 beyond the end).
    5: WAV at 16 kHz stereo; its valence at second 1 is 1.7 (out of range).
    6: corrupt MP3.         7: annotated, no audio.      8: silent WAV.
    9: MP3, listed in songs_info under another file name ('Track Nine.MP3').
    extra.wav: audio with no rows.   10: in songs_info only.
  """
  audio_dir = os.path.join(root, 'MusicRawData')
  os.makedirs(audio_dir, exist_ok=True)
  annotated = {1: 5, 2: 3, 3: 5, 4: 5, 5: 5, 6: 5, 7: 5, 8: 5, 9: 5}
  for song in (1, 2, 3):
    sf.write(os.path.join(audio_dir, f'song_{song}.mp3'), tone(song, 5.4), RATE,
             format='MP3')
  sf.write(os.path.join(audio_dir, 'song_4.wav'), tone(4, 3.4), RATE)
  sf.write(os.path.join(audio_dir, 'song_5.wav'), tone(5, 5.4, 16000, 2), 16000)
  _corrupt(os.path.join(audio_dir, 'song_6.mp3'))
  sf.write(os.path.join(audio_dir, 'song_8.wav'), np.zeros(int(5.4 * RATE), np.float32),
           RATE)
  sf.write(os.path.join(audio_dir, 'Track Nine.MP3'), tone(9, 5.4), RATE, format='MP3')
  sf.write(os.path.join(audio_dir, 'extra.wav'), tone(11, 2.0), RATE)

  files = {s: f'song_{s}.mp3' for s in annotated}
  files[9] = 'Track Nine.MP3'
  files[10] = 'song_10.mp3'
  info_rows = [[s, files[s], f'Title {s}', 'piano' if s % 2 else 'strings']
               for s in [*annotated, 10]]
  _write_csv(os.path.join(root, 'songs_info_all.csv'),
             ['song_id', 'file_name', 'title', 'style'], info_rows, bom=True)
  header = ['song_id'] + [f'sample_{1000 * i}ms' for i in range(MEMO_COLUMNS)]
  for dim in ('valence', 'arousal'):
    rows = []
    for song, count in annotated.items():
      row = [song] + [value(song, i, dim) if i < count else np.nan
                      for i in range(MEMO_COLUMNS)]
      if song == 5 and dim == 'valence':
        row[2] = 1.7  # second 1 out of range
      rows.append(row)
    if dim == 'arousal':  # Reordered rows and columns, an extra column.
      order = [0, 3, 1, 2] + list(range(4, len(header)))
      header_a = [header[i] for i in order] + ['comment']
      rows = [[r[i] for i in order] + ['ok'] for r in reversed(rows)]
      _write_csv(os.path.join(root, f'{dim}_all_average.csv'), header_a, rows)
    else:
      _write_csv(os.path.join(root, f'{dim}_all_average.csv'), header, rows, bom=True)
  return {
      'tracks': [1, 2, 3, 4, 5, 9],
      'segments': {1: 5, 2: 3, 3: 5, 4: 3, 5: 4, 9: 5},  # 5: second 1 unlabelled.
      'skipped_audio': {'6', '8', 'extra.wav'}, 'no_audio': {'7'},
  }


# ---------------------------------------------------------------------------------------
# PMEmo2019: chorus clips, 2 Hz long-form dynamic annotations in [0, 1].


def write_pmemo(root: str, top: str = 'PMEmo2019') -> dict:
  """Writes the PMEmo2019 layout (one folder deeper, as the zip unpacks).

  Clips of 5.3 s; dynamic annotations every 0.5 s from 1.0 s to 4.5 s (segment 0 has
  none), values (value + 1) / 2 in [0, 1], rows shuffled. Music 1..5 fine (3 is a
  44.1 kHz stereo WAV), 6 zero-length, 7 annotated without audio, 8.mp3 without annotations.
  """
  base = os.path.join(root, top)
  chorus = os.path.join(base, 'chorus')
  os.makedirs(chorus, exist_ok=True)
  ids = [1, 2, 3, 4, 5, 6, 7]
  for m in (1, 2, 4, 5, 8):
    sf.write(os.path.join(chorus, f'{m}.mp3'), tone(m, 5.3), RATE, format='MP3')
  sf.write(os.path.join(chorus, '3.wav'), tone(3, 5.3, 44100, 2), 44100)
  open(os.path.join(chorus, '6.mp3'), 'wb').close()  # zero-length
  _write_csv(os.path.join(base, 'metadata.csv'),
             ['musicId', 'fileName', 'title', 'artist', 'album', 'duration',
              'chorus_start_time', 'chorus_end_time'],
             [[m, f'{m}.mp3', f't{m}', 'a', 'b', 200, '01:00', '01:05'] for m in ids + [8]])
  rows = []
  for m in ids:
    for k in range(2, 10):  # 1.0, 1.5, ..., 4.5 s
      t = k / 2
      rows.append([m, t, (value(m, t, 'arousal') + 1) / 2, (value(m, t, 'valence') + 1) / 2])
  rng = np.random.default_rng(0)
  rows = [rows[i] for i in rng.permutation(len(rows))]
  _write_csv(os.path.join(base, 'annotations', 'dynamic_annotations.csv'),
             ['musicId', 'frameTime', 'Arousal(mean)', 'Valence(mean)'], rows, bom=True)
  _write_csv(os.path.join(base, 'annotations', 'static_annotations.csv'),
             ['musicId', 'Arousal(mean)', 'Valence(mean)'],
             [[m, 0.25 + 0.05 * m, 0.8 - 0.05 * m] for m in ids])
  return {'tracks': [1, 2, 3, 4, 5], 'segments_per_track': 4}


# ---------------------------------------------------------------------------------------
# emoMusic / 1000songs: 45 s clips, 2 Hz wide CSVs from sample_15000ms.

EMO_SECONDS = 17.2  # Short clips: the annotation clock still starts at 15 s.


def write_emomusic(root: str) -> dict:
  """Writes the emoMusic layout with 17.2 s clips annotated at 15.0 .. 16.5 s.

  Songs 2, 3, 5, 7, 11 fine (11 is a FLAC), 13 corrupt, 17 annotated without audio,
  19.mp3 without rows. Valence CSV with a BOM; arousal rows reversed.
  """
  clips = os.path.join(root, 'clips_45seconds')
  os.makedirs(clips, exist_ok=True)
  for s in (2, 3, 5, 7, 19):
    sf.write(os.path.join(clips, f'{s}.mp3'), tone(s, EMO_SECONDS), RATE, format='MP3')
  sf.write(os.path.join(clips, '11.flac'), tone(11, EMO_SECONDS), RATE)
  _corrupt(os.path.join(clips, '13.mp3'))
  songs = [2, 3, 5, 7, 11, 13, 17]
  times = [15.0 + 0.5 * k for k in range(4)]
  header = ['song_id'] + [f'sample_{int(t * 1000)}ms' for t in times]
  for dim in ('valence', 'arousal'):
    rows = [[s] + [value(s, t, dim) for t in times] for s in songs]
    if dim == 'arousal':
      rows.reverse()
    _write_csv(os.path.join(root, 'annotations', f'{dim}_cont_average.csv'), header, rows,
               bom=dim == 'valence')
  _write_csv(os.path.join(root, 'annotations', 'static_annotations.csv'),
             ['song_id', 'mean_arousal', 'std_arousal', 'mean_valence', 'std_valence'],
             [[s, 3 + s % 5, 1, 7 - s % 5, 1] for s in songs])
  return {'tracks': [2, 3, 5, 7, 11], 'segments_per_track': 2}


# ---------------------------------------------------------------------------------------
# Memo2496, the authors' processed arrays.


def write_memo2496_processed(root: str, with_ids: bool = True, n_mels: int = 128,
                             n_coch: int = 84, frames: int = 87) -> dict:
  """6 tracks x 4 segments; mel stored transposed ([N, frames, n_mels]) as a variant.

  Row n belongs to track 100 + n // 4 (listed in song_ids.npy when `with_ids`);
  its mel is filled with n, its cochleagram with -n; labels value(track, n % 4).
  Row 5's arousal is 3.0 (out of range).
  """
  rows = 24
  tracks = 100 + np.arange(rows) // 4
  seconds = np.arange(rows) % 4
  os.makedirs(os.path.join(root, 'labels'), exist_ok=True)
  mel = np.broadcast_to(np.arange(rows, dtype=np.float32)[:, None, None],
                        (rows, frames, n_mels))
  coch = np.broadcast_to(-np.arange(rows, dtype=np.float32)[:, None, None],
                         (rows, n_coch, frames))
  np.save(os.path.join(root, 'mel_spec.npy'), np.ascontiguousarray(mel))
  np.save(os.path.join(root, 'cochlegram.npy'), np.ascontiguousarray(coch))
  v = np.array([value(t, s, 'valence') for t, s in zip(tracks, seconds)])
  a = np.array([value(t, s, 'arousal') for t, s in zip(tracks, seconds)])
  a[5] = 3.0
  np.save(os.path.join(root, 'labels', 'label_v.npy'), v)
  np.save(os.path.join(root, 'labels', 'label_a.npy'), a)
  if with_ids:
    np.save(os.path.join(root, 'song_ids.npy'), tracks)
  return {'rows': rows}
