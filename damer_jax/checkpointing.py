"""Orbax checkpoints of the whole TrainState in `<workdir>/checkpoints/`."""

from __future__ import annotations

import json
from typing import Any

from absl import logging
from etils import epath
import jax
import ml_collections
import orbax.checkpoint as ocp

CONFIG_FILE = 'config.json'  # The run's config, saved in the workdir by training.


def create_manager(workdir: epath.PathLike, config: Any,
                   create: bool = True) -> ocp.CheckpointManager:
  """A CheckpointManager keeping `config.max_checkpoints_to_keep` steps.

  With `create=False` (inference) a missing checkpoint folder is an error that says to
  train first, instead of an empty folder being made.
  """
  directory = epath.Path(workdir) / 'checkpoints'
  if not create and not directory.exists():
    raise FileNotFoundError(f'No checkpoint in {directory}: the folder does not exist. '
                            'Train first (--mode=train) with this --workdir, or point '
                            '--workdir at a trained one.')
  options = ocp.CheckpointManagerOptions(max_to_keep=config.max_checkpoints_to_keep,
                                         create=create)
  return ocp.CheckpointManager(directory, options=options)


def resolve_step(manager: ocp.CheckpointManager, step: int | None = None) -> int:
  """`step` if the manager has it, the latest step if `step` is None; else an error."""
  steps = sorted(manager.all_steps())
  if not steps:
    raise FileNotFoundError(f'No checkpoint in {manager.directory}; train first '
                            '(--mode=train) with this --workdir.')
  if step is None:
    return steps[-1]
  if step not in steps:
    raise FileNotFoundError(f'No checkpoint for step {step} in {manager.directory}; '
                            f'the steps there are {steps}.')
  return int(step)


def save(manager: ocp.CheckpointManager, state: Any) -> None:
  """Saves an unreplicated state under its own step (asynchronously)."""
  step = int(jax.device_get(state.step))
  manager.save(step, args=ocp.args.StandardSave(state))


def restore_latest(manager: ocp.CheckpointManager, state: Any,
                   step: int | None = None) -> Any:
  """The latest (or `step`'s) checkpoint restored into the structure of `state`.

  Returns `state` itself when there is no checkpoint and no `step` was asked for.
  Raises a ValueError naming the checkpoint when it does not fit `state` (e.g. the
  config changed the model since the checkpoint was written).
  """
  if step is None:
    step = manager.latest_step()
    if step is None:
      return state
  else:
    step = resolve_step(manager, step)
  abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, state)
  try:
    restored = manager.restore(step, args=ocp.args.StandardRestore(abstract))
  except (ValueError, KeyError, TypeError) as error:
    raise ValueError(
        f'Checkpoint {manager.directory / str(step)} does not match the model built from '
        f'this config ({error}). Use the config it was trained with, or a fresh '
        '--workdir.') from error
  logging.info('Restored checkpoint at step %d from %s.', step, manager.directory)
  return restored


def save_config(config: Any, workdir: epath.PathLike) -> None:
  """Writes `config` as `<workdir>/config.json` so the workdir can be reused alone."""
  path = epath.Path(workdir) / CONFIG_FILE
  path.write_text(config.to_json_best_effort(indent=2, sort_keys=True) + '\n')


def load_config(workdir: epath.PathLike) -> ml_collections.ConfigDict:
  """The config that training saved in `<workdir>/config.json`."""
  path = epath.Path(workdir) / CONFIG_FILE
  if not path.exists():
    raise FileNotFoundError(
        f'{path} does not exist, so the model cannot be rebuilt from the workdir alone. '
        'Pass the config it was trained with (--config=... or config=...).')
  return ml_collections.ConfigDict(json.loads(path.read_text()))
