"""Figures of a prediction: how each piece moves through valence and arousal.

    predictor = Predictor.from_workdir('/tmp/damer_demo')
    results = list(predictor.predict_files(paths))
    predictor.write_figures(results, 'figures/', root='music/')

takes the result dicts of `damer_jax.predict` (one per file, errors included) and writes

| file               | what                                                              |
|--------------------|-------------------------------------------------------------------|
| `files/<name>.png` | per file: valence and arousal of every segment over time, with the track value, and the path the piece takes through the valence-arousal plane |
| `overview.png`     | every file at its track value in the valence-arousal plane, and the number of files per quadrant |
| `index.md`         | one page: the model, what the numbers mean, the overview, a table of every file (failed ones with their error) and the per-file figures |

The numbers are the fusion head's, as in the JSON lines: P(high) for a classification
model, a value in [-1, 1] for a regression model; every figure says which, and says
when the model is a demo trained on synthetic music.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
from typing import Any, Iterable, Sequence

from absl import logging
from etils import epath
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.collections import LineCollection
from matplotlib.figure import Figure
from matplotlib.transforms import Bbox
import numpy as np

from damer_jax import plots
from damer_jax import quadrants

# Datasets the project generates itself: a model trained on them is a demo.
SYNTHETIC_DATASETS = ('synthetic_va', 'va_benchmark')
TARGET_COLOURS = {'valence': '#dd6b20', 'arousal': '#2b6cb0'}
QUADRANT_COLOURS = ('#d69e2e', '#c53030', '#2b6cb0', '#2f855a')  # Q1..Q4.
MAX_NAMES = 25  # Up to this many files the overview prints names, then numbers.
MAX_LABELS = 80  # Above this many files only the most extreme ones are labelled.
EXTREMES_PER_QUADRANT = 3  # Files labelled per quadrant above MAX_LABELS.
MAX_EMBEDDED = 40  # Per-file figures shown on the page (the table links every one).
PAGE = 'index.md'
OVERVIEW = 'overview.png'
_save = plots._save  # pylint: disable=protected-access  # The report's PNG settings.


@dataclasses.dataclass(frozen=True)
class ModelInfo:
  """What a figure must say about the model whose numbers it shows."""

  task: str  # 'classification' or 'regression'.
  step: int  # Checkpoint step.
  dataset: str  # config.dataset.name the model was trained on.
  targets: tuple[str, ...] = ('valence', 'arousal')
  threshold: float = 0.0  # config.label_threshold: high = annotation above it.
  segment_seconds: float = 1.0
  workdir: str = ''

  @classmethod
  def from_config(cls, config: Any, step: int, workdir: epath.PathLike = ''
                  ) -> 'ModelInfo':
    return cls(task=config.task, step=int(step), dataset=config.dataset.name,
               targets=tuple(config.targets), threshold=float(config.label_threshold),
               segment_seconds=float(config.features.segment_seconds),
               workdir=os.fspath(workdir))

  @property
  def classification(self) -> bool:
    return self.task == 'classification'

  @property
  def cut(self) -> float:
    """The score that splits high from low."""
    return 0.5 if self.classification else self.threshold

  @property
  def limits(self) -> tuple[float, float]:
    return (0.0, 1.0) if self.classification else (-1.0, 1.0)

  @property
  def synthetic(self) -> bool:
    return self.dataset in SYNTHETIC_DATASETS

  def axis_label(self, target: str) -> str:
    return f'P({target} high)' if self.classification else f'{target}, value in [-1, 1]'

  @property
  def meaning(self) -> str:
    """One sentence: what the numbers are."""
    if self.classification:
      return (f'Numbers: P(high), the probability that valence/arousal is high (annotation '
              f'> {self.threshold:g}), from a classification model; 0.5 splits high/low')
    return (f'Numbers: predicted value in [-1, 1] from a regression model; high above '
            f'{self.threshold:g}')

  @property
  def caveat(self) -> str:
    if self.synthetic:
      return (f'Demo model trained on synthetic music ({self.dataset}): a toy opinion of '
              'real recordings')
    return f'Model trained on {self.dataset}'

  @property
  def note(self) -> str:
    """The footer of every figure."""
    return f'{self.meaning}. Fusion head, checkpoint step {self.step}. {self.caveat}.'


def _figure(width: float, height: float) -> Figure:
  """A figure with a fixed layout: a constrained layout would double the drawing time."""
  fig = Figure(figsize=(width, height))
  FigureCanvasAgg(fig)
  return fig


def _footer(fig: Figure, info: ModelInfo) -> None:
  fig.text(0.5, 0.012, info.note, ha='center', va='bottom', fontsize=7.5, color='0.35',
           wrap=True)


def _expand(lo: float, hi: float, share: float = 0.04) -> tuple[float, float]:
  pad = (hi - lo) * share
  return lo - pad, hi + pad


def _label_name(name: str) -> str:
  """A file's label in the overview: its name without folders and extension."""
  return os.path.splitext(os.path.basename(name))[0]


def _short(name: str, width: int = 22) -> str:
  return name if len(name) <= width else name[:width - 1] + '…'


def _segment_arrays(result: dict[str, Any], targets: Sequence[str]
                    ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
  """(segment starts [n], {target: scores [n]}) of one result."""
  segments = result['segments']
  starts = np.array([s['start_s'] for s in segments], np.float64)
  return starts, {t: np.array([s[t] for s in segments], np.float64) for t in targets}


def _va_axes(ax, info: ModelInfo) -> list[Any]:
  """Limits, cut lines, quadrant names and labels of a valence-arousal plane.

  Returns the quadrant names' Text artists: faint, in the middle of each quadrant,
  where a saturated model puts fewest points, and under the points.
  """
  ax.axvline(info.cut, color='0.4', lw=0.8, ls='--', zorder=1)
  ax.axhline(info.cut, color='0.4', lw=0.8, ls='--', zorder=1)
  ax.set_xlim(*_expand(*info.limits))
  ax.set_ylim(*_expand(*info.limits))
  ax.set_aspect('equal')
  ax.set_xlabel(info.axis_label('valence'))
  ax.set_ylabel(info.axis_label('arousal'))
  ax.grid(alpha=0.2)
  lo, hi = info.limits
  middle = {False: (lo + info.cut) / 2, True: (info.cut + hi) / 2}
  return [ax.text(middle[v_high], middle[a_high], name.replace(' ', '\n', 1), fontsize=9,
                  color='0.55', ha='center', va='center', zorder=0, alpha=0.8)
          for (v_high, a_high), name in quadrants.QUADRANTS.items()]


def file_figure(result: dict[str, Any], info: ModelInfo, name: str | None = None
                ) -> Figure:
  """The figure of one file's result (not an error).

  Left: each target's score per segment over time (at the segment centres) and the
  track value (the mean) as a dashed line. Right, when the model predicts both valence
  and arousal: the segments in the valence-arousal plane, joined in time order and
  coloured by time, with the track value as a star.
  """
  name = name or os.path.basename(result['path'])
  targets = [t for t in info.targets if t in result]
  plane = 'valence' in targets and 'arousal' in targets
  starts, scores = _segment_arrays(result, targets)
  centres = starts + info.segment_seconds / 2
  fig = _figure(11.0 if plane else 7.0, 5.0)
  grid = dict(left=0.065, right=0.94, bottom=0.2, top=0.8, wspace=0.22)
  axes = (fig.subplots(1, 2, width_ratios=(1.45, 1), gridspec_kw=grid) if plane
          else [fig.subplots(gridspec_kw=grid)])
  ax = axes[0]
  marker_size = 3.5 if len(starts) <= 120 else 0
  for target in targets:
    colour = TARGET_COLOURS.get(target)
    ax.plot(centres, scores[target], marker='o', ms=marker_size, lw=1.3, color=colour,
            label=f'{target}, per segment')
    ax.axhline(result[target], color=colour, lw=1.1, ls='--',
               label=f'{target}, track value {result[target]:.2f}')
  ax.axhline(info.cut, color='0.45', lw=0.8, ls=':', label=f'high / low ({info.cut:g})')
  end = max(result.get('duration_s', 0.0), starts[-1] + info.segment_seconds)
  ax.set_xlim(0.0, end)
  ax.set_ylim(*_expand(*info.limits))
  ax.set_xlabel(f'time (s); one point per {info.segment_seconds:g} s segment')
  ax.set_ylabel('P(high)' if info.classification else 'value in [-1, 1]')
  ax.set_title('over time', fontsize=9.5)
  ax.legend(fontsize=7.5, frameon=False, loc='lower center', bbox_to_anchor=(0.5, 1.06),
            ncols=3)
  ax.grid(alpha=0.2)
  if plane:
    _draw_path(fig, axes[1], result, scores, centres, info)
  fig.suptitle(f'{name}: {result["duration_s"]:g} s, {len(starts)} segments'
               + (f', {result["quadrant"]}' if result.get('quadrant') else ''),
               fontsize=11)
  _footer(fig, info)
  return fig


def _draw_path(fig, ax, result, scores, centres, info: ModelInfo) -> None:
  """The segments in the valence-arousal plane, in time order (one file)."""
  v, a = scores['valence'], scores['arousal']
  points = np.stack([v, a], axis=1)
  if len(points) > 1:
    lines = LineCollection(np.stack([points[:-1], points[1:]], axis=1), cmap='viridis',
                           lw=1.2, alpha=0.75, zorder=2)
    lines.set_array((centres[:-1] + centres[1:]) / 2)
    lines.set_clim(centres[0], centres[-1])
    ax.add_collection(lines)
  dots = ax.scatter(v, a, c=centres, cmap='viridis', s=16, zorder=3, edgecolors='none',
                    vmin=centres[0], vmax=max(centres[-1], centres[0] + 1e-6))
  ax.scatter(v[:1], a[:1], marker='o', s=70, facecolors='none', edgecolors='black',
             lw=1.0, zorder=4, label='first segment')
  ax.scatter([result['valence']], [result['arousal']], marker='*', s=220,
             color='#f6e05e', edgecolors='black', lw=0.8, zorder=5,
             label=f'track value ({result["valence"]:.2f}, {result["arousal"]:.2f})')
  _va_axes(ax, info)
  ax.set_title('path through the valence-arousal plane', fontsize=9.5)
  ax.legend(fontsize=7.5, frameon=False, loc='lower center', bbox_to_anchor=(0.5, 1.06),
            ncols=2)
  fig.colorbar(dots, ax=ax, fraction=0.05, pad=0.04, label='time (s)')


def _overlaps(box, boxes) -> bool:
  return any(box.overlaps(other) for other in boxes)


# Label offsets (points) tried in turn: NE, SE, NW, SW, E, W, N, S, then farther out.
_OFFSETS = [(5, 4), (5, -4), (-5, 4), (-5, -4), (7, 0), (-7, 0), (0, 8), (0, -8),
            (12, 10), (12, -10), (-12, 10), (-12, -10)]


def _place_labels(fig, ax, xy: np.ndarray, texts: Sequence[str], points: np.ndarray,
                  keep_off: Sequence[Any] = ()) -> int:
  """Labels points where they overlap no other label, point, `keep_off` artist or the
  axes' edge.

  Args:
    xy: [n, 2] data positions of the labelled points.
    texts: n labels.
    points: [m, 2] every point drawn (labels keep off them).
    keep_off: artists (e.g. the quadrant names) that labels must not cover.
  Returns:
    How many labels could not be placed (they are left out).
  """
  ax.apply_aspect()  # Where the drawn axes will be (aspect 'equal' moves them).
  renderer = fig.canvas.get_renderer()
  frame = ax.get_window_extent(renderer)
  dots = ax.transData.transform(points)
  dot_boxes = [Bbox([p - 3.0, p + 3.0]) for p in dots]
  placed = [artist.get_window_extent(renderer) for artist in keep_off]
  hidden = 0
  for (x, y), text in zip(xy, texts):
    own = ax.transData.transform([x, y])
    others = [box for box, p in zip(dot_boxes, dots) if np.any(p != own)]
    for dx, dy in _OFFSETS:
      label = ax.annotate(text, (x, y), xytext=(dx, dy), textcoords='offset points',
                          fontsize=7, ha='left' if dx >= 0 else 'right',
                          va='bottom' if dy >= 0 else 'top', zorder=7, color='0.1',
                          annotation_clip=False)
      box = label.get_window_extent(renderer)
      inside = (frame.x0 <= box.x0 and box.x1 <= frame.x1 and frame.y0 <= box.y0 and
                box.y1 <= frame.y1)
      if inside and not _overlaps(box, placed) and not _overlaps(box, others):
        placed.append(box)
        break
      label.remove()
    else:
      hidden += 1
  return hidden


def _quadrant_index(valence: float, arousal: float, cut: float) -> int:
  names = list(quadrants.QUADRANTS.values())
  return names.index(quadrants.quadrant(valence > cut, arousal > cut))


def overview_figure(rows: Sequence[dict[str, Any]], info: ModelInfo, title: str = ''
                    ) -> Figure:
  """Every file at its track value in the valence-arousal plane; files per quadrant.

  Args:
    rows: one summary per file (`summarise`), failed files included (they are counted,
      not drawn). A file is labelled with its name when there are at most MAX_NAMES
      files, else with its number in the table; above MAX_LABELS files a density shows
      where they lie and only the EXTREMES_PER_QUADRANT files farthest from the centre
      of each quadrant are labelled.
    info: the model.
    title: the figure title (e.g. the folder).
  """
  good = [r for r in rows if not r.get('error')]
  failed = len(rows) - len(good)
  fig = _figure(11.0, 6.6)
  ax, bars = fig.subplots(1, 2, width_ratios=(2.2, 1), gridspec_kw=dict(
      left=0.07, right=0.97, bottom=0.13, top=0.86, wspace=0.45))
  quadrant_names = _va_axes(ax, info)
  xy = np.array([[r['valence'], r['arousal']] for r in good], np.float64).reshape(-1, 2)
  many = len(good) > MAX_LABELS
  if many:
    ax.hexbin(xy[:, 0], xy[:, 1], gridsize=14, extent=(*info.limits, *info.limits),
              cmap='Blues', mincnt=1, zorder=1, alpha=0.8)
  elif good:
    spread = np.array([r['spread'] for r in good])  # [n, 2 targets, (q25, q75)]
    ax.errorbar(xy[:, 0], xy[:, 1], xerr=np.abs(spread[:, 0].T - xy[:, 0]),
                yerr=np.abs(spread[:, 1].T - xy[:, 1]), fmt='none', ecolor='0.75',
                elinewidth=0.7, zorder=2)
  colours = [QUADRANT_COLOURS[_quadrant_index(v, a, info.cut)] for v, a in xy]
  ax.scatter(xy[:, 0], xy[:, 1], s=10 if many else 28, c=colours, edgecolors='black',
             linewidths=0.4, zorder=4)
  chosen = _labelled(good, info) if many else list(range(len(good)))
  names = len(good) <= MAX_NAMES
  texts = [_short(_label_name(good[i]['name'])) if names else str(good[i]['number'])
           for i in chosen]
  hidden = (_place_labels(fig, ax, xy[chosen], texts, xy, quadrant_names) if chosen
            else 0)
  what = 'file names' if names else 'numbers in the table'
  if many:
    what += f', {EXTREMES_PER_QUADRANT} most extreme files per quadrant'
  if hidden:
    what += f', {hidden} label(s) left out where they would overlap'
  ax.set_title(f'{len(good)} files at their track value'
               + ('' if many else ' (whiskers: middle half of the segments)')
               + f'\nlabels: {what}', fontsize=8.5)
  _draw_quadrant_bars(bars, good, failed, info)
  fig.suptitle(title or f'{len(good)} files in the valence-arousal plane', fontsize=11)
  _footer(fig, info)
  return fig


def _labelled(good: Sequence[dict[str, Any]], info: ModelInfo) -> list[int]:
  """Indices of the files farthest from the centre, EXTREMES_PER_QUADRANT per quadrant."""
  by_quadrant: dict[int, list[tuple[float, int]]] = {}
  for i, r in enumerate(good):
    q = _quadrant_index(r['valence'], r['arousal'], info.cut)
    distance = math.hypot(r['valence'] - info.cut, r['arousal'] - info.cut)
    by_quadrant.setdefault(q, []).append((distance, i))
  return [i for q in sorted(by_quadrant)
          for _, i in sorted(by_quadrant[q], reverse=True)[:EXTREMES_PER_QUADRANT]]


def _draw_quadrant_bars(ax, good, failed: int, info: ModelInfo) -> None:
  names = list(quadrants.QUADRANTS.values())
  counts = np.zeros(len(names), np.int64)
  for r in good:
    counts[_quadrant_index(r['valence'], r['arousal'], info.cut)] += 1
  y = np.arange(len(names))[::-1]
  ax.barh(y, counts, color=QUADRANT_COLOURS, alpha=0.85)
  for yi, count in zip(y, counts):
    share = count / max(len(good), 1)
    ax.text(count, yi, f' {count} ({share:.0%})', va='center', fontsize=8)
  ax.set_yticks(y, names, fontsize=8)
  ax.set_xlim(0, max(1, counts.max()) * 1.35)
  ax.set_xlabel('files')
  ax.set_title('files per quadrant (track value)'
               + (f'\n{failed} file(s) could not be read: not shown' if failed else ''),
               fontsize=9.5)
  ax.set_box_aspect(1.6)
  ax.grid(alpha=0.2, axis='x')


def summarise(result: dict[str, Any], info: ModelInfo, number: int, name: str
              ) -> dict[str, Any]:
  """What the overview and the page keep of one result (segments reduced to a spread)."""
  row = {'number': number, 'name': name, 'path': result['path']}
  if 'error' in result:
    return row | {'error': result['error']}
  targets = [t for t in info.targets if t in result]
  _, scores = _segment_arrays(result, targets)
  row |= {k: result.get(k) for k in ('duration_s', 'quadrant', *targets)}
  row['segments'] = len(result['segments'])
  if {'valence', 'arousal'} <= set(targets):  # Middle half of the segments, per target.
    row['spread'] = [list(np.percentile(scores[t], [25, 75])) if len(scores[t]) else
                     [result[t]] * 2 for t in ('valence', 'arousal')]
  return row


def figure_name(name: str, taken: set[str]) -> str:
  """A file name for a figure of `name` (a path relative to the audio root), unique."""
  stem = re.sub(r'[^\w.-]+', '_', name.replace(os.sep, '__')).strip('_') or 'audio'
  candidate, k = f'{stem}.png', 1
  while candidate in taken:
    k += 1
    candidate = f'{stem}_{k}.png'
  taken.add(candidate)
  return candidate


class FigureWriter:
  """Writes each file's figure as its result arrives, then the overview and the page.

  Holds only a short summary per file, so a folder of any size streams through.
  """

  def __init__(self, directory: epath.PathLike, info: ModelInfo,
               root: epath.PathLike | None = None, output: epath.PathLike | None = None,
               title: str = ''):
    """`root`: the folder that names are relative to; `output`: the JSON lines file."""
    self.directory = epath.Path(directory)
    (self.directory / 'files').mkdir(parents=True, exist_ok=True)
    self.info = info
    self.root = os.fspath(root) if root else ''
    self.output = os.fspath(output) if output else ''
    self.title = title
    self.rows: list[dict[str, Any]] = []
    self._taken: set[str] = set()

  def _name(self, path: str) -> str:
    if self.root and os.path.isdir(self.root):
      relative = os.path.relpath(path, self.root)
      if not relative.startswith('..'):
        return relative
    return os.path.basename(path)

  def add(self, result: dict[str, Any]) -> None:
    """Summarises one result and, unless it is an error, writes its figure."""
    name = self._name(result['path'])
    row = summarise(result, self.info, len(self.rows) + 1, name)
    self.rows.append(row)
    if 'error' in row:
      return
    figure = figure_name(name, self._taken)
    try:
      fig = file_figure(result, self.info, name)
      _save(fig, self.directory / 'files' / figure)
      row['figure'] = f'files/{figure}'
    except Exception as error:  # pylint: disable=broad-except  # One figure, not the run.
      logging.warning('No figure for %s: %s: %s', result['path'], type(error).__name__,
                      error)
      row['figure_error'] = f'{type(error).__name__}: {error}'

  def finish(self) -> epath.Path:
    """Writes overview.png (when both valence and arousal are predicted) and index.md."""
    overview = None
    if {'valence', 'arousal'} <= set(self.info.targets):
      fig = overview_figure(self.rows, self.info, self.title)
      overview = _save(fig, self.directory / OVERVIEW)
    page = self.directory / PAGE
    page.write_text(markdown_page(self.rows, self.info, overview is not None,
                                  self.title, self._relative(self.output)))
    return page

  def _relative(self, path: str) -> str:
    if not path:
      return ''
    return os.path.relpath(os.path.abspath(path), os.path.abspath(self.directory))


def _cell(text: Any) -> str:
  return str(text).replace('|', '\\|').replace('\n', ' ')


def markdown_page(rows: Sequence[dict[str, Any]], info: ModelInfo, overview: bool,
                  title: str = '', output: str = '') -> str:
  """index.md: the model, what the numbers mean, the overview, a table, the figures."""
  good = [r for r in rows if not r.get('error')]
  failed = [r for r in rows if r.get('error')]
  targets = list(info.targets)
  lines = [f'# How the music feels{": " + title if title else ""}', '',
           f'- {len(rows)} file(s): {len(good)} predicted, {len(failed)} could not be read.',
           f'- {info.meaning}. The track value is the mean over the '
           f'{info.segment_seconds:g} s segments; the quadrant is that of the track value.',
           f'- Model: {info.task}, fusion head, checkpoint step {info.step}'
           + (f' of `{info.workdir}`' if info.workdir else '') + f'. {info.caveat}.']
  if output:
    lines.append(f'- Every number per segment: [{os.path.basename(output)}]({output}).')
  lines.append('')
  if overview:
    lines += ['![every file in the valence-arousal plane](overview.png)', '']
  header = ['#', 'file', 'length (s)', *targets, 'quadrant', 'figure']
  lines += ['| ' + ' | '.join(header) + ' |', '|' + '---|' * len(header)]
  for r in rows:
    if r.get('error'):
      cells = [r['number'], _cell(r['name']), '', *['' for _ in targets],
               'could not be read', _cell(r['error'])]
    else:
      figure = (f'[png]({r["figure"]})' if r.get('figure') else
                f'failed: {_cell(r.get("figure_error", ""))}')
      cells = [r['number'], _cell(r['name']), f'{r["duration_s"]:g}',
               *[f'{r[t]:.3f}' for t in targets], r.get('quadrant', ''), figure]
    lines.append('| ' + ' | '.join(map(str, cells)) + ' |')
  lines.append('')
  shown = [r for r in good if r.get('figure')][:MAX_EMBEDDED]
  if shown:
    lines += ['## Per file', '']
    if len(shown) < len(good):
      lines += [f'The first {len(shown)} files; the table links the figure of every file.',
                '']
    for r in shown:
      lines += [f'### {r["number"]}. {r["name"]}', '', f'![{r["name"]}]({r["figure"]})', '']
  return '\n'.join(lines)


def write_figures(results: Iterable[dict[str, Any]], directory: epath.PathLike,
                  info: ModelInfo, root: epath.PathLike | None = None,
                  output: epath.PathLike | None = None, title: str = '') -> epath.Path:
  """Writes every figure and the page for `results`; returns the page's path."""
  writer = FigureWriter(directory, info, root, output, title)
  for result in results:
    writer.add(result)
  return writer.finish()
