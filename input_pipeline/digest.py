"""The digest in every builder config's name: its settings and all the code it runs.

Records are a function of a builder's settings and of the code that makes them:
decoding, resampling, the views, labelling, splitting, the builder itself.
`builder_digest` hashes the settings together with the source of the builder's
module and of every project module it reaches through imports, transitively, so a
change to any of that code gives a new config name and stale records are never read
as if this code had made them. The modules are found statically (`ast` over the
source files; module-level and function-level imports, relative ones too), restricted
to the project packages that builders use (`PACKAGES`); nothing is imported, and a
module added later is covered by the import that reaches it, with no list to keep up.

The source is hashed as written (comments and docstrings included), so editing a
docstring of such a module also rebuilds the records once. Imports made from strings
(`importlib.import_module(name)`) are not seen. TensorFlow-free.
"""

from __future__ import annotations

import ast
import hashlib
import json
import os
import types
from typing import Any, Mapping, Sequence

# The packages whose modules can shape records; imports of anything else (numpy,
# tensorflow_datasets, the standard library) are not followed.
PACKAGES = ('input_pipeline', 'damer_audio', 'damer_data')
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # Holds PACKAGES.
DIGEST_CHARS = 10  # Hex characters of the digest in a config name.


def read_source(path: str) -> str:
  """The text of the source file `path` (what is parsed and hashed)."""
  with open(path, encoding='utf-8') as f:
    return f.read()


def module_path(name: str, root: str = ROOT) -> str | None:
  """The file of module `name` under `root` ('a.b' -> a/b.py or a/b/__init__.py)."""
  base = os.path.join(root, *name.split('.'))
  for path in (base + '.py', os.path.join(base, '__init__.py')):
    if os.path.isfile(path):
      return path
  return None


def _module_name(path: str, root: str) -> str | None:
  """'ROOT/a/b.py' -> 'a.b'; a package's __init__.py -> its name; None outside root."""
  relative = os.path.relpath(path, root)
  if relative.startswith(os.pardir) or not relative.endswith('.py'):
    return None
  parts = relative[:-len('.py')].split(os.sep)
  if parts[-1] == '__init__':
    parts = parts[:-1]
  return '.'.join(parts)


def imported_names(path: str, name: str) -> list[str]:
  """Absolute dotted names the file `path` (module `name`) may import, in order.

  `import a.b` gives 'a.b'; `from a import b` gives 'a' and 'a.b' (b may be a
  submodule or a name defined in a); relative imports are resolved against `name`.
  Function-level imports count as much as module-level ones.
  """
  is_package = os.path.basename(path) == '__init__.py'
  names = []
  for node in ast.walk(ast.parse(read_source(path), filename=path)):
    if isinstance(node, ast.Import):
      names.extend(alias.name for alias in node.names)
    elif isinstance(node, ast.ImportFrom):
      if node.level:
        base_parts = name.split('.') if is_package else name.split('.')[:-1]
        base_parts = base_parts[:len(base_parts) - (node.level - 1)]
        base = '.'.join(base_parts + ([node.module] if node.module else []))
      else:
        base = node.module or ''
      names.append(base)
      names.extend(f'{base}.{alias.name}' for alias in node.names if alias.name != '*')
  return [n for n in names if n]


def module_closure(module: types.ModuleType | str, *,
                   packages: Sequence[str] = PACKAGES, root: str = ROOT
                   ) -> dict[str, str]:
  """{dotted name: file} of `module` and every module of `packages` it reaches.

  Follows imports transitively, and includes the packages above each module (their
  __init__.py runs on import).

  Args:
    module: a module object (read from its file, whatever name it was imported under,
      e.g. by `tfds build` from a dataset folder) or a dotted name under `root`.
    packages: the top-level packages whose modules are followed.
    root: the folder holding those packages.

  Raises:
    ValueError: `module` has no source file.
  """
  root = os.path.abspath(root)
  if isinstance(module, str):
    name, path = module, module_path(module, root)
  else:
    path = getattr(module, '__file__', None)
    path = os.path.abspath(path) if path else None
    name = (_module_name(path, root) if path else None) or module.__name__
  if path is None or not path.endswith('.py'):
    raise ValueError(f'{module!r}: no Python source file to hash.')
  found = {name: path}
  todo = [name]
  while todo:
    current = todo.pop()
    candidates = imported_names(found[current], current)
    parts = current.split('.')
    candidates += ['.'.join(parts[:i]) for i in range(1, len(parts))]  # Its packages.
    for candidate in candidates:
      if candidate in found or candidate.split('.')[0] not in packages:
        continue
      for i in range(1, candidate.count('.') + 2):  # 'a.b.c': a, a.b, a.b.c.
        prefix = '.'.join(candidate.split('.')[:i])
        if prefix not in found:
          prefix_path = module_path(prefix, root)
          if prefix_path is not None:
            found[prefix] = prefix_path
            todo.append(prefix)
  return dict(sorted(found.items()))


def builder_digest(builder_module: types.ModuleType | str, settings: Mapping[str, Any],
                   *, packages: Sequence[str] = PACKAGES, root: str = ROOT) -> str:
  """A short hash of `settings` and of the source of all code `builder_module` reaches.

  Args:
    builder_module: the builder's module (`sys.modules[__name__]` in the builder).
    settings: everything else that decides the records (JSON-serialisable).
    packages, root: as in `module_closure`.

  Returns:
    DIGEST_CHARS hex characters; equal for equal settings and equal source files
    (keyed by their path under `root`, so the name a module was imported under
    does not matter).
  """
  root = os.path.abspath(root)
  code = {}
  for path in module_closure(builder_module, packages=packages, root=root).values():
    key = os.path.relpath(path, root).replace(os.sep, '/')
    code[key] = hashlib.sha1(read_source(path).encode()).hexdigest()
  text = json.dumps({'settings': dict(settings), 'code': code}, sort_keys=True)
  return hashlib.sha1(text.encode()).hexdigest()[:DIGEST_CHARS]
