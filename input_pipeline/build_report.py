"""What a record build produced and everything it left out, with reasons.

TensorFlow-free (`python -m input_pipeline.build` reads a report back with it).

* `ManualDataError`: a download that cannot be used at all; its message says what to
  fix (a missing file, a CSV without the needed column, too few usable tracks).
* `BuildReport`: every track, segment and skipped item counted, with reasons; written
  as `build_report.json` beside the records (docs/datasets.md).
"""

from __future__ import annotations

import collections
import dataclasses
import json
import os
from typing import Any

from absl import logging
from etils import epath


class ManualDataError(ValueError):
  """A download that cannot be used at all; the message says what to fix."""


@dataclasses.dataclass
class BuildReport:
  """What a build produced and everything it left out, with reasons.

  `skipped` holds whole items (audio files, CSV rows, tracks) that contribute nothing;
  `dropped` counts segments (or annotations) left out of otherwise good
  tracks, by reason; `notes` are things worth knowing that dropped nothing (a file
  resampled from an unusual rate, extra CSV columns).
  """

  dataset: str
  manual_dir: str = ''
  settings: dict[str, Any] = dataclasses.field(default_factory=dict)
  tracks: dict[str, int] = dataclasses.field(default_factory=dict)
  segments: dict[str, int] = dataclasses.field(default_factory=dict)
  dropped: dict[str, int] = dataclasses.field(default_factory=dict)
  skipped: list[dict[str, str]] = dataclasses.field(default_factory=list)
  notes: list[str] = dataclasses.field(default_factory=list)

  def skip(self, kind: str, item: str, reason: str) -> None:
    """Records a whole item left out (kind: 'audio', 'annotations', 'track', ...)."""
    self.skipped.append({'kind': kind, 'item': str(item), 'reason': reason})
    logging.warning('Skipped %s %s: %s', kind, item, reason)

  def drop(self, reason: str, count: int = 1) -> None:
    if count:
      self.dropped[reason] = self.dropped.get(reason, 0) + int(count)

  def note(self, message: str) -> None:
    self.notes.append(message)
    logging.info('%s', message)

  def to_dict(self) -> dict[str, Any]:
    skipped_by_kind = collections.Counter(s['kind'] for s in self.skipped)
    return {
        'dataset': self.dataset, 'manual_dir': self.manual_dir, 'settings': self.settings,
        'tracks': dict(self.tracks), 'segments': dict(self.segments),
        'total_tracks': sum(self.tracks.values()),
        'total_segments': sum(self.segments.values()),
        'dropped': dict(sorted(self.dropped.items())),
        'skipped_counts': dict(sorted(skipped_by_kind.items())),
        'skipped': self.skipped, 'notes': self.notes,
    }

  def write(self, path: str | os.PathLike) -> None:
    """Writes the report as JSON (local or gs:// paths, through etils.epath)."""
    epath.Path(path).write_text(json.dumps(self.to_dict(), indent=1, sort_keys=False) + '\n')

  def summary_lines(self) -> list[str]:
    d = self.to_dict()
    lines = [f'{self.dataset} build report ({self.manual_dir}):']
    for split in sorted(self.segments):
      lines.append(f'  {split}: {self.tracks.get(split, 0)} tracks, '
                   f'{self.segments[split]} segments')
    for reason, count in d['dropped'].items():
      lines.append(f'  dropped {count}: {reason}')
    for kind, count in d['skipped_counts'].items():
      lines.append(f'  skipped {count} {kind} item(s)')
    for s in self.skipped[:20]:
      lines.append(f'    {s["kind"]} {s["item"]}: {s["reason"]}')
    if len(self.skipped) > 20:
      lines.append(f'    ... {len(self.skipped) - 20} more in build_report.json')
    if self.notes:
      lines.append(f'  {len(self.notes)} note(s), e.g. {self.notes[0]}')
    return lines
