r"""The in-memory ablation grid as one-seed cells on CPU cores, in parallel processes.

On a CPU, training the seeds of a variant together (`multiseed.train_seeds`, what
ablation.py does) is slower than training them one by one, and one process uses two
cores less well than two processes one core each (measured in docs/ablations.md,
"The CPU grid"). This script runs the same grid as ablation.py -- the same programs,
seeds and choices -- as a queue of one-seed cells, each an `ablation.py` process pinned
to its own core(s), then joins the cells of each variant (`grid.merge_runs`) and lets
ablation.py write the report from them:

  1. the SAML sweep (full model, each setting, `--sweep_seeds`) and the variants the
     sweep cannot change (no_saml, baseline), all seeds;
  2. the SAML setting with the best annotated accuracy on the validation tracks
     (`grid.choose_saml`, no training);
  3. full (the seeds the sweep did not train), no_pcl and no_dsaf with that setting;
  4. `ablation.in_memory_grid` on the joined results: the tables of ablation.py.

    python benchmarks/ablation_grid_cells.py --config=configs/benchmark.py \
        --workdir=/tmp/damer_cpu_grid --seeds=0,1,2,3,4 --sweep_seeds=0,1 \
        --saml_sweep=0.1:0.1,0.5:0.1,0.5:0.2 [--workers=2] [--config.<field>=...]

Takes ablation.py's flags (--variants, --seeds, --override, --config.<field>) plus
--workers. A cell whose result exists is not trained again, so an interrupted grid
resumes where it stopped; a cell that fails is logged (its log names the error) and the
others go on; the report then covers the variants whose every seed finished. Each
cell's log: `<workdir>/cells/<name>/seed<k>.log`.
"""

import os
import queue
import subprocess
import sys
import threading
import time

from absl import app
from absl import flags
from absl import logging
from etils import epath
from ml_collections import config_flags

import ablation  # Its flags are this script's flags.
from damer_jax import grid
from damer_jax import train
from input_pipeline import sources

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # Cells run here.

flags.DEFINE_integer('workers', len(os.sched_getaffinity(0)),
                     'Cells trained at once; each process is pinned to its share of '
                     'the available cores.')
FLAGS = flags.FLAGS


def _forwarded_flags(argv: list[str]) -> list[str]:
  """The config file (as an absolute path), its --config.<field> overrides and
  --override, as given."""
  out = []
  for arg in argv[1:]:
    if arg.startswith('--config='):
      out.append('--config=' + os.path.abspath(arg.split('=', 1)[1]))
    elif arg.startswith(('--config.', '--override')):
      out.append(arg)
  return out


def _cores(workers: int) -> list[set[int]]:
  """Splits the available cores into `workers` near-equal sets."""
  cores = sorted(os.sched_getaffinity(0))
  workers = max(1, min(workers, len(cores)))
  return [set(cores[i::workers]) for i in range(workers)]


class Cell:
  """One (name, variant, seed) training in its own folder."""

  def __init__(self, root: epath.Path, name: str, variant: str, seed: int,
               extra: list[str]):
    self.name, self.variant, self.seed, self.extra = name, variant, seed, extra
    self.folder = root / 'cells' / name / f'seed{seed}'
    self.result = self.folder / f'{variant}.npz'

  def done(self) -> bool:
    return self.result.exists() and self.result.with_suffix('.json').exists()


def _run_cells(cells: list[Cell], forwarded: list[str], workers: int,
               cache_dir: epath.Path) -> list[Cell]:
  """Trains the cells that have no result on `workers` pinned processes; returns the
  cells that failed."""
  todo = queue.Queue()
  for cell in cells:
    if cell.done():
      logging.info('Cell %s seed %d: result exists.', cell.name, cell.seed)
    else:
      todo.put(cell)
  failed, lock = [], threading.Lock()
  env = dict(os.environ, JAX_COMPILATION_CACHE_DIR=os.environ.get(
      'JAX_COMPILATION_CACHE_DIR', str(cache_dir)))

  def worker(cores: set[int]):
    while True:
      try:
        cell = todo.get_nowait()
      except queue.Empty:
        return
      cell.folder.mkdir(parents=True, exist_ok=True)
      command = [sys.executable, os.path.join(_ROOT, 'ablation.py'), *forwarded,
                 f'--workdir={cell.folder}', f'--variants={cell.variant}',
                 f'--seeds={cell.seed}', *cell.extra]
      start = time.monotonic()
      log_path = cell.folder.parent / f'seed{cell.seed}.log'
      with open(log_path, 'w') as log:
        code = subprocess.call(command, stdout=log, stderr=subprocess.STDOUT, env=env,
                               cwd=_ROOT,
                               preexec_fn=lambda: os.sched_setaffinity(0, cores))
      logging.info('Cell %s seed %d: %s in %.0f s (cores %s).', cell.name, cell.seed,
                   'done' if code == 0 else f'FAILED (exit {code}, see {log_path})',
                   time.monotonic() - start, sorted(cores))
      if code != 0 or not cell.done():
        with lock:
          failed.append(cell)

  threads = [threading.Thread(target=worker, args=(c,)) for c in _cores(workers)]
  for thread in threads:
    thread.start()
  for thread in threads:
    thread.join()
  return failed


def _merge(cells: list[Cell], out: epath.Path) -> bool:
  """Joins the cells' results into `out`; False (and a log line) when one is missing."""
  missing = [f'{c.name} seed {c.seed}' for c in cells if not c.done()]
  if missing:
    logging.warning('Not joined into %s: missing %s.', out, ', '.join(missing))
    return False
  out.parent.mkdir(parents=True, exist_ok=True)
  grid.merge_runs([c.result for c in cells], out)
  return True


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  base = FLAGS.config
  if base is None or base.dataset.name not in sources.IN_MEMORY:
    raise app.UsageError('--config must name an in-memory dataset (configs/benchmark.py).')
  variants = ablation._unique(FLAGS.variants)  # pylint: disable=protected-access
  unknown = [v for v in variants if v not in grid.VARIANTS]
  if unknown or not variants:
    raise app.UsageError(f'--variants: unknown or empty {unknown}.')
  seeds = [int(s) for s in ablation._unique(FLAGS.seeds)]  # pylint: disable=protected-access
  sweep_seeds = [int(s) for s in ablation._unique(FLAGS.sweep_seeds)] or seeds  # pylint: disable=protected-access
  settings = ablation.parse_saml_sweep(FLAGS.saml_sweep)
  root = epath.Path(FLAGS.workdir)
  final = root / 'final'
  forwarded = _forwarded_flags(sys.argv)
  cache_dir = root / 'jax_cache'
  overrides = ablation.parse_overrides(base, FLAGS.override)
  config = base.copy_and_resolve_references()
  for key, value in overrides.items():
    ablation._set_field(config, key, value)  # pylint: disable=protected-access
  logging.info('Generating (or loading) the benchmark.')
  data = sources.create_dataset(config)

  saml_flags = lambda w, t: [f'--config.saml.weight={w:g}', f'--config.saml.temperature={t:g}']
  sweep_cells = {s: [Cell(root, grid.sweep_prefix(*s) + 'full', 'full', k, saml_flags(*s))
                     for k in sweep_seeds] for s in settings}
  independent = [v for v in variants if not grid.VARIANTS[v][2]]  # SAML off.
  plain = {v: [Cell(root, v, v, k, []) for k in seeds] for v in independent}
  phase1 = [c for cells in sweep_cells.values() for c in cells]
  phase1 += [c for v in independent for c in plain[v]]
  logging.info('Phase 1: %d cells (SAML sweep %s on seeds %s; %s).', len(phase1),
               settings, sweep_seeds, ', '.join(independent) or 'nothing else')
  failed = _run_cells(phase1, forwarded, FLAGS.workers, cache_dir)
  for setting, cells in sweep_cells.items():
    _merge(cells, final / 'sweep' / f'{grid.sweep_prefix(*setting)}full.npz')
  chosen = (config.saml.weight, config.saml.temperature)
  if settings:
    if not all(all(c.done() for c in cells) for cells in sweep_cells.values()):
      raise app.UsageError('The SAML sweep did not finish; see the cell logs above.')
    chosen = grid.choose_saml(config, data, final / 'sweep', settings, sweep_seeds)
    logging.info('SAML chosen on validation: weight %g, temperature %g.', *chosen)

  dependent = [v for v in variants if grid.VARIANTS[v][2]]  # SAML on.
  reused = {c.seed: c for c in sweep_cells.get(chosen, [])}
  phase2, by_variant = [], {}
  for variant in dependent:
    cells = []
    for k in seeds:
      if variant == 'full' and k in reused:
        cells.append(reused[k])
      else:
        cells.append(Cell(root, f'{variant}_w{chosen[0]:g}_t{chosen[1]:g}', variant, k,
                          saml_flags(*chosen)))
        phase2.append(cells[-1])
    by_variant[variant] = cells
  logging.info('Phase 2: %d cells (%s).', len(phase2), ', '.join(dependent))
  failed += _run_cells(phase2, forwarded, FLAGS.workers, cache_dir)
  by_variant.update(plain)
  complete = [v for v in variants if _merge(by_variant[v], final / f'{v}.npz')]
  if failed:
    logging.error('%d cells failed: %s.', len(failed),
                  ', '.join(f'{c.name} seed {c.seed}' for c in failed))
  if 'full' not in complete:
    raise app.UsageError('full did not finish on every seed: no report.')
  logging.info('Report on %s (left out: %s).', ', '.join(complete),
               ', '.join(v for v in variants if v not in complete) or 'none')
  train.use_compilation_cache(str(cache_dir))
  ablation.in_memory_grid(base, final, complete, seeds, overrides,
                          config_flags.get_override_values(FLAGS['config']),
                          FLAGS.saml_sweep, sweep_seeds, data=data)
  if failed:
    sys.exit(1)


if __name__ == '__main__':
  app.run(main)
