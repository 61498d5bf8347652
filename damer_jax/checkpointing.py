"""Orbax checkpoints of the whole TrainState in `<workdir>/checkpoints/`."""

from __future__ import annotations

from typing import Any

from absl import logging
from etils import epath
import jax
import orbax.checkpoint as ocp


def create_manager(workdir: epath.PathLike, config: Any) -> ocp.CheckpointManager:
  """A CheckpointManager keeping `config.max_checkpoints_to_keep` steps."""
  options = ocp.CheckpointManagerOptions(max_to_keep=config.max_checkpoints_to_keep,
                                         create=True)
  return ocp.CheckpointManager(epath.Path(workdir) / 'checkpoints', options=options)


def save(manager: ocp.CheckpointManager, state: Any) -> None:
  """Saves an unreplicated state under its own step (asynchronously)."""
  step = int(jax.device_get(state.step))
  manager.save(step, args=ocp.args.StandardSave(state))


def restore_latest(manager: ocp.CheckpointManager, state: Any) -> Any:
  """The latest checkpoint restored into the structure of `state`, or `state` if none.

  Raises a ValueError naming the checkpoint when it does not fit `state` (e.g. the
  config changed the model since the checkpoint was written).
  """
  step = manager.latest_step()
  if step is None:
    return state
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
