"""The builder config digest: settings plus the source of every module a builder reaches."""

import importlib.util

import pytest

from input_pipeline import digest

# A builder reaching `low` only through `mid`, at function level and relatively; numpy
# and the `other` package are not followed.
FILES = {
    'proj/__init__.py': '',
    'proj/builder.py': ('import numpy as np\n'
                        'from proj import mid\n'
                        'from other import unrelated\n'),
    'proj/mid.py': ('def f():\n'
                    '  from .sub import low  # Function level, relative.\n'
                    '  return low\n'),
    'proj/sub/__init__.py': '',
    'proj/sub/low.py': 'VALUE = 1\n',
    'proj/unused.py': 'VALUE = 2\n',
    'other/__init__.py': '',
    'other/unrelated.py': 'VALUE = 3\n',
}


@pytest.fixture
def project(tmp_path):
  for name, text in FILES.items():
    (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
    (tmp_path / name).write_text(text)
  return tmp_path


def _digest(root, settings=None, module='proj.builder'):
  return digest.builder_digest(module, settings or {'n': 1}, packages=('proj',),
                               root=str(root))


def test_the_closure_follows_imports_transitively(project):
  closure = digest.module_closure('proj.builder', packages=('proj',), root=str(project))
  assert sorted(closure) == ['proj', 'proj.builder', 'proj.mid', 'proj.sub',
                             'proj.sub.low']
  assert closure['proj.sub.low'] == str(project / 'proj' / 'sub' / 'low.py')


def test_a_change_to_a_module_reached_only_indirectly_changes_the_digest(project):
  before = _digest(project)
  assert len(before) == digest.DIGEST_CHARS and before == _digest(project)
  (project / 'proj' / 'unused.py').write_text('VALUE = 20\n')
  (project / 'other' / 'unrelated.py').write_text('VALUE = 30\n')
  assert _digest(project) == before  # Not reached, or outside the packages.
  (project / 'proj' / 'sub' / 'low.py').write_text('VALUE = 10\n')
  changed = _digest(project)
  assert changed != before
  assert _digest(project, {'n': 2}) not in (before, changed)  # Settings count too.


def test_a_module_imported_under_another_name_has_the_same_digest(project):
  # `tfds build <dataset folder>` imports a builder module under a name of its own.
  spec = importlib.util.spec_from_file_location(
      'some_other_name', project / 'proj' / 'builder.py')
  module = importlib.util.module_from_spec(spec)
  assert _digest(project, module=module) == _digest(project)


def test_a_module_without_source_is_refused(project):
  with pytest.raises(ValueError, match='no Python source'):
    _digest(project, module='proj.missing')
