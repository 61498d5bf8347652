"""Figures for reports: embedding drift (ablation.py) and the evaluation report.

Only drawing: everything drawn is computed elsewhere (damer_jax.evaluate collects
predictions and embeddings, damer_jax.stats measures the neighbours). Drawn with
matplotlib's object API on the Agg canvas (no pyplot, no global backend switch), so it
works on a headless machine and inside other programs.
"""

from __future__ import annotations

import itertools
import math
from typing import Any, Sequence

from etils import epath
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
import numpy as np

CLASS_COLOURS = ('#2b6cb0', '#dd6b20')  # low, high (blue / orange: colour-blind safe).
CLASS_NAMES = ('low', 'high')
MARKERS = ('o', 's', '^', 'D', 'v', 'P', 'X', '<', '>', 'p', 'h', '*')
MAX_TRACK_LABELS = 30  # Above this many tracks per panel, track ids are not printed.

# (panel title, embeddings [N, D], class labels [N] in {0, 1}, track ids [N],
#  stats.neighbour_drift of them or None)
Panel = tuple[str, np.ndarray, np.ndarray, np.ndarray, dict[str, float] | None]


def pca_2d(embeddings: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """Projects [N, D] onto its first two principal axes (SVD of the centred data).

  Returns the points [N, 2] and the share of the variance each axis explains [2].
  Axis signs are fixed (largest loading positive), so reruns draw the same picture.
  """
  x = np.asarray(embeddings, np.float64)
  x = x - x.mean(axis=0)
  _, s, vt = np.linalg.svd(x, full_matrices=False)
  axes = np.zeros((2, x.shape[1]))
  axes[:min(2, len(vt))] = vt[:2]
  signs = np.sign(axes[np.arange(2), np.abs(axes).argmax(axis=1)])
  axes *= np.where(signs == 0, 1.0, signs)[:, None]
  variance = np.zeros(2)
  total = float((s ** 2).sum())
  if total > 0:
    variance[:min(2, len(s))] = (s[:2] ** 2) / total
  return x @ axes.T, variance


def _draw_panel(ax, panel: Panel) -> None:
  title, embeddings, classes, track_ids, stats = panel
  classes = np.asarray(classes).astype(int)
  track_ids = np.asarray(track_ids)
  points, variance = pca_2d(embeddings)
  tracks = np.unique(track_ids)
  marker_of = dict(zip(tracks, itertools.cycle(MARKERS)))
  for track in tracks:  # Faint spokes from each track's centre to its segments.
    mine = points[track_ids == track]
    centre = mine.mean(axis=0)
    for p in mine:
      ax.plot([centre[0], p[0]], [centre[1], p[1]], color='0.55', lw=0.4, alpha=0.3,
              zorder=1)
    if len(tracks) <= MAX_TRACK_LABELS:
      ax.annotate(f'track {track}', centre, fontsize=6, color='0.35', ha='center',
                  va='center', zorder=3)
  for track in tracks:
    for c in (0, 1):
      mask = (track_ids == track) & (classes == c)
      if mask.any():
        ax.scatter(points[mask, 0], points[mask, 1], s=22, marker=marker_of[track],
                   color=CLASS_COLOURS[c], edgecolors='white', linewidths=0.4,
                   alpha=0.85, zorder=2)
  lines = [title, f'{len(points)} segments from {len(tracks)} tracks']
  if stats:
    lines.append(f'{stats["k"]} nearest neighbours: same track '
                 f'{stats["same_track_share"]:.0%}, other-track same class '
                 f'{stats["class_agreement"]:.0%}')
  ax.set_title('\n'.join(lines), fontsize=9)
  ax.set_xlabel(f'PC 1 ({variance[0]:.0%} var)')
  ax.set_ylabel(f'PC 2 ({variance[1]:.0%} var)')
  ax.grid(alpha=0.2)


def plot_embedding_drift(panels: Sequence[Panel], path: epath.PathLike, title: str,
                         target: str = 'valence', note: str = '') -> epath.Path:
  """Side-by-side 2-D PCA scatters of embeddings, coloured by class, one marker per track.

  Args:
    panels: (panel title, embeddings [N, D], class labels [N] (0 = low, 1 = high),
      track ids [N], their `stats.neighbour_drift` or None) per panel; PCA is fitted
      per panel.
    path: where the PNG goes (parent folders are created).
    title: figure title.
    target: the target the classes belong to (legend text).
    note: an optional line of small print under the legend.

  Returns:
    The path written.
  """
  if not panels:
    raise ValueError('plot_embedding_drift needs at least one panel.')
  path = epath.Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  fig = Figure(figsize=(5.2 * len(panels), 5.4), layout='constrained')
  FigureCanvasAgg(fig)
  axes = fig.subplots(1, len(panels), squeeze=False)[0]
  for ax, panel in zip(axes, panels):
    _draw_panel(ax, panel)
  handles = [Line2D([], [], ls='', marker='o', color=CLASS_COLOURS[c], markersize=7,
                    label=f'{target} {CLASS_NAMES[c]}') for c in (0, 1)]
  handles.append(Line2D([], [], color='0.6', lw=0.8,
                        label='segment to its track centre (marker = track)'))
  legend = fig.legend(handles=handles, loc='outside lower center', ncols=3, fontsize=8,
                      frameon=False, title=note or None, title_fontsize=7.5)
  if note:
    legend.get_title().set_color('0.35')
  fig.suptitle(title, fontsize=11)
  with path.open('wb') as f:
    fig.savefig(f, format='png', dpi=130)
  return path


# ---------------------------------------------------------------------------------------
# Evaluation report figures (damer_jax/evaluate.py).

CORRECT_COLOURS = ('#c53030', '#2f855a')  # wrong (red), right (green).


def _new_figure(width: float, height: float) -> Figure:
  fig = Figure(figsize=(width, height), layout='constrained')
  FigureCanvasAgg(fig)
  return fig


def _save(fig: Figure, path: epath.PathLike) -> epath.Path:
  path = epath.Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  with path.open('wb') as f:
    fig.savefig(f, format='png', dpi=130)
  return path


def plot_confusion_matrices(matrices: Sequence[tuple[str, np.ndarray]],
                            path: epath.PathLike, title: str) -> epath.Path:
  """One 2x2 confusion matrix per panel: counts and the share of each annotated row.

  Args:
    matrices: (panel title, counts [2, 2] with rows = annotated low/high and columns =
      predicted low/high) per panel; panels are laid out two per row.
    path: the PNG to write.
    title: figure title.
  """
  cols = 2 if len(matrices) > 1 else 1
  rows = int(math.ceil(len(matrices) / cols))
  fig = _new_figure(4.2 * cols, 3.7 * rows)
  axes = fig.subplots(rows, cols, squeeze=False).ravel()
  for ax, (name, counts) in zip(axes, matrices):
    counts = np.asarray(counts, np.int64)
    share = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    ax.imshow(share, cmap='Blues', vmin=0.0, vmax=1.0)
    for i in range(2):
      for j in range(2):
        ax.text(j, i, f'{counts[i, j]}\n({share[i, j]:.0%} of row)', ha='center',
                va='center', fontsize=9, color='white' if share[i, j] > 0.6 else 'black')
    ax.set_xticks([0, 1], ['predicted low', 'predicted high'])
    ax.set_yticks([0, 1], ['annotated\nlow', 'annotated\nhigh'])
    accuracy = np.trace(counts) / max(counts.sum(), 1)
    ax.set_title(f'{name}\nN = {counts.sum()}, accuracy {accuracy:.3f}', fontsize=9.5)
  for ax in axes[len(matrices):]:
    ax.set_visible(False)
  fig.suptitle(title, fontsize=11)
  return _save(fig, path)


def plot_va_scatter(targets: Sequence[str], values: np.ndarray, scores: np.ndarray,
                    track_values: np.ndarray, track_scores: np.ndarray, *, task: str,
                    threshold: float, path: epath.PathLike, title: str) -> epath.Path:
  """Predictions against annotations: one panel per target (segments) and the
  valence-arousal plane (tracks).

  Args:
    targets: target names, in the order of the last axis below.
    values: annotated values [N, T] of the segments, in [-1, 1].
    scores: predictions [N, T]: P(high) for classification, values for regression.
    track_values, track_scores: the same averaged per track [K, T].
    task: 'classification' or 'regression'.
    threshold: the annotated value above which a segment is 'high'.
    path, title: the PNG and its title.
  """
  classification = task == 'classification'
  cut = 0.5 if classification else threshold
  both = 'valence' in targets and 'arousal' in targets
  fig = _new_figure(4.3 * (len(targets) + both), 4.4)
  axes = fig.subplots(1, len(targets) + both, squeeze=False)[0]
  for t, (ax, name) in enumerate(zip(axes, targets)):
    right = (values[:, t] > threshold) == (scores[:, t] > cut)
    for ok in (False, True):
      mask = right == ok
      ax.scatter(values[mask, t], scores[mask, t], s=9, alpha=0.55,
                 color=CORRECT_COLOURS[ok], edgecolors='none',
                 label=f'{"right" if ok else "wrong"} side ({mask.sum()})')
    ax.axvline(threshold, color='0.4', lw=0.8, ls='--')
    ax.axhline(cut, color='0.4', lw=0.8, ls='--')
    ax.set_xlim(-1.05, 1.05)
    ax.set_xlabel(f'annotated {name} (segment mean, [-1, 1])')
    if classification:
      ax.set_ylim(-0.03, 1.03)
      ax.set_ylabel(f'predicted P({name} high)')
    else:
      ax.set_ylim(-1.05, 1.05)
      ax.set_ylabel(f'predicted {name} [-1, 1]')
    ax.set_title(f'{name}: {len(values)} segments', fontsize=9.5)
    ax.legend(fontsize=7.5, loc='upper left', frameon=False)
    ax.grid(alpha=0.2)
  if both:
    ax = axes[-1]
    v, a = targets.index('valence'), targets.index('arousal')
    to_plane = (lambda s: 2.0 * s - 1.0) if classification else (lambda s: s)
    pv, pa = to_plane(track_scores[:, v]), to_plane(track_scores[:, a])
    for i in range(len(track_values)):
      ax.plot([track_values[i, v], pv[i]], [track_values[i, a], pa[i]], color='0.7',
              lw=0.6, zorder=1)
    ax.scatter(track_values[:, v], track_values[:, a], s=18, color=CLASS_COLOURS[0],
               label='annotated (track mean)', zorder=2)
    ax.scatter(pv, pa, s=22, marker='x', color=CLASS_COLOURS[1],
               label='predicted' + (' (2 P(high) - 1)' if classification else ''), zorder=3)
    ax.axvline(threshold, color='0.4', lw=0.8, ls='--')
    ax.axhline(threshold, color='0.4', lw=0.8, ls='--')
    ax.set_xlim(-1.05, 1.05)
    ax.set_ylim(-1.05, 1.05)
    ax.set_aspect('equal')
    for x, y, name in ((0.97, 0.97, 'Q1 happy'), (-0.97, 0.97, 'Q2 tense'),
                       (-0.97, -0.97, 'Q3 sad'), (0.97, -0.97, 'Q4 calm')):
      ax.text(x, y, name, fontsize=7.5, color='0.3', ha='right' if x > 0 else 'left',
              va='top' if y > 0 else 'bottom', zorder=4,
              bbox=dict(boxstyle='round,pad=0.2', fc='white', ec='0.8', alpha=0.85))
    ax.set_xlabel('valence')
    ax.set_ylabel('arousal')
    ax.set_title(f'valence-arousal plane: {len(track_values)} tracks', fontsize=9.5)
    ax.legend(fontsize=7.5, loc='lower center', bbox_to_anchor=(0.5, 1.07), ncols=1,
              frameon=False)
    ax.grid(alpha=0.2)
  fig.suptitle(title, fontsize=11)
  return _save(fig, path)


def plot_training_curves(train_rows: Sequence[dict[str, Any]],
                         eval_rows: Sequence[dict[str, Any]], targets: Sequence[str],
                         metric_names: Sequence[str], path: epath.PathLike,
                         title: str) -> epath.Path:
  """Training losses, learning rate and test metrics against the step.

  Args:
    train_rows: rows of train_metrics.jsonl ({'step', 'loss', ...}); may be empty.
    eval_rows: rows of eval_metrics.jsonl ({'step', '<target>/<metric>', ...}); for a
      step evaluated more than once the last row counts.
    targets, metric_names: which test curves to draw ('valence', 'accuracy', ...).
    path, title: the PNG and its title.
  """
  train_rows = sorted(train_rows, key=lambda r: r['step'])
  module_keys = sorted({k for r in train_rows for k in r if k.endswith('/loss')})
  loss_panels = [('training loss', sorted({k for r in train_rows for k in r
                                             if k.startswith('loss')}))]
  if module_keys:  # PCL / SAML losses live on their own scale.
    loss_panels.append(('module losses (before their weights)', module_keys))
  fig = _new_figure(4.4 * (len(loss_panels) + len(metric_names)), 3.8)
  axes = fig.subplots(1, len(loss_panels) + len(metric_names), squeeze=False)[0]
  steps = [r['step'] for r in train_rows]
  for ax, (name, keys) in zip(axes, loss_panels):
    for key in keys:
      ax.plot(steps, [np.nan if r.get(key) is None else r[key] for r in train_rows],
              lw=1.6 if key == 'loss' else 1.0,
              label='loss (total, weighted)' if key == 'loss' else key)
    if not train_rows:
      ax.text(0.5, 0.5, 'no train_metrics.jsonl in the workdir', ha='center',
              va='center', transform=ax.transAxes, color='0.4')
    else:
      ax.legend(fontsize=7, frameon=False)
    ax.set_xlabel('step')
    ax.set_ylabel('mean over the log interval')
    ax.set_title(name, fontsize=9.5)
    ax.grid(alpha=0.2)
  if any('learning_rate' in r for r in train_rows):
    lr_ax = axes[0].twinx()
    lr_ax.plot(steps, [r.get('learning_rate', np.nan) for r in train_rows], color='0.6',
               lw=0.8, ls=':')
    lr_ax.set_ylabel('learning rate (dotted)', color='0.45')
    lr_ax.tick_params(axis='y', colors='0.45', labelsize=7)
  last = {r['step']: r for r in eval_rows if r.get('split', 'test') == 'test'}
  steps = sorted(last)
  for ax, metric in zip(axes[len(loss_panels):], metric_names):
    for name in targets:
      key = f'{name}/{metric}'
      ys = [last[s].get(key) for s in steps]
      ys = [np.nan if y is None else y for y in ys]
      ax.plot(steps, ys, marker='o', ms=3, label=name)
    ax.set_xlabel('step')
    ax.set_ylabel(f'test {metric}')
    ax.set_title(f'test {metric} ({len(steps)} evaluations)', fontsize=9.5)
    ax.legend(fontsize=7.5, frameon=False)
    ax.grid(alpha=0.2)
  fig.suptitle(title, fontsize=11)
  return _save(fig, path)
