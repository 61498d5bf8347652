r"""The package-level import graph of the project, read statically from the source.

    python benchmarks/import_graph.py [--external]

Prints one line per edge, `a -> b (n imports)`: package `a` has `n` import statements
(module-level or inside functions) that name package `b`. Without `--external` only the
project's packages appear as targets; with it, third-party packages too (tensorflow,
jax, ...; not the standard library). Nothing is imported: every .py file is parsed
with `ast`, so the graph of a layout that would not import (no TensorFlow here, say)
is read all the same. Imports made from strings (`importlib.import_module(name)`) are
not seen.

`tests/test_layout.py` checks the layering rules on `import_graph()`.
"""

from __future__ import annotations

import argparse
import ast
import collections
import dataclasses
import os
import sys
from typing import Iterator, Sequence

# The project's packages, lowest layer first.
PACKAGES = ('damer_audio', 'damer_data', 'damer_jax', 'input_pipeline')
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # The repository.


@dataclasses.dataclass(frozen=True)
class Import:
  """One imported module, where it is imported and how.

  Attributes:
    file: the importing file, relative to the repository root ('damer_jax/train.py').
    line: its line number.
    statement: the statement as written ('from damer_data import dataset as data_lib').
    module: the imported module's absolute dotted name ('damer_data.dataset').
  """
  file: str
  line: int
  statement: str
  module: str

  @property
  def package(self) -> str:
    """The top-level package of `module` ('damer_jax')."""
    return self.module.split('.')[0]

  def __str__(self) -> str:
    return f'{self.file}:{self.line}: {self.statement}'


def _module_name(relative_path: str) -> str:
  """'damer_jax/train.py' -> 'damer_jax.train'; a package's __init__.py -> its name."""
  parts = relative_path[:-len('.py')].split(os.sep)
  if parts[-1] == '__init__':
    parts = parts[:-1]
  return '.'.join(parts)


def _resolve(node: ast.ImportFrom, module: str, is_package: bool) -> str:
  """The absolute module a (possibly relative) `from ... import` statement names."""
  if not node.level:
    return node.module or ''
  base = module.split('.') if is_package else module.split('.')[:-1]
  base = base[:len(base) - (node.level - 1)]
  return '.'.join(base + ([node.module] if node.module else []))


def file_imports(path: str, root: str = ROOT) -> Iterator[Import]:
  """Every import in the .py file `path` (function-level ones included).

  `from pkg import a, b` yields `pkg.a` and `pkg.b` (a name may be a submodule);
  `import a.b` yields `a.b`.
  """
  relative = os.path.relpath(path, root)
  module = _module_name(relative)
  is_package = os.path.basename(path) == '__init__.py'
  with open(path, encoding='utf-8') as f:
    source = f.read()
  for node in ast.walk(ast.parse(source, filename=path)):
    if isinstance(node, ast.Import):
      names = [alias.name for alias in node.names]
    elif isinstance(node, ast.ImportFrom):
      base = _resolve(node, module, is_package)
      names = [f'{base}.{alias.name}' if alias.name != '*' else base
               for alias in node.names]
    else:
      continue
    statement = ast.get_source_segment(source, node) or ast.unparse(node)
    statement = ' '.join(statement.split())
    for name in names:
      yield Import(relative, node.lineno, statement, name)


def package_files(package: str, root: str = ROOT) -> list[str]:
  """The .py files of `package` under `root`, sorted."""
  files = []
  for folder, dirs, names in os.walk(os.path.join(root, package)):
    dirs[:] = sorted(d for d in dirs if d != '__pycache__')
    files.extend(os.path.join(folder, n) for n in sorted(names) if n.endswith('.py'))
  return files


def import_graph(packages: Sequence[str] = PACKAGES,
                 root: str = ROOT) -> dict[tuple[str, str], list[Import]]:
  """{(importing package, imported top-level package): [Import, ...]}.

  Covers every .py file of `packages` found under `root` (a missing package has none).
  Imports of a package's own modules are kept as (p, p) edges; the imported packages
  include third-party ones ('jax', 'tensorflow').
  """
  graph = collections.defaultdict(list)
  for package in packages:
    for path in package_files(package, root):
      for imported in file_imports(path, root):
        graph[(package, imported.package)].append(imported)
  return dict(graph)


def find_cycle(graph: dict[tuple[str, str], list[Import]]) -> list[str] | None:
  """A cycle [a, b, ..., a] between different packages, or None if there is none."""
  successors = collections.defaultdict(set)
  for a, b in graph:
    if a != b:
      successors[a].add(b)
  state = {}  # Package -> 'open' (on the current path) or 'done'.

  def visit(node, path):
    state[node] = 'open'
    for successor in sorted(successors[node]):
      if state.get(successor) == 'open':
        return path[path.index(successor):] + [successor]
      if successor not in state:
        cycle = visit(successor, path + [successor])
        if cycle:
          return cycle
    state[node] = 'done'
    return None

  for start in sorted(successors):
    if start not in state:
      cycle = visit(start, [start])
      if cycle:
        return cycle
  return None


def edge_lines(graph: dict[tuple[str, str], list[Import]],
               targets: Sequence[str] | None = PACKAGES) -> list[str]:
  """'a -> b (n imports)' for the edges between different packages, sorted.

  `n` counts import statements (`from b import x, y` is one).

  Args:
    graph: from `import_graph`.
    targets: the imported packages to show; None shows every one.
  """
  lines = []
  for (a, b), imports in sorted(graph.items()):
    if a == b or (targets is not None and b not in targets):
      continue
    count = len({(i.file, i.line) for i in imports})  # Statements, not names.
    lines.append(f'{a} -> {b} ({count} import{"s" if count != 1 else ""})')
  return lines


def main(argv: Sequence[str] | None = None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--external', action='store_true',
                      help='also show imports of third-party packages')
  parser.add_argument('--root', default=ROOT, help='the repository to read')
  args = parser.parse_args(argv)
  graph = import_graph(root=args.root)
  if args.external:  # Every package but the standard library's.
    targets = sorted({b for _, b in graph} - set(sys.stdlib_module_names))
  else:
    targets = PACKAGES
  for line in edge_lines(graph, targets):
    print(line)
  cycle = find_cycle({edge: v for edge, v in graph.items() if edge[1] in PACKAGES})
  print('cycle: ' + (' -> '.join(cycle) if cycle else 'none'))


if __name__ == '__main__':
  main()
