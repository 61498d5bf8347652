"""The TFDS builder all manually-downloaded datasets share (memo2496, pmemo, emomusic).

A dataset subclass says only how to read its download (with `download`:
`FileIndex`, the CSV and annotation readers): `load_tracks(index, report)` returns one
`tracks.TrackJob` per usable track (audio path + annotations on the audio clock, in
[-1, 1]). This class splits the tracks, decodes and featurises them across processes
(`tracks.process_track` through `damer_data.workers.ordered_map`; one decode -> both
views), writes the records (`records.example`) and `build_report.json`
(`build_report.BuildReport`). The config name (`make_config`) hashes the settings and
all the code the dataset's builder module reaches (`digest.builder_digest`).

Build with training (`python main.py --config=configs/<name>.py
--config.dataset.manual_dir=DIR`), with `python -m input_pipeline.build ...`, or with
`python -m input_pipeline.tfds_cli build input_pipeline/datasets/<name>
--manual_dir=DIR --data_dir=DIR` (see docs/datasets.md).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import sys
from typing import Any

from absl import logging
from etils import epath
import numpy as np
import tensorflow_datasets as tfds

from damer_audio import audio as audio_lib
from damer_audio import features as features_lib
from damer_data import workers
from input_pipeline import build_report
from input_pipeline import digest
from input_pipeline import download
from input_pipeline import records
from input_pipeline import splits
from input_pipeline import tracks as tracks_lib

SPLIT_BY = ('track', 'segment')  # 'segment': the authors' stratified split (leaky).
UNLABELLED = ('drop', 'split')
LABELS = ('dynamic', 'static')
REPORT_NAME = 'build_report.json'


@dataclasses.dataclass(eq=False)
class ManualConfig(tfds.core.BuilderConfig):
  """Everything that decides the records; the name hashes all of it (`make_config`)."""

  test_fraction: float = 0.2
  split_seed: int = 0
  split_by: str = 'track'
  labels: str = 'dynamic'
  unlabelled: str = 'drop'
  source: str = 'auto'  # memo2496 only: 'raw', 'processed' or 'auto'.
  feature_spec: features_lib.FeatureSpec = features_lib.FeatureSpec()


def make_config(builder_module: Any = None, *, test_fraction: float = 0.2,
                split_seed: int = 0, split_by: str = 'track', labels: str = 'dynamic',
                unlabelled: str = 'drop', source: str = 'auto',
                feature_spec: features_lib.FeatureSpec = features_lib.FeatureSpec()
                ) -> ManualConfig:
  """A config whose name is unique for its settings and for the code that builds it.

  The name hashes the settings and the source of `builder_module` (this module if
  None) and of every project module it reaches through imports (`digest`): decoding
  and resampling (damer_audio.audio), the views (damer_audio.features), reading the
  download, labelling, splitting, this builder. So records made by older code are
  never read as if they came from this one.
  """
  if split_by not in SPLIT_BY:
    raise ValueError(f'config.dataset.split_by must be one of {SPLIT_BY} for a real '
                     f'dataset, got {split_by!r}.')
  if unlabelled not in UNLABELLED:
    raise ValueError(f'config.dataset.unlabelled must be one of {UNLABELLED}, got '
                     f'{unlabelled!r}.')
  if labels not in LABELS:
    raise ValueError(f'config.dataset.labels must be one of {LABELS}, got {labels!r}.')
  settings = dict(test_fraction=test_fraction, split_seed=split_seed,
                  split_by=split_by, labels=labels, unlabelled=unlabelled,
                  source=source, feature_spec=dataclasses.asdict(feature_spec))
  code = digest.builder_digest(builder_module or sys.modules[__name__], settings)
  return ManualConfig(
      name=f'{labels}_{split_by}_{code}',
      description=f'{json.dumps(settings, sort_keys=True)}',
      test_fraction=test_fraction, split_seed=split_seed, split_by=split_by,
      labels=labels, unlabelled=unlabelled, source=source, feature_spec=feature_spec)


def config_from(dataset_config: Any, features_config: Any, builder_module: Any
                ) -> ManualConfig:
  """The builder config for `config.dataset` and `config.features`."""
  d = dataset_config
  return make_config(
      builder_module, test_fraction=d.test_fraction, split_seed=d.split_seed,
      split_by=d.split_by, labels=d.get('labels', 'dynamic'),
      unlabelled=d.get('unlabelled', 'drop'), source=d.get('source', 'auto'),
      feature_spec=features_lib.FeatureSpec.from_config(features_config))


class ManualBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
  """Base of the manual-download builders; subclasses implement `load_tracks`."""

  VERSION = tfds.core.Version('1.0.0')
  RELEASE_NOTES = {'1.0.0': 'First release.'}
  MANUAL_DOWNLOAD_INSTRUCTIONS = ''
  HOMEPAGE = ''
  AUDIO_FOLDER = ''

  def __init__(self, *, num_workers: int = 0, **kwargs):
    """num_workers: processes decoding and featurising (0: one per core)."""
    self._num_workers = num_workers
    self._report: build_report.BuildReport | None = None
    self._pool: workers.WorkerPool | None = None
    self._formats: list[tuple[Any, Any, str]] = []
    super().__init__(**kwargs)

  # ----- what a subclass provides.

  def load_tracks(self, index: download.FileIndex, report: build_report.BuildReport
                  ) -> list[tracks_lib.TrackJob]:
    raise NotImplementedError

  def generate_prebuilt(self, index: download.FileIndex,
                        report: build_report.BuildReport) -> dict[str, Any] | None:
    """Split generators for a download that already holds features (None: none)."""
    del index, report
    return None

  # ----- TFDS.

  def _info(self) -> tfds.core.DatasetInfo:
    return self.dataset_info_from_configs(
        features=records.features_dict(self.builder_config.feature_spec),
        supervised_keys=None, homepage=self.HOMEPAGE,
        metadata=tfds.core.MetadataDict())

  def _split_generators(self, dl_manager: tfds.download.DownloadManager):
    cfg = self.builder_config
    cfg.feature_spec.validate()
    manual_dir = os.fspath(dl_manager.manual_dir)
    index = download.FileIndex(manual_dir)
    report = self._report = build_report.BuildReport(
        dataset=self.name, manual_dir=manual_dir,
        settings=dict(config=cfg.name, test_fraction=cfg.test_fraction,
                      split_seed=cfg.split_seed, split_by=cfg.split_by,
                      labels=cfg.labels, unlabelled=cfg.unlabelled, source=cfg.source))
    prebuilt = self.generate_prebuilt(index, report)
    if prebuilt is not None:
      return prebuilt
    jobs = self.load_tracks(index, report)
    if len(jobs) < 2:
      raise build_report.ManualDataError(
          f'{manual_dir}: {len(jobs)} usable track(s) (annotations and audio both '
          f'present); at least 2 are needed. Skipped: {report.skipped[:5]}')
    by_split = self._split_jobs(jobs, report)
    keep = cfg.unlabelled == 'split'
    generators = {}
    for split, split_jobs in by_split.items():
      generators[split] = self._generate_examples(split, split_jobs, keep)
    if keep and any(_may_have_unlabelled(j, cfg.feature_spec) for j in by_split['train']):
      generators['unlabelled'] = self._generate_unlabelled(by_split)
    elif keep:
      report.note('unlabelled=split: no training track has audio without annotations, '
                  'so there is no unlabelled split.')
    return generators

  def make_jobs(self, entries: list[dict[str, Any]], audio: dict[str, str],
                index: download.FileIndex, report: build_report.BuildReport
                ) -> list[tracks_lib.TrackJob]:
    """TrackJobs for annotated entries that have audio; the rest reported.

    Args:
      entries: one dict per annotated track: `name`, `stems` (audio stems to try, in
        order), `times_s`, `valence`, `arousal` (in [-1, 1]), optional `style_id`.
      audio: {normalised stem: path} (`FileIndex.audio_files`).
      index, report: the download and the report.

    Track ids are dense, in natural order of the names.
    """
    used, found = set(), []
    for entry in entries:
      stems = [download.normalise_id(s) for s in entry['stems'] if s]
      path = next((audio[s] for s in stems if s in audio), None)
      if path is None:
        report.skip('annotations', entry['name'],
                    f'no audio file for it (looked for {" or ".join(dict.fromkeys(stems))} '
                    f'with any of {", ".join(audio_lib.AUDIO_EXTENSIONS)} below '
                    f'{self.AUDIO_FOLDER or index.root})')
        continue
      used.add(path)
      found.append((entry, path))
    for path in sorted(set(audio.values()) - used):
      report.skip('audio', index.rel(path), 'no annotations for this file')
    found.sort(key=lambda item: download.sort_key(item[0]['name']))
    return [tracks_lib.TrackJob(track_id=i, name=e['name'], audio_path=path,
                                times_s=e['times_s'], valence=e['valence'],
                                arousal=e['arousal'], style_id=e.get('style_id', -1))
            for i, (e, path) in enumerate(found)]

  def _split_jobs(self, jobs, report) -> dict[str, list[tracks_lib.TrackJob]]:
    cfg = self.builder_config
    if cfg.split_by == 'track':
      names = splits.split_tracks([j.name for j in jobs], cfg.test_fraction,
                                  cfg.split_seed)
      by_name = {j.name: j for j in jobs}
      return {s: [by_name[n] for n in sorted(names[s], key=download.sort_key)]
              for s in ('train', 'test')}
    # Segment-level, stratified by quadrant: the authors' protocol. Leaky.
    logging.warning('split_by=segment: segments of one track land in both splits, so '
                    'test scores overstate generalisation to new tracks (leaky).')
    report.note('split_by=segment (leaky): one track can be in both splits.')
    keys, strata = [], []
    spec = cfg.feature_spec
    for job in jobs:
      last = tracks_lib.last_annotated_segment(job, spec)
      count = last + 1 if job.times_s is not None else 0
      if job.times_s is None:  # Static labels: every segment; count from the file.
        count = int(_file_seconds(job.audio_path) // spec.segment_seconds)
      valence, arousal = tracks_lib.annotated_segments(job, spec, max(count, 0))
      for i in range(max(count, 0)):
        if np.isfinite(valence[i]) and np.isfinite(arousal[i]):
          keys.append((job.name, i))
          strata.append((bool(valence[i] > 0), bool(arousal[i] > 0)))
    chosen = splits.split_segments_stratified(keys, strata, cfg.test_fraction,
                                              cfg.split_seed)
    out = {}
    for split in ('train', 'test'):
      mine: dict[str, list[int]] = {}
      for name, i in chosen[split]:
        mine.setdefault(name, []).append(i)
      out[split] = [dataclasses.replace(j, segments=tuple(mine[j.name]))
                    for j in jobs if j.name in mine]
    return out

  def _results(self, jobs, want: str, desc: str):
    """process_track over `jobs`, in order, in parallel, with a progress bar."""
    spec = self.builder_config.feature_spec
    fn = functools.partial(tracks_lib.process_track, spec=spec, want=want)
    with tfds.core.utils.tqdm(total=len(jobs), desc=desc, unit=' tracks',
                              leave=False) as bar:
      yield from workers.ordered_map(fn, jobs, self._pool, progress=bar.update)

  def _generate_examples(self, split: str, jobs, keep_unlabelled: bool):
    report = self._report
    report.tracks[split] = report.segments[split] = 0
    spec = self.builder_config.feature_spec
    index = 0
    for result in self._results(jobs, 'labelled', f'{self.name} {split}'):
      job = result.job
      for note in result.notes:
        report.note(note)
      if result.error:
        report.skip('audio', job.name, result.error)
        continue
      self._formats.append((result.file_rate, result.file_channels, job.audio_path))
      for reason, count in result.dropped.items():
        if not (keep_unlabelled and reason == 'segments without annotations'):
          report.drop(reason, count)
      if len(result.labelled) == 0:
        report.skip('track', job.name, 'no segment of the audio holds an annotation')
        continue
      report.tracks[split] += 1
      for n, i in enumerate(result.labelled):
        yield f'{job.name}_{i:05d}', records.example(
            spec=spec, mel=result.mel[n], coch=result.coch[n],
            valence=result.valence[n], arousal=result.arousal[n],
            track_id=job.track_id, track_name=job.name, style_id=job.style_id,
            index=index, start_s=i * spec.segment_seconds)
        index += 1
    report.segments[split] = index
    if index == 0:  # TFDS would only say "No examples were yielded."
      raise build_report.ManualDataError(
          f'{self.name}: the {split!r} split is empty: none of its {len(jobs)} track(s) '
          f'gave a labelled segment. Skipped: {report.skipped[-len(jobs):]}')

  def _generate_unlabelled(self, by_split):
    """Segments without annotations of the training tracks (labels NaN), for a PCL pool.

    Decodes the training tracks again rather than holding their views in memory.
    """
    report = self._report
    spec = self.builder_config.feature_spec
    index, tracks = 0, 0
    for result in self._results(by_split['train'], 'unlabelled',
                                f'{self.name} unlabelled'):
      if result.error or not len(result.unlabelled):
        continue  # An error is already in the report (from 'train').
      tracks += 1
      for n, i in enumerate(result.unlabelled):
        job = result.job
        yield f'{job.name}_{i:05d}', records.example(
            spec=spec, mel=result.mel[n], coch=result.coch[n], valence=np.nan,
            arousal=np.nan, track_id=job.track_id, track_name=job.name,
            style_id=job.style_id, index=index, start_s=i * spec.segment_seconds)
        index += 1
    report.tracks['unlabelled'] = tracks
    report.segments['unlabelled'] = index

  def _download_and_prepare(self, dl_manager, download_config):
    self._formats = []
    self._pool = workers.WorkerPool(workers.default_workers(self._num_workers))
    try:
      super()._download_and_prepare(dl_manager=dl_manager,
                                    download_config=download_config)
    finally:
      self._pool.close()
    report = self._report
    if report is None:
      return
    _note_unusual_formats([f for f in self._formats if f[0]], report)
    epath.Path(self.data_dir).mkdir(parents=True, exist_ok=True)
    report.write(epath.Path(self.data_dir) / REPORT_NAME)
    self.info.metadata['build_report'] = {
        k: v for k, v in report.to_dict().items() if k not in ('skipped', 'notes')}
    for line in report.summary_lines():
      logging.info('%s', line)


def read_report(builder: tfds.core.DatasetBuilder) -> dict[str, Any]:
  """The build report of a prepared builder."""
  return json.loads((epath.Path(builder.data_dir) / REPORT_NAME).read_text())


def _may_have_unlabelled(job: tracks_lib.TrackJob, spec: features_lib.FeatureSpec
                         ) -> bool:
  """Whether the file (by its header) has a segment without annotation."""
  if job.times_s is None:
    return False
  count = int(_file_seconds(job.audio_path) // spec.segment_seconds)
  valence, arousal = tracks_lib.annotated_segments(job, spec, count)
  return bool(np.any(~(np.isfinite(valence) & np.isfinite(arousal))))


def _file_seconds(path: str) -> float:
  try:
    import soundfile as sf  # pylint: disable=g-import-not-at-top
    return float(sf.info(path).duration)
  except Exception:  # pylint: disable=broad-except
    return 0.0


def _note_unusual_formats(rates, report):
  """Notes files whose rate or channel count differs from most files of the dataset."""
  if len(rates) < 2:
    return
  from collections import Counter  # pylint: disable=g-import-not-at-top
  usual = Counter((r, c) for r, c, _ in rates).most_common(1)[0][0]
  for rate, channels, path in rates:
    if (rate, channels) != usual:
      report.note(f'{path}: {rate} Hz, {channels} channel(s), unlike most files '
                  f'({usual[0]} Hz, {usual[1]} channel(s)); resampled to the feature rate '
                  'and mixed to mono.')
