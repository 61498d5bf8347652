"""Packaging: the project imports from any folder once installed, and `damer` dispatches.

The subprocess tests need the project installed (`pip install -r requirements.txt`,
whose last line is `-e .`, or `pip install -e .`), as the README's commands do.
"""

import importlib.metadata
import os
import shutil
import subprocess
import sys
import sysconfig

import pytest

import damer_cli
from tests.conftest import ROOT

NOT_INSTALLED = ('the project is not installed in this environment; run '
                 '`pip install -e .` (or `pip install -r requirements.txt`) from the '
                 'repository root')


def _damer(args, cwd):
  """Runs the installed `damer` console script; returns the CompletedProcess."""
  script = (shutil.which('damer', path=os.path.dirname(sys.executable))
            or shutil.which('damer', path=sysconfig.get_path('scripts')))
  if script is None:
    pytest.fail(f'No `damer` command next to {sys.executable}: {NOT_INSTALLED}.')
  return subprocess.run([script, *args], cwd=cwd, capture_output=True, text=True,
                        env=dict(os.environ), timeout=300, check=False)


def _top_level_names():
  """Packages (folders with __init__.py, tests aside) and modules the repository has."""
  packages = [d for d in sorted(os.listdir(ROOT)) if d != 'tests'
              and os.path.isfile(os.path.join(ROOT, d, '__init__.py'))]
  return packages + ['main', 'ablation', 'damer_cli']


def test_every_package_of_the_repository_is_found_from_another_folder(tmp_path):
  # find_spec, not import: where each name resolves, without importing TensorFlow.
  names = _top_level_names()
  assert {'damer_jax', 'input_pipeline', 'configs'} <= set(names)
  script = ('import importlib.util, sys\n'
            'for name in sys.argv[1:]:\n'
            '  spec = importlib.util.find_spec(name)\n'
            '  print(name, spec.origin if spec else None)\n')
  result = subprocess.run([sys.executable, '-c', script, *names], cwd=tmp_path,
                          capture_output=True, text=True, env=dict(os.environ),
                          timeout=120, check=False)
  assert result.returncode == 0, result.stderr[-3000:]
  found = dict(line.split(' ', 1) for line in result.stdout.splitlines())
  missing = sorted(name for name in names if found.get(name) == 'None')
  assert not missing, f'{missing} not importable outside the repository: {NOT_INSTALLED}.'
  for name in names:  # Editable: the repository's own files, not copies.
    assert os.path.realpath(found[name]).startswith(os.path.realpath(ROOT) + os.sep), (
        name, found[name])


def test_the_damer_entry_point_is_declared():
  try:
    scripts = importlib.metadata.distribution('damer-jax').entry_points
  except importlib.metadata.PackageNotFoundError:
    pytest.fail(NOT_INSTALLED)
  (damer,) = [e for e in scripts if e.name == 'damer' and e.group == 'console_scripts']
  assert damer.value == 'damer_cli:main'


@pytest.mark.parametrize('argv', [['damer', '--help'], ['damer', '-h'], ['damer', 'help']])
def test_help_lists_every_command_and_exits_0(argv, capsys):
  with pytest.raises(SystemExit) as exit_info:
    damer_cli.main(argv)
  assert exit_info.value.code == 0
  out = capsys.readouterr().out
  assert out.startswith('usage: damer <command> [flags]')
  for command in ('train', 'evaluate', 'predict', 'ablation'):
    assert f'\n  {command} ' in out


@pytest.mark.parametrize('argv, error', [
    (['damer'], 'no command given'),
    (['damer', 'fit', '--config=configs/demo.py'], "unknown command 'fit'"),
    (['damer', '--config=configs/demo.py'], "unknown command '--config=configs/demo.py'"),
    (['damer', 'train', '--mode=predict'], '`damer train` sets --mode itself'),
    (['damer', 'predict', '--mode', 'train'], '`damer predict` sets --mode itself'),
])
def test_without_a_known_command_usage_goes_to_stderr_with_status_2(argv, error, capsys):
  with pytest.raises(SystemExit) as exit_info:
    damer_cli.main(argv)
  assert exit_info.value.code == 2
  captured = capsys.readouterr()
  assert captured.out == ''
  assert captured.err.startswith('usage: damer <command> [flags]')
  assert f'damer: error: {error}' in captured.err


@pytest.mark.parametrize('argv, module, expected_argv', [
    (['damer', 'train', '--config=c.py', '--workdir=w'], 'main',
     ['main', '--mode=train', '--config=c.py', '--workdir=w']),
    (['damer', 'evaluate', '--workdir=w'], 'main', ['main', '--mode=evaluate', '--workdir=w']),
    (['damer', 'predict', '--audio=a.wav'], 'main', ['main', '--mode=predict', '--audio=a.wav']),
    (['damer', 'ablation', '--seeds=0,1', '--mode=x'], 'ablation',
     ['ablation', '--seeds=0,1', '--mode=x']),
])
def test_a_command_runs_its_script_as_main_with_the_flags(argv, module, expected_argv,
                                                          monkeypatch):
  calls = []
  monkeypatch.setattr(sys, 'argv', ['pytest'])  # Restored after the test.
  monkeypatch.setattr(damer_cli.runpy, 'run_module',
                      lambda name, **kwargs: calls.append((name, kwargs, list(sys.argv))))
  damer_cli.main(argv)
  assert calls == [(module, {'run_name': '__main__', 'alter_sys': True}, expected_argv)]


def test_installed_damer_predict_without_config_is_a_usage_error(tmp_path):
  result = _damer(['predict', f'--workdir={tmp_path}', '--audio=x.wav'], cwd=tmp_path)
  assert result.returncode == 1, result.stderr[-3000:]
  assert 'Flag --config must have a value other than None' in result.stderr
  assert 'Traceback' not in result.stderr


def test_installed_damer_ablation_help_is_the_scripts_help(tmp_path):
  result = _damer(['ablation', '--help'], cwd=tmp_path)
  assert result.returncode == 1, result.stderr[-3000:]  # absl's --help, as in ablation.py.
  assert 'Ablation grid: trains every (split, variant, seed) cell' in result.stdout  # Docstring.
  assert '--seeds' in result.stdout and '--variants' in result.stdout
