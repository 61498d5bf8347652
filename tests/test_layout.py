"""The packages' layering, read statically from every import (benchmarks/import_graph.py).

damer_audio (audio, views) and damer_data (what the trainer reads) are the neutral
layer; damer_jax (the trainer) and input_pipeline (the datasets) both build on them and
never on each other.
"""

import os

import pytest

from benchmarks import import_graph

TENSORFLOW = ('tensorflow', 'tensorflow_datasets')
# Package -> top-level packages it must not import (directly, anywhere in its files).
FORBIDDEN = {
    'damer_audio': ('damer_jax', 'damer_data', 'input_pipeline', *TENSORFLOW, 'jax',
                    'jaxlib', 'flax'),
    'damer_data': ('damer_jax', 'input_pipeline', *TENSORFLOW),
    'damer_jax': ('input_pipeline', *TENSORFLOW),
    'input_pipeline': ('damer_jax',),
}
# Module -> modules (dotted prefixes) it must not import. The record build's own
# modules stay free of TensorFlow and JAX, so that a worker process (which runs
# tracks.process_track) starts light and the download can be read without either;
# records.py imports TensorFlow Datasets only inside features_dict, which no worker
# calls. damer_data.dataset and .hosts import JAX.
_HEAVY = (*TENSORFLOW, 'jax', 'jaxlib', 'flax', 'damer_jax', 'damer_data.dataset',
          'damer_data.hosts', 'input_pipeline.pipeline', 'input_pipeline.manual_builder')
MODULE_FORBIDDEN = {
    'damer_data/workers.py': (*_HEAVY, 'damer_audio', 'input_pipeline'),
    'input_pipeline/build_report.py': _HEAVY,
    'input_pipeline/download.py': _HEAVY,
    'input_pipeline/tracks.py': _HEAVY,
    'input_pipeline/records.py': tuple(m for m in _HEAVY if m not in TENSORFLOW),
    'input_pipeline/digest.py': (*_HEAVY, 'damer_audio', 'damer_data'),
}


@pytest.fixture(scope='module')
def graph():
  return import_graph.import_graph()


def _listing(imports):
  return '\n'.join(f'  {i}' for i in imports)


def test_every_package_is_read():
  for package in import_graph.PACKAGES:
    files = import_graph.package_files(package)
    assert any(f.endswith('__init__.py') for f in files), (package, files)


@pytest.mark.parametrize('package', sorted(FORBIDDEN))
def test_package_imports_nothing_above_its_layer(graph, package):
  offending = [i for target in FORBIDDEN[package]
               for i in graph.get((package, target), [])]
  assert not offending, (f'{package} must not import {", ".join(FORBIDDEN[package])}; '
                         f'found:\n{_listing(offending)}')


@pytest.mark.parametrize('module', sorted(MODULE_FORBIDDEN))
def test_worker_side_modules_stay_light(module):
  path = os.path.join(import_graph.ROOT, *module.split('/'))
  offending = [i for i in import_graph.file_imports(path)
               if any(i.module == m or i.module.startswith(m + '.')
                      for m in MODULE_FORBIDDEN[module])]
  assert not offending, (f'{module} must not import {", ".join(MODULE_FORBIDDEN[module])}'
                         f'; found:\n{_listing(offending)}')


def test_no_cycle_between_packages(graph):
  internal = {edge: v for edge, v in graph.items() if edge[1] in import_graph.PACKAGES}
  cycle = import_graph.find_cycle(internal)
  if cycle:
    edges = '\n'.join(f'{a} -> {b}:\n{_listing(internal[(a, b)])}'
                      for a, b in zip(cycle, cycle[1:]))
    pytest.fail(f'Import cycle {" -> ".join(cycle)}:\n{edges}')


def test_the_graph_sees_function_level_relative_and_from_imports(tmp_path):
  files = {
      'low/__init__.py': '',
      'low/base.py': 'import numpy as np\n',
      'high/__init__.py': 'from . import mod\n',
      'high/mod.py': ('from low import base\n'
                      'def f():\n'
                      '  import tensorflow as tf  # Function level.\n'
                      '  from ..low.base import np\n'
                      '  return tf\n'),
      'high/sub/__init__.py': 'from .. import mod\n',
  }
  for name, text in files.items():
    (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
    (tmp_path / name).write_text(text)
  graph = import_graph.import_graph(('low', 'high'), root=str(tmp_path))
  assert sorted(graph) == [('high', 'high'), ('high', 'low'), ('high', 'tensorflow'),
                           ('low', 'numpy')]
  tf, = graph[('high', 'tensorflow')]
  assert (tf.file, tf.line, tf.statement) == ('high/mod.py', 3, 'import tensorflow as tf')
  assert str(tf) == 'high/mod.py:3: import tensorflow as tf'
  assert sorted(i.module for i in graph[('high', 'low')]) == ['low.base', 'low.base.np']
  assert sorted(i.module for i in graph[('high', 'high')]) == ['high.mod', 'high.mod']
  assert import_graph.edge_lines(graph, ('low', 'high')) == ['high -> low (2 imports)']
  assert import_graph.find_cycle(graph) is None
  graph[('low', 'high')] = graph[('high', 'low')]
  assert import_graph.find_cycle(graph) in (['high', 'low', 'high'], ['low', 'high', 'low'])


def _module_graph(graph, package):
  """{(module, module): imports} between the modules of one package ('a.b' names)."""
  edges = {}
  for imp in graph.get((package, package), []):
    source = imp.file[:-len('.py')].replace('/', '.').removesuffix('.__init__')
    parts = imp.module.split('.')
    # 'damer_jax.evaluate' or 'damer_jax.evaluate.scores' -> 'damer_jax.evaluate'.
    target = '.'.join(parts[:2]) if len(parts) > 1 else imp.module
    if target != source and target != package:
      edges.setdefault((source, target), []).append(imp)
  return edges


def test_no_cycle_between_the_trainers_modules(graph):
  # Function-level imports count: a cycle hidden inside a function is still a cycle.
  modules = _module_graph(graph, 'damer_jax')
  assert ('damer_jax.train', 'damer_jax.evaluate') in modules  # The graph is read.
  cycle = import_graph.find_cycle(modules)
  assert cycle is None, f'Import cycle between modules: {" -> ".join(cycle)}'


def test_plots_only_draw(graph):
  # The figures are handed what they draw: no model, no restore, no data.
  modules = _module_graph(graph, 'damer_jax')
  drawing = {'damer_jax.plots', 'damer_jax.quadrants'}  # Names of the plane's quadrants.
  for plots in ('damer_jax.plots', 'damer_jax.predict_plots'):
    used = sorted({b for a, b in modules if a == plots} - drawing)
    assert not used, f'{plots} imports {used}'
