"""synthetic_va: procedural instrumental music with per-second valence/arousal labels.

Generated on the fly (no download) by `input_pipeline.synthetic_music`, then cut into
segments and turned into both views by exactly the path the real datasets use
(`input_pipeline.records.track_examples`). Splits are by track.

Built automatically on the first training run, or ahead of it with

    python -m input_pipeline.build --config=configs/demo.py
"""

from __future__ import annotations

import dataclasses
import functools
import json
import sys
from typing import Callable

import tensorflow_datasets as tfds

from damer_audio import features as features_lib
from damer_data import workers
from input_pipeline import digest
from input_pipeline import records
from input_pipeline import splits
from input_pipeline import synthetic_music
from input_pipeline import tracks as tracks_lib


@dataclasses.dataclass(eq=False)
class SyntheticVaConfig(tfds.core.BuilderConfig):
  """What to generate; the config name encodes all of it (see `make_config`)."""

  num_tracks: int = 240
  track_seconds: float = 6.0
  generator_seed: int = 0
  test_fraction: float = 0.2
  split_seed: int = 0
  feature_spec: features_lib.FeatureSpec = features_lib.FeatureSpec()
  split_by: str = 'track'  # 'track' or 'style' (whole styles held out).
  test_styles: tuple[int, ...] = ()  # split_by='style': held-out style ids.


def parse_styles(text: str) -> tuple[int, ...]:
  """'fm_bell,4' -> (3, 4): style names or ids, comma-separated."""
  styles = []
  for item in filter(None, (t.strip() for t in str(text).split(','))):
    if item.isdigit() and int(item) < len(synthetic_music.STYLE_NAMES):
      styles.append(int(item))
    elif item in synthetic_music.STYLE_NAMES:
      styles.append(synthetic_music.STYLE_NAMES.index(item))
    else:
      raise ValueError(f'Unknown style {item!r} in config.dataset.test_styles; use ids '
                       f'0-{len(synthetic_music.STYLE_NAMES) - 1} or names '
                       f'{", ".join(synthetic_music.STYLE_NAMES)}.')
  return tuple(sorted(set(styles)))


def style_of(track_number: int) -> int:
  """The style `generate_track` gives a track when style_id is None."""
  return track_number % len(synthetic_music.STYLE_NAMES)


def make_config(num_tracks: int = 240, track_seconds: float = 6.0, generator_seed: int = 0,
                test_fraction: float = 0.2, split_seed: int = 0,
                feature_spec: features_lib.FeatureSpec = features_lib.FeatureSpec(),
                split_by: str = 'track', test_styles: tuple[int, ...] = ()
                ) -> SyntheticVaConfig:
  """A config whose name is unique for its settings, so builds never collide.

  The name also hashes the source of this module and of every project module it
  reaches through imports (`digest.builder_digest`: the generator, the views,
  records.py with the segment labelling, splits.py, the worker pool, ...), so records
  made by older code are never read as if they came from this one.
  """
  settings = dict(num_tracks=num_tracks, track_seconds=track_seconds,
                  generator_seed=generator_seed, test_fraction=test_fraction,
                  split_seed=split_seed, feature_spec=dataclasses.asdict(feature_spec))
  if split_by != 'track':  # Track-split configs hash no split settings.
    settings.update(split_by=split_by, test_styles=list(test_styles))
  code = digest.builder_digest(sys.modules[__name__], settings)
  return SyntheticVaConfig(
      name=f'n{num_tracks}_s{track_seconds:g}_seed{generator_seed}_{code}',
      description=f'synthetic_va with {json.dumps(settings, sort_keys=True)}',
      num_tracks=num_tracks, track_seconds=track_seconds, generator_seed=generator_seed,
      test_fraction=test_fraction, split_seed=split_seed, feature_spec=feature_spec,
      split_by=split_by, test_styles=tuple(test_styles))


class Builder(tfds.core.GeneratorBasedBuilder):
  """Builder for synthetic_va."""

  VERSION = tfds.core.Version('1.1.0')
  RELEASE_NOTES = {'1.0.0': 'First release.',
                   '1.1.0': 'Track ids sorted numerically before the seeded split; '
                            'style-held-out split (split_by=style).'}
  BUILDER_CONFIGS = [make_config()]

  def _info(self) -> tfds.core.DatasetInfo:
    return self.dataset_info_from_configs(
        features=records.features_dict(self.builder_config.feature_spec),
        supervised_keys=None,
        homepage='https://github.com/damer-jax',
        metadata=tfds.core.MetadataDict(
            style_names=list(synthetic_music.STYLE_NAMES)),
    )

  def _split_generators(self, dl_manager: tfds.download.DownloadManager):
    del dl_manager  # Nothing to download.
    cfg = self.builder_config
    cfg.feature_spec.validate()
    tracks = list(range(cfg.num_tracks))
    if cfg.split_by == 'track':
      by_split = splits.split_tracks(tracks, cfg.test_fraction, cfg.split_seed)
    elif cfg.split_by == 'style':
      by_split = splits.split_by_group(tracks, [style_of(t) for t in tracks],
                                       cfg.test_fraction, cfg.split_seed,
                                       test_groups=cfg.test_styles or None)
    else:
      raise ValueError(f"config.dataset.split_by must be 'track' or 'style', got "
                       f'{cfg.split_by!r}.')
    return {name: self._generate_examples(tracks) for name, tracks in by_split.items()}

  def __init__(self, *, num_workers: int = 1, **kwargs):
    """num_workers: processes generating and featurising tracks (0: one per core).

    Splits of fewer than MIN_TRACKS_FOR_WORKERS tracks are made in-process (starting
    workers would cost more than it saves).
    """
    self._num_workers = num_workers
    super().__init__(**kwargs)

  def _generate_examples(self, tracks):
    cfg = self.builder_config
    num_workers = workers.default_workers(self._num_workers)
    pool = (workers.WorkerPool(num_workers) if len(tracks) >= MIN_TRACKS_FOR_WORKERS
            else None)
    make = track_fn(cfg)
    index = 0
    try:
      with tfds.core.utils.tqdm(total=len(tracks), desc='synthetic_va tracks',
                                unit=' tracks', leave=False) as bar:
        for examples in workers.ordered_map(make, tracks, pool, progress=bar.update):
          for key, example in examples:
            example['index'] = index
            index += 1
            yield key, example
    finally:
      if pool is not None:
        pool.close()


MIN_TRACKS_FOR_WORKERS = 32


def track_fn(cfg: SyntheticVaConfig) -> Callable[[int], list[tuple[str, dict]]]:
  """track number -> its (key, example) list, as the build's worker processes run it.

  A TensorFlow-free function with plain arguments: a worker then starts without
  TensorFlow (unpickling the config or this module would import it).
  """
  return functools.partial(tracks_lib.synthetic_track_examples,
                           generator_seed=cfg.generator_seed,
                           track_seconds=cfg.track_seconds, spec=cfg.feature_spec)
