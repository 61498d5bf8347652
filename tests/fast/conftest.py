"""The fast tier: in-process, TensorFlow-free tests of seconds each.

    python -m pytest -q tests/fast        # after every edit
    python -m pytest -q -m fast tests     # the same tests, selected by marker

tests/conftest.py (two host CPU devices, `tiny_config`) applies here too. Every test
of this folder carries the `fast` marker and runs with TensorFlow hidden (an import
raises ImportError), as on a machine without it: the tier exercises the TensorFlow-free
half of the project (damer_jax, damer_data).
"""

import pathlib
import sys

import pytest

FAST_DIR = pathlib.Path(__file__).resolve().parent


def _in_fast_tier(item) -> bool:
  return FAST_DIR in pathlib.Path(str(item.path)).resolve().parents


def pytest_configure(config):
  config.addinivalue_line(
      'markers', 'fast: in-process, TensorFlow-free test of tests/fast (seconds each).')


def pytest_collection_modifyitems(config, items):
  del config
  for item in items:
    if _in_fast_tier(item):
      item.add_marker(pytest.mark.fast)


BLOCKED = ('tensorflow', 'tensorflow_datasets')


@pytest.fixture(autouse=True)
def without_tensorflow(request, monkeypatch):
  """Runs the test as on a machine without TensorFlow.

  `sys.modules[name] = None` makes `import tensorflow` raise ImportError and
  `importlib.util.find_spec('tensorflow')` return None, so code with a TensorFlow-free
  path takes it (e.g. damer_jax.reporting logs metrics instead of writing TensorBoard
  events through clu) and code that needs TensorFlow fails. In a session that also
  collected other tests TensorFlow may already be loaded by them; the test then runs
  with it.
  """
  if sys.modules.get('tensorflow') is not None:
    if all(_in_fast_tier(item) for item in request.session.items):
      pytest.fail('TensorFlow was imported while collecting tests/fast (the '
                  'TensorFlow-free tier).')
    return
  for name in BLOCKED:
    monkeypatch.setitem(sys.modules, name, None)
