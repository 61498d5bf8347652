"""Metric writers and progress reports (clu), with a TensorFlow-free fallback.

clu's TensorBoard writer and `periodic_actions` need TensorFlow. Where it is missing
(e.g. a GPU box with only JAX) the run logs scalars and progress through absl logging
instead; `eval_metrics.jsonl` is written either way.
"""

from __future__ import annotations

import json
import math
import time
from typing import Any, Mapping

from absl import logging
from etils import epath


class _LoggingWriter:
  """The subset of clu's MetricWriter used here, writing to absl logging only."""

  def __init__(self, enabled: bool):
    self._enabled = enabled

  def write_scalars(self, step: int, scalars: Mapping[str, Any]):
    if self._enabled:
      logging.info('[%d] %s', step, ', '.join(f'{k}={float(v):.4g}' for k, v in
                                               sorted(scalars.items())))

  def write_hparams(self, hparams: Mapping[str, Any]):
    if self._enabled:
      logging.info('hparams: %s', hparams)

  def flush(self):
    pass

  def close(self):
    pass


def create_writer(workdir: epath.PathLike, is_main: bool):
  """TensorBoard events + logging on the main process (logging only elsewhere)."""
  try:
    from clu import metric_writers  # pylint: disable=g-import-not-at-top
  except ImportError as error:
    logging.warning('clu metric writers unavailable (%s); logging metrics only.', error)
    return _LoggingWriter(is_main)
  return metric_writers.create_default_writer(
      str(workdir), just_logging=not is_main, asynchronous=True)


class _ProgressLogger:
  """Logs steps/s and ETA every `every_secs` (fallback for clu's ReportProgress)."""

  def __init__(self, num_train_steps: int, writer, every_secs: float = 30.0):
    self._total, self._writer, self._every = num_train_steps, writer, every_secs
    self._last_time, self._last_step = None, None

  def __call__(self, step: int):
    now = time.monotonic()
    if self._last_time is None:
      self._last_time, self._last_step = now, step
      return
    if now - self._last_time < self._every and step != self._total:
      return
    rate = (step - self._last_step) / max(now - self._last_time, 1e-9)
    eta = (self._total - step) / rate if rate > 0 else math.inf
    self._writer.write_scalars(step, {'steps_per_sec': rate})
    logging.info('step %d/%d: %.2f steps/s, ETA %.0f s', step, self._total, rate, eta)
    self._last_time, self._last_step = now, step


def create_progress_reporter(num_train_steps: int, writer):
  """A callable `report(step)` that reports steps/s and ETA (clu when available)."""
  try:
    from clu import periodic_actions  # pylint: disable=g-import-not-at-top
  except ImportError:
    return _ProgressLogger(num_train_steps, writer)
  return periodic_actions.ReportProgress(num_train_steps=num_train_steps, writer=writer,
                                         every_secs=30.0)


EVAL_METRICS = 'eval_metrics.jsonl'  # One row per evaluation (DESIGN.md section 5).
TRAIN_METRICS = 'train_metrics.jsonl'  # One row per log_every_steps: averaged train metrics.


def append_jsonl(workdir: epath.PathLike, name: str, row: Mapping[str, Any]) -> None:
  """Appends one JSON object to `<workdir>/<name>` (NaN and Inf written as null).

  Read-append-write instead of an append-mode open, so it also works on gs:// paths.
  """
  clean = {k: (None if isinstance(v, float) and not math.isfinite(v) else v)
           for k, v in row.items()}
  path = epath.Path(workdir) / name
  previous = path.read_text() if path.exists() else ''
  path.write_text(previous + json.dumps(clean, sort_keys=True) + '\n')


def read_jsonl(workdir: epath.PathLike, name: str) -> list[dict[str, Any]]:
  """All rows of `<workdir>/<name>`, oldest first ([] if the file does not exist)."""
  path = epath.Path(workdir) / name
  if not path.exists():
    return []
  return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def append_eval_metrics(workdir: epath.PathLike, row: Mapping[str, Any]) -> None:
  """Appends one JSON object to `<workdir>/eval_metrics.jsonl` (NaN written as null)."""
  append_jsonl(workdir, EVAL_METRICS, row)


def read_eval_metrics(workdir: epath.PathLike) -> list[dict[str, Any]]:
  """All rows of `<workdir>/eval_metrics.jsonl`, oldest first ([] if none)."""
  return read_jsonl(workdir, EVAL_METRICS)
