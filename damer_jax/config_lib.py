"""What a config means before any job runs: its checks and the model's input shapes.

Training, evaluation and prediction all call `validate_config` first, so a setting that
cannot run fails at once, naming the field.
"""

from __future__ import annotations

from typing import Any

from damer_audio import features as features_lib
from damer_jax import pcl


def validate_config(config: Any) -> None:
  """Fails fast, naming the field, on settings that cannot run."""
  if config.parallelism not in ('pmap', 'shard_map'):
    raise ValueError(f"config.parallelism must be 'pmap' or 'shard_map', got "
                     f'{config.parallelism!r}.')
  for name in config.targets:
    if name not in ('valence', 'arousal'):
      raise ValueError(f'config.targets holds {name!r}; use valence and/or arousal.')
  if config.saml.enabled and config.saml.key_encoder not in ('ema', 'current'):
    raise ValueError(f"config.saml.key_encoder must be 'ema' or 'current', got "
                     f'{config.saml.key_encoder!r}.')
  if config.pcl.enabled and config.task != 'classification':
    raise ValueError('PCL pseudo-labels classes: config.pcl.enabled=True needs '
                     "config.task='classification' (or set config.pcl.enabled=False).")
  if config.pcl.enabled and config.pcl.tau_schedule not in ('linear', 'cosine', 'constant'):
    raise ValueError(f'config.pcl.tau_schedule={config.pcl.tau_schedule!r}; use linear, '
                     'cosine or constant.')
  if config.pcl.enabled and hasattr(pcl, 'validate'):
    pcl.validate(config)
  if config.saml.enabled and config.saml.get('positives', 'joint') not in ('joint',
                                                                           'per_target'):
    raise ValueError(f"config.saml.positives must be 'joint' or 'per_target', got "
                     f'{config.saml.positives!r}.')
  if config.pcl.get('unlabelled_batch_size', 0) < 0:
    raise ValueError('config.pcl.unlabelled_batch_size must be >= 0, got '
                     f'{config.pcl.unlabelled_batch_size}.')


def input_shapes(config: Any) -> tuple[tuple[int, int], tuple[int, int]]:
  """(mel [n_mels, frames], coch [n_coch, frames]) shapes of one example.

  frames is `FeatureSpec.num_frames` of `config.features`, as the records have it.
  """
  spec = features_lib.FeatureSpec.from_config(config.features)
  return (spec.n_mels, spec.num_frames), (spec.n_coch, spec.num_frames)
