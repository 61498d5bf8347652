"""Orbax checkpoints of the whole TrainState in `<workdir>/checkpoints/`."""

from __future__ import annotations

import json
from typing import Any, Callable

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


def _for_orbax(state: Any) -> Any:
  """The state as Orbax takes it: as it is on one process; as host numpy arrays on
  several, where every process holds the same (unreplicated) copy and a process-local
  device array cannot be saved (Orbax then writes from the primary process)."""
  return state if jax.process_count() == 1 else jax.device_get(state)


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
  manager.save(step, args=ocp.args.StandardSave(_for_orbax(state)))


def restore_with_fallback(manager: ocp.CheckpointManager, restore: Callable[[int], Any],
                          step: int | None = None) -> tuple[Any, int | None]:
  """(restore(step), step) for `step`, or for the newest checkpoint that restores.

  With `step` None the checkpoints are tried newest first: one that cannot be read
  (damaged, partly written, deleted files) is skipped with a warning naming it, and
  the previous one is used. Returns (None, None) when there is no checkpoint at all.

  Raises:
    FileNotFoundError: `step` was given and is not there.
    ValueError: no checkpoint restores; the message gives the newest one's error.
  """
  if step is not None:
    step = resolve_step(manager, step)
    try:
      return restore(step), step
    except Exception as error:  # pylint: disable=broad-except
      raise _unrestorable(manager, step, error) from error
  steps = sorted(manager.all_steps(), reverse=True)
  if not steps:
    return None, None
  failures = []
  for candidate in steps:
    try:
      result = restore(candidate)
    except Exception as error:  # pylint: disable=broad-except
      failures.append((candidate, error))
      continue
    if failures:
      logging.warning(
          'Checkpoint(s) %s in %s could not be restored (step %d: %s); using step %d '
          'instead.', [f for f, _ in failures], manager.directory, failures[0][0],
          _short(failures[0][1]), candidate)
    return result, candidate
  raise _unrestorable(manager, steps[0], failures[0][1]) from failures[0][1]


def _short(error: Exception, limit: int = 300) -> str:
  text = f'{type(error).__name__}: {error}'
  return text if len(text) <= limit else text[:limit] + '...'


def _unrestorable(manager, step: int, error: Exception) -> ValueError:
  return ValueError(
      f'Checkpoint {manager.directory / str(step)} cannot be restored into the model '
      f'built from this config ({_short(error)}). If the config changed since training, '
      'use the config it was trained with (config.json in the workdir); if the '
      'checkpoints are damaged, move them away or start a fresh --workdir.')


def restore_latest(manager: ocp.CheckpointManager, state: Any,
                   step: int | None = None) -> Any:
  """The latest restorable (or `step`'s) checkpoint in the structure of `state`.

  Returns `state` itself when there is no checkpoint and no `step` was asked for. A
  damaged latest checkpoint falls back to the previous one (see
  `restore_with_fallback`); a ValueError names the checkpoint when none fits `state`
  (e.g. the config changed the model since the checkpoint was written).
  """
  abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, _for_orbax(state))
  restored, step = restore_with_fallback(
      manager, lambda s: manager.restore(s, args=ocp.args.StandardRestore(abstract)), step)
  if step is None:
    return state
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
