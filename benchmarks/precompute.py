r"""Precompute speed and cochleagram fidelity: decode, Mel, cochleagram, whole path.

    python benchmarks/precompute.py [--seconds=60] [--repeats=5] \
        [--formats=wav,flac,ogg,mp3] [--file_rate=44100] [--channels=2] \
        [--reference_seconds=20] [--noreference] [--click_seconds=4]

Both cochleagram methods (`config.features.coch_method`) are timed and measured:
'stft' (gammatone responses on the Mel view's STFT) and 'gammatone' (time-domain
gammatone filterbank).

Renders `--seconds` of procedural music (`input_pipeline.synthetic_music`, 12 s
tracks, one per style in turn) at `--file_rate`, writes it in each of `--formats` with
soundfile (stereo by default, as the datasets' MP3s are: the right channel is the left
delayed by 10 ms; 16-bit PCM for WAV/FLAC, libsndfile's default quality for OGG Vorbis
and MP3), and measures times real time (audio seconds / wall seconds; best of `--repeats`, after a warm-up) on
ONE core: OMP/MKL/OpenBLAS thread counts are set to 1 before numpy is imported. It also
reports audio seconds per CPU second of this process (`x_realtime_cpu`): the per-core
rate, which stays meaningful when other jobs share the machine and the wall rate drops.

Stages timed:
  decode/<fmt>     load_audio at the file's rate: soundfile decode + mix to mono float32.
  mix              the mix to mono alone (load_audio's `audio.mean(axis=1)`), stereo.
  resample         file_rate -> 22,050 Hz, soxr_hq (what load_audio does).
  stft             the power spectrogram of the 1 s segments.
  mel, coch        one view alone: STFT + filterbank + log (public functions).
  views            both views from one STFT: features.compute_views (production path,
                   coch_method='stft').
  coch_gammatone   the time-domain cochleagram alone: gammatone_power + log.
  views_gammatone  both views, coch_method='gammatone': compute_views.
  views_librosa    both views via librosa.stft + einsum (the previous implementation).
  librosa_mel      librosa.feature.melspectrogram on the same segments.
  gtgram           gammatone.gtgram.gtgram, the time-domain gammatone reference.
  whole/<fmt>      load_audio(file, 22050) + segment_audio + compute_views ('stft').
  whole_gammatone/<fmt>  the same with coch_method='gammatone'.

Fidelity: the reference is `gtgram` run on each zero-padded segment (n_fft / 2 zeros on
each side, as the centred STFT pads) with window n_fft / sr, hop hop_length / sr, the
same 84 centre frequencies and 50 Hz lowest centre, so its frame t is centred on the
same sample as ours; `--reference_seconds` of segments, evenly spaced over all tracks.
Both are converted to dB relative to a full-scale 1 kHz sine, clipped at -100 dB, and
correlated (Pearson) over all those segments, channels and frames. Each method is
compared with `gtgram` at two windows: n_fft / sr (93 ms, the 'stft' method's) and
2 hop / sr (23 ms, the 'gammatone' method's); `gtgram` integrates its filter output
over a rectangular window with no delay compensation. The 'gammatone' method is also
compared with the package's own filterbank output (`gtgram_xe`, float64, full rate)
framed exactly as ours (envelope delay removed, Hann window of 2 hops): that isolates
our implementation (float32, decimated low channels) from the choice of framing.

Two views that differ: `redundancy` is the correlation, over the music segments, of the
frame-to-frame change (first difference along time) of each cochleagram channel with
that of the Mel band nearest its centre frequency (pooled over channels), and the same
for the levels; `click_width_frames` is the -6 dB width, in frames, of each channel's
response to a click in a train of clicks 0.25 s apart (median over clicks and channels,
channels above and below 500 Hz separately).

The reference needs the `gammatone` package (pip install gammatone==1.0.3); without
it, run with --noreference. The last line printed is a JSON summary.
"""

import os

for _name in ('OMP_NUM_THREADS', 'MKL_NUM_THREADS', 'OPENBLAS_NUM_THREADS',
              'VECLIB_MAXIMUM_THREADS', 'NUMEXPR_NUM_THREADS'):
  os.environ[_name] = '1'  # Single core; must happen before numpy is imported.

# pylint: disable=g-import-not-at-top,wrong-import-position
import dataclasses
import json
import platform
import sys
import tempfile
import time

from absl import app
from absl import flags
import librosa
import numpy as np
import soundfile as sf

from damer_audio import audio as audio_lib
from damer_audio import features as F
from input_pipeline import synthetic_music

_SECONDS = flags.DEFINE_float('seconds', 60.0, 'Seconds of audio to time.')
_REPEATS = flags.DEFINE_integer('repeats', 5, 'Timed repeats per stage; the best counts.')
_FORMATS = flags.DEFINE_list('formats', ['wav', 'flac', 'ogg', 'mp3'],
                             'Formats to write and decode (wav, flac, ogg, mp3).')
_FILE_RATE = flags.DEFINE_integer('file_rate', 44100,
                                  'Sample rate of the written files, Hz (then resampled).')
_CHANNELS = flags.DEFINE_integer('channels', 2, 'Channels of the written files: 1 or 2.')
_REFERENCE = flags.DEFINE_bool('reference', True,
                               'Compare with and time gammatone.gtgram (needs gammatone).')
_REFERENCE_SECONDS = flags.DEFINE_float(
    'reference_seconds', 20.0, 'Seconds of audio for the gtgram reference (it is slow).')
_CLICK_SECONDS = flags.DEFINE_float('click_seconds', 4.0,
                                    'Seconds of click train for the onset widths.')

_TRACK_SECONDS = 12.0  # 60 s hold all five instrumentation styles.
_METHODS = ('stft', 'gammatone')
_CLICK_PERIOD_S = 0.25
_SUBTYPES = {'wav': ('WAV', 'PCM_16'), 'flac': ('FLAC', 'PCM_16'),
             'ogg': ('OGG', 'VORBIS'), 'mp3': ('MP3', 'MPEG_LAYER_III')}


def _import_gammatone():
  """gammatone.gtgram and gammatone.filters, or exits with what to do."""
  try:
    from gammatone import filters as gt_filters
    from gammatone import gtgram as gt_gtgram
  except ImportError as error:
    sys.exit(f'The cochleagram reference needs the `gammatone` package ({error}). '
             'Install it with `pip install gammatone==1.0.3`, or run with --noreference '
             'to time our features only.')
  return gt_gtgram, gt_filters


def render_music(seconds: float, sample_rate: int) -> np.ndarray:
  """Procedural music [round(seconds * sample_rate)], float32: 12 s tracks, joined."""
  parts, left, number = [], seconds, 0
  while left > 0:
    duration = min(_TRACK_SECONDS, left)
    parts.append(synthetic_music.generate_track(
        number, sample_rate=sample_rate, duration_s=duration).audio)
    left -= duration
    number += 1
  return np.concatenate(parts).astype(np.float32)


def timed(fn) -> tuple[float, float]:
  """(wall, process CPU) seconds of one call of fn()."""
  wall, cpu = time.perf_counter(), time.process_time()
  fn()
  return time.perf_counter() - wall, time.process_time() - cpu


def best_seconds(fn, repeats: int) -> tuple[float, float]:
  """Best wall and best CPU time of `repeats` calls of fn(), after one warm-up call."""
  fn()
  times = [timed(fn) for _ in range(repeats)]
  return min(t[0] for t in times), min(t[1] for t in times)


def write_files(music: np.ndarray, sample_rate: int, channels: int, formats,
                directory: str) -> dict:
  """Writes music in each format; returns {format: path}, skipping unwritable ones."""
  if channels not in (1, 2):
    raise app.UsageError(f'--channels={channels}: use 1 (mono) or 2 (stereo).')
  if channels == 2:
    delay = int(0.01 * sample_rate)
    right = np.concatenate([np.zeros(delay, music.dtype), music[:len(music) - delay]])
    music = np.stack([music, right], axis=1)
  paths = {}
  for fmt in formats:
    if fmt not in _SUBTYPES:
      raise app.UsageError(f'--formats: unknown format {fmt!r}; use some of '
                           f'{", ".join(_SUBTYPES)}.')
    path = os.path.join(directory, f'music.{fmt}')
    container, subtype = _SUBTYPES[fmt]
    try:
      # In 1 s blocks: one long write overflows libvorbis's stack (a segfault; see
      # python-soundfile#426, libsndfile#1095).
      with sf.SoundFile(path, 'w', sample_rate, channels, format=container,
                        subtype=subtype) as sound:
        for start in range(0, len(music), sample_rate):
          sound.write(music[start:start + sample_rate])
    except Exception as error:  # pylint: disable=broad-except
      print(f'skipping {fmt}: libsndfile {sf.__libsndfile_version__} cannot write it '
            f'({error}).')
      continue
    paths[fmt] = path
  return paths


def views_via_librosa(segments: np.ndarray, spec: F.FeatureSpec):
  """The previous implementation: librosa.stft, then both filterbanks by einsum."""
  stft = librosa.stft(segments, n_fft=spec.n_fft, hop_length=spec.hop_length,
                      center=True, pad_mode='constant')
  power = (np.abs(stft) ** 2).astype(np.float32)
  mel_db, coch_db = F._full_scale_db(spec)  # pylint: disable=protected-access
  mel = np.einsum('mf,...ft->...mt', F.mel_filterbank(spec), power)
  coch = np.einsum('cf,...ft->...ct', F.gammatone_filterbank(spec)[0], power)
  return F.log_normalise(mel, mel_db), F.log_normalise(coch, coch_db)


def one_view(segments: np.ndarray, spec: F.FeatureSpec, which: str) -> np.ndarray:
  """One view alone from the public functions: STFT, filterbank, log."""
  power = F.power_spectrogram(segments, spec)
  mel_db, coch_db = F._full_scale_db(spec)  # pylint: disable=protected-access
  if which == 'mel':
    return F.log_normalise(np.matmul(F.mel_filterbank(spec), power), mel_db)
  return F.log_normalise(np.matmul(F.gammatone_filterbank(spec)[0], power), coch_db)


def librosa_mel(segments: np.ndarray, spec: F.FeatureSpec) -> np.ndarray:
  return librosa.feature.melspectrogram(
      y=segments, sr=spec.sample_rate, n_fft=spec.n_fft, hop_length=spec.hop_length,
      center=True, pad_mode='constant', power=2.0, n_mels=spec.n_mels,
      fmin=spec.mel_fmin, fmax=spec.max_frequency)


class Reference:
  """gammatone.gtgram on zero-padded segments, frames aligned with compute_views."""

  def __init__(self, spec: F.FeatureSpec, window: int = 0):
    """window: gtgram's window in samples (even); 0 means n_fft."""
    self.gtgram, filters = _import_gammatone()
    self.spec = spec
    self.window = window or spec.n_fft
    centres = F.gammatone_filterbank(spec)[1]
    # The package spaces `channels` centres on the same ERB scale from f_min up to one
    # step below f_max; one ERB step above our top centre gives exactly our centres.
    ear = 9.26449 * 24.7
    step = np.log((centres[-1] + ear) / (centres[0] + ear)) / (len(centres) - 1)
    self.f_max = float((centres[-1] + ear) * np.exp(step) - ear)
    theirs = filters.centre_freqs(spec.sample_rate, len(centres), spec.coch_fmin,
                                  self.f_max)[::-1]
    self.centre_mismatch = float(np.max(np.abs(theirs / centres - 1)))
    tone = np.sin(2 * np.pi * 1000.0 * np.arange(spec.segment_samples) / spec.sample_rate)
    self.full_scale_db = float(10 * np.log10(np.median(self.power(tone).max(axis=0))))

  def power(self, segment: np.ndarray) -> np.ndarray:
    """Mean squared gammatone output per frame [n_coch, num_frames] of one segment."""
    spec, pad = self.spec, self.window // 2
    amplitude = self.gtgram.gtgram(
        np.pad(np.asarray(segment, np.float64), pad), spec.sample_rate,
        self.window / spec.sample_rate, spec.hop_length / spec.sample_rate,
        spec.n_coch, spec.coch_fmin, self.f_max)
    return amplitude ** 2

  def cochleagram(self, segments: np.ndarray) -> np.ndarray:
    """[num_segments, n_coch, num_frames], normalised exactly like compute_views."""
    power = np.stack([self.power(s) for s in segments])
    return F.log_normalise(power, self.full_scale_db)


class FilterbankReference(Reference):
  """The package's filterbank output (gtgram_xe), framed as coch_method='gammatone'.

  Full rate, float64, no decimation; each channel delayed back by the same envelope
  delay 3 / (2 pi b) and averaged over a periodic Hann window of 2 hops per frame.
  """

  def __init__(self, spec: F.FeatureSpec):
    centres = F.gammatone_filterbank(spec)[1]
    bandwidth = 1.019 * F.erb_bandwidth(centres)
    self.delays = np.round(3.0 / (2 * np.pi * bandwidth) * spec.sample_rate).astype(int)
    super().__init__(spec)

  def power(self, segment: np.ndarray) -> np.ndarray:
    spec, hop = self.spec, self.spec.hop_length
    frames = 1 + len(segment) // hop
    padded = np.zeros((frames + 1) * hop + self.delays.max())
    padded[hop:hop + len(segment)] = segment
    squared = self.gtgram.gtgram_xe(padded, spec.sample_rate, spec.n_coch, spec.coch_fmin,
                                    self.f_max)
    window = np.hanning(2 * hop + 1)[:-1] / hop
    out = np.empty((spec.n_coch, frames))
    for channel, delay in enumerate(self.delays):
      blocks = squared[channel, delay:delay + (frames + 1) * hop].reshape(frames + 1, hop)
      out[channel] = blocks[:-1] @ window[:hop] + blocks[1:] @ window[hop:]
    return out


def machine_name() -> str:
  """CPU model and core count, e.g. 'AMD EPYC, 2 cores'."""
  model = platform.processor() or platform.machine()
  try:
    with open('/proc/cpuinfo') as cpuinfo:
      names = [line.split(':', 1)[1].strip() for line in cpuinfo
               if line.startswith('model name')]
    model = names[0] if names else model
  except OSError:
    pass
  return f'{model}, {os.cpu_count()} cores'


def correlation(a: np.ndarray, b: np.ndarray) -> float:
  return float(np.corrcoef(a.ravel(), b.ravel())[0, 1])


def compare(ours: np.ndarray, reference: np.ndarray, spec: F.FeatureSpec) -> dict:
  """Log correlation (all frames; without the frames whose n_fft window holds zero
  padding) and mean / mean absolute dB difference of two normalised cochleagrams."""
  edge = spec.n_fft // (2 * spec.hop_length)
  interior = (Ellipsis, slice(edge, -edge))
  audible = reference > -2 + 40 / 25  # above -60 dB re full scale
  difference = 25 * (ours - reference)
  return {'correlation': correlation(ours, reference),
          'correlation_interior': correlation(ours[interior], reference[interior]),
          'mean_db_difference': float(np.mean(difference)),
          'mean_abs_db_difference_above_-60db': float(np.mean(np.abs(difference[audible])))}


def nearest_mel_bands(spec: F.FeatureSpec) -> np.ndarray:
  """For each gammatone channel, the Mel band whose centre is nearest in log frequency."""
  mel_centres = librosa.mel_frequencies(spec.n_mels + 2, fmin=spec.mel_fmin,
                                        fmax=spec.max_frequency)[1:-1]
  centres = F.gammatone_filterbank(spec)[1]
  return np.argmin(np.abs(np.log(centres[:, None] / np.maximum(mel_centres, 1.0))), axis=1)


def redundancy(mel: np.ndarray, coch: np.ndarray, spec: F.FeatureSpec) -> dict:
  """Correlation of the views' levels and frame-to-frame changes, channel by channel.

  mel [S, n_mels, T] and coch [S, n_coch, T]; each channel is paired with the Mel band
  nearest it; the pairs are pooled.
  """
  paired = mel[:, nearest_mel_bands(spec)]
  return {'level_correlation': correlation(paired, coch),
          'change_correlation': correlation(np.diff(paired, axis=-1),
                                            np.diff(coch, axis=-1))}


def click_train(seconds: float, spec: F.FeatureSpec) -> tuple[np.ndarray, np.ndarray]:
  """Clicks of amplitude 0.5 every 0.25 s, off the hop grid: audio [samples], positions."""
  audio = np.zeros(int(seconds * spec.sample_rate), np.float32)
  period = int(_CLICK_PERIOD_S * spec.sample_rate)
  positions = np.arange(period // 2, len(audio), period) + spec.hop_length // 3
  positions = positions[positions < len(audio)]
  audio[positions] = 0.5
  return audio, positions


def onset_widths(coch: np.ndarray, frames: np.ndarray, reach: int = 8) -> np.ndarray:
  """-6 dB widths [clicks, channels] in frames of the responses peaking near `frames`.

  coch [n_coch, T] (normalised: 6 dB = 6 / 25); a width counts the contiguous frames
  around each channel's peak within `reach` frames of the click that stay within 6 dB.
  """
  widths = np.zeros((len(frames), len(coch)), int)
  for i, frame in enumerate(frames):
    lo, hi = max(0, frame - reach), min(coch.shape[1], frame + reach + 1)
    for channel, response in enumerate(coch[:, lo:hi]):
      peak = int(np.argmax(response))
      above = response >= response[peak] - 6 / 25
      left = peak
      while left > 0 and above[left - 1]:
        left -= 1
      right = peak
      while right + 1 < len(above) and above[right + 1]:
        right += 1
      widths[i, channel] = right - left + 1
  return widths


def click_widths(spec: F.FeatureSpec, seconds: float) -> dict:
  """Median -6 dB click widths (frames) above and below 500 Hz, one click per segment
  position away from the segments' edges."""
  audio, positions = click_train(seconds, spec)
  _, coch = F.compute_views(audio, spec)  # one long segment: no segment edges
  frames = np.round(positions / spec.hop_length).astype(int)
  widths = onset_widths(coch, frames)
  high = F.gammatone_filterbank(spec)[1] >= 500.0
  return {'above_500hz': float(np.median(widths[:, high])),
          'below_500hz': float(np.median(widths[:, ~high])),
          'mean_above_500hz': float(np.mean(widths[:, high])),
          'mean_below_500hz': float(np.mean(widths[:, ~high])),
          'clicks': len(frames)}


def main(argv):
  del argv
  spec = F.FeatureSpec(coch_method='stft')
  repeats = _REPEATS.value
  file_rate = _FILE_RATE.value
  if _SECONDS.value < spec.segment_seconds:
    raise app.UsageError(f'--seconds={_SECONDS.value} gives no whole '
                         f'{spec.segment_seconds} s segment; use at least that.')
  music = render_music(_SECONDS.value, file_rate)
  seconds = len(music) / file_rate
  resampled = music
  if file_rate != spec.sample_rate:
    resampled = librosa.resample(music, orig_sr=file_rate, target_sr=spec.sample_rate,
                                 res_type='soxr_hq')
  segments = F.segment_audio(resampled, spec)
  seg_seconds = len(segments) * spec.segment_seconds

  specs = {m: dataclasses.replace(spec, coch_method=m) for m in _METHODS}
  reference = Reference(spec) if _REFERENCE.value else None
  xrt, rows = {}, []

  xrt_cpu = {}

  def record(name, audio_seconds, times, note=''):
    wall, cpu = times
    xrt[name], xrt_cpu[name] = audio_seconds / wall, audio_seconds / max(cpu, 1e-9)
    rows.append((name, xrt[name], xrt_cpu[name], 1000 * wall / audio_seconds, note))

  with tempfile.TemporaryDirectory() as directory:
    paths = write_files(music, file_rate, _CHANNELS.value, _FORMATS.value, directory)
    for fmt, path in paths.items():
      record(f'decode/{fmt}', seconds,
             best_seconds(lambda p=path: audio_lib.load_audio(p, file_rate), repeats),
             f'{_CHANNELS.value} ch, {file_rate} Hz, '
             f'{os.path.getsize(path) * 8e-3 / seconds:.0f} kbit/s')
    if _CHANNELS.value > 1 and paths:
      decoded, _ = sf.read(next(iter(paths.values())), dtype='float32', always_2d=True)
      record('mix', seconds, best_seconds(lambda: decoded.mean(axis=1), repeats),
             'included in decode/<fmt>')
    if file_rate != spec.sample_rate:
      def resample():
        return librosa.resample(music, orig_sr=file_rate, target_sr=spec.sample_rate,
                                res_type='soxr_hq')
      record('resample', seconds, best_seconds(resample, repeats),
             f'{file_rate} -> {spec.sample_rate} Hz, soxr_hq')
    record('stft', seg_seconds,
           best_seconds(lambda: F.power_spectrogram(segments, spec), repeats),
           'float32 scipy.fft.rfft')
    record('mel', seg_seconds, best_seconds(lambda: one_view(segments, spec, 'mel'), repeats),
           'STFT + Mel bank + log')
    record('coch', seg_seconds,
           best_seconds(lambda: one_view(segments, spec, 'coch'), repeats),
           'STFT + gammatone bank + log')
    record('views', seg_seconds,
           best_seconds(lambda: F.compute_views(segments, spec), repeats),
           'compute_views: both, one STFT')
    gammatone_db = F._gammatone_full_scale_db(  # pylint: disable=protected-access
        specs['gammatone'])
    record('coch_gammatone', seg_seconds,
           best_seconds(lambda: F.log_normalise(
               F.gammatone_power(segments, specs['gammatone']), gammatone_db), repeats),
           'time-domain gammatone filterbank + log')
    record('views_gammatone', seg_seconds,
           best_seconds(lambda: F.compute_views(segments, specs['gammatone']), repeats),
           "compute_views, coch_method='gammatone'")
    record('views_librosa', seg_seconds,
           best_seconds(lambda: views_via_librosa(segments, spec), repeats),
           'previous: librosa.stft + einsum')
    record('librosa_mel', seg_seconds,
           best_seconds(lambda: librosa_mel(segments, spec), repeats),
           'librosa.feature.melspectrogram')
    for method, prefix in (('stft', 'whole'), ('gammatone', 'whole_gammatone')):
      for fmt, path in paths.items():
        def whole(p=path, s=specs[method]):
          audio = audio_lib.load_audio(p, s.sample_rate)
          return F.compute_views(F.segment_audio(audio, s), s)
        record(f'{prefix}/{fmt}', seconds, best_seconds(whole, repeats),
               f'load_audio + segment_audio + compute_views ({method})')

  mel, coch = F.compute_views(segments, spec)
  coch_gammatone = F.compute_views(segments, specs['gammatone'])[1]
  mel_ref = F.log_normalise(librosa_mel(segments, spec),
                            F._full_scale_db(spec)[0])  # pylint: disable=protected-access
  summary = {'audio_seconds': seconds, 'file_rate': file_rate, 'threads': 1,
             'channels': _CHANNELS.value,
             'repeats': repeats, 'machine': machine_name(),
             'mel_max_abs_diff_vs_librosa': float(np.max(np.abs(mel - mel_ref))),
             'gammatone_minus_stft_mean_db': float(25 * np.mean(coch_gammatone - coch)),
             'redundancy': {'stft': redundancy(mel, coch, spec),
                            'gammatone': redundancy(mel, coch_gammatone, spec)},
             'click_width_frames': {m: click_widths(specs[m], _CLICK_SECONDS.value)
                                    for m in _METHODS}}

  if reference is not None:
    count = max(1, min(len(segments), int(_REFERENCE_SECONDS.value // spec.segment_seconds)))
    chosen = np.linspace(0, len(segments) - 1, count).round().astype(int)  # all tracks
    coch_ref = None
    def run_reference():
      nonlocal coch_ref
      coch_ref = reference.cochleagram(segments[chosen])
    record('gtgram', count * spec.segment_seconds, timed(run_reference),
           f'gammatone.gtgram, {count} segments, one run')
    ours = {'stft': coch[chosen], 'gammatone': coch_gammatone[chosen]}
    short_ref = Reference(spec, 2 * spec.hop_length).cochleagram(segments[chosen])
    filterbank_ref = FilterbankReference(spec).cochleagram(segments[chosen])
    fidelity = {m: {'gtgram_n_fft_window': compare(ours[m], coch_ref, spec),
                    'gtgram_2_hop_window': compare(ours[m], short_ref, spec)}
                for m in _METHODS}
    fidelity['gammatone']['filterbank_same_framing'] = compare(
        ours['gammatone'], filterbank_ref, spec)
    stft_vs_ref = fidelity['stft']['gtgram_n_fft_window']
    summary.update(
        coch_correlation=stft_vs_ref['correlation'],
        coch_correlation_interior=stft_vs_ref['correlation_interior'],
        coch_mean_db_difference=stft_vs_ref['mean_db_difference'],
        fidelity=fidelity,
        reference_seconds=count * spec.segment_seconds,
        reference_centre_mismatch=reference.centre_mismatch)

  bounds = {}
  for fmt in paths:
    decode = 1 / xrt[f'decode/{fmt}'] + 1 / xrt.get('resample', np.inf)
    for method, views in (('stft', 'views'), ('gammatone', 'views_gammatone')):
      features = 1 / xrt[views]
      key = fmt if method == 'stft' else f'{fmt}/gammatone'
      bounds[key] = {'decode_share': decode / (decode + features),
                     'bound': 'decode' if decode > features else 'features'}
  summary.update(x_realtime=xrt, x_realtime_cpu=xrt_cpu, whole_path=bounds)

  print(f'\nPrecompute on one core of {summary["machine"]} ({seconds:.0f} s of procedural '
        f'music, best of {repeats}; x real time = audio s / wall s, and / CPU s of this '
        f'process: the per-core rate when other jobs share the machine)')
  print(f'{"stage":<22}{"x RT wall":>10}{"x RT CPU":>10}{"ms per s":>10}  note')
  for name, speed, speed_cpu, ms, note in rows:
    print(f'{name:<22}{speed:>10.0f}{speed_cpu:>10.0f}{ms:>10.2f}  {note}')
  print(f'\nMel vs librosa.feature.melspectrogram: max |difference| '
        f'{summary["mel_max_abs_diff_vs_librosa"]:.2e} (normalised units)')
  if reference is not None:
    print(f'\nCochleagram vs the gammatone package ({summary["reference_seconds"]:.0f} s, '
          f'centres equal to {summary["reference_centre_mismatch"]:.1e}): log correlation '
          f'all frames / without edge frames, mean dB difference, mean |dB| above -60 dB')
    for method, rows_ in summary['fidelity'].items():
      for name, row in rows_.items():
        print(f'  {method:<10}{name:<26}{row["correlation"]:.4f} / '
              f'{row["correlation_interior"]:.4f}  {row["mean_db_difference"]:+.2f} dB  '
              f'{row["mean_abs_db_difference_above_-60db"]:.2f} dB')
  print(f'\nGammatone minus stft cochleagram, mean: '
        f'{summary["gammatone_minus_stft_mean_db"]:+.2f} dB')
  for method in _METHODS:
    red, click = summary['redundancy'][method], summary['click_width_frames'][method]
    print(f'{method:<10} vs Mel (nearest band): level corr {red["level_correlation"]:.3f}, '
          f'change corr {red["change_correlation"]:.3f}; click -6 dB width, median '
          f'(mean): {click["above_500hz"]:.0f} ({click["mean_above_500hz"]:.2f}) frames '
          f'above 500 Hz, {click["below_500hz"]:.0f} ({click["mean_below_500hz"]:.2f}) '
          f'below ({click["clicks"]} clicks)')
  for fmt, bound in bounds.items():
    print(f'Whole path, {fmt}: decode + resample take {100 * bound["decode_share"]:.0f}% '
          f'-> {bound["bound"]}-bound')
  print(json.dumps(summary, sort_keys=True))


if __name__ == '__main__':
  app.run(main)
